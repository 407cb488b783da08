"""Simulated rooms (``rir_generator`` with ``method: image_source``): the image-source
response against acoustics (direct path at distance / c with amplitude 1 / (4 pi d), a
first-order reflection at its image's distance, the measured RT60 against Sabine, Eyring
and the image-source decay, the Allen & Berkley sum itself), determinism, the per-item
draws, recipe validation that names each field, the synthesizer contract (replay gives the
row's bytes) on a recipe that uses a room, and the noise method left as it was."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from engine.audio import generators, ops, rooms
from engine.errors import RecipeError
from engine.pools import index_pools
from engine.recipe import RirGeneratorPool, parse_recipe, recipe_hash, recipe_to_dict
from engine.rng import sample_rng
from engine.stats import flatten_params
from engine.synth import build_synthesizer
from engine.synth_checks import CHECKS, check_context

from .conftest import small_recipe

SR = 16000
C = 343.0
ANECHOIC = (1.0,) * 6


def _room(size, absorption, src, mic):
    return rooms.Room(size_m=size, absorption=absorption, source_m=src, mic_m=mic)


# --------------------------------------------------------------------------- acoustics


def test_direct_path_arrives_at_distance_over_c_with_amplitude_one_over_4_pi_d():
    # 100 samples of flight exactly: the pulse sits on a sample, the sinc's other taps are 0
    d = C * 100 / SR
    room = _room((8.0, 6.0, 3.0), ANECHOIC, (2.0, 2.0, 1.5), (2.0 + d, 2.0, 1.5))
    h = rooms.image_source_rir(room, SR, 400)
    assert h.dtype == np.float32 and h.shape == (400,)
    assert int(np.argmax(np.abs(h))) == 100
    assert h[100] == pytest.approx(1.0 / (4 * math.pi * d), rel=1e-4)
    # nothing before it, and (no walls) no reflection after: only the 100 Hz high-pass's
    # slow undershoot, far below the pulse
    assert np.abs(h[:84]).max() < 1e-6
    assert np.abs(h[117:]).max() < 0.04 * h[100]  # the undershoot: ~2 pi 100 Hz / 16 kHz


@settings(max_examples=25, deadline=None)
@given(st.floats(0.3, 4.5), st.floats(0.0, 2 * math.pi), st.floats(-0.4, 0.4))
def test_a_direct_path_between_samples_keeps_its_time_and_energy(d, azimuth, dz):
    src = (5.0, 5.0, 1.5)
    mic = (5.0 + d * math.cos(azimuth), 5.0 + d * math.sin(azimuth), 1.5 + dz)
    room = _room((10.0, 10.0, 3.0), ANECHOIC, src, mic)
    tau = room.distance_m / C * SR
    h = rooms.image_source_rir(room, SR, int(tau) + 64).astype(np.float64)
    # the nearest sample; a pulse about halfway between two has two near-equal taps, and
    # the 100 Hz high-pass tilts them a hair either way (hypothesis found 0.50005 once)
    assert abs(int(np.argmax(np.abs(h))) - tau) <= 0.5 + 1e-3
    # a band-limited pulse keeps the energy of the unit impulse it stands for
    around = h[max(0, int(tau) - 16) : int(tau) + 17]
    assert math.sqrt(np.square(around).sum()) == pytest.approx(1.0 / (4 * math.pi * room.distance_m), rel=0.02)


def test_a_first_order_reflection_arrives_at_its_image_distance():
    # Every surface absorbs everything but the floor (energy absorption 0.19: pressure
    # reflection 0.9), so the response is the direct path and the floor's image at -z.
    src, mic = (3.0, 3.0, 1.5), (5.0, 3.0, 1.5)
    room = _room((8.0, 6.0, 3.0), (1.0, 1.0, 1.0, 1.0, 0.19, 1.0), src, mic)
    d0 = 2.0
    d1 = math.sqrt(2.0**2 + (1.5 + 1.5) ** 2)  # to the image at (3, 3, -1.5)
    t0, t1 = d0 / C * SR, d1 / C * SR
    h = rooms.image_source_rir(room, SR, 400).astype(np.float64)
    after = int(t0) + 17
    peak = after + int(np.argmax(np.abs(h[after:])))
    assert abs(peak - t1) <= 0.5 + 1e-9
    energy = math.sqrt(np.square(h[int(t1) - 16 : int(t1) + 17]).sum())
    assert energy == pytest.approx(0.9 / (4 * math.pi * d1), rel=0.03)
    assert np.abs(h[int(t1) + 20 :]).max() < 0.02 * np.abs(h).max()  # nothing else


def test_the_response_is_the_allen_berkley_sum_of_windowed_sincs_then_their_high_pass():
    """Brute force: every image of order <= 6 as a Hann-windowed sinc at its exact delay,
    summed, then Allen & Berkley's filter; the fast path (a sinc table, bincount) agrees."""
    size, src, mic = (4.0, 3.5, 2.7), (1.1, 2.3, 1.4), (2.9, 0.8, 1.0)
    alpha = (0.2, 0.3, 0.25, 0.4, 0.1, 0.5)
    room = _room(size, alpha, src, mic)
    n, order = 900, 6
    beta = [math.sqrt(1 - a) for a in alpha]
    t = np.arange(n, dtype=np.float64)
    ref = np.zeros(n)
    r = range(-order - 1, order + 2)
    for nx in r:
        for ny in r:
            for nz in r:
                for px in (0, 1):
                    for py in (0, 1):
                        for pz in (0, 1):
                            hits = [abs(nx - px), abs(nx), abs(ny - py), abs(ny), abs(nz - pz), abs(nz)]
                            if sum(hits) > order:
                                continue
                            img = [(1 - 2 * p) * s + 2 * k * L for p, s, k, L in
                                   zip((px, py, pz), src, (nx, ny, nz), size)]
                            d = math.dist(img, mic)
                            tau = d / C * SR
                            if tau > n:
                                continue
                            g = math.prod(b**h for b, h in zip(beta, hits)) / (4 * math.pi * d)
                            x = t - tau
                            near = np.abs(x) < 16
                            ref[near] += g * np.sinc(x[near]) * 0.5 * (1 + np.cos(np.pi * x[near] / 16))
    w = 2 * math.pi * 100 / SR
    e = math.exp(-w)
    ref = signal.lfilter([1.0, -(1 + e), e], [1.0, -2 * e * math.cos(w), e * e], ref)
    h = rooms.image_source_rir(room, SR, n, max_order=order).astype(np.float64)
    assert np.abs(h - ref).max() < 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("size, alpha", [((5.0, 5.0, 5.0), 0.3), ((6.0, 5.0, 4.0), 0.25), ((5.0, 4.0, 3.0), 0.35)])
