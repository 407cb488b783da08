"""Source pools: find the files a recipe names, probe each once, keep the good ones.

A pool is a list of globs or a manifest (CSV, JSONL or Parquet with a ``path`` column).
Manifest columns other than the path (``text``, ``label``, ``speaker``...) are labels,
carried into every output row made from that item. Bad files never reach a worker: they
are listed in :attr:`PoolIndex.rejects` with a reason.

Example::

    index = index_pools(recipe)
    speech = index.pools["speech"]
    print(len(speech), speech.seconds_available, len(index.rejects))
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import functools
import math
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pyarrow as pa

from . import sources
from .audio import io as audio_io
from .audio.generators import virtual_items
from .config import show
from .errors import BadSourceError, InputError
from .fingerprint import Fingerprint, StatKey, fingerprint, settled, stat_key
from .formats import list_items
from .probe_cache import ProbeCache, probe_key
from .recipe import AudioPool, Recipe
from .report import count, plural
from .storage import glob_uri, is_uri, join_location
from .tables import read_table, require_column
from .rng import stable_unit

# Probing runs through a mapper so that runtime.py can spread it over Ray for big pools
# while this module stays free of Ray: mapper(fn, items, sizes) with the size in bytes of
# each item's file (0 when unknown), for the mapper to balance the work.
Mapper = Callable[..., list[Any]]


@dataclass
class PoolItems:
    """The usable items of one pool, sorted by item id (the order sampling relies on)."""

    name: str
    kind: str
    items: list[str]
    paths: list[str]
    duration_s: np.ndarray
    sample_rate: np.ndarray
    channels: np.ndarray
    frames: np.ndarray
    holdout: np.ndarray
    label_schema: pa.Schema = field(default_factory=lambda: pa.schema([]))
    labels: list[dict[str, Any]] = field(default_factory=list)
    # Image pools: pixel size of each item after EXIF orientation (None for audio pools).
    width: np.ndarray | None = None
    height: np.ndarray | None = None
    # The content fingerprint (Fingerprint.content) of the file each item lives in ("" for
    # generated items): what a resume compares.
    fingerprints: list[str] = field(default_factory=list)
    # The files the items live in -> their fingerprints when indexed (workers check each
    # file against it before reading it: engine.fingerprint.verify).
    sources: dict[str, Fingerprint] = field(default_factory=dict)
    # Items whose full validation the probe cache knew (same content), and items decoded now.
    cached: int = 0
    probed: int = 0

    def __len__(self) -> int:
        return len(self.items)

    @property
    def seconds_available(self) -> float:
        return float(self.duration_s.sum())

    def eligible(self, holdout_split: bool) -> np.ndarray:
        """Indices a split may draw from.

        In a pool with held-out items, holdout splits draw only from them and every other
        split never does; a pool without a holdout serves every split in full.
        """
        if not self.holdout.any():
            return np.arange(len(self.items))
        return np.flatnonzero(self.holdout == holdout_split)

    def label_row(self, i: int) -> dict[str, Any]:
        return self.labels[i] if self.labels else {}


@dataclass
class PoolIndex:
    pools: dict[str, PoolItems]
    rejects: list[dict[str, Any]]
    # New for every indexing (so for every run): what a worker keeps between shards, such
    # as whole decodes of noise files, is kept for one run only, as the index was checked.
    token: str = field(default_factory=lambda: uuid.uuid4().hex, compare=False, repr=False)

    @functools.cached_property
    def sources(self) -> dict[str, Fingerprint]:
        """Every source file of every pool (a container for items inside one) -> its
        fingerprint when indexed (merged once per index: every shard task arms its worker
        with it)."""
        return {src: fp for pool in self.pools.values() for src, fp in pool.sources.items()}

    @property
    def cached(self) -> int:
        return sum(p.cached for p in self.pools.values())

    @property
    def probed(self) -> int:
        return sum(p.probed for p in self.pools.values())

    def summary(self) -> str:
        lines = []
        for name, p in self.pools.items():
            held = int(p.holdout.sum())
            size = (
                f"{float((p.width.astype(np.float64) * p.height).mean()) / 1e6 if len(p) else 0.0:7.2f} MP mean"
                if p.kind == "image" and p.width is not None
                else f"{p.seconds_available / 3600:9.3f} h"
            )
            lines.append(
                f"  pool {name:<12} {len(p):>7} {plural(len(p), 'item'):<5}  {size}"
                + (f"  ({held} held out)" if held else "")
            )
        if self.cached or self.probed:
            lines.append(f"  {count(self.probed, 'item')} decoded and checked in full now, {self.cached} known from "
                         "the probe cache (same content)")
        if self.rejects:
            lines.append(f"  {count(len(self.rejects), 'file')} rejected (see rejects.jsonl)")
        return "\n".join(lines)


def _item_id(path: Path | str, base_dir: Path) -> str:
    """A stable item id: the path relative to the recipe's folder, or the object's URI."""
    if isinstance(path, str) and is_uri(path):
        return path
    return Path(os.path.relpath(path, base_dir)).as_posix()


NOT_UTF8_REASON = ("file name is not valid UTF-8; rename it (names are stored as UTF-8 text in the outputs; "
                   "convmv -f latin1 -t utf8 --notest FILE renames a Latin-1 name)")


def utf8_name_problem(path: str) -> str | None:
    """None when ``path`` is valid UTF-8; else the path as it can be shown, its bad bytes
    written as ``\\xe9`` (Python holds such names as lone surrogates, which no UTF-8
    text, Arrow string or JSON reader takes).

    Example: ``utf8_name_problem(os.fsdecode(b"caf\\xe9.png")) == "caf\\\\xe9.png"``
    """
    try:
        path.encode("utf-8")
        return None
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")


def _path_value_problem(raw: Any) -> str | None:
    """Why a manifest's path cell names no file (None when it is a usable path)."""
    if raw is None or isinstance(raw, str) and not raw.strip():
        return "empty path in manifest"
    if not isinstance(raw, str):
        kind = {bytes: "binary data", list: "a list", dict: "an object", bool: "a boolean", int: "a number",
                float: "a number"}.get(
            type(raw), f"a {type(raw).__name__}")
        return (f"the path is {kind} ({show(raw, 60)}), not text; write the file's path as a string "
                "in the manifest")
    if "\x00" in raw:
        return (f"the path holds a NUL byte ({show(raw, 60)}), which no file name can; fix the path "
                "in the manifest")
    return None


