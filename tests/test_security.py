"""Recipes are data and output stays inside OUT: a tampered run record cannot make
--overwrite delete anything outside OUT, and YAML tags cannot run code."""

from __future__ import annotations

import json

import pytest

from engine.errors import RecipeError
from engine.recipe import load_recipe
from engine.sink import remove_listed


def test_overwrite_never_deletes_files_outside_out_even_if_the_run_record_lists_them(tmp_path):
    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)
    (out / "train" / "a.arrow").write_bytes(b"x")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    absolute = tmp_path / "absolute.txt"
    absolute.write_text("keep me too")
    record = {"splits": {"train": {"shards": [
        {"file": "train/a.arrow", "stats": "../victim.txt"},
        {"file": str(absolute), "stats": "train/../../victim.txt"},
    ]}}, "extra_files": ["../../etc/passwd"]}
    (out / "run.json").write_text(json.dumps(record))
    removed = remove_listed(out, record)
    assert removed == 2  # train/a.arrow and run.json
    assert victim.read_text() == "keep me" and absolute.read_text() == "keep me too"
    assert not (out / "train").exists()  # emptied folder inside OUT is tidied


def test_overwrite_leaves_unlisted_files_inside_out_alone(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("x")
    (out / "run.json").write_text("{}")
    remove_listed(out, {"splits": {}})
    assert (out / "mine.txt").exists() and not (out / "run.json").exists()


@pytest.mark.parametrize("payload", [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/new:subprocess.Popen [['touch', '{marker}']]",
    "!!python/name:os.system",
])
def test_yaml_tags_that_would_run_code_are_recipe_errors(tmp_path, payload):
    marker = tmp_path / "pwned"
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\nseed: " + payload.format(marker=marker) + "\n")
    with pytest.raises(RecipeError):
        load_recipe(recipe)
    assert not marker.exists()


# --------------------------------------------------------------------------- plain data

_HEAD = """name: t_plain
seed: 7
pools:
  speech: {paths: ['speech/*.wav']}
  cabin:
    paths: {paths}
splits:
  train: {samples: 10}
synth:
  type: speech_noise_mix
  speech: speech
  noise: [{pool: cabin, snr_db_range: [0, 20]}]
"""


def _recipe_text(paths: str) -> str:
    return _HEAD.replace("{paths}", paths)


@pytest.mark.parametrize("value, line, words", [
    ("!!set {car/a.wav: null, road/b.wav: null, wind/c.wav: null}", 6, ["!!set", "write a list"]),
    ("!!binary aGVsbG8=", 6, ["!!binary", "bytes"]),
    ("!!omap [{a: car/*.wav}]", 6, ["!!omap", "plain mapping"]),
    ("!!pairs [{a: car/*.wav}]", 6, ["!!pairs"]),
    ("!!timestamp 2024-01-01", 6, ["date/time", "quote it"]),
    ("[car/*.wav, 2024-01-01]", 6, ["'2024-01-01' reads as a YAML date", "quote it"]),
    ("!glob car/*.wav", 6, ["!glob", "remove the tag"]),
    ("!!python/tuple [car/*.wav]", 6, ["!!python/tuple", "Python object"]),
])
def test_yaml_tags_that_are_not_plain_data_are_recipe_errors_naming_the_line(tmp_path, value, line, words):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(_recipe_text(value))
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe)
    msg = str(info.value)
    assert msg.startswith(f"{recipe}: line {line}, column ")
    assert "a recipe holds only strings, numbers, booleans, null, lists and mappings" in msg or "quote it" in msg
    for word in words:
        assert word in msg


def test_standard_tags_and_merge_keys_are_plain_data(tmp_path):
    recipe = tmp_path / "r.yaml"
    text = _recipe_text("[!!str car/*.wav]").replace("seed: 7", "seed: !!int 7")
    text = text.replace("  train: {samples: 10}", "  dev: &d {samples: 10}\n  train: {<<: *d, samples: 12}")
    recipe.write_text(text)
    r = load_recipe(recipe)
    assert r.seed == 7 and r.splits["train"].samples == 12 and r.splits["dev"].samples == 10


@pytest.mark.parametrize("override, words", [
    ("pools.cabin.paths=!!set {a: null, b: null}", ["--set pools.cabin.paths", "!!set", "write a list"]),
    ("name=2024-01-01", ["--set name", "date/time", "quote it"]),
    ("seed=!!python/object/apply:os.getpid []", ["--set seed", "!!python/object/apply:os.getpid"]),
])
def test_set_values_follow_the_same_plain_data_rule(tmp_path, override, words):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(_recipe_text("[car/*.wav]"))
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe, [override])
    for word in words:
        assert word in str(info.value)


def test_a_set_handed_to_parse_recipe_is_refused_too():
    import yaml

    from engine.recipe import parse_recipe

    data = yaml.safe_load(_recipe_text("[car/*.wav]"))
    data["pools"]["cabin"]["paths"] = {"car/*.wav", "road/*.wav"}
    with pytest.raises(RecipeError, match=r"pools\.cabin\.paths: .* is a set; .*use a list"):
        parse_recipe(data, source="api")


_HASH = """
import sys
from engine.recipe import load_recipe, recipe_hash
print(recipe_hash(load_recipe(sys.argv[1])))
"""


def test_the_recipe_hash_is_a_function_of_the_text_not_of_the_process(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    recipe = tmp_path / "r.yaml"
    recipe.write_text(_recipe_text("[car/a.wav, road/b.wav, wind/c.wav, rain/d.wav, hum/e.wav]"))
    root = Path(__file__).resolve().parents[1]
    hashes = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root), "NO_ALBUMENTATIONS_UPDATE": "1"}
        done = subprocess.run([sys.executable, "-c", _HASH, str(recipe)], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        hashes.add(done.stdout.strip())
    assert len(hashes) == 1
    # and the text that once gave a per-process hash (a !!set of paths) is refused instead
    recipe.write_text(_recipe_text("!!set {car/a.wav: null, road/b.wav: null, wind/c.wav: null}"))
    env = {**os.environ, "PYTHONHASHSEED": "1", "PYTHONPATH": str(root), "NO_ALBUMENTATIONS_UPDATE": "1"}
    done = subprocess.run([sys.executable, "-c", _HASH, str(recipe)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0 and "!!set" in done.stderr
