"""Transmission channels: codec round trips in memory and a telephone band.

A codec round trip encodes mono float32 audio with libsndfile (through ``soundfile``,
into a ``BytesIO``), decodes it, and returns exactly as many samples as it was given,
aligned with the input (the transcript's timing holds):

========  ==========================  ============================================
codec     libsndfile format/subtype   rate it runs at (resampled to it and back)
========  ==========================  ============================================
mp3       MP3 / MPEG_LAYER_III (CBR)  the lowest MP3 rate >= the signal's (8 k .. 48 kHz)
opus      OGG / OPUS                  the lowest of 8, 12, 16, 24, 48 kHz >= the signal's
vorbis    OGG / VORBIS                the signal's (at least 8 kHz)
gsm       WAV / GSM610                8 kHz (GSM 6.10 is a narrowband telephone codec)
mulaw     WAV / ULAW                  8 kHz (G.711, as on a phone line)
alaw      WAV / ALAW                  8 kHz (G.711)
========  ==========================  ============================================

Delay: libsndfile removes a codec's delay and padding itself when the stream says what
they are (LAME's Info tag, Opus' pre-skip, Vorbis granule positions): the decoder then
returns exactly the input's length, aligned. When it returns another length (LAME
writes no Info tag at low CBR bitrates, e.g. <= 32 kbps at 16 kHz: the decoder then
returns LAME's 1105 samples of delay first; GSM pads to whole 160-sample frames), the
delay is measured once per (codec, rate, setting) by cross-correlating a fixed probe
signal with its round trip, cached per process, and trimmed; the end is trimmed or
zero-padded to the input's length.

The encoders are deterministic: the same input gives the same decoded samples (the Ogg
container's bytes differ between runs, since libsndfile picks a random stream serial
number, but the decoded audio does not). libopus and LAME choose SIMD code by CPU type
at run time, so the bits may differ between CPU types (as for any floating-point codec).

Example::

    y = codec_round_trip(x, 16000, "opus", bitrate_kbps=12.0)   # len(y) == len(x)
    y = telephone_band(x, 16000, low_hz=300.0, high_hz=3400.0, narrowband=True)
"""

from __future__ import annotations

import functools
import io

import numpy as np
import soundfile as sf

from . import ops

__all__ = [
    "CODECS",
    "MP3_BITRATES_KBPS",
    "OPUS_BITRATE_KBPS",
    "TELEPHONE_RATE",
    "codec_rate",
    "mp3_version",
    "mp3_bitrates_kbps",
    "codec_setting",
    "codec_round_trip",
    "codec_delay",
    "telephone_band",
]

