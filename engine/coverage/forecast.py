"""The plan-time forecast: the pool figures and guards of a run, predicted from the
recipe and the pool index before anything is synthesized.

Example::

    forecast = forecast_coverage(recipe, index_pools(recipe))
    forecast["passed"], forecast["pools"]["cabin"]["reuse_factor"]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import GuardError
from ..rng import sample_rng
from ..statistics import effective_numbers
from ..synth import build_synthesizer
from .figures import round_floats
from .guards import evaluate_guards, guard_refusal

FORECAST_DRAWS = 500  # sample_params draws per split for the plan-time forecast

def forecast_coverage(recipe: Any, index: Any, *, draws: int = FORECAST_DRAWS) -> dict[str, Any]:
    """Predict the pool figures and guards of a run before anything is synthesized.

    Draws the first ``draws`` samples' params of each split (the very params the run
    will use) to learn how many pieces of each pool a sample takes and how long they
    are; items are assumed drawn uniformly from the items a split may use (one simulated
    table of Poisson draws per item gives items used, effective sources and largest
    share, so effective sources never exceed items used). An item of
    ``d`` seconds drawn ``c`` times on average, each piece covering ``s`` seconds,
    covers ``d * (1 - exp(-c * min(1, s / d)))`` unique seconds (random placement).

    Example: ``forecast_coverage(recipe, index_pools(recipe))["passed"]``
    """
    synth = build_synthesizer(recipe, index)
    model = synth.source_pieces  # the synthesizer's own prediction of the pieces it takes
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
    passed = all(g["passed"] for g in guards)
    return round_floats({
        "samples": samples,
        "draws_per_split": draws,
        "pools": pools,
        "guards": guards,
        "passed": passed,
        "max_samples_passing": None if passed else _max_samples_passing(recipe, index, groups, samples),
    })


def _max_samples_passing(recipe: Any, index: Any, groups: dict[str, dict[Any, list[Any]]],
                         samples: int) -> int | None:
    """The largest total sample count below ``samples`` (every split scaled alike) whose
    forecast passes every guard, or None if no smaller run passes (a guard that fewer
    samples cannot fix, such as too few effective sources)."""
    used = list(recipe.synth.pools_used())

    def passes(n: int) -> bool:
        f = n / samples
        pools = {name: _forecast_pool(index.pools[name], {k: [u * f, s * f, w] for k, (u, s, w) in
                                                           groups.get(name, {}).items()}) for name in used}
        return all(g["passed"] for g in evaluate_guards(pools, recipe, used))

    lo, hi = 0, samples  # passes(lo) is assumed (or nothing passes), passes(hi) is False
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if passes(mid):
            lo = mid
        else:
            hi = mid
    # the share figures come from a simulated draw, so check the answer itself
    while lo >= 1 and not passes(lo):
        lo -= max(1, lo // 50)
    return lo if lo >= 1 else None


def _forecast_pool(pool: Any, groups: dict[Any, list[Any]]) -> dict[str, Any]:
    d_all = np.asarray(pool.duration_s, np.float64)
    timed = bool((d_all > 0).any())
    # One simulated usage table (Poisson draws per item, fixed seed): the share figures
    # (effective sources, largest share) of a finite number of draws, as the analyzer
    # will compute them.
    # Items used are counted on that same table: an expected count beside a simulated
    # entropy could show more effective sources than items used (83.8 of 79).
    rng = np.random.default_rng(0)
    weight = np.zeros(len(d_all))
    unique = np.zeros(len(d_all))
    drawn = np.zeros(len(d_all))
    uses_total = seconds_total = 0.0
    for key in sorted(groups, key=str):
        uses, seconds, whole = groups[key]
        idx = np.arange(len(d_all)) if key is None else pool.eligible(key)
        if uses <= 0 or idx.size == 0:
            continue
        d = d_all[idx]
        c = uses / idx.size
        k = rng.poisson(c, idx.size).astype(np.float64)
        drawn[idx] += k
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
    items_used = float((drawn > 0).sum())
    seconds_available = math.fsum(d_all.tolist())
    eff = simpson = max_share = None
    if weight.sum() > 0:
        eff, simpson, max_share = effective_numbers(weight[weight > 0] / weight.sum())
        # exp(entropy) of n shares is at most n; the bound holds to the last bit too
        eff, simpson = min(eff, items_used), min(simpson, items_used)
    unique_s = float(unique.sum())
    if timed:
        reuse = seconds_total / unique_s if unique_s > 0 else None
        fraction = unique_s / seconds_available if seconds_available > 0 else 0.0
    else:
        reuse = uses_total / items_used if items_used > 0 else None
        fraction = items_used / len(d_all) if len(d_all) else 0.0
    figures = {
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
    if getattr(pool, "width", None) is not None and not timed:  # an image pool: pixels from the same draw
        px = np.asarray(pool.width, np.float64) * np.asarray(pool.height, np.float64)
        figures.update(pixels_available=float(px.sum()), pixels_used=float((drawn * px).sum()),
                       unique_pixels_used=float(px[drawn > 0].sum()))
    return figures


def check_forecast(recipe: Any, index: Any, *, allow_narrow: bool = False) -> dict[str, Any]:
    """Forecast the guards; raise :class:`GuardError` (exit code 3) unless they pass or
    ``allow_narrow``. Returns the forecast."""
    forecast = forecast_coverage(recipe, index)
    if not forecast["passed"] and not allow_narrow:
        raise GuardError(guard_refusal(forecast, recipe))
    return forecast
