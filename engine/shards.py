"""Arrow shards: the schema, a writer that commits atomically, and a reader.

One row per sample (see docs/output.md). Schema metadata holds the recipe hash, the
engine version and a ``huggingface`` key so that ``datasets`` types the media column.

Example::

    with ShardWriter(Store.open("out"), "train/train-00000-of-00001.arrow", schema) as w:
        for row in rows:
            w.write_row(row)
    print(w.sha256, w.bytes)
    table = read_shard("out/train/train-00000-of-00001.arrow")
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .errors import ShardError
from .layout import SHARD_EXTENSIONS
from .report import count
from .storage import Store, is_uri, open_filesystem, write_hint
from .synth import SOURCE_TYPE, Synthesizer

# Rows are written in fixed-size batches: bounded worker memory, and batch boundaries
# (and so the bytes) do not depend on timing.
BATCH_ROWS = 64

_ARROW_TO_HF = {
    pa.string(): "string", pa.large_string(): "large_string", pa.int8(): "int8", pa.int16(): "int16",
    pa.int32(): "int32", pa.int64(): "int64", pa.uint8(): "uint8", pa.uint16(): "uint16",
    pa.uint32(): "uint32", pa.uint64(): "uint64", pa.float16(): "float16", pa.float32(): "float32",
    pa.float64(): "float64", pa.bool_(): "bool", pa.null(): "null", pa.binary(): "binary",
}


def _hf_feature(typ: pa.DataType) -> dict[str, Any]:
    if typ in _ARROW_TO_HF:
        return {"dtype": _ARROW_TO_HF[typ], "_type": "Value"}
    if pa.types.is_fixed_size_list(typ):
        return {"feature": _hf_feature(typ.value_type), "length": typ.list_size, "_type": "List"}
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return {"feature": _hf_feature(typ.value_type), "_type": "List"}
    if pa.types.is_struct(typ):
        return {typ.field(i).name: _hf_feature(typ.field(i).type) for i in range(typ.num_fields)}
    if pa.types.is_timestamp(typ):
        return {"dtype": f"timestamp[{typ.unit}]", "_type": "Value"}
    return {"dtype": "string", "_type": "Value"}


def shard_schema(synth: Synthesizer, metadata: dict[str, Any]) -> pa.Schema:
    """The schema of every shard a synthesizer writes, with provenance metadata.

    Example: ``shard_schema(synth, {"recipe_hash": h, "engine_version": v})``
    """
    dim = synth.embedding_dim()
    fields = [pa.field("sample_id", pa.string()), pa.field("split", pa.string())]
    fields += synth.media_fields()
    fields += synth.label_fields()
    fields += [
        pa.field("sources", pa.list_(SOURCE_TYPE)),
        pa.field("params", pa.string()),
        pa.field("embedding", pa.list_(pa.float32(), dim)),
    ]
    names = [f.name for f in fields]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:  # a row dict holds one value per name: the other column would be lost
        raise ShardError(
            f"synthesizer {synth.type!r}: its rows would have {count(len(doubled), 'column name')} twice "
            f"({', '.join(repr(n) for n in doubled)}; columns: {', '.join(names)}); every column needs its own "
            "name: this is a bug in the synthesizer's media_fields / label_fields (labels named like a row "
            "column, or like each other, must be refused with a recipe error)"
        )
    hf = {}
    media = synth.hf_media_features()
    for f in fields:
        hf[f.name] = media.get(f.name) or _hf_feature(f.type)
    meta = {
        b"shardsmith": json.dumps(metadata, sort_keys=True).encode(),
        b"huggingface": json.dumps({"info": {"features": hf}}).encode(),
    }
    return pa.schema(fields, metadata=meta)


class _HashingSink:
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, f: Any):
        self._f = f
        self.hash = hashlib.sha256()
        self.bytes = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.hash.update(view)
        self.bytes += view.nbytes
        return self._f.write(view)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:  # the store commits (or discards) the file itself
        self.closed = True

    def writable(self) -> bool:
        return True


class ShardWriter:
    """Writes rows in fixed-size batches to a file that appears whole or not at all
    (a temporary name and a rename locally; one upload on an object store)."""

    def __init__(self, store: Store, rel: str, schema: pa.Schema, fmt: str = "arrow"):
        self.store = store
        self.rel = rel
        self.schema = schema
        self.fmt = fmt
        self._pending: list[dict[str, Any]] = []
        self._writer: Any = None
        self._stack = contextlib.ExitStack()
        self._sink: _HashingSink | None = None
        self.rows = 0
        self.bytes = 0
        self.sha256 = ""

    def __enter__(self) -> "ShardWriter":
        f = self._stack.enter_context(self.store.open_output(self.rel))
        self._sink = _HashingSink(f)
        out = pa.PythonFile(self._sink, mode="w")
        try:
            if self.fmt == "arrow":
                self._writer = ipc.new_stream(out, self.schema)
            else:
                self._writer = pq.ParquetWriter(out, self.schema, compression="zstd")
        except OSError as exc:
            self._stack.__exit__(type(exc), exc, None)
            raise ShardError(f"{self.store.display(self.rel)}: cannot create shard ({_reason(exc)})") from None
        return self

    def write_row(self, row: dict[str, Any]) -> None:
        self._pending.append(row)
        if len(self._pending) >= BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        batch = pa.RecordBatch.from_pylist(self._pending, schema=self.schema)
        try:
            if self.fmt == "arrow":
                self._writer.write_batch(batch)
            else:
                self._writer.write_table(pa.Table.from_batches([batch]))
        except OSError as exc:
            raise ShardError(
                f"{self.store.display(self.rel)}: write failed ({_reason(exc)}){write_hint(exc)}"
            ) from None
        self.rows += len(self._pending)
        self._pending = []

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            with contextlib.suppress(Exception):
                self._stack.__exit__(exc_type, exc, tb)  # discards the temporary file
            return
        try:
            self._flush()
            self._writer.close()
        except BaseException as err:
            with contextlib.suppress(Exception):
                self._stack.__exit__(type(err), err, None)
            if isinstance(err, OSError):
                raise ShardError(
                    f"{self.store.display(self.rel)}: write failed ({_reason(err)}){write_hint(err)}"
                ) from None
            raise
        assert self._sink is not None
        self.sha256 = self._sink.hash.hexdigest()
        self.bytes = self._sink.bytes
        try:
            self._stack.__exit__(None, None, None)  # commit: rename or upload
        except OSError as err:
            raise ShardError(
                f"{self.store.display(self.rel)}: cannot commit shard ({_reason(err)}){write_hint(err)}"
            ) from None


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc).splitlines()[0][:300]


def read_shard(path: str | Path) -> pa.Table:
    """Read one shard (Arrow IPC stream or Parquet), local or on an object store.

    Example: ``read_shard("out/train/train-00000-of-00002.arrow").num_rows``
    """
    text = str(path)
    try:
        if is_uri(text):

            fs, key = open_filesystem(text)
            with fs.open_input_file(key) as f:
                if text.endswith(SHARD_EXTENSIONS["parquet"]):
                    return pq.read_table(f)
                return ipc.open_stream(f).read_all()
        if text.startswith("file://"):
            text = text[len("file://"):]
        if not Path(text).is_file():  # pq.read_table would read a folder as an (empty) dataset
            raise ShardError(f"{text}: cannot read shard (not a file); re-run the recipe to rewrite it")
        if text.endswith(SHARD_EXTENSIONS["parquet"]):
            return pq.read_table(text)
        with pa.memory_map(text) as source:
            return ipc.open_stream(source).read_all()
    except (ValueError, OSError) as exc:  # pa.ArrowInvalid, or a URI scheme open_filesystem refuses
        raise ShardError(f"{text}: cannot read shard ({exc}); re-run the recipe to rewrite it") from None


def read_columns(shard: Path | str, columns: list[str]) -> pa.Table:
    """Only the named columns of a shard that it has (Parquet reads just those; Arrow is
    memory-mapped). ``shard`` is a local path or an object-store URI (then read whole).

    Example: ``read_columns(shard, ["sample_id", "params"]).column_names``
    """
    if not is_uri(shard) and str(shard).endswith(".parquet"):
        try:
            have = pq.read_schema(shard).names
            return pq.read_table(shard, columns=[c for c in columns if c in have])
        except (pa.ArrowInvalid, OSError) as exc:
            raise ShardError(f"{shard}: cannot read shard ({exc}); re-run the recipe to rewrite it") from None
    table = read_shard(shard)
    return table.select([c for c in columns if c in table.column_names])
