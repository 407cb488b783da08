"""The mismatch evaluator: error decomposition (the textbook cases), data distances
(synthetic Gaussians and real demo audio run through Ray), and error slices by provenance."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.audio import io as audio_io
from engine.cli import main
from engine.errors import InputError
from engine.run_record import shard_files
from engine.mismatch import (
    EmbeddingSet,
    Rate,
    compare_data,
    compare_embeddings,
    decompose_errors,
    decompose_table,
    difference_interval,
    embedding_names,
    expected_coverage,
    featurize_file,
    frechet_distance,
    mmd2_permutation_test,
    parse_rate,
    prdc,
    read_general_table,
    slice_errors,
    wilson_interval,
)
from engine.recipe import load_recipe
from engine.runtime import run
from engine.shards import read_shard

from .conftest import small_recipe, write_recipe

# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "rates, dominant, problems",
    [
        ({"train": "1%", "train_dev": "9%", "dev": "10%"}, "variance", ["variance"]),
        ({"train": "1%", "train_dev": "1.5%", "dev": "10%"}, "data_mismatch", ["data_mismatch"]),
        ({"human": "0%", "train": "10%", "train_dev": "11%", "dev": "12%"}, "avoidable_bias", ["avoidable_bias"]),
        (
            {"human": "0%", "train": "10%", "train_dev": "11%", "dev": "20%"},
            "avoidable_bias",
            ["avoidable_bias", "data_mismatch"],
        ),
    ],
    ids=["high-variance", "data-mismatch", "avoidable-bias", "bias-and-mismatch"],
)
def test_textbook_cases_name_the_gap_to_work_on(rates, dominant, problems):
    result = decompose_errors(rates)
    assert result.dominant == dominant
    assert result.problems == problems


def test_gaps_are_differences_of_neighbouring_levels():
    r = decompose_errors({"human": "1%", "train": "2%", "train_dev": "4%", "dev": "8%", "test": "9%"})
    values = {k: round(g.value, 9) for k, g in r.gaps.items()}
    assert values == {"avoidable_bias": 0.01, "variance": 0.02, "data_mismatch": 0.04, "dev_overfitting": 0.01}
    assert r.dominant == "data_mismatch"
    assert "synthesize" in r.to_json()["advice"]["data_mismatch"]


def test_missing_human_level_is_said_to_hide_a_possibly_larger_bias():
    r = decompose_errors({"train": "10%", "train_dev": "11%", "dev": "20%"})
    assert "avoidable_bias" not in r.gaps
    assert any("avoidable bias is unknown" in n and "largest gap" in n for n in r.notes)


def test_counts_give_intervals_and_flag_gaps_that_may_be_noise():
    r = decompose_errors({"train": "20/1000", "train_dev": "25/1000", "dev": "60/500"})
    lo, hi = r.gaps["variance"].ci
    assert lo < 0.005 < hi and lo < 0  # 2.0% vs 2.5% on 1000 each: not significant
    assert r.gaps["variance"].significant is False
    assert r.gaps["data_mismatch"].significant is True
    assert r.problems == ["data_mismatch"]
    same = decompose_errors({"train": 0.02, "train_dev": 0.025, "dev": 0.12},
                            counts={"train": 1000, "train_dev": 1000, "dev": 500})
    assert same.gaps["variance"].ci == pytest.approx(r.gaps["variance"].ci)


def test_a_human_estimate_without_a_count_is_taken_as_exact():
    r = decompose_errors({"human": "1%", "train": "50/1000"})
    lo, hi = r.gaps["avoidable_bias"].ci
    wl, wh = wilson_interval(0.05, 1000)
    assert (lo, hi) == pytest.approx((wl - 0.01, wh - 0.01))


def test_wilson_interval_matches_the_published_value():
    # 10 of 100: the Wilson 95% interval is 0.0552 .. 0.1744 (Newcombe 1998, table I style)
    lo, hi = wilson_interval(0.10, 100)
    assert lo == pytest.approx(0.0552, abs=1e-4) and hi == pytest.approx(0.1744, abs=1e-4)


@settings(max_examples=200, deadline=None)
@given(
    k1=st.integers(0, 500), n1=st.integers(1, 500), k2=st.integers(0, 500), n2=st.integers(1, 500),
    conf=st.sampled_from([0.8, 0.9, 0.95, 0.99]),
)
def test_intervals_hold_the_estimate_and_stay_in_range(k1, n1, k2, n2, conf):
    k1, k2 = min(k1, n1), min(k2, n2)
    a, b = Rate(k1 / n1, n1), Rate(k2 / n2, n2)
    for r in (a, b):
        lo, hi = wilson_interval(r.value, r.n, conf)
        assert 0.0 <= lo <= r.value + 1e-12 and r.value - 1e-12 <= hi <= 1.0
    lo, hi = difference_interval(a, b, conf)
    d = b.value - a.value
    assert -1.0 - 1e-12 <= lo <= d + 1e-12 and d - 1e-12 <= hi <= 1.0 + 1e-12
    wider = difference_interval(a, b, 0.999)
    assert wider[0] <= lo + 1e-12 and wider[1] >= hi - 1e-12


@pytest.mark.parametrize(
    "text, expected",
    [("0.12", Rate(0.12)), ("12%", Rate(0.12)), ("12/100", Rate(0.12, 100)), ("12%@1000", Rate(0.12, 1000)),
     ("0.5@10", Rate(0.5, 10)), ("", None), (0.25, Rate(0.25))],
)
def test_rates_are_read_in_every_written_form(text, expected):
    r = parse_rate(text)
    assert r == expected or (r.value == pytest.approx(expected.value) and r.n == expected.n)


@pytest.mark.parametrize("text", ["7", "12 percent", "5/3", "-1%", "150%", "0.1@0"])
def test_unreadable_rates_are_clear_errors(text):
    with pytest.raises(InputError, match="train error"):
        parse_rate(text, "train error")


def test_general_table_fills_in_the_textbook_form(tmp_path):
    # Ng's rear-view-mirror example: general speech vs rear-view speech.
    f = tmp_path / "table.csv"
    f.write_text(",general speech,rearview\nhuman-level,4%,6%\ntrained on,7%,6%\nnot trained on,10%,6%\n")
    t = decompose_table(read_general_table(f))
    main_gaps = {k: round(g.value, 9) for k, g in t.main.gaps.items()}
    assert main_gaps == {"avoidable_bias": 0.03, "variance": 0.03, "data_mismatch": -0.04}
    extra = {k: round(v, 9) for k, v in t.extra_gaps["rearview"].items()}
    assert extra["target_harder_for_humans"] == 0.02 and extra["target_avoidable_bias"] == 0.0
    text = t.describe()
    assert "training-dev error" in text and "dev/test error" in text


def test_general_table_says_how_to_fill_missing_cells(tmp_path):
    f = tmp_path / "table.json"
    f.write_text(json.dumps({"general": {"human": "4%", "trained": "7%", "not_trained": "10%"},
                             "target": {"not trained on": "15%"}}))
    t = decompose_table(read_general_table(f))
    assert t.main.dominant == "data_mismatch"
    text = t.describe()
    assert "have people label a sample of this data" in text
    assert "put some of this data into training" in text
    assert t.to_json()["table"]["cells"]["target"]["human"] is None


def test_general_table_with_an_unknown_row_names_it(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text(",general,target\nhuman,4%,6%\nvalidation,7%,6%\n")
    with pytest.raises(InputError, match="unknown row 'validation'"):
        read_general_table(f)


def test_cli_errors_json_has_the_documented_keys(capsys):
    assert main(["mismatch", "errors", "--train", "1%", "--train-dev", "9%", "--dev", "10%", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"avoidable_bias", "variance", "data_mismatch", "dev_overfitting", "dominant"} <= set(data)
    assert data["dominant"] == "variance" and data["variance"] == pytest.approx(0.08)
    assert data["avoidable_bias"] is None


def test_cli_errors_bad_rate_is_one_line_not_a_traceback(capsys):
    assert main(["mismatch", "errors", "--train", "7", "--dev", "9%"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("shardsmith: error: train error: '7'") and "Traceback" not in err


# --------------------------------------------------------------------------- data: Gaussians


def _set(name, X):
    return EmbeddingSet(name, name, "shards", [f"{name}-{i:04d}" for i in range(len(X))], np.asarray(X, float), len(X))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_samples_of_one_distribution_look_alike(seed):
    rng = np.random.default_rng(seed)
    train, dev = rng.normal(size=(400, 12)), rng.normal(size=(400, 12))
    m = compare_embeddings(_set("a", train), _set("dev", dev), seed=seed).metrics
    assert abs(m["domain_auc"] - 0.5) < 0.08
    assert m["mmd_p_value"] > 0.01
    assert abs(m["coverage"] - m["coverage_null"]) < 0.06
    assert abs(m["density"] - 1.0) < 0.25
    assert m["frechet_distance_at_null_n"] < 2.0 * m["frechet_null"] + 0.05


def test_shifted_samples_are_clearly_separated():
    rng = np.random.default_rng(5)
    dev = rng.normal(size=(300, 12))
    shifted = rng.normal(size=(300, 12)) + 1.5
    pc = compare_embeddings(_set("far", shifted), _set("dev", dev))
    m = pc.metrics
    assert m["domain_auc"] > 0.99 and m["mmd_p_value"] < 0.01
    assert m["coverage"] < 0.1 and m["precision"] < 0.1
    assert m["frechet_distance"] > 10 * m["frechet_null"]
    assert pc.uncovered["count"] > 250


def test_dev_cluster_no_training_item_reaches_is_listed_by_id():
    rng = np.random.default_rng(3)
    dev = rng.normal(size=(200, 6))
    dev[:20, 4:] += 10.0  # a dev region far along the last two dimensions
    train = rng.normal(size=(200, 6))
    pc = compare_embeddings(_set("t", train), _set("dev", dev), seed=0)
    ids = [it["id"] for it in pc.uncovered["items"]]
    planted = {f"dev-{i:04d}" for i in range(20)}
    assert planted <= set(ids) and len(ids) <= 30
    assert ids[0] in planted and len(set(ids[:20]) & planted) >= 17  # listed farthest first
    assert {f["feature"] for f in pc.uncovered["features"][:2]} == {"dim_04", "dim_05"}
    assert pc.uncovered["items"][0]["most_unlike_train"] in ("dim_04", "dim_05")


def test_top_drifting_feature_is_named_from_the_audio_layout():
    rng = np.random.default_rng(4)
    dev = rng.normal(size=(100, 66))
    train = rng.normal(size=(100, 66))
    train[:, 65] += 3.0
    pc = compare_embeddings(_set("t", train), _set("dev", dev))
    assert pc.drift[0]["feature"] == "level_dbfs" and pc.drift[0]["smd"] > 2
    names = embedding_names(66)
    assert names[0].startswith("mel_mean_00") and names[32].startswith("mel_std_00") and names[64] == "spectral_flatness"


def test_frechet_distance_matches_scipy_sqrtm_and_the_1d_closed_form():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 5)), rng.normal(size=(150, 5)) @ rng.normal(size=(5, 5)) + 1
    sx, sy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    ref = ((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(sx + sy - 2 * np.real(sqrtm(sx @ sy)))
    assert frechet_distance(x, y) == pytest.approx(ref, rel=1e-6)
    a, b = rng.normal(0, 1, size=(5000, 1)), rng.normal(2, 3, size=(5000, 1))
    assert frechet_distance(a, b) == pytest.approx((a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)


def test_prdc_of_a_set_against_itself_is_complete():
    x = np.random.default_rng(0).normal(size=(100, 4))
    r = prdc(x, x, k=5)
    assert r["precision"] == r["recall"] == r["coverage"] == 1.0
    assert expected_coverage(1000, 1000, 5) == pytest.approx(1 - 0.5**5, abs=3e-3)


def test_mmd_p_value_is_bounded_by_the_permutations_and_seeded():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    mmd2, p, sigma = mmd2_permutation_test(x, y + 3, n_permutations=99)
    assert p == pytest.approx(1 / 100) and mmd2 > 0 and sigma > 0
    assert mmd2_permutation_test(x, y, n_permutations=99, seed=3) == mmd2_permutation_test(x, y, n_permutations=99, seed=3)


def test_mismatched_embedding_sizes_are_a_clear_error():
    with pytest.raises(InputError, match="different featurizers"):
        compare_embeddings(_set("img", np.zeros((20, 64))), _set("dev", np.zeros((20, 66))))


# --------------------------------------------------------------------------- real demo audio on Ray

def _noise_recipe(corpus, name, seed, snr, *, samples=80):
    pools = {
        "speech": {"manifest": str(corpus / "speech" / "manifest.csv")},
        "car": {"paths": [str(corpus / "noise" / "car" / "*.wav")]},
    }
    return small_recipe(
        corpus, name=name, seed=seed, pools=pools, splits={"train": {"samples": samples}},
        output={"format": "arrow", "samples_per_shard": 40, "audio_codec": "flac"},
        synth={"type": "speech_noise_mix", "speech": "speech", "noise": [{"pool": "car", "snr_db_range": snr}]},
    )


@pytest.fixture(scope="module")
def audio_runs(ray_local, demo_corpus, tmp_path_factory):
    """dev = speech in car noise; clean = the same speech with the car 60 dB down;
    synth = speech in car noise from another seed."""
    base = tmp_path_factory.mktemp("mismatch_runs")
    outs = {}
    for name, seed, snr in [("dev", 1, [0, 20]), ("clean", 2, [60, 60]), ("synth", 3, [0, 20])]:
        recipe = load_recipe(write_recipe(base / f"{name}.yaml", _noise_recipe(demo_corpus, name, seed, snr)))
        assert run(recipe, base / name, workers=2, progress=False).status == "complete"
        outs[name] = base / name
    return outs


@pytest.mark.ray
def test_clean_speech_is_far_from_noisy_dev_and_synthesis_is_closer_on_every_metric(audio_runs):
    r = compare_data([audio_runs["clean"], audio_runs["synth"]], audio_runs["dev"], seed=0)
    clean, synth = r.pairs["clean"].metrics, r.pairs["synth"].metrics
    assert clean["domain_auc"] > 0.95 and clean["mmd_p_value"] < 0.01 and clean["coverage"] < 0.2
    assert synth["domain_auc"] < 0.75 and synth["mmd_p_value"] > 0.01
    assert clean["frechet_distance"] > 5 * synth["frechet_distance"]
    assert r.closest == {k: "synth" for k in r.closest} and len(r.closest) == 7
    for key in ("precision", "recall", "density", "coverage"):
        assert synth[key] > clean[key]
    assert synth["mmd2"] < clean["mmd2"]
    assert "closest to dev: synth (on 7 of 7" in r.describe()


@pytest.mark.ray
def test_dev_as_raw_audio_files_is_featurized_like_the_shards(audio_runs, tmp_path):
    folder = tmp_path / "dev_wavs"
    folder.mkdir()
    rows = []
    for f in shard_files(audio_runs["dev"]):
        rows += read_shard(f).select(["sample_id", "audio", "embedding"]).to_pylist()
    for row in rows:
        x, sr = audio_io.decode(row["audio"]["bytes"])
        sf.write(folder / f"{row['sample_id']}.flac", x, sr, subtype="PCM_16")
    # The shard's embedding was taken before 16-bit encoding, the file's after: equal but for
    # the quietest (highest) bands, where the quantization noise shows (< 0.5 dB).
    e = featurize_file(str(folder / f"{rows[0]['sample_id']}.flac"))
    assert np.allclose(e, rows[0]["embedding"], atol=0.5)
    assert np.allclose(e[:24], rows[0]["embedding"][:24], atol=0.01) and e[65] == pytest.approx(rows[0]["embedding"][65], abs=0.01)
    (folder / "broken.wav").write_bytes(b"RIFF not really")
    r = compare_data([("clean", audio_runs["clean"]), ("synth", audio_runs["synth"])], folder)
    assert r.dev.kind == "audio" and len(r.dev) == len(rows) and len(r.dev.rejects) == 1
    assert r.closest["domain_auc"] == "synth" and r.closest["coverage"] == "synth"
    manifest = tmp_path / "dev.csv"
    manifest.write_text("path\n" + "".join(f"dev_wavs/{row['sample_id']}.flac\n" for row in rows[:30]))
    assert len(compare_data([audio_runs["synth"]], manifest).dev) == 30


@pytest.mark.ray
def test_cli_data_json_keys_html_and_coverage_guards(audio_runs, tmp_path, capsys):
    (audio_runs["synth"] / "coverage.json").write_text(json.dumps(
        {"passed": False, "guards": [{"name": "max_reuse_factor", "pool": "car", "value": 31.0, "limit": 20.0,
                                 "passed": False}, {"name": "max_source_share", "pool": "car", "passed": True}]}
    ))
    try:
        html = tmp_path / "report.html"
        code = main(["mismatch", "data", "--train", f"clean={audio_runs['clean']}", "--train",
                     str(audio_runs["synth"]), "--dev", str(audio_runs["dev"]), "--json", "--html", str(html),
                     "--permutations", "50"])
        assert code == 0
        data = json.loads(capsys.readouterr().out)
    finally:
        (audio_runs["synth"] / "coverage.json").unlink()
    assert set(data["train_sets"]) == {"clean", "synth"}
    for metrics in data["train_sets"].values():
        assert {"domain_auc", "mmd2", "mmd_p_value", "frechet_distance", "precision", "recall", "density",
                "coverage"} <= set(metrics)
    cov = data["train_sets"]["synth"]["coverage_report"]
    assert cov["passed"] is False and cov["failed"] == ["max_reuse_factor (car)"]
    assert any("coverage guards FAILED" in v for v in data["train_sets"]["synth"]["verdict"])
    page = html.read_text()
    assert page.count("<img") == 4 and "Domain classifier" in page and "Feature drift" in page


def test_a_folder_of_images_is_featurized_with_the_image_embedding(demo_corpus):
    from engine import features
    from engine.mismatch import load_embeddings

    photos = demo_corpus / "images" / "photos"
    s = load_embeddings(photos, max_n=12, seed=0)
    assert s.kind == "image" and len(s) == 12 and s.n_available == len(list(photos.glob("*.png")))
    first = photos / s.ids[0]
    import cv2

    rgb = cv2.cvtColor(cv2.imread(str(first)), cv2.COLOR_BGR2RGB)
    assert np.allclose(s.X[0], features.image_embedding(rgb))
    assert embedding_names(s.X.shape[1])[-2:] == ["log2_width", "log2_height"]


def test_cli_data_on_a_missing_or_empty_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["mismatch", "data", "--train", str(tmp_path / "nope"), "--dev", str(tmp_path)]) == 1
    assert f"--train {tmp_path / 'nope'}: does not exist" in capsys.readouterr().err
    assert main(["mismatch", "data", "--train", str(tmp_path), "--dev", str(tmp_path)]) == 1
    assert "no audio or image files" in capsys.readouterr().err


# --------------------------------------------------------------------------- slices


@pytest.fixture(scope="module")
def holdout_run(ray_local, demo_corpus, tmp_path_factory):
    base = tmp_path_factory.mktemp("slices")
    recipe = load_recipe(write_recipe(base / "r.yaml", small_recipe(demo_corpus)))
    out = base / "out"
    assert run(recipe, out, workers=2, progress=False).status == "complete"
    rows = []
    for f in shard_files(out):
        rows += read_shard(f).select(["sample_id", "split", "sources", "params", "text"]).to_pylist()
    return out, rows


def _write_predictions(path, rows, wrong):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sample_id", "correct"])
        for r in rows:
            w.writerow([r["sample_id"], "false" if wrong(r) else "true"])


@pytest.mark.ray
def test_planted_errors_on_one_noise_item_are_found_and_ranked_first(holdout_run, tmp_path):
    out, rows = holdout_run
    items = sorted({r["sources"][1]["item"] for r in rows if r["split"] == "train"})
    bad = items[1]
    preds = tmp_path / "preds.csv"
    _write_predictions(preds, rows, lambda r: r["sources"][1]["item"] == bad)
    report = slice_errors(out, preds)
    top = report.table[0]
    assert (top["dimension"], top["category"]) == ("noise item", bad)
    assert top["error_rate"] == 1.0 and top["share_of_errors"] == 1.0
    assert top["max_gain"] == pytest.approx(report.error_rate)
    others = [c for c in report.dimensions["noise item"] if c["category"] != bad]
    assert all(c["errors"] == 0 for c in others)
    assert set(report.dimensions) >= {"split", "noise pool", "noise item", "SNR band", "sources"}
    assert any("look there first" in n for n in report.notes)


@pytest.mark.ray
def test_errors_only_on_held_out_items_show_overfitting_to_the_sources(holdout_run, tmp_path):
    out, rows = holdout_run
    preds = tmp_path / "preds.csv"
    _write_predictions(preds, rows, lambda r: r["split"] == "train_dev_unseen")
    report = slice_errors(out, preds)
    by = {c["category"]: c for c in report.dimensions["sources"]}
    assert by["held-out (unseen) item"]["error_rate"] == 1.0 and by["seen items only"]["error_rate"] == 0.0
    assert any("overfits to the synthesized sources" in n for n in report.notes)


@pytest.mark.ray
def test_snr_bands_are_five_db_wide_and_cover_every_row(holdout_run, tmp_path):
    out, rows = holdout_run
    preds = tmp_path / "preds.csv"
    _write_predictions(preds, rows, lambda r: json.loads(r["params"])["noise"][0]["snr_db"] < 5)
    report = slice_errors(out, preds)
    bands = report.dimensions["SNR band"]
    assert [b["category"] for b in bands] == ["[0, 5) dB", "[5, 10) dB", "[10, 15) dB", "[15, 20) dB"]
    assert sum(b["n"] for b in bands) == len(rows)
    assert bands[0]["error_rate"] == 1.0 and all(b["errors"] == 0 for b in bands[1:])


@pytest.mark.ray
def test_predictions_compared_with_the_row_label_and_unknown_ids_counted(holdout_run, tmp_path, capsys):
    out, rows = holdout_run
    preds = tmp_path / "preds.jsonl"
    with open(preds, "w") as fh:
        for i, r in enumerate(rows):
            fh.write(json.dumps({"sample_id": r["sample_id"], "prediction": r["text"] if i % 4 else "wrong"}) + "\n")
        fh.write(json.dumps({"sample_id": "other-train-000000001", "prediction": "go"}) + "\n")
    report = slice_errors(out, preds, label_column="text")
    assert report.n_joined == len(rows) and report.not_joined == ["other-train-000000001"]
    assert report.errors == math.ceil(len(rows) / 4)
    assert main(["mismatch", "slices", "--shards", str(out), "--predictions", str(preds), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n_not_joined"] == 1 and data["errors"] == report.errors


@pytest.mark.ray
def test_bad_predictions_files_are_clear_errors(holdout_run, tmp_path):
    out, rows = holdout_run
    f = tmp_path / "p.csv"
    f.write_text("id,correct\nx,1\n")
    with pytest.raises(InputError, match="needs a 'sample_id' column"):
        slice_errors(out, f)
    f.write_text("sample_id,correct\nnobody-1,1\nnobody-2,0\n")
    with pytest.raises(InputError, match="none of its 2 sample_id"):
        slice_errors(out, f)
    f.write_text(f"sample_id,correct\n{rows[0]['sample_id']},1\n{rows[0]['sample_id']},0\n")
    with pytest.raises(InputError, match="appears twice"):
        slice_errors(out, f)
    f.write_text(f"sample_id,correct\n{rows[0]['sample_id']},maybe\n")
    with pytest.raises(InputError, match="'correct' must be one of true/false, 1/0, yes/no"):
        slice_errors(out, f)
    f.write_text(f"sample_id,prediction\n{rows[0]['sample_id']},go\n")
    with pytest.raises(InputError, match="--label-column"):
        slice_errors(out, f, label_column="transcript")


@pytest.mark.ray
def test_every_correct_value_the_message_lists_is_accepted(holdout_run, tmp_path):
    """issue 16: the message named true/false or 1/0 while yes, y, right... were accepted."""
    from engine.mismatch.slices import _ACCEPTED, _FALSE, _TRUE

    out, rows = holdout_run
    words = {w for part in _ACCEPTED.split(" (")[0].replace(" or ", ", ").split(", ") for w in part.split("/")}
    assert words == _TRUE | _FALSE, words
    f = tmp_path / "p.csv"
    values = sorted(_TRUE | _FALSE)
    f.write_text("sample_id,correct\n" + "".join(f"{r['sample_id']},{v.upper()}\n" for r, v in zip(rows, values)))
    report = slice_errors(out, f)
    assert report.errors == sum(v in _FALSE for v in values)


@pytest.mark.ray
def test_with_split_predictions_for_other_splits_are_named_as_such(holdout_run, tmp_path, capsys):
    """issue 16: with --split train, rows of train_dev were said to "name no row of the output"."""
    out, rows = holdout_run
    f = tmp_path / "p.csv"
    _write_predictions(f, rows, lambda r: False)
    with open(f, "a") as fh:
        fh.write("nobody-1,true\n")
    report = slice_errors(out, f, split="train")
    n_train = sum(r["split"] == "train" for r in rows)
    assert report.n_joined == n_train
    assert report.not_joined_splits == {"train_dev": 20, "train_dev_unseen": 20}
    text = report.describe()
    assert f"40 of {len(rows) + 1} predictions name rows of other splits (train_dev 20, train_dev_unseen 20)" in text
    assert f"1 of {len(rows) + 1} predictions name no row of the output and were left out, e.g. nobody-1" in text
    assert report.to_json()["not_joined_splits"] == {"train_dev": 20, "train_dev_unseen": 20}
    # none joins: the error says where they are
    g = tmp_path / "q.csv"
    _write_predictions(g, [r for r in rows if r["split"] == "train_dev"], lambda r: False)
    with pytest.raises(InputError, match=r"none of its 20 sample_ids is a row of split 'train'.*"
                                         r"20 name rows of other splits \(train_dev 20\)"):
        slice_errors(out, g, split="train")


def test_row_categories_follow_reverb_events_and_image_transforms():
    from engine.mismatch.slices import row_categories
    from engine.synth import synthesizer_class

    mix = synthesizer_class("speech_noise_mix")
    augment = synthesizer_class("image_augment")

    row = {"split": "train", "sources": [{"pool": "speech", "item": "s1"}, {"pool": "car", "item": "c1"},
                                         {"pool": "rain", "item": "r1"}]}
    params = {
        "speech": {"pool": "speech", "item": "s1"},
        "noise": [{"pool": "car", "item": "c1", "snr_db": 10.0}, {"pool": "rain", "item": "r1", "snr_db": 10.0}],
        "events": [{"pool": "clatter", "item": "k1", "snr_db": 0.0}],
        "reverb": {"pool": "rirs", "item": "room-3.wav", "rt60_s": 0.4},
    }
    cats = row_categories(row, params, {("rain", "r1")}, ["speaker"], mix)
    assert cats["noise pool"] == ["car", "rain"] and cats["noise item"] == ["c1", "r1"]
    assert cats["SNR band"] == ["[5, 10) dB"]  # two layers at 10 dB: 6.99 dB together
    assert cats["event item"] == ["k1"] and cats["reverb"] == ["reverb"] and cats["reverb item"] == ["room-3.wav"]
    assert cats["sources"] == ["held-out (unseen) item"] and cats["speaker"] == ["None"]
    cats = row_categories(row, {**params, "total_snr_db": 17.0, "reverb": None}, set(), [], mix)
    assert cats["SNR band"] == ["[15, 20) dB"] and cats["reverb"] == ["dry"] and "sources" not in cats
    image_row = {"split": "train", "sources": [{"pool": "photos", "item": "p1.png"}]}
    cats = row_categories(image_row, {"applied": {"GaussianBlur": {"sigma": 1.2}, "HorizontalFlip": {},
                                                  "GaussianBlur#2": {"sigma": 0.5}}}, set(), [], augment)
    assert cats["transform"] == ["GaussianBlur", "HorizontalFlip"]
    assert cats["source item"] == ["p1.png"] and "noise item" not in cats