def test_measured_rt60_is_within_20_percent_of_sabine_and_eyring_in_rooms_near_a_cube(size, alpha):
    rng = np.random.default_rng(11)
    src = tuple(float(rng.uniform(0.5, s - 0.5)) for s in size)
    mic = tuple(float(rng.uniform(0.5, s - 0.5)) for s in size)
    room = _room(size, (alpha,) * 6, src, mic)
    h = rooms.image_source_rir(room, SR, rooms.frames_for(room, SR, rooms.sabine_rt60(size, room.absorption)))
    measured = ops.rt60_estimate(h, SR)
    assert measured == pytest.approx(rooms.sabine_rt60(size, room.absorption), rel=0.2)
    assert measured == pytest.approx(rooms.eyring_rt60(size, room.absorption), rel=0.2)


@pytest.mark.parametrize("size, rt60", [((10.0, 8.0, 3.0), 0.6), ((5.0, 4.0, 3.0), 0.4), ((12.0, 4.0, 2.6), 0.8)])
def test_a_target_rt60_is_met_by_the_image_source_decay_even_in_flat_rooms(size, rt60):
    """In a flat box the late sound runs along the floor: Eyring's absorption would give a
    response half again as long as asked; the image-source decay's inversion does not."""
    alpha = rooms.absorption_for_rt60(size, rt60, "image_source")
    room = _room(size, (alpha,) * 6, (1.3, 1.7, 1.2), (size[0] - 2.1, size[1] - 1.1, 1.6))
    h = rooms.image_source_rir(room, SR, rooms.frames_for(room, SR, rt60))
    assert ops.rt60_estimate(h, SR) == pytest.approx(rt60, rel=0.15)
    if size == (10.0, 8.0, 3.0):
        eyring_alpha = rooms.absorption_for_rt60(size, rt60, "eyring")
        flat = _room(size, (eyring_alpha,) * 6, room.source_m, room.mic_m)
        h2 = rooms.image_source_rir(flat, SR, rooms.frames_for(flat, SR, 1.5 * rt60))
        assert ops.rt60_estimate(h2, SR) > 1.3 * rt60


