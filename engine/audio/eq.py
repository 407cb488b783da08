"""Equalizer biquads and distortion: peaking, shelving and notch filters (the RBJ Audio
EQ Cookbook), hard and soft clipping, and bit-depth reduction.

Plain functions over mono float32 numpy arrays: no I/O, no randomness, no state. They
serve the ``speech_noise_mix`` channel stages and noise perturbations, and any other
code that wants them (speech perturbation reuses them).

- Filters are second-order sections run by ``scipy.signal.sosfilt`` in float64 and
  started settled (:func:`sosfilt_settled`): no switch-on transient. Coefficients come
  from scalar ``math`` so they are the same bits on every CPU type.
- Clipping and bit depth are level-independent: their threshold and full scale follow a
  ``reference`` amplitude, the input's peak unless given (so the same settings do the
  same to a quiet noise file and to a mix at -1 dBFS). Pass the reference explicitly to
  treat a second signal exactly like a first (the channel does, to measure the SNR
  after it).

Example::

    y = biquad(x, 16000, "peaking", freq_hz=1000.0, gain_db=6.0, q=1.0)
    y = clip(y, "tanh", drive_db=6.0)
    y = bit_depth(y, 8)
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = [
    "BIQUAD_TYPES",
    "CLIP_CURVES",
    "biquad_sos",
    "sosfilt_settled",
    "biquad",
    "clip_threshold",
    "clip",
    "bit_depth",
]

BIQUAD_TYPES = ("peaking", "low_shelf", "high_shelf", "notch")
CLIP_CURVES = ("hard", "tanh", "cubic")
_SETTLE = 1024  # samples of time-reversed lead-in that settle a filter before the signal


@functools.lru_cache(maxsize=1024)
def biquad_sos(kind: str, freq_hz: float, sample_rate: int, gain_db: float = 0.0, q: float = 0.7071067811865476) -> np.ndarray:
    """One RBJ Audio EQ Cookbook biquad as a ``(1, 6)`` second-order section, ``a0 = 1``.

    ``peaking``: ``gain_db`` at ``freq_hz``, bandwidth set by ``q``; ``low_shelf`` /
    ``high_shelf``: ``gain_db`` below / above ``freq_hz`` (the shelf's midpoint), slope
    set by ``q`` (0.707 is the steepest without overshoot); ``notch``: a zero at
    ``freq_hz`` (``gain_db`` unused), width set by ``q``. ``0 < freq_hz < sample_rate / 2``.

    Example: ``biquad_sos("peaking", 1000.0, 16000, 6.0, 1.0).shape == (1, 6)``
    """
    if kind not in BIQUAD_TYPES:
        raise ValueError(f"kind must be one of {', '.join(BIQUAD_TYPES)}, got {kind!r}")
    if not 0 < freq_hz < sample_rate / 2:
        raise ValueError(f"freq_hz {freq_hz} must be in (0, {sample_rate / 2}) Hz")
    if not q > 0:
        raise ValueError(f"q must be above 0, got {q}")
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * freq_hz / sample_rate
    cw, sw = math.cos(w0), math.sin(w0)
    alpha = sw / (2.0 * q)
    if kind == "peaking":
        b = (1.0 + alpha * a, -2.0 * cw, 1.0 - alpha * a)
        den = (1.0 + alpha / a, -2.0 * cw, 1.0 - alpha / a)
    elif kind == "notch":
        b = (1.0, -2.0 * cw, 1.0)
        den = (1.0 + alpha, -2.0 * cw, 1.0 - alpha)
    else:
        s = 2.0 * math.sqrt(a) * alpha
        if kind == "low_shelf":
            b = (a * ((a + 1) - (a - 1) * cw + s), 2 * a * ((a - 1) - (a + 1) * cw), a * ((a + 1) - (a - 1) * cw - s))
            den = ((a + 1) + (a - 1) * cw + s, -2 * ((a - 1) + (a + 1) * cw), (a + 1) + (a - 1) * cw - s)
        else:
            b = (a * ((a + 1) + (a - 1) * cw + s), -2 * a * ((a - 1) + (a + 1) * cw), a * ((a + 1) + (a - 1) * cw - s))
            den = ((a + 1) - (a - 1) * cw + s, 2 * ((a - 1) - (a + 1) * cw), (a + 1) - (a - 1) * cw - s)
    a0 = den[0]
    sos = np.array([[b[0] / a0, b[1] / a0, b[2] / a0, 1.0, den[1] / a0, den[2] / a0]], dtype=np.float64)
    sos.setflags(write=False)
    return sos


def sosfilt_settled(x: np.ndarray, sos: np.ndarray) -> np.ndarray:
    """``scipy.signal.sosfilt`` of mono ``x`` (float64 inside, float32 out, same length),
    started settled: the filter first runs over a time-reversed copy of the first samples
    (up to 1024), which is dropped, so there is no switch-on transient (as
    :func:`engine.audio.ops.band_filter` does).

    Example: ``sosfilt_settled(x, biquad_sos("notch", 50.0, 16000, q=10.0))``
    """
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 1:
        raise ValueError(f"expected a 1-D array, got shape {a.shape}")
    if a.shape[0] == 0:
        return a.copy()
    lead = min(a.shape[0], _SETTLE)
    y = np.concatenate([a[lead - 1 :: -1], a]).astype(np.float64)
    from scipy import signal as _signal  # scipy.signal loads only when this operation runs

    y = _signal.sosfilt(np.array(sos, dtype=np.float64), y)
    return y[lead:].astype(np.float32)


def biquad(x: np.ndarray, sample_rate: int, kind: str, *, freq_hz: float, gain_db: float = 0.0,
           q: float = 0.7071067811865476) -> np.ndarray:
    """Filter mono ``x`` with one :func:`biquad_sos` (settled start, same length, float32).

    Example: ``biquad(x, 16000, "low_shelf", freq_hz=200.0, gain_db=-9.0, q=0.7)``
    """
    return sosfilt_settled(x, biquad_sos(kind, float(freq_hz), int(sample_rate), float(gain_db), float(q)))


def _peak(x: np.ndarray) -> float:
    return float(np.max(np.abs(x))) if x.size else 0.0


def clip_threshold(reference: float, drive_db: float) -> float:
    """The clipping threshold that puts ``reference`` (a peak) ``drive_db`` above it.

    Example: ``clip_threshold(0.5, 6.0206) == 0.25`` (to float precision)
    """
    return float(reference) * 10.0 ** (-float(drive_db) / 20.0)


def clip(x: np.ndarray, curve: str, drive_db: float, *, reference: float | None = None) -> np.ndarray:
    """Clip mono ``x`` so that its ``reference`` amplitude (default: its peak) lies
    ``drive_db`` above the clipping threshold ``T``. Every curve has gain 1 for small
    signals and never exceeds ``T`` in magnitude:

    - ``hard``: ``clip(x, -T, T)``;
    - ``tanh``: ``T * tanh(x / T)``;
    - ``cubic``: ``T * (1.5 u - 0.5 u**3)`` with ``u = x / (1.5 T)`` clipped to [-1, 1]
      (smooth at the knee, flat beyond ``1.5 T``).

    A silent input (reference 0) comes back unchanged. Example: ``clip(x, "hard", 6.0)``
    """
    if curve not in CLIP_CURVES:
        raise ValueError(f"curve must be one of {', '.join(CLIP_CURVES)}, got {curve!r}")
    a = np.asarray(x, dtype=np.float32)
    ref = _peak(a) if reference is None else float(reference)
    t = clip_threshold(ref, drive_db)
    if not t > 0:
        return a.copy()
    if curve == "hard":
        return np.clip(a, -t, t).astype(np.float32)
    x64 = a.astype(np.float64)
    if curve == "tanh":
        return (t * np.tanh(x64 / t)).astype(np.float32)
    u = np.clip(x64 / (1.5 * t), -1.0, 1.0)
    return (t * (1.5 * u - 0.5 * (u * u * u))).astype(np.float32)  # u*u*u: a tenth of the time of u**3


def bit_depth(x: np.ndarray, bits: int, *, reference: float | None = None) -> np.ndarray:
    """Quantize mono ``x`` to ``bits`` bits, as a PCM converter whose full scale is
    ``reference`` (default: the input's peak): step ``q = reference / 2**(bits - 1)``,
    levels ``k * q`` for integer ``k`` in ``[-2**(bits-1), 2**(bits-1) - 1]`` (mid-tread;
    round half to even). At most ``2**bits`` distinct values. A silent input comes back
    unchanged.

    Example: ``len(np.unique(bit_depth(x, 4))) <= 16``
    """
    bits = int(bits)
    if not 1 <= bits <= 32:
        raise ValueError(f"bits must be within [1, 32], got {bits}")
    a = np.asarray(x, dtype=np.float32)
    ref = _peak(a) if reference is None else float(reference)
    if not ref > 0:
        return a.copy()
    half = 2 ** (bits - 1)
    step = ref / half
    k = np.clip(np.round(a.astype(np.float64) / step), -half, half - 1)
    return (k * step).astype(np.float32)
