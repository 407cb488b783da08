"""The telephone and hands-free templates (recipes/call_centre.yaml,
recipes/in_car_hands_free.yaml; issue 17): they are valid and use the speech perturbation
and the channel; on the demo corpus every row replays to its bytes, every drawn value
lies in a range the recipe states (so coverage histograms it against that range), and
``mismatch slices`` groups the rows by the codec, the telephone band and the speech
perturbation they went through. Outputs are written without Ray (tests/test_replay.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

import engine
from engine.mismatch.slices import slice_errors
from engine.recipe import load_recipe, parse_recipe, recipe_hash, recipe_to_dict
from engine.replayer import Replayer
from engine.stats import flatten_params
from engine.synth import synthesizer_class
from engine.synth.speech_noise_mix.provenance import channel_categories
from engine.synth_checks import CHECKS, check_context

from .conftest import all_rows, write_recipe
from .test_replay import write_without_ray

RECIPES = Path(__file__).parent.parent / "recipes"
TEMPLATES = ["call_centre.yaml", "in_car_hands_free.yaml"]
# Numbers in params that are measured or placed, not drawn from a range of the recipe: the
# SNRs the channel left (measured), an event's position (anywhere in the utterance), a
# layer's share of the total noise power (it follows from the layers kept), a simulated
# room's measured RT60 and DRR, and what follows from its draws (positions along the floor,
# anywhere in the room; the distance; the predicted RT60; the reflection order).
UNRANGED = {"applied.channel.snr_db_before", "applied.channel.snr_db_after"}
UNRANGED_ROOM = {"rt60_s", "drr_db", "source_x_m", "source_y_m", "mic_x_m", "mic_y_m", "source_mic_distance_m",
                 "rt60_predicted_s", "max_order"}


def _unranged(name: str, simulated_room: bool) -> bool:
    if name in UNRANGED or (name.startswith("events[") and name.endswith(".at_s")):
        return True
    if name.startswith("noise[") and name.endswith(".share"):
        return True
    return simulated_room and name.removeprefix("reverb.").removeprefix("room.") in UNRANGED_ROOM


@pytest.mark.parametrize("name", TEMPLATES)
def test_the_templates_are_valid_and_use_speech_perturbation_and_the_channel(name):
    recipe = load_recipe(RECIPES / name)
    synth = recipe.synth
    assert synth.speech_perturb is not None and synth.reverb is not None
    types = [stage.type for stage in synth.channel]
    assert "codec" in types and "telephone" in types and ("low_shelf" in types or "peaking" in types)
    # what run.json and every worker parse again
    again = parse_recipe(recipe_to_dict(recipe), base_dir=RECIPES)
    assert again.synth == synth and recipe_hash(again) == recipe_hash(recipe)


def test_the_call_centre_has_the_telephone_codecs_and_the_in_car_template_a_simulated_cabin():
    centre = load_recipe(RECIPES / "call_centre.yaml")
    codecs = {name for stage in centre.synth.channel if stage.type == "codec" for name, _ in stage.codecs()}
    assert codecs == {"mulaw", "alaw", "gsm", "opus", "mp3"}
    assert centre.synth.speech_perturb.speed_range == (0.9, 1.1)
    car = load_recipe(RECIPES / "in_car_hands_free.yaml")
    assert car.synth.speech_perturb.tempo_range and car.synth.speech_perturb.pitch_semitones_range
    assert car.synth.total_snr_db_range[0] < 0  # low SNR
    cabin = car.pools[car.synth.reverb.pool]
    assert cabin.method == "image_source" and cabin.room_x_m_range[1] <= 3.0 and cabin.absorption_range[0] >= 0.4


@pytest.fixture(scope="module", params=TEMPLATES)
def template_out(request, demo_corpus, tmp_path_factory) -> tuple[str, Path]:
    """The template on the demo corpus with a few samples per split."""
    name = request.param
    d = tmp_path_factory.mktemp(Path(name).stem)
    data = _on_the_corpus(name, demo_corpus)
    data["splits"] = {split: {**cfg, "samples": 3 if split == "train" else 2} for split, cfg in data["splits"].items()}
    data["output"]["samples_per_shard"] = 4
    return name, write_without_ray(write_recipe(d / name, data), d / "out")


def _on_the_corpus(name: str, corpus: Path) -> dict:
    """The template with its pools on this session's demo corpus (it names ../demo_data)."""
    return yaml.safe_load((RECIPES / name).read_text().replace("../demo_data/", f"{corpus}/"))


@pytest.fixture(scope="module", params=TEMPLATES)
def template_context(request, demo_corpus, tmp_path_factory):
    """The synthesizer contract suite's context over a template (6 samples, 2 per split)."""
    recipe = parse_recipe(_on_the_corpus(request.param, demo_corpus), base_dir=RECIPES)
    return check_context(recipe, tmp_path_factory.mktemp("contract"), samples=6)


