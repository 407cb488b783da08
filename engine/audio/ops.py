"""Pure audio operations: levels, SNR gain, looping, resampling and peak control.

Everything here is a plain function over numpy arrays: no I/O, no randomness, no state.
Samples are float32 in and float32 out; powers are accumulated in float64 so that the
SNR contract of ARCHITECTURE.md (realized SNR == requested SNR within 0.01 dB) holds for
long signals too.

Level conventions:

- *power* is a mean square (linear, not dB); ``power_db`` style names are never used
  for amplitudes.
- ``*_db`` amplitudes use 20·log10 (``db_to_gain`` / ``gain_to_db``); SNRs are power
  ratios in dB (10·log10).
- Speech power is the *active* power (see :func:`active_power`); noise power is the
  plain mean square of the exact noise signal that is added.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np
from scipy import signal as _signal
from scipy import special as _special

__all__ = [
    "power",
    "active_power",
    "db_to_gain",
    "gain_to_db",
    "snr_gain",
    "realized_snr_db",
    "loop_to_length",
    "resample",
    "resampled_length",
    "downmix",
    "peak",
    "is_finite",
    "is_silent",
    "peak_limit",
    "crossfade_len",
]


def _as_float32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def power(x: np.ndarray) -> float:
    """Mean square of all samples, accumulated in float64 (0.0 for an empty array).

    Example: ``power(np.ones(10, np.float32)) == 1.0``
    """
    a = np.asarray(x)
    if a.size == 0:
        return 0.0
    a64 = a.astype(np.float64, copy=False).ravel()
    # numpy's pairwise sum, not np.dot: BLAS kernels may sum in an order that depends on
    # the buffer's alignment, and the same sample must give the same bits on any worker.
    return float(np.square(a64).sum() / a64.size)


def active_power(
    x: np.ndarray,
    sample_rate: int,
    *,
    frame_s: float = 0.02,
    threshold_db: float = 40.0,
) -> float:
    """Mean square over the *active* frames of ``x`` (the speech power of the SNR contract).

    The signal, with its leading and trailing exact-zero samples trimmed, is cut into
    non-overlapping frames of ``frame_s`` seconds (a last partial frame is kept); a frame
    is active when its mean square is within ``threshold_db`` of the loudest frame's.
    The result is the total energy of the active frames divided by their sample count.
    Trimming exact zeros first makes the value independent of padding: appending (or
    prepending) digital silence never changes it, so silence does not dilute speech.
    A 2-D ``(frames, channels)`` input is framed along axis 0 over all channels.

    Example: ``active_power(np.r_[np.ones(1600), np.zeros(16000)].astype(np.float32), 16000) == 1.0``
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if not frame_s > 0:
        raise ValueError(f"frame_s must be positive, got {frame_s}")
    a = np.asarray(x)
    if a.size == 0:
        return 0.0
    a = a.reshape(a.shape[0], -1)
    nonzero = np.flatnonzero(np.any(a != 0, axis=1))
    if nonzero.size == 0:
        return 0.0
    a = a[nonzero[0] : nonzero[-1] + 1].astype(np.float64, copy=False)
    frame_len = max(1, int(round(frame_s * sample_rate)))
    n = a.shape[0]
    n_full = n // frame_len
    sq = np.square(a).sum(axis=1)  # energy per time step, summed over channels
    energies = []
    counts = []
    if n_full:
        energies.append(sq[: n_full * frame_len].reshape(n_full, frame_len).sum(axis=1))
        counts.append(np.full(n_full, frame_len, dtype=np.float64))
    if n_full * frame_len < n:
        energies.append(np.array([sq[n_full * frame_len :].sum()]))
        counts.append(np.array([float(n - n_full * frame_len)]))
    energy = np.concatenate(energies)
    count = np.concatenate(counts)
    mean_sq = energy / count
    active = mean_sq >= mean_sq.max() * 10.0 ** (-threshold_db / 10.0)
    return float(energy[active].sum() / (count[active].sum() * a.shape[1]))


def db_to_gain(db: float) -> float:
    """Linear amplitude gain of an amplitude level in dB (20·log10 convention).

    Example: ``db_to_gain(-6.0)  # ~0.501``
    """
    return float(10.0 ** (db / 20.0))


def gain_to_db(g: float) -> float:
    """Amplitude level in dB of a linear gain; ``-inf`` for 0, ValueError for negative.

    Example: ``gain_to_db(0.5)  # ~-6.02``
    """
    if g < 0 or not math.isfinite(g):
        raise ValueError(f"gain must be a finite value >= 0, got {g}")
    if g == 0:
        return -math.inf
    return 20.0 * math.log10(g)


def snr_gain(signal_power: float, noise_power: float, snr_db: float) -> float:
    """Amplitude gain for the noise so that ``signal_power / (g**2 * noise_power)`` is ``snr_db``.

    Only the noise is scaled (ARCHITECTURE.md). Silent speech or silent noise has no
    finite gain and is an input error: raises ValueError for zero, negative or
    non-finite powers and for a non-finite ``snr_db``.

    Example: ``snr_gain(1.0, 1.0, 20.0)  # 0.1``
    """
    for name, value in (("signal_power", signal_power), ("noise_power", noise_power)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite value > 0, got {value}")
    if not math.isfinite(snr_db):
        raise ValueError(f"snr_db must be finite, got {snr_db}")
    return math.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))