def _resolve_files(
    pool_name: str, pool: AudioPool, base_dir: Path
) -> tuple[list[Path], pa.Table | None, list[dict[str, Any]]]:
    """List a pool's files (absolute, sorted, unique) and its label table, if any."""
    rejects: list[dict[str, Any]] = []
    if pool.paths is not None:
        found: set[Path] = set()
        remote: set[str] = set()
        for i, pattern in enumerate(pool.paths):
            if is_uri(pattern):
                matches_uri = glob_uri(pattern)
                if not matches_uri:
                    raise InputError(
                        f"pools.{pool_name}.paths[{i}]: {pattern!r} matches no objects; fix the pattern, "
                        "or check AWS_ENDPOINT_URL and the credentials"
                    )
                remote.update(matches_uri)
                continue
            full = pattern if os.path.isabs(pattern) else str(base_dir / pattern)
            matches = [Path(m) for m in glob.glob(full, recursive=True)]
            matches = [m for m in matches if not m.is_dir()]
            if not matches:
                raise InputError(
                    f"pools.{pool_name}.paths[{i}]: {pattern!r} matches no files "
                    f"(looked for {full}); fix the pattern or generate the data first"
                )
            found.update(Path(os.path.abspath(m)) for m in matches)
        if found and remote:
            raise InputError(
                f"pools.{pool_name}.paths: mixes local files and object-store URIs; "
                "keep each pool in one place (two pools can live in different places)"
            )
        return (sorted(remote) if remote else sorted(found)), None, rejects

    manifest_text = str(pool.manifest)
    manifest: Any = manifest_text if is_uri(manifest_text) else Path(manifest_text)
    if isinstance(manifest, Path) and not manifest.is_absolute():
        manifest = base_dir / manifest
    manifest_dir = manifest_text.rsplit("/", 1)[0] if isinstance(manifest, str) else str(manifest.parent)
    if pool.media_dir is not None:  # relative to the manifest's folder, like its entries
        manifest_dir = join_location(manifest_dir, pool.media_dir)
    manifest_name = str(manifest).rsplit("/", 1)[-1]
    table = read_table(manifest)
    require_column(table, pool.path_column, manifest, f"add it or set pools.{pool_name}.path_column")
    if table.num_rows == 0:
        raise InputError(f"{manifest}: manifest lists no files")
    raw_paths = table.column(pool.path_column).to_pylist()
    label_table = table.drop_columns([pool.path_column])
    keep_rows: list[int] = []
    files: list[Path] = []
    seen: dict[Path, int] = {}
    for row, raw in enumerate(raw_paths):
        problem = _path_value_problem(raw)
        if problem:
            rejects.append({"pool": pool_name, "path": f"{manifest}#row{row + 1}", "reason": problem})
            continue
        joined = join_location(manifest_dir, raw.strip())
        if raw != raw.strip() and not is_uri(joined):
            # A name may begin or end with a space: the path as written wins, then the
            # path without the spaces around it (a spreadsheet's padding).
            as_written = join_location(manifest_dir, raw)
            if os.path.lexists(as_written) or not os.path.lexists(joined):
                if not os.path.lexists(as_written):
                    rejects.append({
                        "pool": pool_name, "path": as_written,
                        "reason": f"file not found: tried {raw!r} as written and {raw.strip()!r} without the "
                                  "spaces around it; fix the path in the manifest",
                    })
                    continue
                joined = as_written
        p: Any = joined if is_uri(joined) else Path(joined)
        if p in seen:
            rejects.append(
                {
                    "pool": pool_name,
                    "path": str(p),
                    "reason": f"listed twice in {manifest_name} (rows {seen[p] + 1} and {row + 1}); the first is kept",
                }
            )
            continue
        seen[p] = row
        keep_rows.append(row)
        files.append(p)
    label_table = label_table.take(pa.array(keep_rows, type=pa.int64()))
    if any(isinstance(f, str) for f in files) and not all(isinstance(f, str) for f in files):
        raise InputError(
            f"{manifest}: lists both local files and object-store URIs; keep each pool in one place"
        )
    order = sorted(range(len(files)), key=lambda i: files[i])
    files = [files[i] for i in order]
    label_table = label_table.take(pa.array(order, type=pa.int64()))
    return files, label_table, rejects


