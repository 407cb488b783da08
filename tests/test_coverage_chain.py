"""Coverage through a chain: a stage-2 run over a stage-1 output reports the reuse of
stage 1's own sources (one level), from its merged stats and stage 1's ``sources``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.cli import main
from engine.coverage import analyze_coverage, describe_coverage
from engine.recipe import parse_recipe
from engine.run_record import shard_files
from engine.shards import read_shard

# The keys of a report without upstream pools (unchanged by this section).
PLAIN_KEYS = ["format", "recipe_name", "recipe_hash", "complete", "shards", "samples", "seconds",
              "pools_used_by_synth", "pools", "params", "embedding", "splits", "holdout", "guards", "passed"]


@pytest.fixture(scope="module")
def clip3(tmp_path_factory) -> Path:
    """One 3-second noise clip: stage 1's whole noise pool."""
    folder = tmp_path_factory.mktemp("clip")
    x = 0.05 * np.random.default_rng(0).standard_normal(3 * 16000)
    sf.write(folder / "clip3.wav", x.astype(np.float32), 16000)
    return folder / "clip3.wav"


def stage1_recipe(corpus: Path, clip: Path) -> dict:
    return {
        "name": "stage1",
        "seed": 3,
        "output": {"samples_per_shard": 4},
        "pools": {"speech": {"manifest": str(corpus / "speech" / "manifest.csv")},
                  "noise": {"paths": [str(clip)]}},
        "splits": {"train": {"samples": 6}},
        "synth": {"type": "speech_noise_mix", "speech": "speech",
                  "noise": [{"pool": "noise", "snr_db_range": [0, 20]}]},
    }


def stage2_recipe(corpus: Path) -> dict:
    return {
        "name": "stage2",
        "seed": 5,
        "output": {"samples_per_shard": 5},
        "pools": {"prev": {"format": "table", "paths": ["stage1/"]},
                  "cabin": {"paths": [str(corpus / "noise" / "*" / "*.wav")]}},
        "splits": {"train": {"samples": 10}},
        "synth": {"type": "speech_noise_mix", "speech": "prev",
                  "noise": [{"pool": "cabin", "snr_db_range": [0, 20]}]},
    }