def realized_snr_db(speech: np.ndarray, noise: np.ndarray, sample_rate: int, **active_kw) -> float:
    """SNR in dB by the ARCHITECTURE definition: ``active_power(speech) / power(noise)``.

    ``active_kw`` (``frame_s``, ``threshold_db``) is passed to :func:`active_power`.
    Returns ``inf`` for silent noise and ``-inf`` for silent speech; ValueError if both are
    silent.

    Example: ``realized_snr_db(speech, 0.1 * speech, 16000)  # 20.0``
    """
    p_speech = active_power(speech, sample_rate, **active_kw)
    p_noise = power(noise)
    if p_speech == 0 and p_noise == 0:
        raise ValueError("speech and noise are both silent: the SNR is undefined")
    if p_noise == 0:
        return math.inf
    if p_speech == 0:
        return -math.inf
    return 10.0 * math.log10(p_speech / p_noise)


@functools.lru_cache(maxsize=64)
def _equal_power_fades(n: int) -> tuple[np.ndarray, np.ndarray]:
    """sin/cos fade-in and fade-out of n samples, from the C library's scalar sin/cos:
    numpy's vectorised sin/cos can differ in the last bit between CPU types, and the
    output bytes must not depend on the machine."""
    t = [0.5 * math.pi * (k + 0.5) / n for k in range(n)]
    fade_in = np.array([math.sin(v) for v in t])
    fade_out = np.array([math.cos(v) for v in t])
    fade_in.setflags(write=False)
    fade_out.setflags(write=False)
    return fade_in, fade_out


