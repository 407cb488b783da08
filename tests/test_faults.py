"""Fault injection on a real local Ray instance: a worker killed mid-shard; damaged shards
and stats files (missing, truncated, flipped bytes, the wrong shape) found at resume and
rewritten; a full disk, a file or folder in the way, a shard that is a folder: clear
messages. Nothing is lost, nothing is duplicated, nothing already written is damaged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from engine.errors import ShardError
from engine.recipe import load_recipe, recipe_hash
from engine.report import count
from engine.run_record import read_run_record, shard_files
from engine.runtime import run
from engine.shards import read_shard

from .conftest import digests, small_recipe, write_recipe

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def recipe_path(demo_corpus, tmp_path_factory) -> Path:
    data = small_recipe(demo_corpus, splits={"train": {"samples": 80}})
    return write_recipe(tmp_path_factory.mktemp("faults") / "r.yaml", data)


@pytest.fixture(scope="module")
def reference(ray_local, recipe_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faults_ref") / "out"
    assert run(load_recipe(recipe_path), out, progress=False).status == "complete"
    return out


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            stat = (Path("/proc") / str(pid) / "stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4: the parent's pid
    return False


def _shard_task_pids() -> list[int]:
    """Workers running a shard task in *this* test's Ray instance (its processes descend
    from this process); never anybody else's."""
    me = os.getpid()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmd.startswith(b"ray::_shard_task") and _descends_from(int(entry.name), me):
            pids.append(int(entry.name))
    return pids


def test_a_worker_killed_mid_shard_is_retried_and_the_output_is_identical(
    ray_local, recipe_path, reference, tmp_path
):
    out = tmp_path / "out"
    killed: list[int] = []

    def killer():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for pid in _shard_task_pids():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.005)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    summary = run(load_recipe(recipe_path), out, workers=1, progress=False)
    t.join(timeout=5)
    assert killed, "no shard task was seen running"
    assert summary.status == "complete" and summary.samples == 80
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    assert digests(out) == digests(reference)


def test_a_truncated_shard_is_found_at_resume_and_rewritten(ray_local, recipe_path, reference, tmp_path):
    out = tmp_path / "out"
    run(load_recipe(recipe_path), out, progress=False)
    victim = shard_files(out)[2]
    victim.write_bytes(victim.read_bytes()[:1000])
    messages: list[str] = []
    summary = run(load_recipe(recipe_path), out, progress=False, log=messages.append)
    assert summary.shards_written == 1
    assert any(victim.stem in m and "size" in m for m in messages)
    assert digests(out) == digests(reference)


