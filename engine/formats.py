"""Pool formats: how the items of a pool are listed from what its ``paths`` name.

``format: files`` (the default) is loose media files, listed by ``engine.pools``. The
formats here list items that live inside containers, each with a stable id that names
the container and the key (``data/train-00003.parquet#row=1821``), a locator the readers
open (:mod:`engine.sources`), and its labels:

- ``table``: Parquet or Arrow (file or stream) tables whose media column is the Hugging
  Face ``Audio`` / ``Image`` struct (bytes, or a path relative to the table), as
  ``datasets`` writes them (``to_parquet``, ``save_to_disk``, the Hub's Parquet) and as
  shardsmith writes its shards. A path may be a table file, a glob, a
  ``datasets.save_to_disk`` folder or a shardsmith output folder. Rows of a shardsmith
  output carry their upstream provenance as labels (``upstream_sample_id``,
  ``upstream_recipe_hash``).
- ``webdataset``: uncompressed WebDataset tar shards. Members are grouped into samples
  the way ``webdataset`` groups them (the key is the member name up to the first dot of
  its file name, folders included; adjacent members with one key are one sample); the
  media member is picked by extension; ``.json``, ``.txt`` and ``.cls`` members are
  labels. Only the tar headers and those small label members are read here; a worker
  reads the media member's bytes by offset.

Only the schema and the label columns are read here; media bytes are read by workers a
batch at a time.

Example::

    listing = list_items("hub", recipe.pools["hub"], recipe.base_dir)
    listing.ids[0], listing.locators[0]
"""

from __future__ import annotations

import glob
import json
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .errors import InputError
from .layout import LEGACY_RUN_RECORD_FILE, RUN_RECORD_FILE, is_temporary, parse_shard_path
from .media import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS
from .sources import Locator, encode, table_kind

TABLE_SUFFIXES = (".parquet", ".arrow")
# Columns of a shardsmith shard that describe the synthesis, not the item: not labels.
SHARD_COLUMNS = frozenset({"sample_id", "split", "sources", "params", "embedding", "sampling_rate",
                           "duration_s", "width", "height", "objects"})
UPSTREAM_SAMPLE_ID = "upstream_sample_id"
UPSTREAM_RECIPE_HASH = "upstream_recipe_hash"


@dataclass
class Listing:
    """The items of one pool before probing: ids, locators, labels (one row per item)."""

    ids: list[str]
    locators: list[str]
    labels: pa.Table | None
    rejects: list[dict[str, Any]] = field(default_factory=list)


def _plain(t: pa.DataType) -> bool:
    return (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)
            or pa.types.is_floating(t) or pa.types.is_boolean(t))


def _shard_files(folder: Path) -> list[Path]:
    """The committed shards of a shardsmith output folder (a shard with its stats record)."""
    found = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.suffix in TABLE_SUFFIXES and not is_temporary(p.name) and parse_shard_path(rel):
            split, name = parse_shard_path(rel)
            if (folder / split / f"{name}.stats.json").exists():
                found.append(p)
    return found


def _tables_of(pool_name: str, i: int, pattern: str, base_dir: Path) -> tuple[list[Path], bool]:
    """The table files a ``paths`` entry names, and whether they are a shardsmith output."""
    full = pattern if os.path.isabs(pattern) else str(base_dir / pattern)
    where = f"pools.{pool_name}.paths[{i}]"
    if "://" in pattern:
        raise InputError(f"{where}: {pattern!r}: tables on object stores are not read yet; copy them locally")
    if os.path.isdir(full):
        folder = Path(full)
        if (folder / RUN_RECORD_FILE).exists() or (folder / LEGACY_RUN_RECORD_FILE).exists():
            files = _shard_files(folder)
            if not files:
                raise InputError(f"{where}: {pattern!r} is a shardsmith output without a finished shard")
            return files, True
        state = folder / "state.json"
        if state.exists():  # datasets.save_to_disk: its Arrow files in order
            try:
                names = [d["filename"] for d in json.loads(state.read_text())["_data_files"]]
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(f"{state}: not a datasets state.json ({exc})") from None
            return [folder / n for n in names], False
        files = sorted(p for p in folder.rglob("*") if p.suffix in TABLE_SUFFIXES and p.is_file())
        if not files:
            raise InputError(f"{where}: folder {full} holds no .parquet or .arrow table")
        return files, False
    files = sorted(Path(m) for m in glob.glob(full, recursive=True) if not os.path.isdir(m))
    if not files:
        raise InputError(f"{where}: {pattern!r} matches no files (looked for {full})")
    return files, False


