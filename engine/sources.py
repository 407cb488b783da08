"""Where an item's media lives when it is not a file of its own: a row of a table (the
Hugging Face ``Audio`` / ``Image`` struct, as ``datasets`` and shardsmith write it), a
member of a tar, and optionally a segment of it (start, duration, channel).

Pools hand workers a *locator* string for every item; a plain file's locator is its
path, an item inside a container is ``item:`` followed by a query string::

    item:?src=/data/train-00003.parquet&row=1821&col=audio
    item:?src=/shards/train-0001.tar&offset=10240&size=96044&name=utt7.flac
    item:?src=/audio/rec1.flac&start=12.5&dur=3.2&ch=1          (a segment of a file)

:func:`open_media` turns a locator into something a decoder reads (a local path, or a
file-like object of the member's or row's bytes) and the segment to apply. Table rows
are read a record batch (or Parquet row group) at a time and kept in a bounded
per-process cache, so a worker never loads a whole table and reads each batch once.

Example::

    loc = Locator(src="/data/a.parquet", row=3, column="audio")
    raw, segment = open_media(encode(loc))
"""

from __future__ import annotations

import bisect
import functools
import io
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from . import fingerprint
from .errors import BadSourceError
from .storage import join_location, parent_location, source_location

PREFIX = "item:?"
# Decoded record batches kept per process (bytes of the media column); a sane default
# for a worker that samples from a few tables at random.
TABLE_CACHE_BYTES = int(os.environ.get("SHARDSMITH_TABLE_CACHE_MB", "256")) * 2**20


@dataclass(frozen=True)
class Segment:
    """A part of a recording: from ``start_s``, ``duration_s`` long (None: to its end),
    one ``channel`` of it (None: all channels)."""

    start_s: float = 0.0
    duration_s: float | None = None
    channel: int | None = None


@dataclass(frozen=True)
class Locator:
    """An item inside a container, and optionally a segment of it."""

    src: str  # the container (or the file) as a local path or an object-store URI
    row: int | None = None  # table: the row number, counted over the whole file
    column: str | None = None  # table: the media column (an Audio / Image struct)
    offset: int | None = None  # tar: the member's data offset in bytes
    size: int | None = None  # tar: the member's size in bytes
    name: str | None = None  # tar: the member's name (for messages and the decoder's format guess)
    segment: Segment | None = None

    @property
    def kind(self) -> str:
        if self.row is not None:
            return "table"
        if self.offset is not None:
            return "tar"
        return "file"


_FIELDS = {"src": str, "row": int, "col": str, "offset": int, "size": int, "name": str,
           "start": float, "dur": float, "ch": int}


def encode(loc: Locator) -> str:
    """The locator string of ``loc`` (a plain file without a segment is just its path)."""
    if loc.kind == "file" and loc.segment is None:
        return loc.src
    q: dict[str, Any] = {"src": loc.src}
    if loc.row is not None:
        q.update(row=loc.row, col=loc.column or "")
    if loc.offset is not None:
        q.update(offset=loc.offset, size=loc.size, name=loc.name or "")
    if loc.segment is not None:
        q["start"] = repr(float(loc.segment.start_s))
        if loc.segment.duration_s is not None:
            q["dur"] = repr(float(loc.segment.duration_s))
        if loc.segment.channel is not None:
            q["ch"] = loc.segment.channel
    return PREFIX + urlencode(q)


@functools.lru_cache(maxsize=8192)  # a worker decodes the same locators again and again; Locator is frozen
def decode(text: str) -> Locator:
    """The :class:`Locator` of a locator string (a plain path becomes a file locator)."""
    if not text.startswith(PREFIX):
        return Locator(src=text)
    q: dict[str, Any] = {}
    for key, value in parse_qsl(text[len(PREFIX):], keep_blank_values=True):
        if key in _FIELDS:
            q[key] = _FIELDS[key](value) if value != "" else None
    seg = None
    if "start" in q or "dur" in q or "ch" in q:
        seg = Segment(q.get("start") or 0.0, q.get("dur"), q.get("ch"))
    return Locator(src=q["src"], row=q.get("row"), column=q.get("col"), offset=q.get("offset"),
                   size=q.get("size"), name=q.get("name"), segment=seg)


def is_locator(text: str) -> bool:
    return isinstance(text, str) and text.startswith(PREFIX)


def with_segment(text: str, segment: Segment) -> str:
    """The locator of a segment of the item that ``text`` locates."""
    return encode(replace(decode(text), segment=segment))


def describe(text: str) -> str:
    """A short human name for messages: ``a.parquet#row=3``, ``x.tar#utt7.flac``."""
    loc = decode(text)
    if loc.kind == "table":
        where = f"{loc.src}#row={loc.row}"
    elif loc.kind == "tar":
        where = f"{loc.src}#{loc.name}"
    else:
        where = loc.src
    if loc.segment is not None:
        s = loc.segment
        where += f"@{s.start_s:g}s" + (f"+{s.duration_s:g}s" if s.duration_s is not None else "")
        where += f"/ch{s.channel}" if s.channel is not None else ""
    return where


@dataclass
class Listing:
    """The items of one pool before probing: ids, locators, labels (one row per item),
    and the entries refused while listing (``{"pool", "path", "reason"}``)."""

    ids: list[str]
    locators: list[str]
    labels: pa.Table | None
    rejects: list[dict[str, Any]] = field(default_factory=list)


