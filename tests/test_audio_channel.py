"""Channels, codecs, equalizer biquads and distortion (engine/audio/channel.py,
engine/audio/eq.py): codec round trips keep length and timing, the telephone band's
edges, the RBJ filters' gains, clipping bounds and quantization levels."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from engine.audio import channel, eq

SR = 16000
BURSTS_S = (0.31, 0.74, 1.17)


def _bursts(sr: int = SR, n: int | None = None) -> tuple[np.ndarray, list[int], int]:
    """Quiet noise with three 30 ms chirps (300 -> 3000 Hz); an odd length on purpose."""
    n = n or int(1.5 * sr) + 7
    rng = np.random.default_rng(3)
    x = (0.003 * rng.standard_normal(n)).astype(np.float32)
    m = int(0.03 * sr)
    t = np.arange(m) / sr
    chirp = 0.5 * np.hanning(m) * np.sin(2 * np.pi * (300 * t + 2700 / 0.06 * t * t))
    at = [int(s * sr) for s in BURSTS_S]
    for a in at:
        x[a : a + m] += chirp.astype(np.float32)
    return x, at, m


def _lags_ms(x: np.ndarray, y: np.ndarray, at: list[int], m: int, sr: int = SR) -> list[float]:
    w = int(0.01 * sr)
    out = []
    for a in at:
        c = np.correlate(y[a - 2 * w : a + 2 * w + m].astype(np.float64), x[a - w : a + w + m].astype(np.float64), "valid")
        out.append((int(np.argmax(c)) - w) / sr * 1000.0)
    return out


CODEC_CASES = [
    ("mp3", {"bitrate_kbps": 16}),   # no Info tag at this CBR: the calibrated delay is trimmed
    ("mp3", {"bitrate_kbps": 64}),   # Info tag: libsndfile removes the delay itself
    ("opus", {"bitrate_kbps": 12.0}),
    ("opus", {"bitrate_kbps": 64.0}),
    ("vorbis", {"quality": 0.0}),
    ("vorbis", {"quality": 1.0}),
    ("gsm", {}),
    ("mulaw", {}),
    ("alaw", {}),
]


@pytest.mark.parametrize("codec,setting", CODEC_CASES, ids=lambda c: str(c))
def test_a_codec_round_trip_keeps_length_and_timing_within_1_ms(codec, setting):
    x, at, m = _bursts()
    y = channel.codec_round_trip(x, SR, codec, **setting)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert all(abs(lag) <= 1.0 for lag in _lags_ms(x, y, at, m)), _lags_ms(x, y, at, m)
    # and it really is a lossy channel, not the input handed back
    assert not np.array_equal(y, x)


@pytest.mark.parametrize("codec,setting", CODEC_CASES, ids=lambda c: str(c))
def test_a_codec_round_trip_is_deterministic(codec, setting):
    """Replay needs the same samples from the same input: true of every codec (the Ogg
    container's bytes are not the same twice, its random serial number, but the audio is)."""
    x, _, _ = _bursts()
    assert np.array_equal(channel.codec_round_trip(x, SR, codec, **setting),
                          channel.codec_round_trip(x, SR, codec, **setting))


def test_two_ogg_encodes_decode_to_the_same_audio():
    """libsndfile gives each Ogg stream a random serial number, so two encodes are other
    bytes (seen with libsndfile 1.2.2); only the decoded audio reaches a row, and it is equal."""
    x, _, _ = _bursts()
    blobs = []
    for _ in range(2):
        buf = io.BytesIO()
        sf.write(buf, x, SR, format="OGG", subtype="OPUS")
        blobs.append(buf.getvalue())
    decoded = [sf.read(io.BytesIO(b), dtype="float32")[0] for b in blobs]
    assert np.array_equal(decoded[0], decoded[1])


def test_an_mp3_without_an_info_tag_is_trimmed_by_its_calibrated_delay():
    """LAME writes no Info tag at 16 kbps CBR: the decoder returns 1105 samples of delay
    (576 encoder + 529 decoder) first; the calibration measures exactly that."""
    x, _, _ = _bursts()
    buf = io.BytesIO()
    sf.write(buf, x, SR, format="MP3", subtype="MPEG_LAYER_III", compression_level=(160 - 16.5) / 152,
             bitrate_mode="CONSTANT")
    raw, _ = sf.read(io.BytesIO(buf.getvalue()), dtype="float32")
    assert len(raw) > len(x)
    setting = channel.codec_setting("mp3", SR, 16, None)
    assert channel.codec_delay("mp3", SR, tuple(sorted(setting.items()))) == 1105


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
def test_codecs_at_rates_they_do_not_have_are_resampled_and_keep_timing(sr):
    x, at, m = _bursts(sr)
    for codec, setting in [("opus", {"bitrate_kbps": 32.0}), ("gsm", {}), ("mulaw", {}),
                           ("mp3", {"bitrate_kbps": 64})]:
        y = channel.codec_round_trip(x, sr, codec, **setting)
        assert y.shape == x.shape
        assert all(abs(lag) <= 1.0 for lag in _lags_ms(x, y, at, m, sr)), (codec, sr)


def test_codec_rates():
    assert channel.codec_rate("opus", 44100) == 48000
    assert channel.codec_rate("opus", 16000) == 16000
    assert channel.codec_rate("mp3", 4000) == 8000
    assert channel.codec_rate("gsm", 48000) == channel.codec_rate("alaw", 16000) == 8000
    assert channel.mp3_bitrates_kbps(16000) == channel.MP3_BITRATES_KBPS["MPEG-2"]
    assert channel.mp3_bitrates_kbps(44100)[0] == 32


def test_codec_settings_out_of_range_are_refused():
    x = np.zeros(1600, np.float32)
    with pytest.raises(ValueError, match="Opus bitrate_kbps"):
        channel.codec_round_trip(x, SR, "opus", bitrate_kbps=300.0)
    with pytest.raises(ValueError, match="MP3 at 16000 Hz"):
        channel.codec_round_trip(x, SR, "mp3", bitrate_kbps=320)
    with pytest.raises(ValueError, match="Vorbis quality"):
        channel.codec_round_trip(x, SR, "vorbis", quality=1.5)


def _tone(freq: float, sr: int = SR, seconds: float = 1.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr)).astype(np.float32)


