"""What each pool holds, from the pool index: items, durations (audio) or pixel counts
(images), held-out flags, and which items the analyzer tracks exactly.

A pool of up to :data:`ITEM_CAP` items is tracked whole; a larger one on a fixed hash
sample of about ``ITEM_CAP`` items (the same in any merge order).

Example::

    catalog = catalog_from_parquet("out/demo_in_car/pool_index.parquet")
    catalog["cabin"].n_items, catalog["cabin"].exact
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from ..errors import ShardError
from ..stats import sample_key

ITEM_CAP = 1_000_000


def item_unit(pool: str, item: str) -> float:
    """A number in [0, 1) fixed by a pool's item: it is tracked when below the pool's rate.

    Example: ``0.0 <= item_unit("car", "noise/car-1.wav") < 1.0``
    """
    return sample_key(f"{pool}\x1f{item}") / 2.0**64


@dataclass
class PoolCatalog:
    """What a pool holds (from the pool index), and which items are tracked exactly."""

    name: str
    n_items: int
    seconds_available: float
    n_held_out: int
    seconds_held_out: float
    timed: bool
    rate: float  # fraction of items tracked (1.0 up to ITEM_CAP)
    items: list[str]
    duration_s: np.ndarray
    holdout: np.ndarray
    positions: dict[str, int] = field(default_factory=dict)
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    # Image pools: pixels (width x height) of each tracked item, and of the whole pool;
    # None for audio pools and for pool indexes written before sizes were kept.
    pixels: np.ndarray | None = None
    pixels_available: float | None = None

    def __post_init__(self) -> None:
        self.positions = {it: i for i, it in enumerate(self.items)}
        nb = np.where(self.duration_s > 0, np.ceil(self.duration_s - 1e-9), 0).astype(np.int64)
        nb[(self.duration_s > 0) & (nb < 1)] = 1
        self.offsets = np.concatenate([[0], np.cumsum(nb)]).astype(np.int64)

    @property
    def exact(self) -> bool:
        return self.rate >= 1.0

    def tracks(self, item: str) -> bool:
        return self.exact or item_unit(self.name, item) < self.rate


def build_catalog(rows: Iterable[tuple[Any, ...]], counts: dict[str, int]) -> dict[str, PoolCatalog]:
    """Catalogs from chunks of ``(pool, items, duration_s, holdout)`` or ``(pool, items,
    duration_s, holdout, pixels)`` (pixels of image items, 0 for audio ones); ``counts`` =
    items per pool."""
    acc: dict[str, dict[str, Any]] = {}
    for pool, items, dur, hold, *rest in rows:
        px = np.asarray(rest[0], dtype=np.float64) if rest and rest[0] is not None else None
        a = acc.setdefault(pool, {"items": [], "dur": [], "hold": [], "sums": [], "held_sums": [],
                                  "n": 0, "held": 0, "timed": False, "px": [], "px_sum": 0})
        dur = np.asarray(dur, dtype=np.float64)
        hold = np.asarray(hold, dtype=bool)
        a["n"] += len(items)
        a["held"] += int(hold.sum())
        a["sums"].extend(dur.tolist())
        a["held_sums"].extend(dur[hold].tolist())
        a["timed"] = a["timed"] or bool((dur > 0).any())
        if px is not None and a["px"] is not None:
            a["px_sum"] += int(px.sum())  # whole numbers: an exact sum in any chunking
        else:
            a["px"] = None
        rate = min(1.0, ITEM_CAP / max(1, counts.get(pool, len(items))))
        if rate < 1.0:
            keep = np.array([item_unit(pool, it) < rate for it in items], dtype=bool)
            items = [it for it, k in zip(items, keep) if k]
            dur, hold = dur[keep], hold[keep]
            px = px[keep] if px is not None else None
        if a["px"] is not None:
            a["px"].append(px)
        a["items"] += list(items)
        a["dur"].append(dur)
        a["hold"].append(hold)
        # fsum partial state: keep only the running exact sum to bound memory
        a["sums"] = [math.fsum(a["sums"])]
        a["held_sums"] = [math.fsum(a["held_sums"])]
    out: dict[str, PoolCatalog] = {}
    for pool, a in acc.items():
        out[pool] = PoolCatalog(
            name=pool,
            n_items=a["n"],
            seconds_available=math.fsum(a["sums"]),
            n_held_out=a["held"],
            seconds_held_out=math.fsum(a["held_sums"]),
            timed=a["timed"],
            rate=min(1.0, ITEM_CAP / max(1, counts.get(pool, a["n"]))),
            items=a["items"],
            duration_s=np.concatenate(a["dur"]) if a["dur"] else np.zeros(0),
            holdout=np.concatenate(a["hold"]) if a["hold"] else np.zeros(0, bool),
        )
        # an image pool: its items have pixels and no duration
        if a["px"] is not None and a["px_sum"] > 0 and not a["timed"]:
            out[pool].pixels = np.concatenate(a["px"])
            out[pool].pixels_available = float(a["px_sum"])
    return out


def catalog_from_index(index: Any) -> dict[str, PoolCatalog]:
    """Catalogs of an in-memory :class:`~engine.pools.PoolIndex`."""
    rows = [(name, list(p.items), p.duration_s, p.holdout,
             None if p.width is None else p.width.astype(np.int64) * p.height.astype(np.int64))
            for name, p in index.pools.items()]
    return build_catalog(rows, {name: len(p.items) for name, p in index.pools.items()})


def catalog_from_parquet(path: Any) -> dict[str, PoolCatalog]:
    """Catalogs of ``OUT/pool_index.parquet`` (a path or an open file), read in batches
    (bounded memory)."""
    import pyarrow.compute as pc  # lazily: only reading an index needs pyarrow's kernels
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(path)
    except FileNotFoundError:
        raise ShardError(f"{path}: pool index not found; it is written when a run starts") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable parquet is one clear error
        raise ShardError(f"{path}: cannot read the pool index ({exc})") from None
    counts: dict[str, int] = {}
    for batch in f.iter_batches(batch_size=262_144, columns=["pool"]):
        vc = pc.value_counts(batch.column(0))
        for entry in vc.to_pylist():
            counts[entry["values"]] = counts.get(entry["values"], 0) + entry["counts"]

    sized = {"width", "height"} <= set(f.schema_arrow.names)  # image pools' sizes (newer indexes)

    def chunks():
        columns = ["pool", "item", "duration_s", "holdout"] + (["width", "height"] if sized else [])
        for batch in f.iter_batches(batch_size=262_144, columns=columns):
            pools = batch.column(0).to_pylist()
            items = batch.column(1).to_pylist()
            dur = batch.column(2).to_numpy(zero_copy_only=False)
            hold = batch.column(3).to_numpy(zero_copy_only=False)
            px = None
            if sized:
                px = (batch.column(4).to_numpy(zero_copy_only=False).astype(np.int64)
                      * batch.column(5).to_numpy(zero_copy_only=False).astype(np.int64))
            # runs of one pool (the file is written pool by pool)
            codes = np.unique(np.asarray(pools, dtype=object).astype(str), return_inverse=True)[1]
            cuts = [0, *(np.flatnonzero(np.diff(codes) != 0) + 1).tolist(), len(pools)]
            for start, end in zip(cuts[:-1], cuts[1:]):
                if end > start:
                    yield (pools[start], items[start:end], dur[start:end], hold[start:end],
                           None if px is None else px[start:end])

    return build_catalog(chunks(), counts)
