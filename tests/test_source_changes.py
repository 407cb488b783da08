"""Sources that change under a run, and sources the pool index was wrong about.

Every frame of every source is validated once, when its pool is indexed, and the verdict
is cached by content fingerprint (engine.probe_cache). A file that changes after that
(truncated, replaced by other audio of the same length) is caught by its fingerprint: a
worker refuses to read it and a resume refuses to mix two datasets, each naming the file.
A file that passed the index and still fails when a worker decodes it is a fault of the
index: the run stops, the finished shards that used it are withdrawn, and the file is a
reject from then on. No row ever holds a rejected file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.errors import PoolIndexFault, ShardError, SourceChangedError
from engine.fingerprint import BLOCK_BYTES, EDGE_BYTES, _sample_offsets, fingerprint
from engine.pools import index_pools
from engine.probe_cache import ProbeCache
from engine.recipe import load_recipe, parse_recipe
from engine.run_record import read_run_record, shard_files
from engine.runtime import run

from .conftest import all_rows, small_recipe, write_recipe

SR = 16000


def _noise(seconds: float, seed: int, level: float = 0.05) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def _pool_of_two(folder: Path) -> tuple[Path, Path]:
    """A good noise file and a long float one (over 1 MiB: fingerprinted by samples)."""
    folder.mkdir()
    good, long = folder / "good.wav", folder / "long.wav"
    sf.write(good, _noise(8.0, 1), SR, subtype="PCM_16")
    sf.write(long, _noise(30.0, 2), SR, subtype="FLOAT")
    return good, long


def _recipe(tmp_path: Path, corpus: Path, noise: Path, samples: int = 40) -> Path:
    data = small_recipe(corpus, splits={"train": {"samples": samples}})
    data["pools"]["cabin"] = {"paths": [str(noise / "*.wav")]}
    return write_recipe(tmp_path / "r.yaml", data)


def _spoil_unhashed_bytes(path: Path) -> None:
    """Write NaN over every sample the fingerprint does not hash, keeping the size and
    the modification time: bit rot the fingerprint cannot see."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    hashed = np.zeros(len(data), bool)
    for offset, length in _sample_offsets(len(data)):
        hashed[offset : offset + length] = True
    nan = np.float32(np.nan).tobytes()
    for i in range(EDGE_BYTES, len(data) - EDGE_BYTES - 4, 4):
        if not hashed[i : i + 4].any():
            data[i : i + 4] = nan
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_fingerprint_sees_a_change_in_any_hashed_stretch_and_costs_a_few_reads(tmp_path):
    path = tmp_path / "big.bin"
    data = bytearray(np.random.default_rng(0).integers(0, 256, 5 * 2**20, dtype=np.uint8).tobytes())
    path.write_bytes(bytes(data))
    before = fingerprint(str(path))
    stretches = _sample_offsets(len(data))
    assert sum(n for _, n in stretches) == 2 * EDGE_BYTES + 8 * BLOCK_BYTES  # not the 5 MiB
    for offset, length in stretches:
        changed = bytearray(data)
        changed[offset + length // 2] ^= 0xFF
        path.write_bytes(bytes(changed))
        assert fingerprint(str(path)).digest != before.digest
    path.write_bytes(bytes(data))
    os.utime(path, ns=(1, 1))
    assert fingerprint(str(path)).content == before.content  # a copy with new times is the same content


def test_a_small_file_is_fingerprinted_whole(tmp_path):
    path = tmp_path / "small.bin"
    path.write_bytes(bytes(1000))
    before = fingerprint(str(path)).digest
    path.write_bytes(bytes(999) + b"\x01")
    assert fingerprint(str(path)).digest != before


def test_a_fifo_is_not_fingerprinted_and_does_not_block(tmp_path):
    os.mkfifo(tmp_path / "fifo.wav")
    with pytest.raises(OSError, match="not a regular file"):
        fingerprint(str(tmp_path / "fifo.wav"))


def test_degenerate_sources_are_rejects_by_the_role_the_synthesizer_gives_their_pool(demo_corpus, tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    sf.write(folder / "two_samples.wav", np.array([0.5, -0.5], np.float32), SR, subtype="PCM_16")
    sf.write(folder / "half_second.wav", _noise(0.5, 3), SR, subtype="PCM_16")
    sf.write(folder / "three_seconds.wav", _noise(3.0, 4), SR, subtype="PCM_16")
    data = small_recipe(demo_corpus, splits={"train": {"samples": 20}})
    data["pools"]["cabin"] = {"paths": [str(folder / "*.wav")]}
    data["pools"]["short_speech"] = {"paths": [str(folder / "*.wav")]}
    data["synth"]["speech"] = "short_speech"
    index = index_pools(parse_recipe(data, base_dir=tmp_path))
    reasons = {(r["pool"], Path(r["path"]).name): r["reason"] for r in index.rejects}
    # A looped noise layer needs 1 s; speech needs 0.25 s.
    assert "too short: 0.000 s is shorter than the 1 s the synthesizer needs from pool 'cabin'" in \
        reasons["cabin", "two_samples.wav"]
    assert "pools.cabin.min_duration_s" in reasons["cabin", "half_second.wav"]
    assert ("short_speech", "half_second.wav") not in reasons
    assert "0.25 s" in reasons["short_speech", "two_samples.wav"]
    assert index.pools["cabin"].items[-1].endswith("three_seconds.wav") and len(index.pools["cabin"]) == 1
    # The pool's own field wins, both ways.
    data["pools"]["cabin"]["min_duration_s"] = 0
    assert len(index_pools(parse_recipe(data, base_dir=tmp_path)).pools["cabin"]) == 3


def test_an_unchanged_recipe_keeps_its_hash_with_the_new_pool_fields():
    # The hash of the demo recipe before role minimums, level limits and image sizes existed.
    from engine.recipe import recipe_hash

    recipe = load_recipe("recipes/demo_in_car.yaml")
    assert recipe.pools["cabin"].min_duration_s is None
    blob_before = recipe_hash(recipe)
    changed = load_recipe("recipes/demo_in_car.yaml", overrides=["pools.cabin.max_peak_dbfs=6"])
    assert recipe_hash(changed) != blob_before


@pytest.mark.ray
def test_a_file_truncated_after_indexing_stops_the_worker_naming_it(ray_local, demo_corpus, tmp_path, monkeypatch):
    good, long = _pool_of_two(tmp_path / "noise")
    recipe = load_recipe(_recipe(tmp_path, demo_corpus, tmp_path / "noise"))
    from engine import runtime

    real_index = runtime.index_pools

    def index_then_truncate(*args, **kwargs):
        index = real_index(*args, **kwargs)
        with open(long, "r+b") as f:  # a sync cutting the file while the run starts
            f.truncate(long.stat().st_size // 2)
        return index

    monkeypatch.setattr(runtime, "index_pools", index_then_truncate)
    out = tmp_path / "out"
    with pytest.raises(SourceChangedError, match=r"long\.wav: changed after its pool was indexed \(size \d+ -> \d+"):
        run(recipe, out, progress=False)
    rows = all_rows(out)
    assert not any(s["item"].endswith("long.wav") for r in rows for s in r["sources"])


@pytest.mark.ray
def test_a_file_replaced_by_other_audio_of_the_same_length_is_refused_at_resume(ray_local, demo_corpus, tmp_path):
    good, long = _pool_of_two(tmp_path / "noise")
    recipe = _recipe(tmp_path, demo_corpus, tmp_path / "noise")
    out = tmp_path / "out"
    run(load_recipe(recipe), out, progress=False)
    shard_files(out)[0].unlink()  # an interrupted run: one shard still to write
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()}
    sf.write(long, _noise(30.0, 99), SR, subtype="FLOAT")  # same length, other audio
    with pytest.raises(ShardError, match=r"1 file\(s\) have other content now: cabin/.*long\.wav"):
        run(load_recipe(recipe), out, progress=False)
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()}
    assert {p: h for p, h in after.items() if p.name != "run.json"} == \
        {p: h for p, h in before.items() if p.name != "run.json"}


@pytest.mark.ray
def test_a_file_that_fails_in_a_worker_after_passing_the_index_withdraws_every_row_made_from_it(
    ray_local, demo_corpus, tmp_path
):
    good, long = _pool_of_two(tmp_path / "noise")
    recipe = _recipe(tmp_path, demo_corpus, tmp_path / "noise", samples=60)
    out = tmp_path / "out"
    run(load_recipe(recipe), out, progress=False)
    assert any(s["item"].endswith("long.wav") for r in all_rows(out) for s in r["sources"])
    shard_files(out)[0].unlink()
    _spoil_unhashed_bytes(long)  # the cached verdict (same fingerprint) is now wrong
    with pytest.raises(PoolIndexFault, match=r"long\.wav: contains NaN/Inf samples .* the run stopped and keeps no row"):
        run(load_recipe(recipe), out, progress=False)
    assert not any(s["item"].endswith("long.wav") for r in all_rows(out) for s in r["sources"])
    record = read_run_record(out)
    assert record["status"] == "partial"
    # From now on the file is a reject, so the pools differ from the output's.
    with pytest.raises(ShardError, match=r"pools changed.*'cabin': 0 item\(s\) added, 1 removed"):
        run(load_recipe(recipe), out, progress=False)
    fresh = run(load_recipe(recipe), tmp_path / "out2", progress=False)
    assert fresh.status == "complete"
    rejects = (tmp_path / "out2" / "rejects.jsonl").read_text()
    assert "long.wav" in rejects and "found when a worker decoded it" in rejects


def test_the_probe_cache_can_be_turned_off_and_survives_an_unwritable_folder(tmp_path, monkeypatch):
    from engine.probe_cache import cache_dir

    monkeypatch.setenv("SHARDSMITH_CACHE_DIR", "off")
    assert cache_dir() is None and not ProbeCache.default().enabled
    blocked = tmp_path / "file"
    blocked.write_text("x")
    cache = ProbeCache(blocked / "sub" / "probes.sqlite3")  # a file where a folder must go
    assert not cache.enabled and cache.get_many(["k"]) == {}
    cache.put_many({"k": ("ok", {})})  # nothing, and no error


def _count_reads(monkeypatch) -> list[str]:
    import engine.pools as pools

    reads: list[str] = []
    real = pools._fingerprint_or_none
    monkeypatch.setattr(pools, "_fingerprint_or_none", lambda src: (reads.append(src), real(src))[1])
    return reads


def test_a_second_index_of_unchanged_files_reads_none_of_them_again(tmp_path, demo_corpus, monkeypatch):
    import engine.fingerprint as fp_module

    good, long = _pool_of_two(tmp_path / "noise")
    recipe = load_recipe(_recipe(tmp_path, demo_corpus, tmp_path / "noise"))
    monkeypatch.setattr(fp_module, "SETTLED_NS", 0)  # the files were written a moment ago
    first = index_pools(recipe)
    reads = _count_reads(monkeypatch)
    second = index_pools(recipe)
    assert reads == []  # a stat of each file, and the digests kept by the first index
    assert second.sources == first.sources
    assert second.sources[str(long)] == fingerprint(str(long))
    # Rewritten in place with its size and modification time kept: the change time moved.
    _spoil_unhashed_bytes(long)
    third = index_pools(recipe)
    assert reads == [str(long)]
    assert third.sources[str(long)] == fingerprint(str(long))


def test_a_file_that_just_changed_keeps_no_digest_and_the_cache_off_keeps_none(tmp_path, demo_corpus, monkeypatch):
    good, long = _pool_of_two(tmp_path / "noise")  # written just now: within its timestamps' granularity
    recipe = load_recipe(_recipe(tmp_path, demo_corpus, tmp_path / "noise"))
    index_pools(recipe)
    reads = _count_reads(monkeypatch)
    index_pools(recipe)
    assert str(good) in reads and str(long) in reads  # read again: not settled when first read
    import engine.fingerprint as fp_module

    monkeypatch.setattr(fp_module, "SETTLED_NS", 0)
    monkeypatch.setenv("SHARDSMITH_CACHE_DIR", "off")
    index_pools(recipe)
    reads.clear()
    index_pools(recipe)
    assert str(good) in reads and str(long) in reads  # no cache: every file read each time
