"""Object stores on a real S3-compatible server (moto on 127.0.0.1): `--out s3://bucket/prefix`
gives the same bytes as a local run with the same resume and overwrite guarantees, from the
API and from the CLI (nothing lands in a local folder); slices and export read an output on
S3; audio and image pools can be read from S3; an empty glob and refused credentials are
one clear message each."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.coverage import analyze_coverage
from engine.errors import ShardError
from engine.recipe import load_recipe
from engine.run_record import read_run_record, shard_files
from engine.runtime import run
from engine.shards import read_shard
from engine.storage import Store

from .conftest import digests, make_bucket, moto_server, small_recipe, write_recipe

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_s3(s3_server, ray_local):
    """S3 variables are set before Ray starts, so its workers see the endpoint too."""
    make_bucket("shards")
    make_bucket("cli-out")
    return ray_local


@pytest.fixture(scope="module")
def recipe_path(demo_corpus, tmp_path_factory):
    data = small_recipe(demo_corpus, splits={"train": {"samples": 60}, "train_dev": {"samples": 20}})
    return write_recipe(tmp_path_factory.mktemp("s3") / "r.yaml", data)


def _digests(store: Store) -> dict[str, str]:
    return {rel: hashlib.sha256(store.read_bytes(rel)).hexdigest() for rel in store.list()
            if rel.endswith((".arrow", ".stats.json"))}


@pytest.fixture(scope="module")
def reference(ray_s3, recipe_path, tmp_path_factory) -> Path:
    """The same recipe run into a local folder."""
    out = tmp_path_factory.mktemp("s3ref") / "out"
    assert run(load_recipe(recipe_path), out, progress=False).status == "complete"
    return out


@pytest.fixture(scope="module")
def local_reference(reference) -> Store:
    return Store.open(reference)


def test_a_run_to_s3_gives_the_same_bytes_as_a_local_run(ray_s3, recipe_path, local_reference):
    uri = "s3://shards/same-bytes"
    summary = run(load_recipe(recipe_path), uri, progress=False)
    assert summary.status == "complete" and summary.samples == 80
    store = Store.open(uri)
    assert _digests(store) == _digests(local_reference)
    assert {"run.json", "rejects.jsonl", "pool_index.parquet", "coverage.json"} <= set(store.list())
    files = shard_files(uri, "train")
    assert all(str(f).startswith("s3://shards/same-bytes/train/") for f in files)
    assert sum(read_shard(f).num_rows for f in files) == 60
    assert analyze_coverage(uri)["passed"] is True


def test_a_run_to_s3_resumes_rewriting_only_what_is_missing(ray_s3, recipe_path, local_reference):
    uri = "s3://shards/resume"
    run(load_recipe(recipe_path), uri, progress=False)
    store = Store.open(uri)
    store.delete("train/train-00001-of-00003.arrow")
    store.delete("train_dev/train_dev-00000-of-00001.stats.json")
    summary = run(load_recipe(recipe_path), uri, progress=False)
    assert (summary.shards_written, summary.shards_skipped) == (2, 2)
    assert read_run_record(uri)["status"] == "complete"
    assert _digests(store) == _digests(local_reference)


def test_overwrite_on_s3_deletes_only_the_objects_the_run_record_lists(ray_s3, demo_corpus, recipe_path, tmp_path):
    uri = "s3://shards/overwrite"
    run(load_recipe(recipe_path), uri, progress=False)
    store = Store.open(uri)
    store.write_bytes("notes/keep.txt", b"mine")
    other = write_recipe(tmp_path / "other.yaml", small_recipe(demo_corpus, seed=99, splits={"train": {"samples": 20}}))
    with pytest.raises(ShardError, match="another recipe"):
        run(load_recipe(other), uri, progress=False)
    run(load_recipe(other), uri, overwrite=True, progress=False)
    assert store.read_bytes("notes/keep.txt") == b"mine"
    assert not store.exists("train_dev/train_dev-00000-of-00001.arrow")
    assert read_run_record(uri)["recipe"]["seed"] == 99


def test_slices_and_export_read_an_output_on_s3(ray_s3, recipe_path, tmp_path):
    from engine.cli import main
    from engine.mismatch import slice_errors

    uri = "s3://shards/slices"
    run(load_recipe(recipe_path), uri, progress=False)
    ids = [r["sample_id"] for f in shard_files(uri, "train") for r in read_shard(f).select(["sample_id"]).to_pylist()]
    preds = tmp_path / "p.csv"
    preds.write_text("sample_id,correct\n" + "".join(f"{i},{k % 2}\n" for k, i in enumerate(ids)))
    result = slice_errors(uri, str(preds))
    assert (result.n_joined, result.errors) == (60, 30)
    assert result.table and result.table[0]["errors"] > 0
    assert main(["export", uri, "--split", "train", "--n", "2", "--to", str(tmp_path / "wav")]) == 0
    assert len(list((tmp_path / "wav").glob("*.wav"))) == 2


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


def test_pools_can_be_read_from_an_object_store(ray_s3, demo_corpus, tmp_path):
    """Speech through a manifest (relative paths) and noise through a ** glob, both on S3;
    a bad object is rejected with its reason, like a bad local file."""
    make_bucket("pools")
    src = Store.open("s3://pools/corpus")
    for f in sorted((demo_corpus / "speech").rglob("*")):
        if f.is_file():
            src.write_bytes(f.relative_to(demo_corpus).as_posix(), f.read_bytes())
    for f in sorted((demo_corpus / "noise" / "road").glob("*.wav")):
        src.write_bytes(f"noise/deep/road/{f.name}", f.read_bytes())
    src.write_bytes("noise/deep/broken.wav", b"not audio at all")
    data = small_recipe(demo_corpus, splits={"train": {"samples": 20}})
    data["pools"]["speech"] = {"manifest": "s3://pools/corpus/speech/manifest.csv"}
    data["pools"]["cabin"] = {"paths": ["s3://pools/corpus/noise/**/*.wav"]}
    out = tmp_path / "out"
    summary = run(load_recipe(write_recipe(tmp_path / "r.yaml", data)), out, progress=False)
    assert summary.status == "complete" and summary.samples == 20
    rows = [r for f in shard_files(out) for r in read_shard(f).to_pylist()]
    items = {s["item"] for r in rows for s in r["sources"]}
    assert all(i.startswith("s3://pools/corpus/") for i in items)
    assert any("/noise/deep/road/" in i for i in items)
    assert all(r["text"] and r["speaker"] for r in rows)  # labels carried from the S3 manifest
    rejects = (out / "rejects.jsonl").read_text()
    assert "s3://pools/corpus/noise/deep/broken.wav" in rejects and "not an audio file" in rejects


def test_a_glob_on_an_object_store_that_matches_nothing_is_a_clear_error(s3_server):
    from engine.errors import InputError
    from engine.pools import index_pool
    from engine.recipe import AudioPool

    make_bucket("empty-pools")
    with pytest.raises(InputError, match=r"pools\.noise\.paths\[0\]: 's3://empty-pools/x/\*\.wav' matches no objects"):
        index_pool("noise", AudioPool(paths=["s3://empty-pools/x/*.wav"]), __import__("pathlib").Path("."))


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


def _png(img) -> bytes:
    import cv2

    return cv2.imencode(".png", img)[1].tobytes()


def test_image_pools_can_be_read_from_an_object_store(ray_s3, tmp_path):
    """Cut-outs with masks through a manifest (relative mask paths) and backgrounds through
    a glob, on S3: the same pixels as the same files read locally; bad objects rejected
    with their reasons, like bad local files."""
    from engine.image.io import decode

    make_bucket("images")
    rng = np.random.default_rng(3)
    files: dict[str, bytes] = {}
    mask = np.zeros((24, 32), np.uint8)
    mask[4:20, 6:26] = 255
    rows = ["path,mask,label"]
    for k in range(3):
        files[f"fg/obj-{k}.png"] = _png(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
        files[f"fg/masks/obj-{k}.png"] = _png(mask)
        rows.append(f"obj-{k}.png,masks/obj-{k}.png,thing{k}")
    files["fg/odd.png"] = files["fg/obj-0.png"]
    files["fg/masks/odd.png"] = _png(mask[:10])  # a mask of the wrong size
    rows.append("odd.png,masks/odd.png,odd")
    files["fg/manifest.csv"] = ("\n".join(rows) + "\n").encode()
    for k in range(4):
        files[f"bg/scene-{k}.png"] = _png(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8))
    files["bg/broken.png"] = b"this is not an image"
    remote = Store.open("s3://images/set")
    local = tmp_path / "set"
    for rel, data in files.items():
        remote.write_bytes(rel, data)
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_bytes(data)

    def recipe(root: str) -> dict:
        return {
            "name": "composite_s3", "seed": 5,
            "output": {"samples_per_shard": 4},
            "pools": {"objects": {"kind": "image", "manifest": f"{root}/fg/manifest.csv", "mask_column": "mask"},
                      "scenes": {"kind": "image", "paths": [f"{root}/bg/*.png"]}},
            "splits": {"train": {"samples": 8}},
            "synth": {"type": "image_composite", "foregrounds": "objects", "backgrounds": "scenes",
                      "count_range": [1, 2], "label_column": "label"},
            "guards": {"max_reuse_factor": None},
        }

    outs = {}
    for where, root in (("s3", "s3://images/set"), ("local", str(local))):
        outs[where] = tmp_path / f"out-{where}"
        summary = run(load_recipe(write_recipe(tmp_path / f"{where}.yaml", recipe(root))), outs[where],
                      progress=False)
        assert summary.status == "complete" and summary.samples == 8
    s3_rows = [r for f in shard_files(outs["s3"]) for r in read_shard(f).to_pylist()]
    local_rows = [r for f in shard_files(outs["local"]) for r in read_shard(f).to_pylist()]
    assert all(s["item"].startswith("s3://images/set/") for r in s3_rows for s in r["sources"])
    for a, b in zip(s3_rows, local_rows, strict=True):
        np.testing.assert_array_equal(decode(a["image"]["bytes"]), decode(b["image"]["bytes"]))
    rejects = {r["path"]: r["reason"] for r in map(json.loads, (outs["s3"] / "rejects.jsonl").read_text().splitlines())}
    assert set(rejects) == {"s3://images/set/bg/broken.png", "s3://images/set/fg/odd.png"}
    assert "not an image" in rejects["s3://images/set/bg/broken.png"]
    assert rejects["s3://images/set/fg/odd.png"] == "mask s3://images/set/fg/masks/odd.png is 32×10 but the image is 32×24"
