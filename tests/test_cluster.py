"""Real multi-node Ray on loopback: a head and worker nodes started as separate processes on
127.0.0.1, 127.0.0.2 and 127.0.0.3 (no traffic leaves 127.0.0.0/8). A recipe run across
them gives the same bytes as on one node; losing a node mid-run loses nothing."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from engine.localcluster import LoopbackCluster
from engine.run_record import read_run_record, shard_files
from engine.shards import read_shard

from .conftest import digests, small_recipe, write_recipe

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]


def test_cluster_yaml_passes_rays_own_config_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    validate_config(prepare_config(config))
    # The secure defaults the README promises: token auth on every node, token shipped.
    assert all("RAY_AUTH_MODE=token" in c for c in config["head_start_ray_commands"][1:])
    assert all("RAY_AUTH_MODE=token" in c for c in config["worker_start_ray_commands"][1:])
    assert "~/.ray/auth_token" in config["file_mounts"]
    assert any("pip install -e ~/shardsmith" in c for c in config["setup_commands"])


def test_a_broken_cluster_yaml_fails_rays_schema():
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    config["head_node_typo"] = "head"
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(config))


@pytest.fixture(scope="module")
def cluster():
    c = LoopbackCluster()
    try:
        c.start_head()
        c.add_node("127.0.0.2")
        c.add_node("127.0.0.3")
        yield c
    finally:
        c.shutdown()


def run_driver(recipe: Path, out: Path, address: str) -> subprocess.Popen:
    """`shardsmith run --address` as a user runs it: a separate driver process. Ray never sends
    the token to an explicit address on its own, so the driver sets RAY_AUTH_MODE=token."""
    env = dict(os.environ, RAY_AUTH_MODE="token")
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "run", str(recipe), "--out", str(out),
         "--address", address, "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )


@pytest.fixture(scope="module")
def recipe_path(demo_corpus, tmp_path_factory) -> Path:
    data = small_recipe(demo_corpus, splits={"train": {"samples": 160}, "train_dev": {"samples": 40}})
    data["output"]["samples_per_shard"] = 10
    return write_recipe(tmp_path_factory.mktemp("cluster") / "r.yaml", data)


@pytest.fixture(scope="module")
def one_node_reference(recipe_path, tmp_path_factory) -> Path:
    """The same recipe on a private single-node Ray instance (its own process)."""
    out = tmp_path_factory.mktemp("single") / "out"
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", str(recipe_path), "--out", str(out), "--no-progress"],
        capture_output=True, text=True, env=env, timeout=600, start_new_session=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_a_recipe_across_three_nodes_gives_the_same_bytes_as_one_node(
    cluster, recipe_path, one_node_reference, tmp_path
):
    out = tmp_path / "multi"
    proc = run_driver(recipe_path, out, cluster.address)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    assert "complete: 200 samples" in stdout
    nodes = int(stdout.split("ran on ")[1].split(" Ray node")[0])
    assert nodes >= 2  # the work really spread over several nodes
    assert digests(out) == digests(one_node_reference)


def test_losing_a_worker_node_mid_run_loses_and_duplicates_nothing(
    cluster, recipe_path, one_node_reference, tmp_path
):
    cluster.add_node("127.0.0.4")
    out = tmp_path / "lossy"
    killed = threading.Event()

    def killer():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(out.glob("*/*.stats.json"))) < 3:
            time.sleep(0.02)
        cluster.kill_node("127.0.0.4")
        killed.set()

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    proc = run_driver(recipe_path, out, cluster.address)
    stdout, stderr = proc.communicate(timeout=600)
    t.join(timeout=10)
    assert killed.is_set()
    assert proc.returncode == 0, stderr[-3000:]
    assert "complete: 200 samples" in stdout
    rows = [r for f in shard_files(out) for r in read_shard(f).select(["sample_id"]).to_pylist()]
    ids = [r["sample_id"] for r in rows]
    assert len(ids) == 200 and len(set(ids)) == 200
    manifest = read_run_record(out)
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            assert hashlib.sha256((out / shard["file"]).read_bytes()).hexdigest() == shard["sha256"]
    assert digests(out) == digests(one_node_reference)
