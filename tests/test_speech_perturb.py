"""Specification of speech perturbation (issue 17): the WSOLA time-stretch and pitch shift
of engine.audio.stretch (tempo keeps the pitch, pitch keeps the duration, speed moves
both; lengths; times in the utterance land at t / (speed * tempo)); the recipe's
``synth.speech_perturb`` block (validation naming each field, off by default with the
recipe hash kept); its draws (recorded only when a stage fires, a probability does not
reshuffle the rest, coverage finds every range); and the synthesizer with it (the SNR is
exact against the perturbed speech, a speech gain is undone by the level, noise and
events fit the new duration, rows written by a worker carry the params and replay to
the same bytes)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.audio import ops, stretch
from engine.errors import RecipeError
from engine.plan import make_plan
from engine.pools import index_pools
from engine.recipe import parse_recipe, recipe_hash
from engine.rng import sample_rng
from engine.shards import read_shard
from engine.stats import flatten_params, param_range
from engine.synth import build_synthesizer
from engine.synth.speech_noise_mix import speech_perturb
from engine.synth.speech_noise_mix.config import SpeechNoiseMix
from engine.synth.speech_noise_mix.synth import SpeechNoiseMixSynth
from engine.worker import make_shard

from .conftest import small_recipe, write_recipe

SR = 16000
EVERY_STAGE = {"speed_range": [0.9, 1.1], "tempo_range": [0.8, 1.25], "pitch_semitones_range": [-3, 3],
               "gain_db_range": [-6, 6]}


def _sine(freq: float, seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _dominant_hz(y: np.ndarray, sr: int = SR) -> float:
    """The spectral peak, read from a 4x zero-padded Hann-windowed FFT (0.25 Hz bins per second of signal)."""
    size = 4 * len(y)
    spectrum = np.abs(np.fft.rfft(y.astype(np.float64) * np.hanning(len(y)), size))
    return float(np.argmax(spectrum)) * sr / size


# --------------------------------------------------------------------------- the DSP


@pytest.mark.parametrize("freq", [220.0, 1000.0])
@pytest.mark.parametrize("tempo", [0.5, 0.8, 1.25, 2.0])
def test_tempo_keeps_the_pitch_and_scales_the_duration(freq, tempo):
    x = _sine(freq)
    y = stretch.time_stretch(x, tempo, SR)
    assert len(y) == round(len(x) / tempo)
    assert _dominant_hz(y) == pytest.approx(freq, rel=0.01)


@pytest.mark.parametrize("semitones", [-12.0, -4.5, 3.0, 7.0])
def test_pitch_shift_keeps_the_duration_and_moves_the_frequency_by_two_to_the_s_over_12(semitones):
    x = _sine(300.0)
    y = stretch.pitch_shift(x, semitones, SR)
    assert len(y) == len(x)
    assert _dominant_hz(y) == pytest.approx(300.0 * 2 ** (semitones / 12), rel=0.01)


def test_speed_moves_the_pitch_and_the_duration_together():
    x = _sine(400.0)
    y = speech_perturb.apply(x, {"speed": 1.25}, SR)
    assert len(y) == round(len(x) / 1.25)
    assert _dominant_hz(y) == pytest.approx(500.0, rel=0.01)


def test_tempo_and_pitch_together_are_one_stretch_with_both_effects():
    x = _sine(300.0)
    y = speech_perturb.apply(x, {"tempo": 0.8, "pitch_semitones": -5.0}, SR)
    assert len(y) == round(len(x) / 0.8)
    assert _dominant_hz(y) == pytest.approx(300.0 * 2 ** (-5 / 12), rel=0.01)


def test_the_pitch_ratio_is_a_small_fraction_within_a_cent():
    for s in np.linspace(-12, 12, 97):
        r = stretch.pitch_fraction(float(s))
        assert r.denominator <= stretch.PITCH_MAX_DENOMINATOR
        assert abs(1200 * math.log2(float(r)) - 100 * s) < 1.0
    assert stretch.pitch_fraction(12.0) == 2 and stretch.pitch_fraction(0.0) == 1


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 24000), tempo=st.floats(0.25, 4.0), semitones=st.floats(-12.0, 12.0),
       sr=st.sampled_from([8000, 16000, 44100]), seed=st.integers(0, 2**31))
def test_stretch_lengths_are_round_n_over_tempo_and_the_output_is_finite_float32(n, tempo, semitones, sr, seed):
    x = np.random.default_rng(seed).uniform(-1, 1, n).astype(np.float32)
    y = stretch.stretch_and_shift(x, sr, tempo=tempo, semitones=semitones)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == stretch.stretched_length(n, tempo) == math.floor(n / tempo + 0.5)
    assert np.isfinite(y).all()
    assert y.tobytes() == stretch.stretch_and_shift(x, sr, tempo=tempo, semitones=semitones).tobytes()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 24000), tempo=st.floats(0.5, 2.0), seed=st.integers(0, 2**31))
def test_a_time_stretch_never_exceeds_the_input_peak(n, tempo, seed):
    # Every output sample is a window-weighted mean of input samples.
    x = np.random.default_rng(seed).uniform(-1, 1, n).astype(np.float32)
    y = stretch.time_stretch(x, tempo, SR)
    assert ops.peak(y) <= ops.peak(x) * (1 + 1e-6)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 30000), speed=st.floats(0.5, 2.0), tempo=st.floats(0.5, 2.0),
       semitones=st.floats(-12.0, 12.0), gain_db=st.floats(-40.0, 40.0))
def test_perturbed_speech_has_the_length_speed_then_tempo_give(n, speed, tempo, semitones, gain_db):
    drawn = {"speed": float(ops.speed_fraction(speed, ops.SPEED_MAX_DENOMINATOR)), "tempo": tempo,
             "pitch_semitones": semitones, "gain_db": gain_db}
    y = speech_perturb.apply(np.zeros(n, np.float32), drawn, SR)
    frac = ops.speed_fraction(drawn["speed"])
    after_speed = ops.resampled_length(n, frac.numerator, frac.denominator)
    assert len(y) == stretch.stretched_length(after_speed, tempo)
    assert abs(len(y) / SR - n / SR * speech_perturb.time_scale(drawn)) <= 2.0 / SR


def test_a_constant_stays_constant_inside_the_signal():
    frame, _, _ = stretch.frame_geometry(SR)
    for tempo in (0.7, 1.3):
        y = stretch.time_stretch(np.full(8000, 0.25, np.float32), tempo, SR)
        np.testing.assert_allclose(y[frame:-frame], 0.25, rtol=1e-6)


def _utterance(onsets_s: list[float], seconds: float = 3.0) -> np.ndarray:
    """Silence with 120 ms 'words' (a 200 Hz harmonic complex) starting at ``onsets_s``."""
    x = np.zeros(int(seconds * SR), np.float32)
    t = np.arange(int(0.12 * SR)) / SR
    word = sum(np.sin(2 * np.pi * 200 * h * t) / h for h in range(1, 6)) * 0.3
    for s in onsets_s:
        i = int(round(s * SR))
        x[i : i + len(word)] += word.astype(np.float32)
    return x


def _onsets(y: np.ndarray, sr: int = SR) -> list[float]:
    """Where the 2 ms envelope first rises above a tenth of its peak after 50 ms of quiet."""
    hop = int(0.002 * sr)
    env = np.sqrt(np.mean(y[: len(y) // hop * hop].astype(np.float64).reshape(-1, hop) ** 2, axis=1))
    loud = env > 0.1 * env.max()
    out, quiet = [], 25
    for i, on in enumerate(loud):
        if on and quiet >= 25:
            out.append(i * hop / sr)
        quiet = 0 if on else quiet + 1
    return out


@pytest.mark.parametrize("drawn", [
    {"speed": 1.1},
    {"speed": 0.9},
    {"tempo": 0.8},
    {"tempo": 1.25},
    {"pitch_semitones": 4.0},
    {"speed": 0.95, "tempo": 1.2, "pitch_semitones": -3.0, "gain_db": 5.0},
])
def test_word_times_scale_by_one_over_speed_times_tempo_and_stay_within_the_audio(drawn):
    words = [0.3, 1.1, 1.9, 2.7]
    y = speech_perturb.apply(_utterance(words), drawn, SR)
    scale = speech_perturb.time_scale(drawn)
    found = _onsets(y)
    assert len(found) == len(words)
    _, _, tol = stretch.frame_geometry(SR)
    for t, seen in zip(words, found):
        # exact under speed but for the 2 ms envelope; within the WSOLA search under tempo/pitch
        assert abs(seen - t * scale) <= tol / SR + 0.004, (t, seen, t * scale)
        assert t * scale < len(y) / SR


# --------------------------------------------------------------------------- the recipe block


def _data(corpus: Path, block: dict | None = None, **synth) -> dict:
    data = small_recipe(corpus, splits={"train": {"samples": 16}})
    data["output"]["samples_per_shard"] = 8
    data["pools"]["clatter"] = {"paths": [str(corpus / "noise" / "clatter" / "*.wav")]}
    data["synth"].update(events=[{"pool": "clatter", "count_range": [1, 2], "snr_db_range": [0, 10]}], **synth)
    if block is not None:
        data["synth"]["speech_perturb"] = block
    return data


@pytest.mark.parametrize("block, field, says", [
    ({"speed_range": [0.2, 1.1]}, "synth.speech_perturb.speed_range", "within [0.5, 2]"),
    ({"tempo_range": [1.2, 1.1]}, "synth.speech_perturb.tempo_range", "low <= high"),
    ({"pitch_semitones_range": [-20, 3]}, "synth.speech_perturb.pitch_semitones_range", "within [-12, 12]"),
    ({"gain_db_range": 6}, "synth.speech_perturb.gain_db_range", "expected [low, high]"),
    ({"speed_range": [0.9, 1.1], "speed_p": 1.5}, "synth.speech_perturb.speed_p", "less than or equal to 1"),
    ({"tempo_p": 0.5}, "synth.speech_perturb", "tempo_p is set but tempo_range is not"),
    ({}, "synth.speech_perturb", "set at least one of speed_range, tempo_range"),
    ({"pitch_range": [-2, 2]}, "synth.speech_perturb.pitch_range", "did you mean 'pitch_semitones_range'"),
])
def test_a_bad_speech_perturb_block_is_refused_naming_its_field(demo_corpus, block, field, says):
    with pytest.raises(RecipeError) as info:
        parse_recipe(_data(demo_corpus, block), base_dir=demo_corpus)
    assert f"{field}: " in str(info.value) and says in str(info.value)


def test_without_the_block_the_recipe_hash_is_the_one_it_had(demo_corpus):
    assert "speech_perturb" in SpeechNoiseMix.dumped_when_set
    plain = parse_recipe(_data(demo_corpus), base_dir=demo_corpus)
    explicit_null = _data(demo_corpus)
    explicit_null["synth"]["speech_perturb"] = None
    assert recipe_hash(parse_recipe(explicit_null, base_dir=demo_corpus)) == recipe_hash(plain)
    with_block = parse_recipe(_data(demo_corpus, {"gain_db_range": [-3, 3]}), base_dir=demo_corpus)
    assert recipe_hash(with_block) != recipe_hash(plain)


@pytest.mark.parametrize("block", [{"speed_range": [0.9, 1.1]}, {"tempo_range": [0.9, 1.1], "tempo_p": 0.5},
                                   {"pitch_semitones_range": [-2, 2], "gain_db_range": [-3, 3], "gain_p": 0.2}])
def test_a_block_with_some_stages_parses_again_from_its_dump(demo_corpus, block):
    """run.json and the workers get the recipe's dump: a stage left out must not dump a
    probability that the block then refuses (`tempo_p is set but tempo_range is not`)."""
    from engine.recipe import recipe_to_dict

    recipe = parse_recipe(_data(demo_corpus, block), base_dir=demo_corpus)
    again = parse_recipe(recipe_to_dict(recipe), base_dir=demo_corpus)
    assert again.synth.speech_perturb == recipe.synth.speech_perturb
    assert recipe_hash(again) == recipe_hash(recipe)


def test_a_block_with_every_stage_dumps_every_probability():
    """The dump of a full block is what it was before stages without a range dropped
    their probability (its recipe hash is kept)."""
    dumped = speech_perturb.SpeechPerturb(**EVERY_STAGE, tempo_p=0.5).model_dump(mode="json")
    assert list(dumped) == ["speed_range", "speed_p", "tempo_range", "tempo_p", "pitch_semitones_range",
                            "pitch_p", "gain_db_range", "gain_p"]
    assert dumped["tempo_p"] == 0.5 and dumped["gain_p"] == 1.0


# --------------------------------------------------------------------------- draws


def _draws(cfg: speech_perturb.SpeechPerturb, n: int = 200) -> list[dict]:
    return [speech_perturb.draw(np.random.default_rng([7, i]), cfg) for i in range(n)]


def test_a_stage_is_recorded_only_when_it_fires_with_its_probability():
    cfg = speech_perturb.SpeechPerturb(**EVERY_STAGE, tempo_p=0.5, pitch_p=0.0)
    drawn = _draws(cfg, 400)
    assert all("speed" in d and "gain_db" in d and "pitch_semitones" not in d for d in drawn)
    assert 0.4 < sum("tempo" in d for d in drawn) / len(drawn) < 0.6
    for d in drawn:
        assert 0.9 <= d["speed"] <= 1.1 and ops.speed_fraction(d["speed"]).denominator <= 100
        assert 0.8 <= d.get("tempo", 1.0) <= 1.25 and -6 <= d["gain_db"] <= 6
        assert json.loads(json.dumps(d)) == d


def test_changing_one_probability_does_not_reshuffle_the_other_stages():
    a = _draws(speech_perturb.SpeechPerturb(**EVERY_STAGE))
    b = _draws(speech_perturb.SpeechPerturb(**EVERY_STAGE, tempo_p=0.0, speed_p=0.3))
    for x, y in zip(a, b):
        assert x["pitch_semitones"] == y["pitch_semitones"] and x["gain_db"] == y["gain_db"]
        assert "tempo" not in y and y.get("speed", x["speed"]) == x["speed"]


def test_coverage_finds_the_range_of_every_recorded_stage(demo_corpus):
    recipe = parse_recipe(_data(demo_corpus, EVERY_STAGE), base_dir=demo_corpus)
    config = recipe.synth.model_dump(mode="json")
    params = {"speech_perturb": {"speed": 1.05, "tempo": 0.9, "pitch_semitones": 1.5, "gain_db": -2.0}}
    names = dict(flatten_params(params, SpeechNoiseMixSynth.unsampled_params))
    for stage, range_field, _ in speech_perturb.STAGES:
        name = f"speech_perturb.{stage}"
        assert name in names
        assert param_range(config, name) == tuple(EVERY_STAGE[range_field])


# --------------------------------------------------------------------------- the synthesizer


@pytest.fixture(scope="module")
def perturbed(demo_corpus):
    data = _data(demo_corpus, EVERY_STAGE, level_dbfs_range=[-30, -20])
    data["pools"]["rirs"] = {"paths": [str(demo_corpus / "rir" / "*.wav")]}
    data["synth"]["reverb"] = {"pool": "rirs", "p": 0.5}
    recipe = parse_recipe(copy.deepcopy(data), base_dir=demo_corpus)
    return data, recipe, build_synthesizer(recipe, index_pools(recipe))


def _params(synth, n: int = 12) -> list[dict]:
    return [synth.sample_params(sample_rng(synth.recipe.seed, "train", i), holdout_split=False) for i in range(n)]


def test_every_row_records_its_speech_perturbation(perturbed):
    _, _, synth = perturbed
    for params in _params(synth):
        assert set(params["speech_perturb"]) == {"speed", "tempo", "pitch_semitones", "gain_db"}


def test_the_snr_is_exact_against_the_speech_as_perturbed(perturbed):
    _, _, synth = perturbed
    for params in _params(synth):
        parts = synth.render(params)
        p_speech = ops.active_power(parts.speech, SR)
        for layer, noise in zip(params["noise"], parts.noise):
            assert abs(10 * math.log10(p_speech / ops.power(noise)) - layer["snr_db"]) < 0.01


def test_the_output_has_the_perturbed_duration_and_noise_and_events_fit_it(perturbed):
    _, _, synth = perturbed
    speech = synth.index.pools["speech"]
    for params in _params(synth):
        parts = synth.render(params)
        n = len(parts.mix)
        item_s = float(speech.duration_s[list(speech.items).index(params["speech"]["item"])])
        assert n / SR == pytest.approx(item_s * speech_perturb.time_scale(params["speech_perturb"]), abs=2.0 / SR)
        src = parts.sources
        assert src[0]["duration_s"] == pytest.approx(item_s, abs=1.0 / SR)  # the utterance, whole
        gain = ops.db_to_gain(params["speech_perturb"]["gain_db"])  # the speech's gain includes the drawn one
        assert ops.db_to_gain(src[0]["gain_db"]) == pytest.approx(parts.speech_gain * parts.out_gain * gain, rel=1e-9)
        for layer, piece in zip(params["noise"], src[1:]):
            assert piece["duration_s"] == pytest.approx(n / SR * layer.get("perturb", {}).get("speed", 1.0))
        for ev in params.get("events", []):
            assert 0.0 <= ev["at_s"] <= n / SR
        for at, sig in parts.events:
            assert at + len(sig) <= n


def test_a_speech_gain_is_undone_by_the_level_and_scales_the_output_without_one(demo_corpus, perturbed):
    data, _, synth = perturbed
    params = _params(synth, 1)[0]
    louder = copy.deepcopy(params)
    louder["speech_perturb"]["gain_db"] = params["speech_perturb"]["gain_db"] + 6.0
    a, b = synth.render(params), synth.render(louder)
    # with a level: the same output (the level is set after the gain)
    assert ops.active_power(b.mix, SR) == pytest.approx(ops.active_power(a.mix, SR), rel=1e-4)
    np.testing.assert_allclose(b.mix, a.mix, atol=1e-5 * ops.peak(a.mix))
    # without a level (and no peak control): everything 6 dB louder, the SNRs the same
    no_level = copy.deepcopy(data)
    del no_level["synth"]["level_dbfs_range"]
    no_level["synth"]["clipping"] = "allow"
    recipe = parse_recipe(no_level, base_dir=demo_corpus)
    bare = build_synthesizer(recipe, synth.index)
    for p in (params, louder):
        p.pop("level_dbfs", None)
    a, b = bare.render(params), bare.render(louder)
    assert 10 * math.log10(ops.active_power(b.mix, SR) / ops.active_power(a.mix, SR)) == pytest.approx(6.0, abs=0.01)


def test_rows_a_worker_writes_carry_the_params_and_replay_to_their_bytes(demo_corpus, tmp_path):
    data = _data(demo_corpus, EVERY_STAGE)
    from engine.recipe import load_recipe

    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", data))
    index = index_pools(recipe)
    out = tmp_path / "out"
    for spec in make_plan(recipe).shards:
        make_shard(recipe, index, spec, out)
    rows = [r for f in sorted(out.glob("train/*.arrow")) for r in read_shard(f).to_pylist()]
    assert len(rows) == 16
    synth = build_synthesizer(recipe, index)
    for row in rows:
        params = json.loads(row["params"])
        assert set(params["speech_perturb"]) == {"speed", "tempo", "pitch_semitones", "gain_db"}
        scale = speech_perturb.time_scale(params["speech_perturb"])
        assert row["duration_s"] == pytest.approx(row["sources"][0]["duration_s"] * scale, abs=2.0 / SR)
        sample = synth.apply(params)
        assert sample.columns["audio"]["bytes"] == row["audio"]["bytes"]
        assert sample.sources == row["sources"]
    # the shard's stats (what coverage merges) histogram every stage against its range
    found: dict[str, list[dict]] = {}

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and key.startswith("speech_perturb."):
                    found.setdefault(key, []).append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for stats in out.rglob("*.stats.json"):
        walk(json.loads(stats.read_text()))
    for stage, range_field, _ in speech_perturb.STAGES:
        entries = found[f"speech_perturb.{stage}"]  # one per shard
        assert all(tuple(e["range"]) == tuple(EVERY_STAGE[range_field]) for e in entries)
        assert sum(e["count"] for e in entries) == 16
