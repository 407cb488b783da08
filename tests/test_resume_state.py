"""Resume state as a pure function of a listing: every rule checked on listings built in
memory (no Ray, no files). A shard is done only when its stats record vouches for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.layout import shard_paths
from engine.plan import ShardSpec, make_plan
from engine.recipe import parse_recipe
from engine.resume import DAMAGED, DONE, MISSING, STALE, Listing, resume_state
from engine.run_record import build_run_record

from .conftest import small_recipe

RHASH = "a" * 64
SPECS = (ShardSpec("train", 0, 3, 0, 20), ShardSpec("train", 1, 3, 20, 40), ShardSpec("train", 2, 3, 40, 50),
         ShardSpec("dev", 0, 1, 0, 10))


def _record(spec: ShardSpec, size: int = 1000, **changes) -> dict:
    record = {"shard": spec.name, "rows": spec.rows, "bytes": size, "sha256": f"sha-{spec.name}",
              "recipe_hash": RHASH, "stats": {"seconds": 1.5}, "rejects": []}
    return record | changes


def _listing(done=SPECS, fmt="arrow", **extra) -> Listing:
    """Every spec in ``done`` written and committed (shard of 1000 bytes + its record)."""
    sizes, records = {}, {}
    for spec in done:
        shard, stats = shard_paths(spec, fmt)
        sizes[shard] = 1000
        sizes[stats] = 300
        records[stats] = _record(spec)
    return Listing(sizes | extra.get("sizes", {}), records | extra.get("records", {}),
                   extra.get("digests", {}), extra.get("unreadable", {}))


def _state(listing: Listing, fmt: str = "arrow"):
    return resume_state(SPECS, fmt, RHASH, listing)


def test_an_empty_output_has_every_shard_missing_and_nothing_stale():
    state = _state(Listing({}))
    assert [s.state for s in state.shards.values()] == [MISSING] * 4
    assert state.stale == {}


def test_a_shard_with_a_record_that_vouches_for_it_is_done_and_carries_the_record():
    state = _state(_listing())
    assert state.named(DONE) == [s.name for s in SPECS]
    assert state.shards["train-00001-of-00003"].record["rows"] == 20


def test_shards_are_listed_in_plan_order():
    assert list(_state(_listing()).shards) == [s.name for s in SPECS]


def test_a_shard_without_its_record_is_damaged():
    """A kill (or a failure) between the shard's rename and its record's write."""
    listing = _listing(done=SPECS[:1], sizes={shard_paths(SPECS[1], "arrow")[0]: 1000})
    shard = _state(listing).shards[SPECS[1].name]
    assert (shard.state, shard.reason) == (DAMAGED, "stats file missing or unreadable")


def test_a_record_that_is_there_but_unreadable_makes_its_shard_damaged():
    stats = shard_paths(SPECS[0], "arrow")[1]
    assert _state(_listing(records={stats: None})).shards[SPECS[0].name].state == DAMAGED


def test_a_record_listed_without_its_file_does_not_vouch():
    """Records are judged only for files the listing saw: a record parsed earlier for a
    stats file that has gone since counts as missing."""
    shard, stats = shard_paths(SPECS[0], "arrow")
    listing = Listing({shard: 1000}, {stats: _record(SPECS[0])})
    assert _state(listing).shards[SPECS[0].name].state == DAMAGED


def test_a_record_without_its_shard_is_missing():
    stats = shard_paths(SPECS[3], "arrow")[1]
    listing = Listing({stats: 300}, {stats: _record(SPECS[3])})
    shard = _state(listing).shards[SPECS[3].name]
    assert (shard.state, shard.reason) == (MISSING, "no shard file")


@pytest.mark.parametrize(("changes", "reason"), [
    ({"recipe_hash": "b" * 64}, "written by another recipe"),
    ({"rows": 19}, "has 19 rows, plan says 20"),
    ({"rows": "20"}, "has '20' rows, plan says 20"),
    ({"rows": True}, "has True rows, plan says 20"),
    ({"bytes": 999}, "size 1000 != 999 bytes recorded"),
    ({"bytes": None}, "size 1000 != None bytes recorded"),
    ({"sha256": None}, "stats file has fields of the wrong type"),
    ({"stats": []}, "stats file has fields of the wrong type (stats is not an object)"),
    ({"stats": "abc"}, "stats file has fields of the wrong type (stats is not an object)"),
    ({"stats": {"seconds": "1.5"}}, "stats file has fields of the wrong type (stats.rows or stats.seconds is not a number)"),
    ({"stats": {"pools": "speech"}}, "stats file has fields of the wrong type (stats.pools is not an object)"),
    ({"stats": {"pools": {"speech": {"items": ["a"], "uses": [1, 2], "us": [1]}}}},
     "stats file has fields of the wrong type (stats.pools.speech: items, uses and us are not lists of one length)"),
    ({"stats": {"params": {"snr": {"range": None, "count": "3"}}}},
     "stats file has fields of the wrong type (stats.params.snr has counts or bounds that are not numbers)"),
    ({"stats": {"embedding": {"dim": 2, "count": 1, "sum": [1], "sum_outer_upper": [1, 2, 3]}}},
     "stats file has fields of the wrong type (stats.embedding sums are not integer lists of the embedding's size)"),
    ({"rejects": {}}, "stats file has fields of the wrong type"),
    ({"rejects": ["a.wav"]}, "stats file has fields of the wrong type"),
])
def test_a_record_that_disagrees_with_its_shard_makes_it_damaged(changes, reason):
    stats = shard_paths(SPECS[0], "arrow")[1]
    shard = _state(_listing(records={stats: _record(SPECS[0], **changes)})).shards[SPECS[0].name]
    assert (shard.state, shard.reason) == (DAMAGED, reason)
    assert shard.record is None


@pytest.mark.parametrize("record", [[], ["train-00000-of-00003"], "abc", 7])
def test_a_record_that_is_json_but_not_an_object_makes_its_shard_damaged(record):
    stats = shard_paths(SPECS[0], "arrow")[1]
    shard = _state(_listing(records={stats: record})).shards[SPECS[0].name]
    assert (shard.state, shard.reason, shard.record) == (DAMAGED, "stats file is not a JSON object", None)


def test_the_stats_a_worker_writes_have_the_shape_the_checks_accept():
    from engine.resume import stats_problem

    stats = {"format": 2, "rows": 20, "seconds": 31.5, "split": "train",
             "pools": {"speech": {"items": ["a.wav", "b.wav"], "uses": [1, 2], "us": [10, 20],
                                  "buckets": [[0, 2], [1, 3, 5, 6]], "heldout_uses": 0}},
             "params": {"snr_db": {"range": [0, 30], "count": 2, "min": 1.5, "max": 20, "bins": [0] * 100,
                                   "below": 0, "above": 0},
                        "gain": {"range": None, "count": 1, "min": 0.5, "max": 0.5, "sample": [[7, 0.5]]}},
             "embedding": {"dim": 2, "count": 1, "scale_bits": 16, "sum": [1, 2], "sum_outer_upper": [1, 2, 3],
                           "sample": [[7, "id", "label", "AAAA"]]}}
    assert stats_problem(stats) == ""
    assert stats_problem({"usage": {"speech": {"a.wav": [1, 2.5]}}}) == ""
    assert stats_problem({"usage": "x"}) == "stats.usage is not pool -> item -> [uses, seconds]"


def test_a_shard_read_back_with_another_sha256_is_damaged_and_a_matching_one_done():
    first, second = (shard_paths(s, "arrow")[0] for s in SPECS[:2])
    state = _state(_listing(digests={first: "flipped", second: f"sha-{SPECS[1].name}"}))
    assert (state.shards[SPECS[0].name].state, state.shards[SPECS[0].name].reason) == (
        DAMAGED, "sha256 does not match the stats file")
    assert state.shards[SPECS[1].name].state == DONE


def test_a_shard_that_cannot_be_read_back_is_damaged_with_the_reason():
    rel = shard_paths(SPECS[2], "arrow")[0]
    shard = _state(_listing(unreadable={rel: "Permission denied"})).shards[SPECS[2].name]
    assert (shard.state, shard.reason) == (DAMAGED, "cannot be read back (Permission denied)")


def test_the_cheap_checks_come_before_the_checksum():
    """A truncated shard is reported by its size, even when it was hashed too."""
    shard, stats = shard_paths(SPECS[0], "arrow")
    listing = _listing(sizes={shard: 10}, digests={shard: "whatever"})
    assert _state(listing).shards[SPECS[0].name].reason == "size 10 != 1000 bytes recorded"


def test_files_of_another_plan_or_format_are_stale_and_nothing_else_is():
    sizes = {
        "train/train-00000-of-00005.arrow": 10, "train/train-00000-of-00005.stats.json": 10,  # 5 shards then
        "train/train-00000-of-00003.parquet": 10,  # the other format
        "old/old-00000-of-00001.stats.json": 10,   # a split no longer planned
        "train/.train-00001-of-00003.arrow.tmp-0123abcd": 10,  # a write in progress
        "run.json": 10, "rejects.jsonl": 10, "notes/readme.txt": 10, "train/train-extra.arrow": 10,
    }
    state = _state(_listing(sizes=sizes))
    assert state.named(DONE) == [s.name for s in SPECS]
    assert {k: s.files for k, s in state.stale.items()} == {
        "old/old-00000-of-00001": ("old/old-00000-of-00001.stats.json",),
        "train/train-00000-of-00003": ("train/train-00000-of-00003.parquet",),
        "train/train-00000-of-00005": ("train/train-00000-of-00005.arrow", "train/train-00000-of-00005.stats.json"),
    }
    assert {s.state for s in state.stale.values()} == {STALE}


def test_a_parquet_plan_reads_parquet_shards():
    state = _state(_listing(fmt="parquet"), fmt="parquet")
    assert state.named(DONE) == [s.name for s in SPECS] and not state.stale
    assert _state(_listing(fmt="parquet")).named(MISSING) == [s.name for s in SPECS]


# --------------------------------------------------------------------------- the run record


@pytest.fixture
def recipe():
    data = small_recipe(Path("/corpus"), splits={"train": {"samples": 50}, "dev": {"samples": 10}})
    data["output"]["samples_per_shard"] = 20
    return parse_recipe(data, base_dir="/recipes")


def test_the_run_record_lists_only_done_shards_and_is_partial_until_all_are(recipe):
    from engine.recipe import recipe_hash

    plan = make_plan(recipe)
    assert [s.name for s in plan.shards] == [s.name for s in SPECS]
    rhash = recipe_hash(recipe)
    sizes, records = {}, {}
    for spec in plan.shards[:2]:
        shard, stats = shard_paths(spec, "arrow")
        sizes |= {shard: 1000, stats: 300}
        records[stats] = _record(spec, recipe_hash=rhash)
    record = build_run_record(recipe, plan, resume_state(plan.shards, "arrow", rhash, Listing(sizes, records)))
    assert record["status"] == "partial" and record["total_rows"] == 40
    assert [sh["file"] for sh in record["splits"]["train"]["shards"]] == [
        "train/train-00000-of-00003.arrow", "train/train-00001-of-00003.arrow"]
    assert record["splits"]["train"]["seconds"] == 3.0 and record["splits"]["dev"]["shards"] == []
    assert len(record["planned_files"]) == 8 and "rejected_files" not in record

    for spec in plan.shards[2:]:
        shard, stats = shard_paths(spec, "arrow")
        sizes |= {shard: 1000, stats: 300}
        records[stats] = _record(spec, recipe_hash=rhash)
    done = build_run_record(recipe, plan, resume_state(plan.shards, "arrow", rhash, Listing(sizes, records)), 3)
    assert (done["status"], done["total_rows"], done["rejected_files"]) == ("complete", 60, 3)


def test_a_slim_record_keeps_what_a_resume_and_the_run_record_read_and_still_vouches():
    from engine.resume import record_problem, slim_record

    spec = SPECS[0]
    stats = {"seconds": 1.5, "rows": 20, "split": "train",
             "pools": {"p": {"items": ["a"], "uses": [2], "us": [3]}},
             "params": {"snr": {"count": 2, "min": 1.0, "max": 2.0}},
             "embedding": {"dim": 1, "count": 2, "sum": [4], "sum_outer_upper": [8], "sample": []}}
    record = _record(spec, stats=stats, start=0, stop=20, engine_version="x")
    assert record_problem(record, spec, RHASH, 1000) == ""
    slim, with_pools = slim_record(record), slim_record(record, pools=True)
    assert slim == {"recipe_hash": RHASH, "rows": 20, "bytes": 1000, "sha256": record["sha256"], "rejects": [],
                    "stats": {"seconds": 1.5, "rows": 20, "split": "train"}}
    assert with_pools["stats"] == {"seconds": 1.5, "rows": 20, "split": "train", "pools": stats["pools"]}
    assert record["stats"] is stats and "embedding" in stats  # the record itself is left whole
    for r in (slim, with_pools):
        assert record_problem(r, spec, RHASH, 1000) == ""
    full = _listing(records={shard_paths(sp, "arrow")[1]: _record(sp, stats=stats, start=0) for sp in SPECS})
    slim_listing = Listing(full.sizes, {k: slim_record(v) for k, v in full.records.items()})
    assert [(s.state, s.reason) for s in _state(full).shards.values()] == \
        [(s.state, s.reason) for s in _state(slim_listing).shards.values()]
