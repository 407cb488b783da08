"""Specification of the audio embedding: fixed, finite, deterministic, and meaningful dims."""

from __future__ import annotations

import numpy as np
import pytest

from engine.features import AUDIO_EMBED_DIM, MEL_FMAX_HZ, N_MEL_BANDS, audio_embedding, mel_filterbank

MEANS = slice(0, N_MEL_BANDS)
STDS = slice(N_MEL_BANDS, 2 * N_MEL_BANDS)
FLATNESS = 2 * N_MEL_BANDS
LEVEL = 2 * N_MEL_BANDS + 1


def _tone(freq_hz: float, sample_rate: int = 16000, seconds: float = 1.0, amplitude: float = 0.5):
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _band_of(freq_hz: float) -> int:
    """Index of the mel band whose centre is nearest to freq_hz."""
    mel = 2595.0 * np.log10(1.0 + freq_hz / 700.0)
    step = 2595.0 * np.log10(1.0 + MEL_FMAX_HZ / 700.0) / (N_MEL_BANDS + 1)
    return int(round(mel / step)) - 1


def test_dimension_is_fixed():
    assert AUDIO_EMBED_DIM == 66


@pytest.mark.parametrize(
    "x",
    [
        np.zeros(16000, np.float32),
        np.zeros(1, np.float32),
        np.zeros(0, np.float32),
        np.array([0.3], np.float32),
        np.full(100, 0.5, np.float32),
        np.random.default_rng(0).uniform(-1e6, 1e6, 16000).astype(np.float32),
        np.full(16000, np.finfo(np.float32).max, np.float32),
        np.array([np.nan, np.inf, -np.inf, 0.1], np.float32),
    ],
    ids=["silence", "one-zero", "empty", "one-sample", "very-short", "very-loud", "float32-max", "non-finite"],
)
@pytest.mark.parametrize("sample_rate", [8000, 16000, 44100])
def test_embedding_is_float32_fixed_size_and_finite(x, sample_rate):
    e = audio_embedding(x, sample_rate)
    assert e.shape == (AUDIO_EMBED_DIM,) and e.dtype == np.float32
    assert np.isfinite(e).all()


def test_silence_reads_the_floor():
    e = audio_embedding(np.zeros(16000, np.float32), 16000)
    assert np.all(e[MEANS] == -100.0) and np.all(e[STDS] == 0.0) and e[LEVEL] == -100.0


def test_embedding_is_deterministic():
    x = np.random.default_rng(1).standard_normal(24000).astype(np.float32) * 0.1
    a = audio_embedding(x, 16000)
    b = audio_embedding(x.copy(), 16000)
    assert a.tobytes() == b.tobytes()


def test_multichannel_input_is_downmixed():
    x = _tone(440.0)
    np.testing.assert_allclose(audio_embedding(np.stack([x, x], axis=1), 16000), audio_embedding(x, 16000), atol=1e-5)


def test_low_and_high_tones_light_up_their_own_mel_bands():
    low, high = audio_embedding(_tone(300.0), 16000), audio_embedding(_tone(4000.0), 16000)
    low_band, high_band = _band_of(300.0), _band_of(4000.0)
    assert np.argmax(low[MEANS]) == low_band
    assert np.argmax(high[MEANS]) == high_band
    assert low[low_band] - high[low_band] > 30.0
    assert high[high_band] - low[high_band] > 30.0


def test_white_noise_is_flat_and_a_sine_is_not():
    noise = np.random.default_rng(2).standard_normal(16000).astype(np.float32) * 0.1
    white, sine = audio_embedding(noise, 16000), audio_embedding(_tone(1000.0), 16000)
    assert white[FLATNESS] > 0.4
    assert sine[FLATNESS] < 0.01


def test_level_is_the_mean_square_in_dbfs():
    e = audio_embedding(np.full(16000, 0.1, np.float32), 16000)
    assert e[LEVEL] == pytest.approx(-20.0, abs=1e-4)
    assert audio_embedding(_tone(440.0, amplitude=1.0), 16000)[LEVEL] == pytest.approx(-3.01, abs=0.01)


def test_fluctuating_sound_has_larger_band_std_than_steady_noise():
    rng = np.random.default_rng(3)
    steady = rng.standard_normal(32000).astype(np.float32) * 0.1
    bursts = steady * np.repeat(rng.uniform(0.0, 1.0, 32) > 0.5, 1000).astype(np.float32)
    assert audio_embedding(bursts, 16000)[STDS].mean() > 3 * audio_embedding(steady, 16000)[STDS].mean()


def test_bands_mean_the_same_frequencies_at_every_rate():
    for sample_rate in (16000, 22050, 44100, 48000):
        assert np.argmax(audio_embedding(_tone(1000.0, sample_rate), sample_rate)[MEANS]) == _band_of(1000.0)
    narrow = audio_embedding(_tone(1000.0, 8000), 8000)
    assert np.argmax(narrow[MEANS]) == _band_of(1000.0)
    assert np.all(narrow[_band_of(4500.0) : N_MEL_BANDS] == -100.0)  # above 4 kHz Nyquist


@pytest.mark.parametrize("sample_rate, n_fft", [(8000, 256), (16000, 512), (22050, 1024), (48000, 2048)])
def test_filterbank_is_cached_and_every_band_below_nyquist_has_weight(sample_rate, n_fft):
    fb = mel_filterbank(sample_rate, n_fft)
    assert fb is mel_filterbank(sample_rate, n_fft)
    assert fb.shape == (n_fft // 2 + 1, N_MEL_BANDS)
    sums = fb.sum(axis=0)
    live = sums > 0
    np.testing.assert_allclose(sums[live], 1.0, rtol=1e-5)
    if sample_rate >= 2 * MEL_FMAX_HZ:
        assert live.all()


def test_checked_input_skips_only_the_guards():
    # checked=True (a mix after peak control) must give the embedding of the plain call:
    # only the NaN and overflow passes are skipped, and the level is summed from float32
    # squares (relative error ~1e-7).
    rng = np.random.default_rng(7)
    for n in (1, 700, 16000, 160000):
        x = np.clip(rng.standard_normal(n).astype(np.float32) * 0.2, -1, 1)
        plain, checked = audio_embedding(x, 16000), audio_embedding(x, 16000, checked=True)
        np.testing.assert_array_equal(plain[:LEVEL], checked[:LEVEL])
        assert checked[LEVEL] == pytest.approx(plain[LEVEL], abs=1e-4)


def test_long_input_is_analysed_on_max_frames_spread_over_all_of_it():
    # A long input is framed on MAX_FRAMES frames spread over all of it: a loud burst in
    # its last second shows in the band means (it would not if only the start were read).
    from engine.features import MAX_FRAMES

    quiet = np.full(16000 * 30, 1e-3, np.float32)
    loud = quiet.copy()
    loud[-16000:] = _tone(1000.0, amplitude=0.5)
    e_quiet, e_loud = audio_embedding(quiet, 16000), audio_embedding(loud, 16000)
    assert e_loud[_band_of(1000.0)] > e_quiet[_band_of(1000.0)] + 1  # equal if the end went unread
    # ~1/30 of the frames hold the tone: the band std reflects a rare loud event
    assert e_loud[STDS][_band_of(1000.0)] > 10
    assert MAX_FRAMES * 0.010 * 16000 < quiet.size  # the input is longer than MAX_FRAMES hops
