"""shardsmith mismatch probe: a small fixed classifier fitted on a run's train split and
scored on train-dev, held-out sources, dev and test (engine/mismatch/probe.py).

Most tests build outputs by hand (run.json, Arrow shards, pool_index.parquet) with
embeddings drawn from a model of the problem: each class has a mean, and each noise item
adds its own offset in a subspace that overlaps the class directions. Two tests run the
real pipeline on the demo corpus.
"""

from __future__ import annotations

import csv
import json
import time
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from engine.cli import main
from engine.errors import InputError
from engine.mismatch import ERROR_LEVELS, PROBE_GAPS, probe_errors
from engine.shards import SOURCE_TYPE

from .conftest import write_recipe

DIM = 12
CLASSES = ("a", "b", "c", "d")


# --------------------------------------------------------------------------- outputs built by hand


def _world(seed: int = 0):
    """Class means in dims 0-3; each noise item an offset in dims 2-5 (overlapping two
    class dims), so a model must learn which directions noise moves to ignore them."""
    rng = np.random.default_rng(seed)
    means = {c: np.r_[rng.normal(0, 2.0, 4), np.zeros(DIM - 4)] for c in CLASSES}

    def item_offset(item: str) -> np.ndarray:
        r = np.random.default_rng(zlib.crc32(item.encode()))
        return np.r_[np.zeros(2), r.normal(0, 3.5, 4), np.zeros(DIM - 6)]

    return means, item_offset


def _rows(split: str, n: int, items: list[str] | None, seed: int, labels=CLASSES, world=None):
    means, offset = world or _world()
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        c = labels[i % len(labels)]
        x = means.get(c, np.zeros(DIM)) + rng.normal(0, 0.6, DIM)
        item = items[int(rng.integers(len(items)))] if items else None
        snr = float(rng.uniform(0, 20))
        sources = [{"pool": "speech", "item": f"utt-{i % 40}.wav", "start_s": 0.0, "duration_s": 1.0, "gain_db": 0.0}]
        noise = []
        if item is not None:
            x = x + offset(item) * (1.0 - snr / 40.0)
            sources.append({"pool": "noise", "item": item, "start_s": 0.0, "duration_s": 1.0, "gain_db": -snr})
            noise = [{"pool": "noise", "item": item, "layer": 0, "snr_db": snr, "start_s": 0.0}]
        rows.append({
            "sample_id": f"{split}-{i:06d}", "split": split, "speaker": c, "sources": sources,
            "params": json.dumps({"noise": noise, "speech": {"pool": "speech", "item": sources[0]["item"]}}),
            "embedding": x.astype(np.float32).tolist(),
        })
    return rows


def _write_output(out: Path, splits: dict[str, list[dict]], *, holdout: tuple[str, ...] = (),
                  held_items: tuple[str, ...] = (), all_items: tuple[str, ...] = ()) -> Path:
    """A shardsmith output folder: one Arrow shard per split, run.json, pool_index.parquet."""
    schema = pa.schema([
        ("sample_id", pa.string()), ("split", pa.string()), ("speaker", pa.string()),
        ("sources", pa.list_(SOURCE_TYPE)), ("params", pa.string()), ("embedding", pa.list_(pa.float32(), DIM)),
    ])
    record_splits = {}
    for name, rows in splits.items():
        (out / name).mkdir(parents=True, exist_ok=True)
        rel = f"{name}/{name}-00000-of-00001.arrow"
        with ipc.new_stream(str(out / rel), schema) as w:
            w.write_table(pa.Table.from_pylist(rows, schema=schema))
        record_splits[name] = {"rows": len(rows), "samples": len(rows), "shards": [{"file": rel, "rows": len(rows)}]}
    record = {
        "recipe_hash": "0" * 16, "status": "complete", "splits": record_splits,
        "recipe": {"name": out.name, "synth": {"type": "speech_noise_mix"},
                   "splits": {name: {"samples": len(rows), "holdout": name in holdout}
                              for name, rows in splits.items()}},
    }
    (out / "run.json").write_text(json.dumps(record))
    items = sorted(set(all_items) | set(held_items))
    pq.write_table(pa.table({"pool": ["noise"] * len(items), "item": items,
                             "holdout": [it in held_items for it in items]}), out / "pool_index.parquet")
    return out


