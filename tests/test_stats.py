"""Per-shard stats: bucket ranges, parameter flattening and ranges, exact embedding sums,
byte-deterministic output. No Ray."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.stats import (
    EMBED_SCALE_BITS,
    PARAM_BINS,
    SAMPLE_K,
    ShardStats,
    StatsContext,
    bucket_ranges,
    decode_vector,
    encode_vector,
    flatten_params,
    keep_threshold,
    merge_ranges,
    param_range,
    quantize_embedding,
    sample_key,
)


def buckets_of(ranges):
    return {b for a, e in ranges for b in range(a, e)}


# ----------------------------------------------------------------------------- buckets


def test_a_piece_inside_an_item_covers_the_seconds_it_touches():
    assert bucket_ranges(1.5, 2.0, 10.0) == [(1, 4)]
    assert bucket_ranges(0.0, 1.0, 10.0) == [(0, 1)]


def test_a_looped_piece_wraps_around_the_item():
    # 2.5 .. 3.5 s of a 3-second item: 2.5-3.0 then 0.0-0.5
    assert bucket_ranges(2.5, 1.0, 3.0) == [(0, 1), (2, 3)]


def test_a_piece_longer_than_the_item_covers_all_of_it():
    assert bucket_ranges(1.2, 7.0, 3.0) == [(0, 3)]
    assert bucket_ranges(0.0, 2.0, 2.5) == [(0, 2)]
    assert bucket_ranges(0.0, 3.0, 2.5) == [(0, 3)]


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 40), st.integers(0, 200), st.integers(1, 200))
def test_buckets_match_a_brute_force_walk_of_the_timeline(item_q, start_q, dur_q):
    """Quarter-second grid: walk the (wrapped) piece and collect each point's bucket."""
    item_s, start_s, dur_s = item_q / 4, start_q / 4, dur_q / 4
    got = buckets_of(bucket_ranges(start_s, dur_s, item_s))
    steps = int(dur_q * 4)
    walk = {int(math.floor(math.fmod(start_s + (i + 0.5) / 16, item_s))) for i in range(steps)}
    assert got == walk


def test_merge_ranges_unions_overlapping_and_touching_ranges():
    assert merge_ranges([5, 7, 0, 2, 1, 3, 7, 9, 20, 21]) == [0, 3, 5, 9, 20, 21]
    assert merge_ranges([]) == []


# ----------------------------------------------------------------------------- params


def test_params_flatten_to_named_numeric_leaves_by_layer():
    params = {
        "speech": {"pool": "speech", "item": "a.flac"},
        "noise": [
            {"layer": 0, "pool": "car", "item": "x.wav", "start_s": 3.0, "snr_db": 5.0},
            {"layer": 2, "pool": "rain", "item": "y.wav", "start_s": 1.0, "snr_db": 12.5, "speed": 1.1},
        ],
        "gain_db": -3,
        "flip": True,
        "crop": [0.1, 0.2],
        "applied": {"MotionBlur": {"kernel": [[0.0, 0.5], [0.5, 0.0]]}},
        "curve": list(range(20)),
    }
    assert flatten_params(params, frozenset({"layer", "start_s", "seed"})) == [
        ("crop[0]", 0.1),
        ("crop[1]", 0.2),
        ("gain_db", -3.0),
        ("noise[0].snr_db", 5.0),
        ("noise[2].snr_db", 12.5),
        ("noise[2].speed", 1.1),
    ]


def test_requested_ranges_follow_the_name_range_convention():
    cfg = {
        "noise": [
            {"pool": "car", "snr_db_range": [0, 20], "perturb": {"speed_range": [0.9, 1.1]}},
            {"pool": "rain", "snr_db_range": [10, 30]},
        ],
        "gain_db_range": [-6, 6],
        "scale_range": [0.2, 0.5],
    }
    assert param_range(cfg, "noise[0].snr_db") == (0.0, 20.0)
    assert param_range(cfg, "noise[1].snr_db") == (10.0, 30.0)
    assert param_range(cfg, "noise[0].speed") == (0.9, 1.1)  # nested under the layer
    assert param_range(cfg, "gain_db") == (-6.0, 6.0)
    assert param_range(cfg, "objects[3].scale") == (0.2, 0.5)  # per-object value, synth-wide range
    assert param_range(cfg, "noise[1].speed") is None
    assert param_range(cfg, "noise[7].snr_db") is None
    assert param_range(cfg, "level_dbfs") is None


def test_a_parameter_is_histogrammed_over_its_requested_range():
    ctx = StatsContext(synth_config={"noise": [{"snr_db_range": [0, 20]}]})
    stats = ShardStats(ctx)
    for i, snr in enumerate([0.0, 0.1, 9.99, 20.0, 25.0]):
        stats.add(f"s-{i}", {"noise": [{"layer": 0, "snr_db": snr}]}, [], None, 1.0)
    h = stats.to_json()["params"]["noise[0].snr_db"]
    assert h["range"] == [0.0, 20.0]
    assert h["count"] == 5 and h["above"] == 1 and h["below"] == 0
    assert sum(h["bins"]) == 4 and len(h["bins"]) == PARAM_BINS
    assert h["bins"][0] == 2 and h["bins"][49] == 1 and h["bins"][-1] == 1
    assert h["min"] == 0.0 and h["max"] == 25.0


