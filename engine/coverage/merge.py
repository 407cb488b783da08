"""Merging the per-shard stats of a run (``engine/stats.py``) into one
:class:`CoverageStats`, and the report's data built from it.

Example: ``CoverageStats(catalog, {"train": False}).merge(other).report(recipe)["passed"]``
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ShardError
from ..stats import EMBED_SCALE_BITS, SAMPLE_K, decode_vector
from .catalog import PoolCatalog
from .figures import NEAR_DUPLICATE_RMS, VENDI_BANDWIDTH, embedding_diversity, param_figures, pool_figures, round_floats
from .guards import evaluate_guards
from .tallies import ParamTally, PoolTally

REPORT_FORMAT = 1


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
        self.pools = {name: PoolTally(cat) for name, cat in catalog.items()}
        # split -> pool -> [uses, microseconds, uses of held-out items]
        self.splits: dict[str, dict[str, list[int]]] = {}
        self.split_rows: dict[str, int] = {}
        self.shards = 0
        self.rows = 0
        self.seconds_us = 0
        self.params: dict[str, ParamTally] = {}
        self.embed_dim: int | None = None
        self.embed_count = 0
        self._s1: np.ndarray | None = None  # exact sums: Python ints in object arrays
        self._s2: np.ndarray | None = None
        # Sums of shards whose values fit, added in int64 first (C speed) and folded into
        # the exact sums every PENDING_MAX shards: each value below 2**56 in magnitude, so
        # 64 of them cannot overflow.
        self._pending: tuple[np.ndarray, np.ndarray] | None = None
        self._pending_n = 0
        self.embed_sample: list[tuple[int, str, str, str, str]] = []  # key, id, split, label, b64

    PENDING_MAX = 64
    PENDING_LIMIT = 2**56

    @property
    def embed_s1(self) -> np.ndarray | None:
        self._fold_pending()
        return self._s1

    @embed_s1.setter
    def embed_s1(self, value: np.ndarray | None) -> None:
        self._fold_pending()
        self._s1 = value

    @property
    def embed_s2(self) -> np.ndarray | None:
        self._fold_pending()
        return self._s2

    @embed_s2.setter
    def embed_s2(self, value: np.ndarray | None) -> None:
        self._fold_pending()
        self._s2 = value

    def _fold_pending(self) -> None:
        if self._pending is not None:
            p1, p2 = self._pending
            self._pending, self._pending_n = None, 0
            self._s1 = self._s1 + p1.astype(object)
            self._s2 = self._s2 + p2.astype(object)

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
        if kp.size < 2 or np.unique(kp).size == kp.size:  # the usual case: each item once
            st.uses[kp] += ku
            st.us[kp] += ks
        else:  # np.add.at (much slower): a hand-made record may list an item twice
            np.add.at(st.uses, kp, ku)
            np.add.at(st.us, kp, ks)
        held_catalog = int(ku[cat.holdout[kp]].sum())
        if buckets and st.bitmap.size:
            self._mark_buckets(cat, st, kp, [buckets[i] for i in np.flatnonzero(known).tolist()])
        # The worker's count covers items outside the hash sample too; the catalog's
        # catches a worker that had a different pool index. Either one is a violation.
        acc[2] += max(held_worker, held_catalog)

    @staticmethod
    def _mark_buckets(cat: PoolCatalog, st: PoolTally, pos: np.ndarray, ranges: list[list[int]]) -> None:
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
        st = ParamTally(rng)  # type: ignore[arg-type]
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
        try:
            s1 = np.array(emb["sum"], dtype=np.int64)
            s2 = np.array(emb["sum_outer_upper"], dtype=np.int64)
            lim = self.PENDING_LIMIT
            fits = s1.shape == (dim,) and s2.shape == self._s2.shape and bool(  # type: ignore[union-attr]
                -lim < s1.min(initial=0) and s1.max(initial=0) < lim
                and -lim < s2.min(initial=0) and s2.max(initial=0) < lim)
        except (OverflowError, TypeError, ValueError):
            fits = False
        if fits:
            if self._pending is None:
                self._pending = (s1, s2)
            else:
                self._pending[0].__iadd__(s1)
                self._pending[1].__iadd__(s2)
            self._pending_n += 1
            if self._pending_n >= self.PENDING_MAX:
                self._fold_pending()
        else:  # values beyond int64 (large shards): exact Python integers
            self._fold_pending()
            self._s1 += np.array([int(v) for v in emb["sum"]], dtype=object)
            self._s2 += np.array([int(v) for v in emb["sum_outer_upper"]], dtype=object)
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
                copy = ParamTally(st.range)
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
        return pool_figures(self.catalog[name], self.pools[name])

    def param_figures(self) -> dict[str, Any]:
        out = {}
        for name in sorted(self.params):
            out[name] = param_figures(self.params[name])
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
        out.update(embedding_diversity(z, corr))  # the keys above keep their order
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
