"""Specification of the perturbation, reverberation and generator operations of
engine.audio.ops and engine.audio.generators, the invariants each one promises: speed
perturbation, filters, gain sweeps and reversal; convolution with a room response
(linear or circular, aligned on the direct path) and the RT60 and DRR estimates;
coloured noise and generated noise and room items."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from engine.audio import generators, ops
from engine.recipe import NoiseGeneratorPool, RirGeneratorPool


def _noise(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


# --------------------------------------------------------------------------- speed


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40000), speed=st.floats(0.5, 2.0), seed=st.integers(0, 2**31))
def test_speed_perturbation_changes_the_duration_by_the_factor(n, speed, seed):
    frac = ops.speed_fraction(speed)
    y = ops.speed_perturb(_noise(seed, n), speed)
    assert y.dtype == np.float32
    assert len(y) == ops.resampled_length(n, frac.numerator, frac.denominator)
    # |len - n/frac| <= 0.5 and |n/frac - n/speed| = n |frac - speed| / (frac * speed)
    assert abs(len(y) - n / speed) <= 0.5 + n * abs(float(frac) - speed) / (speed * float(frac)) + 1e-9


def test_a_drawn_speed_comes_back_as_the_same_fraction():
    for u in np.linspace(0.5, 2.0, 301):
        drawn = float(ops.speed_fraction(float(u), ops.SPEED_MAX_DENOMINATOR))
        assert ops.speed_fraction(drawn) == ops.speed_fraction(float(u), ops.SPEED_MAX_DENOMINATOR)
        assert ops.speed_fraction(drawn).denominator <= ops.SPEED_MAX_DENOMINATOR


def test_speeding_up_raises_the_pitch_by_the_factor():
    sr, f0 = 16000, 500.0
    t = np.arange(sr) / sr
    x = np.sin(2 * np.pi * f0 * t).astype(np.float32)
    y = ops.speed_perturb(x, 1.25)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    peak_hz = np.argmax(spectrum) * sr / len(y)
    assert peak_hz == pytest.approx(f0 * 1.25, abs=3.0)


def test_speed_one_is_identity():
    x = _noise(0, 1000)
    np.testing.assert_array_equal(ops.speed_perturb(x, 1.0), x)
    assert ops.speed_fraction(1.1) == Fraction(11, 10)


# --------------------------------------------------------------------------- filters, gain, reversal


@pytest.mark.parametrize("kind", ["lowpass", "highpass"])
@pytest.mark.parametrize("order", [2, 4, 8])
@pytest.mark.parametrize("cutoff_hz", [80.0, 1234.5, 6000.0])
def test_butterworth_sections_match_scipy(kind, order, cutoff_hz):
    ours = ops.butter_sos(kind, cutoff_hz, 16000, order)
    ref = signal.butter(order, cutoff_hz, kind, fs=16000, output="sos")
    _, h_ours = signal.sosfreqz(ours, worN=1024, fs=16000)
    _, h_ref = signal.sosfreqz(ref, worN=1024, fs=16000)
    np.testing.assert_allclose(np.abs(h_ours), np.abs(h_ref), atol=1e-9)


def _band_power(x: np.ndarray, sr: int, lo: float, hi: float) -> float:
    f, p = signal.welch(x.astype(np.float64), fs=sr, nperseg=1024)
    return float(p[(f >= lo) & (f < hi)].mean())


def test_filters_remove_the_band_they_should():
    sr = 16000
    x = _noise(1, 4 * sr)
    low = ops.band_filter(x, sr, "lowpass", lowpass_hz=1000.0)
    high = ops.band_filter(x, sr, "highpass", highpass_hz=3000.0)
    band = ops.band_filter(x, sr, "bandpass", lowpass_hz=3400.0, highpass_hz=300.0)
    for y in (low, high, band):
        assert y.shape == x.shape and y.dtype == np.float32
    assert _band_power(low, sr, 4000, 8000) < 1e-4 * _band_power(low, sr, 100, 800)
    assert _band_power(high, sr, 50, 500) < 1e-4 * _band_power(high, sr, 4000, 7000)
    assert _band_power(band, sr, 6000, 8000) < 1e-3 * _band_power(band, sr, 800, 2000)
    assert _band_power(band, sr, 0, 60) < 1e-3 * _band_power(band, sr, 800, 2000)


def test_filter_starts_settled_without_a_switch_on_click():
    sr = 16000
    x = np.full(sr, 0.5, dtype=np.float32)  # DC: a high-pass of a settled filter is ~0 at once
    y = ops.band_filter(x, sr, "highpass", highpass_hz=100.0)
    assert np.abs(y[:200]).max() < 0.05


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 5000), gain_db=st.floats(-30, 30), seed=st.integers(0, 2**31))
def test_gain_sweep_goes_from_zero_to_gain_db(n, gain_db, seed):
    x = np.ones(n, dtype=np.float32)
    y = ops.gain_sweep(x, gain_db)
    assert y[0] == pytest.approx(1.0, rel=1e-6)
    assert y[-1] == pytest.approx(ops.db_to_gain(gain_db), rel=1e-5)
    d = np.diff(y.astype(np.float64))
    assert (d >= -1e-7).all() if gain_db >= 0 else (d <= 1e-7).all()  # monotonic


def test_constant_gain_and_reversal():
    x = np.arange(4, dtype=np.float32)
    np.testing.assert_allclose(ops.gain(x, -20.0), x * 0.1, rtol=1e-6)
    np.testing.assert_array_equal(ops.reverse(x), [3, 2, 1, 0])
    np.testing.assert_array_equal(ops.reverse(ops.reverse(x)), x)


# --------------------------------------------------------------------------- reverberation


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 30000),
    rt60=st.floats(0.1, 1.0),
    drr=st.floats(-5, 15),
    delay=st.integers(0, 400),
    seed=st.integers(0, 2**31),
)
def test_reverb_keeps_length_and_alignment(n, rt60, drr, delay, seed):
    """A click convolved with an RIR stays where it was: the direct path is at its sample."""
    h = np.concatenate([np.zeros(delay, np.float32),
                        ops.synthetic_rir(16000, rt60, drr, np.random.default_rng(seed))])
    x = np.zeros(n, dtype=np.float32)
    at = n // 3
    x[at] = 1.0
    y = ops.convolve_aligned(x, h)
    assert y.shape == (n,) and y.dtype == np.float32
    assert int(np.argmax(np.abs(y))) == at
    assert y[:at].max(initial=0.0) < 1e-5  # nothing arrives before the direct sound


def test_reverb_matches_a_full_convolution_cut_at_the_direct_path():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(50000).astype(np.float32)
    h = ops.synthetic_rir(16000, 0.6, 3.0, rng)
    d = ops.direct_path_index(h, 16000)
    ref = signal.fftconvolve(x.astype(np.float64), h.astype(np.float64))[d : d + len(x)]
    np.testing.assert_allclose(ops.convolve_aligned(x, h), ref, atol=2e-5)


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


def test_direct_path_is_not_a_later_louder_reflection_far_away():
    h = np.zeros(2000, np.float32)
    h[100] = 0.8
    h[900] = 1.0  # a reflection 50 ms later, louder than the direct sound
    assert ops.direct_path_index(h, 16000) == 100


@pytest.mark.parametrize("rt60", [0.2, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("drr", [-3.0, 5.0, 12.0])
def test_rt60_and_drr_estimates_recover_the_synthetic_rooms(rt60, drr):
    h = ops.synthetic_rir(16000, rt60, drr, np.random.default_rng(int(rt60 * 100 + drr)))
    assert ops.rt60_estimate(h, 16000) == pytest.approx(rt60, rel=0.1)
    # The direct window (+-2.5 ms) also holds the first ms of the tail: a small bias.
    assert ops.drr_estimate_db(h, 16000) == pytest.approx(drr, abs=1.0)


def test_rt60_of_a_bare_impulse_is_not_a_number():
    h = np.zeros(100, np.float32)
    h[3] = 1.0
    assert math.isnan(ops.rt60_estimate(h, 16000))


# --------------------------------------------------------------------------- generators


@pytest.mark.parametrize("slope", [0.0, -3.0, -6.0, 3.0, -4.5])
def test_coloured_noise_has_the_requested_spectral_slope(slope):
    sr = 16000
    x = ops.coloured_noise(8 * sr, sr, slope, np.random.default_rng(0))
    assert x.dtype == np.float32 and ops.power(x) == pytest.approx(0.01, rel=1e-6)
    f, p = signal.welch(x.astype(np.float64), fs=sr, nperseg=4096)
    sel = (f > 100) & (f < 6400)
    fitted = np.polyfit(np.log2(f[sel]), 10 * np.log10(p[sel]), 1)[0]
    assert fitted == pytest.approx(slope, abs=0.25)


def test_generator_items_are_fixed_by_their_id_and_spread_over_the_ranges():
    cfg = RirGeneratorPool(kind="rir_generator", count=10, rt60_s_range=(0.2, 1.2), drr_db_range=(0, 10))
    items = generators.virtual_items("rooms", cfg)
    assert [v.item for v in items] == [f"gen:rir/{i:04d}" for i in range(10)]
    rt60s = sorted(v.labels["rt60_s"] for v in items)
    # One item per tenth of the range (a Latin hypercube).
    assert [int((r - 0.2) / 0.1) for r in rt60s] == list(range(10))
    again = generators.virtual_items("other_name", cfg)
    assert [v.labels for v in again] == [v.labels for v in items]
    h1 = generators.render_item(cfg, "gen:rir/0003")
    np.testing.assert_array_equal(h1, generators.render_item(cfg, "gen:rir/0003"))
    assert len(h1) == items[3].frames
    assert ops.rt60_estimate(h1, 16000) == pytest.approx(items[3].labels["rt60_s"], rel=0.1)


def test_noise_generator_items_per_colour():
    cfg = NoiseGeneratorPool(kind="noise_generator", colours=["pink", "brown"], count=3, duration_s=2.0)
    items = generators.virtual_items("hum", cfg)
    assert [v.item for v in items] == [f"gen:{c}/{i:04d}" for c in ("brown", "pink") for i in range(3)]
    for v in items:
        nominal = generators.NOMINAL_SLOPES[v.labels["colour"]]
        assert nominal - 1.0 <= v.labels["slope_db_per_oct"] <= nominal + 1.0
        x = generators.render_item(cfg, v.item)
        assert x.shape == (32000,) and x.dtype == np.float32
    with pytest.raises(ValueError, match="not an item"):
        generators.item_labels(cfg, "gen:white/0000")