CODECS = ("mp3", "opus", "vorbis", "gsm", "mulaw", "alaw")
TELEPHONE_RATE = 8000
_FORMATS = {"mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS"), "vorbis": ("OGG", "VORBIS"),
            "gsm": ("WAV", "GSM610"), "mulaw": ("WAV", "ULAW"), "alaw": ("WAV", "ALAW")}
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
# The bitrates each MPEG version has (kbps): MPEG-1 from 32 kHz, MPEG-2 from 16 kHz,
# MPEG-2.5 below (libsndfile lets LAME use 8..64 there).
MP3_BITRATES_KBPS = {
    "MPEG-1": (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    "MPEG-2": (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    "MPEG-2.5": (8, 16, 24, 32, 40, 48, 56, 64),
}
# libsndfile's Opus encoder: compression level c gives 6 + (1 - c) * 250 kbps per channel.
OPUS_BITRATE_KBPS = (6.0, 256.0)
_MAX_DELAY = 4096  # the most delay a calibration looks for, in samples at the codec's rate
_PROBE_S = 1.0


def _lowest_at_least(rates: tuple[int, ...], sample_rate: int) -> int:
    return next((r for r in rates if r >= sample_rate), rates[-1])


def codec_rate(codec: str, sample_rate: int) -> int:
    """The rate ``codec`` runs at for a signal at ``sample_rate`` (the table above).

    Example: ``codec_rate("opus", 44100) == 48000``; ``codec_rate("gsm", 16000) == 8000``
    """
    if codec == "mp3":
        return _lowest_at_least(_MP3_RATES, sample_rate)
    if codec == "opus":
        return _lowest_at_least(_OPUS_RATES, sample_rate)
    if codec == "vorbis":
        return max(int(sample_rate), 8000)
    if codec in ("gsm", "mulaw", "alaw"):
        return TELEPHONE_RATE
    raise ValueError(f"codec must be one of {', '.join(CODECS)}, got {codec!r}")


def mp3_version(rate: int) -> str:
    """The MPEG version an MP3 at ``rate`` Hz is (it decides the bitrates it has)."""
    return "MPEG-1" if rate >= 32000 else "MPEG-2" if rate >= 16000 else "MPEG-2.5"


def mp3_bitrates_kbps(sample_rate: int) -> tuple[int, ...]:
    """The CBR bitrates an MP3 of a signal at ``sample_rate`` can have.

    Example: ``mp3_bitrates_kbps(16000)[-1] == 160``
    """
    return MP3_BITRATES_KBPS[mp3_version(codec_rate("mp3", sample_rate))]


def codec_setting(codec: str, rate: int, bitrate_kbps: float | None, quality: float | None) -> dict:
    """soundfile's keyword arguments for one codec setting at the codec's ``rate``.

    Example: ``codec_setting("vorbis", 16000, None, 0.25) == {"compression_level": 0.75}``
    """
    if codec == "mp3":
        table = MP3_BITRATES_KBPS[mp3_version(rate)]
        if bitrate_kbps is None or int(bitrate_kbps) != bitrate_kbps or int(bitrate_kbps) not in table:
            raise ValueError(f"an MP3 at {rate} Hz takes a bitrate_kbps of {', '.join(map(str, table))}; "
                             f"got {bitrate_kbps!r}")
        top, bottom = (320, 32) if rate >= 32000 else (160, 8) if rate >= 16000 else (64, 8)
        # libsndfile: bitrate = (int) (top - c * (top - bottom)); the half keeps the int exact.
        c = min(1.0, max(0.0, (top - bitrate_kbps - 0.5) / (top - bottom)))
        return {"compression_level": c, "bitrate_mode": "CONSTANT"}
    if codec == "opus":
        lo, hi = OPUS_BITRATE_KBPS
        if bitrate_kbps is None or not lo <= bitrate_kbps <= hi:
            raise ValueError(f"an Opus bitrate_kbps must be within [{lo:g}, {hi:g}], got {bitrate_kbps!r}")
        bps = round(bitrate_kbps * 1000.0)
        # libsndfile: bitrate = (int) ((1 - c) * 250000 + 6000); the half keeps the int exact.
        return {"compression_level": min(1.0, max(0.0, 1.0 - (bps - 6000 + 0.5) / 250000.0))}
    if codec == "vorbis":
        if quality is None or not 0.0 <= quality <= 1.0:
            raise ValueError(f"a Vorbis quality must be within [0, 1], got {quality!r}")
        return {"compression_level": 1.0 - float(quality)}
    return {}


def _encode_decode(x: np.ndarray, rate: int, codec: str, setting: dict) -> np.ndarray:
    fmt, subtype = _FORMATS[codec]
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt, subtype=subtype, **setting)
    buf.seek(0)
    y, _ = sf.read(buf, dtype="float32")
    return y if y.ndim == 1 else y[:, 0]


def _probe(rate: int) -> np.ndarray:
    """A fixed, broadband probe: noise bursts of 20 ms at irregular times, at -12 dBFS."""
    n = int(rate * _PROBE_S)
    rng = np.random.default_rng(20240517)
    x = np.zeros(n, dtype=np.float32)
    burst = int(0.02 * rate)
    window = np.hanning(burst)
    for start in (0.11, 0.23, 0.41, 0.52, 0.77, 0.86):
        at = int(start * n)
        x[at : at + burst] += (0.25 * window * rng.standard_normal(burst)).astype(np.float32)
    return x


@functools.lru_cache(maxsize=512)
def codec_delay(codec: str, rate: int, setting_key: tuple) -> int:
    """Samples (at ``rate``) a codec's decoder output lags its input when libsndfile
    does not remove the delay, measured once by cross-correlation on a fixed probe.

    Example: ``codec_delay("mp3", 16000, (("bitrate_mode", "CONSTANT"), ("compression_level", 0.9)))``
    """
    x = _probe(rate)
    y = _encode_decode(x, rate, codec, dict(setting_key))
    from scipy import signal as _signal  # scipy.signal loads only when this operation runs

    m = min(len(y), len(x) + _MAX_DELAY)
    corr = _signal.correlate(y[:m].astype(np.float64), x.astype(np.float64), mode="full", method="fft")
    lags = np.arange(-len(x) + 1, m)
    keep = (lags >= 0) & (lags <= _MAX_DELAY)
    return int(lags[keep][int(np.argmax(corr[keep]))])


def codec_round_trip(x: np.ndarray, sample_rate: int, codec: str, *, bitrate_kbps: float | None = None,
                     quality: float | None = None) -> np.ndarray:
    """Encode mono ``x`` with ``codec`` in memory and decode it: float32, same length,
    aligned with ``x``. The input is clipped to [-1, 1] first (a codec's input is PCM at
    full scale). Settings: ``bitrate_kbps`` for mp3 (a CBR bitrate of its MPEG version,
    :func:`mp3_bitrates_kbps`) and opus (6..256), ``quality`` 0..1 for vorbis; gsm,
    mulaw and alaw take none.

    Example: ``codec_round_trip(x, 16000, "mp3", bitrate_kbps=32)``
    """
    n = len(x)
    rate = codec_rate(codec, int(sample_rate))
    setting = codec_setting(codec, rate, bitrate_kbps, quality)
    a = np.clip(ops.resample(np.asarray(x, dtype=np.float32), sample_rate, rate), -1.0, 1.0)
    if len(a) == 0:
        return np.zeros(0, dtype=np.float32)
    y = _encode_decode(a, rate, codec, setting)
    if len(y) != len(a):
        d = codec_delay(codec, rate, tuple(sorted(setting.items())))
        y = y[d : d + len(a)]
    if len(y) < len(a):
        y = np.pad(y, (0, len(a) - len(y)))
    y = ops.resample(y, rate, sample_rate)
    if len(y) < n:
        y = np.pad(y, (0, n - len(y)))
    return np.ascontiguousarray(y[:n], dtype=np.float32)


def telephone_band(x: np.ndarray, sample_rate: int, *, low_hz: float = 300.0, high_hz: float = 3400.0,
                   order: int = 4, narrowband: bool = False) -> np.ndarray:
    """A telephone channel: a Butterworth band-pass ``low_hz``..``high_hz`` (``order``
    per edge; :func:`engine.audio.ops.band_filter`), then with ``narrowband`` a round
    trip through 8 kHz (resampled down and back up: nothing above 4 kHz survives). Same
    length, float32.

    Example: ``telephone_band(x, 16000, low_hz=300.0, high_hz=3400.0)``
    """
    y = ops.band_filter(x, int(sample_rate), "bandpass", lowpass_hz=float(high_hz), highpass_hz=float(low_hz),
                        order=int(order))
    if narrowband and sample_rate > TELEPHONE_RATE:
        n = len(y)
        y = ops.resample(ops.resample(y, sample_rate, TELEPHONE_RATE), TELEPHONE_RATE, sample_rate)[:n]
        if len(y) < n:  # an odd length rounds down and back
            y = np.pad(y, (0, n - len(y)))
    return y
