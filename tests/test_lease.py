"""One writer per output: a run's lease on OUT (engine.lease), on a file system and on an
S3-compatible store (moto's server on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import lease as lease_mod
from engine.layout import LEASE_FILE
from engine.lease import Lease, LeaseHeld
from engine.storage import Store

from .conftest import all_rows, make_bucket, moto_server, aws_env, small_recipe, write_recipe

REPO = Path(__file__).resolve().parent.parent


def _ended_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _plant(store: Store, **fields) -> None:
    holder = {"run_id": "f" * 32, "host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
              "heartbeat": time.time(), "engine_version": "x", **fields}
    store.write_bytes(LEASE_FILE, json.dumps(holder).encode())


def _lease_cycle(store: Store) -> None:
    first = Lease.acquire(store, heartbeat=False)
    with store.open_input(LEASE_FILE) as f:
        held = json.loads(f.read())
    assert held["pid"] == os.getpid() and held["host"] == socket.gethostname() and held["run_id"] == first.holder.run_id
    with pytest.raises(LeaseHeld, match=r"is being written by another run \(run [0-9a-f]{8} on host .*, pid \d+, "
                                        r"started .* UTC, last heartbeat \d+ s ago\)"):
        Lease.acquire(store, heartbeat=False)
    first.release()
    assert not store.exists(LEASE_FILE)
    Lease.acquire(store, heartbeat=False).release()


def test_a_second_writer_is_refused_naming_the_holder_and_the_lease_goes_with_its_run(tmp_path):
    _lease_cycle(Store.open(tmp_path))


def test_a_lease_of_an_ended_process_on_this_host_is_taken_over_at_once(tmp_path):
    store = Store.open(tmp_path)
    _plant(store, pid=_ended_pid())
    lease = Lease.acquire(store, heartbeat=False)
    assert "has ended" in lease.took_over
    lease.release()


def test_a_lease_on_another_host_is_held_until_its_heartbeat_is_stale(tmp_path):
    store = Store.open(tmp_path)
    _plant(store, host="elsewhere", pid=1, heartbeat=time.time() - 30)
    with pytest.raises(LeaseHeld, match="host elsewhere, pid 1"):
        Lease.acquire(store, heartbeat=False)
    _plant(store, host="elsewhere", pid=1, heartbeat=time.time() - lease_mod.STALE_AFTER_S - 5)
    lease = Lease.acquire(store, heartbeat=False)
    assert "heartbeat is" in lease.took_over and "s old" in lease.took_over
    lease.release()


def test_a_half_written_lease_is_taken_over_only_once_it_is_old(tmp_path):
    store = Store.open(tmp_path)
    (tmp_path / LEASE_FILE).write_bytes(b'{"run_id": ')
    old = time.time() - lease_mod.STALE_AFTER_S - 5
    os.utime(tmp_path / LEASE_FILE, (old, old))
    lease = Lease.acquire(store, heartbeat=False)
    assert "unreadable lease" in lease.took_over
    lease.release()


def test_a_run_whose_lease_was_taken_over_learns_it_at_its_next_beat(tmp_path):
    store = Store.open(tmp_path)
    lease = Lease.acquire(store, heartbeat=False)
    lease.renew()
    lease.check()  # still ours
    _plant(store, run_id="a" * 32, host="elsewhere")
    lease.renew()
    with pytest.raises(LeaseHeld, match="lost its lease on the output: another run took the lease over"):
        lease.check()
    lease.release()
    assert store.exists(LEASE_FILE)  # the other run's lease is left alone


def test_the_lease_on_an_object_store_is_a_conditional_put():
    with moto_server() as endpoint, aws_env(endpoint):
        make_bucket("leased")
        _lease_cycle(Store.open("s3://leased/out"))


@pytest.mark.ray
def test_two_runs_into_one_output_one_is_refused_the_other_completes(demo_corpus, tmp_path):
    data = small_recipe(demo_corpus, splits={"train": {"samples": 60}, "train_dev": {"samples": 20}})
    recipe = write_recipe(tmp_path / "r.yaml", data)
    out = tmp_path / "out"
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "engine.cli", "run", str(recipe), "--out", str(out), "--workers", "1", "--no-progress"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (out / LEASE_FILE).exists() and first.poll() is None:
            time.sleep(0.05)
        assert (out / LEASE_FILE).exists(), "the first run never took its lease"
        second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, start_new_session=True)
        first_err = first.communicate(timeout=300)[1]
    finally:
        for proc in (first,):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if second.returncode == 0:  # the first finished before the second looked: then it resumed nothing
        assert "every shard was already done" in second.stderr
    else:
        assert second.returncode == 1 and "Traceback" not in second.stderr
        assert "is being written by another run" in second.stderr and f"pid {first.pid}" in second.stderr
    assert first.returncode == 0, first_err
    ids = [r["sample_id"] for r in all_rows(out)]
    assert len(ids) == 80 and len(set(ids)) == 80
    assert not (out / LEASE_FILE).exists()
