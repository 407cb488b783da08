"""`shardsmith run --address HOST:PORT` against a cluster with token authentication, from a
driver without the token set up (issue 16): one clear message within seconds, naming the
address the user gave and the variables to set, no raw Ray log, and nothing in --out.

A real head node with token authentication on 127.0.0.1 (engine.localcluster), ended by
its process group at the end of the module (never `ray stop`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.localcluster import LoopbackCluster

from .conftest import small_recipe, write_recipe

pytestmark = [pytest.mark.ray]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def head():
    c = LoopbackCluster()
    try:
        c.start_head()
        yield c
    finally:
        c.shutdown()


@pytest.fixture(scope="module")
def recipe_path(demo_corpus, tmp_path_factory) -> Path:
    return write_recipe(tmp_path_factory.mktemp("auth") / "r.yaml", small_recipe(demo_corpus))


def join(recipe: Path, out: Path, address: str, **env_vars: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RAY_AUTH") and k not in ("RAY_ADDRESS", "RAY_gcs_server_port_wait_time_s",
                                                          "RAY_py_gcs_connect_timeout_s")}
    env.update(env_vars)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", str(recipe), "--out", str(out), "--address", address,
         "--no-progress"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )
    return proc, time.monotonic() - t0


def _other_addresses(text: str, given: str) -> set[str]:
    return {a for a in re.findall(r"\d+\.\d+\.\d+\.\d+:\d+", text) if a != given}


def test_a_token_cluster_joined_without_ray_auth_mode_is_one_clear_message(head, recipe_path, tmp_path):
    out = tmp_path / "new" / "out"
    proc, took = join(recipe_path, out, head.address)
    err = proc.stderr
    assert proc.returncode == 2, err[-2000:]
    assert took < 30  # Ray's own retries took about 20 s before the first message
    assert err.startswith(f"shardsmith: error: cannot join the Ray cluster at {head.address!r}: it requires "
                          "token authentication"), err
    assert "RAY_AUTH_MODE=token" in err and "RAY_AUTH_TOKEN " in err and "RAY_AUTH_TOKEN_PATH" in err
    assert "InvalidAuthToken" not in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not _other_addresses(err, head.address)  # only the address the user gave
    assert not (tmp_path / "new").exists()


def test_a_wrong_token_is_named_as_refused(head, recipe_path, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc, _ = join(recipe_path, out, head.address, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 32)
    err = proc.stderr
    assert proc.returncode == 2, err[-2000:]
    assert f"cannot join the Ray cluster at {head.address!r}: it refused this driver's token (from RAY_AUTH_TOKEN)" \
        in err, err
    assert "InvalidAuthToken" not in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert list(out.iterdir()) == []
