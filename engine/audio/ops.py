"""Pure audio operations: levels, SNR gain, looping, resampling, peak control,
perturbation (speed, gain, filters, reversal), reverberation and signal generators.

Everything here is a plain function over numpy arrays: no I/O, no global randomness
(the generators take a ``numpy.random.Generator``), no state.
Samples are float32 in and float32 out; powers are accumulated in float64 so that the
SNR contract of docs/architecture.md (realized SNR == requested SNR within 0.01 dB) holds for
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
from scipy import fft as _fft

# scipy.signal (with scipy.special) is imported where it is used: it adds ~45 MB to every
# worker, and a recipe whose sources are all at the output rate never needs it.

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
    "frame_energies",
    "active_frames",
    "local_active_power",
    "speed_fraction",
    "speed_perturb",
    "gain",
    "gain_sweep",
    "reverse",
    "butter_sos",
    "band_filter",
    "direct_path_index",
    "convolve_aligned",
    "rt60_estimate",
    "drr_estimate_db",
    "synthetic_rir",
    "coloured_noise",
    "level_gain",
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
    # Squared straight into float64 (no float64 copy of the input first), then numpy's
    # pairwise sum, not np.dot: BLAS kernels may sum in an order that depends on the
    # buffer's alignment, and the same sample must give the same bits on any worker.
    return float(np.square(a.ravel(), dtype=np.float64).sum() / a.size)


def _trim_zeros(a: np.ndarray) -> tuple[int, int]:
    """``(first, stop)``: the span of ``a`` (1-D) between its first and last non-zero
    sample; ``(0, 0)`` when every sample is zero. Scans from each end in blocks, so a
    signal that does not start or end in silence costs two comparisons."""
    n = a.shape[0]
    block = 4096
    first = None
    for lo in range(0, n, block):
        nz = a[lo : lo + block] != 0
        k = int(nz.argmax())
        if nz[k]:
            first = lo + k
            break
    if first is None:
        return 0, 0
    for hi in range(n, first, -block):
        nz = a[max(first, hi - block) : hi][::-1] != 0
        k = int(nz.argmax())
        if nz[k]:
            return first, hi - k
    return first, first + 1  # unreachable: a[first] != 0


def frame_energies(
    x: np.ndarray, sample_rate: int, *, frame_s: float = 0.02
) -> tuple[int, int, np.ndarray, np.ndarray]:
    """The framing behind :func:`active_power`: ``(first, frame_len, energy, count)``.

    ``x`` (1-D, or ``(frames, channels)`` summed over channels) is trimmed of its leading
    and trailing exact-zero samples; frame ``k`` covers samples
    ``first + k*frame_len .. first + (k+1)*frame_len`` (the last one may be partial, its
    ``count`` says how long). ``energy`` is float64. Empty arrays for silence.

    Example: ``first, L, energy, count = frame_energies(speech, 16000)``
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if not frame_s > 0:
        raise ValueError(f"frame_s must be positive, got {frame_s}")
    frame_len = max(1, int(round(frame_s * sample_rate)))
    a = np.asarray(x)
    empty = (0, frame_len, np.zeros(0), np.zeros(0))
    if a.size == 0:
        return empty
    if a.ndim == 1:
        first, stop = _trim_zeros(a)
        if stop == 0:
            return empty
        # float32 squares (relative error 6e-8, far below the 0.01 dB contract), summed
        # per frame in float64 below. A sample over ~1.8e19 squares past float32's range:
        # such (absurd, but finite) input is squared in float64 instead, further down.
        with np.errstate(over="ignore"):
            sq = np.square(a[first:stop])
    else:
        a = a.reshape(a.shape[0], -1)
        nonzero = np.flatnonzero(np.any(a != 0, axis=1))
        if nonzero.size == 0:
            return empty
        first, stop = int(nonzero[0]), int(nonzero[-1]) + 1
        sq = np.square(a[first:stop], dtype=np.float64).sum(axis=1)
    n = sq.shape[0]
    n_full = n // frame_len
    energy = np.empty(n_full + (n_full * frame_len < n))
    count = np.full(energy.shape[0], float(frame_len))
    if n_full:
        energy[:n_full] = sq[: n_full * frame_len].reshape(n_full, frame_len).sum(axis=1, dtype=np.float64)
    if n_full * frame_len < n:
        energy[-1] = sq[n_full * frame_len :].sum(dtype=np.float64)
        count[-1] = float(n - n_full * frame_len)
    if sq.dtype != np.float64 and not np.isfinite(energy).all():
        # Overflowed float32 squares (a finite input never overflows float64: its squares
        # stay below 1.2e77); every ordinary signal keeps the float32 path's exact bits.
        sq = np.square(a[first:stop], dtype=np.float64)
        if n_full:
            energy[:n_full] = sq[: n_full * frame_len].reshape(n_full, frame_len).sum(axis=1)
        if n_full * frame_len < n:
            energy[-1] = sq[n_full * frame_len :].sum()
    return first, frame_len, energy, count


