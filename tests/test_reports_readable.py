"""Image coverage that means something, and reports a person reads: image pools in uses
and megapixels, transform parameters against the recipe's ranges, constants apart, a
Fréchet distance that a near-constant feature cannot blow up, effective sources never
above items used, and HTML that fits a 1280 px window with readable headers."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.coverage import CoverageStats, build_catalog, catalog_from_parquet, coverage_html, describe_coverage
from engine.coverage.figures import param_figures
from engine.coverage.forecast import _forecast_pool
from engine.coverage.report import projection_colours
from engine.coverage.tallies import ParamTally
from engine.mismatch.data import DataComparison, compare_embeddings
from engine.mismatch.embeddings import EmbeddingSet
from engine.mismatch.metrics import feature_drift, frechet_distance, frechet_pooled
from engine.mismatch.report import data_report_html
from engine.recipe import load_recipe, parse_recipe
from engine.report import humanize, new_figure, plain_log_axis, shown_of, table_html
from engine.stats import ShardStats, StatsContext, flatten_params
from engine.synth.image_augment.synth import ImageAugmentSynth
from engine.synth.image_composite.synth import ImageCompositeSynth

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- image pools


def _image_recipe():
    return parse_recipe({
        "name": "imgs", "seed": 1,
        "pools": {"photos": {"kind": "image", "paths": ["p/*.png"], "holdout": 0.25}},
        "splits": {"train": {"samples": 10}, "test": {"samples": 4, "holdout": True}},
        "synth": {"type": "image_augment", "images": "photos",
                  "transforms": [{"Affine": {"rotate": [-5, 5], "scale": [0.9, 1.1], "p": 0.5}},
                                 {"ImageCompression": {"quality_range": [35, 80]}}]},
    })


def _image_stats():
    # three images of 100x50, 200x100 and 10x10 pixels; a is used 3 times, b once, c never
    cat = build_catalog([("photos", ["a", "b", "c"], np.zeros(3), np.zeros(3, bool),
                          np.array([5000, 20000, 100]))], {"photos": 3})
    cs = CoverageStats(cat, {"train": False, "test": True})
    cs.add_shard({"split": "train", "rows": 4, "seconds": 0.0,
                  "pools": {"photos": {"items": ["a", "b"], "uses": [3, 1], "us": [0, 0]}}})
    return cs


def test_image_pools_report_uses_and_pixels_not_seconds():
    report = _image_stats().report(_image_recipe())
    p = report["pools"]["photos"]
    assert p["pixels_available"] == 25100
    assert p["pixels_used"] == 3 * 5000 + 20000
    assert p["unique_pixels_used"] == 25000
    assert p["reuse_factor"] == 2.0 and p["seconds_available"] == 0.0  # the audio keys stay
    text = describe_coverage(report)
    assert "4 samples (images) in 1 shard" in text and ", 0 s" not in text
    assert "MP available" in text and "s available" not in text
    html = coverage_html(report)
    assert "<th>megapixels available</th>" in html and "seconds available" not in html
    assert "4 samples (images) in 1 shard" in html


def test_audio_pools_keep_their_seconds_and_no_pixel_keys():
    cat = build_catalog([("car", ["a"], np.array([10.0]), np.array([False]))], {"car": 1})
    cs = CoverageStats(cat, {"train": False})
    cs.add_shard({"split": "train", "rows": 1, "seconds": 2.0,
                  "pools": {"car": {"items": ["a"], "uses": [1], "us": [2_000_000], "buckets": [[0, 2]]}}})
    recipe = parse_recipe({"name": "t", "seed": 1, "pools": {"speech": {"paths": ["s/*.wav"]}, "car": {"paths": ["c/*.wav"]}},
                           "splits": {"train": {"samples": 1}},
                           "synth": {"type": "speech_noise_mix", "speech": "speech",
                                     "noise": [{"pool": "car", "snr_db_range": [0, 20]}]}})
    report = cs.report(recipe)
    assert "pixels_available" not in report["pools"]["car"]
    assert report["pools"]["car"]["unique_seconds_used"] == 2.0
    assert "s available" in describe_coverage(report) and "1 sample in 1 shard" in describe_coverage(report)
    assert "1 sample, 2 s, in 1 shard" in coverage_html(report)


def test_pool_index_sizes_reach_the_catalog(tmp_path):
    table = pa.table({"pool": ["photos", "photos"], "item": ["a", "b"], "duration_s": [0.0, 0.0],
                      "sample_rate": [0, 0], "channels": [3, 3], "holdout": [False, False],
                      "fingerprint": ["", ""], "width": [100, 30], "height": [50, 20]})
    pq.write_table(table, tmp_path / "pool_index.parquet")
    cat = catalog_from_parquet(tmp_path / "pool_index.parquet")["photos"]
    assert cat.pixels_available == 5600 and cat.pixels.tolist() == [5000, 600]
    pq.write_table(table.drop(["width", "height"]), tmp_path / "old.parquet")  # an index from before
    assert catalog_from_parquet(tmp_path / "old.parquet")["photos"].pixels is None


def test_pool_index_table_adds_sizes_only_for_image_pools():
    from engine.sink import pool_index_table

    def pool(kind, n, width=None):
        return SimpleNamespace(items=[f"i{j}" for j in range(n)], duration_s=np.ones(n), sample_rate=np.zeros(n, int),
                               channels=np.ones(n, int), holdout=np.zeros(n, bool), fingerprints=[],
                               width=width, height=width, __len__=lambda: n)

    class P(SimpleNamespace):
        def __len__(self):
            return len(self.items)

    audio = SimpleNamespace(pools={"a": P(**vars(pool("audio", 2)))})
    assert "width" not in pool_index_table(audio).column_names
    images = SimpleNamespace(pools={"a": P(**vars(pool("audio", 1))), "b": P(**vars(pool("image", 2, np.array([4, 5]))))})
    t = pool_index_table(images)
    assert t.column("width").to_pylist() == [0, 4, 5]


# ----------------------------------------------------------------------------- parameters


def test_image_synths_declare_the_ranges_the_recipe_gave():
    cfg = load_recipe(ROOT / "recipes/demo_images.yaml").synth.model_dump(mode="json")
    r = ImageAugmentSynth.param_range
    assert r(cfg, "applied.Affine.rotate") == (-5.0, 5.0)
    assert r(cfg, "applied.Affine.scale.x") == r(cfg, "applied.Affine.scale.y") == (0.95, 1.05)
    assert r(cfg, "applied.ImageCompression.quality") == (35.0, 80.0)
    assert r(cfg, "applied.Downscale.scale") == (0.4, 0.8)
    assert r(cfg, "applied.Defocus.radius") == (2.0, 4.0)  # inside a OneOf
    assert r(cfg, "applied.ISONoise.intensity") == (0.1, 0.4)
    assert r(cfg, "applied.ISONoise.color_shift") is None  # a default, not given by the recipe
    assert r(cfg, "applied.RandomBrightnessContrast.beta") is None
    twice = {"transforms": [{"__class_fullname__": "Affine", "rotate": [-5, 5]},
                            {"__class_fullname__": "Affine", "rotate": [-9, 9]}]}
    assert r(twice, "applied.Affine.rotate") is None  # which one applied is not known
    by_axis = {"transforms": [{"__class_fullname__": "Affine", "scale": {"x": [0.8, 1.2], "y": [1, 1]}}]}
    assert r(by_axis, "applied.Affine#2.scale.x") == (0.8, 1.2)
    comp = load_recipe(ROOT / "recipes/demo_composite.yaml").synth.model_dump(mode="json")
    assert ImageCompositeSynth.param_range(comp, "objects[3].scale") == (0.2, 0.5)
    assert ImageCompositeSynth.param_range(comp, "objects[0].rotation_deg") == (-20.0, 20.0)
    assert ImageCompositeSynth.param_range(comp, "objects[0].center_x_px") is None
    assert ImageCompositeSynth.param_range(comp, "applied.Affine.rotate") == (-10.0, 10.0)


def test_shard_stats_histogram_image_params_over_the_hooks_range():
    cfg = load_recipe(ROOT / "recipes/demo_images.yaml").synth.model_dump(mode="json")
    ctx = StatsContext(synth_config=cfg, unsampled_params=ImageAugmentSynth.unsampled_params,
                       range_hook=ImageAugmentSynth.param_range)
    stats = ShardStats(ctx)
    params = {"image": {"pool": "photos", "item": "a.png"}, "seed": 7,
              "applied": {"Affine": {"rotate": 2.5, "fill": 0, "interpolation": 1, "output_shape": [192, 256]},
                          "ISONoise": {"intensity": 0.2, "random_seed": 123456},
                          "GaussianBlur": {"kernel": [0.1, 0.8, 0.1]}}}
    stats.add("s1", params, [], None, 0.0)
    out = stats.to_json()["params"]
    assert set(out) == {"applied.Affine.rotate", "applied.ISONoise.intensity"}  # internals left out
    assert out["applied.Affine.rotate"]["range"] == [-5.0, 5.0] and sum(out["applied.Affine.rotate"]["bins"]) == 1


def test_albumentations_internals_are_not_parameters():
    params = {"applied": {"Affine": {"fill": 0, "fill_mask": 0, "interpolation": 1, "output_shape": [192, 256],
                                     "rotate": 1.0},
                          "ISONoise": {"random_seed": 9, "intensity": 0.2},
                          "GaussianBlur": {"kernel": [0.2, 0.6, 0.2]}}, "seed": 4}
    names = [n for n, _ in flatten_params(params, ImageAugmentSynth.unsampled_params)]
    assert names == ["applied.Affine.rotate", "applied.ISONoise.intensity"]


def test_constant_parameters_are_listed_apart_and_not_plotted():
    cs = _image_stats()
    const, varying = ParamTally(None), ParamTally(None)
    const.count, const.min, const.max, const.sample = 4, 1.0, 1.0, [(1, 1.0)]
    varying.count, varying.min, varying.max, varying.sample = 4, 0.1, 0.9, [(1, 0.1), (2, 0.9)]
    cs.params = {"applied.X.flag": const, "applied.X.sigma": varying}
    report = cs.report(_image_recipe())
    text = describe_coverage(report)
    assert "constant in every row (settings, not drawn): applied.X.flag = 1" in text
    assert not re.search(r"^\s+applied\.X\.flag\s", text, re.M)
    html = coverage_html(report)
    assert 'alt="histogram of applied.X.sigma"' in html and 'alt="histogram of applied.X.flag"' not in html


def test_a_whole_number_parameter_that_took_every_value_covers_its_range():
    t = ParamTally((2.0, 4.0))
    for v in (2, 3, 4):
        t.bins[min(99, int((v - 2) / 2 * 100))] += 1
    t.count, t.min, t.max = 3, 2.0, 4.0
    assert param_figures(t)["range_covered"] == 1.0


# ----------------------------------------------------------------------------- Fréchet


def _set(name, X):
    return EmbeddingSet(name, name, "shards", [f"{name}-{i:04d}" for i in range(len(X))], np.asarray(X, float), len(X))


def test_frechet_stays_of_the_order_of_the_drift_when_dev_has_a_near_constant_feature():
    rng = np.random.default_rng(3)
    dev = rng.normal(size=(300, 8))
    train = rng.normal(size=(300, 8))
    dev[:, 0] = 1e-7 * rng.normal(size=300)  # dev: (nearly) constant; train: spread, 0.3 sd apart
    train[:, 0] = 0.3 + rng.normal(size=300)
    pc = compare_embeddings(_set("t", train), _set("dev", dev))
    m = pc.metrics
    drift = sum(d["smd"] ** 2 for d in feature_drift(train, dev, [f"f{i}" for i in range(8)]))
    assert m["frechet_distance"] <= drift + 2 * 8
    assert m["frechet_distance"] < 10 * max(m["frechet_null"], 1.0)
    # measured in dev's own (floored) sd, the same data gave a distance in the millions
    scale = np.maximum(dev.std(axis=0), 1e-3 * np.median(dev.std(axis=0)))
    assert frechet_distance(train / scale, dev / scale) > 1e5


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 6), st.floats(1e-9, 10.0), st.floats(-3.0, 3.0))
def test_pooled_frechet_is_bounded_by_the_drift(seed, dim, tiny, shift):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, dim))
    y = rng.normal(size=(40, dim)) + shift
    y[:, 0] *= tiny  # any feature may be near-constant on one side
    smd2 = sum(d["smd"] ** 2 for d in feature_drift(x, y, [str(i) for i in range(dim)]))
    assert frechet_pooled(x, y) <= smd2 + 2 * dim + 1e-6


# ----------------------------------------------------------------------------- forecast


@settings(max_examples=40, deadline=None)
@given(st.integers(5, 800), st.floats(1.0, 2000.0), st.booleans())
def test_forecast_effective_sources_never_exceed_items_used(n_items, uses, timed):
    durations = np.full(n_items, 0.3 if timed else 0.0)
    pool = SimpleNamespace(duration_s=durations, holdout=np.zeros(n_items, bool), eligible=lambda h: np.arange(n_items))
    f = _forecast_pool(pool, {None: [uses, uses * 0.3, True]})
    assert f["items_used"] <= n_items
    if f["effective_sources"] is not None:  # None: the simulated draw used no item
        assert f["effective_sources"] <= f["items_used"]
        assert f["effective_sources_simpson"] <= f["effective_sources"] + 1e-9


def test_forecast_of_an_image_pool_counts_pixels_on_its_simulated_table():
    pool = SimpleNamespace(duration_s=np.zeros(3), holdout=np.zeros(3, bool), eligible=lambda h: np.arange(3),
                           width=np.array([10, 20, 30]), height=np.array([10, 10, 10]))
    f = _forecast_pool(pool, {None: [300.0, 0.0, True]})
    assert f["pixels_available"] == 600.0 and f["unique_pixels_used"] == 600.0  # 100 uses each: all drawn
    assert f["pixels_used"] == pytest.approx(300 * 200, rel=0.2)
    assert "pixels_available" not in _forecast_pool(SimpleNamespace(
        duration_s=np.ones(3), holdout=np.zeros(3, bool), eligible=lambda h: np.arange(3)), {None: [3.0, 3.0, True]})


def test_forecast_of_a_generated_rir_pool_like_the_issues():
    # 300 rooms, 30 uses: an expected 28.5 items used beside a simulated 36.8 effective sources before
    pool = SimpleNamespace(duration_s=np.full(300, 0.3), holdout=np.zeros(300, bool), eligible=lambda h: np.arange(300))
    f = _forecast_pool(pool, {None: [30.0, 9.0, True]})
    assert f["effective_sources"] <= f["items_used"]


# ----------------------------------------------------------------------------- HTML


def test_tables_wrap_to_fit_and_headers_read_as_words():
    report = _image_stats().report(_image_recipe())
    html = coverage_html(report)
    style = html[html.index("<style>"):html.index("</style>")]
    assert "max-width:100%" in style and "overflow-x:auto" in style and "overflow-wrap:anywhere" in style
    headers = re.findall(r"<th(?: class=\"text\")?>(.*?)</th>", html)
    assert headers and not [h for h in headers if "_" in h], headers
    assert ">True<" not in html and ">False<" not in html
    assert '<td class="pass">yes</td>' in html
    assert "<h2>Splits</h2>" in html and "<td>test</td>" not in html  # only splits that ran
    assert re.search(r"<td class=\"text\">train</td><td>no</td><td>4</td><td>4</td><td>0</td>", html)
    assert "<th>photos uses</th>" in html


def test_a_cut_list_says_first_n_of_m():
    assert shown_of(50, 80, "dev items", "--json lists them all") == "first 50 of 80 dev items (--json lists them all)"
    assert shown_of(80, 80, "dev items") == ""
    assert "first 2 of 3 rows" in table_html([{"a": 1}, {"a": 2}], note=shown_of(2, 3, "rows"))
    assert humanize("effective_sources_simpson") == "effective sources (Simpson)"


def test_mismatch_html_says_how_many_uncovered_dev_items_it_lists():
    rng = np.random.default_rng(0)
    dev = rng.normal(size=(200, 6))
    far = rng.normal(size=(200, 6)) + 2.0
    pc = compare_embeddings(_set("far", far), _set("dev", dev), n_permutations=20)
    assert pc.uncovered["count"] > 50
    html = data_report_html(DataComparison(_set("dev", dev), {"far": pc}, {}, {}))
    assert f"first 50 of {pc.uncovered['count']} uncovered dev items" in html
    assert "<td class=\"text\">domain AUC</td>" in html and "frechet_distance" not in html.split("<h2>")[1]
    assert "<th>far</th>" in html  # a training set's own name is not reworded
    named = data_report_html(DataComparison(_set("dev", dev), {"my_set": pc}, {}, {}))
    assert "<th>my_set</th>" in named


def test_projection_says_what_it_colours():
    assert projection_colours(["car+rooms", "car"], ["train", "train"]) == (
        ["car+rooms", "car"], "coloured by the pools mixed into each sample (its sources after the first)")
    by, title = projection_colours(["photos", "photos"], ["train", "test"])
    assert by == ["train", "test"] and title.startswith("coloured by split") and "photos" in title
    assert projection_colours(["photos"], ["train"])[1].startswith("one colour: a single pool (photos)")


def test_log_axes_read_as_plain_numbers():
    fig, ax = new_figure()
    ax.plot([1, 2, 3], [3, 185, 1000])
    ax.set_yscale("log")
    plain_log_axis(ax, "y")
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels and all(re.fullmatch(r"[\d,.]+", t) for t in labels), labels
    assert "1,000" in labels or "500" in labels


@pytest.mark.skipif(not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")),
                    reason="no Chromium on PATH")
def test_reports_fit_a_1280_px_window_in_a_real_browser(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import screenshot_reports as shots
    finally:
        sys.path.pop(0)
    browser = shots.find_browser()
    page = tmp_path / "coverage.html"
    page.write_text(coverage_html(_image_stats().report(_image_recipe())), encoding="utf-8")
    assert shots.overflow_px(browser, page, tmp_path) == 0
    wide = tmp_path / "wide.html"  # the probe does see a page that overflows
    wide.write_text("<html><body><table><tr>" + "<td>column</td>" * 300 + "</tr></table></body></html>")
    assert shots.overflow_px(browser, wide, tmp_path) > 0
    shots.screenshot(browser, page, tmp_path / "coverage.png", 800)
    assert (tmp_path / "coverage.png").stat().st_size > 1000


def test_a_refused_image_run_suggests_augmentation_not_speed_gain_reverb():
    from engine.coverage import guard_refusal

    forecast = {"samples": 3120, "max_samples_passing": 480, "passed": False,
                "guards": [{"name": "max_reuse_factor", "pool": "photos", "value": 130.0, "limit": 20, "passed": False}],
                "pools": {"photos": {"timed": False, "uses": 3120.0, "items_available": 24}}}
    text = guard_refusal(forecast, _image_recipe())
    assert "augmentation: if synth.transforms change each use" in text and "speed, gain, reverb" not in text