def _list_pool(
    name: str, pool: Any, base_dir: Path
) -> tuple[list[str], list[str], list[str], pa.Table | None, list[dict[str, Any]]]:
    """``(locators, item ids, names for messages, labels, rejects)`` of a pool's items:
    loose files (``format: files``) or the rows or members of containers
    (:mod:`engine.formats`)."""
    if pool.format == "files":
        files, labels, rejects = _resolve_files(name, pool, base_dir)
        paths = [str(f) for f in files]
        return _utf8_names_only(name, paths, [_item_id(f, base_dir) for f in files], paths, labels, rejects)
    listing = list_items(name, pool, base_dir)
    return _utf8_names_only(name, listing.locators, listing.ids, listing.ids, listing.labels, listing.rejects)


def _utf8_names_only(
    name: str, locators: list[str], ids: list[str], shown: list[str], labels: pa.Table | None,
    rejects: list[dict[str, Any]],
) -> tuple[list[str], list[str], list[str], pa.Table | None, list[dict[str, Any]]]:
    """The listing without the items whose file name is not valid UTF-8 (bytes such as
    ``caf\\xe9.png`` from a Latin-1 system): each is a reject, as no output could name it."""
    bad = [i for i, (loc, item) in enumerate(zip(locators, ids)) if utf8_name_problem(loc) or utf8_name_problem(item)]
    if not bad:
        return locators, ids, shown, labels, rejects
    drop = set(bad)
    for i in bad:
        rejects.append({"pool": name, "path": utf8_name_problem(shown[i]) or shown[i], "reason": NOT_UTF8_REASON})
    keep = [i for i in range(len(locators)) if i not in drop]
    if labels is not None:
        labels = labels.take(pa.array(keep, type=pa.int64()))
    return ([locators[i] for i in keep], [ids[i] for i in keep], [shown[i] for i in keep], labels, rejects)


def _probe_audio(path: str) -> tuple[str, Any]:
    try:
        return ("ok", dataclasses.asdict(audio_io.probe(path)))
    except BadSourceError as exc:
        return ("bad", exc.reason)
    except Exception as exc:  # a probe must never take the indexer down
        return ("bad", f"cannot be read ({type(exc).__name__}: {exc})")