def test_the_inversions_give_back_their_rt60():
    size = (7.0, 5.0, 3.0)
    for formula, fn in (("sabine", rooms.sabine_rt60), ("eyring", rooms.eyring_rt60),
                        ("image_source", rooms.image_source_rt60)):
        a = rooms.absorption_for_rt60(size, 0.5, formula)
        assert fn(size, (a,) * 6) == pytest.approx(0.5, rel=1e-6)
    with pytest.raises(ValueError, match="outside"):
        rooms.absorption_for_rt60((30.0, 30.0, 10.0), 0.1, "sabine")


def test_air_absorption_shortens_the_high_frequency_tail_only():
    room = _room((10.0, 8.0, 3.0), (0.25,) * 6, (2.0, 3.0, 1.5), (6.0, 5.0, 1.2))
    frames = rooms.frames_for(room, SR, 0.8)
    dry = rooms.image_source_rir(room, SR, frames).astype(np.float64)
    air = rooms.image_source_rir(room, SR, frames, air_absorption=True).astype(np.float64)

    def band_rt60(h, lo, hi):
        sos = signal.butter(4, [lo, hi], "bandpass", fs=SR, output="sos")
        return ops.rt60_estimate(signal.sosfilt(sos, h).astype(np.float32), SR)

    assert band_rt60(air, 100, 400) == pytest.approx(band_rt60(dry, 100, 400), rel=0.02)
    assert band_rt60(air, 3000, 6000) < 0.9 * band_rt60(dry, 3000, 6000)
    # the short-time filter is the identity where nothing is absorbed (no distance yet)
    x = np.random.default_rng(0).standard_normal(3000)
    np.testing.assert_allclose(rooms._air_absorption(x, SR, 0.0), x, atol=1e-12)
    cfg = _pool(count=2, rt60_s_range=(0.2, 0.3), air_absorption=True)
    h = generators.render_item(cfg, "gen:rir/0001")
    assert h.tobytes() == generators.render_item(cfg, "gen:rir/0001").tobytes()
    assert h.tobytes() != generators.render_item(cfg.model_copy(update={"air_absorption": False}),
                                                 "gen:rir/0001").tobytes()


def test_max_order_keeps_only_images_up_to_that_order():
    room = _room((6.0, 5.0, 3.0), (0.2,) * 6, (1.0, 2.0, 1.5), (4.0, 3.0, 1.2))
    h0 = rooms.image_source_rir(room, SR, 2000, max_order=0)
    anechoic = rooms.image_source_rir(_room((6.0, 5.0, 3.0), ANECHOIC, room.source_m, room.mic_m), SR, 2000)
    np.testing.assert_array_equal(h0, anechoic)
    assert rooms.highest_order(room, 2000, SR, max_order=3) == 3
    assert 3 < rooms.highest_order(room, 2000, SR) < 60


