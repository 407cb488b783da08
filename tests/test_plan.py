"""Plan and per-sample randomness: pure functions, so tested without Ray or files."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.plan import Plan, describe_plan, make_plan
from engine.recipe import parse_recipe
from engine.rng import sample_rng, split_id, stable_unit


def recipe_data(splits: dict[str, Any], samples_per_shard: int = 1000) -> dict[str, Any]:
    return {
        "name": "in_car",
        "seed": 1234,
        "output": {"samples_per_shard": samples_per_shard},
        "pools": {
            "speech": {"manifest": "speech.csv"},
            "car": {"paths": ["noise/*.wav"], "holdout": 0.1},
        },
        "splits": splits,
        "synth": {
            "type": "speech_noise_mix",
            "speech": "speech",
            "noise": [{"pool": "car", "snr_db_range": [0, 20]}],
        },
    }


@pytest.fixture
def plan() -> Plan:
    splits = {
        "train": {"samples": 2500},
        "train_dev": {"samples": 1000},
        "train_dev_unseen": {"samples": 1, "holdout": True},
    }
    return make_plan(parse_recipe(recipe_data(splits)))


def _plan_for(samples: int, per: int) -> Plan:
    return make_plan(parse_recipe(recipe_data({"train": {"samples": samples}}, per)))


# --------------------------------------------------------------------------- make_plan


@pytest.mark.parametrize(
    "samples, per, shards",
    [(1, 1, 1), (1, 1000, 1), (999, 1000, 1), (1000, 1000, 1), (1001, 1000, 2), (2500, 1000, 3),
     (7, 3, 3), (10**4, 1, 10**4)],
)
def test_shard_count_is_samples_over_shard_size_rounded_up(samples, per, shards):
    assert len(_plan_for(samples, per).shards) == shards


@pytest.mark.parametrize("samples, per", [(1, 1), (999, 1000), (1000, 1000), (1001, 1000), (7, 3), (12345, 100)])
def test_shard_ranges_are_contiguous_disjoint_and_cover_the_split(samples, per):
    shards = _plan_for(samples, per).shards_of("train")

    assert [s.index for s in shards] == list(range(len(shards)))
    assert shards[0].start == 0
    assert all(a.stop == b.start for a, b in zip(shards, shards[1:]))
    assert shards[-1].stop == samples
    assert all(s.rows == per for s in shards[:-1])
    assert 1 <= shards[-1].rows <= per
    assert sum(s.rows for s in shards) == samples


def test_every_split_is_covered_independently(plan):
    for split, samples in plan.splits.items():
        shards = plan.shards_of(split)
        covered = [i for s in shards for i in range(s.start, s.stop)]
        assert covered == list(range(samples)), split


def test_shard_names_say_index_and_count(plan):
    assert [s.name for s in plan.shards_of("train")] == [
        "train-00000-of-00003",
        "train-00001-of-00003",
        "train-00002-of-00003",
    ]
    assert [s.name for s in plan.shards_of("train_dev_unseen")] == ["train_dev_unseen-00000-of-00001"]
    assert all(s.count == len(plan.shards_of(s.split)) for s in plan.shards)


def test_shard_names_are_unique_across_the_plan(plan):
    names = [s.name for s in plan.shards]
    assert len(names) == len(set(names))


def test_holdout_flag_is_carried_to_every_shard_of_the_split(plan):
    assert all(s.holdout for s in plan.shards_of("train_dev_unseen"))
    assert not any(s.holdout for s in plan.shards_of("train") + plan.shards_of("train_dev"))


def test_plan_records_recipe_identity_and_totals(plan):
    assert plan.recipe_name == "in_car" and plan.seed == 1234
    assert plan.samples_per_shard == 1000
    assert plan.splits == {"train": 2500, "train_dev": 1000, "train_dev_unseen": 1}
    assert plan.total_samples == 3501
    assert len(plan.shards) == 3 + 1 + 1


def test_shards_follow_the_recipe_split_order(plan):
    order = list(dict.fromkeys(s.split for s in plan.shards))
    assert order == ["train", "train_dev", "train_dev_unseen"]


def test_plan_is_pure(plan):
    recipe = parse_recipe(recipe_data({"train": {"samples": 2500}, "train_dev": {"samples": 1000},
                                       "train_dev_unseen": {"samples": 1, "holdout": True}}))
    assert make_plan(recipe) == make_plan(recipe) == plan


def test_describe_plan_mentions_every_split(plan):
    text = describe_plan(plan)
    assert "'in_car'" in text and "seed 1234" in text and "3501 samples" in text
    for split, samples in plan.splits.items():
        line = next(line for line in text.splitlines() if line.strip().startswith(split + " "))
        assert str(samples) in line
        shards = plan.shards_of(split)
        assert shards[0].name in line and shards[-1].name in line
        assert ("held-out" in line) == (split == "train_dev_unseen")


def test_planning_ten_million_samples_is_quick():
    start = time.perf_counter()
    plan = _plan_for(10**7, 1000)
    elapsed = time.perf_counter() - start

    assert len(plan.shards) == 10_000
    assert plan.shards[-1].stop == 10**7
    assert elapsed < 5.0, f"planning took {elapsed:.2f} s"


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=4),
    per=st.integers(1, 2000),
)
def test_any_plan_tiles_every_split_exactly(sizes, per):
    splits = {f"s{i}": {"samples": n} for i, n in enumerate(sizes)}
    plan = make_plan(parse_recipe(recipe_data(splits, per)))
    assert plan.total_samples == sum(sizes)
    for split, n in plan.splits.items():
        shards = plan.shards_of(split)
        assert len(shards) == -(-n // per)
        assert shards[0].start == 0 and shards[-1].stop == n
        assert all(a.stop == b.start for a, b in zip(shards, shards[1:]))
        assert all(0 < s.rows <= per for s in shards)


# --------------------------------------------------------------------------- rng


def test_same_sample_gives_the_same_draws():
    a = sample_rng(1234, "train", 17)
    b = sample_rng(1234, "train", 17)
    assert np.array_equal(a.random(16), b.random(16))
    assert np.array_equal(a.integers(0, 2**62, 8), b.integers(0, 2**62, 8))


def test_sample_stream_is_pinned():
    # PCG64 raw output is stable across numpy versions; a change here reseeds every dataset.
    assert sample_rng(1234, "train", 0).bit_generator.random_raw() == 7324096353216121439


@pytest.mark.parametrize(
    "other",
    [(1234, "train_dev", 17), (1234, "train", 18), (1235, "train", 17), (1234, "train", 0)],
    ids=["other_split", "other_index", "other_seed", "index_zero"],
)
def test_different_samples_get_different_streams(other):
    ref = sample_rng(1234, "train", 17).random(8)
    assert not np.array_equal(sample_rng(*other).random(8), ref)


def test_draws_do_not_depend_on_global_numpy_state():
    np.random.seed(0)
    a = sample_rng(7, "train", 3).random(4)
    np.random.seed(1)
    np.random.random(100)
    b = sample_rng(7, "train", 3).random(4)
    assert np.array_equal(a, b)


def test_draws_do_not_depend_on_the_order_samples_are_made():
    forward = [sample_rng(7, "train", i).random() for i in range(5)]
    backward = [sample_rng(7, "train", i).random() for i in reversed(range(5))][::-1]
    assert forward == backward


def test_split_id_is_stable():
    # Hard-coded: changing how split ids are hashed silently changes every dataset.
    assert split_id("train") == 292508868
    assert split_id("train_dev") == 2733102093


def test_split_ids_are_32_bit_and_distinct():
    names = ["train", "train_dev", "train_dev_unseen", "test", "dev", "val"]
    ids = [split_id(n) for n in names]
    assert all(0 <= i < 2**32 for i in ids)
    assert len(set(ids)) == len(ids)


def test_stable_unit_is_fixed_by_its_arguments():
    assert stable_unit("car", "noise/car-1.wav") == stable_unit("car", "noise/car-1.wav")
    assert stable_unit("car", "noise/car-1.wav") == pytest.approx(0.4869941011953221, abs=0)
    assert stable_unit("car", "noise/car-1.wav") != stable_unit("car", "noise/car-2.wav")
    assert stable_unit("a", "b") != stable_unit("ab")


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.text() | st.integers() | st.floats(), max_size=4))
def test_stable_unit_is_in_the_unit_interval(parts):
    u = stable_unit(*parts)
    assert 0.0 <= u < 1.0
