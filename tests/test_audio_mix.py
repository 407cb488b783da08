"""Specification of the speech_noise_mix synthesizer in depth: exact layer, total and
event SNRs, level, reverb alignment, perturbation, provenance, the params conventions the
coverage analyzer relies on, replay; items at another rate or speed (an event is the whole
item played once from its onset, looped noise starts where its params say, reverberant
noise is steady from the first sample); and recipe validation of all of it, including the
output sample rate."""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.audio import io as audio_io
from engine.audio import ops
from engine.errors import BadSourceError, RecipeError
from engine.plan import make_plan
from engine.pools import index_pools
from engine.recipe import parse_recipe
from engine.rng import sample_rng
from engine.shards import read_shard
from engine.stats import flatten_params, param_range
from engine.synth import build_synthesizer
from engine.worker import make_shard

from .conftest import small_recipe, write_recipe

SR = 16000


def full_data(corpus: Path, **synth) -> dict:
    """Every feature at once: perturbed layers, a generator layer, events, reverb, level."""
    data = small_recipe(corpus, splits={"train": {"samples": 24}, "train_dev_unseen": {"samples": 8, "holdout": True}})
    data["output"]["samples_per_shard"] = 8
    data["pools"].update(
        weather={"paths": [str(corpus / "noise" / "rain" / "*.wav"), str(corpus / "noise" / "wind" / "*.wav")]},
        clatter={"paths": [str(corpus / "noise" / "clatter" / "*.wav")]},
        hum={"kind": "noise_generator", "count": 2, "duration_s": 8.0, "colours": ["pink", "brown"]},
        rirs={"paths": [str(corpus / "rir" / "*.wav")], "holdout": 0.3},
        rooms={"kind": "rir_generator", "count": 12, "rt60_s_range": [0.2, 0.7]},
    )
    data["synth"] = {
        "type": "speech_noise_mix",
        "speech": "speech",
        "noise": [
            {"pool": "cabin", "snr_db_range": [0, 15], "perturb": {
                "speed_range": [0.9, 1.1], "gain_db_range": [-6, 6],
                "filter": {"p": 0.7, "lowpass_hz_range": [2000, 5000], "highpass_hz_range": [80, 400]},
                "reverse_p": 0.5}},
            {"pool": "hum", "snr_db_range": [10, 25], "p": 0.7},
            {"pool": "weather", "snr_db_range": [5, 20], "p": 0.6, "perturb": {"speed_range": [0.8, 1.25]}},
        ],
        "events": [{"pool": "clatter", "p": 0.8, "count_range": [1, 3], "snr_db_range": [-5, 10],
                    "max_duration_s": 0.8, "perturb": {"speed_range": [0.9, 1.1], "reverse_p": 0.3}}],
        "reverb": {"pool": "rirs", "p": 0.7},
        "level_dbfs_range": [-32, -20],
        **synth,
    }
    return data


def synth_for(data: dict, corpus: Path):
    recipe = parse_recipe(copy.deepcopy(data), base_dir=corpus)
    return recipe, build_synthesizer(recipe, index_pools(recipe))


def draws(synth, n: int, split: str = "train", holdout: bool = False):
    for i in range(n):
        yield synth.sample_params(sample_rng(synth.recipe.seed, split, i), holdout_split=holdout)


def db(x: float) -> float:
    return 10.0 * math.log10(x)


@pytest.fixture(scope="module")
def full(demo_corpus):
    return synth_for(full_data(demo_corpus), demo_corpus)


def test_a_noise_pool_one_shard_reads_over_is_decoded_at_first_read_and_a_longer_one_is_not(demo_corpus):
    data = full_data(demo_corpus)
    recipe, synth = synth_for(data, demo_corpus)
    index = synth.index
    speech_s = float(np.mean(index.pools["speech"].duration_s))
    per_shard = recipe.output.samples_per_shard * speech_s  # noise seconds one layer reads per shard
    for name in ("cabin", "weather"):  # the pools with layers; hum is generated, clatter is events
        assert float(np.sum(index.pools[name].duration_s)) > per_shard  # 8 samples read less than them
    assert synth._read_over_per_shard() == []
    data["output"]["samples_per_shard"] = 120
    data["splits"] = {"train": {"samples": 120}}
    recipe, synth = synth_for(data, demo_corpus)
    expected = synth.index.pools["cabin"].paths + synth.index.pools["weather"].paths
    for name in ("cabin", "weather"):  # 120 samples of speech outlast both pools
        assert float(np.sum(synth.index.pools[name].duration_s)) <= 120 * speech_s
    assert expected and synth._read_over_per_shard() == expected  # never the generator's items


