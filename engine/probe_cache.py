"""The probe cache: every source is validated in full once, not once per run.

Indexing a pool decodes every frame of every audio file and every image (see
:mod:`engine.pools`); an hour of audio costs about a second. The verdict (the
:class:`~engine.audio.io.AudioInfo` or image size, or the reason it was rejected) is kept
here, keyed by what was probed and how (:data:`PROBE_VERSION`, the probe's settings, the
item's locator) and the :class:`~engine.fingerprint.Fingerprint` of the file it lives in.
A file that changes gets a new fingerprint and is probed again; one whose decode failed
in a worker is recorded here as rejected (:meth:`ProbeCache.reject`), so the next index
leaves it out.

The content digest of each local file is kept too (:meth:`ProbeCache.keep_digests`), with
its :func:`~engine.fingerprint.stat_key`: a later index of a file whose device, inode,
size, modification and change times are unchanged takes the digest without reading the
file (:meth:`ProbeCache.digests`); a write moves the change time, so a changed file is
read again.

One SQLite file, shared by every run of this user: ``$SHARDSMITH_CACHE_DIR/probes.sqlite3``
(default ``$XDG_CACHE_HOME/shardsmith``, else ``~/.cache/shardsmith``).
``SHARDSMITH_CACHE_DIR=off`` turns it off; a cache that cannot be opened is skipped (every
file is probed), never an error.

Example::

    cache = ProbeCache.default()
    hit = cache.get(key)           # None, or ("ok", {...}) / ("bad", "reason")
    cache.put_many({key: ("ok", {"frames": 16000, ...})})
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from .fingerprint import Fingerprint, StatKey

# Bump when what a probe checks changes: every cached verdict is then made again.
PROBE_VERSION = 3
ENV = "SHARDSMITH_CACHE_DIR"
# Bump when how a file's digest is made changes (engine.fingerprint): kept digests are then made again.
DIGEST_VERSION = 1

Verdict = tuple[str, Any]  # ("ok", info as a dict) or ("bad", reason)


def cache_dir() -> Path | None:
    """Where the cache lives (None when ``SHARDSMITH_CACHE_DIR=off``)."""
    chosen = os.environ.get(ENV)
    if chosen is not None:
        return None if chosen.strip().lower() in ("off", "none", "0", "") else Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "shardsmith"


def probe_key(kind: str, settings: Mapping[str, Any], locator: str, fp: Fingerprint) -> str:
    """The cache key of probing ``locator`` (in a file of fingerprint ``fp``) as ``kind``
    with ``settings``."""
    blob = json.dumps([PROBE_VERSION, kind, dict(settings), locator, fp.size, fp.mtime_ns, fp.digest],
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class ProbeCache:
    """Probe verdicts by key (see the module docstring). ``path=None``: a cache that keeps
    nothing."""

    def __init__(self, path: Path | None):
        self.path = path
        self._db: sqlite3.Connection | None = None
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS probes (key TEXT PRIMARY KEY, verdict TEXT NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, stat TEXT NOT NULL, "
                       "digest TEXT NOT NULL)")
            self._db = db
        except (OSError, sqlite3.Error):
            self.path = None  # unusable (read-only home, full disk): probe everything, keep nothing

    @classmethod
    def default(cls) -> "ProbeCache":
        folder = cache_dir()
        return cls(None if folder is None else folder / "probes.sqlite3")

    @property
    def enabled(self) -> bool:
        return self._db is not None

    def _rows(self, select: str, keys: list[str]) -> Iterator[tuple]:
        """The rows of ``select ... WHERE <column> IN (...)`` for ``keys``, 500 at a time
        (SQLite's limit on bound parameters); sqlite3.Error passes to the caller."""
        assert self._db is not None
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            yield from self._db.execute(f"{select} IN ({','.join('?' * len(part))})", part)

    def _write(self, insert: str, rows: list[tuple]) -> None:
        """``rows`` in one transaction (a failure to write is ignored: the cache is only a cache)."""
        if self._db is None or not rows:
            return
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(insert, rows)
        except sqlite3.Error:
            pass

    def get_many(self, keys: Iterable[str]) -> dict[str, Verdict]:
        """The cached verdicts of those ``keys`` that have one."""
        if self._db is None:
            return {}
        found: dict[str, Verdict] = {}
        try:
            for key, text in self._rows("SELECT key, verdict FROM probes WHERE key", list(dict.fromkeys(keys))):
                status, value = json.loads(text)
                found[key] = (status, value)
        except (sqlite3.Error, ValueError):
            return found
        return found

    def put_many(self, verdicts: Mapping[str, Verdict]) -> None:
        """Keep ``verdicts`` (a failure to write is ignored: the cache is only a cache)."""
        self._write("INSERT OR REPLACE INTO probes (key, verdict) VALUES (?, ?)",
                    [(k, json.dumps(list(v), separators=(",", ":"))) for k, v in verdicts.items()])

    def digests(self, stats: Mapping[str, StatKey]) -> dict[str, str]:
        """The kept content digests of those local files (path -> :func:`~engine.fingerprint.stat_key`)
        whose stat is still the one they were kept with."""
        if self._db is None or not stats:
            return {}
        found: dict[str, str] = {}
        try:
            for path, kept, digest in self._rows("SELECT path, stat, digest FROM digests WHERE path", list(stats)):
                if json.loads(kept) == [DIGEST_VERSION, *stats[path]]:
                    found[path] = digest
        except (sqlite3.Error, ValueError):
            return found
        return found

    def keep_digests(self, digests: Mapping[str, tuple[StatKey, str]]) -> None:
        """Keep the digests of local files (path -> (stat key, digest)) for later runs."""
        self._write("INSERT OR REPLACE INTO digests (path, stat, digest) VALUES (?, ?, ?)",
                    [(p, json.dumps([DIGEST_VERSION, *k]), d) for p, (k, d) in digests.items()])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> "ProbeCache":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


__all__ = ["ProbeCache", "PROBE_VERSION", "probe_key", "cache_dir"]