def _schema(path: Path) -> tuple[pa.Schema, int]:
    kind = table_kind(str(path))
    if kind == "parquet":
        f = pq.ParquetFile(path)
        return f.schema_arrow, f.metadata.num_rows
    with pa.memory_map(str(path)) as src:
        if kind == "arrow-file":
            reader = ipc.open_file(src)
            return reader.schema, sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
        reader = ipc.open_stream(src)
        return reader.schema, sum(b.num_rows for b in reader)


def _read_columns(path: Path, columns: list[str]) -> pa.Table:
    kind = table_kind(str(path))
    if kind == "parquet":
        return pq.read_table(path, columns=columns)
    with pa.memory_map(str(path)) as src:
        reader = ipc.open_file(src) if kind == "arrow-file" else ipc.open_stream(src)
        batches = ([reader.get_batch(i) for i in range(reader.num_record_batches)] if kind == "arrow-file"
                   else list(reader))
        return pa.Table.from_batches([b.select(columns) for b in batches],
                                     schema=pa.schema([reader.schema.field(c) for c in columns]))


def list_table_items(pool_name: str, pool: Any, base_dir: Path) -> Listing:
    """Every row of the pool's tables, as items (see the module docstring)."""
    media = pool.media_column or pool.kind
    ids: list[str] = []
    locators: list[str] = []
    label_tables: list[pa.Table] = []
    rejects: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for i, pattern in enumerate(pool.paths):
        tables, upstream = _tables_of(pool_name, i, pattern, base_dir)
        for path in tables:
            try:
                schema, rows = _schema(path)
            except (OSError, pa.ArrowException) as exc:
                rejects.append({"pool": pool_name, "path": str(path),
                                "reason": f"not a readable Parquet or Arrow table ({str(exc).splitlines()[0][:200]})"})
                continue
            if media not in schema.names:
                raise InputError(
                    f"{path}: has no column {media!r} (columns: {', '.join(schema.names)}); set "
                    f"pools.{pool_name}.media_column to the Audio/Image column"
                )
            t = schema.field(media).type
            if not (pa.types.is_struct(t) and {"bytes", "path"} <= {t.field(k).name for k in range(t.num_fields)}):
                raise InputError(
                    f"{path}: column {media!r} is {t}, not the Audio/Image struct (bytes, path) that "
                    "datasets and shardsmith write"
                )
            if rows == 0:
                rejects.append({"pool": pool_name, "path": str(path), "reason": "empty table (0 rows)"})
                continue
            if pool.label_columns is not None:
                missing = [c for c in pool.label_columns if c not in schema.names]
                if missing:
                    raise InputError(f"{path}: pools.{pool_name}.label_columns names {missing}, which it does not "
                                     f"have (columns: {', '.join(schema.names)})")
                wanted = list(pool.label_columns)
            else:
                wanted = [f.name for f in schema if f.name != media and _plain(f.type)
                          and not (upstream and f.name in SHARD_COLUMNS)]
            if pool.key_column is not None and pool.key_column not in schema.names:
                raise InputError(f"{path}: pools.{pool_name}.key_column {pool.key_column!r} is not a column "
                                 f"(columns: {', '.join(schema.names)})")
            extra = [c for c in ([pool.key_column] if pool.key_column else []) + (["sample_id"] if upstream else [])
                     if c not in wanted]
            cols = _read_columns(path, wanted + extra)
            rel = Path(os.path.relpath(path, base_dir)).as_posix()
            keys = cols.column(pool.key_column).to_pylist() if pool.key_column else None
            labels = cols.select(wanted)
            if upstream:
                try:
                    rhash = str(json.loads((schema.metadata or {}).get(b"shardsmith", b"{}")).get("recipe_hash", ""))
                except ValueError:
                    rhash = ""
                labels = labels.append_column(UPSTREAM_SAMPLE_ID, cols.column("sample_id").cast(pa.string()))
                labels = labels.append_column(UPSTREAM_RECIPE_HASH, pa.array([rhash] * rows, pa.string()))
            label_tables.append(labels)
            for row in range(rows):
                key = f"row={row}" if keys is None else f"{pool.key_column}={keys[row]}"
                item = f"{rel}#{key}"
                if item in seen:
                    raise InputError(f"{path}: key {key!r} appears twice; pools.{pool_name}.key_column must "
                                     "name each row once")
                seen[item] = item
                ids.append(item)
                locators.append(encode(Locator(src=str(path.resolve()), row=row, column=media)))
    labels = pa.concat_tables(label_tables, promote_options="permissive") if label_tables else None
    return Listing(ids, locators, labels, rejects)


