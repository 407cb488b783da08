"""Arrow shards: the schema, a writer that commits atomically, and a reader.

One row per sample (see ARCHITECTURE.md). Schema metadata holds the recipe hash, the
engine version and a ``huggingface`` key so that ``datasets`` types the media column.

Example::

    with ShardWriter(path, schema, "arrow") as w:
        w.write_rows(rows)
    print(w.sha256, w.bytes)
    table = read_shard(path)
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .errors import ShardError
from .synth import SOURCE_TYPE, Synthesizer

EXTENSIONS = {"arrow": ".arrow", "parquet": ".parquet"}
TMP_MARK = ".tmp-"
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
    hf = {}
    media = synth.hf_media_features()
    for f in fields:
        hf[f.name] = media.get(f.name) or _hf_feature(f.type)
    meta = {
        b"shardsmith": json.dumps(metadata, sort_keys=True).encode(),
        b"huggingface": json.dumps({"info": {"features": hf}}).encode(),
    }
    return pa.schema(fields, metadata=meta)


def tmp_path_for(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{uuid.uuid4().hex[:12]}")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ShardWriter:
    """Writes rows in batches to a temporary file; ``close()`` renames it into place."""

    def __init__(self, path: str | Path, schema: pa.Schema, fmt: str = "arrow"):
        self.path = Path(path)
        self.schema = schema
        self.fmt = fmt
        self._tmp = tmp_path_for(self.path)
        self._pending: list[dict[str, Any]] = []
        self._writer: Any = None
        self.rows = 0
        self.bytes = 0
        self.sha256 = ""

    def __enter__(self) -> "ShardWriter":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.fmt == "arrow":
                self._writer = ipc.new_stream(str(self._tmp), self.schema)
            else:
                self._writer = pq.ParquetWriter(str(self._tmp), self.schema, compression="zstd")
        except OSError as exc:
            raise ShardError(f"{self.path}: cannot create shard ({exc.strerror or exc})") from None
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
            raise ShardError(f"{self.path}: write failed ({exc.strerror or exc}); is the disk full?") from None
        self.rows += len(self._pending)
        self._pending = []

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            try:
                self._writer.close()
            except Exception:
                pass
            self._tmp.unlink(missing_ok=True)
            return
        self._flush()
        try:
            self._writer.close()
            self.sha256 = file_sha256(self._tmp)
            self.bytes = self._tmp.stat().st_size
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self._tmp.unlink(missing_ok=True)
            raise ShardError(f"{self.path}: cannot commit shard ({exc.strerror or exc}); is the disk full?") from None


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary name, then rename: readers never see half a file."""
    tmp = tmp_path_for(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ShardError(f"{path}: cannot write ({exc.strerror or exc}); is the disk full?") from None


def read_shard(path: str | Path) -> pa.Table:
    """Read one shard (Arrow IPC stream or Parquet) into a table.

    Example: ``read_shard("out/train/train-00000-of-00002.arrow").num_rows``
    """
    p = Path(path)
    try:
        if p.suffix == ".parquet":
            return pq.read_table(p)
        with pa.memory_map(str(p)) as source:
            return ipc.open_stream(source).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise ShardError(f"{p}: cannot read shard ({exc}); re-run the recipe to rewrite it") from None
