"""Every recipe the docs show is a recipe (issue 16): each ```yaml block of README.md and
docs/*.md that has both ``name:`` and ``synth:`` parses with
:func:`engine.recipe.parse_recipe` (its paths need not exist; nothing is indexed). A block
meant as a fragment or an illustration only starts with the line
``# illustration only`` and is skipped (docs/recipes.md says so)."""

from __future__ import annotations

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
