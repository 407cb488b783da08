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