def loop_to_length(x: np.ndarray, n: int, *, start: int = 0, crossfade: int = 0) -> np.ndarray:
    """Exactly ``n`` samples of ``x`` from offset ``start`` (mod ``len(x)``), looping as needed.

    At every wrap the last ``crossfade`` samples of ``x`` are blended with its first
    ``crossfade`` samples (equal-power sin/cos fades: right for uncorrelated tail and
    head, so the level does not dip), so the loop has no click; after the first wrap
    the loop period is ``len(x) - crossfade``. ``crossfade`` is clipped to
    ``len(x) // 2``. When no wrap is needed (``start + n <= len(x)``) the output is
    exactly ``x[start:start + n]``. ``x`` must be 1-D.

    Example: ``loop_to_length(np.arange(4, dtype=np.float32), 6)  # [0 1 2 3 0 1]``
    """
    a = _as_float32(x)
    if a.ndim != 1:
        raise ValueError(f"loop_to_length expects a 1-D array, got shape {a.shape}")
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    length = a.shape[0]
    if length == 0:
        raise ValueError("cannot loop an empty signal")
    start = int(start) % length
    if start + n <= length:
        return a[start : start + n].copy()

    fade = max(0, min(int(crossfade), length // 2))
    body_end = length - fade
    if fade:
        fade_in, fade_out = _equal_power_fades(fade)
        blend = (a[body_end:].astype(np.float64) * fade_out + a[:fade] * fade_in).astype(np.float32)
        cycle = np.concatenate([blend, a[fade:body_end]])
    else:
        cycle = a
    period = cycle.shape[0]  # == length - fade >= 1
    # The stream is x[:body_end] followed by `cycle` repeated; take [start, start + n).
    positions = np.arange(start, start + n, dtype=np.int64)
    out = np.empty(n, dtype=np.float32)
    head = positions < body_end
    out[head] = a[positions[head]]
    out[~head] = cycle[(positions[~head] - body_end) % period]
    return out


def resampled_length(n_frames: int, sr_in: int, sr_out: int) -> int:
    """Frame count after resampling: ``round(n_frames * sr_out / sr_in)`` computed exactly
    (Python's round, ties to even), the length :func:`resample` returns.

    Example: ``resampled_length(44100, 44100, 16000) == 16000``
    """
    return int(round(Fraction(int(n_frames) * int(sr_out), int(sr_in))))


@functools.lru_cache(maxsize=32)
def _lowpass_taps(up: int, down: int) -> np.ndarray:
    """The FIR filter resample_poly designs by default (firwin, Kaiser beta 5, 10 taps
    per phase each side), built once per rate pair instead of on every call, and with
    the C library's scalar sin so the taps are the same bits on every CPU type."""
    max_rate = max(up, down)
    cutoff = 1.0 / max_rate
    half_len = 10 * max_rate
    offsets = np.arange(2 * half_len + 1, dtype=np.float64) - half_len
    sinc = np.array(
        [1.0 if m == 0 else math.sin(math.pi * cutoff * m) / (math.pi * cutoff * m) for m in offsets]
    )
    kaiser = _special.i0(5.0 * np.sqrt(1.0 - (offsets / half_len) ** 2)) / _special.i0(5.0)
    taps = cutoff * sinc * kaiser
    taps = (taps / taps.sum()).astype(np.float32)
    taps.setflags(write=False)
    return taps


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling along axis 0 (1-D or ``(frames, channels)``), float32 out.

    Uses ``scipy.signal.resample_poly`` with ``up/down`` = the reduced fraction
    ``sr_out/sr_in``; the output has exactly :func:`resampled_length` frames (the last
    samples are trimmed or zero-padded). Equal rates return ``x`` itself as float32
    (no copy when it already is float32).

    Example: ``resample(np.zeros(44100, np.float32), 44100, 16000).shape == (16000,)``
    """
    sr_in, sr_out = int(sr_in), int(sr_out)
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    a = _as_float32(x)
    if a.ndim not in (1, 2):
        raise ValueError(f"resample expects a 1-D or 2-D array, got shape {a.shape}")
    if sr_in == sr_out:
        return a
    n_out = resampled_length(a.shape[0], sr_in, sr_out)
    if a.shape[0] == 0:
        return np.zeros((0,) + a.shape[1:], dtype=np.float32)
    ratio = Fraction(sr_out, sr_in)
    up, down = ratio.numerator, ratio.denominator
    y = _signal.resample_poly(a, up, down, axis=0, window=_lowpass_taps(up, down))
    y = np.asarray(y, dtype=np.float32)
    if y.shape[0] > n_out:
        y = y[:n_out]
    elif y.shape[0] < n_out:
        pad = [(0, n_out - y.shape[0])] + [(0, 0)] * (y.ndim - 1)
        y = np.pad(y, pad)
    return np.ascontiguousarray(y)


def downmix(x: np.ndarray) -> np.ndarray:
    """Mono float32 ``(frames,)``: the mean over channels of ``(frames, channels)`` input.

    Example: ``downmix(np.ones((5, 2), np.float32)).shape == (5,)``
    """
    a = np.asarray(x)
    if a.ndim == 1:
        return _as_float32(a)
    if a.ndim != 2:
        raise ValueError(f"downmix expects (frames,) or (frames, channels), got shape {a.shape}")
    if a.shape[1] == 1:
        return np.ascontiguousarray(a[:, 0], dtype=np.float32)
    return a.mean(axis=1, dtype=np.float64).astype(np.float32)


def peak(x: np.ndarray) -> float:
    """Largest absolute sample value; 0.0 for an empty array.

    Example: ``peak(np.array([0.1, -0.5], np.float32)) == 0.5``
    """
    a = np.asarray(x)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a)))


def is_finite(x: np.ndarray) -> bool:
    """True when no sample is NaN or ±inf.

    Example: ``is_finite(np.array([0.0, np.nan])) is False``
    """
    return bool(np.isfinite(np.asarray(x)).all())


def is_silent(x: np.ndarray, *, floor_dbfs: float = -90.0) -> bool:
    """True when the peak is below ``floor_dbfs`` (full scale = 1.0) or ``x`` is empty.

    Example: ``is_silent(np.full(10, 1e-6, np.float32))  # True: -120 dBFS``
    """
    return peak(x) < db_to_gain(floor_dbfs)


def _float32_at_most(limit: float) -> np.float32:
    lim32 = np.float32(limit)
    if float(lim32) > limit:
        lim32 = np.nextafter(lim32, np.float32(0))
    return lim32


def peak_limit(x: np.ndarray, limit: float) -> tuple[np.ndarray, float]:
    """Scale ``x`` down so its peak is at most ``limit``; returns ``(y, gain)``.

    When ``peak(x) <= limit``, returns ``(x, 1.0)`` unchanged. Otherwise ``y = x * gain``
    with ``gain = limit / peak(x)`` (nudged down by float32 rounding so that
    ``peak(y) <= limit`` holds exactly). Scaling the mix of speech and noise by one gain
    keeps their SNR (the ``clipping: rescale`` policy).

    Example: ``peak_limit(np.array([2.0, -1.0], np.float32), 1.0)  # ([1.0, -0.5], 0.5)``
    """
    if not (math.isfinite(limit) and limit > 0):
        raise ValueError(f"limit must be a finite value > 0, got {limit}")
    a = np.asarray(x)
    p = peak(a)
    if not math.isfinite(p):
        raise ValueError("cannot peak-limit a signal with NaN or inf samples")
    if p <= limit:
        return a, 1.0
    lim32 = float(_float32_at_most(limit))
    gain = lim32 / p
    a64 = a.astype(np.float64, copy=False)
    y = (a64 * gain).astype(np.float32)
    while peak(y) > limit:  # float32 rounding overshoot: at most a step or two
        gain = float(np.nextafter(gain, 0.0)) * (1.0 - 1e-7)
        y = (a64 * gain).astype(np.float32)
    return y, gain


def crossfade_len(sample_rate: int, seconds: float = 0.05) -> int:
    """Crossfade length in samples for ``seconds`` at ``sample_rate`` (rounded, >= 0).

    Example: ``crossfade_len(16000) == 800``
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    return max(0, int(round(sample_rate * seconds)))
