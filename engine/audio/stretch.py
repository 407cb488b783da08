"""Time-stretch that keeps the pitch, and pitch shift that keeps the duration (WSOLA).

Waveform-similarity overlap-add (Verhelst and Roelands, 1993): the output is built from
Hann-windowed frames of the input, half a frame apart; each frame is taken from near the
place the tempo asks for, shifted by at most a quarter frame to where it best continues
the frame before it (the largest cross-correlation with the input that followed that
frame). Pitch periods are copied, never resynthesised, so speech keeps its pitch and its
formants and has none of a phase vocoder's phasiness. Timing: a frame is never further
than ``tolerance_s`` (a quarter frame, 8 ms) from its place, so an event at ``t`` in the
input is at ``t / tempo`` in the output within that.

A pitch shift by ``s`` semitones stretches by the ratio ``r = 2**(s/12)`` (as the
fraction :func:`pitch_fraction`, within 0.75 cent) and resamples back by ``r``
(polyphase, :func:`engine.audio.ops.resample`): the duration is kept, the frequencies
move by ``r``.

Deterministic: float32 in and out; correlations through ``scipy.fft`` and the window
from the C library's scalar ``cos``, so the same input gives the same bits.

Example::

    y = time_stretch(x, 1.25, 16000)          # 25 % faster, same pitch: round(len(x) / 1.25)
    z = pitch_shift(x, 2.0, 16000)            # two semitones up, len(z) == len(x)
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np
from scipy import fft as _fft

from . import ops

__all__ = ["FRAME_S", "frame_geometry", "stretched_length", "time_stretch", "pitch_fraction", "pitch_shift",
           "stretch_and_shift"]

FRAME_S = 0.032  # frame length: a few pitch periods of the lowest voices
PITCH_MAX_DENOMINATOR = 1000  # the resampling fraction of a pitch ratio: within 0.75 cent
_BATCH = 256  # frames whose search regions are transformed in one call


def frame_geometry(sample_rate: int) -> tuple[int, int, int]:
    """``(frame, hop, tolerance)`` in samples at ``sample_rate``: a frame of about
    :data:`FRAME_S` (even), a hop of half of it and a search of a quarter either side.

    Example: ``frame_geometry(16000) == (512, 256, 128)``
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    half = max(8, int(round(sample_rate * FRAME_S / 2)))
    half += half % 2  # so that the tolerance is a whole half-hop
    return 2 * half, half, half // 2


def stretched_length(n: int, tempo: float) -> int:
    """The length :func:`time_stretch` gives ``n`` samples at ``tempo``: ``round(n / tempo)``
    (halves away from zero).

    Example: ``stretched_length(16000, 1.25) == 12800``
    """
    return int(math.floor(n / tempo + 0.5))


@functools.lru_cache(maxsize=16)
def _hann(frame: int) -> np.ndarray:
    """The periodic Hann window (its copies half a frame apart sum to 1), from scalar cos."""
    w = np.array([0.5 - 0.5 * math.cos(2.0 * math.pi * k / frame) for k in range(frame)], dtype=np.float64)
    w.setflags(write=False)
    return w