# Replay is checked below on a small output of each template: the contract's own replay
# check writes the template's whole first shard (200 rows), half a minute each.
CONTRACT = [c for c in CHECKS if c.__name__ != "check_replay_reproduces_the_row"]


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__.removeprefix("check_"))
def test_the_templates_keep_the_synthesizer_contract(check, template_context):
    check(template_context)


def test_every_row_of_a_template_replays_to_its_bytes(template_out):
    _, out = template_out
    rows = all_rows(out)
    assert len(rows) == 7
    with Replayer(out) as replayer:
        for row in rows:
            assert replayer.replay(row["sample_id"]).identical, row["sample_id"]


def test_every_drawn_value_of_a_template_lies_in_a_range_of_its_recipe(template_out):
    """Coverage histograms each against the range the recipe states (in the synth block,
    or for a generated room in the reverb pool)."""
    name, out = template_out
    recipe = load_recipe(out / ".." / name)
    simulated = getattr(recipe.pools[recipe.synth.reverb.pool], "method", None) == "image_source"
    report = engine.analyze_coverage(out)["params"]
    skip = synthesizer_class("speech_noise_mix").unsampled_params
    seen = set()
    for row in all_rows(out):
        for key, value in flatten_params(json.loads(row["params"]), skip):
            if _unranged(key, simulated):
                continue
            bounds = report[key]["range"]
            assert bounds is not None, f"{name}: coverage finds no range for {key}"
            assert bounds[0] <= value <= bounds[1], (name, key, value, bounds)
            seen.add(key)
    assert {"speech_perturb.speed", "speech_perturb.tempo"} & seen
    assert {k for k in seen if k.startswith("channel[")}
    assert simulated == ("reverb.room.room_x_m" in seen)


def test_rows_are_sliced_by_the_codec_the_telephone_band_and_the_speech_perturbation(template_out, tmp_path):
    name, out = template_out
    rows = all_rows(out)
    mix = synthesizer_class("speech_noise_mix")
    for row in rows:
        params = json.loads(row["params"])
        cats = mix.slice_categories(params, row["sources"])
        ran = [s["codec"] for s in params.get("channel", []) if s["type"] == "codec"]
        assert cats["codec"] == (ran or ["(none)"])
        band = [s for s in params.get("channel", []) if s["type"] == "telephone"]
        assert cats["phone band"] == (["narrowband" if band[0]["narrowband"] else "band-pass"] if band
                                          else ["(none)"])
        assert cats["speech"] and "(none)" not in cats["speech"]
    # every row whose line codec is the first one seen is wrong: its error rate is 1
    first = mix.slice_categories(json.loads(rows[0]["params"]), [])["codec"][0]
    preds = tmp_path / "p.csv"
    with open(preds, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sample_id", "correct"])
        for row in rows:
            codecs = mix.slice_categories(json.loads(row["params"]), [])["codec"]
            w.writerow([row["sample_id"], "false" if first in codecs else "true"])
    report = slice_errors(out, preds)
    by_codec = {c["category"]: c for c in report.dimensions["codec"]}
    assert by_codec[first]["error_rate"] == 1.0
    assert "speech" in report.dimensions


def test_channel_categories_name_what_ran():
    params = {
        "channel": [{"layer": 0, "type": "peaking", "freq_hz": 1000.0, "gain_db": 3.0, "q": 1.0},
                    {"layer": 2, "type": "telephone", "low_hz": 300.0, "high_hz": 3400.0, "narrowband": True},
                    {"layer": 3, "type": "codec", "codec": "mulaw"},
                    {"layer": 4, "type": "codec", "codec": "mp3", "mp3": {"bitrate_kbps": 16.0}}],
        "speech_perturb": {"speed": 0.95, "pitch_semitones": 1.5},
    }
    assert channel_categories(params) == {"codec": ["mulaw", "mp3"], "phone band": ["narrowband"],
                                          "speech": ["speed changed", "pitch shifted"]}
    params["channel"][1]["narrowband"] = False
    assert channel_categories(params)["phone band"] == ["band-pass"]
    # the block fired nothing: unperturbed; no block, no channel: (none), which slices hide
    assert channel_categories({"speech_perturb": {}})["speech"] == ["unperturbed"]
    assert channel_categories({"noise": []}) == {"codec": ["(none)"], "phone band": ["(none)"],
                                                 "speech": ["(none)"]}
    # params of another version of the synthesizer do not break slicing
    assert channel_categories({"channel": "odd", "speech_perturb": None})["codec"] == ["(none)"]


def test_the_channel_docs_audio_md_shows_is_the_call_centre_templates_own():
    doc = (RECIPES.parent / "docs" / "audio.md").read_text()
    block = doc.split("# illustration only: synth.channel of recipes/call_centre.yaml\n", 1)[1].split("```", 1)[0]
    assert block.startswith("  channel:\n") and block in (RECIPES / "call_centre.yaml").read_text()