# --------------------------------------------------------------------------- webdataset

# webdataset.tariterators.base_plus_ext: the key is everything up to the first dot of the
# member's file name (its folders included), the extension everything after it.
WDS_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")
# Members that are labels: .json (an object, flattened), .txt and .cls (one label each).
WDS_LABEL_MEMBERS = {"txt": "text", "cls": "label"}
WDS_LABEL_MAX_BYTES = 4 * 2**20  # a label member larger than this is not a label
# First bytes of the compressions a tar is commonly shipped in: none can be read by offset.
_COMPRESSION_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz",
                      b"\x28\xb5\x2f\xfd": "zstd", b"\x04\x22\x4d\x18": "lz4"}
_TAR_BLOCK = 512


def wds_key(name: str) -> tuple[str, str] | None:
    """WebDataset's ``(key, extension)`` of a tar member name, the extension lowercased;
    None for a name without one (WebDataset skips such members).

    Example: ``wds_key("spk1/utt7.seg.FLAC") == ("spk1/utt7", "seg.flac")``
    """
    match = WDS_KEY.match(name)
    if not match:
        return None
    return match.group(1), match.group(2).lower()


def _wds_meta(name: str) -> bool:
    """WebDataset's metadata members (``__key__``-like names), which it skips."""
    return ("/" not in name and name.startswith("__") and name.endswith("__")) or \
        re.match(r"__[^/]*__($|/)", name) is not None


@dataclass
class _Member:
    name: str
    offset: int  # of the member's data, in bytes from the start of the tar
    size: int
    sparse: bool = False


@dataclass
class _Sample:
    key: str
    members: dict[str, _Member] = field(default_factory=dict)  # extension -> member
    duplicates: list[str] = field(default_factory=list)


def _tar_members(path: Path, shown: str) -> tuple[list[_Member], str | None]:
    """The regular members of an uncompressed tar, in order, from its headers alone; and
    why the listing stopped early, if it did (the members before that are kept)."""
    with open(path, "rb") as f:
        head = f.read(8)
        for magic, what in _COMPRESSION_MAGIC.items():
            if head.startswith(magic):
                raise InputError(
                    f"{shown}: a {what}-compressed tar; members of a compressed tar cannot be read by offset. "
                    f"Re-pack it uncompressed (for gzip: `gunzip -k {path.name}` gives the same tar, uncompressed)"
                )
        f.seek(0)
        members: list[_Member] = []
        try:
            tar = tarfile.open(fileobj=f, mode="r:")
        except (tarfile.TarError, ValueError) as exc:
            return members, f"not a tar file (tarfile: {exc})"
        while True:
            try:
                info = tar.next()
            except (tarfile.TarError, ValueError) as exc:
                return members, f"cut short or corrupt after member {members[-1].name if members else '-'} ({exc})"
            if info is None:
                break
            tar.members.clear()  # a shard can hold millions of members: keep none (webdataset does the same)
            if info.isreg():
                members.append(_Member(info.name, info.offset_data, info.size, info.issparse()))
        # tarfile ends quietly at a header it cannot parse; the end of a tar is zero blocks
        f.seek(tar.offset)
        block = f.read(_TAR_BLOCK)
        if block.strip(b"\0"):
            last = members[-1].name if members else "-"
            what = "cut short in a header" if len(block) < _TAR_BLOCK else "a corrupt header"
            return members, f"{what} at byte {tar.offset}, after member {last}"
    return members, None


def _wds_samples(members: list[_Member]) -> list[_Sample]:
    """Members grouped as WebDataset groups them: a sample per run of adjacent members
    with one key (metadata members and names without an extension are skipped)."""
    samples: list[_Sample] = []
    for m in members:
        split = None if _wds_meta(m.name) else wds_key(m.name)
        if split is None:
            continue
        key, ext = split
        if not samples or samples[-1].key != key:
            samples.append(_Sample(key))
        if ext in samples[-1].members:
            samples[-1].duplicates.append(m.name)
        else:
            samples[-1].members[ext] = m
    return samples


