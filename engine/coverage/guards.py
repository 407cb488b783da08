"""Coverage guards: the limits a recipe sets (``guards:``), checking figures against
them, and the message that refuses a run the forecast says is too narrow.

Example::

    evaluate_guards(report["pools"], recipe, ["cabin"])
    # [{"name": "max_reuse_factor", "pool": "cabin", "value": 11.4, "limit": 20.0, "passed": True}, ...]
"""

from __future__ import annotations

from typing import Any

from ..report import count

# guard name -> (pool figure it limits, "max" or "min")
GUARDS: dict[str, tuple[str, str]] = {
    "max_reuse_factor": ("reuse_factor", "max"),
    "min_effective_sources": ("effective_sources", "min"),
    "max_source_share": ("max_share", "max"),
    "min_pool_fraction_used": ("fraction_used", "min"),
}


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
                          f"{count(f['items_available'], 'item')}: each second would be used ~{value:.0f} times")
                ways.append(f"more source audio: about {_fmt_s(f['seconds_used'] / limit)} of distinct audio "
                            f"in pool '{pool}' (it has {_fmt_s(f['seconds_available'])})")
            else:
                detail = f"{count(round(f['uses']), 'use')} of {count(f['items_available'], 'item')}"
                ways.append(f"more source items: about {f['uses'] / limit:.0f} distinct items in pool '{pool}' "
                            f"(it has {f['items_available']})")
        else:
            detail = f"{GUARDS[name][0]} is {value:.4g}"
            ways.append(f"more distinct items in pool '{pool}', or a lower guards.{name}")
        rel = ">" if GUARDS[name][1] == "max" else "<"
        lines.append(f"  pool '{pool}': {name.replace('max_', '').replace('min_', '').replace('_', ' ')} "
                     f"{value:.4g} {rel} {name} {limit:g} ({detail})")
        if f.get("timed", True):
            ways.append(f"perturbation: if the recipe perturbs the pieces of '{pool}' (speed, gain, reverb) so that "
                        f"reused seconds differ, say how far to trust that with guards.pools.{pool}.{name}")
        else:  # an image pool: what changes a reused item is the transform pipeline
            ways.append(f"augmentation: if synth.transforms change each use of an item of '{pool}' enough that "
                        f"reused items differ, say how far to trust that with guards.pools.{pool}.{name}")
    fewer = forecast.get("max_samples_passing")
    if fewer:
        ways.append(f"fewer samples: at most about {fewer} in total instead of {samples} "
                    "(every split scaled alike; the forecast passes every guard there)")
    ways.append("--allow-narrow: run anyway; the coverage report at the end still shows the figures")
    lines.append("ways out:")
    lines += [f"  - {w}" for w in dict.fromkeys(ways)]
    return "\n".join(lines)
