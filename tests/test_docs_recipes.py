"""Every recipe the docs show is a recipe (issue 16): each ```yaml block of README.md and
docs/*.md that has both ``name:`` and ``synth:`` parses with
:func:`engine.recipe.parse_recipe` (its paths need not exist; nothing is indexed). A block
meant as a fragment or an illustration only starts with the line
``# illustration only`` and is skipped (docs/recipes.md says so)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from engine.recipe import parse_recipe
from engine.synth.registry import registrations

ROOT = Path(__file__).parent.parent
MARKER = "# illustration only"
_BLOCK = re.compile(r"^```ya?ml[^\n]*\n(.*?)^```", re.M | re.S)


def recipe_blocks() -> list:
    out = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text()
        for m in _BLOCK.finditer(text):
            body = m.group(1)
            if body.lstrip().startswith(MARKER):
                continue
            if re.search(r"^name:", body, re.M) and re.search(r"^synth:", body, re.M):
                line = text[: m.start()].count("\n") + 1
                out.append(pytest.param(body, id=f"{page.relative_to(ROOT)}:{line}"))
    return out


BLOCKS = recipe_blocks()


def test_the_docs_show_recipes():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("body", BLOCKS)
def test_every_recipe_in_the_docs_parses(body, tmp_path):
    data = yaml.safe_load(body)
    kind = (data.get("synth") or {}).get("type")
    if kind not in registrations():
        # docs/synthesizers.md's plugin: tests/test_synth_plugin.py installs it from the
        # doc's own code blocks and runs this very recipe
        pytest.skip(f"synth type {kind!r} is the plugin of docs/synthesizers.md (test_synth_plugin.py)")
    parse_recipe(data, base_dir=tmp_path)


def test_no_benchmark_names_a_path_of_one_machine():
    """issue 16: a benchmark docstring said /work/venv/bin/python, which no clone has."""
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        text = path.read_text()
        assert not re.search(r"(/work/|/home/|venv/bin/)", text), path.name


def test_the_params_example_of_audio_md_is_the_real_row_it_names(demo_corpus, tmp_path):
    """issue 16: the example showed item ids no row has and a cut-off outside its range.
    docs/audio.md names the row and the command; its params are drawn again here."""
    from engine.pools import index_pools
    from engine.recipe import load_recipe
    from engine.rng import sample_rng
    from engine.synth import build_synthesizer

    doc = (ROOT / "docs" / "audio.md").read_text()
    head = doc.index("A real row (`demo_in_car-train-000000001`")
    block = re.search(r"```json\n(.*?)```", doc[head:], re.S).group(1)
    shown = json.loads(block)
    filtered = re.search(r"row\s+`demo_in_car-train-000000004`.*?```json\n(.*?)```", doc[head:], re.S).group(1)
    shown_filter = json.loads("{" + filtered + "}")["perturb"]
    # the recipe where the doc's command runs it: recipes/ beside demo_data/
    (tmp_path / "recipes").mkdir()
    (tmp_path / "demo_data").symlink_to(demo_corpus)
    path = tmp_path / "recipes" / "demo_in_car.yaml"
    path.write_text((ROOT / "recipes" / "demo_in_car.yaml").read_text())
    recipe = load_recipe(path, ["splits.train.samples=200"])
    synth = build_synthesizer(recipe, index_pools(recipe))
    try:
        drawn = [synth.sample_params(sample_rng(recipe.seed, "train", i), holdout_split=False) for i in (1, 4)]
    finally:
        synth.close()
    assert json.loads(json.dumps(drawn[0])) == shown
    assert json.loads(json.dumps(drawn[1]["noise"][0]["perturb"])) == shown_filter
    low, high = recipe.synth.noise[0].perturb.filter.lowpass_hz_range
    assert low <= shown_filter["filter"]["lowpass_hz"] <= high