def active_frames(energy: np.ndarray, count: np.ndarray, threshold_db: float) -> np.ndarray:
    """Boolean mask of the frames whose mean square is within ``threshold_db`` of the loudest."""
    if energy.size == 0:
        return np.zeros(0, dtype=bool)
    mean_sq = energy / count
    return mean_sq >= mean_sq.max() * 10.0 ** (-threshold_db / 10.0)


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
    a = np.asarray(x)
    _, _, energy, count = frame_energies(a, sample_rate, frame_s=frame_s)
    if energy.size == 0:
        return 0.0
    active = active_frames(energy, count, threshold_db)
    channels = 1 if a.ndim == 1 else int(np.prod(a.shape[1:]))
    return float(energy[active].sum() / (count[active].sum() * channels))


def local_active_power(
    x: np.ndarray,
    sample_rate: int,
    start: int,
    stop: int,
    *,
    frame_s: float = 0.02,
    threshold_db: float = 40.0,
) -> float:
    """Active power of mono ``x`` around samples ``[start, stop)``: the energy of the frames
    that overlap the span *and* are active by the whole signal's criterion (within
    ``threshold_db`` of its loudest frame), over their sample count. Falls back to
    :func:`active_power` of the whole signal when no active frame overlaps the span (an
    event in a pause is set against the utterance's level, not against silence).

    Example: ``local_active_power(speech, 16000, 8000, 24000)``
    """
    first, frame_len, energy, count = frame_energies(x, sample_rate, frame_s=frame_s)
    if energy.size == 0:
        return 0.0
    active = active_frames(energy, count, threshold_db)
    k0 = max(0, (int(start) - first) // frame_len)
    k1 = min(energy.size, -(-(int(stop) - first) // frame_len))
    if k1 > k0:
        sel = active[k0:k1]
        if sel.any():
            return float(energy[k0:k1][sel].sum() / count[k0:k1][sel].sum())
    return float(energy[active].sum() / count[active].sum())


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

    Only the noise is scaled (docs/architecture.md). Silent speech or silent noise has no
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
    """SNR in dB by the definition in docs/architecture.md: ``active_power(speech) / power(noise)``.

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


@functools.lru_cache(maxsize=256)
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
    from scipy import special as _special  # scipy.special loads only when this operation runs

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
    from scipy import signal as _signal  # scipy.signal loads only when this operation runs

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
    return float(max(a.max(), -a.min()))  # no |x| temporary


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


def peak_limit(x: np.ndarray, limit: float, *, known_peak: float | None = None) -> tuple[np.ndarray, float]:
    """Scale ``x`` down so its peak is at most ``limit``; returns ``(y, gain)``.

    When ``peak(x) <= limit``, returns ``(x, 1.0)`` unchanged. Otherwise ``y = x * gain``
    with ``gain = limit / peak(x)`` (nudged down by float32 rounding so that
    ``peak(y) <= limit`` holds exactly). Scaling the mix of speech and noise by one gain
    keeps their SNR (the ``clipping: rescale`` policy). ``known_peak`` saves a pass when
    the caller has just measured ``peak(x)``.

    Example: ``peak_limit(np.array([2.0, -1.0], np.float32), 1.0)  # ([1.0, -0.5], 0.5)``
    """
    if not (math.isfinite(limit) and limit > 0):
        raise ValueError(f"limit must be a finite value > 0, got {limit}")
    a = np.asarray(x)
    p = peak(a) if known_peak is None else float(known_peak)
    if not math.isfinite(p):
        raise ValueError("cannot peak-limit a signal with NaN or inf samples")
    if p <= limit:
        return a, 1.0
    lim32 = float(_float32_at_most(limit))
    gain = lim32 / p
    if a.dtype == np.float32:
        # float32 in, float32 arithmetic: the gain is a float32 too, so y is exactly x * gain.
        g32 = np.float32(gain)
        y = a * g32
        while peak(y) > limit:  # rounding overshoot: at most a step or two
            g32 = np.nextafter(g32, np.float32(0))
            y = a * g32
        return y, float(g32)
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


# --------------------------------------------------------------------------- perturbation
#
# Everything below is deterministic and, where a value ends up in written audio, built
# from the C library's scalar math (filter coefficients, ramps, decays) rather than
# numpy's vectorised transcendental functions, whose last bit may differ between CPU types.

SPEED_MAX_DENOMINATOR = 100  # sampled speeds are fractions p/q with q <= this
_SPEED_REPLAY_DENOMINATOR = 1000


def speed_fraction(speed: float, max_denominator: int = _SPEED_REPLAY_DENOMINATOR) -> Fraction:
    """The fraction ``p/q`` nearest ``speed`` with ``q <= max_denominator`` (small polyphase filters).

    A speed drawn as ``float(speed_fraction(u, 100))`` comes back as the same fraction.

    Example: ``speed_fraction(1.1) == Fraction(11, 10)``
    """
    if not (math.isfinite(speed) and speed > 0):
        raise ValueError(f"speed must be a finite value > 0, got {speed}")
    return Fraction(speed).limit_denominator(max_denominator)


def speed_perturb(x: np.ndarray, speed: float) -> np.ndarray:
    """Play ``x`` ``speed`` times faster (pitch moves with it): polyphase resampling by the
    fraction :func:`speed_fraction` of ``speed``; the result has
    ``round(len(x) / speed)`` frames (exactly :func:`resampled_length` of that fraction).

    Example: ``speed_perturb(np.zeros(16000, np.float32), 1.25).shape == (12800,)``
    """
    frac = speed_fraction(speed)
    if frac == 1:
        return _as_float32(x)
    # Resampling from a "rate" p to a rate q plays the signal p/q times faster.
    return resample(x, frac.numerator, frac.denominator)


def gain(x: np.ndarray, gain_db: float) -> np.ndarray:
    """``x`` times a constant gain of ``gain_db`` (float32).

    Example: ``gain(np.ones(2, np.float32), -6.0206)  # ~[0.5, 0.5]``
    """
    return (_as_float32(x) * np.float32(db_to_gain(gain_db))).astype(np.float32, copy=False)


def gain_sweep(x: np.ndarray, gain_db: float) -> np.ndarray:
    """``x`` with a gain moving linearly in dB from 0 dB at the first sample to ``gain_db``
    at the last (an approaching or receding source). The gain is exact (scalar
    ``math.pow``) at the start of every block of 1024 samples and follows the same
    geometric ramp inside each block (a short sequential running product), so it is
    exponential throughout, cheap, and the same bits on every machine.

    Example: ``gain_sweep(np.ones(1000, np.float32), -20.0)[-1]  # ~0.1``
    """
    a = _as_float32(x)
    n = a.shape[0]
    if n < 2 or gain_db == 0:
        return a.copy()
    block = min(1024, n)
    per_sample = math.pow(10.0, gain_db / (20.0 * (n - 1)))
    blocks = -(-n // block)
    starts = np.array([math.pow(10.0, gain_db * (b * block / (n - 1)) / 20.0) for b in range(blocks)])
    inside = np.cumprod(np.full(block, per_sample))
    inside /= per_sample  # 1, r, r^2, ...
    ramp = (starts[:, None] * inside[None, :]).reshape(-1)[:n]
    shape = (n,) + (1,) * (a.ndim - 1)
    return (a * ramp.reshape(shape)).astype(np.float32)


def reverse(x: np.ndarray) -> np.ndarray:
    """Time reversal along axis 0 (a contiguous float32 copy).

    Example: ``reverse(np.arange(3, dtype=np.float32))  # [2, 1, 0]``
    """
    return np.ascontiguousarray(_as_float32(x)[::-1])


@functools.lru_cache(maxsize=256)
def butter_sos(kind: str, cutoff_hz: float, sample_rate: int, order: int = 4) -> np.ndarray:
    """Digital Butterworth low-pass or high-pass as second-order sections ``(order//2, 6)``.

    The same filter as ``scipy.signal.butter(order, cutoff_hz, kind, fs=sample_rate,
    output="sos")`` (bilinear transform with pre-warping; tested against it), built per
    section from scalar math so the coefficients are the same bits on every CPU type.
    ``order`` must be even; ``0 < cutoff_hz < sample_rate / 2``.

    Example: ``butter_sos("lowpass", 3000.0, 16000).shape == (2, 6)``
    """
    if kind not in ("lowpass", "highpass"):
        raise ValueError(f"kind must be 'lowpass' or 'highpass', got {kind!r}")
    if order < 2 or order % 2:
        raise ValueError(f"order must be even and >= 2, got {order}")
    if not 0 < cutoff_hz < sample_rate / 2:
        raise ValueError(f"cutoff {cutoff_hz} Hz must be in (0, {sample_rate / 2}) Hz")
    k = math.tan(math.pi * cutoff_hz / sample_rate)
    sections = []
    for i in range(order // 2):
        # Butterworth pole pair i: quality factor 1 / (2 cos(theta_i)).
        q = 1.0 / (2.0 * math.cos(math.pi * (2 * i + 1) / (2 * order)))
        norm = 1.0 / (1.0 + k / q + k * k)
        a1 = 2.0 * (k * k - 1.0) * norm
        a2 = (1.0 - k / q + k * k) * norm
        if kind == "lowpass":
            b0 = k * k * norm
            b1 = 2.0 * b0
        else:
            b0 = norm
            b1 = -2.0 * b0
        sections.append([b0, b1, b0, 1.0, a1, a2])
    sos = np.array(sections, dtype=np.float64)
    sos.setflags(write=False)
    return sos


def band_filter(
    x: np.ndarray,
    sample_rate: int,
    kind: str,
    *,
    lowpass_hz: float | None = None,
    highpass_hz: float | None = None,
    order: int = 4,
) -> np.ndarray:
    """Low-pass, high-pass or band-pass (high-pass then low-pass) Butterworth filtering of
    mono ``x`` with ``scipy.signal.sosfilt``. The filter starts settled: it runs over a
    time-reversed copy of the first samples (up to 1024) first, which is then dropped,
    so there is no switch-on transient. Same length, float32.

    Example: ``band_filter(noise, 16000, "bandpass", lowpass_hz=3400, highpass_hz=300)``
    """
    a = _as_float32(x)
    if a.ndim != 1:
        raise ValueError(f"band_filter expects a 1-D array, got shape {a.shape}")
    stages = []
    if kind in ("highpass", "bandpass"):
        if highpass_hz is None:
            raise ValueError(f"a {kind} needs highpass_hz")
        stages.append(butter_sos("highpass", float(highpass_hz), int(sample_rate), order))
    if kind in ("lowpass", "bandpass"):
        if lowpass_hz is None:
            raise ValueError(f"a {kind} needs lowpass_hz")
        stages.append(butter_sos("lowpass", float(lowpass_hz), int(sample_rate), order))
    if not stages:
        raise ValueError(f"kind must be lowpass, highpass or bandpass, got {kind!r}")
    if a.shape[0] == 0:
        return a.copy()
    lead = min(a.shape[0], 1024)
    y = np.concatenate([a[lead - 1 :: -1] if lead else a[:0], a]).astype(np.float64)
    from scipy import signal as _signal  # scipy.signal loads only when this operation runs

    for sos in stages:
        y = _signal.sosfilt(sos.copy(), y)  # sosfilt wants a writable array
    return y[lead:].astype(np.float32)


# --------------------------------------------------------------------------- reverberation


def direct_path_index(h: np.ndarray, sample_rate: int | None = None) -> int:
    """Index of the direct path of an impulse response: the largest sample within 1 ms
    (16 samples without a rate) after the first sample that reaches half the peak, so a
    strong later reflection is never taken for the direct sound.

    Example: ``direct_path_index(np.r_[0, 0, 1.0, 0.3], 16000) == 2``
    """
    a = np.abs(_as_float32(h))
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"expected a non-empty 1-D impulse response, got shape {a.shape}")
    top = a.max()
    if not top > 0:
        raise ValueError("the impulse response is all zeros")
    first = int((a >= 0.5 * top).argmax())
    span = 16 if sample_rate is None else max(1, int(round(0.001 * sample_rate)))
    return first + int(a[first : first + span].argmax())


def convolve_aligned(
    x: np.ndarray, h: np.ndarray, *, direct: int | None = None, circular: bool = False
) -> np.ndarray:
    """FFT convolution of mono ``x`` with the impulse response ``h``, aligned on the
    direct path: the output has ``len(x)`` samples and ``y[t]`` is the room's response at
    the moment the direct sound of ``x[t]`` arrives, so nothing shifts in time (labels
    and word timings stay valid); the reverberant tail past the end is cut. float32
    throughout (single-precision FFT).

    With ``circular=True`` the convolution wraps around ``x`` instead: the tail past the
    end is added back at the start (as if ``x`` repeated). For a steady noise that means
    the room's reverberant field is there from the first sample, instead of building up
    from silence as it does for speech.

    Example: ``convolve_aligned(x, np.r_[0.0, 1.0]) == x``  (a pure delay is undone)
    """
    a = _as_float32(x)
    f = _as_float32(h)
    if a.ndim != 1 or f.ndim != 1:
        raise ValueError("convolve_aligned expects 1-D signal and impulse response")
    n, m = a.shape[0], f.shape[0]
    if n == 0:
        return a.copy()
    d = direct_path_index(f) if direct is None else int(direct)
    if not circular:
        f = f[: d + n]  # taps past d + n reach no kept output
    m = f.shape[0]
    # Overlap-add with a batch of small FFTs: one FFT over the whole signal is several
    # times slower (it does not fit in cache). Blocks of `step` samples, FFT size `size`.
    size = max(4096, 1 << (4 * m - 1).bit_length())
    size = min(size, max(1 << (n + m - 1).bit_length(), 2))
    step = size - m + 1
    blocks = -(-n // step)
    padded = np.zeros(blocks * step, dtype=np.float32)
    padded[:n] = a
    spec = _fft.rfft(padded.reshape(blocks, step), size, axis=1)
    spec *= _fft.rfft(f, size)
    pieces = _fft.irfft(spec, size, axis=1)  # (blocks, size): block k starts at k*step
    y = np.zeros(blocks * step + size, dtype=np.float32)
    # Add the blocks in `size // step + 1` strided passes; each pass adds non-overlapping
    # blocks, so the sums are the same for any memory layout.
    for k0 in range(min(blocks, -(-size // step))):
        for k in range(k0, blocks, -(-size // step)):
            y[k * step : k * step + size] += pieces[k]
    if not circular:
        return np.ascontiguousarray(y[d : d + n])
    # Fold the full convolution (n + m - 1 samples) onto n, in a fixed order, then align:
    # out[t] = sum over j of full[t + d + j*n].
    full = y[: n + m - 1]
    folded = full[:n].copy()
    for start in range(n, full.shape[0], n):
        chunk = full[start : start + n]
        folded[: chunk.shape[0]] += chunk
    return np.ascontiguousarray(np.roll(folded, -(d % n)))


def _decay_db(h: np.ndarray, d: int) -> np.ndarray:
    e = np.square(_as_float32(h)[d:], dtype=np.float64)
    edc = np.cumsum(e[::-1])[::-1]  # Schroeder backward integration (sequential sums)
    total = edc[0]
    if not total > 0:
        return np.zeros(0)
    return 10.0 * np.log10(np.maximum(edc / total, 1e-300))


def rt60_estimate(h: np.ndarray, sample_rate: int) -> float:
    """Reverberation time (s) of an impulse response by Schroeder backward integration:
    a least-squares line through the energy decay curve between -5 and -25 dB (T20,
    extrapolated to 60 dB), or -5 to -15 dB (T10) when the decay never reaches -25 dB;
    NaN when it never reaches -15 dB. Rounded to 0.1 ms.

    Example: ``rt60_estimate(synthetic_rir(16000, 0.5, 5.0, rng), 16000)  # ~0.5``
    """
    d = direct_path_index(h, sample_rate)
    edc = _decay_db(h, d)
    for lo_db, hi_db in ((-25.0, -5.0), (-15.0, -5.0)):
        sel = np.flatnonzero((edc <= hi_db) & (edc >= lo_db))
        if edc.size and edc.min() <= lo_db and sel.size >= 3:
            t = sel.astype(np.float64) / sample_rate
            y = edc[sel]
            tc = t - t.sum() / t.size
            slope = float((tc * (y - y.sum() / y.size)).sum() / np.square(tc).sum())
            if slope < 0:
                return round(-60.0 / slope, 4)
    return math.nan


def drr_estimate_db(h: np.ndarray, sample_rate: int, *, window_s: float = 0.0025) -> float:
    """Direct-to-reverberant energy ratio (dB): energy within ``window_s`` of the direct
    path over the energy after it. Rounded to 0.01 dB; ``inf`` without a tail.

    Example: ``drr_estimate_db(h, 16000)  # ~5.0``
    """
    a = _as_float32(h)
    d = direct_path_index(a, sample_rate)
    w = max(1, int(round(window_s * sample_rate)))
    direct = float(np.square(a[max(0, d - w) : d + w + 1], dtype=np.float64).sum())
    tail = float(np.square(a[d + w + 1 :], dtype=np.float64).sum())
    if not tail > 0:
        return math.inf
    return round(10.0 * math.log10(direct / tail), 2)


def synthetic_rir(
    sample_rate: int,
    rt60_s: float,
    drr_db: float,
    rng: np.random.Generator,
    *,
    predelay_s: float = 0.002,
) -> np.ndarray:
    """A room impulse response without a room: a unit direct path after ``predelay_s``,
    then Gaussian noise under an exponential decay of 60 dB per ``rt60_s`` seconds (with
    a 2 ms build-up), scaled so that the direct-to-reverberant energy ratio is
    ``drr_db``; ``1.2 * rt60_s`` long after the direct path. float32.

    Example: ``h = synthetic_rir(16000, 0.4, 6.0, np.random.default_rng(0))``
    """
    if not (rt60_s > 0 and math.isfinite(drr_db)):
        raise ValueError(f"need rt60_s > 0 and a finite drr_db, got {rt60_s}, {drr_db}")
    d = max(0, int(round(predelay_s * sample_rate)))
    n_tail = max(2, int(math.ceil(1.2 * rt60_s * sample_rate)))
    # Amplitude decays by 60 dB in rt60_s: a constant ratio per sample, applied by a
    # sequential running product (no vectorised exp).
    per_sample = math.pow(10.0, -3.0 / (rt60_s * sample_rate))
    decay = np.cumprod(np.full(n_tail, per_sample))
    rise = 1.0 - np.cumprod(np.full(n_tail, math.exp(-1.0 / (0.002 * sample_rate))))
    tail = rng.standard_normal(n_tail) * decay * rise
    tail[0] = 0.0
    tail *= math.sqrt(math.pow(10.0, -drr_db / 10.0) / float(np.square(tail).sum()))
    h = np.zeros(d + n_tail)
    h[d] = 1.0
    h[d + 1 :] += tail[1:]
    # A very low DRR can put a tail sample above the direct path; keep the direct the peak.
    top = float(np.abs(h[d + 1 :]).max()) if n_tail > 1 else 0.0
    if top >= 0.95:
        h[d + 1 :] *= 0.95 / top
    return h.astype(np.float32)


# --------------------------------------------------------------------------- generators and level

_REF_HZ = 1000.0


def coloured_noise(
    n: int, sample_rate: int, slope_db_per_oct: float, rng: np.random.Generator, *, rms: float = 0.1
) -> np.ndarray:
    """``n`` samples of Gaussian noise whose power spectrum slopes by ``slope_db_per_oct``
    (0 white, -3 pink, -6 brown, +3 blue, +6 violet), flat below 20 Hz, no DC, at RMS
    ``rms``. Shaped in the frequency domain with weights from scalar ``math.pow``. float32.

    Example: ``pink = coloured_noise(16000, 16000, -3.0, np.random.default_rng(0))``
    """
    n = int(n)
    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    white = rng.standard_normal(n)
    spec = _fft.rfft(white)
    exponent = slope_db_per_oct / (20.0 * math.log10(2.0))  # amplitude per octave
    step = sample_rate / n
    floor_bin = 20.0 / step
    # The power law at knots 1 % apart in frequency (scalar math.pow), linear in between
    # (np.interp: plain arithmetic): within 1e-4 of the exact curve, and fast.
    bins = spec.shape[0]
    knots = [1]
    while knots[-1] < bins - 1:
        knots.append(min(bins - 1, max(knots[-1] + 1, int(knots[-1] * 1.01))))
    values = [math.pow(max(k, floor_bin) * step / _REF_HZ, exponent) for k in knots]
    weights = np.interp(np.arange(bins, dtype=np.float64), np.array(knots, dtype=np.float64), np.array(values))
    weights[0] = 0.0
    y = _fft.irfft(spec * weights, n)
    p = float(np.square(y).sum() / n)
    if p > 0:
        y *= rms / math.sqrt(p)
    return y.astype(np.float32)


def level_gain(active_speech_power: float, level_dbfs: float) -> float:
    """Gain that puts speech of active power ``active_speech_power`` at RMS ``level_dbfs``
    (over its active frames, the :func:`active_power` measure).

    Example: ``level_gain(0.01, -26.0)  # 0.501: -20 dBFS -> -26 dBFS``
    """
    if not (math.isfinite(active_speech_power) and active_speech_power > 0):
        raise ValueError(f"active_speech_power must be a finite value > 0, got {active_speech_power}")
    return math.sqrt(math.pow(10.0, level_dbfs / 10.0) / active_speech_power)