def test_a_room_10_by_8_by_3_m_with_rt60_0_6_s_is_cheap():
    import time

    alpha = rooms.absorption_for_rt60((10.0, 8.0, 3.0), 0.6)
    room = _room((10.0, 8.0, 3.0), (alpha,) * 6, (2.0, 3.0, 1.5), (6.0, 5.0, 1.2))
    frames = rooms.frames_for(room, SR, 0.6)
    rooms.image_source_rir(room, SR, frames)  # the sinc table is built once per process
    start = time.process_time()
    rooms.image_source_rir(room, SR, frames)
    assert time.process_time() - start < 1.0  # ~0.15 s of CPU where it was measured


# --------------------------------------------------------------------------- pool items


def _pool(**kw) -> RirGeneratorPool:
    return RirGeneratorPool(kind="rir_generator", method="image_source", **kw)


def test_rooms_are_drawn_per_item_spread_over_the_ranges_and_fixed_by_their_id():
    cfg = _pool(count=10, room_x_m_range=(4, 9), room_y_m_range=(3, 5), room_z_m_range=(2.5, 3),
                rt60_s_range=(0.2, 0.5), source_z_m_range=(1.2, 1.8), mic_z_m_range=(0.8, 1.2),
                min_source_mic_distance_m=1.0)
    items = generators.virtual_items("rooms", cfg)
    assert [v.item for v in items] == [f"gen:rir/{i:04d}" for i in range(10)]
    assert sorted(int((v.labels["room_x_m"] - 4) / 0.5) for v in items) == list(range(10))  # a Latin hypercube
    assert sorted(int((v.labels["rt60_target_s"] - 0.2) / 0.03) for v in items) == list(range(10))
    for v in items:
        lab = v.labels
        size = (lab["room_x_m"], lab["room_y_m"], lab["room_z_m"])
        src = (lab["source_x_m"], lab["source_y_m"], lab["source_z_m"])
        mic = (lab["mic_x_m"], lab["mic_y_m"], lab["mic_z_m"])
        assert all(0.5 <= p <= s - 0.5 for p, s in zip(src[:2] + mic[:2], size[:2] * 2))
        assert 1.2 <= src[2] <= 1.8 and 0.8 <= mic[2] <= 1.2
        assert math.dist(src, mic) >= 1.0 and lab["source_mic_distance_m"] == pytest.approx(math.dist(src, mic), abs=1e-4)
        assert len({lab[f"absorption_{w}"] for w in ("x0", "x1", "y0", "y1", "floor", "ceiling")}) == 1
        assert lab["rt60_predicted_s"] == pytest.approx(lab["rt60_target_s"], abs=2e-3)
        assert lab["max_order"] > 0
    # the pool's name does not matter; the same item is the same room and the same bytes
    assert [v.labels for v in generators.virtual_items("elsewhere", cfg)] == [v.labels for v in items]
    h = generators.render_item(cfg, "gen:rir/0004")
    assert h.tobytes() == generators.render_item(cfg, "gen:rir/0004").tobytes()
    assert len(h) == items[4].frames and h.dtype == np.float32
    assert generators.room_labels(cfg, "gen:rir/0004") == items[4].labels
    measured = ops.rt60_estimate(h, SR)
    assert measured == pytest.approx(items[4].labels["rt60_target_s"], rel=0.25)


@settings(max_examples=20, deadline=None)
@given(st.floats(1.2, 12), st.floats(0, 8), st.floats(1.2, 8), st.floats(0, 5), st.floats(1.2, 4.0),
       st.floats(0.05, 0.7), st.floats(0.01, 3.0), st.integers(1, 12))