def source_of(locator: str) -> str:
    """The file an item lives in: its own path, or the container a locator points into."""
    return sources.decode(locator).src if sources.is_locator(locator) else locator


def _fingerprint_or_none(src: str) -> Fingerprint | None:
    try:
        return fingerprint(src)
    except Exception:  # noqa: BLE001 - unreadable here means unreadable to the probe, which names why
        return None


def _fingerprints(srcs: list[str], cache: ProbeCache | None) -> dict[str, Fingerprint | None]:
    """The fingerprint of each file (None: unreadable). A local file whose stat (device,
    inode, size, modification and change times) is the one the cache kept its digest with
    is not read again; the others are read (threads: it is I/O) and, once settled, kept."""
    if cache is None or not cache.enabled:
        return dict(zip(srcs, thread_mapper(_fingerprint_or_none, srcs, threads=16)))
    stats = {src: key for src in srcs if (key := stat_key(src)) is not None}
    fps: dict[str, Fingerprint | None] = {
        src: Fingerprint(stats[src][2], stats[src][3], digest) for src, digest in cache.digests(stats).items()}
    rest = [src for src in srcs if src not in fps]
    fps.update(zip(rest, thread_mapper(_fingerprint_or_none, rest, threads=16)))
    now = time.time_ns()
    cache.keep_digests({src: (key, fp.digest) for src in rest
                        if (key := stats.get(src)) is not None and (fp := fps[src]) is not None
                        and (fp.size, fp.mtime_ns) == key[2:4] and settled(key, now)})
    return {src: fps[src] for src in srcs}


@dataclass
class _Probed:
    """The verdict on each item (``("ok", info as a dict)`` or ``("bad", reason)``), the
    fingerprint of the file each lives in, and how many verdicts came from the cache."""

    verdicts: list[tuple[str, Any]]
    fingerprints: list[Fingerprint | None]
    cached: int
    probed: int

    def kept(self, locators: Sequence[str], keep: Sequence[int]) -> dict[str, Any]:
        """The PoolItems fields of fingerprints and counts for the kept items."""
        return {
            "fingerprints": [fp.content if (fp := self.fingerprints[i]) is not None else "" for i in keep],
            "sources": {source_of(locators[i]): fp for i in keep if (fp := self.fingerprints[i]) is not None},
            "cached": self.cached,
            "probed": self.probed,
        }


def _probe_all(kind: str, settings: dict[str, Any], probe_fn: Callable[[str], Any], locators: Sequence[str],
               mapper: Mapper | None, cache: ProbeCache | None) -> _Probed:
    """Fingerprint the files of ``locators`` (threads: it is I/O), take the verdicts the
    cache has for that content, and probe the rest through ``mapper``."""
    srcs = [source_of(loc) for loc in locators]
    fps = _fingerprints(list(dict.fromkeys(srcs)), cache)
    item_fps = [fps[src] for src in srcs]
    keys = [None if fp is None else probe_key(kind, settings, loc, fp) for loc, fp in zip(locators, item_fps)]
    hits = cache.get_many(k for k in keys if k is not None) if cache is not None else {}
    todo = [i for i, k in enumerate(keys) if k is None or k not in hits]
    sizes = [fp.size if (fp := item_fps[i]) is not None and not sources.is_locator(locators[i]) else 0 for i in todo]
    fresh = (mapper or thread_mapper)(probe_fn, [locators[i] for i in todo], sizes)
    verdicts: list[Any] = [hits.get(k) if k is not None else None for k in keys]
    new: dict[str, tuple[str, Any]] = {}
    for i, verdict in zip(todo, fresh):
        verdicts[i] = verdict
        if keys[i] is not None:
            new[keys[i]] = verdict
    if cache is not None:
        cache.put_many(new)
    return _Probed(verdicts, item_fps, cached=len(locators) - len(todo), probed=len(todo))


