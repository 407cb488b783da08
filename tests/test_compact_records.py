"""The driver's per-shard bookkeeping held compactly (issue 15: memory flat as the shard
count grows): the plan's shards, the listing's sizes, the commit records and the shard
states are columns by plan position, the run record is streamed. Each must behave exactly
as the plain tuple / dict / list it replaces, and write the same bytes."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.layout import shard_paths
from engine.plan import ShardSpec, ShardSpecs, make_plan
from engine.recipe import parse_recipe, recipe_hash
from engine.resume import Commits, Listing, PlanFiles, PlannedSizes, resume_state, slim_record
from engine.run_record import build_run_record, run_record_text, write_run_record
from engine.storage import write_json

from .conftest import small_recipe


def _naive_specs(splits):
    """The plan's shards as make_plan built them before: one ShardSpec each, in a tuple."""
    specs = []
    for split, samples, per, holdout in splits:
        count = -(-samples // per)
        for i in range(count):
            specs.append(ShardSpec(split, i, count, i * per, min(i * per + per, samples), holdout))
    return tuple(specs)


split_sizes = st.lists(st.tuples(st.integers(0, 40), st.integers(1, 7), st.booleans()), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(split_sizes)
def test_the_plans_shards_are_the_specs_one_by_one(sizes):
    splits = [(f"s{i}", samples, per, holdout) for i, (samples, per, holdout) in enumerate(sizes)]
    specs, naive = ShardSpecs(splits), _naive_specs(splits)
    assert len(specs) == len(naive) and tuple(specs) == naive and specs == naive
    assert [specs[i] for i in range(len(naive))] == list(naive)
    assert [specs[-i] for i in range(1, len(naive) + 1)] == [naive[-i] for i in range(1, len(naive) + 1)]
    assert specs[1:3] == naive[1:3] and specs[::-2] == naive[::-2]
    assert pickle.loads(pickle.dumps(specs)) == specs
    for pos, spec in enumerate(naive):
        assert specs.position(spec.split, spec.index) == pos
    assert specs.position("s0", -1) is None and specs.position("nope", 0) is None


def test_a_plan_holds_a_few_numbers_per_split_not_one_object_per_shard():
    data = small_recipe(Path("/corpus"), splits={"train": {"samples": 10**6}})
    data["output"]["samples_per_shard"] = 1
    plan = make_plan(parse_recipe(data, base_dir="/recipes"))
    assert len(plan.shards) == 10**6 and plan.shards[-1].name == "train-999999-of-1000000"
    assert len(pickle.dumps(plan.shards)) < 500


SPECS = _naive_specs([("train", 50, 20, False), ("dev", 10, 10, True)])
RHASH = "f" * 64


def _record(spec, **changes) -> dict:
    record = {"recipe_hash": RHASH, "rows": spec.rows, "bytes": 1000 + spec.index, "sha256": f"{spec.index:064x}",
              "rejects": [], "stats": {"rows": spec.rows, "seconds": 1.5, "split": spec.split}}
    return record | changes


def test_commit_records_read_back_equal_to_what_was_stored_in_any_shape():
    commits = Commits(SPECS, "arrow", RHASH)
    stored = {
        shard_paths(SPECS[0], "arrow")[1]: _record(SPECS[0]),  # the usual slim record: in the columns
        shard_paths(SPECS[1], "arrow")[1]: _record(SPECS[1], rejects=[{"path": "a.wav", "reason": "bad"}]),
        shard_paths(SPECS[2], "arrow")[1]: _record(SPECS[2], sha256="ABC"),  # kept whole: not a sha256
        shard_paths(SPECS[3], "arrow")[1]: None,  # unreadable
        "train/train-00000-of-00009.stats.json": _record(SPECS[0]),  # another plan's
    }
    for rel, record in stored.items():
        commits[rel] = record
    assert dict(commits) == stored and len(commits) == 5
    assert list(commits)[:4] == [shard_paths(s, "arrow")[1] for s in SPECS]
    assert list(commits.rejects()) == [{"path": "a.wav", "reason": "bad"}]
    copy = commits.copy()
    del commits[shard_paths(SPECS[0], "arrow")[1]]
    assert shard_paths(SPECS[0], "arrow")[1] not in commits and len(commits) == 4 and dict(copy) == stored
    for changed in ({"rows": 1.0}, {"recipe_hash": "b" * 64}, {"extra": 1},
                    {"stats": {"rows": SPECS[0].rows, "seconds": 1, "split": "train"}}):
        commits[shard_paths(SPECS[0], "arrow")[1]] = record = _record(SPECS[0], **changed)
        assert commits[shard_paths(SPECS[0], "arrow")[1]] == record


def test_a_real_slim_record_goes_into_the_columns():
    commits = Commits(SPECS, "arrow", RHASH)
    full = _record(SPECS[0], shard=SPECS[0].name, engine_version="x",
                   stats={"rows": 20, "seconds": 0.25, "split": "train", "pools": {}, "embedding": {}})
    commits[shard_paths(SPECS[0], "arrow")[1]] = slim = slim_record(full)
    assert commits._has[0] == 1 and commits.at(0) == slim  # 1: in the columns, not kept whole


def _listings(sizes: dict, records: dict) -> tuple[Listing, Listing]:
    where = PlanFiles(SPECS, "arrow")
    commits = Commits(SPECS, "arrow", RHASH, where)
    for rel, record in records.items():
        commits[rel] = record
    return Listing(sizes, records), Listing(PlannedSizes.collect(where, sizes.items()), commits)


def test_the_compact_listing_judges_every_shard_as_the_plain_one():
    sizes, records = {}, {}
    for spec in SPECS:
        shard, stats = shard_paths(spec, "arrow")
        sizes[shard], sizes[stats] = 1000 + spec.index, 300
        records[stats] = _record(spec)
    sizes[shard_paths(SPECS[1], "arrow")[0]] = 5  # cut short
    del sizes[shard_paths(SPECS[2], "arrow")[1]]  # no record
    del sizes[shard_paths(SPECS[3], "arrow")[0]]  # no shard
    sizes |= {"train/train-00000-of-00005.arrow": 1, "run.json": 2, "old/old-00000-of-00001.stats.json": 3}
    plain, compact = _listings(sizes, records)
    assert dict(compact.sizes) == sizes and len(compact.sizes) == len(sizes)
    assert "train/train-00000-of-00005.arrow" in compact.sizes and "nope" not in compact.sizes
    a, b = resume_state(SPECS, "arrow", RHASH, plain), resume_state(SPECS, "arrow", RHASH, compact)
    assert list(a.shards.items()) == list(b.shards.items())
    assert [(s.state, s.reason) for s in a.shards.values()] == [
        ("done", ""), ("damaged", "size 5 != 1001 bytes recorded"), ("damaged", "stats file missing or unreadable"),
        ("missing", "no shard file")]
    assert a.stale == b.stale and set(a.stale) == {"train/train-00000-of-00005", "old/old-00000-of-00001"}
    assert a.shards["train-00001-of-00003"] == b.shards["train-00001-of-00003"]


def _recipe(name: str = "scale"):
    data = small_recipe(Path("/corpus"), splits={"train": {"samples": 50}, "dev": {"samples": 10}})
    data["output"]["samples_per_shard"] = 20
    data["name"] = name
    return parse_recipe(data, base_dir="/recipes")


def test_the_streamed_run_record_has_the_bytes_of_the_json_one(tmp_path):
    recipe = _recipe()
    plan = make_plan(recipe)
    rhash = recipe_hash(recipe)
    where = PlanFiles(plan.shards, "arrow")
    sizes, commits = PlannedSizes(where), Commits(plan.shards, "arrow", rhash, where)
    for spec in plan.shards[:3]:  # train done, dev not: a partial record with an empty list
        shard, stats = shard_paths(spec, "arrow")
        sizes.add(shard, 1000 + spec.index)
        sizes.add(stats, 300)
        commits[stats] = _record(spec, recipe_hash=rhash)
    state = resume_state(plan.shards, "arrow", rhash, Listing(sizes, commits))
    plain = build_run_record(recipe, plan, state, 2)
    lazy = build_run_record(recipe, plan, state, 2, lazy=True)
    assert isinstance(plain["planned_files"], list) and lazy == plain
    expected = json.dumps(plain, indent=1, sort_keys=True) + "\n"
    assert "".join(run_record_text(lazy)) == "".join(run_record_text(plain)) == expected
    write_run_record(tmp_path / "a", lazy)
    write_json(tmp_path / "b", "run.json", plain)
    assert (tmp_path / "a" / "run.json").read_bytes() == (tmp_path / "b" / "run.json").read_bytes()


@settings(max_examples=40, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                    max_leaves=10),
       st.lists(st.text(max_size=6), max_size=4), st.text(max_size=6))
def test_any_record_streams_to_the_bytes_of_json_dumps(value, files, split):
    record = {"recipe": value, "planned_files": files, "splits": {split: {"rows": 1, "shards": [value, files]},
                                                                  "x": {"shards": []}, "y": "not a split"}}
    assert "".join(run_record_text(record)) == json.dumps(record, indent=1, sort_keys=True) + "\n"


def test_a_token_inside_the_recipe_falls_back_to_one_dump():
    record = {"recipe": {"name": "\x00shardsmith-list-0\x00"}, "planned_files": ["a"], "splits": {}}
    assert "".join(run_record_text(record)) == json.dumps(record, indent=1, sort_keys=True) + "\n"


def test_a_lean_read_of_the_run_record_keeps_all_but_the_long_lists(tmp_path):
    from engine.run_record import find_run_record

    recipe = _recipe()
    plan = make_plan(recipe)
    rhash = recipe_hash(recipe)
    where = PlanFiles(plan.shards, "arrow")
    sizes, commits = PlannedSizes(where), Commits(plan.shards, "arrow", rhash, where)
    for spec in plan.shards:
        shard, stats = shard_paths(spec, "arrow")
        sizes.add(shard, 1000)
        sizes.add(stats, 300)
        commits[stats] = _record(spec, recipe_hash=rhash, bytes=1000)
    record = build_run_record(recipe, plan, resume_state(plan.shards, "arrow", rhash, Listing(sizes, commits)), 0)
    write_run_record(tmp_path, record)
    rel, whole = find_run_record(tmp_path)
    _, lean = find_run_record(tmp_path, lean=True)
    assert whole == record and len(whole["splits"]["train"]["shards"]) == 3
    assert lean["planned_files"] == () and all(s["shards"] == () for s in lean["splits"].values())
    assert lean | {"planned_files": whole["planned_files"],
                   "splits": whole["splits"]} == whole
    # read a few bytes at a time: values cut anywhere between two reads
    import engine.run_record as rr
    old = rr._JsonStream.CHUNK
    try:
        rr._JsonStream.CHUNK = 7
        assert find_run_record(tmp_path, lean=True)[1] == lean
    finally:
        rr._JsonStream.CHUNK = old


def test_a_lean_read_gives_each_long_list_entry_to_the_caller_in_order(tmp_path):
    from engine.run_record import find_run_record

    record = {"recipe_hash": "x", "planned_files": ["a", "b"],
              "splits": {"train": {"shards": [{"stats": "t0"}, {"stats": "t1"}], "rows": 2},
                         "dev": {"shards": [{"stats": "d0"}]}}}
    (tmp_path / "run.json").write_text(json.dumps(record, indent=1))
    seen = []
    _, lean = find_run_record(tmp_path, entry=lambda path, value: seen.append((path, value)))  # lean implied
    assert lean["splits"]["train"] == {"shards": (), "rows": 2}
    assert seen == [(("planned_files",), "a"), (("planned_files",), "b"),
                    (("splits", "train", "shards"), {"stats": "t0"}), (("splits", "train", "shards"), {"stats": "t1"}),
                    (("splits", "dev", "shards"), {"stats": "d0"})]


def test_the_analyzer_refuses_a_run_record_shard_entry_without_a_stats_path(tmp_path):
    import pytest

    from engine.coverage import load_coverage_stats
    from engine.errors import ShardError

    record = {"recipe_hash": "x", "recipe": {}, "splits": {"train": {"shards": [{"file": "train/a.arrow"}]}}}
    (tmp_path / "run.json").write_text(json.dumps(record))
    with pytest.raises(ShardError, match="split 'train' in the run record names no stats file"):
        load_coverage_stats(tmp_path)


def test_a_lean_read_refuses_what_a_whole_read_refuses(tmp_path):
    import pytest

    from engine.errors import ShardError
    from engine.run_record import find_run_record

    text = json.dumps({"recipe_hash": "x", "splits": {"train": {"shards": [{"file": "a"}]}},
                       "planned_files": ["a", "b"]}, indent=1)
    for bad in (text[:-3], text + "x", text.replace('"b"', '"b",', 1), text.replace('"file"', 'file'),
                "[1, 2]", "", "{\"recipe_hash\": 1}"):
        (tmp_path / "run.json").write_text(bad)
        with pytest.raises(ShardError) as whole:
            find_run_record(tmp_path)
        with pytest.raises(ShardError) as lean:
            find_run_record(tmp_path, lean=True)
        assert str(whole.value).split(" (")[0] == str(lean.value).split(" (")[0]
    (tmp_path / "run.json").write_text(text)
    assert find_run_record(tmp_path, lean=True)[1]["splits"] == {"train": {"shards": ()}}