def test_every_drawn_room_keeps_its_distances(x_lo, x_span, y_lo, y_span, z_lo, wall, apart, count):
    from hypothesis import assume
    from pydantic import ValidationError

    try:
        cfg = _pool(count=count, room_x_m_range=(x_lo, x_lo + x_span), room_y_m_range=(y_lo, y_lo + y_span),
                    room_z_m_range=(z_lo, z_lo + 0.5), min_wall_distance_m=wall, min_source_mic_distance_m=apart,
                    absorption_range=(0.3, 0.6), max_length_s=0.3)
    except ValidationError:
        assume(False)
    for v in generators.virtual_items("rooms", cfg):
        lab = v.labels
        size = (lab["room_x_m"], lab["room_y_m"], lab["room_z_m"])
        for who in ("source", "mic"):
            for axis, s in zip("xyz", size):
                assert wall <= lab[f"{who}_{axis}_m"] <= s - wall
        src = tuple(lab[f"source_{a}_m"] for a in "xyz")
        mic = tuple(lab[f"mic_{a}_m"] for a in "xyz")
        assert math.dist(src, mic) >= apart - 1e-9
        assert 0.3 <= lab["absorption_x0"] <= 0.6


def test_per_surface_absorption_is_drawn_per_surface():
    walls = {"x0": (0.1, 0.2), "x1": (0.1, 0.2), "y0": (0.3, 0.4), "y1": (0.3, 0.4),
             "floor": (0.05, 0.1), "ceiling": (0.6, 0.9)}
    cfg = _pool(count=4, wall_absorption_range=walls, rt60_formula="eyring")
    for v in generators.virtual_items("rooms", cfg):
        for w, (lo, hi) in walls.items():
            assert lo <= v.labels[f"absorption_{w}"] <= hi
        assert "rt60_target_s" not in v.labels
        size = (v.labels["room_x_m"], v.labels["room_y_m"], v.labels["room_z_m"])
        absorption = tuple(v.labels[f"absorption_{w}"] for w in walls)
        assert v.labels["rt60_predicted_s"] == pytest.approx(rooms.eyring_rt60(size, absorption), abs=1e-4)


def test_the_noise_method_is_unchanged():
    """Recipes written before image_source keep their hash and their items' bytes."""
    old = RirGeneratorPool(kind="rir_generator", count=3, rt60_s_range=(0.3, 0.6))
    assert old.method == "noise"
    items = generators.virtual_items("rooms", old)
    assert set(items[0].labels) == {"rt60_s", "drr_db"}
    lab = items[1].labels
    expected = ops.synthetic_rir(SR, lab["rt60_s"], lab["drr_db"],
                                 generators._rng("rir", "gen:rir/0001", lab["rt60_s"], lab["drr_db"]))
    assert generators.render_item(old, "gen:rir/0001").tobytes() == expected.tobytes()
    assert generators.room_labels(old, "gen:rir/0001") == {}


def test_an_unchanged_recipe_keeps_its_hash(tmp_path):
    data = small_recipe(tmp_path)
    data["pools"]["rooms"] = {"kind": "rir_generator", "count": 5}
    data["synth"]["reverb"] = {"pool": "rooms"}
    plain = recipe_hash(parse_recipe(copy.deepcopy(data), base_dir=tmp_path))
    data["pools"]["rooms"]["method"] = "noise"
    assert recipe_hash(parse_recipe(copy.deepcopy(data), base_dir=tmp_path)) == plain
    # the value fixed before image_source existed (same recipe, same normalization)
    blob = json.loads(json.dumps(parse_recipe(copy.deepcopy(data), base_dir=tmp_path).pools["rooms"].model_dump(
        mode="json", exclude_none=True)))
    assert set(blob) == {"kind", "method", "count", "rt60_s_range", "drr_db_range", "sample_rate", "holdout"}
    data["pools"]["rooms"]["method"] = "image_source"
    assert recipe_hash(parse_recipe(copy.deepcopy(data), base_dir=tmp_path)) != plain


# --------------------------------------------------------------------------- validation


def _refused(tmp_path, **rooms_cfg) -> str:
    data = small_recipe(tmp_path)
    data["pools"]["rooms"] = {"kind": "rir_generator", "method": "image_source", **rooms_cfg}
    data["synth"]["reverb"] = {"pool": "rooms"}
    with pytest.raises(RecipeError) as err:
        parse_recipe(data, base_dir=tmp_path)
    return str(err.value)