def select_holdout(pool: str, items: list[str], fraction: float) -> np.ndarray:
    """Which items a pool keeps for holdout splits: ``round(fraction * n)`` of them (at
    least one, never all), chosen by a hash of the pool and item.

    The choice depends on the pool and item only, not the seed: the unseen set stays the
    same when a recipe is re-run with another seed.
    """
    holdout = np.zeros(len(items), dtype=bool)
    if fraction > 0 and len(items) >= 2:
        n_hold = min(len(items) - 1, max(1, int(round(fraction * len(items)))))
        keys = np.array([stable_unit("holdout", pool, it) for it in items])
        holdout[np.argsort(keys, kind="stable")[:n_hold]] = True
    return holdout


def thread_mapper(fn: Callable[[str], Any], items: Sequence[str], sizes: Sequence[int] | None = None,
                  threads: int | None = None) -> list[Any]:
    """Default mapper: a small thread pool (libsndfile releases the GIL while decoding)."""
    if len(items) < 16:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=threads or min(8, (os.cpu_count() or 2) * 2)) as ex:
        return list(ex.map(fn, items, chunksize=16))


def _level_reason(name: str, pool: AudioPool, info: audio_io.AudioInfo) -> str | None:
    peak_dbfs = 20.0 * math.log10(info.peak) if info.peak > 0 else -math.inf
    if peak_dbfs > pool.max_peak_dbfs:
        hint = " (integer PCM stored as float? divide by 32768)" if 80.0 < peak_dbfs < 100.0 else ""
        return (f"absurd level: peak {peak_dbfs:+.1f} dBFS is above pools.{name}.max_peak_dbfs "
                f"({pool.max_peak_dbfs:+g} dBFS); recorded audio stays near or below full scale{hint}")
    rms_dbfs, ac_dbfs = (20.0 * math.log10(v) if v > 0 else -math.inf for v in (info.rms, info.ac_rms))
    if rms_dbfs < pool.min_rms_dbfs:
        return (f"absurd level: RMS {rms_dbfs:.1f} dBFS over the whole file is below pools.{name}.min_rms_dbfs "
                f"({pool.min_rms_dbfs:g} dBFS): next to silence")
    if ac_dbfs < pool.min_rms_dbfs:
        return (f"absurd level: a constant offset, not a signal: RMS {ac_dbfs:.1f} dBFS without its DC offset "
                f"(below pools.{name}.min_rms_dbfs, {pool.min_rms_dbfs:g} dBFS)")
    return None


def index_pool(
    name: str, pool: AudioPool, base_dir: Path, mapper: Mapper | None = None, *,
    cache: ProbeCache | None = None, role_min_duration_s: float = 0.0,
) -> tuple[PoolItems, list[dict[str, Any]]]:
    """Validate every frame of one pool's files; returns the usable items and the rejects.

    Besides unreadable, damaged, NaN and silent files (:func:`engine.audio.io.probe`), a
    file is a reject when it has more channels than ``max_channels``, is shorter than
    ``min_duration_s`` (unset: ``role_min_duration_s``, the minimum of the role the
    synthesizer gives the pool) or longer than ``max_duration_s``, or its level is absurd
    (peak above ``max_peak_dbfs``, RMS below ``min_rms_dbfs``). With a ``cache`` a file
    whose content was validated before is not decoded again.

    Example: ``items, rejects = index_pool("car", recipe.pools["car"], recipe.base_dir)``
    """
    paths, ids, shown, labels, rejects = _list_pool(name, pool, base_dir)
    probed = _probe_all(*_probe_settings(pool), _probe_audio, paths, mapper, cache)
    min_duration_s = role_min_duration_s if pool.min_duration_s is None else pool.min_duration_s
    keep: list[int] = []
    infos: list[Any] = []
    for i, (status, value) in enumerate(probed.verdicts):
        reason = value if status == "bad" else None
        if reason is None:
            value = audio_io.AudioInfo(**value)
            if value.channels > pool.max_channels:
                reason = (
                    f"{value.channels} channels; pool {name!r} takes at most {pool.max_channels} "
                    f"(raise pools.{name}.max_channels to downmix such files)"
                )
            elif value.duration_s < min_duration_s:
                why = (f"pools.{name}.min_duration_s ({min_duration_s:g} s)" if pool.min_duration_s is not None
                       else f"the {min_duration_s:g} s the synthesizer needs from pool {name!r} (set "
                            f"pools.{name}.min_duration_s to change it)")
                reason = f"too short: {value.duration_s:.3f} s is shorter than {why}"
            elif pool.max_duration_s is not None and value.duration_s > pool.max_duration_s:
                reason = f"{value.duration_s:.1f} s is longer than pools.{name}.max_duration_s ({pool.max_duration_s} s)"
            else:
                reason = _level_reason(name, pool, value)
        if reason is not None:
            rejects.append({"pool": name, "path": shown[i], "reason": reason})
            continue
        keep.append(i)
        infos.append(value)
    items = [ids[i] for i in keep]
    holdout = select_holdout(name, items, pool.holdout)
    label_rows: list[dict[str, Any]] = []
    schema = pa.schema([])
    if labels is not None and labels.num_columns:
        kept = labels.take(pa.array(keep, type=pa.int64()))
        schema = kept.schema
        label_rows = kept.to_pylist()
    pool_items = PoolItems(
        name=name,
        kind=pool.kind,
        items=items,
        paths=[paths[i] for i in keep],
        duration_s=np.array([x.duration_s for x in infos], dtype=np.float64),
        sample_rate=np.array([x.sample_rate for x in infos], dtype=np.int32),
        channels=np.array([x.channels for x in infos], dtype=np.int16),
        frames=np.array([x.frames for x in infos], dtype=np.int64),
        holdout=holdout,
        label_schema=schema,
        labels=label_rows,
        **probed.kept(paths, keep),
    )
    return pool_items, rejects