def _check_factor(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite value > 0, got {value}")
    return value


def time_stretch(x: np.ndarray, tempo: float, sample_rate: int) -> np.ndarray:
    """Play mono ``x`` ``tempo`` times faster without moving its pitch (WSOLA).

    The result has :func:`stretched_length` ``(len(x), tempo)`` samples (float32);
    ``tempo == 1`` returns a copy.

    Example: ``time_stretch(np.zeros(16000, np.float32), 0.8, 16000).shape == (20000,)``
    """
    tempo = _check_factor("tempo", tempo)
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 1:
        raise ValueError(f"time_stretch expects a 1-D (mono) array, got shape {a.shape}")
    n = a.shape[0]
    m = stretched_length(n, tempo)
    if tempo == 1.0:
        return a.copy()
    if n == 0 or m == 0:
        return np.zeros(m, dtype=np.float32)
    frame, hop, tol = frame_geometry(sample_rate)
    # Output frame k starts at k*hop - frame (frames start a frame before the output, so
    # every output sample lies under two of them); its centre maps to the input at
    # (centre * tempo), and the frame is read from there, shifted by at most `tol`.
    count = (m + frame) // hop + 2
    starts = [int(math.floor(((k * hop - frame) + frame / 2) * tempo - frame / 2 + 0.5)) for k in range(count)]
    lead = max(0, -min(starts)) + tol + 1
    tail = max(0, max(starts) + frame + tol + hop - n) + 1
    xp = np.zeros(lead + n + tail, dtype=np.float64)
    xp[lead : lead + n] = a
    size = _fft.next_fast_len(frame + 2 * tol + frame, real=True)
    lags = 2 * tol + 1
    span = np.arange(frame + 2 * tol)
    chosen = np.empty(count, dtype=np.int64)
    prev = starts[0]
    chosen[0] = prev
    spectra = np.empty((0, size // 2 + 1), dtype=np.complex128)
    for k in range(1, count):
        j = (k - 1) % _BATCH
        if j == 0:
            # Where frame k may come from does not depend on earlier choices: the spectra
            # of those regions are made a batch at a time (one transform call, bounded memory).
            upto = min(count, k + _BATCH)
            spectra = _fft.rfft(xp[(lead - tol) + np.asarray(starts[k:upto])[:, None] + span[None, :]], size, axis=1)
        # What the input does after the previous frame's samples: the new frame should
        # continue like it.
        natural = xp[lead + prev + hop : lead + prev + hop + frame]
        corr = _fft.irfft(spectra[j] * np.conj(_fft.rfft(natural, size)), size)[:lags]
        prev = starts[k] - tol + int(np.argmax(corr))
        chosen[k] = prev
    w = _hann(frame)
    frames = xp[lead + chosen[:, None] + np.arange(frame)[None, :]] * w[None, :]
    # Frames two apart do not overlap: even and odd frames each tile the output, so the
    # overlap-add is two reshapes and one sum, the same order every time.
    total = count * hop + frame
    even = np.zeros(total, dtype=np.float64)
    odd = np.zeros(total, dtype=np.float64)
    e = frames[0::2].reshape(-1)
    o = frames[1::2].reshape(-1)
    even[: e.shape[0]] = e
    odd[hop : hop + o.shape[0]] = o
    y = even + odd
    # The windows sum to 1 wherever two frames overlap (all of [frame, frame + m)); only
    # rounding is left, divided out so a constant stays a constant.
    wsum = np.zeros(total, dtype=np.float64)
    we = np.tile(w, (count + 1) // 2)
    wo = np.tile(w, count // 2)
    wsum[: we.shape[0]] += we
    wsum[hop : hop + wo.shape[0]] += wo
    out = y[frame : frame + m] / wsum[frame : frame + m]
    return out.astype(np.float32)


def pitch_fraction(semitones: float) -> Fraction:
    """The resampling fraction of a shift by ``semitones``: ``2**(semitones/12)`` with a
    denominator of at most 1000 (within 0.75 cent of it).

    Example: ``pitch_fraction(12.0) == Fraction(2)``
    """
    s = float(semitones)
    if not math.isfinite(s):
        raise ValueError(f"semitones must be finite, got {s}")
    return Fraction(math.pow(2.0, s / 12.0)).limit_denominator(PITCH_MAX_DENOMINATOR)


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """``y`` trimmed or zero-padded at the end to ``n`` samples (a sample of rounding)."""
    if y.shape[0] >= n:
        return np.ascontiguousarray(y[:n], dtype=np.float32)
    return np.pad(y, (0, n - y.shape[0])).astype(np.float32, copy=False)


def stretch_and_shift(x: np.ndarray, sample_rate: int, *, tempo: float = 1.0, semitones: float = 0.0) -> np.ndarray:
    """``x`` ``tempo`` times faster and ``semitones`` higher, in one stretch: by
    ``tempo / r`` (WSOLA), then resampled ``r`` times faster, ``r`` = :func:`pitch_fraction`.
    Length :func:`stretched_length` ``(len(x), tempo)``.

    Example: ``stretch_and_shift(x, 16000, tempo=1.1, semitones=-2.0)``
    """
    tempo = _check_factor("tempo", tempo)
    a = np.asarray(x, dtype=np.float32)
    n_out = stretched_length(a.shape[0], tempo)
    r = pitch_fraction(semitones)
    if r == 1:
        return time_stretch(a, tempo, sample_rate)
    # Resampling from a "rate" p to a rate q plays the signal p/q times faster.
    y = ops.resample(time_stretch(a, tempo / float(r), sample_rate), r.numerator, r.denominator)
    return _fit(y, n_out)


def pitch_shift(x: np.ndarray, semitones: float, sample_rate: int) -> np.ndarray:
    """``x`` ``semitones`` higher (lower when negative), same length and timing.

    Example: ``pitch_shift(np.zeros(16000, np.float32), 3.0, 16000).shape == (16000,)``
    """
    return stretch_and_shift(x, sample_rate, semitones=semitones)