@pytest.mark.parametrize("cfg, words", [
    ({"room_x_m_range": [0.9, 4]}, ["room_x_m_range", "within [1, 100]"]),
    ({"room_z_m_range": [1.0, 3]}, ["room_z_m_range", "min_wall_distance_m 0.5", "raise the range above 1 m"]),
    ({"room_y_m_range": [2, 4], "min_wall_distance_m": 1.0}, ["room_y_m_range", "too small", "min_wall_distance_m 1"]),
    ({"absorption_range": [0, 0.5]}, ["absorption_range", "(0, 1]"]),
    ({"absorption_range": [0.5, 1.2]}, ["absorption_range", "within [0, 1]"]),
    ({"wall_absorption_range": {"x0": [0.1, 0.2]}}, ["wall_absorption_range", "missing x1, y0, y1, floor, ceiling"]),
    ({"wall_absorption_range": {w: [0.1, 0.2] for w in ("x0", "x1", "y0", "y1", "floor")} | {"ceiling": [0, 1]}},
     ["wall_absorption_range", "ceiling", "(0, 1]"]),
    ({"source_z_m_range": [1.0, 2.6]}, ["source_z_m_range", "outside the lowest room", "0.5 .. 2 m"]),
    ({"mic_z_m_range": [0.1, 1.0]}, ["mic_z_m_range", "outside the lowest room"]),
    ({"min_source_mic_distance_m": 9.0}, ["min_source_mic_distance_m 9", "smallest room", "4 x 3 x 2.5 m"]),
    ({"drr_db_range": [0, 5]}, ["drr_db_range goes with method: noise", "measured"]),
    ({"absorption_range": [0.2, 0.4], "rt60_s_range": [0.3, 0.5]}, ["rt60_s_range", "not both"]),
    ({"absorption_range": [0.2, 0.4], "wall_absorption_range": {w: [0.1, 0.2] for w in
                                                                 ("x0", "x1", "y0", "y1", "floor", "ceiling")}},
     ["absorption_range", "wall_absorption_range", "not both"]),
    ({"rt60_formula": "sabine", "rt60_s_range": [0.1, 0.3]}, ["rt60_s_range starts at 0.1 s", "Sabine",
                                                               "rt60_formula: eyring"]),
    ({"max_length_s": 6.0, "absorption_range": [0.01, 0.05], "room_x_m_range": [2, 3], "room_y_m_range": [2, 3],
      "room_z_m_range": [2, 2.5]}, ["images", "max_length_s", "max_order"]),
    ({"rt60_formula": "norris"}, ["rt60_formula", "image_source", "eyring", "sabine"]),
])
def test_bad_room_settings_are_refused_naming_the_field(tmp_path, cfg, words):
    message = _refused(tmp_path, **cfg)
    assert "pools.rooms" in message
    for w in words:
        assert w in message, (w, message)


@pytest.mark.parametrize("cfg", [{}, {"absorption_range": [0.2, 0.4]},
                                 {"wall_absorption_range": {w: [0.1, 0.3] for w in
                                                            ("x0", "x1", "y0", "y1", "floor", "ceiling")}}])
def test_a_room_recipe_validates_again_from_its_own_dump(tmp_path, cfg):
    """The run record and the workers parse the recipe's dump, where every default
    (drr_db_range, rt60_s_range) is written out: that is not a conflict."""
    data = small_recipe(tmp_path)
    data["pools"]["rooms"] = {"kind": "rir_generator", "method": "image_source", **cfg}
    data["synth"]["reverb"] = {"pool": "rooms"}
    recipe = parse_recipe(data, base_dir=tmp_path)
    again = parse_recipe(json.loads(json.dumps(recipe_to_dict(recipe))), base_dir=tmp_path)
    assert again.pools["rooms"] == recipe.pools["rooms"] and recipe_hash(again) == recipe_hash(recipe)