# --------------------------------------------------------------------------- exact levels


def test_every_noise_layer_is_at_its_own_snr_within_a_hundredth_of_a_db(full):
    _, synth = full
    seen = 0
    for params in draws(synth, 30):
        parts = synth.render(params)
        p_speech = ops.active_power(parts.speech, SR)
        for layer, noise in zip(params["noise"], parts.noise):
            assert abs(db(p_speech / ops.power(noise)) - layer["snr_db"]) < 0.01
            seen += 1
    assert seen > 40


def test_shares_of_a_total_snr_make_the_total_exact(demo_corpus):
    data = full_data(demo_corpus, total_snr_db_range=[-5, 20])
    for layer, share in zip(data["synth"]["noise"], (3, 1, 1)):
        del layer["snr_db_range"]
        layer["share"] = share
    _, synth = synth_for(data, demo_corpus)
    multi = 0
    for params in draws(synth, 30):
        if not params["noise"]:
            continue
        parts = synth.render(params)
        p_speech = ops.active_power(parts.speech, SR)
        assert abs(db(p_speech / ops.power(parts.noise_total)) - params["total_snr_db"]) < 0.01
        shares = [layer["share"] for layer in params["noise"]]
        assert sum(shares) == pytest.approx(1.0)
        if len(shares) > 1:
            multi += 1
            # Each layer is near its share of the noise power (independent noises).
            powers = np.array([ops.power(n) for n in parts.noise])
            np.testing.assert_allclose(powers / powers.sum(), shares, atol=0.05)
    assert multi >= 5


def test_events_are_at_their_snr_against_the_speech_around_them(full):
    recipe, synth = full
    context = int(round(recipe.synth.events[0].context_s * SR))
    seen = 0
    for params in draws(synth, 30):
        parts = synth.render(params)
        assert len(parts.events) == len(params.get("events", []))
        for (at, sig), ev in zip(parts.events, params.get("events", [])):
            assert at == min(int(round(ev["at_s"] * SR)), len(parts.speech) - len(sig))
            local = ops.local_active_power(parts.speech, SR, max(0, at - context), at + len(sig) + context)
            assert abs(db(local / ops.power(sig)) - ev["snr_db"]) < 0.01
            assert len(sig) <= 0.8 * SR + 1
            seen += 1
    assert seen >= 10


def test_output_level_is_met_within_0_05_db_then_peak_control(full):
    _, synth = full
    limited = 0
    for params in draws(synth, 30):
        parts = synth.render(params)
        level = db(ops.active_power(parts.speech * np.float32(parts.level_gain), SR))
        assert abs(level - params["level_dbfs"]) < 0.05
        # Peak control scales everything by one gain after the level is set.
        assert ops.peak(parts.mix) <= ops.db_to_gain(-1.0)
        limited += parts.peak_gain < 1.0
        out = db(ops.active_power(parts.speech * np.float32(parts.out_gain), SR))
        assert abs(out - (params["level_dbfs"] + 20 * math.log10(parts.peak_gain))) < 0.05


# --------------------------------------------------------------------------- reverb and perturbation


def test_reverb_keeps_the_speech_in_place_and_at_its_level(full, demo_corpus):
    _, synth = full
    reverberated = 0
    for params in draws(synth, 30):
        if "reverb" not in params:
            continue
        parts = synth.render(params)
        dry, _ = synth._read_speech(params["speech"]["pool"], params["speech"]["item"])
        assert parts.speech.shape == dry.shape
        # Cross-correlation of dry and reverberant speech peaks at lag 0: no shift.
        n = len(dry)
        xc = np.fft.irfft(np.fft.rfft(parts.speech, 2 * n) * np.conj(np.fft.rfft(dry, 2 * n)))
        lag = int(np.argmax(np.concatenate([xc[-200:], xc[:201]]))) - 200
        assert lag == 0
        assert ops.active_power(parts.speech, SR) == pytest.approx(ops.active_power(dry, SR), rel=1e-4)
        rev = params["reverb"]
        assert rev["pool"] == "rirs" and rev["rt60_s"] > 0.1
        reverberated += 1
    assert reverberated >= 10


