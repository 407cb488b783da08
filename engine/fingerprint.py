"""Content fingerprints of source files: what the pool index saw, checked again later.

A pool is validated once, when it is indexed; every row is then drawn from files that
are assumed unchanged. A file truncated, rewritten or replaced after that (by a sync, a
re-export, a colleague) would be read past its new end or mixed into the output as a
second dataset. So the index keeps a :class:`Fingerprint` of every source file (a
container's for items inside tables and tars), and

- a worker checks each file against it the first time it opens it
  (:func:`verify`, armed by :func:`expect`); a different file is a
  :class:`SourceChangedError` that names it: the run stops, nothing is written from it;
- a resume compares the new index's fingerprints with the ones its output was started
  with (``pool_index.parquet``) and refuses, naming the files that changed.

A fingerprint is the size, the modification time and a BLAKE2b digest of the content:
the whole file up to ``WHOLE_MAX_BYTES``; beyond that its first and last 64 KiB and 8
blocks of 4 KiB spread evenly between them (about 200 KiB read, whatever the size), so
fingerprinting a large corpus costs a stat and a few reads per file. The identity of a
file's content (:attr:`Fingerprint.content`) is size and digest: a corpus copied with new
modification times is the same corpus.

Example::

    fp = fingerprint("noise/car/001.flac")
    expect({"noise/car/001.flac": fp})
    verify("noise/car/001.flac")        # raises SourceChangedError if the file changed
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from dataclasses import dataclass
from typing import Mapping

from .errors import SourceChangedError
from .storage import source_location

WHOLE_MAX_BYTES = 1 << 20
EDGE_BYTES = 64 << 10
BLOCK_BYTES = 4 << 10
INNER_BLOCKS = 8


@dataclass(frozen=True)
class Fingerprint:
    """Size in bytes, modification time (ns; 0 where a store has none) and content digest."""

    size: int
    mtime_ns: int
    digest: str

    @property
    def content(self) -> str:
        """What identifies the content: ``size:digest`` (the modification time left out)."""
        return f"{self.size}:{self.digest}"


def _sample_offsets(size: int) -> list[tuple[int, int]]:
    """(offset, length) of the stretches hashed in a file of ``size`` bytes."""
    if size <= WHOLE_MAX_BYTES:
        return [(0, size)]
    inner_start, inner_stop = EDGE_BYTES, size - EDGE_BYTES - BLOCK_BYTES
    spots = [inner_start + (inner_stop - inner_start) * k // (INNER_BLOCKS + 1) for k in range(1, INNER_BLOCKS + 1)]
    return [(0, EDGE_BYTES), *[(s, BLOCK_BYTES) for s in spots], (size - EDGE_BYTES, EDGE_BYTES)]


def _digest(read_at, size: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(size.to_bytes(8, "little"))
    for offset, length in _sample_offsets(size):
        h.update(read_at(offset, length))
    return h.hexdigest()


def fingerprint(path: str) -> Fingerprint:
    """The fingerprint of a local file or an object (``s3://bucket/key``); OSError if it
    cannot be read (the probe names the reason).

    Example: ``fingerprint("speech/a.flac").content  # '48044:3f1c...'``
    """
    remote = source_location(path)
    if remote is not None:
        fs, key = remote
        info = fs.get_file_info(key)
        size = int(info.size or 0)
        mtime_ns = int(info.mtime_ns or 0) if info.mtime is not None else 0
        with fs.open_input_file(key) as f:
            return Fingerprint(size, mtime_ns, _digest(f.read_at, size))
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the open
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path}: not a regular file")
        return Fingerprint(st.st_size, st.st_mtime_ns, _digest(lambda o, n: os.pread(fd, n, o), st.st_size))
    finally:
        os.close(fd)


# A file changed this recently may still change within its timestamps' granularity
# without a new mtime or ctime: its digest is not kept for a later run (git's "racy" case).
SETTLED_NS = 2_000_000_000

StatKey = tuple[int, int, int, int, int]  # device, inode, size, mtime_ns, ctime_ns


def stat_key(path: str) -> StatKey | None:
    """What a later run compares to trust a local file's digest without reading it again:
    its device, inode, size, modification and change times (a write changes the change
    time, and no tool sets it back). None for an object, or a file that cannot be stat'ed
    or is not a regular file.

    Example: ``stat_key("speech/a.flac")  # (2049, 1234, 48044, 1700000000000000000, ...)``
    """
    if source_location(path) is not None:
        return None
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def settled(key: StatKey, now_ns: int | None = None) -> bool:
    """Whether a file of this :func:`stat_key` last changed long enough ago
    (:data:`SETTLED_NS`) for its digest to be kept by its stat."""
    now = time.time_ns() if now_ns is None else now_ns
    return now - max(key[3], key[4]) > SETTLED_NS


# --------------------------------------------------------------------------- in a worker

_LOCK = threading.Lock()
_EXPECTED: Mapping[str, Fingerprint] = {}
_SEEN: dict[str, tuple[int, int]] = {}  # path -> (size, mtime_ns) last found unchanged


def expect(fingerprints: Mapping[str, Fingerprint]) -> None:
    """Arm :func:`verify` in this process with the fingerprints of a pool index (a worker
    calls it before its shard; an empty mapping disarms it)."""
    global _EXPECTED
    with _LOCK:
        if fingerprints is not _EXPECTED:
            _EXPECTED = fingerprints
            _SEEN.clear()


def verify(path: str) -> None:
    """Raise :class:`SourceChangedError` when ``path`` is not the file its pool index
    fingerprinted. A local file costs a ``stat`` per call (its content is hashed again only
    when its size or time changed); an object is checked once per process. Files the
    index did not fingerprint, and every file when nothing is armed, pass.
    """
    expected = _EXPECTED.get(path)
    if expected is None:
        return
    remote = source_location(path)
    try:
        if remote is not None:
            if path in _SEEN:
                return
            now = fingerprint(path)
        else:
            st = os.stat(path)
            if _SEEN.get(path) == (st.st_size, st.st_mtime_ns):
                return
            if (st.st_size, st.st_mtime_ns) == (expected.size, expected.mtime_ns):
                _SEEN[path] = (st.st_size, st.st_mtime_ns)
                return
            now = fingerprint(path)
    except OSError as exc:
        raise SourceChangedError(path, f"it cannot be read any more: {exc.strerror or exc}") from None
    if now.size != expected.size:
        raise SourceChangedError(path, f"size {expected.size} -> {now.size} bytes")
    if now.digest != expected.digest:
        raise SourceChangedError(path, "same size, different content")
    _SEEN[path] = (now.size, now.mtime_ns)


__all__ = ["Fingerprint", "SourceChangedError", "fingerprint", "expect", "verify", "stat_key", "settled"]