def test_room_settings_need_method_image_source(tmp_path):
    data = small_recipe(tmp_path)
    data["pools"]["rooms"] = {"kind": "rir_generator", "room_x_m_range": [3, 5], "max_order": 4}
    with pytest.raises(RecipeError, match=r"room_x_m_range, max_order go with method: image_source"):
        parse_recipe(data, base_dir=tmp_path)


# --------------------------------------------------------------------------- in a recipe


def _room_recipe(corpus: Path) -> dict:
    data = small_recipe(corpus, splits={"train": {"samples": 6}, "train_dev_unseen": {"samples": 3, "holdout": True}})
    data["output"]["samples_per_shard"] = 6
    data["pools"]["rooms"] = {"kind": "rir_generator", "method": "image_source", "count": 4, "holdout": 0.25,
                              "room_x_m_range": [3, 5], "room_y_m_range": [3, 4], "room_z_m_range": [2.5, 3],
                              "rt60_s_range": [0.2, 0.35], "max_length_s": 0.5}
    data["synth"]["reverb"] = {"pool": "rooms", "p": 1.0}
    return data


@pytest.fixture(scope="module")
def room_context(demo_corpus, tmp_path_factory):
    recipe = parse_recipe(_room_recipe(demo_corpus), base_dir=demo_corpus)
    return check_context(recipe, tmp_path_factory.mktemp("rooms"), samples=6)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_a_recipe_with_simulated_rooms_keeps_the_synthesizer_contract(check, room_context):
    check(room_context)  # among them: replaying a written row from its params gives its bytes


def test_a_row_records_its_room_and_measured_rt60_and_drr(room_context):
    synth = build_synthesizer(room_context.recipe, room_context.index)
    params = synth.sample_params(sample_rng(7, "train", 0), holdout_split=False)
    rev = params["reverb"]
    cfg = room_context.recipe.pools["rooms"]
    assert rev["room"] == generators.room_labels(cfg, rev["item"])
    h = generators.render_item(cfg, rev["item"])
    assert rev["rt60_s"] == ops.rt60_estimate(h, SR) and rev["drr_db"] == ops.drr_estimate_db(h, SR)
    names = dict(flatten_params(params))
    for key in ("reverb.rt60_s", "reverb.drr_db", "reverb.room.room_x_m", "reverb.room.absorption_floor",
                "reverb.room.source_mic_distance_m", "reverb.room.max_order"):
        assert key in names, key
    # the pool index carries the drawn values as the items' labels
    index = index_pools(room_context.recipe)
    labels = index.pools["rooms"].label_row(0)
    assert labels == generators.item_labels(cfg, "gen:rir/0000")


def test_coverage_finds_the_room_draws_ranges_in_the_pool(room_context):
    """reverb.room.* are drawn from the rir_generator pool's ranges, not the synth block's:
    the synthesizer's param_range hook finds them there, so coverage histograms them."""
    from engine.stats import ShardStats

    synth = build_synthesizer(room_context.recipe, room_context.index)
    cfg = room_context.recipe.synth.model_dump(mode="json")
    assert synth.param_range(cfg, "reverb.room.room_x_m") == (3.0, 5.0)
    assert synth.param_range(cfg, "reverb.room.room_z_m") == (2.5, 3.0)
    assert synth.param_range(cfg, "reverb.room.rt60_target_s") == (0.2, 0.35)
    assert synth.param_range(cfg, "reverb.room.source_mic_distance_m") is None  # follows from the draws
    assert synth.param_range(cfg, "noise[0].snr_db") is None  # the synth block's own: by convention
    from engine.plan import make_plan

    spec = make_plan(room_context.recipe).shards[0]
    stats = ShardStats.for_shard(room_context.recipe, room_context.index, spec, synth.unsampled_params,
                                 synth.param_range)
    params = synth.sample_params(sample_rng(7, "train", 0), holdout_split=False)
    stats.add("s-0", params, [], None, 1.0)
    assert stats.params["reverb.room.room_x_m"]["range"] == (3.0, 5.0)
    assert sum(stats.params["reverb.room.room_x_m"]["bins"]) == 1
