"""Every registered synthesizer keeps the same contract (engine/synth_checks.py): same seed
same bytes, params survive JSON, replay reproduces the row, sources fit the schema, the
embedding has its declared size, the forecast's pieces match the realized ones, slices
yield categories. Each built-in runs on the demo recipe that uses it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine.recipe import parse_recipe
from engine.synth import registrations
from engine.synth_checks import CHECKS, check_context

from .test_audio_channel_mix import EVERY_STAGE, NOISE_EFFECTS

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
BUILT_IN = {"speech_noise_mix", "image_augment", "image_composite"}


def _demo_recipe_of(synth_type: str, corpus: Path):
    """The demo recipe that uses ``synth_type``, pointed at the session's demo corpus."""
    for path in sorted(RECIPES.glob("demo_*.yaml")):
        data = yaml.safe_load(path.read_text())
        if data["synth"]["type"] == synth_type:
            data["splits"] = {name: {**cfg, "samples": 6} for name, cfg in data["splits"].items()}
            data["output"]["samples_per_shard"] = 6
            # the demo recipes name ../demo_data; the corpus of this session stands in
            text = yaml.safe_dump(data).replace("../demo_data/", f"{corpus}/")
            return parse_recipe(yaml.safe_load(text), base_dir=RECIPES)
    return None


@pytest.fixture(scope="module")
def contexts(demo_corpus, tmp_path_factory):
    cache = {}

    def get(synth_type: str):
        if synth_type not in cache:
            recipe = _demo_recipe_of(synth_type, demo_corpus)
            if recipe is None:
                pytest.skip(f"no demo recipe uses {synth_type!r} (a synthesizer installed from elsewhere)")
            cache[synth_type] = check_context(recipe, tmp_path_factory.mktemp(synth_type), samples=6)
        return cache[synth_type]

    return get


def test_the_built_in_synthesizers_are_registered_by_entry_point():
    assert BUILT_IN <= set(registrations())


@pytest.mark.parametrize("synth_type", sorted(registrations()))
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_every_synthesizer_keeps_the_contract(synth_type, check, contexts):
    check(contexts(synth_type))


@pytest.fixture(scope="module")
def speech_perturbed(demo_corpus, tmp_path_factory):
    """The demo speech_noise_mix recipe with every speech perturbation on (issue 17)."""
    from engine.recipe import recipe_to_dict

    data = recipe_to_dict(_demo_recipe_of("speech_noise_mix", demo_corpus))
    data["synth"]["speech_perturb"] = {"speed_range": [0.9, 1.1], "tempo_range": [0.8, 1.25],
                                       "pitch_semitones_range": [-3, 3], "gain_db_range": [-6, 6]}
    return check_context(parse_recipe(data, base_dir=RECIPES), tmp_path_factory.mktemp("speech_perturb"), samples=6)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_speech_perturbation_keeps_the_contract(check, speech_perturbed):
    assert all("speech_perturb" in params for _, _, params, _ in speech_perturbed.drawn())
    check(speech_perturbed)


@pytest.fixture(scope="module")
def channel_context(demo_corpus, tmp_path_factory):
    """The demo speech recipe with every synth.channel stage on, and eq and distortion on
    its first noise layer (tests/test_audio_channel_mix.py)."""
    data = yaml.safe_load((RECIPES / "demo_in_car.yaml").read_text())
    data["splits"] = {name: {**cfg, "samples": 4} for name, cfg in data["splits"].items()}
    data["output"]["samples_per_shard"] = 4
    data["synth"]["channel"] = EVERY_STAGE
    data["synth"]["noise"][0]["perturb"].update(NOISE_EFFECTS)
    text = yaml.safe_dump(data).replace("../demo_data/", f"{demo_corpus}/")
    recipe = parse_recipe(yaml.safe_load(text), base_dir=RECIPES)
    return check_context(recipe, tmp_path_factory.mktemp("channel"), samples=4)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_speech_noise_mix_with_every_channel_stage_keeps_the_contract(check, channel_context):
    check(channel_context)
