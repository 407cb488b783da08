"""``synth.channel`` and ``perturb.eq`` / ``perturb.distortion`` in ``speech_noise_mix``:
off by default (an unchanged recipe keeps its dump and hash), every fired stage in the
params with its range in the recipe, skipped stages keep the stream aligned, the SNR
before the channel is the design value and the one after is measured by the same
definition, peak control after the channel, rows carry it all, and bad settings are named."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from engine.audio import channel as audio_channel
from engine.audio import eq, ops
from engine.errors import RecipeError
from engine.plan import make_plan
from engine.pools import index_pools
from engine.recipe import parse_recipe, recipe_hash
from engine.shards import read_shard
from engine.stats import flatten_params, param_range
from engine.worker import make_shard

from .test_audio_mix import draws, full_data, synth_for

# Every stage type, each on (p: 1): the contract suite runs this too (test_synth_contract.py).
EVERY_STAGE = [
    {"type": "low_shelf", "freq_hz_range": [100, 300], "gain_db_range": [-6, 6], "q_range": [0.5, 1.0]},
    {"type": "peaking", "freq_hz_range": [500, 3000], "gain_db_range": [-9, 9], "q_range": [0.7, 3.0]},
    {"type": "high_shelf", "freq_hz_range": [3000, 6000]},
    {"type": "notch", "freq_hz_range": [50, 400]},
    {"type": "clip", "drive_db_range": [0, 6]},
    {"type": "bit_depth", "bits_range": [8, 12]},
    {"type": "telephone", "low_hz_range": [250, 350], "high_hz_range": [3200, 3600], "narrowband_p": 0.5},
    {"type": "codec", "mp3": {"bitrate_kbps_range": [16, 64]}, "opus": {"bitrate_kbps_range": [8, 24]},
     "vorbis": {"quality_range": [0.0, 0.6]}, "gsm": {}, "mulaw": {}, "alaw": {}},
]
NOISE_EFFECTS = {
    "eq": [{"type": "peaking", "freq_hz_range": [200, 2000]}, {"type": "notch", "p": 0.5, "freq_hz_range": [100, 1000]}],
    "distortion": [{"type": "clip", "p": 0.5, "curves": ["tanh"]}, {"type": "bit_depth"}],
}


def with_channel(corpus, stages=EVERY_STAGE, effects=True, **synth) -> dict:
    data = full_data(corpus, sample_rate=16000, channel=copy.deepcopy(stages), **synth)
    data["splits"] = {"train": {"samples": 8}}
    if effects:
        data["synth"]["noise"][0]["perturb"].update(copy.deepcopy(NOISE_EFFECTS))
    return data


@pytest.fixture(scope="module")
def every(demo_corpus):
    return synth_for(with_channel(demo_corpus), demo_corpus)


def test_a_recipe_without_the_channel_dumps_and_hashes_as_before(demo_corpus):
    data = full_data(demo_corpus)
    recipe = parse_recipe(copy.deepcopy(data), base_dir=demo_corpus)
    dumped = recipe.synth.model_dump(mode="json")
    assert "channel" not in dumped
    assert "eq" not in dumped["noise"][0]["perturb"] and "distortion" not in dumped["noise"][0]["perturb"]
    # an explicit null is the same recipe
    data["synth"]["channel"] = None
    data["synth"]["noise"][0]["perturb"]["eq"] = None
    assert recipe_hash(parse_recipe(data, base_dir=demo_corpus)) == recipe_hash(recipe)
    with_it = parse_recipe(with_channel(demo_corpus), base_dir=demo_corpus)
    assert "channel" in with_it.synth.model_dump(mode="json")


def test_a_recipe_without_the_channel_draws_the_same_params(demo_corpus):
    """The channel is drawn last: the same recipe with a channel draws everything else alike."""
    _, plain = synth_for(full_data(demo_corpus, sample_rate=16000), demo_corpus)
    _, chan = synth_for(with_channel(demo_corpus, effects=False), demo_corpus)
    for a, b in zip(draws(plain, 6), draws(chan, 6)):
        assert "channel" not in a
        assert {k: v for k, v in b.items() if k != "channel"} == a
        assert [s["layer"] for s in b["channel"]] == list(range(len(EVERY_STAGE)))


def test_every_fired_stage_is_in_the_params_with_its_range_in_the_recipe(every):
    recipe, synth = every
    config = recipe.synth.model_dump(mode="json")
    names = set()
    codecs = set()
    for params in draws(synth, 60):
        assert json.loads(json.dumps(params)) == params
        for stage in params["channel"]:
            if stage["type"] == "codec":
                codecs.add(stage["codec"])
                if stage["codec"] == "mp3":
                    assert stage["mp3"]["bitrate_kbps"] in audio_channel.mp3_bitrates_kbps(16000)
        for name, value in flatten_params(params, synth.unsampled_params):
            if not (name.startswith("channel") or ".eq[" in name or ".distortion[" in name):
                continue
            names.add(name)
            rng = param_range(config, name)
            assert rng is not None, name
            assert rng[0] <= value <= rng[1], (name, value, rng)
    assert codecs == set(audio_channel.CODECS)
    for expected in ("channel[0].freq_hz", "channel[0].gain_db", "channel[0].q", "channel[3].freq_hz",
                     "channel[4].drive_db", "channel[5].bits", "channel[6].low_hz", "channel[6].high_hz",
                     "channel[7].mp3.bitrate_kbps", "channel[7].opus.bitrate_kbps", "channel[7].vorbis.quality",
                     "noise[0].perturb.eq[0].freq_hz", "noise[0].perturb.distortion[1].bits"):
        assert expected in names, expected


def test_a_stage_that_does_not_fire_leaves_the_others_as_they_were(demo_corpus):
    _, synth = synth_for(with_channel(demo_corpus), demo_corpus)
    stages = copy.deepcopy(EVERY_STAGE)
    stages[2]["p"] = 0.0
    _, without = synth_for(with_channel(demo_corpus, stages), demo_corpus)
    for a, b in zip(draws(synth, 8), draws(without, 8)):
        assert [s for s in a["channel"] if s["layer"] != 2] == b["channel"]


def test_snr_before_the_channel_is_the_design_value_and_after_it_is_measured(demo_corpus):
    """One layer, no events, no reverb: the SNR before the channel is the layer's snr_db;
    after a linear channel it is the SNR of the filtered speech against the filtered noise."""
    data = with_channel(demo_corpus, [EVERY_STAGE[1]], effects=False)
    data["synth"]["noise"] = [{"pool": "cabin", "snr_db_range": [0, 15]}]
    data["synth"].pop("events")
    data["synth"].pop("reverb")
    _, synth = synth_for(data, demo_corpus)
    for params in draws(synth, 4):
        out = synth.render(params)
        measured = synth.apply(params).applied["channel"]
        assert abs(measured["snr_db_before"] - params["noise"][0]["snr_db"]) < 0.01
        stage = params["channel"][0]
        # an SNR does not depend on a gain common to speech and noise (level, peak control)
        s = eq.biquad(out.speech, 16000, "peaking", freq_hz=stage["freq_hz"], gain_db=stage["gain_db"],
                      q=stage["q"])
        n = eq.biquad(out.noise[0], 16000, "peaking", freq_hz=stage["freq_hz"], gain_db=stage["gain_db"],
                      q=stage["q"])
        expected = 10 * math.log10(ops.active_power(s, 16000, threshold_db=40.0) / ops.power(n))
        assert abs(measured["snr_db_after"] - expected) < 0.05


def test_the_mix_is_within_peak_dbfs_after_the_channel(every):
    recipe, synth = every
    limit = ops.db_to_gain(recipe.synth.peak_dbfs)
    for params in draws(synth, 6):
        out = synth.render(params)
        assert ops.peak(out.mix) <= limit
        assert out.mix.shape == out.speech.shape


def test_noise_eq_and_distortion_change_the_noise_piece(demo_corpus):
    data = with_channel(demo_corpus, [EVERY_STAGE[0]])
    data["synth"]["noise"][0]["perturb"] = {"eq": [{"type": "peaking", "freq_hz_range": [500, 1500],
                                                    "gain_db_range": [12, 12]}],
                                            "distortion": [{"type": "bit_depth", "bits_range": [3, 3]}]}
    _, synth = synth_for(data, demo_corpus)
    params = next(p for p in draws(synth, 10) if p["noise"] and p["noise"][0]["layer"] == 0)
    layer = params["noise"][0]
    assert [s["type"] for s in layer["perturb"]["eq"]] == ["peaking"]
    assert layer["perturb"]["distortion"] == [{"layer": 0, "type": "bit_depth", "bits": 3}]
    piece = synth._noise_piece("noise", layer, 16000, None)
    plain = synth._noise_piece("noise", {**layer, "perturb": {}}, 16000, None)
    assert len(np.unique(piece)) <= 8 and not np.array_equal(piece, plain)


def test_rows_carry_the_channel_params_and_the_snr_after_it(demo_corpus, tmp_path):
    recipe = parse_recipe(with_channel(demo_corpus), base_dir=demo_corpus)
    index = index_pools(recipe)
    spec = make_plan(recipe).shards[0]
    make_shard(recipe, index, spec, tmp_path)
    shard = next(p for p in tmp_path.rglob("*.arrow"))
    rows = read_shard(shard).to_pylist()
    assert rows
    for row in rows:
        params = json.loads(row["params"])
        assert [s["layer"] for s in params["channel"]] == list(range(len(EVERY_STAGE)))
        after = params["applied"]["channel"]
        assert set(after) == {"snr_db_before", "snr_db_after"}
    stats = json.loads(next(tmp_path.rglob("*.stats.json")).read_text())
    hist = stats["stats"]["params"] if "stats" in stats else stats["params"]
    assert hist["channel[5].bits"]["range"] == [8.0, 12.0]
    assert hist["channel[1].gain_db"]["range"] == [-9.0, 9.0]
    assert "applied.channel.snr_db_after" in hist


def _error(data: dict) -> str:
    with pytest.raises(RecipeError) as info:
        parse_recipe(data)
    return str(info.value)


def _stage(i: int, **changes):
    def mutate(s):
        s["channel"][i].update(changes)
    return mutate


@pytest.mark.parametrize(
    "mutate, fragments",
    [
        (lambda s: s["channel"][7]["opus"].update(bitrate_kbps_range=[8, 300]),
         ["synth.channel[7].codec.opus.bitrate_kbps_range", "[6, 256]", "Opus bitrate"]),
        (lambda s: s["channel"][7]["mp3"].update(bitrate_kbps_range=[32, 256]),
         ["synth.channel[7].mp3.bitrate_kbps_range", "16000 Hz", "MPEG-2", "8..160"]),
        (_stage(6, high_hz_range=[3000, 8000]), ["synth.channel[6].high_hz_range", "Nyquist", "synth.sample_rate 16000"]),
        (_stage(6, low_hz_range=[200, 3500]), ["synth.channel[6].telephone", "low_hz_range", "below high_hz_range"]),
        (_stage(1, freq_hz_range=[500, 9000]), ["synth.channel[1].freq_hz_range", "Nyquist"]),
        (lambda s: s["noise"][0]["perturb"].update(eq=[{"type": "notch", "freq_hz_range": [100, 8000]}]),
         ["synth.noise[0].perturb.eq[0].freq_hz_range", "Nyquist"]),
        (lambda s: s["channel"].append({"type": "codec"}), ["synth.channel[8].codec", "at least one codec"]),
        (lambda s: s["channel"].append({"type": "reverb"}), ["synth.channel[8]", "'codec'", "'telephone'"]),
        (_stage(5, bits_range=[4, 8.5]), ["synth.channel[5].bit_depth.bits_range", "whole numbers"]),
        (_stage(4, curves=["fuzz"]), ["synth.channel[4].clip.curves[0]", "'hard'", "'tanh'", "'cubic'"]),
        (_stage(3, gain_db_range=[-3, 3]), ["synth.channel[3].notch.gain_db_range"]),
        (lambda s: s["noise"][0]["perturb"].update(distortion=[{"type": "codec", "gsm": {}}]),
         ["synth.noise[0].perturb.distortion[0]", "'clip'", "'bit_depth'"]),
    ],
    ids=["opus_bitrate", "mp3_bitrate_at_16k", "telephone_over_nyquist", "telephone_edges_cross",
         "peaking_over_nyquist", "noise_eq_over_nyquist", "codec_without_codec", "unknown_stage",
         "fractional_bits", "unknown_curve", "notch_has_no_gain", "codec_is_no_noise_distortion"],
)
def test_bad_channel_settings_are_named(demo_corpus, mutate, fragments):
    data = with_channel(demo_corpus)
    mutate(data["synth"])
    message = _error(data)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
