"""A recipe run end to end on a real local Ray instance: the same bytes on one and two
workers, after a resume that rewrites deleted and corrupted shards, after a SIGKILL and
with pools probed on Ray; the run record with every shard's checksum; rows that carry
provenance, labels and params, keep held-out items to the holdout split, replay to their
audio bytes and have the SNR they sampled.

Elsewhere: refusals, --overwrite and older outputs in test_resume.py, injected faults in
test_faults.py, bad source files in test_bad_inputs.py, image recipes in test_image_run.py."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from engine.audio import io as audio_io
from engine.audio import ops
from engine.pools import index_pools
from engine.layout import LEASE_FILE
from engine.recipe import load_recipe
from engine.run_record import read_run_record, shard_files
from engine.runtime import run
from engine.synth import build_synthesizer

from .conftest import all_rows, digests, small_recipe, write_recipe

pytestmark = pytest.mark.ray


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def output_digests(out: Path) -> dict[str, str]:
    return digests(out, (".arrow", ".parquet"))


@pytest.fixture(scope="module")
def recipe_path(demo_corpus, tmp_path_factory) -> Path:
    return write_recipe(tmp_path_factory.mktemp("recipe") / "r.yaml", small_recipe(demo_corpus))


@pytest.fixture(scope="module")
def reference_run(ray_local, recipe_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "out"
    summary = run(load_recipe(recipe_path), out, workers=1, progress=False)
    assert summary.status == "complete"
    return out


def test_same_bytes_on_one_and_two_workers(ray_local, recipe_path, reference_run, tmp_path):
    out2 = tmp_path / "two"
    run(load_recipe(recipe_path), out2, workers=2, progress=False)
    one, two = output_digests(reference_run), output_digests(out2)
    assert len(one) == 11  # 5 shards, 5 stats files and the pool index
    assert one == two


def test_manifest_lists_every_shard_with_its_checksum(reference_run):
    manifest = read_run_record(reference_run)
    assert manifest["status"] == "complete"
    assert manifest["total_rows"] == 100
    assert {k: v["rows"] for k, v in manifest["splits"].items()} == {
        "train": 60, "train_dev": 20, "train_dev_unseen": 20}
    shard = manifest["splits"]["train"]["shards"][0]
    assert shard["file"] == "train/train-00000-of-00003.arrow"
    assert sha(reference_run / shard["file"]) == shard["sha256"]


def test_rows_carry_provenance_labels_and_params(reference_run, demo_corpus):
    rows = all_rows(reference_run)
    ids = [r["sample_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 100
    assert ids[0] == "t_in_car-train-000000000"
    speech_labels = {
        line.split(",")[0]: line.split(",")[1:]
        for line in (demo_corpus / "speech" / "manifest.csv").read_text().splitlines()[1:]
    }
    for r in rows:
        assert r["sampling_rate"] == 16000
        pools = [s["pool"] for s in r["sources"]]
        assert pools == ["speech", "cabin"]
        speech_item = r["sources"][0]["item"]
        text, speaker = speech_labels[speech_item.split("speech/", 1)[1]]
        assert (r["text"], r["speaker"]) == (text, speaker)
        params = json.loads(r["params"])
        assert 0 <= params["noise"][0]["snr_db"] <= 20
        assert len(r["embedding"]) > 10 and all(np.isfinite(r["embedding"]))
        x, sr = audio_io.decode(r["audio"]["bytes"])
        assert sr == 16000 and abs(len(x) / sr - r["duration_s"]) < 1e-3


def test_holdout_items_only_in_the_holdout_split(reference_run):
    index = pq.read_table(reference_run / "pool_index.parquet").to_pylist()
    held = {r["item"] for r in index if r["pool"] == "cabin" and r["holdout"]}
    assert held
    for split in ("train", "train_dev"):
        used = {s["item"] for r in all_rows(reference_run, split) for s in r["sources"] if s["pool"] == "cabin"}
        assert not used & held
    unseen = {s["item"] for r in all_rows(reference_run, "train_dev_unseen") for s in r["sources"] if s["pool"] == "cabin"}
    assert unseen and unseen <= held


def test_replaying_params_reproduces_the_audio_bytes(reference_run, recipe_path):
    recipe = load_recipe(recipe_path)
    synth = build_synthesizer(recipe, index_pools(recipe))
    for r in all_rows(reference_run, "train")[:8]:
        sample = synth.apply(json.loads(r["params"]))
        assert sample.columns["audio"]["bytes"] == r["audio"]["bytes"]
        assert sample.sources == r["sources"]


def test_realized_snr_of_written_rows_matches_the_sampled_snr(reference_run, recipe_path):
    """Rebuild speech and scaled noise from a row's provenance; SNR as docs/architecture.md defines it."""
    recipe = load_recipe(recipe_path)
    synth = build_synthesizer(recipe, index_pools(recipe))
    for r in all_rows(reference_run, "train")[:10]:
        params = json.loads(r["params"])
        speech_src, noise_src = r["sources"]
        speech, _ = synth._read_speech("speech", speech_src["item"])
        layer = params["noise"][0]
        noise, _ = synth._read_noise("cabin", layer["item"], layer["start_s"], len(speech))
        g_speech = ops.db_to_gain(speech_src["gain_db"])
        g_noise = ops.db_to_gain(noise_src["gain_db"])
        snr = ops.realized_snr_db(speech * g_speech, noise * g_noise, 16000)
        assert abs(snr - layer["snr_db"]) < 0.01


