"""Tables from files: manifests (CSV, TSV, JSONL, Parquet), local or on an object store,
read with one clear error per problem.

Pools, ``shardsmith split`` and the mismatch evaluator (raw-file manifests, predictions)
all read their tables here.

Example::

    table = read_table("data/app/manifest.csv")
    table, written, resolved = manifest_paths(Path("dev/manifest.csv"))
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyarrow import csv as pacsv
from pyarrow import json as pajson

from .errors import InputError
from .storage import is_uri, open_filesystem, path_kind

__all__ = ["read_table", "require_column", "manifest_paths", "duplicate_columns"]


def read_table(path: Path | str) -> pa.Table:
    """Read a CSV / TSV / JSONL / Parquet manifest (a local path or a URI) with clear errors.

    Example: ``read_table("s3://bucket/noise/manifest.csv").column_names``
    """
    suffix = os.path.splitext(str(path))[1].lower()
    if is_uri(str(path)):
        try:
            fs, key = open_filesystem(str(path))
            if fs.get_file_info(key).type != pafs.FileType.File:
                raise InputError(f"{path}: manifest file not found")
            with fs.open_input_file(key) as f:
                return _read_format(f, suffix, path)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - one clear error for any unreadable manifest
            raise InputError(f"{path}: cannot read manifest: {str(exc).splitlines()[0][:300]}") from None
    try:
        kind = path_kind(os.stat(path).st_mode)
    except FileNotFoundError:
        kind = "a regular file"  # the reader names a missing manifest
    except OSError as exc:
        raise InputError(f"{path}: cannot read manifest: {exc.strerror or exc}") from None
    if kind != "a regular file":
        # stat only: a FIFO would block a reader and /dev/zero never ends
        raise InputError(f"{path}: is {kind}, not a manifest file; point it at a CSV, TSV, JSONL or Parquet file")
    return _read_format(path, suffix, path)


def _read_format(path: Any, suffix: str, name: Path | str) -> pa.Table:
    try:
        if suffix in (".csv", ".tsv", ".jsonl", ".json", ".ndjson"):
            _refuse_utf16(_head(path), name)
        if suffix == ".csv" or suffix == ".tsv":
            # TSV has no quoting (Common Voice's sentences hold bare quote marks); CSV does.
            opts = (pacsv.ParseOptions(delimiter="\t", quote_char=False) if suffix == ".tsv"
                    else pacsv.ParseOptions(delimiter=","))
            table = pacsv.read_csv(path, parse_options=opts, convert_options=_as_text(_csv_header(path, opts)))
            _refuse_unnamed_columns(table.column_names, name)
            _refuse_duplicate_columns(table.column_names, name)
            # pyarrow reads invalid UTF-8 as a binary column rather than failing.
            binary = [f.name for f in table.schema if pa.types.is_binary(f.type)]
            if binary:
                raise InputError(
                    f"{name}: manifest is not valid UTF-8 text (column {binary[0]!r}); re-save it as UTF-8"
                )
            return table
        if suffix in (".jsonl", ".json", ".ndjson"):
            table = pajson.read_json(path)
            if any("double" in str(f.type) for f in table.schema):
                # pyarrow reads NaN and integers past int64 as floats: refuse them by line
                if hasattr(path, "seek"):
                    path.seek(0)
                _refuse_inexact_numbers(path.read() if hasattr(path, "read") else Path(path).read_bytes(), name)
            return table
        if suffix == ".parquet":
            # Parquet allows two columns of one name; reading them by name would fail (or
            # one would shadow the other), so the schema is checked first.
            _refuse_duplicate_columns(pq.ParquetFile(path).schema_arrow.names, name)
            if hasattr(path, "seek"):
                path.seek(0)
            return pq.read_table(path)
    except FileNotFoundError:
        raise InputError(f"{name}: manifest file not found") from None
    except PermissionError:
        raise InputError(f"{name}: manifest is not readable (permission denied)") from None
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, UnicodeDecodeError) as exc:
        msg = str(exc).splitlines()[0][:300]
        if "UTF8" in msg or "utf-8" in msg.lower() or isinstance(exc, UnicodeDecodeError):
            raise InputError(f"{name}: manifest is not valid UTF-8 text; re-save it as UTF-8 ({msg})") from None
        raise InputError(f"{name}: cannot read manifest: {msg}") from None
    raise InputError(f"{name}: manifest must be .csv, .tsv, .jsonl or .parquet, got {suffix or 'no extension'!r}")


class _Inexact:
    """A JSON number pyarrow cannot carry exactly (NaN, Infinity, an integer past int64)."""

    def __init__(self, text: str):
        self.text = text


def _inexact_int(text: str) -> Any:
    value = int(text)
    return value if -(1 << 63) <= value < (1 << 63) else _Inexact(text)


def _first_inexact(value: Any, where: str) -> tuple[str, str] | None:
    if isinstance(value, _Inexact):
        return where, value.text
    children = (value.items() if isinstance(value, dict) else
                ((f"{where}[{i}]", v) for i, v in enumerate(value)) if isinstance(value, list) else ())
    for key, child in children:
        found = _first_inexact(child, key if isinstance(value, list) else f"{where}.{key}" if where else key)
        if found:
            return found
    return None


def _refuse_inexact_numbers(data: bytes, name: Path | str) -> None:
    """A JSONL value pyarrow would silently change: ``NaN`` / ``Infinity`` (not JSON; read as
    a float NaN) or an integer outside int64 (read as a rounded float): an error naming the
    line and the column, with the fix (quote it: labels are carried as written)."""
    for number, line in enumerate(data.decode("utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, parse_int=_inexact_int, parse_constant=_Inexact)
        except ValueError:
            continue  # pyarrow parsed it; its own reading stands
        found = _first_inexact(row, "")
        if found:
            column, text = found
            what = ("is not a JSON number (NaN and Infinity are not JSON)" if text.lstrip("-") in ("NaN", "Infinity")
                    else "is an integer too large for a 64-bit column (it would be rounded to a float)")
            raise InputError(
                f"{name}: line {number}, column {column!r}: {text} {what}; quote it to keep it as text "
                f'("{text}"), or leave the value out'
            )


def _csv_header(path: Any, opts: pacsv.ParseOptions) -> list[str]:
    """The column names of a CSV / TSV (its first block parsed; an open file is rewound)."""
    reader = pacsv.open_csv(path, parse_options=opts)
    try:
        return reader.schema.names
    finally:
        reader.close()
        if hasattr(path, "seek"):
            path.seek(0)


def _as_text(names: list[str]) -> pacsv.ConvertOptions:
    """Every column read as the text written: labels and paths such as ``007``, ``1e3``,
    ``NA``, ``true`` or an empty cell are kept as they are (type inference would make
    them 7, 1000.0, null, True and null), as CSV and TSV hold only text."""
    return pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=False,
                                quoted_strings_can_be_null=False)


def _head(path: Any, size: int = 4096) -> bytes:
    """The first ``size`` bytes of a local path or an open (seekable) file, which is rewound."""
    if hasattr(path, "read"):
        head = path.read(size)
        path.seek(0)
        return bytes(head)
    with open(path, "rb") as f:
        return f.read(size)


def _utf16_layout(head: bytes) -> tuple[str, str] | None:
    """How ``head`` (a text file's first bytes) shows it is UTF-16, as (the encoding's iconv
    name, what gives it away), or ``None``: a byte-order mark or, without one, a NUL in
    every other byte (what ASCII text is in UTF-16; UTF-8 text has no NUL at all).

    pyarrow reads UTF-16 as one column of NUL-riddled bytes ("Expected 3 columns, got 1")
    or, big-endian without a mark, as column names full of NULs; this names the cause.
    """
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return None  # UTF-32, not UTF-16: pyarrow's own error stands
    if head.startswith(b"\xff\xfe"):
        return "UTF-16", "its byte-order mark is FF FE"
    if head.startswith(b"\xfe\xff"):
        return "UTF-16", "its byte-order mark is FE FF"
    pairs = len(head) // 2
    if pairs < 2:
        return None
    even = head[0:2 * pairs:2].count(0) / pairs
    odd = head[1:2 * pairs:2].count(0) / pairs
    if odd > 0.3 and even < 0.05:
        return "UTF-16LE", "little-endian without a byte-order mark: every other byte is NUL"
    if even > 0.3 and odd < 0.05:
        return "UTF-16BE", "big-endian without a byte-order mark: every other byte is NUL"
    return None


def _refuse_utf16(head: bytes, name: Path | str) -> None:
    layout = _utf16_layout(head)
    if layout:
        encoding, evidence = layout
        raise InputError(
            f"{name}: is UTF-16 encoded ({evidence}); save it as UTF-8 (a spreadsheet's "
            f"'CSV UTF-8' format, or `iconv -f {encoding} -t UTF-8 OLD > NEW`); UTF-8 with or without "
            "a byte-order mark is read"
        )


def duplicate_columns(names: list[str]) -> list[str]:
    """The names that occur more than once in ``names``, in first-seen order.

    Example: ``duplicate_columns(["path", "text", "text"]) == ["text"]``
    """
    seen: set[str] = set()
    return list(dict.fromkeys(n for n in names if n in seen or seen.add(n)))


def _refuse_duplicate_columns(names: list[str], name: Path | str) -> None:
    """Two columns of one name would silently become one (the last wins): refused."""
    dups = duplicate_columns(names)
    if dups:
        shown = ", ".join(f"{d!r} ({names.count(d)} times)" for d in dups)
        raise InputError(
            f"{name}: the header names a column more than once: {shown}; each column needs its own name: "
            "rename the copies in the manifest (or delete the ones that are not needed)"
        )


def _refuse_unnamed_columns(names: list[str], name: Path | str) -> None:
    """A column with an empty header would become a label named "": refused, naming where."""
    empty = [i + 1 for i, n in enumerate(names) if not n.strip()]
    if empty:
        where = ", ".join(str(i) for i in empty)
        raise InputError(
            f"{name}: the header line names no column at position {where} (of {len(names)} columns); "
            "give it a name in the header line (it would be a label called ''), or delete the column"
        )


def require_column(table: pa.Table, column: str, source: Any, fix: str = "") -> None:
    """Raise :class:`InputError` naming the columns there are when ``column`` is missing;
    ``fix`` (e.g. ``"add it or set --path-column"``) ends the message.

    Example: ``require_column(read_table("a.csv"), "path", "a.csv", "add it or set --path-column")``
    """
    if column not in table.column_names:
        raise InputError(
            f"{source}: manifest has no {column!r} column (columns: {', '.join(table.column_names) or 'none'})"
            + (f"; {fix}" if fix else "")
        )


def manifest_paths(path: Path, column: str = "path", *, fix: str = "") -> tuple[pa.Table, list[str], list[Path]]:
    """A local manifest of files: the table, each row's path as written, and that path
    resolved (a relative one from the manifest's folder). An empty path is an error.

    Example: ``table, written, resolved = manifest_paths(Path("dev/manifest.csv"))``
    """
    table = read_table(path)
    require_column(table, column, path, fix)
    written = table.column(column).to_pylist()
    resolved = []
    for row, value in enumerate(written):
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{path}: row {row + 1} has an empty {column!r}")
        f = Path(value)
        resolved.append(f if f.is_absolute() else path.parent / f)
    return table, written, resolved