def _probe_image(path: str, max_pixels: int, mode: str) -> tuple[str, Any]:
    from .image import io as image_io  # OpenCV loads only for image pools

    try:
        info = image_io.probe(path, max_pixels=max_pixels, mode=mode)
        return ("ok", {"width": info.width, "height": info.height, "channels": info.channels})
    except BadSourceError as exc:
        return ("bad", exc.reason)
    except Exception as exc:  # a probe must never take the indexer down
        return ("bad", f"cannot be read ({type(exc).__name__}: {exc})")


@dataclass(frozen=True)
class _ImageSize:
    width: int
    height: int
    channels: int


def index_image_pool(
    name: str, pool: Any, base_dir: Path, mapper: Mapper | None = None, *,
    cache: ProbeCache | None = None, **_: Any,
) -> tuple[PoolItems, list[dict[str, Any]]]:
    """Probe one image pool: every file decoded once (oversized ones refused unread, ones
    with a side shorter than ``min_side_px`` rejected).

    Image items have no duration: ``duration_s`` and ``sample_rate`` are 0, ``frames`` 1,
    ``channels`` the colour channels stored in the file, ``width``/``height`` in pixels.
    With ``mask_column`` each item's mask file (resolved against the manifest's folder and
    stored back in that column as an absolute path) is probed too and must match in size.

    Example: ``items, rejects = index_image_pool("photos", recipe.pools["photos"], recipe.base_dir)``
    """

    paths, ids, shown, labels, rejects = _list_pool(name, pool, base_dir)
    kind, settings = _probe_settings(pool)
    probe = functools.partial(_probe_image, **settings)
    probed = _probe_all(kind, settings, probe, paths, mapper, cache)
    label_rows = labels.to_pylist() if labels is not None and labels.num_columns else []
    masks: dict[int, str] = {}
    if pool.mask_column is not None:
        if labels is None or pool.mask_column not in labels.column_names:
            raise InputError(
                f"pools.{name}.mask_column: {pool.mask_column!r} is not a column of the pool's manifest "
                f"(columns: {', '.join(labels.column_names) if labels is not None else 'none: the pool has no manifest'})"
            )
        manifest = str(pool.manifest)
        if is_uri(manifest):
            manifest_dir = manifest.rsplit("/", 1)[0]
        else:
            manifest_dir = str(Path(manifest if os.path.isabs(manifest) else base_dir / manifest).parent)
        for i, row in enumerate(label_rows):
            raw = row.get(pool.mask_column)
            if isinstance(raw, str) and raw.strip():
                masks[i] = join_location(manifest_dir, raw.strip())
        order = sorted(masks)
        mask_settings = {"max_pixels": pool.max_pixels, "mode": "gray"}
        mask_probe = functools.partial(_probe_image, **mask_settings)
        mask_probed = _probe_all("image", mask_settings, mask_probe, [masks[i] for i in order], mapper, cache)
        mask_results = dict(zip(order, mask_probed.verdicts))
    keep: list[int] = []
    infos: list[Any] = []
    for i, (status, value) in enumerate(probed.verdicts):
        reason = value if status == "bad" else None
        if reason is None:
            value = _ImageSize(**value)
            if min(value.width, value.height) < pool.min_side_px:
                reason = (f"too small: {value.width}×{value.height} pixels, below pools.{name}.min_side_px "
                          f"({pool.min_side_px} px a side); scaled up to the output it would be a few flat blocks")
        if reason is None and pool.mask_column is not None:
            if i not in masks:
                reason = f"no mask: the {pool.mask_column!r} column is empty for this item"
            else:
                m_status, m_value = mask_results[i]
                if m_status != "bad":
                    m_value = _ImageSize(**m_value)
                if m_status == "bad":
                    reason = f"mask {masks[i]}: {m_value}"
                elif (m_value.width, m_value.height) != (value.width, value.height):
                    reason = (f"mask {masks[i]} is {m_value.width}×{m_value.height} but the image is "
                              f"{value.width}×{value.height}")
        if reason is not None:
            rejects.append({"pool": name, "path": shown[i], "reason": reason})
            continue
        keep.append(i)
        infos.append(value)
    items = [ids[i] for i in keep]
    holdout = select_holdout(name, items, pool.holdout)
    kept_labels: list[dict[str, Any]] = []
    schema = pa.schema([])
    if label_rows:
        schema = labels.schema
        for i in keep:
            row = dict(label_rows[i])
            if pool.mask_column is not None:
                row[pool.mask_column] = masks[i]
            kept_labels.append(row)
    n = len(items)
    pool_items = PoolItems(
        name=name,
        kind=pool.kind,
        items=items,
        paths=[paths[i] for i in keep],
        duration_s=np.zeros(n, dtype=np.float64),
        sample_rate=np.zeros(n, dtype=np.int32),
        channels=np.array([x.channels for x in infos], dtype=np.int16),
        frames=np.ones(n, dtype=np.int64),
        holdout=holdout,
        label_schema=schema,
        labels=kept_labels,
        width=np.array([x.width for x in infos], dtype=np.int32),
        height=np.array([x.height for x in infos], dtype=np.int32),
        **probed.kept(paths, keep),
    )
    if pool.mask_column is not None:  # an item is its image and its mask: both are checked
        mask_fps = dict(zip(order, mask_probed.fingerprints))
        for j, i in enumerate(keep):
            fp = mask_fps.get(i)
            if fp is not None:
                pool_items.fingerprints[j] += "|" + fp.content
                pool_items.sources[source_of(masks[i])] = fp
    return pool_items, rejects