def test_speech_and_noise_reverb_uses_a_generated_room(demo_corpus):
    data = full_data(demo_corpus)
    data["synth"]["reverb"] = {"pool": "rooms", "p": 1.0, "apply_to": "speech_and_noise"}
    recipe, synth = synth_for(data, demo_corpus)
    labels = {it: synth.index.pools["rooms"].label_row(i) for i, it in enumerate(synth.index.pools["rooms"].items)}
    for params in draws(synth, 6):
        rev = params["reverb"]
        assert rev["item"].startswith("gen:rir/")
        assert (rev["rt60_s"], rev["drr_db"]) == (labels[rev["item"]]["rt60_s"], labels[rev["item"]]["drr_db"])
        parts = synth.render(params)
        for layer, noise in zip(params["noise"], parts.noise):
            assert abs(db(ops.active_power(parts.speech, SR) / ops.power(noise)) - layer["snr_db"]) < 0.01


def test_speed_perturbed_noise_consumes_speed_times_the_duration(full):
    _, synth = full
    checked = 0
    for params in draws(synth, 20):
        parts = synth.render(params)
        duration_s = len(parts.mix) / SR
        by_item = [s for s in parts.sources if s["pool"] in ("cabin", "weather")]
        layers = [layer for layer in params["noise"] if layer["pool"] in ("cabin", "weather")]
        for src, layer in zip(by_item, layers):
            speed = layer["perturb"]["speed"]
            assert src["duration_s"] == pytest.approx(duration_s * speed)
            assert src["start_s"] == layer["start_s"]
            checked += 1
    assert checked >= 20


def test_perturbed_noise_differs_from_the_plain_segment(full):
    _, synth = full
    for params in draws(synth, 10):
        layer = params["noise"][0] if params["noise"] and params["noise"][0]["pool"] == "cabin" else None
        if layer is None or layer["perturb"]["speed"] == 1.0:
            continue
        plain, _ = synth._read_noise("cabin", layer["item"], layer["start_s"], 16000)
        fast, _ = synth._read_noise("cabin", layer["item"], layer["start_s"], 16000, speed=layer["perturb"]["speed"])
        assert plain.shape == fast.shape == (16000,)
        assert not np.allclose(plain, fast)
        return
    pytest.fail("no perturbed cabin layer drawn")


# --------------------------------------------------------------------------- params and provenance


def test_every_sampled_value_has_its_range_in_the_recipe(full):
    """The coverage analyzer's convention: a value named X has X_range at the same path."""
    recipe, synth = full
    config = recipe.synth.model_dump(mode="json")
    names = set()
    for params in draws(synth, 40):
        for name, _ in flatten_params(params, synth.unsampled_params):
            names.add(name)
            if name.endswith(("at_s", "rt60_s", "drr_db")):  # placement and room: recorded, not ranged
                continue
            assert param_range(config, name) is not None, name
    for expected in ("noise[0].snr_db", "noise[0].perturb.speed", "noise[0].perturb.gain_db",
                     "noise[0].perturb.filter.lowpass_hz", "noise[2].perturb.speed", "events[0].snr_db",
                     "level_dbfs", "reverb.rt60_s"):
        assert expected in names, expected
    lo, hi = param_range(config, "noise[0].perturb.speed")
    assert (lo, hi) == (0.9, 1.1)


def test_params_are_json_and_skipped_draws_keep_the_stream_aligned(demo_corpus):
    data = full_data(demo_corpus)
    _, synth = synth_for(data, demo_corpus)
    data["synth"]["noise"][1]["p"] = 0.0  # drop the hum layer everywhere
    _, synth_without = synth_for(data, demo_corpus)
    for a, b in zip(draws(synth, 10), draws(synth_without, 10)):
        assert json.loads(json.dumps(a)) == a
        assert [layer for layer in a["noise"] if layer["layer"] != 1] == b["noise"]
        assert a.get("events") == b.get("events") and a.get("reverb") == b.get("reverb")


def test_every_source_piece_is_listed_in_its_own_timeline(full):
    _, synth = full
    for params in draws(synth, 20):
        parts = synth.render(params)
        pools = [s["pool"] for s in parts.sources]
        expected = ["speech"] + [layer["pool"] for layer in params["noise"]]
        expected += [ev["pool"] for ev in params.get("events", [])]
        expected += [params["reverb"]["pool"]] if "reverb" in params else []
        assert pools == expected
        for src in parts.sources:
            assert set(src) == {"pool", "item", "start_s", "duration_s", "gain_db"}
            assert math.isfinite(src["gain_db"]) and src["duration_s"] > 0
        speech_src = parts.sources[0]
        # The speech's gain: reverb normalization, level and peak control together.
        assert ops.db_to_gain(speech_src["gain_db"]) == pytest.approx(parts.speech_gain * parts.out_gain, rel=1e-9)


