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
from engine.stats import flatten_params, param_range
from engine.synth import synthesizer_class
from engine.synth.speech_noise_mix.provenance import channel_categories

from .conftest import all_rows, write_recipe
from .test_replay import write_without_ray

RECIPES = Path(__file__).parent.parent / "recipes"
TEMPLATES = ["call_centre.yaml", "in_car_hands_free.yaml"]
# Numbers in params that are measured or placed, not drawn from a range of the synth block:
# the SNRs the channel left (measured), an event's position (anywhere in the utterance), a
# layer's share of the total noise power (it follows from the layers kept), and a generated
# room's RT60 and DRR (their ranges are the rir_generator pool's).
UNRANGED = {"applied.channel.snr_db_before", "applied.channel.snr_db_after", "reverb.rt60_s", "reverb.drr_db"}


def _unranged(name: str) -> bool:
    return (name in UNRANGED or (name.startswith("events[") and name.endswith(".at_s"))
            or (name.startswith("noise[") and name.endswith(".share")))


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


def test_the_call_centre_has_the_telephone_codecs_and_the_in_car_template_a_small_damped_room():
    centre = load_recipe(RECIPES / "call_centre.yaml")
    codecs = {name for stage in centre.synth.channel if stage.type == "codec" for name, _ in stage.codecs()}
    assert codecs == {"mulaw", "alaw", "gsm", "opus", "mp3"}
    assert centre.synth.speech_perturb.speed_range == (0.9, 1.1)
    car = load_recipe(RECIPES / "in_car_hands_free.yaml")
    assert car.synth.speech_perturb.tempo_range and car.synth.speech_perturb.pitch_semitones_range
    assert car.synth.total_snr_db_range[0] < 0  # low SNR
    assert car.pools[car.synth.reverb.pool].rt60_s_range[1] <= 0.3


@pytest.fixture(scope="module", params=TEMPLATES)
def template_out(request, demo_corpus, tmp_path_factory) -> tuple[str, Path]:
    """The template on the demo corpus with a few samples per split."""
    name = request.param
    d = tmp_path_factory.mktemp(Path(name).stem)
    text = (RECIPES / name).read_text().replace("../demo_data/", f"{demo_corpus}/")
    data = yaml.safe_load(text)
    data["splits"] = {split: {**cfg, "samples": 3 if split == "train" else 2} for split, cfg in data["splits"].items()}
    data["output"]["samples_per_shard"] = 4
    return name, write_without_ray(write_recipe(d / name, data), d / "out")


def test_every_row_of_a_template_replays_to_its_bytes(template_out):
    _, out = template_out
    rows = all_rows(out)
    assert len(rows) == 7
    with Replayer(out) as replayer:
        for row in rows:
            assert replayer.replay(row["sample_id"]).identical, row["sample_id"]


def test_every_drawn_value_of_a_template_lies_in_a_range_of_its_recipe(template_out):
    name, out = template_out
    recipe = load_recipe(out / ".." / name)
    config = recipe.synth.model_dump(mode="json")
    skip = synthesizer_class("speech_noise_mix").unsampled_params
    seen = set()
    for row in all_rows(out):
        for key, value in flatten_params(json.loads(row["params"]), skip):
            if _unranged(key):
                continue
            bounds = param_range(config, key)
            assert bounds is not None, f"{name}: {key} has no _range in the synth block"
            assert bounds[0] <= value <= bounds[1], (name, key, value, bounds)
            seen.add(key)
    assert {"speech_perturb.speed", "speech_perturb.tempo"} & seen
    # the coverage report histograms them against those ranges
    report = engine.analyze_coverage(out)["params"]
    for key in seen:
        assert report[key]["range"] == list(param_range(config, key)), key


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
