"""``shardsmith export``'s sidecars read as a person reads them and mean the same from any
folder: every float rounded to 6 significant digits (no float32 noise), each source's
``path`` absolute (it opens from any working directory, whatever the recipe's relative
paths were), a composite's object masks written as files the sidecar names relative to
itself, and ``--n``'s default shown in ``--help``. Outputs are written without Ray
(tests/test_replay.py's helper)."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, strategies as st

from engine.cli import main
from engine.export import source_file
from engine.image.io import decode as decode_image
from engine.recipe import parse_recipe
from engine.statistics import round_floats
from engine.synth.base import SIDECAR_DIGITS

from .conftest import all_rows, small_recipe, write_recipe
from .test_image_run import composite_recipe
from .test_replay import write_without_ray


@pytest.fixture(scope="module")
def relative_out(demo_corpus, tmp_path_factory) -> tuple[Path, Path]:
    """An output of a recipe whose pool paths are relative to its own folder, as the demo
    recipes' are (``../demo_data/...``); returns (OUT, the recipe's folder)."""
    root = tmp_path_factory.mktemp("export_rel")
    recipes = root / "recipes"
    recipes.mkdir()
    corpus = Path(os.path.relpath(demo_corpus, recipes)).as_posix()
    data = small_recipe(demo_corpus, splits={"train": {"samples": 4}})
    data["pools"] = {
        "speech": {"manifest": f"{corpus}/speech/manifest.csv"},
        "cabin": {"paths": [f"{corpus}/noise/car/*.wav"]},
    }
    return write_without_ray(write_recipe(recipes / "r.yaml", data), root / "out"), recipes


@pytest.fixture(scope="module")
def composite_out(demo_corpus, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("export_composite")
    data = composite_recipe(demo_corpus)  # test_image_run's, smaller, 2-3 objects, rotated only
    del data["guards"]
    data["seed"] = 3
    data["output"]["samples_per_shard"] = 4
    data["splits"] = {"train": {"samples": 3}}
    data["synth"].update(count_range=[2, 3], transforms=[{"Affine": {"rotate": [-15, 15], "p": 0.5}}])
    return write_without_ray(write_recipe(d / "r.yaml", data), d / "out")


def _floats(node):
    if isinstance(node, float):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _floats(v)
    elif isinstance(node, list):
        for v in node:
            yield from _floats(v)


def _significant_digits(number: str) -> int:
    mantissa = re.sub(r"[eE].*$", "", number).lstrip("-").replace(".", "").lstrip("0")
    return len(mantissa.rstrip("0")) if "." in number else len(mantissa)


# --------------------------------------------------------------------------- rounding


def test_sidecar_floats_are_rounded_to_six_significant_digits(relative_out, tmp_path):
    out, _ = relative_out
    assert main(["export", str(out), "--split", "train", "--n", "3", "--to", str(tmp_path)]) == 0
    rows = {r["sample_id"]: r for r in all_rows(out, "train")}
    sides = sorted(tmp_path.glob("*.json"))
    assert len(sides) == 3
    for side_file in sides:
        text = side_file.read_text()
        side = json.loads(text)
        row = rows[side["sample_id"]]
        # the stored float32 duration carries noise; the sidecar holds the value it stands for
        assert side["duration_s"] == float(f"{row['duration_s']:.6g}")
        for got, stored in zip(side["sources"], row["sources"]):
            assert got["start_s"] == float(f"{stored['start_s']:.6g}")
            assert got["gain_db"] == float(f"{stored['gain_db']:.6g}")
        assert all(float(f"{v:.{SIDECAR_DIGITS}g}") == v for v in _floats(side))
        numbers = re.findall(r"-?\d+\.\d+(?:[eE][-+]?\d+)?", text)
        assert numbers and max(_significant_digits(n) for n in numbers) <= SIDECAR_DIGITS, text


def test_float32_noise_reads_as_the_value_it_stands_for():
    assert round_floats(1.6007499694824219) == 1.60075
    assert round_floats(float(np.float32(0.1))) == 0.1
    assert round_floats({"a": [float("nan"), float("inf"), 3, True, "x"]}) == {"a": [None, None, 3, True, "x"]}


@given(st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False))  # a subnormal has fewer digits to keep
def test_rounding_keeps_six_significant_digits_and_is_idempotent(x):
    r = round_floats(x)
    assert isinstance(r, float) and round_floats(r) == r
    assert math.isclose(r, x, rel_tol=5e-6, abs_tol=0.0) or abs(x) < 1e-300
    assert len(f"{abs(r):.6e}".split("e")[0].replace(".", "").rstrip("0")) <= SIDECAR_DIGITS


# --------------------------------------------------------------------------- paths


def test_source_paths_open_from_any_working_directory(relative_out, tmp_path, monkeypatch):
    out, recipes = relative_out
    run_from, read_from = tmp_path / "a", tmp_path / "b" / "c"
    run_from.mkdir()
    read_from.mkdir(parents=True)
    monkeypatch.chdir(run_from)
    assert main(["export", str(out), "--split", "train", "--n", "2", "--to", "listen"]) == 0
    monkeypatch.chdir(read_from)
    sides = sorted((run_from / "listen").glob("*.json"))
    assert len(sides) == 2
    for side_file in sides:
        side = json.loads(side_file.read_text())
        for src in side["sources"]:
            assert src["item"].startswith("../"), src  # the item id, relative to the recipe's folder
            path = Path(src["path"])
            assert path.is_absolute() and path.is_file(), src
            assert os.path.samefile(path, recipes / src["item"])
            assert sf.info(str(path)).samplerate > 0


def test_source_file_names_the_container_of_an_item_inside_one(tmp_path):
    recipe = parse_recipe({
        "name": "t", "seed": 1,
        "pools": {
            "speech": {"paths": ["a/*.wav"]},
            "table": {"format": "table", "paths": ["t/*.parquet"]},
            "hum": {"kind": "noise_generator"},
        },
        "splits": {"train": {"samples": 1}},
        "synth": {"type": "speech_noise_mix", "speech": "speech", "noise": [{"pool": "hum", "snr_db_range": [0, 5]}]},
    }, base_dir=tmp_path / "recipes")
    base = (tmp_path / "recipes").resolve()
    assert source_file(recipe, "speech", "../x/a#1.wav") == str(base.parent / "x" / "a#1.wav")
    assert source_file(recipe, "table", "t/part-0.parquet#row=3") == str(base / "t" / "part-0.parquet")
    assert source_file(recipe, "speech", "s3://bucket/a.wav") == "s3://bucket/a.wav"
    assert source_file(recipe, "hum", "gen:pink/0003") is None
    assert source_file(recipe, "nope", "a.wav") is None


# --------------------------------------------------------------------------- masks


def test_composite_masks_are_exported_as_files_the_sidecar_names(composite_out, tmp_path):
    assert main(["export", str(composite_out), "--split", "train", "--n", "2", "--to", str(tmp_path)]) == 0
    assert len(list(tmp_path.glob("*.png"))) == 2  # the images; masks go under masks/
    rows = {r["sample_id"]: r for r in all_rows(composite_out)}
    masks = 0
    for side_file in sorted(tmp_path.glob("*.json")):
        side = json.loads(side_file.read_text())
        row = rows[side["sample_id"]]
        assert len(side["objects"]) == len(row["objects"]) >= 1
        for got, stored in zip(side["objects"], row["objects"]):
            mask_file = side_file.parent / got["mask"]  # relative to the sidecar's folder
            assert not Path(got["mask"]).is_absolute() and mask_file.read_bytes() == stored["mask"]
            mask = decode_image(mask_file.read_bytes(), "gray")
            assert mask.shape == (row["height"], row["width"]) and int((mask > 0).sum()) == stored["area"]
            masks += 1
    assert masks == len(list((tmp_path / "masks").glob("*.png")))


# --------------------------------------------------------------------------- help


def test_export_help_shows_the_default_number_of_rows(capsys):
    with pytest.raises(SystemExit) as done:
        main(["export", "--help"])
    assert done.value.code == 0
    assert re.search(r"--n N\s+rows to export.*\(default: 20\)", capsys.readouterr().out, re.S)


def test_a_negative_n_is_refused(relative_out, tmp_path, capsys):
    out, _ = relative_out
    assert main(["export", str(out), "--split", "train", "--n", "-1", "--to", str(tmp_path / "x")]) == 1
    assert "--n -1: must be 0 or more" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