def _flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested keys joined with ``.``; only plain values (text, numbers, booleans) kept."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, name + "."))
        elif isinstance(v, (str, int, float, bool)):
            out[name] = v
    return out


def _wds_labels(f: Any, sample: _Sample) -> dict[str, Any]:
    """The labels of one sample from its .json, .txt and .cls members (ValueError: why not)."""
    labels: dict[str, Any] = {}
    for ext in ("json", *WDS_LABEL_MEMBERS):
        m = sample.members.get(ext)
        if m is None:
            continue
        if m.size > WDS_LABEL_MAX_BYTES:
            raise ValueError(f"label member {m.name} is {m.size:,} bytes (labels take at most "
                             f"{WDS_LABEL_MAX_BYTES:,})")
        f.seek(m.offset)
        raw = f.read(m.size)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"label member {m.name} is not UTF-8 text") from None
        if ext == "json":
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"malformed .json member {m.name} ({exc})") from None
            if not isinstance(value, dict):
                raise ValueError(f".json member {m.name} holds a {type(value).__name__}, not an object")
            labels.update(_flatten(value))
        elif ext == "txt":
            labels[WDS_LABEL_MEMBERS[ext]] = text.rstrip("\r\n")
        else:
            try:
                labels[WDS_LABEL_MEMBERS[ext]] = int(text)
            except ValueError:
                raise ValueError(f".cls member {m.name} holds {text.strip()[:40]!r}, not a class number") from None
    return labels


def _label_table(rows: list[dict[str, Any]], pool_name: str, wanted: list[str] | None) -> pa.Table | None:
    """One column per label name any item has (null where an item lacks it). A name whose
    values differ in type between items becomes text; whole numbers mixed with fractions
    become floats."""
    names = list(dict.fromkeys(k for r in rows for k in r))
    if wanted is not None:
        missing = [c for c in wanted if c not in names]
        if missing and rows:
            raise InputError(f"pools.{pool_name}.label_columns names {missing}, which no item has "
                             f"(labels: {', '.join(names) or 'none'})")
        names = list(wanted)
    columns: dict[str, pa.Array] = {}
    for name in names:
        values = [r.get(name) for r in rows]
        kinds = {type(v) for v in values if v is not None}
        if kinds == {bool}:
            columns[name] = pa.array(values, pa.bool_())
        elif kinds and kinds <= {int} and all(v is None or -2**63 <= v < 2**63 for v in values):
            columns[name] = pa.array(values, pa.int64())
        elif kinds and kinds <= {int, float}:
            columns[name] = pa.array([None if v is None else float(v) for v in values], pa.float64())
        else:
            columns[name] = pa.array([v if v is None or isinstance(v, str) else json.dumps(v) for v in values],
                                     pa.string())
    return pa.table(columns) if columns else None


def _wds_tars(pool_name: str, patterns: list[str], base_dir: Path) -> list[Path]:
    found: set[Path] = set()
    for i, pattern in enumerate(patterns):
        where = f"pools.{pool_name}.paths[{i}]"
        if "://" in pattern:
            raise InputError(f"{where}: {pattern!r}: tar shards on object stores are not read yet; copy them locally")
        full = pattern if os.path.isabs(pattern) else str(base_dir / pattern)
        if os.path.isdir(full):
            matches = [p for p in Path(full).rglob("*.tar") if p.is_file()]
        else:
            matches = [Path(m) for m in glob.glob(full, recursive=True) if not os.path.isdir(m)]
        if not matches:
            raise InputError(f"{where}: {pattern!r} matches no files (looked for {full})")
        found.update(Path(os.path.abspath(m)) for m in matches)
    return sorted(found)


