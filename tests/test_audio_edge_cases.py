"""Edge cases of the speech_noise_mix synthesizer on real files: events whose item is
resampled (speed perturbation, another sample rate), looped noise read from the start
of an item, and replay of such rows."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.audio import ops
from engine.pools import index_pools
from engine.recipe import parse_recipe
from engine.rng import sample_rng
from engine.synth import build_synthesizer

SR = 16000


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
    root = tmp_path_factory.mktemp("edge_corpus")
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
            "short22k": {"paths": [str(root / "short22k" / "*.wav")]}}


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


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3000), m=st.integers(1, 3000), d_frac=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_circular_convolution_is_the_wrapped_convolution_aligned_on_the_direct_path(n, m, d_frac, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(np.float32)
    h = (rng.standard_normal(m) * np.exp(-np.arange(m) / max(1.0, m / 4))).astype(np.float32)
    d = int(d_frac * (m - 1))
    y = ops.convolve_aligned(x, h, direct=d, circular=True)
    wrapped = np.zeros(n)
    np.add.at(wrapped, np.arange(m) % n, h.astype(np.float64))
    ref = np.roll(np.real(np.fft.ifft(np.fft.fft(x.astype(np.float64)) * np.fft.fft(wrapped))), -(d % n))
    assert y.dtype == np.float32 and y.shape == (n,)
    np.testing.assert_allclose(y, ref, atol=2e-5 * max(1.0, float(np.abs(ref).max())))


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
