"""`shardsmith run --address` with a cluster that is not there: a clear error (exit code 2)
within a bounded time, naming the address and what to check, and nothing written to --out.
Each run is a subprocess with a timeout, so a hang fails the test instead of the suite.
Only 127.0.0.0/8 is used."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.errors import ClusterError
from engine.runtime import _host_port, probe_address

from .conftest import small_recipe, write_recipe

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def recipe_path(demo_corpus, tmp_path_factory) -> Path:
    return write_recipe(tmp_path_factory.mktemp("address") / "r.yaml", small_recipe(demo_corpus))


def run_driver(recipe: Path, out: Path, address: str, timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    for key in ("RAY_ADDRESS", "RAY_gcs_server_port_wait_time_s", "RAY_py_gcs_connect_timeout_s"):
        env.pop(key, None)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "run", str(recipe), "--out", str(out), "--address", address,
         "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO, start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the driver and anything it started
        proc.communicate()
        pytest.fail(f"`shardsmith run --address {address}` still running after {timeout} s")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), time.monotonic() - t0


def _closed_port(host: str) -> int:
    """A port on ``host`` that nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("address", ["127.0.0.1:1", "127.0.0.5:{port}"])
def test_an_address_with_nothing_listening_is_exit_2_within_seconds_and_out_is_not_created(
        recipe_path, tmp_path, address):
    address = address.format(port=_closed_port("127.0.0.5")) if "{port}" in address else address
    out = tmp_path / "new" / "out"
    proc, took = run_driver(recipe_path, out, address, timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert took < 20
    err = proc.stderr
    assert f"shardsmith: error: cannot reach the Ray cluster at {address!r}" in err
    assert "ray status" in err and "RAY_AUTH_MODE=token" in err and "Nothing was written to --out" in err
    assert "Traceback" not in err
    assert not (tmp_path / "new").exists()


def test_an_address_that_accepts_but_is_not_ray_is_exit_2_within_30_s_and_out_is_untouched(recipe_path, tmp_path):
    """The port answers TCP but never speaks Ray (a wrong port, a firewall that accepts):
    Ray's own connection, bounded (``runtime.JOIN_ENV``)."""
    server = socket.socket()
    server.bind(("127.0.0.2", 0))  # not 127.0.0.1: Ray would swap that for this machine's address
    server.listen(16)
    accepted: list[socket.socket] = []

    def accept():
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    out = tmp_path / "out"
    out.mkdir()
    address = f"127.0.0.2:{server.getsockname()[1]}"
    try:
        proc, took = run_driver(recipe_path, out, address, timeout=90)
    finally:
        server.close()
        for c in accepted:
            c.close()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert took < 40
    assert f"shardsmith: error: cannot join the Ray cluster at {address!r}" in proc.stderr
    assert "RAY_AUTH_MODE=token" in proc.stderr and "Traceback" not in proc.stderr
    assert list(out.iterdir()) == []


def test_probe_address_parses_the_forms_ray_takes():
    assert _host_port("127.0.0.1:6379") == ("127.0.0.1", 6379)
    assert _host_port("ray://10.0.0.1:10001") == ("10.0.0.1", 10001)
    assert _host_port("[::1]:6379") == ("::1", 6379)
    assert _host_port("auto") is None and _host_port("local") is None and _host_port("host:") is None
    probe_address("auto")  # left to Ray
    with pytest.raises(ClusterError) as err:
        probe_address("127.0.0.1:1", timeout=2)
    assert err.value.exit_code == 2 and "'127.0.0.1:1'" in str(err.value)