def _sample_problem(sample: _Sample, runs: int, media: list[str], tar_size: int, pool_name: str, pool: Any,
                    media_exts: set[str], wanted_ext: str | None) -> str | None:
    """Why a sample cannot be an item (its labels aside), or None."""
    if runs > 1:
        return (f"its members are not adjacent in the tar ({runs} runs of members with this key; WebDataset "
                "would read as many samples): re-pack with each key's members together")
    if sample.duplicates:
        return f"member {sample.duplicates[0]} appears twice in the tar"
    past = [m for m in sample.members.values() if m.offset + m.size > tar_size]
    if past:
        m = past[0]
        return (f"cut short: member {m.name} needs bytes {m.offset:,}..{m.offset + m.size:,}, the tar ends at "
                f"byte {tar_size:,} (a truncated tar: copy it again)")
    if not media:
        want = (f".{wanted_ext} member (pools.{pool_name}.media_column)" if wanted_ext else
                f"{pool.kind} member (one of .{', .'.join(sorted(media_exts))})")
        return f"a missing tar member: no {want}; the key has {', '.join('.' + e for e in sample.members)}"
    if len(media) > 1:
        return (f"two {pool.kind} members ({', '.join(sample.members[e].name for e in media)}); set "
                f"pools.{pool_name}.media_column to the extension to take")
    m = sample.members[media[0]]
    if m.sparse:
        return f"member {m.name} is a sparse file, which cannot be read by offset"
    if m.size == 0:
        return f"member {m.name} is empty (0 bytes)"
    return None


def list_webdataset_items(pool_name: str, pool: Any, base_dir: Path) -> Listing:
    """Every sample of the pool's WebDataset tar shards, as items (see the module
    docstring and docs/recipes.md): id ``shards/train-00003.tar#<key>``, a locator of the
    media member's bytes, and the labels of its .json / .txt / .cls members.

    Example: ``list_webdataset_items("wds", recipe.pools["wds"], recipe.base_dir).ids[0]``
    """
    wanted_ext = pool.media_column.lower().lstrip(".") if pool.media_column else None
    media_exts = {e.lstrip(".") for e in (AUDIO_EXTENSIONS if pool.kind == "audio" else IMAGE_EXTENSIONS)}
    ids: list[str] = []
    locators: list[str] = []
    label_rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []

    def reject(path: str, reason: str) -> None:
        rejects.append({"pool": pool_name, "path": path, "reason": reason})

    for path in _wds_tars(pool_name, pool.paths, base_dir):
        rel = Path(os.path.relpath(path, base_dir)).as_posix()
        try:
            size = path.stat().st_size
            members, problem = _tar_members(path, rel) if size else ([], None)
        except OSError as exc:
            reject(rel, f"not readable ({exc.strerror or exc})")
            continue
        samples = _wds_samples(members)
        if not samples:
            reject(rel, "empty file (0 bytes), not a tar" if not size else problem or (
                "empty tar: no members" if not members else
                f"no WebDataset samples: no member is named key.extension ({len(members)} member(s))"))
            continue
        runs: dict[str, int] = {}
        for sample in samples:
            runs[sample.key] = runs.get(sample.key, 0) + 1
        if problem and not any(m.offset + m.size > size for m in members):
            reject(rel, f"{problem}; the samples before it are used")
        seen: set[str] = set()
        with open(path, "rb") as f:
            for n, sample in enumerate(samples):
                if sample.key in seen:
                    continue  # a key in several runs is rejected once, at its first
                seen.add(sample.key)
                item = f"{rel}#{sample.key}"
                if wanted_ext:
                    media = [wanted_ext] if wanted_ext in sample.members else []
                else:
                    media = sorted(e for e in sample.members if e in media_exts)
                reason = _sample_problem(sample, runs[sample.key], media, size, pool_name, pool, media_exts, wanted_ext)
                if reason is None and problem and n == len(samples) - 1:
                    reason = f"the tar stops being readable after this sample ({problem}): its members may be cut off"
                if reason is None:
                    try:
                        labels = _wds_labels(f, sample)
                    except ValueError as exc:
                        reason = str(exc)
                if reason is not None:
                    reject(item, reason)
                    continue
                m = sample.members[media[0]]
                ids.append(item)
                locators.append(encode(Locator(src=str(path), offset=m.offset, size=m.size, name=m.name)))
                label_rows.append(labels)
    return Listing(ids, locators, _label_table(label_rows, pool_name, pool.label_columns), rejects)


LISTERS = {"table": list_table_items, "webdataset": list_webdataset_items}


def list_items(pool_name: str, pool: Any, base_dir: Path) -> Listing:
    """The items of a pool in a container format (``pool.format`` other than ``files``)."""
    return LISTERS[pool.format](pool_name, pool, base_dir)
