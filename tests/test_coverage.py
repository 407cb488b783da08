"""Coverage analyzer and guards: hand-computed figures, merge-order invariance, bottom-k,
held-out items, the plan-time forecast, and the narrow case end to end on Ray."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.cli import main
from engine.coverage import (
    CoverageStats,
    build_catalog,
    forecast_coverage,
    report_json,
)
from engine.coverage import catalog as coverage_catalog
from engine.run_record import read_run_record
from engine.run_record import shard_files
from engine.pools import index_pools
from engine.recipe import load_recipe, parse_recipe
from engine.shards import read_shard
from engine.stats import SAMPLE_K, ShardStats, StatsContext, keep_threshold, sample_key

from .conftest import write_recipe

# ----------------------------------------------------------------------------- helpers


def make_recipe(pools=("speech", "car"), guards=None, splits=None):
    data = {
        "name": "t",
        "seed": 1,
        "pools": {p: {"paths": [f"{p}/*.wav"], "holdout": 0.2 if i else 0.0} for i, p in enumerate(pools)},
        "splits": splits or {"train": {"samples": 100}},
        "synth": {"type": "speech_noise_mix", "speech": pools[0],
                  "noise": [{"pool": p, "snr_db_range": [0, 20]} for p in pools[1:]]},
    }
    if guards is not None:
        data["guards"] = guards
    return parse_recipe(data)


def make_catalog(spec: dict[str, list[tuple[str, float, bool]]]):
    rows = [(pool, [i for i, _, _ in items], np.array([d for _, d, _ in items]), np.array([h for _, _, h in items]))
            for pool, items in spec.items()]
    return build_catalog(rows, {pool: len(items) for pool, items in spec.items()})


def record(split: str, pools: dict[str, dict], **extra) -> dict:
    return {"split": split, "rows": extra.pop("rows", 1), "seconds": extra.pop("seconds", 1.0), "pools": pools, **extra}


def block(items, uses, seconds, buckets=None, heldout_uses=0):
    out = {"items": items, "uses": uses, "us": [int(round(s * 1e6)) for s in seconds], "heldout_uses": heldout_uses}
    if buckets is not None:
        out["buckets"] = buckets
    return out


# ----------------------------------------------------------------------------- hand-computed figures


def test_effective_sources_share_and_reuse_match_hand_computed_values():
    cat = make_catalog({"car": [(n, 10.0, False) for n in "abcd"], "speech": [("u", 1.0, False)]})
    cs = CoverageStats(cat, {"train": False})
    # seconds used: a 2 s (bucket 0, twice), b 1 s (bucket 3), c 1 s (bucket 5); d unused
    cs.add_shard(record("train", {"car": block(["a", "b"], [1, 1], [1.0, 1.0], [[0, 1], [3, 4]])}))
    cs.add_shard(record("train", {"car": block(["a", "c"], [1, 1], [1.0, 1.0], [[0, 1], [5, 6]])}))
    car = cs.report(make_recipe())["pools"]["car"]
    # shares 0.5, 0.25, 0.25
    assert car["items_available"] == 4 and car["items_used"] == 3
    assert car["effective_sources"] == pytest.approx(2**1.5, rel=1e-5)  # exp(1.5 ln 2)
    assert car["effective_sources_simpson"] == pytest.approx(1 / 0.375, rel=1e-5)
    assert car["max_share"] == pytest.approx(0.5)
    assert car["seconds_available"] == 40.0
    assert car["seconds_used"] == 4.0
    assert car["unique_seconds_used"] == 3.0
    assert car["reuse_factor"] == pytest.approx(4 / 3, rel=1e-5)
    assert car["fraction_used"] == pytest.approx(3 / 40)


def test_uniform_usage_of_n_items_gives_n_effective_sources():
    cat = make_catalog({"car": [(f"i{k}", 5.0, False) for k in range(7)]})
    cs = CoverageStats(cat, {"train": False})
    cs.add_shard(record("train", {"car": block([f"i{k}" for k in range(7)], [2] * 7, [8.0] * 7, [[0, 4]] * 7)}))
    car = cs.report(make_recipe(pools=("car", "car")))["pools"]["car"]
    assert car["effective_sources"] == pytest.approx(7.0)
    assert car["effective_sources_simpson"] == pytest.approx(7.0)
    assert car["max_share"] == pytest.approx(1 / 7, rel=1e-5)
    assert car["reuse_factor"] == pytest.approx(2.0)  # 8 s used over 4 unique seconds each


def test_a_short_last_bucket_counts_only_its_length():
    cat = make_catalog({"car": [("a", 2.5, False)]})
    cs = CoverageStats(cat, {"train": False})
    cs.add_shard(record("train", {"car": block(["a"], [4], [10.0], [[0, 3]])}))
    car = cs.report(make_recipe(pools=("car", "car")))["pools"]["car"]
    assert car["unique_seconds_used"] == 2.5
    assert car["reuse_factor"] == 4.0
    assert car["fraction_used"] == 1.0


def test_a_pool_without_durations_counts_uses_over_distinct_items():
    cat = make_catalog({"img": [("x", 0.0, False), ("y", 0.0, False), ("z", 0.0, False)]})
    cs = CoverageStats(cat, {"train": False})
    cs.add_shard(record("train", {"img": block(["x", "y"], [3, 1], [0.0, 0.0])}))
    img = cs.report(make_recipe(pools=("img", "img")))["pools"]["img"]
    assert img["timed"] is False
    assert img["effective_sources"] == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))), rel=1e-5)
    assert img["effective_sources_simpson"] == pytest.approx(1.6)
    assert img["max_share"] == 0.75
    assert img["reuse_factor"] == 2.0
    assert img["seconds_used"] == 0.0 and img["unique_seconds_used"] == 0.0
    assert img["fraction_used"] == pytest.approx(2 / 3, rel=1e-5)


def test_guards_compare_each_figure_with_its_limit_and_per_pool_overrides():
    cat = make_catalog({"speech": [("u", 100.0, False)], "car": [("a", 1.0, False), ("b", 1.0, False)]})
    cs = CoverageStats(cat, {"train": False})
    cs.add_shard(record("train", {
        "speech": block(["u"], [30], [30.0], [[0, 30]]),
        "car": block(["a"], [30], [30.0], [[0, 1]]),
    }))
    recipe = make_recipe(guards={"max_source_share": 0.9, "pools": {"speech": {"max_source_share": None}}})
    report = cs.report(recipe)
    got = {(g["name"], g["pool"]): (g["value"], g["limit"], g["passed"]) for g in report["guards"]}
    assert got == {
        ("max_reuse_factor", "speech"): (1.0, 20.0, True),
        ("max_reuse_factor", "car"): (30.0, 20.0, False),
        ("max_source_share", "car"): (1.0, 0.9, False),  # speech turned it off for itself
    }
    assert report["passed"] is False


# ----------------------------------------------------------------------------- merge order


def random_records(seed: int, n_shards: int = 12, rows: int = 25):
    rng = np.random.default_rng(seed)
    durations = {f"n{k}.wav": float(rng.choice([2.0, 3.5, 30.0, 61.2])) for k in range(9)}
    held = {"n7.wav", "n8.wav"}
    info = {"car": {it: (d, it in held) for it, d in durations.items()},
            "speech": {f"u{k}": (float(1 + k % 4), False) for k in range(20)}}
    total = n_shards * rows
    cfg = {"noise": [{"snr_db_range": [0, 20]}]}
    out = []
    for s in range(n_shards):
        split = "unseen" if s % 4 == 3 else "train"
        ctx = StatsContext(split=split, holdout_split=split == "unseen", synth_config=cfg,
                           item_info=lambda p, i: info[p].get(i), keep_below=keep_threshold(total))
        stats = ShardStats(ctx)
        for r in range(rows):
            u = f"u{rng.integers(20)}"
            dur = info["speech"][u][0]
            choices = sorted(held) if split == "unseen" else sorted(set(durations) - held)
            item = choices[rng.integers(len(choices))]
            sources = [{"pool": "speech", "item": u, "start_s": 0.0, "duration_s": dur},
                       {"pool": "car", "item": item, "start_s": float(rng.uniform(0, durations[item])),
                        "duration_s": dur}]
            params = {"noise": [{"layer": 0, "snr_db": float(rng.uniform(0, 20))}], "gain": float(rng.normal())}
            stats.add(f"t-{split}-{s * rows + r:09d}", params, sources,
                      rng.standard_normal(6).astype(np.float32) * 10 - 30, dur)
        out.append({"split": split, "stats": stats.to_json()})
    catalog = make_catalog({"car": [(it, d, it in held) for it, d in sorted(durations.items())],
                            "speech": [(u, d, False) for u, (d, _) in sorted(info["speech"].items())]})
    return out, catalog


MERGE_RECIPE = None


def merge_recipe():
    global MERGE_RECIPE
    if MERGE_RECIPE is None:
        MERGE_RECIPE = make_recipe(pools=("speech", "car"), splits={"train": {"samples": 225},
                                                                   "unseen": {"samples": 75, "holdout": True}},
                                   guards={"min_effective_sources": 3})
    return MERGE_RECIPE


def merged(records, catalog, order):
    cs = CoverageStats(catalog, {"train": False, "unseen": True})
    for i in order:
        cs.add_shard(records[i])
    return cs


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 8))
def test_stats_merged_in_any_order_give_the_same_report(shuffle_seed, split_at):
    records, catalog = RECORDS
    recipe = merge_recipe()
    reference = report_json(merged(records, catalog, range(len(records))).report(recipe))
    order = list(range(len(records)))
    random.Random(shuffle_seed).shuffle(order)
    assert report_json(merged(records, catalog, order).report(recipe)) == reference
    # a tree of partial merges, as parallel analyzers would do it
    left = merged(records, catalog, order[: split_at + 1])
    right = merged(records, catalog, order[split_at + 1 :])
    assert report_json(right.merge(left).report(recipe)) == reference


RECORDS = random_records(11, n_shards=10, rows=15)


def test_the_merged_embedding_sample_is_the_global_bottom_k():
    records, catalog = random_records(5, n_shards=60, rows=30)  # 1800 samples, all kept
    forward = merged(records, catalog, range(60))
    backward = merged(records, catalog, reversed(range(60)))
    every_id = [e[1] for r in records for e in r["stats"]["embedding"]["sample"]]
    assert len(every_id) == 1800
    expected = sorted(every_id, key=sample_key)[:SAMPLE_K]
    assert [e[1] for e in forward.embed_sample] == expected
    assert forward.embed_sample == backward.embed_sample


def test_embedding_moments_match_numpy_on_the_same_rows():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((300, 4)) * [1, 5, 20, 0.01] + [-50, 3, 0, 0.5]).astype(np.float32)
    cs = CoverageStats(make_catalog({"p": [("a", 1.0, False)]}), {"train": False})
    for part in np.array_split(np.arange(300), 7):
        stats = ShardStats()
        for i in part:
            stats.add(f"s-{i}", {}, [{"pool": "p", "item": "a"}], x[i], 1.0)
        cs.add_shard({"split": "train", "stats": stats.to_json()})
    mean, cov = cs.embedding_moments()
    x64 = x.astype(np.float64)
    assert np.allclose(mean, x64.mean(axis=0), atol=1e-4)
    ref = np.cov(x64, rowvar=False)
    assert np.allclose(np.diag(cov), np.diag(ref), rtol=1e-4)
    # values are quantized to 2**-16: compare on the correlation scale
    scale = np.sqrt(np.outer(np.diag(ref), np.diag(ref)))
    assert np.allclose(cov / scale, ref / scale, atol=1e-4)


def test_vendi_score_and_near_duplicates_see_copies():
    """A sample made of 4 distinct points repeated: Vendi ~4, and most pairs are duplicates."""
    base = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32) * 10
    cs = CoverageStats(make_catalog({"p": [("a", 1.0, False)]}), {"train": False})
    stats = ShardStats()
    for i in range(200):
        stats.add(f"s-{i}", {}, [{"pool": "p", "item": "a"}], base[i % 4], 1.0)
    cs.add_shard({"split": "train", "stats": stats.to_json()})
    e = cs.embedding_figures()
    assert e["vendi_score"] == pytest.approx(4.0, rel=0.15)
    # pairs within one of the 4 groups: 4 * C(50, 2) of C(200, 2)
    assert e["near_duplicate_pair_rate"] == pytest.approx(4 * 50 * 49 / (200 * 199), rel=1e-6)
    assert e["near_duplicate_sample_rate"] == 1.0
    assert 1.0 <= e["participation_ratio"] <= 3.0 + 1e-9  # 4 points span at most 3 dims


# ----------------------------------------------------------------------------- held-out items


def test_held_out_items_are_confirmed_unused_outside_holdout_splits():
    records, catalog = RECORDS
    report = merged(records, catalog, range(len(records))).report(merge_recipe())
    car = report["holdout"]["pools"]["car"]
    assert car["items_held_out"] == 2
    assert car["held_out_uses_outside_holdout_splits"] == 0
    assert car["seen_item_uses_in_holdout_splits"] == 0
    assert report["holdout"]["passed"]
    assert {"name": "holdout_unseen", "pool": "car", "value": 0, "limit": 0, "passed": True} in report["guards"]


def test_a_held_out_item_used_in_train_fails_the_holdout_guard():
    records, catalog = RECORDS
    cs = merged(records, catalog, range(len(records)))
    # the catalog knows n7.wav is held out even if the worker did not say so
    cs.add_shard(record("train", {"car": block(["n7.wav"], [1], [2.0], [[0, 2]])}))
    report = cs.report(merge_recipe())
    assert report["holdout"]["pools"]["car"]["held_out_uses_outside_holdout_splits"] == 1
    assert not report["holdout"]["passed"] and not report["passed"]


# ----------------------------------------------------------------------------- beyond ITEM_CAP


def test_a_pool_larger_than_the_cap_is_estimated_from_a_fixed_hash_sample(monkeypatch):
    monkeypatch.setattr(coverage_catalog, "ITEM_CAP", 100)
    items = [f"item-{k:05d}" for k in range(2000)]
    cat = make_catalog({"car": [(it, 10.0, False) for it in items]})
    assert len(cat["car"].items) < 200 and not cat["car"].exact
    used = items[:1000]
    recs = [record("train", {"car": block(used[i::4], [2] * len(used[i::4]), [10.0] * len(used[i::4]),
                                          [[0, 5, 6, 10]] * len(used[i::4]))}) for i in range(4)]
    figs = []
    for order in ([0, 1, 2, 3], [3, 1, 0, 2]):
        cs = CoverageStats(cat, {"train": False})
        for i in order:
            cs.add_shard(recs[i])
        figs.append(cs.report(make_recipe(pools=("car", "car")))["pools"]["car"])
    assert figs[0] == figs[1]
    car = figs[0]
    assert car["exact"] is False and car["items_available"] == 2000
    assert car["seconds_used"] == 10000.0  # totals stay exact
    assert car["items_used"] == pytest.approx(1000, rel=0.4)
    assert car["unique_seconds_used"] == pytest.approx(9000, rel=0.4)
    assert car["effective_sources"] == pytest.approx(1000, rel=0.4)


# ----------------------------------------------------------------------------- forecast (no Ray)


@pytest.fixture(scope="module")
def clip3(tmp_path_factory) -> Path:
    """One 3-second noise clip."""
    folder = tmp_path_factory.mktemp("clip")
    x = 0.05 * np.random.default_rng(0).standard_normal(3 * 16000)
    sf.write(folder / "clip3.wav", x.astype(np.float32), 16000)
    return folder / "clip3.wav"


def narrow_recipe(corpus: Path, noise_paths: list[str], samples: int = 300) -> dict:
    return {
        "name": "narrow",
        "seed": 3,
        "output": {"samples_per_shard": 150},
        "pools": {"speech": {"manifest": str(corpus / "speech" / "manifest.csv")},
                  "noise": {"paths": noise_paths}},
        "splits": {"train": {"samples": samples}},
        "synth": {"type": "speech_noise_mix", "speech": "speech",
                  "noise": [{"pool": "noise", "snr_db_range": [0, 20]}]},
    }


def test_the_forecast_predicts_the_reuse_of_one_short_clip(demo_corpus, clip3, tmp_path):
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", narrow_recipe(demo_corpus, [str(clip3)])))
    index = index_pools(recipe)
    f = forecast_coverage(recipe, index)
    mean_speech = float(index.pools["speech"].duration_s.mean())
    noise = f["pools"]["noise"]
    assert noise["reuse_factor"] == pytest.approx(300 * mean_speech / 3.0, rel=0.1)
    assert noise["unique_seconds_used"] == pytest.approx(3.0)
    assert not f["passed"]
    assert [g["pool"] for g in f["guards"] if not g["passed"]] == ["noise"]


def test_ten_thousand_hours_over_one_hour_of_noise_forecasts_about_ten_thousand(demo_corpus, tmp_path):
    """The issue's example, by scaling the split: output hours / noise hours."""
    data = narrow_recipe(demo_corpus, [str(demo_corpus / "noise" / "*" / "*.wav")])
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", data))
    index = index_pools(recipe)
    noise_s = index.pools["noise"].seconds_available
    mean_speech = float(index.pools["speech"].duration_s.mean())
    samples = int(10_000 * noise_s / mean_speech)  # 10,000 x the noise audio in output
    recipe = load_recipe(tmp_path / "r.yaml", overrides=[f"splits.train.samples={samples}"])
    f = forecast_coverage(recipe, index)
    assert f["pools"]["noise"]["reuse_factor"] == pytest.approx(10_000, rel=0.1)


