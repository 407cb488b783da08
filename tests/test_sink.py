"""The output sink's commit protocol without Ray: a shard is renamed in place before its
stats record is written, a failure between the two leaves a shard that resume calls
damaged and the next run redoes, and an older output's manifest.json is migrated to
run.json (another tool's manifest.json is never touched)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from engine.errors import ShardError
from engine.layout import LEGACY_RUN_RECORD_FILE, RUN_RECORD_FILE, STATS_SUFFIX, shard_paths
from engine.plan import make_plan
from engine.pools import index_pools
from engine.recipe import load_recipe
from engine.resume import DAMAGED, MISSING
from engine.run_record import read_run_record, shard_files
from engine.sink import OutputSink
from engine.storage import Store
from engine.worker import make_shard

from .conftest import digests, small_recipe, write_recipe


@pytest.fixture(scope="module")
def recipe(demo_corpus, tmp_path_factory):
    data = small_recipe(demo_corpus, splits={"train": {"samples": 40}, "train_dev": {"samples": 20}})
    return load_recipe(write_recipe(tmp_path_factory.mktemp("sink") / "r.yaml", data))


@pytest.fixture(scope="module")
def index(recipe):
    return index_pools(recipe)


def claim(out: Path, recipe, *, overwrite: bool = False):
    """``on_write_start`` of a run that then ends (its lease on OUT goes with it)."""
    sink = OutputSink(out, recipe)
    start = sink.on_write_start(overwrite=overwrite)
    sink.release()
    return start


def write_without_ray(recipe, index, out: Path, *, overwrite: bool = False) -> tuple[dict, list[str]]:
    """What runtime.run does, one shard after another in this process, through the same sink."""
    sink = OutputSink(out, recipe, make_plan(recipe))
    sink.on_write_start(overwrite=overwrite)
    sink.record_pools(index)
    written = []
    for spec, _ in sink.reopen(sink.resume_state(sink.listing())):
        make_shard(recipe, index, spec, out)
        written.append(spec.name)
    return sink.on_write_complete(index.rejects), written


@pytest.fixture(scope="module")
def reference(recipe, index, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sink_ref") / "out"
    record, written = write_without_ray(recipe, index, out)
    assert record["status"] == "complete" and len(written) == 3
    return out


# --------------------------------------------------------------------------- commit order


def test_the_stats_record_is_written_only_after_its_shard_is_renamed_in_place(recipe, index, tmp_path,
                                                                              monkeypatch):
    seen = []
    real_write = Store.write_bytes

    def spy(self, rel, data):
        if rel.endswith(STATS_SUFFIX):
            shard = Path(self.local_path(rel[: -len(STATS_SUFFIX)] + ".arrow"))
            temporaries = [p.name for p in shard.parent.iterdir() if ".tmp-" in p.name and shard.name in p.name]
            record = json.loads(data)
            seen.append((rel, shard.is_file() and shard.stat().st_size == record["bytes"], temporaries))
        return real_write(self, rel, data)

    monkeypatch.setattr(Store, "write_bytes", spy)
    spec = make_plan(recipe).shards[0]
    make_shard(recipe, index, spec, tmp_path)
    assert seen == [(shard_paths(spec, "arrow")[1], True, [])]


def test_a_failure_between_shard_and_record_leaves_a_damaged_shard_the_next_run_redoes(
    recipe, index, reference, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    spec = make_plan(recipe).shards[1]
    shard_rel, stats_rel = shard_paths(spec, "arrow")
    real_write = Store.write_bytes

    def fail_on_the_record(self, rel, data):
        if rel == stats_rel:
            raise ShardError(f"{rel}: cannot write (injected)")
        return real_write(self, rel, data)

    claim(out, recipe)
    monkeypatch.setattr(Store, "write_bytes", fail_on_the_record)
    with pytest.raises(ShardError, match="injected"):
        make_shard(recipe, index, spec, out)
    monkeypatch.undo()

    sink = OutputSink(out, recipe)
    listing = sink.listing()
    assert shard_rel in listing.sizes and stats_rel not in listing.sizes
    state = sink.resume_state(listing)
    assert state.shards[spec.name].state == DAMAGED
    assert state.shards[spec.name].reason == "stats file missing or unreadable"
    assert {state.shards[s.name].state for s in sink.plan.shards if s != spec} == {MISSING}

    record, written = write_without_ray(recipe, index, out)
    assert spec.name in written and record["status"] == "complete"
    assert digests(out) == digests(reference)


def test_a_record_is_refused_for_a_shard_that_was_never_put_in_place(recipe, index, tmp_path):
    sink = OutputSink(tmp_path, recipe)
    spec = make_plan(recipe).shards[0]
    with pytest.raises(ShardError, match="no shard in place"):
        sink.commit_shard(spec, stats={}, rejects=[], redraws=0)
    schema = pa.schema([("x", pa.int32())])
    with pytest.raises(RuntimeError, match="mid-shard"), sink.open_shard(spec, schema) as writer:
        writer.write_row({"x": 1})
        raise RuntimeError("mid-shard")
    with pytest.raises(ShardError, match="no shard in place"):
        sink.commit_shard(spec, stats={}, rejects=[], redraws=0)
    assert not list(tmp_path.rglob("*.arrow")) and not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]


# --------------------------------------------------------------------------- the run record


def test_the_run_record_is_run_json_and_lists_what_is_on_disk(recipe, reference):
    assert (reference / RUN_RECORD_FILE).is_file() and not (reference / LEGACY_RUN_RECORD_FILE).exists()
    record = read_run_record(reference)
    assert record["total_rows"] == 60 and record["rejected_files"] == 0
    assert [p.name for p in shard_files(reference)] == [
        "train-00000-of-00002.arrow", "train-00001-of-00002.arrow", "train_dev-00000-of-00001.arrow"]


def _as_old_output(src: Path, dest: Path) -> Path:
    """A copy of ``src`` as an older shardsmith wrote it: the same record as manifest.json."""
    import shutil

    shutil.copytree(src, dest)
    (dest / RUN_RECORD_FILE).rename(dest / LEGACY_RUN_RECORD_FILE)
    return dest


def test_an_old_output_is_read_as_it_is_by_readers(reference, tmp_path):
    old = _as_old_output(reference, tmp_path / "old")
    before = digests(old, (".arrow", ".json"))
    assert read_run_record(old) == read_run_record(reference)
    assert [p.name for p in shard_files(old)] == [p.name for p in shard_files(reference)]
    assert digests(old, (".arrow", ".json")) == before  # reading migrates nothing
    assert not (old / RUN_RECORD_FILE).exists()


def test_an_old_output_resumes_and_its_record_is_migrated_to_run_json(recipe, index, reference, tmp_path):
    old = _as_old_output(reference, tmp_path / "old")
    shard_files(old)[1].unlink()  # an interrupted old run: one shard still to write
    start = claim(old, recipe)
    assert start.migrated and not start.fresh
    assert (old / RUN_RECORD_FILE).is_file() and not (old / LEGACY_RUN_RECORD_FILE).exists()
    record, written = write_without_ray(recipe, index, old)
    assert written == ["train-00001-of-00002"] and record["status"] == "complete"
    assert digests(old) == digests(reference)
    assert (old / RUN_RECORD_FILE).read_text() == (reference / RUN_RECORD_FILE).read_text()


def test_overwrite_of_an_old_output_removes_its_manifest_json_and_listed_files_only(recipe, reference, tmp_path,
                                                                                   demo_corpus):
    old = _as_old_output(reference, tmp_path / "old")
    (old / "mine.txt").write_text("keep")
    data = small_recipe(demo_corpus, splits={"train": {"samples": 20}})
    other = load_recipe(write_recipe(tmp_path / "other.yaml", data))
    with pytest.raises(ShardError, match="another recipe"):
        OutputSink(old, other).on_write_start(overwrite=False)
    assert (old / LEGACY_RUN_RECORD_FILE).is_file()
    claim(old, other, overwrite=True)
    assert sorted(p.name for p in old.iterdir()) == ["mine.txt", RUN_RECORD_FILE]


def test_another_tools_manifest_json_beside_a_run_record_is_never_touched(recipe, reference, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(reference, out)
    theirs = json.dumps({"format": "webdataset", "files": ["a.tar"]})
    (out / LEGACY_RUN_RECORD_FILE).write_text(theirs)
    start = claim(out, recipe)
    assert not start.migrated
    assert (out / LEGACY_RUN_RECORD_FILE).read_text() == theirs
    claim(out, recipe, overwrite=True)
    assert (out / LEGACY_RUN_RECORD_FILE).read_text() == theirs


def test_another_tools_manifest_json_alone_makes_the_folder_no_shardsmith_output(recipe, tmp_path):
    (tmp_path / LEGACY_RUN_RECORD_FILE).write_text("[1, 2]")
    for overwrite in (False, True):
        with pytest.raises(ShardError, match="not a JSON object"):
            OutputSink(tmp_path, recipe).on_write_start(overwrite=overwrite)
    assert [p.name for p in tmp_path.iterdir()] == [LEGACY_RUN_RECORD_FILE]
