"""Generator pools: sources made on the fly instead of read from files.

Two pool kinds (see ``engine/recipe.py``):

- ``noise_generator``: coloured noise, ``count`` virtual items per colour, ids
  ``gen:<colour>/<nnnn>`` (``gen:pink/0003``). Item ``i`` of a colour has the slope
  ``nominal + jitter`` (white 0, pink -3, brown -6, blue +3, violet +6 dB per octave);
  the jitters of a colour's items are spread evenly over ``slope_jitter_db_range``
  (one draw per stratum), so even a few items cover the range.
- ``rir_generator``: synthetic room impulse responses, ids ``gen:rir/<nnnn>``, with an
  RT60 and a direct-to-reverberant ratio per item, spread over their ranges as a Latin
  hypercube (each range cut into ``count`` strata, each stratum used once).

An item is fixed by its kind, its id and the pool's ranges -- not by the recipe seed or
the pool's name -- so every worker makes the same samples, and the same item means the
same signal in every run.

Example::

    items = virtual_items("hum", NoiseGeneratorPool(kind="noise_generator"))
    x = render_item(NoiseGeneratorPool(kind="noise_generator"), items[0].item)
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import ops

__all__ = ["NOMINAL_SLOPES", "VirtualItem", "virtual_items", "item_labels", "render_item"]

NOMINAL_SLOPES = {"white": 0.0, "pink": -3.0, "brown": -6.0, "blue": 3.0, "violet": 6.0}
GENERATOR_KINDS = ("noise_generator", "rir_generator")


@dataclass(frozen=True)
class VirtualItem:
    """One item of a generator pool: its id, length and the values that define it."""

    item: str
    duration_s: float
    sample_rate: int
    frames: int
    labels: dict[str, Any] = field(default_factory=dict)


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "big")))


def _strata(key: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Two independent stratified draws in [0, 1) for ``count`` items (a Latin hypercube)."""
    rng = _rng("strata", key, count)
    first = (np.arange(count) + rng.random(count)) / count
    second = (rng.permutation(count) + rng.random(count)) / count
    return first, second


def _lerp(lo_hi: tuple[float, float], u: float) -> float:
    lo, hi = lo_hi
    return lo + (hi - lo) * u


def virtual_items(name: str, cfg: Any) -> list[VirtualItem]:
    """The items of a generator pool, sorted by id.

    Example: ``[v.item for v in virtual_items("rooms", RirGeneratorPool(kind="rir_generator", count=2))]``
    """
    sr = int(cfg.sample_rate)
    out: list[VirtualItem] = []
    if cfg.kind == "noise_generator":
        frames = int(round(cfg.duration_s * sr))
        for colour in cfg.colours:
            jitter, _ = _strata(f"noise/{colour}", cfg.count)
            for i in range(cfg.count):
                slope = round(NOMINAL_SLOPES[colour] + _lerp(cfg.slope_jitter_db_range, float(jitter[i])), 4)
                out.append(
                    VirtualItem(
                        item=f"gen:{colour}/{i:04d}", duration_s=frames / sr, sample_rate=sr, frames=frames,
                        labels={"colour": colour, "slope_db_per_oct": slope},
                    )
                )
    elif cfg.kind == "rir_generator":
        u_rt, u_drr = _strata("rir", cfg.count)
        for i in range(cfg.count):
            rt60 = round(_lerp(cfg.rt60_s_range, float(u_rt[i])), 4)
            drr = round(_lerp(cfg.drr_db_range, float(u_drr[i])), 3)
            frames = int(round(0.002 * sr)) + max(2, int(math.ceil(1.2 * rt60 * sr)))
            out.append(
                VirtualItem(
                    item=f"gen:rir/{i:04d}", duration_s=frames / sr, sample_rate=sr, frames=frames,
                    labels={"rt60_s": rt60, "drr_db": drr},
                )
            )
    else:
        raise ValueError(f"not a generator pool kind: {cfg.kind!r}")
    out.sort(key=lambda v: v.item)
    return out


def item_labels(cfg: Any, item: str) -> dict[str, Any]:
    """The defining values of one item (``colour``/``slope_db_per_oct`` or ``rt60_s``/``drr_db``).

    Example: ``item_labels(cfg, "gen:rir/0003")["rt60_s"]``
    """
    try:
        kind, number = item.split(":", 1)[1].split("/")
        i = int(number)
    except (IndexError, ValueError):
        raise ValueError(f"not a generator item id: {item!r}") from None
    if kind == "rir" and cfg.kind == "rir_generator" and 0 <= i < cfg.count:
        u_rt, u_drr = _strata("rir", cfg.count)
        return {"rt60_s": round(_lerp(cfg.rt60_s_range, float(u_rt[i])), 4),
                "drr_db": round(_lerp(cfg.drr_db_range, float(u_drr[i])), 3)}
    if cfg.kind == "noise_generator" and kind in cfg.colours and 0 <= i < cfg.count:
        jitter, _ = _strata(f"noise/{kind}", cfg.count)
        slope = round(NOMINAL_SLOPES[kind] + _lerp(cfg.slope_jitter_db_range, float(jitter[i])), 4)
        return {"colour": kind, "slope_db_per_oct": slope}
    raise ValueError(f"{item!r} is not an item of this {cfg.kind} pool")


def render_item(cfg: Any, item: str) -> np.ndarray:
    """The whole signal of one virtual item, mono float32 at the pool's sample rate.

    Example: ``render_item(cfg, "gen:pink/0000").shape == (int(cfg.duration_s * cfg.sample_rate),)``
    """
    labels = item_labels(cfg, item)
    sr = int(cfg.sample_rate)
    if cfg.kind == "noise_generator":
        n = int(round(cfg.duration_s * sr))
        return ops.coloured_noise(n, sr, labels["slope_db_per_oct"], _rng("noise", item, labels["slope_db_per_oct"]))
    return ops.synthetic_rir(sr, labels["rt60_s"], labels["drr_db"], _rng("rir", item, labels["rt60_s"], labels["drr_db"]))
