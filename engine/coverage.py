"""Coverage analyzer: how narrow is the synthesized data, and is it too narrow to train on?

Merges the per-shard stats (``engine/stats.py``) of a run; never re-reads audio or
images. Per pool: items available and used, effective number of sources, the largest
share of one item, seconds available / used / unique used, the **reuse factor** and the
fraction of the pool ever used. Per sampled parameter: a histogram against its requested
range. In embedding space: Vendi score, participation ratio, near-duplicate rate. Held-out
items: confirmed never used outside holdout splits. **Guards** (``guards:`` in the recipe)
turn the figures into pass/fail; :func:`forecast_coverage` predicts them from the recipe
and the pool index before anything is synthesized.

Definitions (stable; the JSON keys are in brackets):

- usage share of an item: its seconds used / the pool's seconds used (uses instead of
  seconds for pools without durations, e.g. images);
- effective sources [``effective_sources``] = exp(Shannon entropy of the shares), and
  [``effective_sources_simpson``] = 1 / sum(share**2); largest share [``max_share``];
- unique seconds used [``unique_seconds_used``]: the one-second buckets of the items'
  timelines that any source piece touched (a partial last bucket counts its length);
- reuse factor [``reuse_factor``] = seconds used / unique seconds used (pools without
  durations: uses / items used); fraction used [``fraction_used``] = unique seconds used /
  seconds available (items used / items available without durations);
- Vendi score: exp(entropy of the eigenvalues of K/n), K_ij = exp(-r_ij**2 / (2 h**2)),
  r_ij the RMS distance over standardized embedding dims (merged mean and std), h =
  :data:`VENDI_BANDWIDTH` = 1.0, over the bottom-k sample (k = 1024); participation ratio
  = (sum l)**2 / sum l**2 over the eigenvalues of the embedding's correlation matrix;
  near-duplicate pairs: sample pairs with r_ij < :data:`NEAR_DUPLICATE_RMS` = 0.1.

Memory: per pool 16 bytes per item plus 1 byte per second of audio available (a bitmap
of the one-second buckets); exact up to :data:`ITEM_CAP` items per pool. A larger pool is
tracked on a fixed hash sample of ``ITEM_CAP`` items (the same in any merge order), its
item figures are scaled estimates (``"exact": false``) and totals stay exact.

Example::

    report = analyze_coverage("out/demo_in_car")
    print(report["passed"], report["pools"]["cabin"]["reuse_factor"])
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from .errors import GuardError, ShardError
from .stats import EMBED_SCALE_BITS, PARAM_BINS, SAMPLE_K, STATS_FORMAT, decode_vector, sample_key

COVERAGE_FILE = "coverage.json"
POOL_INDEX_FILE = "pool_index.parquet"
REPORT_FORMAT = 1
ITEM_CAP = 1_000_000
REPORT_BINS = 20
VENDI_BANDWIDTH = 1.0
NEAR_DUPLICATE_RMS = 0.1
FORECAST_DRAWS = 500  # sample_params draws per split for the plan-time forecast
_SIG = 6  # significant digits of floats in the report (stable across BLAS builds)

# guard name -> (pool figure it limits, "max" or "min")
GUARDS: dict[str, tuple[str, str]] = {
    "max_reuse_factor": ("reuse_factor", "max"),
    "min_effective_sources": ("effective_sources", "min"),
    "max_source_share": ("max_share", "max"),
    "min_pool_fraction_used": ("fraction_used", "min"),
}


# =========================================================================== catalog


def _unit(pool: str, item: str) -> float:
    digest = hashlib.blake2b(f"{pool}\x1f{item}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


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

    def __post_init__(self) -> None:
        self.positions = {it: i for i, it in enumerate(self.items)}
        nb = np.where(self.duration_s > 0, np.ceil(self.duration_s - 1e-9), 0).astype(np.int64)
        nb[(self.duration_s > 0) & (nb < 1)] = 1
        self.offsets = np.concatenate([[0], np.cumsum(nb)]).astype(np.int64)

    @property
    def exact(self) -> bool:
        return self.rate >= 1.0

    def tracks(self, item: str) -> bool:
        return self.exact or _unit(self.name, item) < self.rate


def build_catalog(rows: Iterable[tuple[str, list[str], np.ndarray, np.ndarray]],
                  counts: dict[str, int]) -> dict[str, PoolCatalog]:
    """Catalogs from chunks of ``(pool, items, duration_s, holdout)``; ``counts`` = items per pool."""
    acc: dict[str, dict[str, Any]] = {}
    for pool, items, dur, hold in rows:
        a = acc.setdefault(pool, {"items": [], "dur": [], "hold": [], "sums": [], "held_sums": [],
                                  "n": 0, "held": 0, "timed": False})
        dur = np.asarray(dur, dtype=np.float64)
        hold = np.asarray(hold, dtype=bool)
        a["n"] += len(items)
        a["held"] += int(hold.sum())
        a["sums"].extend(dur.tolist())
        a["held_sums"].extend(dur[hold].tolist())
        a["timed"] = a["timed"] or bool((dur > 0).any())
        rate = min(1.0, ITEM_CAP / max(1, counts.get(pool, len(items))))
        if rate < 1.0:
            keep = np.array([_unit(pool, it) < rate for it in items], dtype=bool)
            items = [it for it, k in zip(items, keep) if k]
            dur, hold = dur[keep], hold[keep]
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
    return out


def catalog_from_index(index: Any) -> dict[str, PoolCatalog]:
    """Catalogs of an in-memory :class:`~engine.pools.PoolIndex`."""
    rows = [(name, list(p.items), p.duration_s, p.holdout) for name, p in index.pools.items()]
    return build_catalog(rows, {name: len(p.items) for name, p in index.pools.items()})


def catalog_from_parquet(path: Any) -> dict[str, PoolCatalog]:
    """Catalogs of ``OUT/pool_index.parquet`` (a path or an open file), read in batches
    (bounded memory)."""
    import pyarrow.compute as pc
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

    def chunks():
        for batch in f.iter_batches(batch_size=262_144, columns=["pool", "item", "duration_s", "holdout"]):
            pools = batch.column(0).to_pylist()
            items = batch.column(1).to_pylist()
            dur = batch.column(2).to_numpy(zero_copy_only=False)
            hold = batch.column(3).to_numpy(zero_copy_only=False)
            # runs of one pool (the file is written pool by pool)
            codes = np.unique(np.asarray(pools, dtype=object).astype(str), return_inverse=True)[1]
            cuts = [0, *(np.flatnonzero(np.diff(codes) != 0) + 1).tolist(), len(pools)]
            for start, end in zip(cuts[:-1], cuts[1:]):
                if end > start:
                    yield pools[start], items[start:end], dur[start:end], hold[start:end]

    return build_catalog(chunks(), counts)


# =========================================================================== merged stats


class _PoolState:
    def __init__(self, cat: PoolCatalog):
        n = len(cat.items)
        self.uses = np.zeros(n, np.int64)
        self.us = np.zeros(n, np.int64)
        self.bitmap = np.zeros(int(cat.offsets[-1]), bool)
        self.total_uses = 0
        self.total_us = 0
        self.unknown_uses = 0

    def merge(self, other: "_PoolState") -> None:
        self.uses += other.uses
        self.us += other.us
        self.bitmap |= other.bitmap
        self.total_uses += other.total_uses
        self.total_us += other.total_us
        self.unknown_uses += other.unknown_uses


class _ParamState:
    def __init__(self, rng: tuple[float, float] | None):
        self.range = rng
        self.count = 0
        self.min = math.inf
        self.max = -math.inf
        self.bins = np.zeros(PARAM_BINS, np.int64) if rng is not None else None
        self.below = 0
        self.above = 0
        self.sample: list[tuple[int, float]] = []

    def merge(self, other: "_ParamState") -> None:
        if self.range is None and other.range is not None:  # first saw it without a range
            self.range, self.bins = other.range, np.zeros(PARAM_BINS, np.int64)
        self.count += other.count
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        if self.bins is not None and other.bins is not None:
            self.bins += other.bins
        self.below += other.below
        self.above += other.above
        self.sample = sorted(self.sample + other.sample)[:SAMPLE_K]


class CoverageStats:
    """Merged shard stats of one run: exact, and the same in any merge order.

    Example::

        cs = CoverageStats(catalog, {"train": False, "test_unseen": True})
        for record in stats_records:     # the .stats.json contents
            cs.add_shard(record)
        report = cs.report(recipe)
    """

    def __init__(self, catalog: dict[str, PoolCatalog], split_holdout: dict[str, bool]):
        self.catalog = catalog
        self.split_holdout = dict(split_holdout)
        self.pools = {name: _PoolState(cat) for name, cat in catalog.items()}
        # split -> pool -> [uses, microseconds, uses of held-out items]
        self.splits: dict[str, dict[str, list[int]]] = {}
        self.split_rows: dict[str, int] = {}
        self.shards = 0
        self.rows = 0
        self.seconds_us = 0
        self.params: dict[str, _ParamState] = {}
        self.embed_dim: int | None = None
        self.embed_count = 0
        self.embed_s1: np.ndarray | None = None
        self.embed_s2: np.ndarray | None = None
        self.embed_sample: list[tuple[int, str, str, str, str]] = []  # key, id, split, label, b64

    # ------------------------------------------------------------------ adding

    def add_shard(self, record: dict[str, Any], split: str | None = None) -> None:
        """Add one shard's stats record (the ``.stats.json`` content, or its ``stats``)."""
        stats = record.get("stats", record)
        split = split or stats.get("split") or record.get("split") or ""
        self.shards += 1
        rows = int(stats.get("rows", 0))
        self.rows += rows
        self.split_rows[split] = self.split_rows.get(split, 0) + rows
        self.seconds_us += int(round(float(stats.get("seconds", 0.0)) * 1e6))
        pools = stats.get("pools")
        if pools is None and "usage" in stats:  # format 1: uses and seconds only
            pools = {
                p: {"items": sorted(t), "uses": [int(t[i][0]) for i in sorted(t)],
                    "us": [int(round(float(t[i][1]) * 1e6)) for i in sorted(t)]}
                for p, t in stats["usage"].items()
            }
        split_acc = self.splits.setdefault(split, {})
        for pool, block in sorted((pools or {}).items()):
            self._add_pool(pool, block, split_acc)
        for name, h in (stats.get("params") or {}).items():
            self._add_param(name, h)
        emb = stats.get("embedding")
        if emb:
            self._add_embedding(emb, split)

    def _add_pool(self, pool: str, block: dict[str, Any], split_acc: dict[str, list[int]]) -> None:
        cat = self.catalog.get(pool)
        st = self.pools.get(pool)
        items = block.get("items", [])
        uses = block.get("uses", [])
        us = block.get("us", [])
        buckets = block.get("buckets")
        acc = split_acc.setdefault(pool, [0, 0, 0])
        acc[0] += sum(uses)
        acc[1] += sum(us)
        held_worker = int(block.get("heldout_uses", 0))
        if cat is None or st is None:
            acc[2] += held_worker
            return
        get = cat.positions.get
        pos = np.fromiter((get(it, -1) for it in items), np.int64, len(items))
        u = np.asarray(uses, np.int64).reshape(-1)
        s = np.asarray(us, np.int64).reshape(-1)
        known = pos >= 0
        if not known.all():
            for i in np.flatnonzero(~known).tolist():
                if cat.exact or cat.tracks(items[i]):
                    st.unknown_uses += int(u[i])
                else:  # not in the hash sample: counts in the exact totals only
                    st.total_uses += int(u[i])
                    st.total_us += int(s[i])
        kp, ku, ks = pos[known], u[known], s[known]
        st.total_uses += int(ku.sum())
        st.total_us += int(ks.sum())
        # np.add.at: a hand-made record may list an item twice
        np.add.at(st.uses, kp, ku)
        np.add.at(st.us, kp, ks)
        held_catalog = int(ku[cat.holdout[kp]].sum())
        if buckets and st.bitmap.size:
            self._mark_buckets(cat, st, kp, [buckets[i] for i in np.flatnonzero(known).tolist()])
        # The worker's count covers items outside the hash sample too; the catalog's
        # catches a worker that had a different pool index. Either one is a violation.
        acc[2] += max(held_worker, held_catalog)

    @staticmethod
    def _mark_buckets(cat: PoolCatalog, st: _PoolState, pos: np.ndarray, ranges: list[list[int]]) -> None:
        """Set the bitmap bits of every listed range, vectorized over the whole block."""
        lens = np.fromiter((len(r) for r in ranges), np.int64, len(ranges))
        flat = np.fromiter((v for r in ranges for v in r), np.int64, int(lens.sum()))
        owner = np.repeat(pos, lens)[0::2]
        a, b = flat[0::2], flat[1::2]
        start, end = cat.offsets[owner], cat.offsets[owner + 1]
        a = np.clip(a + start, start, end)
        b = np.clip(b + start, start, end)
        n = b - a
        keep = n > 0
        a, n = a[keep], n[keep]
        if not n.size:
            return
        # ranges -> bucket indices: a run of n consecutive indices from each a
        first = np.cumsum(n) - n
        idx = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(first - a, n)
        st.bitmap[idx] = True

    def _add_param(self, name: str, h: dict[str, Any]) -> None:
        rng = tuple(h["range"]) if h.get("range") is not None else None
        st = _ParamState(rng)  # type: ignore[arg-type]
        st.count = int(h.get("count", 0))
        st.min = float(h.get("min", math.inf))
        st.max = float(h.get("max", -math.inf))
        if rng is not None and "bins" in h:
            st.bins = np.asarray(h["bins"], np.int64)
            st.below, st.above = int(h.get("below", 0)), int(h.get("above", 0))
        st.sample = [(int(k), float(v)) for k, v in h.get("sample", [])]
        cur = self.params.get(name)
        if cur is None:
            self.params[name] = st
        else:
            cur.merge(st)

    def _add_embedding(self, emb: dict[str, Any], split: str) -> None:
        dim = int(emb["dim"])
        if int(emb.get("scale_bits", EMBED_SCALE_BITS)) != EMBED_SCALE_BITS:
            raise ShardError(f"shard embedding sums use scale 2**-{emb.get('scale_bits')}, this engine "
                             f"2**-{EMBED_SCALE_BITS}; re-run the recipe to rewrite the shards")
        if self.embed_dim is None:
            self.embed_dim = dim
            self.embed_s1 = np.zeros(dim, dtype=object)
            self.embed_s2 = np.zeros(dim * (dim + 1) // 2, dtype=object)
        elif dim != self.embed_dim:
            raise ShardError(f"shard embeddings have {dim} values, earlier shards {self.embed_dim}")
        self.embed_count += int(emb["count"])
        self.embed_s1 += np.array([int(v) for v in emb["sum"]], dtype=object)
        self.embed_s2 += np.array([int(v) for v in emb["sum_outer_upper"]], dtype=object)
        new = [(int(k), str(sid), split, str(label), str(values)) for k, sid, label, values in emb.get("sample", [])]
        self.embed_sample = sorted(self.embed_sample + new, key=lambda e: (e[0], e[1]))[:SAMPLE_K]

    def merge(self, other: "CoverageStats") -> "CoverageStats":
        """Add another merged set (same catalog); returns self."""
        for name, st in other.pools.items():
            self.pools[name].merge(st)
        for split, pools in other.splits.items():
            mine = self.splits.setdefault(split, {})
            for pool, acc in pools.items():
                cur = mine.setdefault(pool, [0, 0, 0])
                for i in range(3):
                    cur[i] += acc[i]
        for split, rows in other.split_rows.items():
            self.split_rows[split] = self.split_rows.get(split, 0) + rows
        self.shards += other.shards
        self.rows += other.rows
        self.seconds_us += other.seconds_us
        for name, st in other.params.items():
            if name in self.params:
                self.params[name].merge(st)
            else:
                copy = _ParamState(st.range)
                copy.merge(st)
                self.params[name] = copy
        if other.embed_dim is not None:
            if self.embed_dim is None:
                self.embed_dim = other.embed_dim
                self.embed_s1 = np.zeros(other.embed_dim, dtype=object)
                self.embed_s2 = np.zeros(len(other.embed_s2), dtype=object)  # type: ignore[arg-type]
            elif other.embed_dim != self.embed_dim:
                raise ShardError(f"embeddings of {other.embed_dim} and {self.embed_dim} values cannot be merged")
            self.embed_count += other.embed_count
            self.embed_s1 = self.embed_s1 + other.embed_s1
            self.embed_s2 = self.embed_s2 + other.embed_s2
            self.embed_sample = sorted(self.embed_sample + other.embed_sample, key=lambda e: (e[0], e[1]))[:SAMPLE_K]
        return self

    # ------------------------------------------------------------------ figures

    def pool_figures(self, name: str) -> dict[str, Any]:
        cat, st = self.catalog[name], self.pools[name]
        figs = _usage_figures(cat, st, np.ones(len(cat.items), bool), st.total_uses, st.total_us)
        figs.update(
            items_available=cat.n_items,
            seconds_available=cat.seconds_available,
            fraction_used=_fraction(cat, figs, cat.n_items, cat.seconds_available),
            items_held_out=cat.n_held_out,
            seconds_held_out=cat.seconds_held_out,
            timed=cat.timed,
            exact=cat.exact,
            item_sample_rate=cat.rate,
            uses=st.total_uses,
            unknown_item_uses=st.unknown_uses,
        )
        if cat.n_held_out and cat.exact:
            groups = {}
            for gname, mask in (("seen", ~cat.holdout), ("held_out", cat.holdout)):
                g = _usage_figures(cat, st, mask, int(st.uses[mask].sum()), int(st.us[mask].sum()))
                n_g = int(mask.sum())
                avail = math.fsum(cat.duration_s[mask].tolist())
                g.update(items_available=n_g, seconds_available=avail,
                         fraction_used=_fraction(cat, g, n_g, avail))
                groups[gname] = g
            figs["groups"] = groups
        return figs

    def param_figures(self) -> dict[str, Any]:
        out = {}
        for name in sorted(self.params):
            out[name] = _param_figures(self.params[name])
        return out

    def embedding_moments(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Mean and covariance (float64) from the exact integer sums."""
        if self.embed_dim is None or self.embed_count < 2:
            return None
        n, d = self.embed_count, self.embed_dim
        scale = 2**EMBED_SCALE_BITS
        s1 = [int(v) for v in self.embed_s1]  # type: ignore[union-attr]
        s2 = [int(v) for v in self.embed_s2]  # type: ignore[union-attr]
        mean = np.array([v / (n * scale) for v in s1], dtype=np.float64)
        cov = np.zeros((d, d), np.float64)
        iu = np.triu_indices(d)
        denom = n * (n - 1) * scale * scale
        for k, (i, j) in enumerate(zip(iu[0].tolist(), iu[1].tolist())):
            # exact integer numerator: no cancellation
            c = (n * s2[k] - s1[i] * s1[j]) / denom
            cov[i, j] = cov[j, i] = c
        return mean, cov

    def embedding_figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dim": self.embed_dim, "count": self.embed_count, "sample_size": len(self.embed_sample),
            "vendi_bandwidth": VENDI_BANDWIDTH, "near_duplicate_rms": NEAR_DUPLICATE_RMS,
            "vendi_score": None, "participation_ratio": None,
            "near_duplicate_pair_rate": None, "near_duplicate_sample_rate": None,
        }
        proj = self._standardized()
        if proj is None:
            return out
        z, corr, _ = proj
        lam = np.clip(np.linalg.eigvalsh(corr), 0.0, None)
        out["participation_ratio"] = float(lam.sum() ** 2 / (lam * lam).sum()) if (lam * lam).sum() > 0 else None
        m = z.shape[0]
        if m >= 2:
            r2 = _pairwise_ms(z)
            kern = np.exp(-r2 / (2.0 * VENDI_BANDWIDTH**2))
            ev = np.clip(np.linalg.eigvalsh(kern / m), 0.0, None)
            ev = ev[ev > 1e-15]
            out["vendi_score"] = float(np.exp(-(ev * np.log(ev)).sum()))
            close = r2 < NEAR_DUPLICATE_RMS**2
            np.fill_diagonal(close, False)
            pairs = int(np.triu(close, 1).sum())
            out["near_duplicate_pair_rate"] = pairs / (m * (m - 1) / 2)
            out["near_duplicate_sample_rate"] = float(close.any(axis=1).sum()) / m
        return out

    def _standardized(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(standardized sample over non-constant dims, correlation matrix, kept dims)."""
        moments = self.embedding_moments()
        if moments is None or not self.embed_sample:
            return None
        mean, cov = moments
        std = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        keep = np.flatnonzero(std > 1e-9)
        if keep.size == 0:
            return None
        x = np.stack([decode_vector(e[4]) for e in self.embed_sample]).astype(np.float64)[:, keep]
        z = (x - mean[keep]) / std[keep]
        corr = cov[np.ix_(keep, keep)] / (std[keep][:, None] * std[keep][None, :])
        return z, corr, keep

    def projection(self) -> tuple[np.ndarray, list[str]] | None:
        """2-D PCA projection of the embedding sample (for plots) and each point's label."""
        proj = self._standardized()
        if proj is None:
            return None
        z, corr, _ = proj
        w, v = np.linalg.eigh(corr)
        top = v[:, np.argsort(w)[::-1][:2]]
        xy = (z[:, :, None] * top[None, :, :]).sum(axis=1)
        if xy.shape[1] < 2:
            xy = np.column_stack([xy[:, 0], np.zeros(len(xy))])
        return xy, [e[3] for e in self.embed_sample]

    def holdout_figures(self) -> dict[str, Any]:
        holdout_splits = sorted(s for s, h in self.split_holdout.items() if h)
        pools = {}
        for name, cat in sorted(self.catalog.items()):
            if not cat.n_held_out:
                continue
            outside = sum(acc.get(name, [0, 0, 0])[2] for s, acc in self.splits.items()
                          if not self.split_holdout.get(s, False))
            seen_in_holdout = sum(acc.get(name, [0, 0, 0])[0] - acc.get(name, [0, 0, 0])[2]
                                  for s, acc in self.splits.items() if self.split_holdout.get(s, False))
            pools[name] = {
                "items_held_out": cat.n_held_out,
                "held_out_uses_outside_holdout_splits": int(outside),
                "seen_item_uses_in_holdout_splits": int(seen_in_holdout),
            }
        passed = all(p["held_out_uses_outside_holdout_splits"] == 0 for p in pools.values())
        return {"holdout_splits": holdout_splits, "pools": pools, "passed": passed}

    def split_figures(self) -> dict[str, Any]:
        out = {}
        for split in sorted(self.splits):
            out[split] = {
                "holdout": bool(self.split_holdout.get(split, False)),
                "rows": self.split_rows.get(split, 0),
                "pools": {p: {"uses": a[0], "seconds_used": a[1] / 1e6, "held_out_item_uses": a[2]}
                          for p, a in sorted(self.splits[split].items())},
            }
        return out

    def usage_distribution(self, name: str) -> np.ndarray:
        """Per used item its seconds used (uses for pools without durations), descending."""
        cat, st = self.catalog[name], self.pools[name]
        w = (st.us / 1e6) if cat.timed else st.uses.astype(np.float64)
        w = w[st.uses > 0]
        return np.sort(w)[::-1]

    # ------------------------------------------------------------------ report

    def report(self, recipe: Any, *, recipe_hash: str = "", complete: bool = True) -> dict[str, Any]:
        """The coverage report (plain JSON data) with guards checked.

        ``recipe`` is a :class:`~engine.recipe.Recipe` (its guards and the pools its synth
        uses decide what is checked).
        """
        used_pools = list(recipe.synth.pools_used())
        pools = {name: self.pool_figures(name) for name in sorted(self.catalog)}
        holdout = self.holdout_figures()
        guards = evaluate_guards(pools, recipe, used_pools)
        for name, h in holdout["pools"].items():
            v = h["held_out_uses_outside_holdout_splits"]
            guards.append({"name": "holdout_unseen", "pool": name, "value": v, "limit": 0, "passed": v == 0})
        report = {
            "format": REPORT_FORMAT,
            "recipe_name": recipe.name,
            "recipe_hash": recipe_hash,
            "complete": complete,
            "shards": self.shards,
            "samples": self.rows,
            "seconds": self.seconds_us / 1e6,
            "pools_used_by_synth": used_pools,
            "pools": pools,
            "params": self.param_figures(),
            "embedding": self.embedding_figures(),
            "splits": self.split_figures(),
            "holdout": holdout,
            "guards": guards,
            "passed": all(g["passed"] for g in guards),
        }
        return round_floats(report)


def _usage_figures(cat: PoolCatalog, st: _PoolState, mask: np.ndarray, total_uses: int, total_us: int) -> dict[str, Any]:
    used = (st.uses > 0) & mask
    n_used_tracked = int(used.sum())
    rate = cat.rate
    items_used = n_used_tracked if cat.exact else int(round(n_used_tracked / rate))
    weights = st.us[used] if cat.timed else st.uses[used]
    total = total_us if cat.timed else total_uses
    eff = simpson = max_share = None
    if total > 0 and weights.size:
        p = weights.astype(np.float64) / float(total)
        entropy = float(-(p * np.log(p)).sum()) / rate
        eff = math.exp(entropy)
        simpson = 1.0 / (float((p * p).sum()) / rate)
        max_share = float(p.max())
    elif total == 0:
        eff = simpson = 0.0
    seconds_used = total_us / 1e6 if cat.timed else 0.0
    unique = 0.0
    if cat.timed and n_used_tracked:
        starts, ends = cat.offsets[:-1], cat.offsets[1:]
        nonempty = np.flatnonzero(ends > starts)
        per_item = np.zeros(len(starts), np.int64)
        if nonempty.size:
            # item spans are back to back, so each segment ends where the item ends
            per_item[nonempty] = np.add.reduceat(st.bitmap, starts[nonempty], dtype=np.int64)
        sel = np.flatnonzero(used & (ends > starts))
        last_used = st.bitmap[ends[sel] - 1]
        partial = (ends[sel] - starts[sel]) - cat.duration_s[sel]  # a short last bucket
        unique = float(per_item[sel].sum() - (last_used * partial).sum()) / rate
    if cat.timed:
        reuse = seconds_used / unique if unique > 0 else None
    else:
        reuse = total_uses / items_used if items_used > 0 else None
    return {
        "items_used": items_used,
        "effective_sources": eff,
        "effective_sources_simpson": simpson,
        "max_share": max_share,
        "seconds_used": seconds_used,
        "unique_seconds_used": unique,
        "reuse_factor": reuse,
    }


def _fraction(cat: PoolCatalog, figs: dict[str, Any], n_items: int, seconds: float) -> float:
    if cat.timed:
        return figs["unique_seconds_used"] / seconds if seconds > 0 else 0.0
    return figs["items_used"] / n_items if n_items else 0.0


def _param_figures(st: _ParamState) -> dict[str, Any]:
    out: dict[str, Any] = {
        "range": list(st.range) if st.range is not None else None,
        "count": st.count,
        "min": st.min if st.count else None,
        "max": st.max if st.count else None,
    }
    if st.range is not None and st.bins is not None:
        lo, hi = st.range
        if hi > lo:
            counts = st.bins.reshape(REPORT_BINS, PARAM_BINS // REPORT_BINS).sum(axis=1)
            edges = np.linspace(lo, hi, REPORT_BINS + 1)
        else:
            counts, edges = np.array([st.bins.sum()]), np.array([lo, hi])
        out.update(
            outside_range=st.below + st.above,
            range_covered=float((counts > 0).sum()) / len(counts),
            histogram={"edges": edges.tolist(), "counts": counts.astype(int).tolist(), "from_sample": False},
        )
    else:
        values = np.array([v for _, v in st.sample], np.float64)
        lo, hi = (st.min, st.max) if st.count else (0.0, 0.0)
        if values.size and hi > lo:
            counts, edges = np.histogram(np.clip(values, lo, hi), bins=REPORT_BINS, range=(lo, hi))
        else:
            counts, edges = np.array([values.size]), np.array([lo, hi])
        out.update(
            outside_range=None,
            range_covered=None,
            histogram={"edges": edges.tolist(), "counts": counts.astype(int).tolist(), "from_sample": True},
        )
    return out


def _pairwise_ms(z: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Mean over dims of squared differences for every pair (elementwise, no BLAS)."""
    m, d = z.shape
    out = np.empty((m, m), np.float64)
    for first in range(0, m, chunk):
        block = z[first : first + chunk]
        diff = block[:, None, :] - z[None, :, :]
        out[first : first + chunk] = np.square(diff).sum(axis=2) / d
    return out


def round_floats(obj: Any, sig: int = _SIG) -> Any:
    """Round every float to ``sig`` significant digits; NaN and inf become None."""
    if isinstance(obj, dict):
        return {k: round_floats(v, sig) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [round_floats(v, sig) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        if not math.isfinite(v):
            return None
        return float(f"{v:.{sig}g}")
    return obj


# =========================================================================== guards


def guard_limits(recipe: Any, pool: str) -> dict[str, float]:
    """The guard limits in force for one pool: recipe-wide, then ``guards.pools.<pool>``."""
    g = recipe.guards
    limits = {name: getattr(g, name) for name in GUARDS}
    over = (getattr(g, "pools", None) or {}).get(pool)
    if over is not None:
        for name in over.model_fields_set:
            if name in GUARDS:
                limits[name] = getattr(over, name)
    return {k: float(v) for k, v in limits.items() if v is not None}


def evaluate_guards(pools: dict[str, dict[str, Any]], recipe: Any, used_pools: list[str]) -> list[dict[str, Any]]:
    """One ``{name, pool, value, limit, passed}`` per guard in force per pool the synth uses."""
    out = []
    for pool in used_pools:
        figs = pools.get(pool)
        if figs is None:
            continue
        for name, limit in guard_limits(recipe, pool).items():
            key, kind = GUARDS[name]
            value = figs.get(key)
            if value is None:
                passed = True  # nothing used from the pool: nothing reused either
            else:
                passed = value <= limit if kind == "max" else value >= limit
            out.append({"name": name, "pool": pool, "value": value, "limit": limit, "passed": bool(passed)})
    return out


# =========================================================================== analysis


def analyze_coverage(out: str | Path, recipe: Any = None) -> dict[str, Any]:
    """Merge a run's shard stats into the coverage report (plain JSON data).

    Example: ``analyze_coverage("out/demo_in_car")["passed"]``
    """
    return load_coverage_stats(out, recipe)[0]


def load_coverage_stats(out: str | Path, recipe: Any = None) -> tuple[dict[str, Any], CoverageStats]:
    """The report and the merged :class:`CoverageStats` (for plots) of a run's output."""
    from .manifest import as_store, read_manifest, read_stats
    from .recipe import parse_recipe

    store = as_store(out)
    out = store.display()
    manifest = read_manifest(store)
    if manifest is None:
        raise ShardError(f"{out}: no manifest.json; is this a shardsmith output folder?")
    if recipe is None:
        try:
            recipe = parse_recipe(manifest["recipe"], source=f"{out}/manifest.json",
                                  base_dir=manifest.get("recipe_dir") or out)
        except KeyError:
            raise ShardError(f"{out}/manifest.json: has no recipe; re-run the recipe into this folder") from None
    if not store.exists(POOL_INDEX_FILE):
        raise ShardError(f"{store.display(POOL_INDEX_FILE)}: pool index not found; it is written when a run starts")
    with store.open_input(POOL_INDEX_FILE) as f:
        catalog = catalog_from_parquet(f)
    split_holdout = {name: cfg.holdout for name, cfg in recipe.splits.items()}
    cs = CoverageStats(catalog, split_holdout)
    for split, entry in manifest.get("splits", {}).items():
        for shard in entry.get("shards", []):
            record = read_stats(store, shard["stats"])
            if record is None:
                raise ShardError(f"{store.display(shard['stats'])}: stats file missing or unreadable; re-run the recipe "
                                 "into this folder to rewrite the shard")
            cs.add_shard(record, split)
    report = cs.report(recipe, recipe_hash=manifest.get("recipe_hash", ""),
                       complete=manifest.get("status") == "complete")
    return report, cs


def write_coverage(out: str | Path, recipe: Any = None) -> dict[str, Any]:
    """Analyze a run and write ``OUT/coverage.json``; returns the report."""
    from .manifest import write_json

    report = analyze_coverage(out, recipe)
    write_json(out, COVERAGE_FILE, report)
    return report


# =========================================================================== forecast


def _walk_refs(node: Any, path: str = "") -> Iterable[tuple[str, str, str]]:
    """``(path, pool, item)`` of every ``{"pool": ..., "item": ...}`` in a params object."""
    if isinstance(node, dict):
        if isinstance(node.get("pool"), str) and isinstance(node.get("item"), str):
            yield path, node["pool"], node["item"]
        for k in sorted(node, key=str):
            yield from _walk_refs(node[k], f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk_refs(v, f"{path}[{i}]")


def _generic_sources(params: dict[str, Any], duration: Callable[[str, str], float],
                     config: Any = None) -> list[tuple[str, str, float]]:
    """Every referenced item, assumed used whole (RIRs, images, short clips)."""
    return [(pool, item, duration(pool, item)) for _, pool, item in _walk_refs(params)]


def _speed(entry: dict[str, Any]) -> float:
    return float((entry.get("perturb") or {}).get("speed", 1.0))


def _speech_noise_sources(params: dict[str, Any], duration: Callable[[str, str], float],
                          config: Any = None) -> list[tuple[str, str, float]]:
    """speech_noise_mix, as its ``apply`` records sources: the utterance whole; each noise
    layer for the utterance's length times its speed; each event for its crop (at most
    ``max_duration_s`` of output, times its speed); the rest (reverb) whole."""
    sp = params["speech"]
    need = duration(sp["pool"], sp["item"])
    out = [(sp["pool"], sp["item"], need)]
    for layer in params.get("noise", []):
        out.append((layer["pool"], layer["item"], need * _speed(layer)))
    events_cfg = getattr(config, "events", None) or []
    for ev in params.get("events", []):
        speed = _speed(ev)
        layer = ev.get("layer", 0)
        cap = getattr(events_cfg[layer], "max_duration_s", need) if layer < len(events_cfg) else need
        item_s = duration(ev["pool"], ev["item"])
        out.append((ev["pool"], ev["item"], min(item_s / speed, cap, need) * speed))
    rest = {k: v for k, v in params.items() if k not in ("speech", "noise", "events")}
    return out + _generic_sources(rest, duration)


# synth type -> (params, duration(pool, item), synth config) -> predicted (pool, item,
# seconds) pieces, without audio. A new synthesizer registers its own; others fall back
# to "every referenced item, whole".
SOURCE_MODELS: dict[str, Callable[..., list[tuple[str, str, float]]]] = {
    "speech_noise_mix": _speech_noise_sources,
}


def forecast_coverage(recipe: Any, index: Any, *, draws: int = FORECAST_DRAWS) -> dict[str, Any]:
    """Predict the pool figures and guards of a run before anything is synthesized.

    Draws the first ``draws`` samples' params of each split (the very params the run
    will use) to learn how many pieces of each pool a sample takes and how long they
    are; items are assumed drawn uniformly from the items a split may use. An item of
    ``d`` seconds drawn ``c`` times on average, each piece covering ``s`` seconds,
    covers ``d * (1 - exp(-c * min(1, s / d)))`` unique seconds (random placement).

    Example: ``forecast_coverage(recipe, index_pools(recipe))["passed"]``
    """
    from .rng import sample_rng
    from .synth import build_synthesizer

    synth = build_synthesizer(recipe, index)
    model = SOURCE_MODELS.get(recipe.synth.type, _generic_sources)
    tables: dict[str, dict[str, int]] = {}

    def duration(pool: str, item: str) -> float:
        t = tables.get(pool)
        if t is None:
            t = tables[pool] = {it: i for i, it in enumerate(index.pools[pool].items)}
        return float(index.pools[pool].duration_s[t[item]])

    # pool -> holdout-group (True / False / None) -> [uses, seconds, all pieces whole?]
    groups: dict[str, dict[Any, list[Any]]] = {}
    samples = 0
    try:
        for split, cfg in recipe.splits.items():
            n = min(cfg.samples, draws)
            samples += cfg.samples
            tally: dict[str, list[Any]] = {}
            for i in range(n):
                params = synth.sample_params(sample_rng(recipe.seed, split, i), holdout_split=cfg.holdout)
                for pool, item, secs in model(params, duration, recipe.synth):
                    t = tally.setdefault(pool, [0, 0.0, True])
                    t[0] += 1
                    t[1] += secs
                    t[2] = t[2] and abs(secs - duration(pool, item)) < 1e-6
            scale = cfg.samples / n
            for pool, (u, s, whole) in tally.items():
                key = bool(cfg.holdout) if index.pools[pool].holdout.any() else None
                g = groups.setdefault(pool, {}).setdefault(key, [0.0, 0.0, True])
                g[0] += u * scale
                g[1] += s * scale
                g[2] = g[2] and whole
    finally:
        synth.close()

    pools = {}
    for name in recipe.synth.pools_used():
        pools[name] = _forecast_pool(index.pools[name], groups.get(name, {}))
    guards = evaluate_guards(pools, recipe, list(recipe.synth.pools_used()))
    return round_floats({
        "samples": samples,
        "draws_per_split": draws,
        "pools": pools,
        "guards": guards,
        "passed": all(g["passed"] for g in guards),
    })


def _forecast_pool(pool: Any, groups: dict[Any, list[Any]]) -> dict[str, Any]:
    d_all = np.asarray(pool.duration_s, np.float64)
    timed = bool((d_all > 0).any())
    # One simulated usage table (Poisson draws per item, fixed seed): the share figures
    # (effective sources, largest share) of a finite number of draws, as the analyzer
    # will compute them.
    rng = np.random.default_rng(0)
    weight = np.zeros(len(d_all))
    unique = np.zeros(len(d_all))
    p_used = np.zeros(len(d_all))
    uses_total = seconds_total = 0.0
    for key in sorted(groups, key=str):
        uses, seconds, whole = groups[key]
        idx = np.arange(len(d_all)) if key is None else pool.eligible(key)
        if uses <= 0 or idx.size == 0:
            continue
        d = d_all[idx]
        c = uses / idx.size
        k = rng.poisson(c, idx.size).astype(np.float64)
        p_used[idx] = 1.0 - np.exp(-c)
        uses_total += uses
        if not timed:
            weight[idx] += k
            continue
        if whole:
            seconds = uses * float(d.mean())
            frac = np.ones_like(d)
            weight[idx] += k * d
        else:
            seg = seconds / uses
            frac = np.minimum(1.0, seg / np.maximum(d, 1e-9))
            weight[idx] += k * seg
        seconds_total += seconds
        unique[idx] = d * (1.0 - np.exp(-c * frac))
    items_used = float(p_used.sum())
    seconds_available = math.fsum(d_all.tolist())
    eff = simpson = max_share = None
    if weight.sum() > 0:
        q = weight[weight > 0] / weight.sum()
        eff = math.exp(float(-(q * np.log(q)).sum()))
        simpson = 1.0 / float((q * q).sum())
        max_share = float(q.max())
    unique_s = float(unique.sum())
    if timed:
        reuse = seconds_total / unique_s if unique_s > 0 else None
        fraction = unique_s / seconds_available if seconds_available > 0 else 0.0
    else:
        reuse = uses_total / items_used if items_used > 0 else None
        fraction = items_used / len(d_all) if len(d_all) else 0.0
    return {
        "items_available": len(d_all),
        "items_used": items_used,
        "effective_sources": eff,
        "effective_sources_simpson": simpson,
        "max_share": max_share,
        "seconds_available": seconds_available if timed else 0.0,
        "seconds_used": seconds_total,
        "unique_seconds_used": unique_s,
        "reuse_factor": reuse,
        "fraction_used": fraction,
        "uses": uses_total,
        "items_held_out": int(np.asarray(pool.holdout).sum()),
        "timed": timed,
    }


def _fmt_s(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def guard_refusal(forecast: dict[str, Any], recipe: Any) -> str:
    """The message that refuses a run: each failing guard with its figure and limit, then
    the ways out (more source material, perturbation, fewer samples, --allow-narrow)."""
    failed = [g for g in forecast["guards"] if not g["passed"]]
    samples = forecast["samples"]
    lines = [f"the coverage forecast fails {len(failed)} guard{'s' if len(failed) != 1 else ''}; "
             "refusing to synthesize data that is bound to be narrow:"]
    ways: list[str] = []
    for g in failed:
        f = forecast["pools"][g["pool"]]
        pool, name, value, limit = g["pool"], g["name"], g["value"], g["limit"]
        if name == "max_reuse_factor":
            if f["timed"]:
                detail = (f"{_fmt_s(f['seconds_used'])} drawn from {_fmt_s(f['seconds_available'])} in "
                          f"{f['items_available']} item(s): each second would be used ~{value:.0f} times")
                ways.append(f"more source audio: about {_fmt_s(f['seconds_used'] / limit)} of distinct audio "
                            f"in pool '{pool}' (it has {_fmt_s(f['seconds_available'])})")
            else:
                detail = f"{f['uses']:.0f} uses of {f['items_available']} item(s)"
                ways.append(f"more source items: about {f['uses'] / limit:.0f} distinct items in pool '{pool}' "
                            f"(it has {f['items_available']})")
            fewer = max(1, int(samples * limit / value))
            if fewer < samples:
                ways.append(f"fewer samples: about {fewer} in total instead of {samples}")
        else:
            detail = f"{GUARDS[name][0]} is {value:.4g}"
            ways.append(f"more distinct items in pool '{pool}', or a lower guards.{name}")
        rel = ">" if GUARDS[name][1] == "max" else "<"
        lines.append(f"  pool '{pool}': {name.replace('max_', '').replace('min_', '').replace('_', ' ')} "
                     f"{value:.4g} {rel} {name} {limit:g} ({detail})")
        ways.append(f"perturbation: if the recipe perturbs the pieces of '{pool}' (speed, gain, reverb) so that "
                    f"reused seconds differ, say how far to trust that with guards.pools.{pool}.{name}")
    ways.append("--allow-narrow: run anyway; the coverage report at the end still shows the figures")
    lines.append("ways out:")
    lines += [f"  - {w}" for w in dict.fromkeys(ways)]
    return "\n".join(lines)


def check_forecast(recipe: Any, index: Any, *, allow_narrow: bool = False) -> dict[str, Any]:
    """Forecast the guards; raise :class:`GuardError` (exit code 3) unless they pass or
    ``allow_narrow``. Returns the forecast."""
    forecast = forecast_coverage(recipe, index)
    if not forecast["passed"] and not allow_narrow:
        raise GuardError(guard_refusal(forecast, recipe))
    return forecast


# =========================================================================== text + HTML


def _num(v: Any, spec: str = ".4g") -> str:
    return "-" if v is None else format(v, spec)


def describe_guards(guards: list[dict[str, Any]]) -> list[str]:
    lines = []
    for g in guards:
        rel = "<=" if g["name"].startswith("max") or g["name"] == "holdout_unseen" else ">="
        lines.append(f"  {'pass' if g['passed'] else 'FAIL'}  {g['name']:<24} {g['pool']:<14} "
                     f"{_num(g['value'])} {rel} {g['limit']:g}")
    return lines


def describe_pools(pools: dict[str, dict[str, Any]]) -> list[str]:
    head = (f"  {'pool':<14} {'items used':>15} {'eff.sources':>11} {'max share':>9} "
            f"{'s available':>11} {'s used':>10} {'unique s':>10} {'reuse':>8} {'used %':>7}")
    lines = [head]
    for name, f in pools.items():
        used = f"{_num(f['items_used'], '.0f')}/{f['items_available']}"
        lines.append(
            f"  {name:<14} {used:>15} {_num(f['effective_sources'], '.1f'):>11} {_num(f['max_share'], '.3f'):>9} "
            f"{_num(f['seconds_available'], '.0f'):>11} {_num(f['seconds_used'], '.0f'):>10} "
            f"{_num(f['unique_seconds_used'], '.0f'):>10} {_num(f['reuse_factor'], '.1f'):>8} "
            f"{_num(100 * f['fraction_used'] if f['fraction_used'] is not None else None, '.0f'):>7}"
        )
    return lines


def describe_forecast(forecast: dict[str, Any]) -> str:
    """Human-readable guard forecast (``shardsmith plan``)."""
    lines = [f"coverage forecast for {forecast['samples']} samples "
             f"({'passes' if forecast['passed'] else 'FAILS'} the guards):"]
    lines += describe_pools(forecast["pools"])
    lines += describe_guards(forecast["guards"]) or ["  (no guards in force)"]
    return "\n".join(lines)


def describe_coverage(report: dict[str, Any]) -> str:
    """Human-readable coverage report (``shardsmith coverage``)."""
    lines = [f"coverage of {report['recipe_name']!r}: {report['samples']} samples in {report['shards']} shards"
             + ("" if report["complete"] else " (the run is not complete)")
             + f": {'PASSED' if report['passed'] else 'FAILED'}"]
    lines.append("pools:")
    lines += describe_pools(report["pools"])
    if report["params"]:
        lines.append("parameters (share of the requested range covered, 20 bins):")
        for name, p in report["params"].items():
            rng = f"[{p['range'][0]:g}, {p['range'][1]:g}]" if p["range"] else "(no range)"
            cov = f"{100 * p['range_covered']:.0f}% covered" if p["range_covered"] is not None else ""
            lines.append(f"  {name:<36} {rng:<16} n={p['count']:<8} observed {_num(p['min'])} .. {_num(p['max'])}  {cov}")
    e = report["embedding"]
    if e["dim"]:
        lines.append(
            f"embedding ({e['dim']} dims, sample of {e['sample_size']}): Vendi score {_num(e['vendi_score'])} "
            f"(bandwidth {e['vendi_bandwidth']:g}), participation ratio {_num(e['participation_ratio'])}, "
            f"near-duplicate pairs {_num(e['near_duplicate_pair_rate'])} (RMS < {e['near_duplicate_rms']:g})"
        )
    h = report["holdout"]
    if h["pools"]:
        for name, p in h["pools"].items():
            lines.append(f"holdout: pool {name!r}: {p['items_held_out']} held-out items, used "
                         f"{p['held_out_uses_outside_holdout_splits']} times outside holdout splits "
                         f"{'(confirmed unseen)' if p['held_out_uses_outside_holdout_splits'] == 0 else '(LEAKED)'}")
    lines.append("guards:")
    lines += describe_guards(report["guards"]) or ["  (no guards in force)"]
    return "\n".join(lines)


def coverage_html(report: dict[str, Any], cs: CoverageStats | None = None) -> str:
    """A self-contained HTML page: tables, item-usage curves, parameter histograms and a
    2-D projection of the embedding sample coloured by noise pool."""
    from .report import esc, figure_html, new_figure, page, section, table_html

    sections = []
    verdict = "passed" if report["passed"] else "FAILED"
    sections.append(section(
        "Guards",
        f'<p class="{"pass" if report["passed"] else "fail"}">Coverage guards {verdict}.</p>',
        table_html([{**g, "value": g["value"] if g["value"] is not None else "-"} for g in report["guards"]],
                   ["name", "pool", "value", "limit", "passed"]),
    ))
    cols = ["pool", "items_available", "items_used", "effective_sources", "effective_sources_simpson",
            "max_share", "seconds_available", "seconds_used", "unique_seconds_used", "reuse_factor", "fraction_used"]
    rows = [{"pool": n, **{k: ("-" if f.get(k) is None else f.get(k)) for k in cols[1:]}}
            for n, f in report["pools"].items()]
    parts = [table_html(rows, cols)]
    if cs is not None:
        for name in report["pools"]:
            w = cs.usage_distribution(name)
            if not w.size:
                continue
            fig, ax = new_figure(6.5, 2.8)
            ax.plot(np.arange(1, w.size + 1), w, drawstyle="steps-post", label="items, most used first")
            ax.axhline(float(w.sum()) / cs.catalog[name].n_items, color="#999", linestyle="--",
                       label="if every item were used equally")
            ax.legend(fontsize=8)
            ax.set_yscale("log")
            if w.size > 20:
                ax.set_xscale("log")
            unit = "seconds used" if cs.catalog[name].timed else "uses"
            unused = cs.catalog[name].n_items - report["pools"][name]["items_used"]
            ax.set_xlabel("item rank")
            ax.set_ylabel(unit)
            ax.set_title(f"{name}: {unit} per item, sorted ({unused:.0f} items never used)")
            parts.append(figure_html(fig, f"usage of {name}"))
    sections.append(section("Pools", *parts))

    if report["params"]:
        parts = []
        prow = [{"parameter": n, "range": p["range"] if p["range"] else "-", "count": p["count"],
                 "min": p["min"] if p["min"] is not None else "-", "max": p["max"] if p["max"] is not None else "-",
                 "range covered": p["range_covered"] if p["range_covered"] is not None else "-"}
                for n, p in report["params"].items()]
        parts.append(table_html(prow))
        for name, p in report["params"].items():
            h = p["histogram"]
            edges, counts = np.array(h["edges"], float), np.array(h["counts"], float)
            fig, ax = new_figure(6.5, 2.6)
            if len(edges) > 2:
                ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#4a78b5", edgecolor="white")
            else:
                ax.bar([edges[0]], counts, width=max(1e-6, abs(edges[0]) * 0.05 + 1e-3), color="#4a78b5")
            if p["range"]:
                ax.axvspan(p["range"][0], p["range"][1], color="#f0b400", alpha=0.15, label="requested range")
                ax.legend(loc="upper right", fontsize=8)
            ax.set_title(f"{name}" + (" (from a sample of the values)" if h["from_sample"] else ""))
            ax.set_ylabel("samples")
            parts.append(figure_html(fig, f"histogram of {name}"))
        sections.append(section("Parameters", *parts))

    e = report["embedding"]
    parts = [table_html([{k: ("-" if v is None else v) for k, v in e.items()}])]
    proj = cs.projection() if cs is not None else None
    if proj is not None:
        xy, labels = proj
        fig, ax = new_figure(6.5, 4.5)
        for lab in sorted(set(labels)):
            m = np.array([lb == lab for lb in labels])
            ax.scatter(xy[m, 0], xy[m, 1], s=8, alpha=0.7, label=lab)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        ax.set_title("embedding sample (PCA of standardized dims), by noise pool")
        ax.legend(fontsize=8, markerscale=2)
        parts.append(figure_html(fig, "embedding projection"))
    sections.append(section("Embedding space", *parts))

    h = report["holdout"]
    hrows = [{"pool": n, **p} for n, p in h["pools"].items()]
    sections.append(section(
        "Held-out items",
        f'<p class="note">holdout splits: {esc(", ".join(h["holdout_splits"]) or "none")}</p>',
        table_html(hrows),
    ))
    sub = (f"{report['samples']} samples, {report['seconds']:.0f} s, {report['shards']} shards"
           + ("" if report["complete"] else " (run not complete)"))
    return page(f"Coverage: {report['recipe_name']}", sections, subtitle=sub)


def write_coverage_html(path: str | Path, report: dict[str, Any], cs: CoverageStats | None = None) -> Path:
    from .report import write_report

    return write_report(path, coverage_html(report, cs))


def report_json(report: dict[str, Any]) -> str:
    """The report as stable JSON text (sorted keys)."""
    return json.dumps(report, indent=1, sort_keys=True)


__all__ = [
    "COVERAGE_FILE", "CoverageStats", "PoolCatalog", "analyze_coverage", "load_coverage_stats",
    "write_coverage", "forecast_coverage", "check_forecast", "guard_refusal", "evaluate_guards",
    "describe_coverage", "describe_forecast", "coverage_html", "write_coverage_html",
    "catalog_from_index", "catalog_from_parquet", "STATS_FORMAT", "sample_key",
]
