"""The report's figures, computed from tallies: per pool (items used, effective sources,
largest share, unique seconds or, for image pools, pixels, reuse, fraction used), per parameter (histogram, share of
the range covered), diversity of the embedding sample, and the rounding that makes the
report byte-stable.

Example::

    figs = pool_figures(catalog["cabin"], tally)
    figs["reuse_factor"], figs["effective_sources"]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..statistics import effective_numbers, pairwise_mean_square, participation_ratio, round_floats, vendi_score
from ..stats import PARAM_BINS
from .catalog import PoolCatalog
from .tallies import ParamTally, PoolTally

REPORT_BINS = 20
VENDI_BANDWIDTH = 1.0
NEAR_DUPLICATE_RMS = 0.1
# Floats in the report: 6 significant digits (statistics.round_floats), stable across BLAS builds.


# --------------------------------------------------------------------------- pools


def pool_figures(cat: PoolCatalog, st: PoolTally) -> dict[str, Any]:
    """Every figure of one pool, and of its seen and held-out items apart when it has both."""
    figs = usage_figures(cat, st, np.ones(len(cat.items), bool), st.total_uses, st.total_us)
    figs.update(
        items_available=cat.n_items,
        seconds_available=cat.seconds_available,
        fraction_used=fraction_used(cat, figs, cat.n_items, cat.seconds_available),
        items_held_out=cat.n_held_out,
        seconds_held_out=cat.seconds_held_out,
        timed=cat.timed,
        exact=cat.exact,
        item_sample_rate=cat.rate,
        uses=st.total_uses,
        unknown_item_uses=st.unknown_uses,
    )
    if cat.pixels is not None:  # an image pool: pixels where an audio pool has seconds
        figs.update(pixel_figures(cat, st, np.ones(len(cat.items), bool)))
    if cat.n_held_out and cat.exact:
        groups = {}
        for gname, mask in (("seen", ~cat.holdout), ("held_out", cat.holdout)):
            g = usage_figures(cat, st, mask, int(st.uses[mask].sum()), int(st.us[mask].sum()))
            n_g = int(mask.sum())
            avail = math.fsum(cat.duration_s[mask].tolist())
            g.update(items_available=n_g, seconds_available=avail,
                     fraction_used=fraction_used(cat, g, n_g, avail))
            if cat.pixels is not None:
                g.update(pixel_figures(cat, st, mask))
            groups[gname] = g
        figs["groups"] = groups
    return figs


def usage_figures(cat: PoolCatalog, st: PoolTally, mask: np.ndarray, total_uses: int, total_us: int) -> dict[str, Any]:
    """Items used, effective sources, largest share, seconds and unique seconds used and
    the reuse factor of the items in ``mask``."""
    used = (st.uses > 0) & mask
    n_used_tracked = int(used.sum())
    rate = cat.rate
    items_used = n_used_tracked if cat.exact else int(round(n_used_tracked / rate))
    weights = st.us[used] if cat.timed else st.uses[used]
    total = total_us if cat.timed else total_uses
    eff = simpson = max_share = None
    if total > 0 and weights.size:
        eff, simpson, max_share = effective_numbers(weights.astype(np.float64) / float(total), rate)
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


def pixel_figures(cat: PoolCatalog, st: PoolTally, mask: np.ndarray) -> dict[str, Any]:
    """An image pool's pixels: available (of the items in ``mask``), used (each use counts
    the item's pixels) and unique pixels used (each used item once); the image
    counterparts of the seconds figures. Estimates scaled by the tracked share when the
    pool is tracked on a hash sample (``exact`` false).

    Example: ``pixel_figures(cat, tally, np.ones(len(cat.items), bool))["unique_pixels_used"]``
    """
    px = cat.pixels if cat.pixels is not None else np.zeros(len(cat.items))
    used = (st.uses > 0) & mask
    scale = 1.0 if cat.exact else 1.0 / cat.rate
    whole = bool(mask.all())
    available = cat.pixels_available if whole and cat.pixels_available is not None else float(px[mask].sum()) * scale
    return {
        "pixels_available": available,
        "pixels_used": float((st.uses[used] * px[used]).sum()) * scale,
        "unique_pixels_used": float(px[used].sum()) * scale,
    }


def fraction_used(cat: PoolCatalog, figs: dict[str, Any], n_items: int, seconds: float) -> float:
    """Unique seconds used / seconds available (items used / items without durations)."""
    if cat.timed:
        return figs["unique_seconds_used"] / seconds if seconds > 0 else 0.0
    return figs["items_used"] / n_items if n_items else 0.0


# --------------------------------------------------------------------------- parameters


def param_figures(st: ParamTally) -> dict[str, Any]:
    """Count, min, max and a :data:`REPORT_BINS`-bin histogram of one parameter: over its
    requested range when it has one (and the share of the range covered), else over the
    observed values of its sample."""
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
            range_covered=_covered(counts, edges, lo, hi),
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


def _covered(counts: np.ndarray, edges: np.ndarray, lo: float, hi: float) -> float:
    """Share of the bins over a requested range that hold a value; for a whole-number
    parameter over a short whole-number range (``radius: [2, 4]``: 3 values in 20 bins)
    the share of the bins a whole number can fall in, so drawing every value is 100%."""
    occupied = counts > 0
    if float(lo).is_integer() and float(hi).is_integer() and hi - lo + 1 < len(counts):
        ints = np.arange(lo, hi + 1)
        reachable = np.zeros(len(counts), bool)
        reachable[np.clip(np.searchsorted(edges, ints, side="right") - 1, 0, len(counts) - 1)] = True
        if not (occupied & ~reachable).any():  # every value seen is a whole number
            return float((occupied & reachable).sum()) / float(reachable.sum())
    return float(occupied.sum()) / len(counts)


# --------------------------------------------------------------------------- embedding


def embedding_diversity(z: np.ndarray, corr: np.ndarray) -> dict[str, Any]:
    """Participation ratio of ``corr``; with two or more rows of the standardized sample
    ``z`` also its Vendi score and near-duplicate rates (RMS distance below
    :data:`NEAR_DUPLICATE_RMS`)."""
    out: dict[str, Any] = {"participation_ratio": participation_ratio(corr)}
    m = z.shape[0]
    if m >= 2:
        r2 = pairwise_mean_square(z)
        close = r2 < NEAR_DUPLICATE_RMS**2
        np.fill_diagonal(close, False)
        pairs = int(np.triu(close, 1).sum())
        near_samples = float(close.any(axis=1).sum())
        del close
        # The kernel is built in r2 itself (nothing reads the distances after this): the
        # peak of the analysis of 2,000 rows is one 32 MB matrix lower.
        out["vendi_score"] = vendi_score(r2, VENDI_BANDWIDTH, overwrite=True)
        out["near_duplicate_pair_rate"] = pairs / (m * (m - 1) / 2)
        out["near_duplicate_sample_rate"] = near_samples / m
    return out