def test_resume_rewrites_only_deleted_and_corrupted_shards(ray_local, recipe_path, reference_run, tmp_path):
    out = tmp_path / "resume"
    run(load_recipe(recipe_path), out, workers=2, progress=False)
    files = shard_files(out)
    deleted, corrupted = files[1], files[3]
    deleted.unlink()
    data = bytearray(corrupted.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupted.write_bytes(bytes(data))
    untouched = {f: f.stat().st_mtime_ns for f in files if f not in (deleted, corrupted)}
    # same size: only --verify (the sha256 read back) finds the corrupted shard
    summary = run(load_recipe(recipe_path), out, workers=2, progress=False, verify=True)
    assert (summary.shards_written, summary.shards_skipped) == (2, 3)
    assert {f: f.stat().st_mtime_ns for f in untouched} == untouched
    assert output_digests(out) == output_digests(reference_run)


def test_a_run_killed_with_sigkill_resumes_to_exactly_the_requested_rows(
    ray_local, demo_corpus, reference_run, recipe_path, tmp_path
):
    out = tmp_path / "killed"
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "run", str(recipe_path), "--out", str(out),
         "--workers", "1", "--no-progress"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(out.glob("*/*.stats.json"))) < 2:
            time.sleep(0.05)
        assert len(list(out.glob("*/*.stats.json"))) >= 2, "the run never got going"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        # The killed driver's Ray processes share its (new) process group: end them all.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    done_before = len(list(out.glob("*/*.stats.json")))
    assert done_before < 5
    assert (out / LEASE_FILE).exists()  # the killed run's lease is left behind: its process has ended
    decodes = list(Path(tempfile.gettempdir()).glob(f"shardsmith-decodes-*-{proc.pid}-*"))
    assert len(decodes) == 1  # and its folder of shared decodes
    summary = run(load_recipe(recipe_path), out, workers=2, progress=False)
    assert not decodes[0].exists()  # swept by the next local run
    assert summary.status == "complete"
    assert not (out / LEASE_FILE).exists()  # taken over, and released at the end
    assert summary.shards_skipped >= 2
    rows = all_rows(out)
    ids = [r["sample_id"] for r in rows]
    assert len(ids) == 100 and len(set(ids)) == 100
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    assert output_digests(out) == output_digests(reference_run)


def test_large_pools_are_probed_on_ray_with_the_same_result(ray_local, recipe_path, reference_run, tmp_path, monkeypatch):
    """Pools above a size are probed as Ray tasks in chunks; the index, and so every byte
    written, is the same as when probed by local threads."""
    import engine.runtime as runtime

    monkeypatch.setattr(runtime, "RAY_PROBE_MIN_FILES", 1)
    monkeypatch.setattr(runtime, "PROBE_CHUNK", 16)
    local_calls = []
    monkeypatch.setattr(runtime, "thread_mapper", lambda fn, items: local_calls.append(len(items)))
    out = tmp_path / "probed"
    run(load_recipe(recipe_path), out, progress=False)
    assert local_calls == []  # every pool was probed by Ray tasks, none by the driver
    assert output_digests(out) == output_digests(reference_run)