def test_the_demo_recipe_passes_the_default_guards(demo_corpus, tmp_path):
    text = Path(__file__).parent.parent.joinpath("recipes", "demo_in_car.yaml").read_text()
    data = yaml.safe_load(text.replace("../demo_data", str(demo_corpus)))
    recipe = parse_recipe(data, base_dir=tmp_path)
    f = forecast_coverage(recipe, index_pools(recipe))
    assert f["passed"], f["guards"]
    assert all(g["value"] < 20 for g in f["guards"])


def test_plan_refuses_a_narrow_recipe_with_exit_3_and_the_ways_out(demo_corpus, clip3, tmp_path, capsys):
    path = write_recipe(tmp_path / "narrow.yaml", narrow_recipe(demo_corpus, [str(clip3)]))
    assert main(["plan", str(path)]) == 3
    err = capsys.readouterr().err
    assert "pool 'noise': reuse factor" in err and "max_reuse_factor 20" in err
    assert "more source audio" in err and "fewer samples" in err and "perturb" in err
    assert "--allow-narrow" in err
    assert "Traceback" not in err
    assert main(["plan", str(path), "--allow-narrow"]) == 0


def test_plan_passes_the_same_recipe_over_many_long_noise_files(demo_corpus, tmp_path, capsys):
    data = narrow_recipe(demo_corpus, [str(demo_corpus / "noise" / "*" / "*.wav")])
    path = write_recipe(tmp_path / "wide.yaml", data)
    assert main(["plan", str(path)]) == 0
    assert "passes the guards" in capsys.readouterr().out