def buckets(start: float, dur: float, item_s: float) -> set[int]:
    """The one-second buckets of a looped item a piece covers, by brute force (1 ms steps)."""
    return {int(((start + t) % item_s) // 1.0) for t in np.arange(0.0, dur, 0.001)}


@pytest.mark.ray
def test_stage_two_reports_the_reuse_of_stage_one_sources_through_the_chain(ray_local, demo_corpus, clip3, tmp_path,
                                                                           capsys):
    from engine.runtime import run

    stage1 = parse_recipe(stage1_recipe(demo_corpus, clip3), base_dir=tmp_path)
    run(stage1, tmp_path / "stage1", workers=1, progress=False, allow_narrow=True)
    stage2 = parse_recipe(stage2_recipe(demo_corpus), base_dir=tmp_path)
    out = tmp_path / "stage2"
    run(stage2, out, workers=1, progress=False, allow_narrow=True)

    # By hand, from the rows: stage 2's rows name their parents; the parents name their sources.
    parents = {r["sample_id"]: r["sources"] for f in shard_files(tmp_path / "stage1") for r in read_shard(f).to_pylist()}
    rows = [r for f in shard_files(out) for r in read_shard(f).select(["upstream_sample_id"]).to_pylist()]
    assert len(rows) == 10 and len(parents) == 6
    pieces = [s for r in rows for s in parents[r["upstream_sample_id"]]]
    noise = [s for s in pieces if s["pool"] == "noise"]
    speech = [s for s in pieces if s["pool"] == "speech"]
    assert len(noise) == 10  # every stage-2 sample reuses the one clip, through its parent
    noise_s = math.fsum(s["duration_s"] for s in noise)
    unique = set().union(*(buckets(s["start_s"], s["duration_s"], 3.0) for s in noise))
    speech_uses: dict[str, float] = {}
    for s in speech:
        speech_uses[s["item"]] = speech_uses.get(s["item"], 0.0) + s["duration_s"]
    shares = np.array(list(speech_uses.values())) / sum(speech_uses.values())

    report = analyze_coverage(out)
    assert list(report) == PLAIN_KEYS[:-2] + ["upstream"] + PLAIN_KEYS[-2:]
    up = report["upstream"]
    assert list(up) == ["prev"]
    assert up["prev"]["depth"] == 1 and up["prev"]["uses"] == 10 and up["prev"]["unmatched_uses"] == 0
    (o,) = up["prev"]["outputs"]
    assert o["path"] == "stage1/" and o["recipe_name"] == "stage1"
    assert o["rows_available"] == 6 and o["uses"] == 10
    assert o["rows_used"] == len({r["upstream_sample_id"] for r in rows})
    n = o["pools"]["noise"]
    assert n["uses"] == 10 and n["items_used"] == 1 and n["items_available"] == 1
    assert n["max_share"] == 1.0 and n["effective_sources"] == pytest.approx(1.0)
    assert n["seconds_used"] == pytest.approx(noise_s, rel=1e-3)
    assert n["unique_seconds_used"] == pytest.approx(len(unique)) and len(unique) == 3
    assert n["reuse_factor"] == pytest.approx(noise_s / 3.0, rel=1e-3)
    s = o["pools"]["speech"]
    assert s["uses"] == 10 and s["items_used"] == len(speech_uses)
    assert s["seconds_used"] == pytest.approx(sum(speech_uses.values()), rel=1e-3)
    assert s["max_share"] == pytest.approx(shares.max(), rel=1e-3)
    assert s["effective_sources"] == pytest.approx(math.exp(-(shares * np.log(shares)).sum()), rel=1e-3)
    # stage 2's own pools are unchanged: its speech pool is stage 1's rows
    assert report["pools"]["prev"]["items_available"] == 6 and report["pools"]["prev"]["uses"] == 10

    # The run's coverage.json, the JSON and the text of `shardsmith coverage` carry it too.
    assert json.loads((out / "coverage.json").read_text())["upstream"] == up
    capsys.readouterr()
    main(["coverage", str(out), "--json", "--html", str(tmp_path / "r.html")])
    lines = capsys.readouterr().out.splitlines()  # Ray may log to stdout around the JSON
    printed = json.loads("\n".join(lines[lines.index("{") : len(lines) - lines[::-1].index("}")]))
    assert printed["upstream"] == up
    assert "Upstream of pool prev" in (tmp_path / "r.html").read_text()
    text = describe_coverage(report)
    assert "upstream of pool 'prev': stage1/" in text and "1 level (its upstream is not followed)" in text

    # Stage 1 has no upstream pool: no upstream section, its keys unchanged.
    plain = analyze_coverage(tmp_path / "stage1")
    assert list(plain) == PLAIN_KEYS
    assert "upstream" not in describe_coverage(plain)


def test_hand_computed_figures_through_a_chain_on_a_tiny_stage_one(tmp_path):
    """A hand-made stage-1 output of 3 rows; stage 2 used row 0 three times, row 1 once,
    row 2 never, and a row stage 1 no longer has twice."""
    import types

    import pyarrow as pa
    import pyarrow.parquet as pq

    from engine.coverage import CoverageStats, build_catalog, upstream_figures

    s1 = tmp_path / "stage1"
    (s1 / "train").mkdir(parents=True)
    shard = "train/train-00000-of-00001.parquet"
    (s1 / "run.json").write_text(json.dumps({"recipe_hash": "h1", "recipe": {"name": "s1"},
                                             "splits": {"train": {"shards": [{"file": shard}]}}}))
    pq.write_table(pa.table({"pool": ["noise", "noise", "speech", "speech"], "item": ["n", "m", "a", "b"],
                             "duration_s": [3.0, 5.0, 4.0, 2.0], "holdout": [False] * 4}), s1 / "pool_index.parquet")

    def src(pool, item, start, dur):
        return {"pool": pool, "item": item, "start_s": start, "duration_s": dur, "gain_db": 0.0}

    pq.write_table(pa.table({"sample_id": ["r0", "r1", "r2"], "sources": [
        [src("speech", "a", 0.0, 2.0), src("noise", "n", 0.0, 2.0)],
        [src("speech", "b", 0.0, 1.5), src("noise", "n", 2.5, 1.5)],  # wraps: buckets 2 and 0
        [src("speech", "a", 0.0, 2.0), src("noise", "n", 1.0, 1.0)],
    ]}), s1 / shard)

    items = [f"stage1/{shard}#row={i}" for i in range(3)] + [f"stage1/{shard}#row=7"]
    catalog = build_catalog([("prev", items, np.full(4, 2.0), np.zeros(4, bool))], {"prev": 4})
    cs = CoverageStats(catalog, {"train": False})
    cs.add_shard({"rows": 6, "pools": {"prev": {"items": [items[0], items[1], items[3]], "uses": [3, 1, 2],
                                                "us": [6_000_000, 2_000_000, 4_000_000]}}}, "train")
    pool = types.SimpleNamespace(format="table", paths=["stage1/"], key_column=None)
    recipe = types.SimpleNamespace(pools={"prev": pool, "other": types.SimpleNamespace(format="files", paths=["x"])},
                                   base_dir=tmp_path)
    up = upstream_figures(recipe, cs)
    assert list(up) == ["prev"]
    assert up["prev"]["uses"] == 6 and up["prev"]["unmatched_uses"] == 2 and up["prev"]["depth"] == 1
    (o,) = up["prev"]["outputs"]
    assert (o["recipe_name"], o["recipe_hash"], o["rows_available"], o["rows_used"], o["uses"]) == ("s1", "h1", 3, 2, 4)
    n, s = o["pools"]["noise"], o["pools"]["speech"]
    # noise: n used 3 x 2 s + 1 x 1.5 s; buckets {0, 1} and {2, 0}: 3 unique seconds of n's 3; m never
    assert (n["uses"], n["items_used"], n["items_available"]) == (4, 1, 2)
    assert n["seconds_used"] == pytest.approx(7.5) and n["unique_seconds_used"] == pytest.approx(3.0)
    assert n["reuse_factor"] == pytest.approx(2.5) and n["fraction_used"] == pytest.approx(3 / 8)
    assert n["max_share"] == 1.0 and n["effective_sources"] == pytest.approx(1.0)
    # speech: a 3 x 2 s = 6 s, b 1.5 s: shares 0.8 / 0.2; unique: a [0, 2) = 2 s, b's buckets 0 and 1 = 2 s
    assert (s["uses"], s["items_used"]) == (4, 2)
    assert s["seconds_used"] == pytest.approx(7.5) and s["max_share"] == pytest.approx(0.8)
    assert s["effective_sources"] == pytest.approx(math.exp(-(0.8 * math.log(0.8) + 0.2 * math.log(0.2))), rel=1e-5)
    assert s["effective_sources_simpson"] == pytest.approx(1 / (0.8**2 + 0.2**2), rel=1e-5)
    assert s["unique_seconds_used"] == pytest.approx(4.0) and s["reuse_factor"] == pytest.approx(7.5 / 4)