def index_generator_pool(
    name: str, pool: Any, base_dir: Path, mapper: Mapper | None = None, **_: Any
) -> tuple[PoolItems, list[dict[str, Any]]]:
    """Virtual items of a ``noise_generator`` / ``rir_generator`` pool (no files, no rejects).

    Item ids look like ``gen:pink/0003``; the path of an item is its id. The values that
    define each item (colour and slope, or RT60 and DRR) are its labels.

    Example: ``items, _ = index_generator_pool("hum", recipe.pools["hum"], recipe.base_dir)``
    """

    virtual = virtual_items(name, pool)
    items = [v.item for v in virtual]
    holdout = select_holdout(name, items, pool.holdout)
    labels = [dict(v.labels) for v in virtual]
    pool_items = PoolItems(
        name=name,
        kind=pool.kind,
        items=items,
        paths=list(items),
        duration_s=np.array([v.duration_s for v in virtual], dtype=np.float64),
        sample_rate=np.array([v.sample_rate for v in virtual], dtype=np.int32),
        channels=np.ones(len(items), dtype=np.int16),
        frames=np.array([v.frames for v in virtual], dtype=np.int64),
        holdout=holdout,
        label_schema=pa.Table.from_pylist(labels).schema if labels else pa.schema([]),
        labels=labels,
    )
    return pool_items, []


# Pool kind -> indexer(name, config, base_dir, mapper) -> (PoolItems, rejects). A new kind
# of pool registers its indexer here.
INDEXERS: dict[str, Callable[..., tuple[PoolItems, list[dict[str, Any]]]]] = {
    "audio": index_pool,
    "image": index_image_pool,
    "noise_generator": index_generator_pool,
    "rir_generator": index_generator_pool,
}