def label_table(rows: list[dict[str, Any]], names: list[str]) -> pa.Table | None:
    """The labels ``names`` of ``rows`` as string columns, keeping only the columns some
    row has a value for (None when none has any).

    Example: ``label_table([{"text": "go"}, {}], ["text", "speaker"])  # one column, text``
    """
    kept = [n for n in names if any(r.get(n) is not None for r in rows)]
    if not kept:
        return None
    return pa.table({n: pa.array([None if r.get(n) is None else str(r[n]) for r in rows], pa.string())
                     for n in kept})


def open_container(src: str) -> IO[bytes]:
    """A binary file object of a local path (memory-mapped: skipping over record batches
    or members costs no read) or of an object URI."""
    remote = source_location(src)
    if remote is None:
        return pa.memory_map(src, "r")
    fs, key = remote
    return fs.open_input_file(key)


# --------------------------------------------------------------------------- tables


class _TableIndex:
    """Where each row of one table file lives: Parquet row groups or Arrow record batches."""

    def __init__(self, src: str):
        self.src = src
        self.kind, self.starts = _batch_starts(src)

    def locate(self, row: int) -> tuple[int, int]:
        k = bisect.bisect_right(self.starts, row) - 1
        if k < 0 or k >= len(self.starts) - 1:
            raise BadSourceError(self.src, f"row {row} is past the table's {self.starts[-1]} rows")
        return k, row - self.starts[k]


def table_kind(src: str) -> str:
    """``parquet``, ``arrow-file`` or ``arrow-stream`` by the file's first bytes."""
    with open_container(src) as f:
        head = f.read(8)
    if head[:4] == b"PAR1":
        return "parquet"
    if head[:6] == b"ARROW1":
        return "arrow-file"
    return "arrow-stream"


def _batch_starts(src: str) -> tuple[str, list[int]]:
    kind = table_kind(src)
    sizes: list[int] = []
    with open_container(src) as f:
        if kind == "parquet":
            meta = pq.ParquetFile(f).metadata
            sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        elif kind == "arrow-file":
            reader = ipc.open_file(f)
            sizes = [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)]
        else:
            for batch in ipc.open_stream(f):
                sizes.append(batch.num_rows)
    starts = [0]
    for n in sizes:
        starts.append(starts[-1] + n)
    return kind, starts


def read_batch(src: str, kind: str, k: int, columns: list[str] | None = None) -> pa.RecordBatch | pa.Table:
    """Batch (or row group) ``k`` of a table file, only ``columns``."""
    with open_container(src) as f:
        if kind == "parquet":
            return pq.ParquetFile(f).read_row_group(k, columns=columns)
        if kind == "arrow-file":
            batch = ipc.open_file(f).get_batch(k)
        else:
            for i, batch in enumerate(ipc.open_stream(f)):
                if i == k:
                    break
            else:
                raise BadSourceError(src, f"record batch {k} not found")
    return batch.select(columns) if columns is not None else batch


class _BatchCache:
    """Per-process LRU of the media column of recently read batches, bounded in bytes."""

    def __init__(self, budget: int):
        self.budget = budget
        self.used = 0
        self.items: OrderedDict[tuple[str, str, int], pa.Array] = OrderedDict()
        self.indexes: dict[str, _TableIndex] = {}
        self.lock = threading.Lock()  # the pool indexer probes from a thread pool

    def media(self, src: str, column: str, row: int) -> dict[str, Any]:
        with self.lock:
            index = self.indexes.get(src)
            if index is None:
                index = self.indexes[src] = _TableIndex(src)
            k, i = index.locate(row)
            key = (src, column, k)
            arr = self.items.get(key)
            if arr is not None:
                self.items.move_to_end(key)
        if arr is None:
            batch = read_batch(src, index.kind, k, [column])
            arr = batch.column(0)
            if isinstance(arr, pa.ChunkedArray):
                arr = arr.combine_chunks()
            with self.lock:
                self.items[key] = arr
                self.used += arr.nbytes
                while self.used > self.budget and len(self.items) > 1:
                    _, old = self.items.popitem(last=False)
                    self.used -= old.nbytes
        value = arr[i].as_py()
        if not isinstance(value, dict):
            raise BadSourceError(f"{src}#row={row}", f"column {column!r} is not an Audio/Image struct (bytes, path)")
        return value


_BATCHES = _BatchCache(TABLE_CACHE_BYTES)


# --------------------------------------------------------------------------- opening


def open_media(text: str) -> tuple[str | IO[bytes], Segment | None]:
    """What a decoder reads for a locator: a path (a plain file, or a file a table row
    names) or a file-like object holding the item's bytes; and its segment, if any.

    Example: ``raw, seg = open_media(pool.paths[i])``
    """
    loc = decode(text)
    if loc.kind == "file":
        return loc.src, loc.segment
    fingerprint.verify(loc.src)  # in a worker: the container its pool index validated
    if loc.kind == "tar":
        try:
            with open_container(loc.src) as f:
                f.seek(int(loc.offset))
                data = f.read(int(loc.size))
        except OSError as exc:
            raise BadSourceError(describe(text), f"cannot read the tar member ({exc.strerror or exc})") from None
        if len(data) != loc.size:
            raise BadSourceError(describe(text), f"the tar is cut short: member needs {loc.size} bytes, {len(data)} are there")
        return io.BytesIO(data), loc.segment
    try:
        value = _BATCHES.media(loc.src, loc.column or "audio", int(loc.row))
    except (OSError, pa.ArrowException) as exc:
        raise BadSourceError(describe(text), f"cannot read the table row ({str(exc).splitlines()[0][:200]})") from None
    data, path = value.get("bytes"), value.get("path")
    if data:
        return io.BytesIO(data), loc.segment
    if path:
        return join_location(parent_location(loc.src), path), loc.segment  # a path beside the table
    raise BadSourceError(describe(text), f"column {loc.column!r} holds neither bytes nor a path")
