"""What a user meets when running, interrupting, re-running and overwriting: the CLI with
an object-store --out, object-store errors, a folder holding another tool's manifest.json,
stats files of the wrong shape, and the run record written after a resume that failed.
Real files, a real local Ray instance and a real S3-compatible server (moto)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import main
from engine.recipe import load_recipe, recipe_hash
from engine.run_record import read_run_record, shard_files
from engine.runtime import run
from engine.storage import Store

from .conftest import digests, make_bucket, moto_server, small_recipe, write_recipe


@pytest.fixture(scope="module")
def recipe_path(demo_corpus, tmp_path_factory) -> Path:
    data = small_recipe(demo_corpus, splits={"train": {"samples": 60}})
    return write_recipe(tmp_path_factory.mktemp("edge") / "r.yaml", data)


@pytest.fixture(scope="module")
def ray_s3(s3_server, ray_local):
    """S3 variables are set before Ray starts, so its workers see the endpoint too."""
    make_bucket("cli-out")
    return ray_local


@pytest.fixture(scope="module")
def reference(ray_s3, recipe_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("edge_ref") / "out"
    assert run(load_recipe(recipe_path), out, progress=False).status == "complete"
    return out


# --------------------------------------------------------------------------- CLI + S3


@pytest.mark.ray
def test_cli_run_with_an_s3_out_writes_to_the_bucket_not_a_local_folder(
    ray_s3, recipe_path, reference, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)  # a wrong local fallback would land here, not in the checkout
    uri = "s3://cli-out/run"
    assert main(["run", str(recipe_path), "--out", uri, "--no-progress"]) == 0
    assert not any(tmp_path.iterdir()), f"wrote locally: {list(tmp_path.rglob('*'))[:5]}"
    store = Store.open(uri)
    assert store.exists("run.json") and not store.exists("manifest.json")
    for rel, digest in digests(reference).items():
        assert store.sha256(rel) == digest, rel
    assert uri in capsys.readouterr().out  # the summary names the bucket, not a mangled path


@pytest.fixture(scope="module")
def s3_with_auth():
    """A second moto server that checks credentials (INITIAL_NO_AUTH_ACTION_COUNT=0), so
    unknown keys are refused like on real S3."""
    with moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as endpoint:
        yield endpoint


def test_s3_credentials_that_are_refused_give_one_clear_message_and_exit_1(
    s3_with_auth, recipe_path, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    for k, v in {"AWS_ENDPOINT_URL": s3_with_auth, "AWS_ACCESS_KEY_ID": "nobody",
                 "AWS_SECRET_ACCESS_KEY": "wrong", "AWS_DEFAULT_REGION": "us-east-1",
                 "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(k, v)
    for argv in (["run", str(recipe_path), "--out", "s3://locked/x", "--no-progress"],
                 ["export", "s3://locked/x", "--split", "train", "--to", "unused"],
                 ["coverage", "s3://locked/x"]):
        code = main(argv)  # an uncaught exception (a traceback) fails the test here
        err = capsys.readouterr().err
        assert code == 1, (argv, err)
        assert "s3://locked/x" in err and "Traceback" not in err, err
        assert "AWS_ACCESS_KEY_ID" in err or "credentials" in err, err


# --------------------------------------------------------------------------- overwrite


def test_overwrite_never_deletes_another_tools_manifest(ray_s3, recipe_path, tmp_path, capsys):
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
    start = OutputSink(out, recipe, make_plan(recipe)).on_write_start(overwrite=True)
    assert start.fresh and not start.migrated
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "run.json"]
    assert remove_listed(out, {"splits": []}) == 1  # run.json: a malformed record names nothing else
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


# --------------------------------------------------------------------------- resume


@pytest.mark.ray
def test_a_stats_file_of_the_wrong_shape_is_rewritten_at_resume(ray_s3, recipe_path, reference, tmp_path):
    """A stats file that is valid JSON with this recipe's hash but the wrong types (as an
    older engine or a hand edit might leave): the shard is rewritten, not a crash."""
    out = tmp_path / "out"
    recipe = load_recipe(recipe_path)
    run(recipe, out, progress=False)
    stats = sorted(out.glob("train/*.stats.json"))
    bad = {"recipe_hash": recipe_hash(recipe), "rows": "20", "bytes": None, "stats": []}
    stats[0].write_text(json.dumps(bad))
    stats[1].write_text(json.dumps({"recipe_hash": recipe_hash(recipe)}))
    messages: list[str] = []
    summary = run(recipe, out, progress=False, log=messages.append)
    assert (summary.shards_written, summary.status) == (2, "complete")
    assert digests(out) == digests(reference)


@pytest.mark.ray
def test_an_older_output_with_manifest_json_resumes_and_is_migrated_to_run_json(
    ray_s3, recipe_path, reference, tmp_path
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
    ray_s3, recipe_path, reference, tmp_path
):
    """Resume finds three damaged shards; the first cannot be rewritten (its path is now a
    folder), so the run stops before the others are rewritten. The run record written on the
    way out must vouch neither for the truncated shard nor for the one whose bytes were
    flipped in place (same size: only its checksum tells, so its stats file must go)."""
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
        run(recipe, out, workers=1, progress=False)
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


@pytest.mark.ray
def test_overwrite_after_a_killed_run_leaves_no_shard_of_the_old_plan(ray_s3, recipe_path, tmp_path):
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
    assert at_start["extra_files"] == ["pool_index.parquet", "coverage.json"]
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


def test_a_parquet_shard_replaced_by_a_folder_is_not_read_as_an_empty_table(tmp_path):
    from engine.errors import ShardError
    from engine.shards import read_shard

    shard = tmp_path / "train-00000-of-00001.parquet"
    shard.mkdir()
    with pytest.raises(ShardError, match="not a file"):
        read_shard(shard)


def test_export_to_a_path_that_is_a_file_is_one_clear_error(reference, tmp_path, capsys):
    target = tmp_path / "listen"
    target.write_text("a file")
    code = main(["export", str(reference), "--split", "train", "--n", "2", "--to", str(target)])
    err = capsys.readouterr().err
    assert code == 1 and str(target) in err and "Traceback" not in err, err
    assert target.read_text() == "a file"
