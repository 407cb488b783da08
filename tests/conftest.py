"""Shared fixtures: the demo corpus (once per session), one Ray instance per module."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# A test Ray instance listens on loopback only (see README, "Ray and security").
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


@pytest.fixture(autouse=True)
def probe_cache_per_test(tmp_path_factory, monkeypatch):
    """Each test its own probe cache (engine.probe_cache): no verdict, nor a fault one test
    records, reaches another; nothing is written to the user's ~/.cache."""
    monkeypatch.setenv("SHARDSMITH_CACHE_DIR", str(tmp_path_factory.mktemp("probe_cache")))


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory) -> Path:
    from engine.demo import generate_demo_corpus

    root = tmp_path_factory.mktemp("demo_corpus")
    generate_demo_corpus(root)
    return root


@pytest.fixture(scope="module")
def ray_local():
    """One real local Ray instance for a whole test module, shut down at its end."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        logging_level="ERROR",
    )
    yield ray
    ray.shutdown()


def small_recipe(corpus: Path, **overrides) -> dict:
    """A small in-car recipe over the demo corpus (absolute paths), as data."""
    data = {
        "name": "t_in_car",
        "seed": 7,
        "output": {"format": "arrow", "samples_per_shard": 20, "audio_codec": "flac"},
        "pools": {
            "speech": {"manifest": str(corpus / "speech" / "manifest.csv")},
            "cabin": {
                "paths": [str(corpus / "noise" / "car" / "*.wav"), str(corpus / "noise" / "road" / "*.wav")],
                "holdout": 0.25,
            },
        },
        "splits": {
            "train": {"samples": 60},
            "train_dev": {"samples": 20},
            "train_dev_unseen": {"samples": 20, "holdout": True},
        },
        "synth": {
            "type": "speech_noise_mix",
            "speech": "speech",
            "noise": [{"pool": "cabin", "snr_db_range": [0, 20]}],
        },
    }
    for key, value in overrides.items():
        data[key] = value
    return data


def digests(out: Path, suffixes: tuple[str, ...] = (".arrow",)) -> dict[str, str]:
    """sha256 of every shard (files ending in ``suffixes``) and stats file below ``out``."""
    import hashlib

    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file() and (p.suffix in suffixes or p.name.endswith(".stats.json"))
    }


def all_rows(out: Path, split: str | None = None) -> list[dict]:
    """Every row of the shards below ``out`` (of one split if given), in shard order."""
    from engine.run_record import shard_files
    from engine.shards import read_shard

    rows = []
    for f in shard_files(out, split):
        rows += read_shard(f).to_pylist()
    return rows


def write_recipe(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@contextlib.contextmanager
def moto_server(extra_env: dict | None = None):
    """A real S3-compatible server (moto) on 127.0.0.1 for the block; yields its endpoint
    and is ended by its process id. ``extra_env`` configures it (e.g. credential checks)."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = str(Path(sys.executable).with_name("moto_server"))
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], env={**os.environ, **(extra_env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except urllib.error.HTTPError:
            break  # it answers (403 when it checks credentials)
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("moto_server did not start")
            time.sleep(0.1)
    try:
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def aws_env(endpoint: str):
    """The standard AWS variables pointing at a local S3-compatible ``endpoint`` for the
    block (put back as they were afterwards)."""
    mp = pytest.MonkeyPatch()
    for k, v in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        mp.setenv(k, v)
    try:
        yield endpoint
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def s3_server():
    """moto on 127.0.0.1 with the standard AWS variables pointing at it for this module."""
    with moto_server() as endpoint, aws_env(endpoint):
        yield endpoint


def make_bucket(name: str) -> None:
    import boto3

    boto3.client("s3").create_bucket(Bucket=name)


@contextlib.contextmanager
def tree_on_s3(root: Path, bucket: str, prefix: str):
    """Every file below ``root`` uploaded to ``s3://bucket/prefix/`` on a moto server on
    127.0.0.1, with the standard AWS variables pointing at it for the block; yields
    ``s3://bucket/prefix``."""
    import boto3

    with moto_server() as endpoint, aws_env(endpoint):
        make_bucket(bucket)
        s3 = boto3.client("s3")
        for f in sorted(p for p in root.rglob("*") if p.is_file()):
            s3.upload_file(str(f), bucket, f"{prefix}/{f.relative_to(root).as_posix()}")
        yield f"s3://{bucket}/{prefix}"
