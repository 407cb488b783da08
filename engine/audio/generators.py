"""Generator pools: sources made on the fly instead of read from files.

Two pool kinds (see ``engine/recipe.py``):

- ``noise_generator``: coloured noise, ``count`` virtual items per colour, ids
  ``gen:<colour>/<nnnn>`` (``gen:pink/0003``). Item ``i`` of a colour has the slope
  ``nominal + jitter`` (white 0, pink -3, brown -6, blue +3, violet +6 dB per octave);
  the jitters of a colour's items are spread evenly over ``slope_jitter_db_range``
  (one draw per stratum), so even a few items cover the range.
- ``rir_generator``: synthetic room impulse responses, ids ``gen:rir/<nnnn>``. With
  ``method: noise`` (the default) an RT60 and a direct-to-reverberant ratio per item,
  spread over their ranges as a Latin hypercube (each range cut into ``count`` strata,
  each stratum used once). With ``method: image_source`` a shoebox room per item
  (:mod:`engine.audio.rooms`): its size and absorption (or target RT60) spread over their
  ranges as a Latin hypercube, the source and microphone drawn inside it; the drawn
  values are the item's labels (:func:`room_labels`), and its RT60 and DRR are measured
  from the response by whoever uses it.

An item is fixed by its kind, its id and the pool's ranges -- not by the recipe seed or
the pool's name -- so every worker makes the same samples, and the same item means the
same signal in every run.

Example::

    items = virtual_items("hum", NoiseGeneratorPool(kind="noise_generator"))
    x = render_item(NoiseGeneratorPool(kind="noise_generator"), items[0].item)
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import ops, rooms

__all__ = ["NOMINAL_SLOPES", "VirtualItem", "virtual_items", "item_labels", "room_labels", "render_item"]

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
    elif cfg.kind == "rir_generator" and cfg.method == "image_source":
        for i in range(cfg.count):
            _, frames, labels = _room(cfg, i)
            out.append(VirtualItem(item=f"gen:rir/{i:04d}", duration_s=frames / sr, sample_rate=sr, frames=frames,
                                   labels=labels))
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
    if kind == "rir" and cfg.kind == "rir_generator" and cfg.method == "image_source" and 0 <= i < cfg.count:
        return _room(cfg, i)[2]
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
    if cfg.method == "image_source":
        room, frames, _ = _room(cfg, int(item.rsplit("/", 1)[1]))
        return rooms.image_source_rir(room, sr, frames, max_order=cfg.max_order, air_absorption=cfg.air_absorption)
    return ops.synthetic_rir(sr, labels["rt60_s"], labels["drr_db"], _rng("rir", item, labels["rt60_s"], labels["drr_db"]))


# --------------------------------------------------------------------------- simulated rooms

_WALL_LABELS = tuple(f"absorption_{w}" for w in ("x0", "x1", "y0", "y1", "floor", "ceiling"))


def _room_key(cfg: Any) -> str:
    """What defines a pool's rooms: its count and image-source settings (not its name,
    sample rate or holdout)."""
    fields = ("count", "rt60_s_range", "room_x_m_range", "room_y_m_range", "room_z_m_range", "absorption_range",
              "wall_absorption_range", "rt60_formula", "min_wall_distance_m", "min_source_mic_distance_m",
              "source_z_m_range", "mic_z_m_range", "speed_of_sound_m_s")
    return json.dumps({k: getattr(cfg, k) for k in fields}, sort_keys=True)


@functools.lru_cache(maxsize=16)
def _latin(key: str, count: int, dims: int) -> np.ndarray:
    """``dims`` stratified draws in [0, 1) for each of ``count`` items (a Latin hypercube):
    row ``d`` holds every stratum of dimension ``d`` once."""
    rng = _rng("rooms", key, count, dims)
    u = np.stack([(rng.permutation(count) + rng.random(count)) / count for _ in range(dims)])
    u.setflags(write=False)
    return u


def _draw_point(rng: np.random.Generator, size: tuple[float, float, float], wall: float,
                z_range: tuple[float, float] | None) -> tuple[float, float, float]:
    lo_hi = ((wall, size[0] - wall), (wall, size[1] - wall), z_range or (wall, size[2] - wall))
    return tuple(_mm(r, float(rng.random())) for r in lo_hi)  # type: ignore[return-value]


def _mm(lo_hi: tuple[float, float], u: float) -> float:
    """A value of the range at ``u``, to the millimetre, never outside the range."""
    return min(max(round(_lerp(lo_hi, u), 3), lo_hi[0]), lo_hi[1])


def _corners(size: tuple[float, float, float], wall: float, z_range: tuple[float, float] | None) -> list[tuple]:
    zs = z_range or (wall, size[2] - wall)
    return [(x, y, z) for x in (wall, size[0] - wall) for y in (wall, size[1] - wall) for z in zs]


def _room(cfg: Any, i: int) -> tuple[rooms.Room, int, dict[str, Any]]:
    """Room ``i`` of an image-source pool, its length in samples and its labels (a copy)."""
    # Cached: the synthesizer asks for an item's labels for every sample that uses it.
    spec = (cfg.model_dump_json(), i)
    hit = _ROOMS.get(spec)
    if hit is None:
        if len(_ROOMS) >= 4096:
            _ROOMS.clear()
        hit = _ROOMS[spec] = _draw_room(cfg, i)
    room, frames, labels = hit
    return room, frames, dict(labels)


_ROOMS: dict[tuple[str, int], tuple[rooms.Room, int, dict[str, Any]]] = {}


def _draw_room(cfg: Any, i: int) -> tuple[rooms.Room, int, dict[str, Any]]:
    key = _room_key(cfg)
    walls = cfg.wall_absorption_range
    u = _latin(key, cfg.count, 4 if walls is None else 9)[:, i]
    size = (_mm(cfg.room_x_m_range, float(u[0])), _mm(cfg.room_y_m_range, float(u[1])),
            _mm(cfg.room_z_m_range, float(u[2])))
    c = float(cfg.speed_of_sound_m_s)
    target = None
    if walls is not None:
        absorption = tuple(round(_lerp(walls[w], float(u[3 + k])), 4)
                           for k, w in enumerate(("x0", "x1", "y0", "y1", "floor", "ceiling")))
    else:
        if cfg.absorption_range is not None:
            a = _lerp(cfg.absorption_range, float(u[3]))
        else:
            target = round(_lerp(cfg.rt60_s_range, float(u[3])), 4)
            a = rooms.absorption_for_rt60(size, target, cfg.rt60_formula, c)
        absorption = (min(1.0, max(1e-4, round(a, 4))),) * 6
    # Source and microphone: uniform in the room less min_wall_distance_m (heights from
    # their ranges), redrawn until min_source_mic_distance_m apart; the recipe check
    # made sure some pair of corners is, the fallback when 100 draws are not.
    wall = float(cfg.min_wall_distance_m)
    rng = _rng("room", key, i)
    for _ in range(100):
        src = _draw_point(rng, size, wall, cfg.source_z_m_range)
        mic = _draw_point(rng, size, wall, cfg.mic_z_m_range)
        if math.dist(src, mic) >= cfg.min_source_mic_distance_m:
            break
    else:
        src, mic = max(((s, m) for s in _corners(size, wall, cfg.source_z_m_range)
                        for m in _corners(size, wall, cfg.mic_z_m_range)), key=lambda sm: math.dist(*sm))
    room = rooms.Room(size_m=size, absorption=absorption, source_m=src, mic_m=mic, speed_of_sound_m_s=c)
    sr = int(cfg.sample_rate)
    predicted = round(rooms.predicted_rt60(size, absorption, cfg.rt60_formula, c), 4)
    frames = rooms.frames_for(room, sr, predicted, max_length_s=float(cfg.max_length_s))
    labels: dict[str, Any] = {"room_x_m": size[0], "room_y_m": size[1], "room_z_m": size[2],
                              **dict(zip(_WALL_LABELS, absorption)),
                              "source_x_m": src[0], "source_y_m": src[1], "source_z_m": src[2],
                              "mic_x_m": mic[0], "mic_y_m": mic[1], "mic_z_m": mic[2],
                              "source_mic_distance_m": round(room.distance_m, 4),
                              "rt60_target_s": target, "rt60_predicted_s": predicted,
                              "max_order": rooms.highest_order(room, frames, sr, cfg.max_order)}
    if target is None:
        del labels["rt60_target_s"]
    return room, frames, labels


def room_labels(cfg: Any, item: str) -> dict[str, Any]:
    """What was drawn for a simulated room (size, absorption per surface, source and
    microphone positions, their distance, the predicted RT60 and the highest reflection
    order in the response); ``{}`` for any other pool or item.

    Example: ``room_labels(cfg, "gen:rir/0003")["room_x_m"]``
    """
    if getattr(cfg, "kind", None) != "rir_generator" or cfg.method != "image_source":
        return {}
    return item_labels(cfg, item)