def test_a_parameter_without_range_keeps_a_sample_of_its_values():
    stats = ShardStats()
    for i in range(10):
        stats.add(f"s-{i}", {"level_dbfs": -20.0 - i}, [], None, 1.0)
    h = stats.to_json()["params"]["level_dbfs"]
    assert h["range"] is None
    assert sorted(v for _, v in h["sample"]) == [-29.0 + i for i in range(10)]
    assert [k for k, _ in h["sample"]] == sorted(k for k, _ in h["sample"])


# ----------------------------------------------------------------------------- usage


def context_for(items: dict[str, dict[str, tuple[float, bool]]], **kw) -> StatsContext:
    return StatsContext(item_info=lambda pool, item: items.get(pool, {}).get(item), **kw)


def test_usage_counts_uses_microseconds_buckets_and_held_out_uses():
    ctx = context_for({"car": {"a.wav": (3.0, False), "b.wav": (10.0, True)}})
    stats = ShardStats(ctx)
    src = lambda item, start, dur: {"pool": "car", "item": item, "start_s": start, "duration_s": dur, "gain_db": 0}
    stats.add("s-0", {}, [src("a.wav", 2.5, 1.0)], None, 1.0)
    stats.add("s-1", {}, [src("a.wav", 0.2, 0.5), src("b.wav", 4.0, 2.25)], None, 2.25)
    car = stats.to_json()["pools"]["car"]
    assert car["items"] == ["a.wav", "b.wav"]
    assert car["uses"] == [2, 1]
    assert car["us"] == [1_500_000, 2_250_000]
    assert car["buckets"] == [[0, 1, 2, 3], [4, 7]]
    assert car["heldout_uses"] == 1


# ----------------------------------------------------------------------------- embeddings


def test_embedding_sums_are_exact_integers_of_the_quantized_values():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((150, 5)) * 30 - 40).astype(np.float32)
    stats = ShardStats()
    for i, row in enumerate(x):
        stats.add(f"s-{i}", {}, [{"pool": "p", "item": "i", "start_s": 0, "duration_s": 1}], row, 1.0)
    emb = stats.to_json()["embedding"]
    q = [[int(v) for v in r] for r in quantize_embedding(x)]
    assert emb["count"] == 150 and emb["dim"] == 5 and emb["scale_bits"] == EMBED_SCALE_BITS
    assert emb["sum"] == [sum(r[j] for r in q) for j in range(5)]
    iu = list(zip(*np.triu_indices(5)))
    assert emb["sum_outer_upper"] == [sum(r[i] * r[j] for r in q) for i, j in iu]


def test_huge_or_non_finite_embedding_values_are_clipped_not_overflowed():
    x = np.array([1e30, -np.inf, np.nan, 5.0], np.float32)
    q = quantize_embedding(x)
    assert q.tolist() == [4096 * 2**16, -4096 * 2**16, 0, 5 * 2**16]


def test_the_embedding_sample_is_the_bottom_k_keys_below_the_threshold():
    ctx = StatsContext(keep_below=keep_threshold(100_000))
    stats = ShardStats(ctx)
    ids = [f"r-train-{i:09d}" for i in range(2000)]
    for sid in ids:
        stats.add(sid, {}, [{"pool": "speech", "item": "a"}, {"pool": "car", "item": "b"}], np.ones(3), 1.0)
    sample = stats.to_json()["embedding"]["sample"]
    expected = sorted(k for k in map(sample_key, ids) if k < ctx.keep_below)
    assert [e[0] for e in sample] == expected
    assert all(e[2] == "car" for e in sample)  # coloured by the secondary (noise) pool
    assert np.array_equal(decode_vector(sample[0][3]), np.ones(3, np.float32))


def test_keep_threshold_keeps_about_four_k_samples_of_a_large_run():
    assert keep_threshold(1000) == 2**64  # small runs keep everything
    assert keep_threshold(10**9) / 2**64 == pytest.approx(4 * SAMPLE_K / 10**9)


def test_vectors_round_trip_through_base64():
    v = np.array([0.1, -3.5, 1e-7], np.float32)
    assert np.array_equal(decode_vector(encode_vector(v)), v)


def test_same_rows_give_byte_identical_stats():
    def build():
        ctx = context_for({"car": {"a.wav": (30.0, False)}}, synth_config={"noise": [{"snr_db_range": [0, 20]}]})
        stats = ShardStats(ctx)
        rng = np.random.default_rng(0)
        for i in range(70):
            stats.add(
                f"r-{i}", {"noise": [{"layer": 0, "snr_db": float(rng.uniform(0, 20))}], "x": float(rng.random())},
                [{"pool": "car", "item": "a.wav", "start_s": float(rng.uniform(0, 29)), "duration_s": 1.7}],
                rng.standard_normal(8).astype(np.float32), 1.7,
            )
        return json.dumps(stats.to_json(), indent=1, sort_keys=True)

    assert build() == build()