def test_holdout_splits_draw_only_held_out_rooms(full):
    _, synth = full
    rirs = synth.index.pools["rirs"]
    held = {it for it, h in zip(rirs.items, rirs.holdout) if h}
    assert held
    for params in draws(synth, 30, split="train_dev_unseen", holdout=True):
        if "reverb" in params:
            assert params["reverb"]["item"] in held
    for params in draws(synth, 30):
        if "reverb" in params:
            assert params["reverb"]["item"] not in held


# --------------------------------------------------------------------------- replay


@pytest.fixture(scope="module")
def written(demo_corpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mix")
    path = write_recipe(folder / "full.yaml", full_data(demo_corpus))
    from engine.recipe import load_recipe

    recipe = load_recipe(path)
    index = index_pools(recipe)
    out = folder / "out"
    for spec in make_plan(recipe).shards[:2]:
        make_shard(recipe, index, spec, out)
    return recipe, index, out


def test_replaying_a_rows_params_reproduces_its_audio_bytes(written):
    recipe, index, out = written
    synth = build_synthesizer(recipe, index)
    rows = [r for f in sorted(out.glob("train/*.arrow")) for r in read_shard(f).to_pylist()]
    assert len(rows) == 16
    features = set()
    for row in rows:
        params = json.loads(row["params"])
        features |= {k for k in ("events", "reverb", "level_dbfs") if k in params}
        features |= {k for layer in params["noise"] for k in layer.get("perturb", {})}
        sample = synth.apply(params)
        assert sample.columns["audio"]["bytes"] == row["audio"]["bytes"]
        assert sample.sources == row["sources"]
        assert np.array_equal(sample.embedding, np.asarray(row["embedding"], dtype=np.float32))
    assert features >= {"events", "reverb", "level_dbfs", "speed", "gain_db", "filter", "reverse"}


def test_the_same_shard_is_the_same_bytes_in_a_fresh_worker(written, tmp_path):
    from engine.synth.speech_noise_mix import synth as mix

    recipe, index, out = written
    mix._GENERATED.clear()  # a worker whose caches saw no earlier shard
    mix._GENERATED_BYTES[0] = 0
    mix._RIRS.clear()
    spec = make_plan(recipe).shards[1]
    make_shard(recipe, index, spec, tmp_path)
    name = f"train/{spec.name}.arrow"
    assert hashlib.sha256((tmp_path / name).read_bytes()).digest() == hashlib.sha256((out / name).read_bytes()).digest()


def test_rows_carry_speech_and_noise_labels(written):
    _, _, out = written
    rows = read_shard(sorted(out.glob("train/*.arrow"))[0]).to_pylist()
    assert all(r["text"] and r["speaker"] for r in rows)
    hum_rows = [r for r in rows if any(s["pool"] == "hum" for s in r["sources"])]
    assert hum_rows and all(r["hum_colour"] in ("pink", "brown") for r in hum_rows)
    for r in rows:
        x, sr = audio_io.decode(r["audio"]["bytes"])
        assert sr == SR and len(x) == round(r["duration_s"] * SR)


# --------------------------------------------------------------------------- items at another rate or speed
# Small files made here (not the demo corpus): resampled and sped-up events, looped noise
# read from the start of an item, reverberant noise, and replay of such rows.


def _write(path: Path, x: np.ndarray, sr: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(x, dtype=np.float32), sr, subtype="FLOAT")
    return path


def _speech(n: int, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    rng = np.random.default_rng(0)
    return (0.3 * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) * np.sin(2 * np.pi * 180 * t)
            + 0.01 * rng.standard_normal(n)).astype(np.float32)


def _event(n: int, seed: int = 1) -> np.ndarray:
    """A click-like event: a loud onset in its first 25 ms, then a quiet decaying tail."""
    rng = np.random.default_rng(seed)
    onset = int(0.025 * n / 0.3)
    x = 0.02 * rng.standard_normal(n) * np.exp(-np.arange(n) / (0.5 * n))
    x[:onset] += 0.8 * rng.standard_normal(onset)
    return x.astype(np.float32)


def _synth(root: Path, pools: dict, synth: dict):
    data = {"name": "edge", "seed": 5,
            "output": {"format": "arrow", "samples_per_shard": 4, "audio_codec": "flac"},
            "pools": pools, "splits": {"train": {"samples": 4}},
            "synth": {"type": "speech_noise_mix", "speech": "speech", **synth}}
    recipe = parse_recipe(copy.deepcopy(data), base_dir=root)
    return build_synthesizer(recipe, index_pools(recipe))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return float((a64 * b64).sum() / math.sqrt(np.square(a64).sum() * np.square(b64).sum()))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Speech and noise at 16 kHz, a click event at 16 and 22.05 kHz, a short ramp at 22.05 kHz."""
    root = tmp_path_factory.mktemp("rates_corpus")
    _write(root / "speech" / "a.wav", _speech(SR, SR), SR)
    _write(root / "noise" / "n.wav", 0.1 * np.random.default_rng(2).standard_normal(4 * SR), SR)
    ev = _event(int(0.3 * SR))
    _write(root / "ev16k" / "click.wav", ev, SR)
    _write(root / "ev22k" / "click.wav", ops.resample(ev, SR, 22050), 22050)
    # A short noise item at another rate: always looped, always resampled.
    _write(root / "short22k" / "s.wav", np.linspace(-0.5, 0.5, int(0.2 * 22050)), 22050)
    return root


def _pools(root: Path) -> dict:
    return {"speech": {"paths": [str(root / "speech" / "*.wav")]},
            "noise": {"paths": [str(root / "noise" / "*.wav")]},
            "ev16k": {"paths": [str(root / "ev16k" / "*.wav")]},
            "ev22k": {"paths": [str(root / "ev22k" / "*.wav")]},
            # 0.2 s, looped: shorter than a noise layer's default minimum, taken on purpose
            "short22k": {"paths": [str(root / "short22k" / "*.wav")], "min_duration_s": 0}}


# --------------------------------------------------------------------------- events that are resampled


@pytest.mark.parametrize("pool, speed", [("ev16k", 1.1), ("ev16k", 0.9), ("ev16k", 2.0), ("ev16k", 0.5),
                                         ("ev22k", None)])
def test_a_resampled_event_keeps_its_onset_and_is_not_looped(corpus, pool, speed):
    """An event item is never shorter than the piece made of it (the piece is the item's
    duration / speed), so it is played once from its start: the onset first, nothing of
    the head crossfaded into its end. Regression: the +1 sample read margin made every
    resampled event 'looped', which dropped the first crossfade_s (the onset) and
    scrambled the rest."""
    event = {"pool": pool, "p": 1.0, "count_range": [1, 1], "snr_db_range": [0, 0], "max_duration_s": 5.0}
    if speed is not None:
        event["perturb"] = {"speed_range": [speed, speed]}
    synth = _synth(corpus, _pools(corpus), {"noise": [{"pool": "noise", "snr_db_range": [30, 30]}],
                                            "events": [event]})
    params = synth.sample_params(sample_rng(5, "train", 0), holdout_split=False)
    (ev,) = params["events"]
    assert ev["start_s"] == 0.0
    parts = synth.render(params)
    (at, sig), = parts.events
    # The item as a whole, brought to the output rate and played at its speed.
    item, sr_in = sf.read(str(corpus / pool / "click.wav"), dtype="float32")
    ref = ops.resample(item, sr_in, SR)
    if speed is not None:
        ref = ops.speed_perturb(ref, speed)
    assert len(sig) == len(ref) or abs(len(sig) - len(ref)) <= 1
    k = min(len(sig), len(ref))
    assert _corr(sig[:k], ref[:k]) > 0.99
    onset = int(round(0.025 * SR / (speed or 1.0)))
    energy = np.square(sig.astype(np.float64))
    assert energy[:onset].sum() > 0.9 * energy.sum()  # the onset is where it belongs
    assert energy[-onset:].sum() < 0.01 * energy.sum()  # and not faded in at the end


def test_a_resampled_event_replays_to_the_same_bytes(corpus):
    event = {"pool": "ev22k", "p": 1.0, "count_range": [2, 3], "snr_db_range": [-5, 5],
             "perturb": {"speed_range": [0.5, 2.0], "reverse_p": 0.5}}
    synth = _synth(corpus, _pools(corpus), {"noise": [{"pool": "short22k", "snr_db_range": [10, 20],
                                                       "perturb": {"speed_range": [0.5, 2.0]}}],
                                            "events": [event], "level_dbfs_range": [-30, -20]})
    for i in range(4):
        params = synth.sample_params(sample_rng(5, "train", i), holdout_split=False)
        first = synth.apply(params).columns["audio"]["bytes"]
        again = synth.apply(json.loads(json.dumps(params))).columns["audio"]["bytes"]
        assert first == again


@settings(max_examples=40, deadline=None)
@given(q=st.integers(1, 100), u=st.floats(0.0, 1.0), pool=st.sampled_from(["ev16k", "ev22k"]))
def test_an_event_at_any_drawn_speed_is_the_whole_item_played_once(corpus, q, u, pool):
    """For every speed a recipe can draw (p/q, q <= 100, in [0.5, 2]) the event piece is the
    item resampled as a whole: same start, no loop, nothing added at its end."""
    p = max(math.ceil(q / 2), min(2 * q, q // 2 + round(u * (2 * q - q // 2))))
    speed = p / q
    synth = _synth(corpus, _pools(corpus), {"noise": [{"pool": "noise", "snr_db_range": [30, 30]}],
                                            "events": [{"pool": pool, "snr_db_range": [0, 0]}]})
    item = synth.index.pools[pool].items[0]
    params = {"speech": {"pool": "speech", "item": synth.index.pools["speech"].items[0]}, "noise": [],
              "events": [{"layer": 0, "pool": pool, "item": item, "start_s": 0.0, "at_s": 0.05, "snr_db": 0.0,
                          "perturb": {"speed": speed}}]}
    (at, sig), = synth.render(params).events
    data, sr_in = sf.read(str(corpus / pool / "click.wav"), dtype="float32")
    ref = ops.resample(data, sr_in, SR)
    if ops.speed_fraction(speed) != 1:
        ref = ops.speed_perturb(ref, speed)
    k = min(len(sig), len(ref))
    assert abs(len(sig) - len(ref)) <= 1
    assert _corr(sig[:k], ref[:k]) > 0.99
    energy = np.square(sig.astype(np.float64))
    tail = max(1, len(sig) // 10)
    assert energy[-tail:].sum() < 0.01 * energy.sum()


# --------------------------------------------------------------------------- looped noise from the item's start


@pytest.mark.parametrize("speed", [None, 1.1, 0.5, 2.0])
def test_looped_resampled_noise_starts_where_its_params_say(corpus, speed):
    """A short noise item (looped) at another rate, read from start_s = 0: the segment
    begins with the item's first samples, as the params and sources record. Regression:
    the resampling context before the start was taken from the loop's crossfade, which
    moved the whole segment crossfade_s (50 ms) into the item."""
    synth = _synth(corpus, _pools(corpus), {"noise": [{"pool": "short22k", "snr_db_range": [10, 10]}]})
    item = synth.index.pools["short22k"].items[0]
    s = speed or 1.0
    seg, looped = synth._read_noise("short22k", item, 0.0, 8000, speed=s)
    assert looped
    ramp, sr_in = sf.read(str(corpus / "short22k" / "s.wav"), dtype="float32")
    ref = ops.resample(ramp, sr_in, SR)
    if speed is not None:
        ref = ops.speed_perturb(ref, speed)
    k = min(400, len(ref) - 20)
    # A ramp from -0.5: away from the first few (edge) samples it is the item's own start.
    np.testing.assert_allclose(seg[20:k], ref[20:k], atol=0.02)


# --------------------------------------------------------------------------- reverberant noise


def test_reverberant_noise_is_steady_from_the_first_sample(corpus):
    """With apply_to: speech_and_noise, a steady noise heard in a room is reverberant from
    the row's first sample: convolved from silence, its level would build up over the
    first ~RT60/4 (a cue no real recording has; 1.9 dB low in the first 50 ms at RT60 0.8 s,
    DRR 0 dB). Here the first 50 ms stay within 0.5 dB of the rest."""
    synth = _synth(corpus, {**_pools(corpus), "rooms": {"kind": "rir_generator", "count": 1,
                                                         "rt60_s_range": [0.8, 0.8], "drr_db_range": [0, 0]}},
                   {"noise": [{"pool": "noise", "snr_db_range": [0, 0]}],
                    "reverb": {"pool": "rooms", "p": 1.0, "apply_to": "speech_and_noise"}})
    head = int(0.05 * SR)
    for i in range(3):
        params = synth.sample_params(sample_rng(5, "train", i), holdout_split=False)
        (noise,) = synth.render(params).noise
        p = np.square(noise.astype(np.float64))
        head_db = 10 * math.log10(p[:head].mean() / p[head:].mean())
        assert abs(head_db) < 0.5, head_db
    # the linear convolution of the same noise does fade in: the check above can fail
    h, direct, _, _ = synth._rir("rooms", synth.index.pools["rooms"].items[0])
    seg, _ = synth._read_noise("noise", params["noise"][0]["item"], params["noise"][0]["start_s"], SR)
    lin = np.square(ops.convolve_aligned(seg, h, direct=direct).astype(np.float64))
    assert 10 * math.log10(lin[:head].mean() / lin[head:].mean()) < -1.0


# --------------------------------------------------------------------------- recipe validation


def _error(data: dict) -> str:
    with pytest.raises(RecipeError) as info:
        parse_recipe(data)
    return str(info.value)


@pytest.mark.parametrize(
    "mutate, fragments",
    [
        (lambda s: s["noise"][0].update(share=1.0),
         ["synth.noise[0].snr_db_range", "either snr_db_range or share"]),
        (lambda s: s["noise"][0].pop("snr_db_range"), ["synth.noise[0].snr_db_range", "required", "share"]),
        (lambda s: (s["noise"][0].pop("snr_db_range"), s["noise"][0].update(share=2)),
         ["synth.noise[0].share", "total_snr_db_range"]),
        (lambda s: s.update(total_snr_db_range=[0, 10]), ["synth.noise[0].snr_db_range", "share"]),
        (lambda s: (s.update(sample_rate=16000), s["noise"][0]["perturb"]["filter"].update(lowpass_hz_range=[2000, 9000])),
         ["synth.noise[0].perturb.filter.lowpass_hz_range", "Nyquist", "synth.sample_rate 16000"]),
        (lambda s: s["noise"][0]["perturb"]["filter"].update(highpass_hz_range=[100, 3000]),
         ["synth.noise[0].perturb.filter", "bandpass", "below"]),
        (lambda s: s["noise"][0]["perturb"].update(speed_range=[0.2, 1.0]),
         ["synth.noise[0].perturb.speed_range", "[0.5, 2]"]),
        (lambda s: s["noise"][0]["perturb"].update(sped_range=[0.9, 1.1]),
         ["synth.noise[0].perturb.sped_range", "did you mean 'speed_range'"]),
        (lambda s: s["events"][0].update(count_range=[1, 2.5]), ["synth.events[0].count_range", "whole numbers"]),
        (lambda s: s["reverb"].update(pool="hum"), ["synth.reverb.pool", "'hum'", "rir_generator"]),
        (lambda s: s["noise"][1].update(pool="rooms"), ["synth.noise[1].pool", "'rooms'", "noise_generator"]),
        (lambda s: s["reverb"].update(apply_to="noise"), ["synth.reverb.apply_to", "speech_and_noise"]),
        (lambda s: s.update(level_dbfs_range=[-20, 3]), ["synth.level_dbfs_range", "[-80, 0]"]),
    ],
    ids=["snr_and_share", "neither", "share_without_total", "total_with_own_snr", "cutoff_over_nyquist",
         "bandpass_edges_cross", "speed_out_of_bounds", "typo_in_perturb", "fractional_count",
         "reverb_from_a_noise_pool", "noise_from_a_rir_pool", "unknown_apply_to", "level_above_full_scale"],
)
def test_bad_synth_settings_are_named_with_the_fix(demo_corpus, mutate, fragments):
    data = full_data(demo_corpus)
    mutate(data["synth"])
    message = _error(data)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_generator_pool_settings_are_checked(demo_corpus):
    data = full_data(demo_corpus)
    data["pools"]["rooms"]["rt60_s_range"] = [0.5, 9.0]
    assert "pools.rooms.rt60_s_range" in _error(data)
    data = full_data(demo_corpus)
    data["pools"]["hum"]["colours"] = ["pink", "grey"]
    assert "pools.hum.colours" in _error(data)


def test_parse_recipe_rejects_a_missing_pool_reference_before_any_work(demo_corpus):
    data = small_recipe(demo_corpus)
    data["synth"]["noise"][0]["pool"] = "cabn"
    with pytest.raises(Exception, match=r"synth\.noise\[0\]\.pool.*'cabin'"):
        parse_recipe(data)


@pytest.mark.parametrize("peak, reverb", [(1e36, False), (3e38, False), (1e36, True), (3e38, True)])
def test_absurdly_loud_float_speech_is_mixed_or_rejected_never_a_crash(demo_corpus, tmp_path, peak, reverb):
    # A float WAV at 1e36 made snr_gain fail on an infinite speech power (ValueError in the
    # worker). Levels are float64 now; what float32 still cannot hold is a reject naming the file.
    x, sr = sf.read(sorted((demo_corpus / "speech").rglob("*.flac"))[0], dtype="float32")
    loud = tmp_path / "loud.wav"
    sf.write(loud, (x.astype(np.float64) * (peak / float(np.abs(x).max()))).astype(np.float32), sr, subtype="FLOAT")
    data = small_recipe(demo_corpus, splits={"train": {"samples": 4}})
    # The index rejects such a file (max_peak_dbfs); the synthesizer must hold up on its own.
    data["pools"]["speech"] = {"paths": [str(loud)], "max_peak_dbfs": 800}
    if reverb:
        data["pools"]["rirs"] = {"paths": [str(demo_corpus / "rir" / "*.wav")]}
        data["synth"]["reverb"] = {"pool": "rirs", "p": 1.0}
    _, synth = synth_for(data, demo_corpus)
    outcomes = []
    for params in draws(synth, 4):
        try:
            mix = synth.render(params).mix
        except BadSourceError as exc:
            assert exc.path == str(loud) and "sane scale" in exc.reason, exc
            outcomes.append("rejected")
        else:
            assert np.isfinite(mix).all() and ops.peak(mix) <= 1.0
            outcomes.append("mixed")
    if peak == 1e36 and not reverb:
        assert outcomes == ["mixed"] * 4  # 1e36 squared is 1e72: far inside float64


@pytest.mark.parametrize("name", ["demo_in_car.yaml", "in_car_template.yaml", "in_car_hands_free.yaml"])
def test_the_shipped_in_car_recipes_are_valid(name):
    from engine.recipe import load_recipe

    recipe = load_recipe(Path(__file__).parent.parent / "recipes" / name)
    assert recipe.synth.reverb is not None and recipe.synth.noise[0].perturb is not None


def _speech_at(rate: int, folder: Path, n: int = 3) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(rate) / rate
    for i in range(n):
        tone = (0.3 * np.sin(2 * np.pi * (300 + 50 * i) * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
        audio_io.sf.write(folder / f"u{i}.wav", tone, rate, subtype="PCM_16")


def _telephone_recipe(corpus: Path, speech_dir: Path, **speech_pool) -> dict:
    data = small_recipe(corpus)
    data["pools"]["speech"] = {"paths": [str(speech_dir / "*.wav")], **speech_pool}
    data["synth"].pop("sample_rate", None)
    return data


def test_the_output_rate_defaults_to_the_speech_pools_own_rate(demo_corpus, tmp_path):
    """8 kHz telephone speech without synth.sample_rate gives 8 kHz rows (it gave 16 kHz)."""
    _speech_at(8000, tmp_path / "tel")
    recipe = parse_recipe(_telephone_recipe(demo_corpus, tmp_path / "tel"))
    synth = build_synthesizer(recipe, index_pools(recipe))
    sample = synth.apply(synth.sample_params(sample_rng(1, "train", 0), holdout_split=False))
    assert sample.columns["sampling_rate"] == 8000
    assert audio_io.decode(sample.columns["audio"]["bytes"])[1] == 8000
    assert synth.hf_media_features()["audio"]["sampling_rate"] == 8000


def test_a_declared_pool_rate_or_synth_rate_sets_the_output_rate(demo_corpus, tmp_path):
    _speech_at(8000, tmp_path / "tel")
    for extra, synth_rate, expected in (({"sample_rate": 16000}, None, 16000), ({}, 22050, 22050)):
        data = _telephone_recipe(demo_corpus, tmp_path / "tel", **extra)
        if synth_rate:
            data["synth"]["sample_rate"] = synth_rate
        recipe = parse_recipe(data)
        synth = build_synthesizer(recipe, index_pools(recipe))
        assert synth.apply(synth.sample_params(sample_rng(1, "train", 0), holdout_split=False)).columns[
            "sampling_rate"] == expected


def test_speech_of_several_rates_needs_synth_sample_rate(demo_corpus, tmp_path):
    _speech_at(8000, tmp_path / "mixed", 2)
    _speech_at(16000, tmp_path / "mixed16", 2)
    for f in (tmp_path / "mixed16").iterdir():
        f.rename(tmp_path / "mixed" / f"w{f.name}")
    recipe = parse_recipe(_telephone_recipe(demo_corpus, tmp_path / "mixed"))
    with pytest.raises(RecipeError, match=r"synth\.sample_rate: .*several rates \(8000 Hz, 16000 Hz\); set synth\.sample_rate"):
        build_synthesizer(recipe, index_pools(recipe)).sample_rate


def test_a_cutoff_over_the_speech_pools_nyquist_is_named_when_the_rate_is_known(demo_corpus):
    """Without synth.sample_rate the output rate is known once the speech is indexed."""
    data = full_data(demo_corpus)
    data["synth"].pop("sample_rate", None)
    data["synth"]["noise"][0]["perturb"]["filter"].update(lowpass_hz_range=[2000, 9000])
    recipe = parse_recipe(data)
    with pytest.raises(RecipeError, match=r"lowpass_hz_range: 9000 Hz is not below the Nyquist frequency "
                                          r"\(8000 Hz\) of the output rate \(16000 Hz, the speech pool's\)"):
        build_synthesizer(recipe, index_pools(recipe)).sample_rate