# ----------------------------------------------------------------------------- end to end on Ray


@pytest.mark.ray
def test_narrow_run_is_refused_then_reports_the_true_reuse_with_allow_narrow(
        ray_local, demo_corpus, clip3, tmp_path, capsys):
    path = write_recipe(tmp_path / "narrow.yaml", narrow_recipe(demo_corpus, [str(clip3)]))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--workers", "2", "--no-progress"]) == 3
    assert "refusing" in capsys.readouterr().err
    assert not out.exists()  # refused before anything was written

    assert main(["run", str(path), "--out", str(out), "--workers", "2", "--no-progress", "--allow-narrow"]) == 0
    report = json.loads((out / "coverage.json").read_text())
    rows = [r for f in shard_files(out) for r in read_shard(f).select(["duration_s"]).to_pylist()]
    true_reuse = sum(r["duration_s"] for r in rows) / 3.0  # every second of the clip is used
    noise = report["pools"]["noise"]
    assert noise["reuse_factor"] == pytest.approx(true_reuse, rel=0.01)
    assert noise["unique_seconds_used"] == pytest.approx(3.0)
    assert noise["items_used"] == 1 and noise["max_share"] == 1.0
    assert not report["passed"]
    assert "coverage.json" in read_run_record(out)["extra_files"]

    capsys.readouterr()
    assert main(["coverage", str(out), "--json", "--html", str(tmp_path / "r.html")]) == 3
    lines = capsys.readouterr().out.splitlines()  # Ray may log to stdout around the JSON
    printed = json.loads("\n".join(lines[lines.index("{") : len(lines) - lines[::-1].index("}")]))
    assert printed == report
    for key in ("items_available", "items_used", "effective_sources", "max_share", "seconds_available",
                "seconds_used", "unique_seconds_used", "reuse_factor"):
        assert key in noise
    assert {"name", "pool", "value", "limit", "passed"} <= set(report["guards"][0])
    html = (tmp_path / "r.html").read_text()
    assert html.count("<img") >= 4  # usage per pool, SNR histogram, embedding projection


