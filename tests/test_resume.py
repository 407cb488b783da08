"""Running again into an OUT that already holds something, on a real local Ray instance:
a folder that is not a shardsmith output (another tool's manifest.json included) or holds
another recipe's output is refused; --overwrite removes what the old run record lists and
nothing else, even when that record is malformed or is the one a killed run left; an older
output (its record in manifest.json) resumes and is migrated to run.json; a resume that
fails leaves a run record that vouches only for whole shards.

Elsewhere: the same bytes after a resume or a SIGKILL in test_run.py, damage found at
resume in test_faults.py, the resume rules as a pure function in test_resume_state.py,
--overwrite and the commit protocol without Ray in test_sink.py and test_security.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import main
from engine.errors import ShardError
from engine.recipe import load_recipe, recipe_hash
from engine.run_record import read_run_record, shard_files
from engine.runtime import run

from .conftest import digests, small_recipe, write_recipe


@pytest.fixture(scope="module")
def recipe_path(demo_corpus, tmp_path_factory) -> Path:
    data = small_recipe(demo_corpus, splits={"train": {"samples": 60}})
    return write_recipe(tmp_path_factory.mktemp("resume") / "r.yaml", data)


@pytest.fixture(scope="module")
def reference(ray_local, recipe_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resume_ref") / "out"
    assert run(load_recipe(recipe_path), out, progress=False).status == "complete"
    return out


# --------------------------------------------------------------------------- refusals


@pytest.mark.ray
def test_another_recipe_into_the_same_out_is_refused(ray_local, demo_corpus, tmp_path):
    out = tmp_path / "o"
    r1 = write_recipe(tmp_path / "a.yaml", small_recipe(demo_corpus, splits={"train": {"samples": 20}}))
    r2 = write_recipe(tmp_path / "b.yaml", small_recipe(demo_corpus, seed=8, splits={"train": {"samples": 20}}))
    run(load_recipe(r1), out, progress=False)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ShardError, match="another recipe"):
        run(load_recipe(r2), out, progress=False)
    summary = run(load_recipe(r2), out, overwrite=True, progress=False)
    assert summary.status == "complete"
    assert (out / "notes.txt").read_text() == "mine"  # --overwrite deletes only listed files
    assert read_run_record(out)["recipe"]["seed"] == 8


@pytest.mark.ray
def test_a_non_empty_folder_that_is_not_an_output_is_refused(ray_local, recipe_path, tmp_path):
    (tmp_path / "precious.txt").write_text("x")
    with pytest.raises(ShardError, match="not a shardsmith output"):
        run(load_recipe(recipe_path), tmp_path, progress=False)
    assert (tmp_path / "precious.txt").read_text() == "x"


def test_overwrite_never_deletes_another_tools_manifest(ray_local, recipe_path, tmp_path, capsys):
    """A folder with a manifest.json that shardsmith did not write is not a shardsmith
    output: --overwrite must not delete that file (nor write into the folder)."""
    out = tmp_path / "data"
    out.mkdir()
    theirs = json.dumps({"format": "webdataset", "files": ["a.tar"]})
    (out / "manifest.json").write_text(theirs)
    (out / "rejects.jsonl").write_text('{"theirs": 1}\n')
    (out / "a.tar").write_bytes(b"tar")
    code = main(["run", str(recipe_path), "--out", str(out), "--overwrite", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "not a shardsmith output" in err, err
    assert (out / "manifest.json").read_text() == theirs
    assert (out / "rejects.jsonl").read_text() == '{"theirs": 1}\n'
    assert sorted(p.name for p in out.iterdir()) == ["a.tar", "manifest.json", "rejects.jsonl"]


# --------------------------------------------------------------------------- overwrite


def test_overwrite_of_an_old_run_record_with_malformed_entries_is_a_clear_error(recipe_path, tmp_path):
    """An older output's manifest.json whose split entries are damaged: --overwrite deletes what it
    can name and never crashes with a traceback."""
    from engine.plan import make_plan
    from engine.sink import OutputSink, remove_listed

    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)
    (out / "train" / "a.arrow").write_bytes(b"x")
    (out / "keep.txt").write_text("mine")
    manifest = {"recipe_name": "old", "recipe_hash": "0" * 64,
                "splits": {"train": {"shards": [{"file": "train/a.arrow"}, "junk", {"stats": 3}]},
                           "bad": None}}
    (out / "manifest.json").write_text(json.dumps(manifest))
    recipe = load_recipe(recipe_path)
    sink = OutputSink(out, recipe, make_plan(recipe))
    start = sink.on_write_start(overwrite=True)
    sink.release()  # the run ends here: its lease on OUT goes with it
    assert start.fresh and not start.migrated
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "run.json"]
    assert remove_listed(out, {"splits": []}) == 1  # run.json: a malformed record names nothing else
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


@pytest.mark.ray
def test_overwrite_after_a_killed_run_leaves_no_shard_of_the_old_plan(ray_local, recipe_path, tmp_path):
    """A run killed with SIGKILL never rewrites its run record: on disk there are its
    finished shards and the record it wrote before the first shard (which lists none).
    --overwrite with a recipe of another shape must still remove those shards, or they
    stay beside the new ones (a loader reading OUT/train/*.arrow mixes two datasets)."""
    from engine.plan import make_plan
    from engine.resume import Listing, resume_state
    from engine.run_record import build_run_record
    from engine.storage import write_json

    out = tmp_path / "out"
    recipe = load_recipe(recipe_path)
    run(recipe, out, progress=False)
    # The run record as the killed run left it: what run() writes before any shard exists.
    plan = make_plan(recipe)
    at_start = build_run_record(recipe, plan, resume_state(plan.shards, "arrow", recipe_hash(recipe), Listing({})))
    assert all(not s["shards"] for s in at_start["splits"].values())
    assert at_start["extra_files"] == ["pool_index.parquet", "coverage.json", "probe.json"]
    write_json(out, "run.json", at_start)
    (out / "coverage.json").unlink()
    old_shards = sorted(p.name for p in (out / "train").iterdir())
    assert len(old_shards) == 6  # 3 shards + 3 stats files of the old plan

    data = __import__("yaml").safe_load(recipe_path.read_text())
    data["splits"] = {"train": {"samples": 40}}
    other = load_recipe(write_recipe(tmp_path / "r2.yaml", data))
    assert run(other, out, overwrite=True, progress=False).status == "complete"
    left = sorted(p.name for p in (out / "train").iterdir())
    assert left == ["train-00000-of-00002.arrow", "train-00000-of-00002.stats.json",
                    "train-00001-of-00002.arrow", "train-00001-of-00002.stats.json"]


# --------------------------------------------------------------------------- resume


@pytest.mark.ray
def test_an_older_output_with_manifest_json_resumes_and_is_migrated_to_run_json(
    ray_local, recipe_path, reference, tmp_path
):
    """An output written before the run record was renamed (its record in manifest.json),
    interrupted with one shard still to write: the run resumes it, rewrites the record as
    run.json and removes manifest.json (it would go stale), and the bytes are the same."""
    import shutil

    out = tmp_path / "old"
    shutil.copytree(reference, out)
    (out / "run.json").rename(out / "manifest.json")
    (out / "coverage.json").unlink()
    shard_files(out)[1].unlink()
    messages: list[str] = []
    summary = run(load_recipe(recipe_path), out, progress=False, log=messages.append)
    assert (summary.shards_written, summary.shards_skipped, summary.status) == (1, 2, "complete")
    assert any("manifest.json to run.json" in m for m in messages), messages
    assert (out / "run.json").is_file() and not (out / "manifest.json").exists()
    assert (out / "coverage.json").is_file()
    assert digests(out) == digests(reference)


@pytest.mark.ray
def test_a_resume_that_fails_leaves_a_run_record_listing_only_whole_shards(
    ray_local, recipe_path, reference, tmp_path
):
    """Resume finds three damaged shards; the first cannot be rewritten (its path is now a
    folder), so the run stops before the others are rewritten. The run record written on the
    way out must vouch neither for the truncated shard nor for the one whose bytes were
    flipped in place (same size: only its checksum tells, read back with verify, so its
    stats file must go)."""
    out = tmp_path / "out"
    recipe = load_recipe(recipe_path)
    run(recipe, out, progress=False)
    first, second, third = shard_files(out)
    first.unlink()
    first.mkdir()
    data = bytearray(second.read_bytes())
    data[len(data) // 2] ^= 0xFF
    second.write_bytes(bytes(data))
    third.write_bytes(third.read_bytes()[:500])
    with pytest.raises(Exception, match=first.name):
        run(recipe, out, workers=1, progress=False, verify=True)
    record = read_run_record(out)
    assert record["status"] == "partial"
    listed = {sh["file"]: sh for s in record["splits"].values() for sh in s["shards"]}
    assert f"train/{third.name}" not in listed and f"train/{second.name}" not in listed
    for rel, sh in listed.items():
        assert (out / rel).stat().st_size == sh["bytes"], rel
    # once the obstacle is gone, a re-run repairs everything
    first.rmdir()
    assert run(recipe, out, progress=False).status == "complete"
    assert digests(out) == digests(reference)


# --------------------------------------------------------------------------- coverage merged as shards finish


@pytest.mark.ray
def test_the_coverage_merged_as_shards_finish_is_the_report_over_the_stats_files(
    ray_local, demo_corpus, tmp_path, monkeypatch
):
    """coverage.json is merged from the records the tasks return (and, on a resume, the
    finished shards' records read for the resume check): byte-identical to the analyzer
    reading every stats file, and the end of the run reads no stats file back."""
    from engine import runtime
    from engine.coverage import analyze_coverage
    from engine.storage import write_json

    def no_rereading(*args, **kwargs):
        raise AssertionError("the end of the run re-read the stats files")

    monkeypatch.setattr(runtime, "analyze_coverage", no_rereading)
    path = write_recipe(tmp_path / "r.yaml", small_recipe(demo_corpus))  # three splits, one of them holdout
    out = tmp_path / "out"
    assert run(load_recipe(path), out, workers=2, progress=False).status == "complete"
    write_json(tmp_path, "analyzed.json", analyze_coverage(out))
    assert (out / "coverage.json").read_bytes() == (tmp_path / "analyzed.json").read_bytes()

    files = shard_files(out)
    files[0].unlink()
    files[3].unlink()
    (out / "coverage.json").unlink()
    from engine.storage import Store

    stats_reads: list[str] = []
    read_bytes = Store.read_bytes

    def counted(self, rel):
        if rel.endswith(".stats.json"):
            stats_reads.append(rel)
        return read_bytes(self, rel)

    monkeypatch.setattr(Store, "read_bytes", counted)
    summary = run(load_recipe(path), out, workers=2, progress=False)
    assert (summary.shards_written, summary.shards_skipped) == (2, len(files) - 2)
    assert (out / "coverage.json").read_bytes() == (tmp_path / "analyzed.json").read_bytes()
    # Each finished shard's commit record was read once in the whole re-run (by the claim;
    # the resume check and the coverage merge took it from there), the rewritten ones never.
    assert sorted(stats_reads) == sorted({str(f.relative_to(out))[: -len(f.suffix)] + ".stats.json"
                                          for i, f in enumerate(files) if i not in (0, 3)})
