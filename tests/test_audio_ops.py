"""Specification of engine.audio.ops: the SNR contract (active power, SNR gain, realized
SNR, dB conversions, level gain, the local active power an event is measured against) and
the signal-shaping invariants (looping with crossfade, resampling, peak limiting, downmix,
level checks). Perturbation, reverberation and generators: test_audio_perturb.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.audio import ops

RATES = [8000, 16000, 22050, 44100, 48000]


def _speech_like(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """Bursts of modulated noise ("words") separated by digital silence ("pauses")."""
    x = rng.standard_normal(n) * rng.uniform(0.01, 0.5)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * np.arange(n) / sample_rate)
    x *= envelope
    for _ in range(int(rng.integers(0, 5))):
        gap = int(rng.integers(1, max(2, n // 4)))
        at = int(rng.integers(0, max(1, n - gap)))
        x[at : at + gap] = 0.0
    x[int(rng.integers(0, n))] = rng.uniform(0.1, 0.9)  # never all silent
    return x.astype(np.float32)


@st.composite
def mixes(draw):
    sample_rate = draw(st.sampled_from(RATES))
    duration_s = draw(st.floats(0.1, 5.0))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = int(duration_s * sample_rate)
    speech = _speech_like(rng, n, sample_rate)
    noise = (rng.standard_normal(n) * rng.uniform(1e-3, 2.0)).astype(np.float32)
    return speech, noise, sample_rate


@settings(max_examples=40, deadline=None)
@given(mix=mixes(), snr_db=st.floats(-10.0, 40.0))
def test_realized_snr_equals_requested_within_a_hundredth_of_a_db(mix, snr_db):
    speech, noise, sample_rate = mix
    gain = ops.snr_gain(ops.active_power(speech, sample_rate), ops.power(noise), snr_db)
    scaled_noise = (noise * gain).astype(np.float32)
    assert abs(ops.realized_snr_db(speech, scaled_noise, sample_rate) - snr_db) < 0.01


@settings(max_examples=30, deadline=None)
@given(mix=mixes(), pad_s=st.floats(0.0, 3.0), prepend=st.booleans())
def test_active_power_is_unchanged_by_appended_silence(mix, pad_s, prepend):
    speech, _, sample_rate = mix
    zeros = np.zeros(int(pad_s * sample_rate), dtype=np.float32)
    padded = np.concatenate([zeros, speech, zeros] if prepend else [speech, zeros])
    before = ops.active_power(speech, sample_rate)
    after = ops.active_power(padded, sample_rate)
    assert after == pytest.approx(before, rel=1e-9)


def test_pauses_do_not_dilute_active_power():
    sample_rate = 16000
    word = np.full(sample_rate // 5, 0.5, dtype=np.float32)  # whole 20 ms frames
    pause = np.zeros(sample_rate, dtype=np.float32)
    speech = np.concatenate([word, pause, word, pause, word])
    assert ops.active_power(speech, sample_rate) == pytest.approx(0.25)
    assert ops.power(speech) < 0.25 / 2


def test_frames_far_below_the_loudest_are_not_active():
    sample_rate = 16000
    loud = np.full(3200, 1.0, dtype=np.float32)
    hiss = np.full(3200, 1e-3, dtype=np.float32)  # -60 dB: outside the 40 dB range
    speech = np.concatenate([loud, hiss])
    assert ops.active_power(speech, sample_rate) == pytest.approx(1.0)
    assert ops.active_power(speech, sample_rate, threshold_db=80.0) == pytest.approx(0.5, rel=1e-5)


def test_active_power_of_silence_is_zero():
    assert ops.active_power(np.zeros(16000, np.float32), 16000) == 0.0
    assert ops.active_power(np.zeros(0, np.float32), 16000) == 0.0


def test_power_accumulates_in_float64():
    x = np.full(10_000_000, 0.1, dtype=np.float32)
    assert ops.power(x) == pytest.approx(float(np.float32(0.1)) ** 2, rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(mix=mixes(), peak_exponent=st.floats(0.0, 38.5), snr_db=st.floats(-10.0, 40.0))
def test_levels_of_any_finite_float32_signal_are_finite(mix, peak_exponent, snr_db):
    # A float WAV saved at an absurd scale (peak up to float32's largest value): its float32
    # squares overflow past ~1.8e19, the levels (float64) never do.
    speech, noise, sample_rate = mix
    target = min(10.0 ** peak_exponent, float(np.finfo(np.float32).max))
    loud = (speech.astype(np.float64) * (target / float(np.abs(speech).max()))).astype(np.float32)
    assert np.isfinite(loud).all()
    p = ops.active_power(loud, sample_rate)
    assert math.isfinite(p) and p > 0
    assert p == pytest.approx(ops.active_power(loud.astype(np.float64), sample_rate), rel=1e-6)
    local = ops.local_active_power(loud, sample_rate, 0, len(loud) // 2)
    assert math.isfinite(local) and local > 0
    assert math.isfinite(ops.power(loud))
    assert math.isfinite(ops.snr_gain(p, ops.power(noise), snr_db))


def test_a_signal_scaled_by_1e36_has_its_level_times_1e72():
    rng = np.random.default_rng(5)
    speech = _speech_like(rng, 16000, 16000)
    loud = speech * np.float32(1e36)
    assert ops.active_power(loud, 16000) == pytest.approx(ops.active_power(speech, 16000) * 1e72, rel=1e-5)


@pytest.mark.parametrize(
    "signal_power, noise_power", [(0.0, 1.0), (1.0, 0.0), (-1.0, 1.0), (1.0, math.nan), (math.inf, 1.0)]
)
def test_snr_gain_rejects_zero_negative_and_non_finite_powers(signal_power, noise_power):
    with pytest.raises(ValueError, match="power"):
        ops.snr_gain(signal_power, noise_power, 10.0)


def test_snr_gain_scales_noise_amplitude():
    assert ops.snr_gain(1.0, 1.0, 20.0) == pytest.approx(0.1)
    assert ops.snr_gain(4.0, 1.0, 0.0) == pytest.approx(2.0)


def test_realized_snr_of_silent_noise_is_infinite():
    speech = np.ones(1000, np.float32)
    assert ops.realized_snr_db(speech, np.zeros(1000, np.float32), 16000) == math.inf


@settings(max_examples=100, deadline=None)
@given(db=st.floats(-120.0, 60.0))
def test_db_and_gain_round_trip(db):
    assert ops.gain_to_db(ops.db_to_gain(db)) == pytest.approx(db, abs=1e-9)


def test_gain_to_db_of_zero_is_minus_infinity():
    assert ops.gain_to_db(0.0) == -math.inf
    with pytest.raises(ValueError):
        ops.gain_to_db(-1.0)


@settings(max_examples=40, deadline=None)
@given(level_dbfs=st.floats(-60.0, -3.0), scale=st.floats(1e-3, 1.0), seed=st.integers(0, 2**31))
def test_level_gain_puts_the_active_speech_at_the_target_within_0_05_db(level_dbfs, scale, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(16000) * scale).astype(np.float32)
    x[4000:8000] = 0.0  # a pause does not count
    g = ops.level_gain(ops.active_power(x, 16000), level_dbfs)
    y = (x * np.float32(g)).astype(np.float32)
    assert 10 * math.log10(ops.active_power(y, 16000)) == pytest.approx(level_dbfs, abs=0.05)


def test_local_active_power_is_the_speech_around_a_span():
    sr = 16000
    loud = np.full(sr, 0.5, np.float32)
    quiet = np.full(sr, 0.05, np.float32)
    x = np.concatenate([loud, quiet, np.zeros(sr, np.float32), loud])
    assert ops.local_active_power(x, sr, 0, sr) == pytest.approx(0.25, rel=1e-6)
    assert ops.local_active_power(x, sr, sr, 2 * sr) == pytest.approx(0.0025, rel=1e-5)
    # Only digital silence around the span: the utterance's own active power is used.
    assert ops.local_active_power(x, sr, 2 * sr + 100, 3 * sr - 100) == pytest.approx(
        ops.active_power(x, sr), rel=1e-9)


@settings(max_examples=150, deadline=None)
@given(
    length=st.integers(1, 3000),
    n=st.integers(0, 12000),
    start=st.integers(0, 10**6),
    crossfade=st.integers(0, 2000),
    seed=st.integers(0, 2**32 - 1),
)
def test_loop_to_length_returns_exactly_n_finite_samples(length, n, start, crossfade, seed):
    x = np.random.default_rng(seed).uniform(-1, 1, length).astype(np.float32)
    y = ops.loop_to_length(x, n, start=start, crossfade=crossfade)
    assert y.shape == (n,) and y.dtype == np.float32
    assert ops.is_finite(y)
    offset = start % length
    if offset + n <= length:
        np.testing.assert_array_equal(y, x[offset : offset + n])
    else:
        fade = min(crossfade, length // 2)
        period = length - fade
        # The first pass ends where the tail's crossfade begins; after it, the loop repeats.
        first_pass = max(0, (length - fade) - offset)
        np.testing.assert_array_equal(y[:first_pass], x[offset : offset + first_pass])
        tail = y[first_pass:]
        if tail.size > period:
            np.testing.assert_array_equal(tail[period:], tail[:-period])


def test_loop_without_crossfade_is_plain_tiling():
    x = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(ops.loop_to_length(x, 10, start=1), [1, 2, 3, 0, 1, 2, 3, 0, 1, 2])


def test_loop_crossfade_removes_the_click_at_the_wrap():
    sample_rate = 16000
    n = 4000
    x = np.sin(2 * np.pi * 5.25 * np.arange(n) / n).astype(np.float32)  # ends mid-cycle
    clicky = ops.loop_to_length(x, 3 * n)
    smooth = ops.loop_to_length(x, 3 * n, crossfade=ops.crossfade_len(sample_rate, 0.025))
    smooth_step = np.abs(np.diff(x)).max()
    assert np.abs(np.diff(clicky)).max() > 50 * smooth_step
    assert np.abs(np.diff(smooth)).max() < 3 * smooth_step


def test_loop_of_empty_signal_is_an_error():
    with pytest.raises(ValueError):
        ops.loop_to_length(np.zeros(0, np.float32), 10)


@settings(max_examples=60, deadline=None)
@given(
    sr_in=st.sampled_from(RATES),
    sr_out=st.sampled_from(RATES),
    n=st.integers(0, 30000),
    channels=st.sampled_from([None, 1, 2]),
)
def test_resample_length_is_exact(sr_in, sr_out, n, channels):
    shape = (n,) if channels is None else (n, channels)
    x = np.random.default_rng(n).uniform(-0.5, 0.5, shape).astype(np.float32)
    y = ops.resample(x, sr_in, sr_out)
    assert y.shape[0] == round(n * sr_out / sr_in) == ops.resampled_length(n, sr_in, sr_out)
    assert y.shape[1:] == x.shape[1:] and y.dtype == np.float32
    assert ops.is_finite(y)


@pytest.mark.parametrize("sr_in, sr_out", [(44100, 16000), (16000, 48000), (22050, 8000), (48000, 44100)])
@pytest.mark.parametrize("freq_hz", [440.0, 1500.0])
def test_resampled_sine_keeps_its_frequency(sr_in, sr_out, freq_hz):
    t = np.arange(sr_in) / sr_in
    x = (0.5 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)
    y = ops.resample(x, sr_in, sr_out)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    peak_hz = np.argmax(spectrum) * sr_out / y.size
    assert abs(peak_hz - freq_hz) <= 1.0
    assert ops.peak(y) == pytest.approx(0.5, rel=0.05)


@pytest.mark.parametrize("sr_in, sr_out", [(44100, 16000), (8000, 22050)])
def test_resample_uses_the_scipy_default_filter(sr_in, sr_out):
    from fractions import Fraction

    from scipy.signal import resample_poly

    x = np.random.default_rng(5).uniform(-0.5, 0.5, sr_in // 2).astype(np.float32)
    ratio = Fraction(sr_out, sr_in)
    reference = resample_poly(x, ratio.numerator, ratio.denominator)[: ops.resampled_length(x.size, sr_in, sr_out)]
    np.testing.assert_allclose(ops.resample(x, sr_in, sr_out), reference, atol=1e-6)


def test_resample_at_equal_rates_is_identity():
    x = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(ops.resample(x, 16000, 16000), x)


def test_resample_stereo_works_along_frames():
    x = np.stack([np.zeros(4410), np.ones(4410)], axis=1).astype(np.float32)
    y = ops.resample(x, 44100, 16000)
    assert y.shape == (1600, 2)
    assert np.allclose(y[100:-100, 1], 1.0, atol=1e-3) and np.allclose(y[:, 0], 0.0)


@settings(max_examples=60, deadline=None)
@given(mix=mixes(), boost_db=st.floats(0.0, 40.0), limit=st.floats(0.1, 1.0))
def test_peak_limit_bounds_the_peak_and_keeps_the_snr(mix, boost_db, limit):
    speech, noise, sample_rate = mix
    speech = speech * np.float32(ops.db_to_gain(boost_db))
    mixed = speech + noise
    limited, gain = ops.peak_limit(mixed, limit)
    assert ops.peak(limited) <= limit
    if ops.peak(mixed) <= limit:
        assert gain == 1.0 and limited is mixed
    else:
        assert gain < 1.0
        np.testing.assert_allclose(limited, mixed * gain, rtol=1e-6, atol=1e-9)
    before = ops.realized_snr_db(speech, noise, sample_rate)
    after = ops.realized_snr_db(
        (speech * gain).astype(np.float32), (noise * gain).astype(np.float32), sample_rate
    )
    assert after == pytest.approx(before, abs=1e-3)


def test_peak_limit_hits_the_limit_exactly_below_float32_rounding():
    x = np.array([0.0, 3.0, -1.5], dtype=np.float32)
    y, gain = ops.peak_limit(x, 0.99)
    assert ops.peak(y) <= 0.99 and ops.peak(y) == pytest.approx(0.99, rel=1e-6)
    assert gain == pytest.approx(0.33, rel=1e-6)


def test_downmix_averages_channels():
    x = np.array([[1.0, 0.0], [0.5, 0.5]], dtype=np.float32)
    np.testing.assert_array_equal(ops.downmix(x), [0.5, 0.5])
    assert ops.downmix(np.ones(3, np.float64)).dtype == np.float32


def test_level_checks():
    assert ops.peak(np.zeros(0, np.float32)) == 0.0
    assert ops.peak(np.array([0.2, -0.7], np.float32)) == pytest.approx(0.7)
    assert not ops.is_finite(np.array([0.0, np.nan]))
    assert not ops.is_finite(np.array([np.inf]))
    assert ops.is_silent(np.zeros(0, np.float32))
    assert ops.is_silent(np.full(10, 1e-6, np.float32))  # -120 dBFS
    assert not ops.is_silent(np.full(10, 1e-3, np.float32))  # -60 dBFS
    assert ops.crossfade_len(16000) == 800