@pytest.mark.ray
def test_the_same_recipe_over_many_long_noise_files_passes(ray_local, demo_corpus, tmp_path, capsys, monkeypatch):
    data = narrow_recipe(demo_corpus, [str(demo_corpus / "noise" / "*" / "*.wav")])
    path = write_recipe(tmp_path / "wide.yaml", data)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--workers", "2", "--no-progress"]) == 0
    report = json.loads((out / "coverage.json").read_text())
    assert report["passed"]
    assert report["pools"]["noise"]["reuse_factor"] < 3
    assert report["params"]["noise[0].snr_db"]["range_covered"] == 1.0
    assert report["embedding"]["vendi_score"] > 1
    assert "coverage guards: passed" in capsys.readouterr().out

    # `shardsmith coverage OUT` streams the run record (keeping each shard's split and stats
    # path only) rather than reading it whole: for 10^5 shards, not a dict per shard.
    from engine.coverage import load_coverage_stats
    from engine.storage import Store

    read_bytes = Store.read_bytes

    def no_whole_record(self, rel):
        assert not rel.endswith("run.json"), "the analyzer read the run record whole"
        return read_bytes(self, rel)

    monkeypatch.setattr(Store, "read_bytes", no_whole_record)
    assert load_coverage_stats(out)[0] == report