def _no_usable_files(name: str, rejects: list[dict[str, Any]], shown: int = 5) -> str:
    """The message for a used pool left empty: its rejects (the first ``shown``, path and
    reason) in the message itself, since a refused run writes no ``rejects.jsonl``.

    Example: ``_no_usable_files("noise", [{"path": "a.wav", "reason": "empty file"}])``
    """
    if not rejects:
        return f"pools.{name}: no usable files; check the pool's paths or manifest"
    first = sorted(rejects, key=lambda r: r["path"])[:shown]
    lines = [f"pools.{name}: no usable files: all {len(rejects)} were rejected:"]
    lines += [f"  {r['path']}: {r['reason']}" for r in first]
    if len(rejects) > shown:
        lines.append(f"  ... and {len(rejects) - shown} more")
    lines.append(f"fix or replace these files, or point pools.{name} at usable ones")
    return "\n".join(lines)


def index_pools(recipe: Recipe, mapper: Mapper | None = None, cache: ProbeCache | None = None) -> PoolIndex:
    """Index every pool the recipe defines; raise if a used pool ends up empty.

    With ``on_bad_input: fail`` the first bad file stops indexing with its reason.

    Example: ``index = index_pools(load_recipe("recipes/demo_in_car.yaml"))``
    """
    pools: dict[str, PoolItems] = {}
    rejects: list[dict[str, Any]] = []
    role_minimums = recipe.synth.min_durations_s()
    with ProbeCache.default() if cache is None else contextlib.nullcontext(cache) as probe_cache:
        for name, cfg in recipe.pools.items():
            items, bad = INDEXERS[cfg.kind](name, cfg, recipe.base_dir, mapper, cache=probe_cache,
                                            role_min_duration_s=role_minimums.get(name, 0.0))
            if bad and recipe.on_bad_input == "fail":
                first = bad[0]
                raise InputError(
                    f"{first['path']}: {first['reason']} (pool {name!r}; on_bad_input is 'fail': "
                    "remove or fix the file, or set on_bad_input: skip to leave bad files out)"
                )
            pools[name] = items
            rejects.extend(bad)
    for name in recipe.synth.pools_used():
        if len(pools[name]) == 0:
            raise InputError(_no_usable_files(name, [r for r in rejects if r["pool"] == name]))
    holdout_needed = any(s.holdout for s in recipe.splits.values())
    for name in recipe.synth.pools_used():
        p = pools[name]
        if len(p.eligible(False)) == 0:
            raise InputError(f"pools.{name}: every item is held out; lower pools.{name}.holdout")
        holdout = getattr(recipe.pools[name], "holdout", 0.0)
        if holdout_needed and holdout > 0 and len(p.eligible(True)) == 0:
            raise InputError(
                f"pools.{name}: holdout {holdout} selects no item from "
                f"{len(p)} usable files; add files or raise the holdout fraction"
            )
    rejects.sort(key=lambda r: (r["pool"], r["path"]))
    return PoolIndex(pools=pools, rejects=rejects)


def _probe_settings(cfg: Any) -> tuple[str, dict[str, Any]]:
    """The probe cache's kind and settings for the items of a pool configured as ``cfg``."""
    if cfg.kind == "image":
        return "image", {"max_pixels": cfg.max_pixels, "mode": cfg.mode}
    return "audio", {}


def record_fault(recipe: Recipe, index: PoolIndex, pool: str, item: str, reason: str,
                 cache: ProbeCache | None = None) -> None:
    """Record ``item`` of ``pool`` as a reject in the probe cache: a worker could not use it
    although its index had validated it, so the next index must leave it out."""
    items = index.pools[pool]
    i = items.items.index(item)
    locator = items.paths[i]
    fp = items.sources.get(source_of(locator))
    if fp is None:
        return
    kind, settings = _probe_settings(recipe.pools[pool])
    with ProbeCache.default() if cache is None else contextlib.nullcontext(cache) as probe_cache:
        probe_cache.put_many({probe_key(kind, settings, locator, fp): ("bad", reason)})


def merge_rejects(*groups: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Union of reject records, one per (pool, path), first reason kept, sorted."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for group in groups:
        for r in group:
            seen.setdefault((r.get("pool", ""), r["path"]), r)
    return [seen[k] for k in sorted(seen)]
