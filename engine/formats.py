"""Pool formats: how the items of a pool are listed from what its ``paths`` name.

``format: files`` (the default) is loose media files, listed by ``engine.pools``. The
formats here list items that live inside containers, each with a stable id that names
the container and the key (``data/train-00003.parquet#row=1821``), a locator the readers
open (:mod:`engine.sources`), and its labels:

- ``table`` (here): Parquet or Arrow (file or stream) tables whose media column is the
  Hugging Face ``Audio`` / ``Image`` struct (bytes, or a path relative to the table), as
  ``datasets`` writes them (``to_parquet``, ``save_to_disk``, the Hub's Parquet) and as
  shardsmith writes its shards; local or on an object store. A path may be a table file,
  a glob, a ``datasets.save_to_disk`` folder or a shardsmith output folder. Rows of a
  shardsmith output carry their upstream provenance as labels (``upstream_sample_id``,
  ``upstream_recipe_hash``). Only the schema and the label columns are read here; media
  bytes are read by workers a batch at a time.
- ``webdataset``: uncompressed WebDataset tar shards, listed from their headers by
  :mod:`engine.webdataset_tars`; a worker reads the media member's bytes by offset.
- ``kaldi``: Kaldi / ESPnet data dirs (``wav.scp``, optional ``segments``, ``text``,
  ``utt2spk``, ``spk2gender``), listed by :mod:`engine.kaldi_dirs`.
- ``lhotse``: Lhotse JSONL manifests (cuts, or recordings and supervisions), listed by
  :mod:`engine.lhotse_manifests`.

All four read local files and objects (``s3://...``) alike.

Items of the last two are segments of recordings (:class:`engine.sources.Segment`),
read by seeking inside the recording's file.

Example::

    listing = list_items("hub", recipe.pools["hub"], recipe.base_dir)
    listing.ids[0], listing.locators[0]
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .errors import InputError
from .tables import duplicate_columns
from .kaldi_dirs import list_kaldi_items
from .layout import LEGACY_RUN_RECORD_FILE, RUN_RECORD_FILE, STATS_SUFFIX, is_temporary, parse_shard_path
from .lhotse_manifests import list_lhotse_items
from .sources import Listing, Locator, encode, open_container, table_kind
from .storage import Store, glob_uri, is_uri
from .webdataset_tars import list_webdataset_items

TABLE_SUFFIXES = (".parquet", ".arrow")
# Columns of a shardsmith shard that describe the synthesis, not the item: not labels.
SHARD_COLUMNS = frozenset({"sample_id", "split", "sources", "params", "embedding", "sampling_rate",
                           "duration_s", "width", "height", "objects"})
UPSTREAM_SAMPLE_ID = "upstream_sample_id"
UPSTREAM_RECIPE_HASH = "upstream_recipe_hash"


def _plain(t: pa.DataType) -> bool:
    return (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)
            or pa.types.is_floating(t) or pa.types.is_boolean(t))


def _shard_files(store: Store, names: list[str]) -> list[str]:
    """The committed shards of a shardsmith output (a shard with its stats record)."""
    present = set(names)
    found = []
    for rel in names:
        parsed = parse_shard_path(rel)
        if parsed and rel.endswith(TABLE_SUFFIXES) and not is_temporary(rel.rsplit("/", 1)[-1]):
            split, name = parsed
            if f"{split}/{name}{STATS_SUFFIX}" in present:
                found.append(store.display(rel))
    return found


def _tables_of(pool_name: str, i: int, pattern: str, base_dir: Path) -> tuple[list[str], bool]:
    """The table files (local paths or object URIs) a ``paths`` entry names, and whether
    they are the shards of a shardsmith output."""
    where = f"pools.{pool_name}.paths[{i}]"
    full = pattern if is_uri(pattern) or os.path.isabs(pattern) else str(base_dir / pattern)
    if any(c in pattern for c in "*?["):
        files = glob_uri(full) if is_uri(full) else sorted(
            m for m in glob.glob(full, recursive=True) if not os.path.isdir(m))
        if not files:
            raise InputError(f"{where}: {pattern!r} matches no files (looked for {full})")
        return files, False
    store = Store.open(full)
    names = store.list()
    if not names:  # a single file, or nothing
        if store.exists(""):
            return [full], False
        raise InputError(f"{where}: {full} not found")
    if RUN_RECORD_FILE in names or LEGACY_RUN_RECORD_FILE in names:
        files = _shard_files(store, names)
        if not files:
            raise InputError(f"{where}: {pattern!r} is a shardsmith output without a finished shard")
        return files, True
    if "state.json" in names:  # datasets.save_to_disk: its Arrow files in order
        try:
            data = [d["filename"] for d in json.loads(store.read_bytes("state.json"))["_data_files"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{store.display('state.json')}: not a datasets state.json ({exc})") from None
        return [store.display(n) for n in data], False
    files = [store.display(n) for n in names if n.endswith(TABLE_SUFFIXES)]
    if not files:
        raise InputError(f"{where}: folder {full} holds no .parquet or .arrow table")
    return files, False


def _schema(path: str, kind: str) -> tuple[pa.Schema, int]:
    with open_container(path) as src:
        if kind == "parquet":
            f = pq.ParquetFile(src)
            return f.schema_arrow, f.metadata.num_rows
        if kind == "arrow-file":
            reader = ipc.open_file(src)
            return reader.schema, sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
        reader = ipc.open_stream(src)
        return reader.schema, sum(b.num_rows for b in reader)


def _read_columns(path: str, kind: str, columns: list[str]) -> pa.Table:
    with open_container(path) as src:
        if kind == "parquet":
            return pq.read_table(src, columns=columns)
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
                kind = table_kind(path)  # parquet, arrow file or stream: read once per table
                schema, rows = _schema(path, kind)
            except (OSError, pa.ArrowException) as exc:
                rejects.append({"pool": pool_name, "path": str(path),
                                "reason": f"not a readable Parquet or Arrow table ({str(exc).splitlines()[0][:200]})"})
                continue
            if media not in schema.names:
                raise InputError(
                    f"{path}: has no column {media!r} (columns: {', '.join(schema.names)}); set "
                    f"pools.{pool_name}.media_column to the Audio/Image column"
                )
            dups = duplicate_columns(schema.names)
            if media in dups:
                raise InputError(f"{path}: has {schema.names.count(media)} columns named {media!r}; rewrite the "
                                 "table with one Audio/Image column of that name")
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
            doubled = [c for c in dups if c in wanted or c == pool.key_column]
            if doubled:
                raise InputError(
                    f"{path}: has several columns named {', '.join(repr(c) for c in doubled)}, so its labels would "
                    f"silently become one; rename them in the table, or leave them out with "
                    f"pools.{pool_name}.label_columns (a list of the columns to carry)"
                )
            extra = [c for c in ([pool.key_column] if pool.key_column else []) + (["sample_id"] if upstream else [])
                     if c not in wanted]
            cols = _read_columns(path, kind, wanted + extra)
            rel = path if is_uri(path) else Path(os.path.relpath(path, base_dir)).as_posix()
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
                locators.append(encode(Locator(src=path if is_uri(path) else os.path.abspath(path),
                                               row=row, column=media)))
    labels = pa.concat_tables(label_tables, promote_options="permissive") if label_tables else None
    return Listing(ids, locators, labels, rejects)


LISTERS = {"table": list_table_items, "kaldi": list_kaldi_items, "lhotse": list_lhotse_items,
           "webdataset": list_webdataset_items}


def list_items(pool_name: str, pool: Any, base_dir: Path) -> Listing:
    """The items of a pool in a container format (``pool.format`` other than ``files``)."""
    return LISTERS[pool.format](pool_name, pool, base_dir)