def _gain_db(x: np.ndarray, y: np.ndarray) -> float:
    # the middle half: away from both ends
    a, b = len(x) // 4, 3 * len(x) // 4
    return 10 * math.log10(float(np.mean(y[a:b].astype(np.float64) ** 2)) / float(np.mean(x[a:b].astype(np.float64) ** 2)))


@pytest.mark.parametrize("narrowband", [False, True])
def test_the_telephone_band_stops_100_hz_and_6_khz_and_passes_1_khz(narrowband):
    def through(f: float) -> float:
        x = _tone(f)
        return _gain_db(x, channel.telephone_band(x, SR, low_hz=300.0, high_hz=3400.0, narrowband=narrowband))

    assert through(100.0) < -20.0
    assert through(6000.0) < -20.0
    assert abs(through(1000.0)) < 0.5
    for n in (SR, SR + 1, SR + 3):  # odd lengths round down at 8 kHz and back
        assert channel.telephone_band(_tone(1000.0)[:n] if n <= SR else np.zeros(n, np.float32), SR,
                                      narrowband=narrowband).shape == (n,)


def _response_db(sos: np.ndarray, freq: float, sr: int) -> float:
    _, h = signal.sosfreqz(sos, worN=[freq], fs=sr)
    return 20 * math.log10(abs(h[0]))


@settings(max_examples=200, deadline=None)
@given(st.floats(20.0, 7500.0), st.floats(-24.0, 24.0), st.floats(0.1, 20.0))
def test_a_peaking_filter_has_its_gain_at_its_centre_frequency(f0, gain, q):
    assert abs(_response_db(eq.biquad_sos("peaking", f0, SR, gain, q), f0, SR) - gain) < 0.1


