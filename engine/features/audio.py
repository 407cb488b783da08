"""The audio embedding: hand-made log-mel statistics of a row or a file.

No downloaded model: cheap enough to compute for every synthesized row (well under 1 ms
per second of audio).

Audio embedding layout (``AUDIO_EMBED_DIM`` = 66 float32 values):

====== ===================== ==========================================================
dims   name                  meaning
====== ===================== ==========================================================
0-31   log-mel band means    mean over frames of 10·log10(band power), dB (full-scale
                             white noise ~ 0 dB in every band, floor -100 dB); 32 mel
                             bands on one fixed grid from 0 Hz to 8 kHz at every rate
32-63  log-mel band stds     standard deviation over frames of the same values, dB
                             (how much each band fluctuates: speech high, steady noise
                             low)
64     spectral flatness     mean over frames of geometric / arithmetic mean of the
                             power spectrum up to min(8 kHz, Nyquist); 0 tonal .. 1 white
65     level_dbfs            10·log10 of the mean square of the whole input, dBFS
                             (floor -100)
====== ===================== ==========================================================

Framing: Hann windows of 32 ms (rounded to samples; FFT size the next power of two,
512 at 16 kHz) every 10 ms, at the input's own sample rate; an input with more than
``MAX_FRAMES`` (128) such frames (longer than ~1.3 s) is analysed on 128 frames spread
evenly over it with a constant hop instead, so a row's embedding costs the same whatever
its length (the frame statistics estimate the same quantities; the level uses every
sample). The band grid is the same
at every rate so that a dimension always means the same frequencies: bands above a
low-rate file's Nyquist frequency hold no energy and read the floor value (-100 dB),
which is itself a real difference between, say, 8 kHz telephone audio and 16 kHz
speech. Every value is finite, also for silence, a single sample or NaN input (non-finite
samples are treated as 0).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import fft as _fft
from scipy import sparse as _sparse

__all__ = ["AUDIO_EMBED_DIM", "N_MEL_BANDS", "MEL_FMAX_HZ", "audio_embedding", "audio_feature_names",
           "mel_band_edges_hz", "mel_filterbank"]

N_MEL_BANDS = 32
MEL_FMAX_HZ = 8000.0
AUDIO_EMBED_DIM = 2 * N_MEL_BANDS + 2

_WINDOW_S = 0.032
_HOP_S = 0.010
_POWER_FLOOR = 1e-10  # -100 dB: the floor of band powers and of the level
_FLOOR_DB = -100.0  # what a power at or below _POWER_FLOOR reads, exactly
_EPS = 1e-20
# Longer inputs are analysed on this many frames spread evenly over them (every sample
# still counts in the level): the statistics over frames estimate the same quantities,
# and the embedding's cost per row stays bounded (it is computed for every row written).
MAX_FRAMES = 128  # 256 cost 0.35 ms more per 10 s row; on speech mixes band values moved < 2 dB
_CHUNK_FRAMES = MAX_FRAMES  # one pass for a bounded input: each chunk costs ~15 calls
_MAX_AMPLITUDE = 1e12  # float32 spectra of louder input overflow


def _hz_to_mel(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: float) -> float:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_band_edges_hz() -> list[float]:
    """The ``N_MEL_BANDS + 2`` edges of the mel grid, 0 Hz to ``MEL_FMAX_HZ``: band ``i``
    rises from edge ``i``, peaks at ``i + 1`` and falls to ``i + 2``.

    Example: ``round(mel_band_edges_hz()[-1], 6) == 8000.0``
    """
    # Scalar math for the band edges: the same bits on every CPU type.
    mel_step = _hz_to_mel(MEL_FMAX_HZ) / (N_MEL_BANDS + 1)
    return [_mel_to_hz(k * mel_step) for k in range(N_MEL_BANDS + 2)]


def audio_feature_names() -> list[str]:
    """A readable name for each of the ``AUDIO_EMBED_DIM`` values (the table above).

    Example: ``audio_feature_names()[-1] == "level_dbfs"``
    """
    edges = mel_band_edges_hz()
    span = [f"{edges[i]:.0f}-{edges[i + 2]:.0f} Hz" for i in range(N_MEL_BANDS)]
    return (
        [f"mel_mean_{i:02d} ({span[i]})" for i in range(N_MEL_BANDS)]
        + [f"mel_std_{i:02d} ({span[i]})" for i in range(N_MEL_BANDS)]
        + ["spectral_flatness", "level_dbfs"]
    )


@functools.lru_cache(maxsize=32)
def mel_filterbank(sample_rate: int, n_fft: int) -> np.ndarray:
    """Triangular mel filters ``(n_fft // 2 + 1, N_MEL_BANDS)`` float32, each column summing
    to 1 (a band's value is the mean bin power under its triangle), on the fixed
    0..``MEL_FMAX_HZ`` grid; bands above Nyquist are all-zero columns.

    Example: ``mel_filterbank(16000, 512).shape == (257, 32)``
    """
    n_bins = n_fft // 2 + 1
    bin_hz = np.arange(n_bins, dtype=np.float64) * sample_rate / n_fft
    edges_hz = np.array(mel_band_edges_hz())
    lower, center, upper = edges_hz[:-2], edges_hz[1:-1], edges_hz[2:]
    f = bin_hz[:, None]
    rising = (f - lower) / (center - lower)
    falling = (upper - f) / (upper - center)
    weights = np.clip(np.minimum(rising, falling), 0.0, None)
    # A band narrower than the bin spacing may fall between bins: give it its nearest bin.
    nyquist = sample_rate / 2.0
    for band in np.flatnonzero(weights.sum(axis=0) == 0):
        if center[band] <= nyquist:
            weights[int(round(center[band] * n_fft / sample_rate)), band] = 1.0
    sums = weights.sum(axis=0)
    weights = np.divide(weights, sums, out=np.zeros_like(weights), where=sums > 0)
    weights = weights.astype(np.float32)
    weights.setflags(write=False)
    return weights


@functools.lru_cache(maxsize=32)
def _sparse_filterbank_t(sample_rate: int, n_fft: int) -> _sparse.csr_matrix:
    # Each bin feeds at most a few bands: a sparse product is as fast as a dense one and,
    # unlike BLAS, never starts threads inside a worker that already owns its core.
    return _sparse.csr_matrix(mel_filterbank(sample_rate, n_fft).T)


@functools.lru_cache(maxsize=32)
def _frame_setup(sample_rate: int) -> tuple[int, int, int, np.ndarray, int]:
    win = max(2, int(round(_WINDOW_S * sample_rate)))
    hop = max(1, int(round(_HOP_S * sample_rate)))
    n_fft = 1 << (win - 1).bit_length()
    # Strictly positive Hann from the C library's scalar cos (same bits on every CPU type).
    window = np.array([0.5 - 0.5 * math.cos(2.0 * math.pi * (k + 1) / (win + 1)) for k in range(win)])
    window = window.astype(np.float32)
    window /= np.sqrt(np.mean(np.square(window, dtype=np.float64))).astype(np.float32)
    window.setflags(write=False)
    # Flatness looks only at the bins the mel grid covers (skipping DC).
    n_flat_bins = int(min(MEL_FMAX_HZ, sample_rate / 2.0) * n_fft / sample_rate) + 1
    return win, hop, n_fft, window, n_flat_bins


def audio_embedding(x: np.ndarray, sample_rate: int, *, checked: bool = False) -> np.ndarray:
    """Fixed-size float32 embedding ``(AUDIO_EMBED_DIM,)`` of mono or multichannel audio.

    See the module docstring for the meaning of each block of dims. Deterministic and
    always finite. With ``checked=True`` the caller guarantees finite samples within
    [-1, 1] (a mix after peak control) and the passes that look for NaN and overflow
    are skipped.

    Example: ``audio_embedding(np.zeros(16000, np.float32), 16000).shape == (66,)``
    """
    sample_rate = int(sample_rate)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 2:
        a = a.mean(axis=1, dtype=np.float32)
    elif a.ndim != 1:
        raise ValueError(f"expected (frames,) or (frames, channels), got shape {a.shape}")
    if not checked and a.size and not (np.isfinite(a.max()) and np.isfinite(a.min())):  # NaN/inf show here
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    # A pairwise sum, not a BLAS dot: the same samples give the same bits on any worker.
    # Checked input (|x| <= 1) is squared in float32 (relative error 6e-8), any other in
    # float64 (a float32 square of 1e20 overflows); the sum is float64 either way.
    squares = np.square(a) if checked else np.square(a, dtype=np.float64)
    mean_square = float(np.add.reduce(squares, dtype=np.float64)) / a.size if a.size else 0.0
    # The floor is exact by construction (-100.0), not by how this CPU's log10 rounds 1e-10.
    level_dbfs = 10.0 * np.log10(mean_square) if mean_square > _POWER_FLOOR else _FLOOR_DB

    win, hop, n_fft, window, n_flat_bins = _frame_setup(sample_rate)
    if a.shape[0] < win:
        a = np.pad(a, (0, win - a.shape[0]))
    if not checked and (a.max() > _MAX_AMPLITUDE or a.min() < -_MAX_AMPLITUDE):
        # The float32 power spectrum would overflow; such input is garbage anyway, but the
        # embedding must stay finite, so the spectrum sees it clipped (the level does not).
        a = np.clip(a, -_MAX_AMPLITUDE, _MAX_AMPLITUDE)
    n_frames = 1 + (a.shape[0] - win) // hop
    step = hop
    if n_frames > MAX_FRAMES:
        # A constant hop that spreads MAX_FRAMES frames over the input (at most one hop
        # of samples at the very end is left out).
        step = (a.shape[0] - win) // (MAX_FRAMES - 1)
        n_frames = MAX_FRAMES
    # Frame k is a[k*step : k*step + win]: a read-only strided view, no copy.
    frames = np.lib.stride_tricks.as_strided(
        a, shape=(n_frames, win), strides=(step * a.strides[0], a.strides[0]), writeable=False
    )
    filterbank_t = _sparse_filterbank_t(sample_rate, n_fft)

    # At most MAX_FRAMES frames go through at once: every temporary stays small (< 1 MB).
    mel_sum = np.zeros(N_MEL_BANDS, dtype=np.float64)
    mel_sq_sum = np.zeros(N_MEL_BANDS, dtype=np.float64)
    flatness_sum = 0.0
    buf = np.empty((min(_CHUNK_FRAMES, n_frames), win), dtype=np.float32)
    for first in range(0, n_frames, _CHUNK_FRAMES):
        chunk = frames[first : first + _CHUNK_FRAMES]
        windowed = np.multiply(chunk, window, out=buf[: chunk.shape[0]])
        spectrum = _fft.rfft(windowed, n=n_fft, axis=1)
        # Per-bin power normalised so a full-scale white noise reads ~0 dB in every band.
        bin_power = np.square(spectrum.real)
        bin_power += np.square(spectrum.imag)
        bin_power *= np.float32(1.0 / win)

        band_power = (filterbank_t @ bin_power.T).T
        floored = band_power <= np.float32(_POWER_FLOOR)
        log_mel = np.log10(np.maximum(band_power, np.float32(_POWER_FLOOR)))
        log_mel *= np.float32(10.0)
        log_mel[floored] = np.float32(_FLOOR_DB)  # exact, whatever float32 log10 gives for 1e-10
        mel_sum += log_mel.sum(axis=0, dtype=np.float64)
        mel_sq_sum += np.square(log_mel, dtype=np.float64).sum(axis=0)

        # Flatness per frame; float32 sums over a few hundred bins are precise enough.
        flat = bin_power[:, 1:n_flat_bins]
        logs = np.add(flat, np.float32(_EPS))
        log_geometric = np.log(logs, out=logs).sum(axis=1) / flat.shape[1]
        arithmetic = flat.sum(axis=1).astype(np.float64) / flat.shape[1] + _EPS
        flatness_sum += float(np.clip(np.exp(log_geometric) / arithmetic, 0.0, 1.0).sum())

    mel_mean = mel_sum / n_frames
    mel_std = np.sqrt(np.maximum(mel_sq_sum / n_frames - np.square(mel_mean), 0.0))
    flatness = flatness_sum / n_frames

    out = np.empty(AUDIO_EMBED_DIM, dtype=np.float32)
    out[:N_MEL_BANDS] = mel_mean
    out[N_MEL_BANDS : 2 * N_MEL_BANDS] = mel_std
    out[2 * N_MEL_BANDS] = flatness
    out[2 * N_MEL_BANDS + 1] = level_dbfs
    return out