def test_embedding_sums_stay_exact_on_the_int64_fast_path_and_beyond_it():
    """Shards whose sums fit are added in int64 first and folded every 64 shards; sums beyond
    2**56 (large shards) go straight to Python integers: the totals are exact either way."""
    from engine.coverage.merge import CoverageStats
    from engine.stats import EMBED_SCALE_BITS

    rng = np.random.default_rng(3)
    dim, cs = 3, CoverageStats({}, {"train": False})
    want1, want2 = [0] * dim, [0] * (dim * (dim + 1) // 2)
    for i in range(150):
        big = 2**70 if i % 37 == 0 else 2**55
        s1 = [int(v) for v in rng.integers(-big if big < 2**63 else -2**62, 2**62, dim)]
        s2 = [int(v) * (big // 2**55) for v in rng.integers(-2**55, 2**55, len(want2))]
        want1 = [a + b for a, b in zip(want1, s1)]
        want2 = [a + b for a, b in zip(want2, s2)]
        cs.add_shard({"stats": {"rows": 1, "embedding": {"dim": dim, "count": 1, "scale_bits": EMBED_SCALE_BITS,
                                                          "sum": s1, "sum_outer_upper": s2, "sample": []}}})
    assert [int(v) for v in cs.embed_s1] == want1
    assert [int(v) for v in cs.embed_s2] == want2
    assert cs.embed_count == 150