TRAIN_ITEMS = [f"noise/n{i:02d}.wav" for i in range(16)]
HELD_ITEMS = [f"noise/h{i:02d}.wav" for i in range(4)]
DEV_ITEMS = [f"noise/dev{i:02d}.wav" for i in range(6)]


def _training_set(tmp: Path, name: str, items: list[str] | None, *, n: int = 600, seed: int = 1,
                  train_dev: bool = True) -> Path:
    splits = {"train": _rows("train", n, items, seed)}
    if train_dev:
        splits["train_dev"] = _rows("train_dev", n // 4, items, seed + 100)
    splits["train_dev_unseen"] = _rows("train_dev_unseen", n // 4, HELD_ITEMS if items else None, seed + 200)
    return _write_output(tmp / name, splits, holdout=("train_dev_unseen",), held_items=tuple(HELD_ITEMS),
                         all_items=tuple(items or ()))


def _dev_set(tmp: Path, name: str = "dev", *, split: str = "dev", seed: int = 7, labels=CLASSES) -> Path:
    return _write_output(tmp / name, {split: _rows(split, 400, DEV_ITEMS, seed, labels)}, all_items=tuple(DEV_ITEMS))


@pytest.fixture(scope="module")
def constructed(tmp_path_factory) -> dict[str, Path]:
    """A clean training set, a narrow one (one noise item), a diverse one (16 items), all
    with a holdout split made from 4 other items, and a dev set from 6 more items."""
    tmp = tmp_path_factory.mktemp("probe_outputs")
    return {
        "clean": _training_set(tmp, "clean", None),
        "narrow": _training_set(tmp, "narrow", TRAIN_ITEMS[:1]),
        "diverse": _training_set(tmp, "diverse", TRAIN_ITEMS),
        "dev": _dev_set(tmp),
        "test": _dev_set(tmp, "test", split="test", seed=8),
    }


# --------------------------------------------------------------------------- the promised figures


def test_json_has_the_documented_keys_as_fractions_and_a_dominant_gap(constructed, capsys):
    assert main(["mismatch", "probe", "--train", str(constructed["diverse"]), "--label", "speaker",
                 "--dev", str(constructed["dev"]), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["errors"]) == set(ERROR_LEVELS) == {"train", "train_dev", "train_dev_unseen", "dev", "test"}
    assert set(data["gaps"]) == {name for name, _, _ in PROBE_GAPS} == {
        "avoidable_bias", "variance", "unseen_source_gap", "data_mismatch", "dev_overfitting"}
    assert data["errors"]["test"] is None and data["gaps"]["dev_overfitting"] is None
    assert data["gaps"]["avoidable_bias"] is None  # no --human
    for level in ("train", "train_dev", "train_dev_unseen", "dev"):
        assert 0.0 <= data["errors"][level] <= 1.0
        lo, hi = data["intervals"]["errors"][level]
        assert lo <= data["errors"][level] <= hi
    e, g = data["errors"], data["gaps"]
    assert g["variance"] == pytest.approx(e["train_dev"] - e["train"])
    assert g["unseen_source_gap"] == pytest.approx(e["train_dev_unseen"] - e["train_dev"])
    assert g["data_mismatch"] == pytest.approx(e["dev"] - e["train_dev"])
    assert data["dominant"] in data["gaps"] and data["gaps"][data["dominant"]] == max(
        v for v in data["gaps"].values() if v is not None)
    assert data["sets"]["dev"]["n"] == 400 and data["sets"]["train"]["n"] == 600
    assert data["model"]["name"] == "logistic regression" and data["features"]["dim"] == DIM


def test_human_level_and_test_fill_in_avoidable_bias_and_dev_overfitting(constructed):
    r = probe_errors(constructed["diverse"], "speaker", dev=constructed["dev"], test=constructed["test"], human="1%")
    e = r.errors
    assert r.gap_values["avoidable_bias"] == pytest.approx(e["train"] - 0.01)
    assert r.gap_values["dev_overfitting"] == pytest.approx(e["test"] - e["dev"])
    assert all(v is not None for v in r.gap_values.values())


def test_two_runs_give_the_same_numbers_and_the_seed_picks_the_held_back_rows(constructed, tmp_path):
    out = _training_set(tmp_path, "no_train_dev", TRAIN_ITEMS, train_dev=False)
    a = probe_errors(out, "speaker", dev=constructed["dev"])
    b = probe_errors(out, "speaker", dev=constructed["dev"])
    assert json.dumps(a.to_json(), sort_keys=True) == json.dumps(b.to_json(), sort_keys=True)
    assert a.describe() == b.describe()
    # Without a train_dev split, a seeded 20% of train is held back from fitting and scored as train-dev.
    assert a.sets["train_dev"].n == 120 and a.model["fitted_rows"] == 480 and a.sets["train"].n == 480
    assert any("no train_dev split" in n for n in a.notes)
    c = probe_errors(out, "speaker", dev=constructed["dev"], seed=1)
    assert c.sets["train_dev"].n == 120
    assert c.slices["train"].to_json() != a.slices["train"].to_json()  # other rows held back


def test_unseen_source_gap_is_measured_on_the_holdout_splits(constructed):
    r = probe_errors(constructed["narrow"], "speaker")
    unseen = r.sets["train_dev_unseen"]
    assert unseen.splits == ["train_dev_unseen"] and unseen.n == 150
    assert r.gaps["unseen_source_gap"].value == pytest.approx(unseen.error - r.sets["train_dev"].error)
    assert r.gaps["unseen_source_gap"].significant
    # The probe's own errors, sliced: rows made from held-out noise items carry them.
    by = {c["category"]: c for c in r.slices["train"].dimensions["sources"]}
    assert by["held-out (unseen) item"]["error_rate"] > by["seen items only"]["error_rate"]
    assert set(r.slices["train"].dimensions) >= {"noise item", "SNR band", "sources", "split"}
    assert r.slices["train"].n_joined == r.sets["train_dev"].n + unseen.n


def test_an_output_without_a_holdout_split_says_how_to_measure_the_gap(tmp_path):
    out = _write_output(tmp_path / "o", {"train": _rows("train", 200, TRAIN_ITEMS, 1),
                                        "train_dev": _rows("train_dev", 50, TRAIN_ITEMS, 2)})
    r = probe_errors(out, "speaker")
    assert r.errors["train_dev_unseen"] is None and r.gaps["unseen_source_gap"] is None
    assert any("holdout: true" in n for n in r.notes)
    assert "(the output has no holdout split)" in r.describe()


def test_clean_narrow_and_diverse_sets_against_a_noisy_dev_set(constructed):
    """The check of issue 14 on a constructed case: data mismatch dominates the clean set;
    the narrow set has a larger unseen-source gap and a worse dev error than the diverse
    one; the diverse set does better on dev than the clean one."""
    r = {k: probe_errors(constructed[k], "speaker", dev=constructed["dev"]) for k in ("clean", "narrow", "diverse")}
    assert r["clean"].dominant == "data_mismatch"
    assert r["narrow"].gap_values["unseen_source_gap"] > r["diverse"].gap_values["unseen_source_gap"] + 0.05
    assert r["narrow"].errors["dev"] > r["diverse"].errors["dev"] + 0.05
    assert r["diverse"].errors["dev"] < r["clean"].errors["dev"] - 0.05
    assert "data mismatch" in r["clean"].describe().split("dominant gap:")[1].splitlines()[0]


def test_html_report_holds_the_errors_gaps_and_slices(constructed, tmp_path, capsys):
    html = tmp_path / "probe.html"
    assert main(["mismatch", "probe", "--train", str(constructed["narrow"]), "--label", "speaker",
                 "--dev", str(constructed["dev"]), "--html", str(html)]) == 0
    text = capsys.readouterr().out
    assert "dominant gap:" in text and f"report: {html}" in text
    page = html.read_text()
    assert "<img" in page and "unseen-source gap" in page and "Where the probe errs" in page


def _coverage_of(out: Path) -> tuple[dict, object]:
    """A coverage report of a hand-built output (its shards have no stats files): the
    figures do not matter here, only that `shardsmith coverage` shows the probe beside them."""
    from engine.coverage import CoverageStats, build_catalog
    from engine.recipe import parse_recipe

    recipe = parse_recipe({
        "name": out.name, "seed": 1,
        "pools": {"speech": {"paths": ["speech/*.wav"]}, "noise": {"paths": ["noise/*.wav"], "holdout": 0.2}},
        "splits": {"train": {"samples": 10}},
        "synth": {"type": "speech_noise_mix", "speech": "speech", "noise": [{"pool": "noise", "snr_db_range": [0, 20]}]},
    })
    catalog = build_catalog([("noise", ["noise/n00.wav"], np.array([5.0]), np.array([False]))], {"noise": 1})
    cs = CoverageStats(catalog, {"train": False})
    cs.add_shard({"split": "train", "rows": 10, "seconds": 10.0, "pools": {"noise": {
        "items": ["noise/n00.wav"], "uses": [10], "us": [10_000_000], "heldout_uses": 0}}})
    return cs.report(recipe), cs


def test_coverage_shows_the_recorded_probe_verdict_and_when_it_is_stale(constructed, tmp_path, capsys, monkeypatch):
    import shutil

    import engine.coverage

    out = tmp_path / "narrow"
    shutil.copytree(constructed["narrow"], out)
    assert main(["mismatch", "probe", "--train", str(out), "--label", "speaker", "--dev", str(constructed["dev"]),
                 "--record", "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "probe.json").read_text())
    assert saved["probe"]["errors"] == verdict["errors"] and saved["probe"]["dominant"] == verdict["dominant"]
    assert saved["rows"] is None or isinstance(saved["rows"], int)

    monkeypatch.setattr(engine.coverage, "load_coverage_stats", lambda _out: _coverage_of(out))
    html = tmp_path / "coverage.html"
    main(["coverage", str(out), "--html", str(html)])
    text = capsys.readouterr().out
    dominant = verdict["dominant"].replace("_", " ").replace("unseen source", "unseen-source")
    assert "probe verdict (label 'speaker'" in text and f"dominant gap {dominant}" in text
    assert f"unseen sources {100 * verdict['errors']['train_dev_unseen']:.1f}%" in text
    assert str(out / "probe.json") in text and "STALE" not in text
    page = html.read_text()
    assert "Probe verdict" in page and "unseen-source gap" in page and "probe.json" in page
    main(["coverage", str(out), "--json"])
    assert json.loads(capsys.readouterr().out)["probe"]["dominant"] == verdict["dominant"]

    record = json.loads((out / "run.json").read_text())
    record["recipe_hash"] = "1" * 16  # the folder now holds another recipe's output
    (out / "run.json").write_text(json.dumps(record))
    main(["coverage", str(out)])
    assert "STALE: it was recorded for the output of another recipe" in capsys.readouterr().out

    (out / "probe.json").unlink()
    main(["coverage", str(out)])
    assert "probe verdict" not in capsys.readouterr().out


# --------------------------------------------------------------------------- clear errors


def test_a_missing_label_column_lists_the_columns_that_can_be_labels(constructed, capsys):
    assert main(["mismatch", "probe", "--train", str(constructed["diverse"]), "--label", "word"]) == 1
    err = capsys.readouterr().err
    assert "no 'word' column" in err and "columns that can be labels: speaker" in err and "--label" in err


def test_an_output_without_a_train_split_is_refused(constructed, capsys):
    assert main(["mismatch", "probe", "--train", str(constructed["dev"]), "--label", "speaker"]) == 1
    err = capsys.readouterr().err
    assert "has no train split (splits: dev)" in err and str(constructed["dev"]) in err


def test_a_label_with_a_single_class_is_refused(tmp_path):
    out = _write_output(tmp_path / "one", {"train": _rows("train", 40, None, 1, labels=("a",))})
    with pytest.raises(InputError, match=r"'speaker' has a single value \('a'\).*at least two classes"):
        probe_errors(out, "speaker")


def test_dev_labels_the_train_set_never_has_are_scored_as_errors_and_named(constructed, tmp_path):
    dev = _dev_set(tmp_path, labels=("a", "b", "zz"))
    r = probe_errors(constructed["diverse"], "speaker", dev=dev)
    s = r.sets["dev"]
    assert s.unseen_labels == {"zz": 133}
    assert s.errors >= 133
    assert any("'zz' (133)" in n and "scored as errors" in n for n in r.notes)


def test_paths_of_the_wrong_kind_are_refused_naming_the_argument(constructed, tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert main(["mismatch", "probe", "--train", str(f), "--label", "speaker"]) == 1
    assert f"--train {f}: is a file, not a folder" in capsys.readouterr().err
    assert main(["mismatch", "probe", "--train", str(constructed["diverse"]), "--label", "speaker",
                 "--html", str(tmp_path)]) == 1
    assert "is a folder; give the HTML report a file name" in capsys.readouterr().err
    assert main(["mismatch", "probe", "--train", str(tmp_path / "nope"), "--label", "speaker"]) == 1
    assert "nope: not found" in capsys.readouterr().err
    assert main(["mismatch", "probe", "--train", str(tmp_path), "--label", "speaker"]) == 1
    assert "no run record" in capsys.readouterr().err


def test_unlabelled_dev_files_are_a_clear_error(constructed, tmp_path):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "a.wav").write_bytes(b"RIFF")
    with pytest.raises(InputError, match="lies directly in the folder, so it has no label"):
        probe_errors(constructed["diverse"], "speaker", dev=tmp_path / "dev")
    manifest = tmp_path / "dev.csv"
    manifest.write_text("path,word\ndev/a.wav,x\n")
    with pytest.raises(InputError, match=r"no 'speaker' column \(columns: path, word\)"):
        probe_errors(constructed["diverse"], "speaker", dev=manifest)


def test_ten_thousand_rows_take_seconds(tmp_path):
    out = _write_output(tmp_path / "big", {"train": _rows("train", 10_000, TRAIN_ITEMS, 1),
                                          "train_dev": _rows("train_dev", 1000, TRAIN_ITEMS, 2)})
    start = time.perf_counter()
    r = probe_errors(out, "speaker")
    assert time.perf_counter() - start < 10  # typically ~1 s; generous for a loaded CI machine
    assert r.sets["train"].n == 10_000


# --------------------------------------------------------------------------- real demo audio on Ray


def _demo_sets(corpus: Path, base: Path) -> dict[str, dict]:
    """Recipes for the check of issue 14 on the demo corpus: half of the utterances (one of
    each speaker's two takes of a word) for training, the other half for dev; the noise
    items of six files for dev only; a clean set (60 dB SNR), a narrow one (the first 3 s
    of one clip), a diverse one (the 19 other noise files); every training set has a
    holdout split made from the same 4 held-out noise items."""
    import shutil

    import soundfile as sf

    from engine.pools import select_holdout

    rows = list(csv.DictReader(open(corpus / "speech" / "manifest.csv")))
    seen: set[tuple[str, str]] = set()
    halves: dict[str, list[dict]] = {"train": [], "dev": []}
    for r in rows:
        key = (r["speaker"], r["text"])
        halves["dev" if key in seen else "train"].append({**r, "path": str(corpus / "speech" / r["path"])})
        seen.add(key)
    for name, part in halves.items():
        with open(base / f"speech_{name}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["path", "text", "speaker"])
            w.writeheader()
            w.writerows(part)
    dev_noise = {"babble-2", "car-2", "clatter-2", "rain-2", "road-2", "wind-2"}
    for f in sorted((corpus / "noise").glob("*/*.wav")):
        folder = base / ("noise_dev" if f.stem in dev_noise else "noise_train")
        folder.mkdir(exist_ok=True)
        shutil.copy(f, folder / f.name)
    (base / "narrow").mkdir()
    x, sr = sf.read(corpus / "noise" / "car" / "car-3.wav")
    sf.write(base / "narrow" / "car-3-first3s.wav", x[: 3 * sr], sr)
    train_ids = [f"noise_train/{f.name}" for f in sorted((base / "noise_train").glob("*.wav"))]
    held = [i for i, h in zip(train_ids, select_holdout("noise", train_ids, 0.2)) if h]
    narrow_ids = ["narrow/car-3-first3s.wav", *held]
    assert list(select_holdout("noise", narrow_ids, 0.8)) == [False] + [True] * len(held)  # the clip is trained on

    def recipe(name, seed, paths, holdout, snr, speech="speech_train.csv", splits=None):
        return {
            "name": name, "seed": seed,
            "output": {"format": "arrow", "samples_per_shard": 80, "audio_codec": "flac"},
            "pools": {"speech": {"manifest": speech},
                      "noise": {"paths": paths, **({"holdout": holdout} if holdout else {})}},
            "splits": splits or {"train": {"samples": 160}, "train_dev": {"samples": 40},
                                 "train_dev_unseen": {"samples": 60, "holdout": True}},
            "synth": {"type": "speech_noise_mix", "speech": "speech", "sample_rate": 16000,
                      "noise": [{"pool": "noise", "snr_db_range": snr}], "level_dbfs_range": [-32, -20]},
        }

    return {
        "clean": recipe("clean", 11, ["noise_train/*.wav"], 0.2, [60, 60]),
        "narrow": recipe("narrow", 12, ["narrow/*.wav", *held], 0.8, [0, 20]),
        "diverse": recipe("diverse", 13, ["noise_train/*.wav"], 0.2, [0, 20]),
        "dev": recipe("dev", 14, ["noise_dev/*.wav"], 0, [0, 20], speech="speech_dev.csv",
                      splits={"dev": {"samples": 120}}),
    }


@pytest.fixture(scope="module")
def demo_runs(ray_local, demo_corpus, tmp_path_factory) -> dict[str, Path]:
    from engine.recipe import load_recipe
    from engine.runtime import run

    base = tmp_path_factory.mktemp("probe_demo")
    outs = {}
    for name, data in _demo_sets(demo_corpus, base).items():
        recipe = load_recipe(write_recipe(base / f"{name}.yaml", data))
        assert run(recipe, base / "out" / name, workers=2, progress=False, allow_narrow=True).status == "complete"
        outs[name] = base / "out" / name
    return outs


@pytest.mark.ray
def test_on_demo_audio_diversity_beats_one_clip_and_clean_speech_on_noisy_dev(demo_runs):
    r = {k: probe_errors(demo_runs[k], "speaker", dev=demo_runs["dev"]) for k in ("clean", "narrow", "diverse")}
    assert r["clean"].dominant == "data_mismatch"
    assert r["narrow"].gap_values["unseen_source_gap"] > r["diverse"].gap_values["unseen_source_gap"] + 0.1
    assert r["narrow"].errors["dev"] > r["diverse"].errors["dev"] + 0.1
    assert r["diverse"].errors["dev"] < r["clean"].errors["dev"] - 0.1
    # The probe's slices of dev name the dev noise items, none of them seen in training.
    items = {c["category"] for c in r["diverse"].slices["dev"].dimensions["noise item"]}
    assert items and all(i.startswith("noise_dev/") for i in items)


@pytest.mark.ray
def test_dev_as_labelled_audio_files_a_folder_per_class_or_a_manifest(demo_runs, demo_corpus, capsys):
    speech = demo_corpus / "speech"  # v1/ .. v6/: one folder per speaker
    by_folder = probe_errors(demo_runs["diverse"], "speaker", dev=speech)
    by_manifest = probe_errors(demo_runs["diverse"], "speaker", dev=speech / "manifest.csv")
    assert by_folder.sets["dev"].n == by_manifest.sets["dev"].n == 120
    assert by_folder.errors["dev"] == by_manifest.errors["dev"]
    args = ["mismatch", "probe", "--train", str(demo_runs["narrow"]), "--label", "speaker", "--dev",
            str(speech / "manifest.csv"), "--json"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first  # seeded: the same numbers on every run
    assert json.loads(first)["sets"]["dev"]["source"].endswith("(column 'speaker')")