def test_a_large_output_is_verified_by_the_workers_not_the_driver(ray_local, recipe_path, reference, tmp_path,
                                                                  monkeypatch):
    """Above VERIFY_ON_DRIVER_MAX_BYTES the finished shards are hashed by Ray workers: with
    hashing forbidden in the driver, a same-size corruption is still found and rewritten."""
    from engine import runtime
    from engine.storage import Store

    out = tmp_path / "out"
    run(load_recipe(recipe_path), out, progress=False)
    victim = shard_files(out)[1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x5A  # same size: only the checksum can tell
    victim.write_bytes(bytes(data))

    def no_hashing_here(self, rel):
        raise AssertionError(f"the driver hashed {rel}")

    monkeypatch.setattr(runtime, "VERIFY_ON_DRIVER_MAX_BYTES", 0)
    monkeypatch.setattr(Store, "sha256", no_hashing_here)
    messages: list[str] = []
    summary = run(load_recipe(recipe_path), out, workers=2, progress=False, log=messages.append, verify=True)
    n = len(shard_files(out))
    assert any(f"verified {count(n, 'finished shard')}" in m and "on 2 workers" in m for m in messages)
    assert any(victim.stem in m and "sha256" in m for m in messages)
    assert (summary.shards_written, summary.shards_skipped) == (1, n - 1)
    assert digests(out) == digests(reference)


def test_a_plain_rerun_trusts_commit_records_and_reads_no_shard_back(ray_local, recipe_path, reference, tmp_path,
                                                                     monkeypatch):
    """Without --verify a re-run judges finished shards by their commit records and one
    listing: no shard is read back (nor hashed), so a same-size corruption goes unseen
    there, and --verify then finds it and rewrites the shard."""
    from engine import runtime
    from engine.storage import Store

    out = tmp_path / "out"
    run(load_recipe(recipe_path), out, progress=False)
    victim = shard_files(out)[1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x5A  # same size: only the checksum can tell
    victim.write_bytes(bytes(data))
    n = len(shard_files(out))

    calls: list[str] = []
    real_read_back, real_sha256 = runtime.read_back, Store.sha256
    monkeypatch.setattr(runtime, "read_back", lambda store, rel: calls.append(rel) or real_read_back(store, rel))
    monkeypatch.setattr(Store, "sha256", lambda self, rel: calls.append(rel) or real_sha256(self, rel))
    messages: list[str] = []
    summary = run(load_recipe(recipe_path), out, progress=False, log=messages.append)
    assert calls == []
    assert (summary.shards_written, summary.shards_skipped) == (0, n)
    assert any(f"trusting {count(n, 'finished shard')} by their commit records" in m for m in messages)

    messages.clear()
    summary = run(load_recipe(recipe_path), out, workers=1, progress=False, log=messages.append, verify=True)
    assert len(set(calls)) == n  # every finished shard read back once
    assert any(f"verified {count(n, 'finished shard')}" in m and "in the driver" in m for m in messages)
    assert any(victim.stem in m and "sha256" in m for m in messages)
    assert (summary.shards_written, summary.shards_skipped) == (1, n - 1)
    assert digests(out) == digests(reference)


def test_a_missing_stats_file_makes_its_shard_rewritten(ray_local, recipe_path, reference, tmp_path):
    out = tmp_path / "out"
    run(load_recipe(recipe_path), out, progress=False)
    stats = sorted(out.glob("train/*.stats.json"))[1]
    stats.unlink()
    summary = run(load_recipe(recipe_path), out, progress=False)
    assert summary.shards_written == 1 and summary.status == "complete"
    assert digests(out) == digests(reference)


def test_a_stats_file_of_the_wrong_shape_is_rewritten_at_resume(ray_local, recipe_path, reference, tmp_path):
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


def test_a_stats_record_with_stats_of_the_wrong_shape_is_a_clear_coverage_error_and_rewritten_at_resume(
        ray_local, recipe_path, reference, tmp_path, capsys):
    """Valid JSON of the wrong shape (a list; a record whose ``stats`` is a string or whose
    pools block is): ``shardsmith coverage`` names the file and the fix, no traceback; the
    next run rewrites those shards."""
    from engine.cli import main

    out = tmp_path / "out"
    recipe = load_recipe(recipe_path)
    run(recipe, out, progress=False)
    stats = sorted(out.glob("train/*.stats.json"))
    first = json.loads(stats[0].read_text())
    stats[0].write_text(json.dumps(first | {"stats": "abc"}))
    capsys.readouterr()
    assert main(["coverage", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{stats[0]}: stats file is damaged (stats is not an object)" in err
    assert "re-run the recipe into this folder" in err and "Traceback" not in err
    second = json.loads(stats[1].read_text())
    stats[1].write_text(json.dumps(second | {"stats": second["stats"] | {"pools": "speech"}}))
    stats[2].write_text(json.dumps([first]))
    assert main(["coverage", str(out)]) == 1
    assert "re-run the recipe into this folder" in capsys.readouterr().err
    messages: list[str] = []
    summary = run(recipe, out, progress=False, log=messages.append)
    assert (summary.shards_written, summary.status, summary.coverage_passed) == (3, "complete", True)
    assert any("stats is not an object" in m for m in messages)
    assert any("not a JSON object" in m or "missing or unreadable" in m for m in messages)
    assert digests(out) == digests(reference)
    assert main(["coverage", str(out)]) == 0


def test_an_output_folder_blocked_by_a_file_is_a_clear_error(ray_local, recipe_path, tmp_path):
    out = tmp_path / "out"
    run(load_recipe(recipe_path), out, progress=False)
    before = digests(out)
    # Another recipe shape: a split folder whose name is taken by a plain file.
    data = __import__("yaml").safe_load(recipe_path.read_text())
    data["splits"]["extra"] = {"samples": 10}
    r2 = write_recipe(tmp_path / "r2.yaml", data)
    (out / "extra").write_text("not a folder")
    with pytest.raises(ShardError, match="extra"):
        run(load_recipe(r2), out, overwrite=True, progress=False)
    assert (out / "extra").read_text() == "not a folder"
    del before


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({proc.stderr.strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_is_a_clear_error_and_finished_shards_stay_intact(ray_local, recipe_path, tiny_disk):
    out = tiny_disk / "out"
    with pytest.raises(ShardError) as info:
        run(load_recipe(recipe_path), out, workers=1, progress=False)
    assert "No space left" in str(info.value) or "disk" in str(info.value)
    assert "Traceback" not in str(info.value)
    # Whatever was committed is whole: every shard with a stats file reads back in full.
    for stats in out.glob("train/*.stats.json"):
        shard = stats.with_name(stats.name.replace(".stats.json", ".arrow"))
        table = read_shard(shard)
        assert table.num_rows == 20
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    manifest = read_run_record(out)
    assert manifest is None or manifest["status"] == "partial"


def test_a_shard_replaced_by_a_folder_is_a_clear_error_and_nothing_else_is_touched(
    ray_local, recipe_path, reference, tmp_path
):
    """Something made a folder where a finished shard was. The folder is not ours to
    delete: the run stops with a message naming the shard and the cause (not a guess
    about the disk), every other shard stays as it was, and once the folder is moved
    away a re-run repairs the output."""
    out = tmp_path / "out"
    run(load_recipe(recipe_path), out, progress=False)
    victim = shard_files(out)[1]
    victim.unlink()
    victim.mkdir()
    (victim / "theirs.txt").write_text("keep")
    before = {k: v for k, v in digests(out).items() if victim.name not in k}
    with pytest.raises(ShardError) as info:
        run(load_recipe(recipe_path), out, workers=1, progress=False)
    message = str(info.value)
    assert victim.name in message and "in the way" in message and "disk" not in message, message
    assert (victim / "theirs.txt").read_text() == "keep"
    assert {k: v for k, v in digests(out).items() if victim.name not in k} == before
    (victim / "theirs.txt").unlink()
    victim.rmdir()
    assert run(load_recipe(recipe_path), out, progress=False).status == "complete"
    assert digests(out) == digests(reference)


def test_a_parquet_shard_replaced_by_a_folder_is_not_read_as_an_empty_table(tmp_path):
    from engine.errors import ShardError
    from engine.shards import read_shard

    shard = tmp_path / "train-00000-of-00001.parquet"
    shard.mkdir()
    with pytest.raises(ShardError, match="not a file"):
        read_shard(shard)