@pytest.mark.parametrize("f0,gain,q", [(1000.0, 9.0, 1.0), (300.0, -12.0, 2.0), (4000.0, 6.0, 0.7)])
def test_a_peaking_filter_on_a_tone_at_its_centre_gives_its_gain(f0, gain, q):
    x = _tone(f0)
    assert abs(_gain_db(x, eq.biquad(x, SR, "peaking", freq_hz=f0, gain_db=gain, q=q)) - gain) < 0.1


@settings(max_examples=100, deadline=None)
@given(st.floats(100.0, 2000.0), st.floats(-18.0, 18.0), st.floats(0.3, 1.0))
def test_shelves_have_their_gain_on_their_side_and_none_on_the_other(f0, gain, q):
    low = eq.biquad_sos("low_shelf", f0, SR, gain, q)
    high = eq.biquad_sos("high_shelf", f0 * 3, SR, gain, q)
    assert abs(_response_db(low, 1.0, SR) - gain) < 0.1
    assert abs(_response_db(low, SR / 2 - 1.0, SR)) < 0.1
    assert abs(_response_db(high, SR / 2 - 1.0, SR) - gain) < 0.1
    assert abs(_response_db(high, 1.0, SR)) < 0.1
    # the midpoint is half the gain (RBJ's shelf definition)
    assert abs(_response_db(low, f0, SR) - gain / 2) < 0.1


@pytest.mark.parametrize("f0,q", [(50.0, 10.0), (1000.0, 2.0), (3000.0, 5.0)])
def test_a_notch_removes_its_frequency_and_passes_others(f0, q):
    x = _tone(f0, seconds=2.0)
    assert _gain_db(x, eq.biquad(x, SR, "notch", freq_hz=f0, q=q)) < -40.0
    far = _tone(f0 * 4)
    assert abs(_gain_db(far, eq.biquad(far, SR, "notch", freq_hz=f0, q=q))) < 1.0


def test_biquads_refuse_frequencies_at_or_above_nyquist():
    with pytest.raises(ValueError, match="freq_hz"):
        eq.biquad_sos("peaking", 8000.0, SR, 3.0, 1.0)


signals = st.lists(st.floats(-4.0, 4.0, width=32), min_size=1, max_size=400).map(lambda v: np.array(v, np.float32))


@settings(max_examples=200, deadline=None)
@given(signals, st.sampled_from(eq.CLIP_CURVES), st.floats(0.0, 40.0))
def test_clipping_never_exceeds_its_threshold_and_keeps_small_signals(x, curve, drive_db):
    y = eq.clip(x, curve, drive_db)
    ref = float(np.max(np.abs(x)))
    t = eq.clip_threshold(ref, drive_db)
    assert y.shape == x.shape and np.all(np.abs(y) <= np.float32(t) * (1 + 1e-6))
    if curve == "hard":
        small = np.abs(x) <= t
        assert np.array_equal(y[small], x[small])
        assert np.all(np.abs(y[~small]) == np.float32(t))


def test_soft_clipping_has_unit_gain_for_small_signals():
    x = np.array([0.001, -0.002], np.float32)
    for curve in ("tanh", "cubic"):
        y = eq.clip(x, curve, 6.0, reference=1.0)
        assert np.allclose(y, x, rtol=1e-3)


@settings(max_examples=200, deadline=None)
@given(signals, st.integers(1, 16))
def test_bit_depth_leaves_at_most_2_to_the_bits_levels_on_the_step_grid(x, bits):
    y = eq.bit_depth(x, bits)
    ref = float(np.max(np.abs(x)))
    if ref == 0:
        assert np.array_equal(y, x)
        return
    step = ref / 2 ** (bits - 1)
    assert len(np.unique(y)) <= 2**bits
    k = y.astype(np.float64) / step
    assert np.allclose(k, np.round(k), atol=1e-3)
    inside = x.astype(np.float64) <= ref - step  # the top step is clipped, as in PCM
    assert np.all(np.abs(y[inside].astype(np.float64) - x[inside]) <= step / 2 * (1 + 1e-5) + 1e-7)


def test_bit_depth_of_a_ramp_uses_every_level():
    x = np.linspace(-1.0, 1.0, 10001, dtype=np.float32)
    assert len(np.unique(eq.bit_depth(x, 4))) == 16
