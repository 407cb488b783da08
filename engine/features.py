"""Small per-sample embeddings for the coverage analyzer and the mismatch evaluator.

No downloaded model: the audio embedding is hand-made log-mel statistics, cheap enough
to compute for every synthesized row (well under 1 ms per second of audio).

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

__all__ = ["AUDIO_EMBED_DIM", "N_MEL_BANDS", "MEL_FMAX_HZ", "audio_embedding", "mel_filterbank"]

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


@functools.lru_cache(maxsize=32)
def mel_filterbank(sample_rate: int, n_fft: int) -> np.ndarray:
    """Triangular mel filters ``(n_fft // 2 + 1, N_MEL_BANDS)`` float32, each column summing
    to 1 (a band's value is the mean bin power under its triangle), on the fixed
    0..``MEL_FMAX_HZ`` grid; bands above Nyquist are all-zero columns.

    Example: ``mel_filterbank(16000, 512).shape == (257, 32)``
    """
    n_bins = n_fft // 2 + 1
    bin_hz = np.arange(n_bins, dtype=np.float64) * sample_rate / n_fft
    # Scalar math for the band edges: the same bits on every CPU type.
    mel_step = _hz_to_mel(MEL_FMAX_HZ) / (N_MEL_BANDS + 1)
    edges_hz = np.array([_mel_to_hz(k * mel_step) for k in range(N_MEL_BANDS + 2)])
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


# --------------------------------------------------------------------------- images
#
# Image embedding layout (``IMAGE_EMBED_DIM`` = 64 float32 values), in RGB (gray input
# is replicated, alpha ignored); every value is finite. Colour and layout come from a
# small working copy (longer side 64 px, bilinear: the "thumbnail"); sharpness and noise
# come from a centre crop of up to 96x96 px at the native resolution, so blur and
# sensor noise are measured where they live rather than averaged away by downscaling.
#
# ====== ====================== =========================================================
# dims   name                   meaning
# ====== ====================== =========================================================
# 0-23   colour histograms      R, G, B of the thumbnail: 8 bins of 32 levels each,
#                               fraction of pixels
# 24-31  gradient orientations  8 bins centred on 0, 22.5, ..., 157.5 degrees (Sobel,
#                               native crop) of the pixels whose |gradient| exceeds 32
#                               levels, fraction of them (1/8 each when there is no edge)
# 32     gradient RMS           root mean square |Sobel gradient| / 255 / 4 (sharpness:
#                               blur spreads an edge's gradient and lowers it)
# 33     laplacian log-var      log10(1 + variance of the 3x3 Laplacian) (detail, blur)
# 34     noise sigma            Immerkaer's estimate of the noise standard deviation / 255
# 35     edge density           fraction of crop pixels with |gradient| > 32 levels
# 36-38  thumbnail means        per-channel mean of the thumbnail, / 255
# 39-41  thumbnail stds         per-channel standard deviation of the thumbnail, / 255
# 42-57  luminance layout       4x4 area-average of the thumbnail's luminance, / 255,
#                               row-major
# 58     saturation mean        mean HSV saturation of the thumbnail / 255 (colourfulness)
# 59     saturation std         standard deviation of that saturation / 255
# 60     dark clip              fraction of thumbnail luminance values <= 5 (under-exposure)
# 61     bright clip            fraction of thumbnail luminance values >= 250 (over-exposure)
# 62     log2 width             of the input (resolution)
# 63     log2 height
# ====== ====================== =========================================================

IMAGE_EMBED_DIM = 64
_IMAGE_WORK_PX = 64
_IMAGE_CROP_PX = 96
_EDGE_LEVELS = 32.0
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)

__all__ += ["IMAGE_EMBED_DIM", "image_embedding"]


def image_embedding(img: np.ndarray) -> np.ndarray:
    """Fixed-size float32 embedding ``(IMAGE_EMBED_DIM,)`` of an image.

    ``img`` is ``(H, W)`` gray, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA, uint8 (or float
    in 0..1). See the table above for the meaning of each dimension. Deterministic on a
    machine: OpenCV filters, counts and sums, no BLAS. About 0.2 ms per image whatever
    its size (it reads a 64 px copy and a 96 px crop).

    Example: ``image_embedding(np.zeros((48, 64, 3), np.uint8)).shape == (64,)``
    """
    import cv2

    a = np.asarray(img)
    if a.dtype != np.uint8:
        f = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        a = np.clip(np.rint(f * 255.0), 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"expected (H, W), (H, W, 3) or (H, W, 4), got shape {a.shape}")
    out = np.zeros(IMAGE_EMBED_DIM, dtype=np.float32)
    h, w = a.shape[:2]
    if h == 0 or w == 0:
        return out
    out[62] = np.log2(w)
    out[63] = np.log2(h)

    # Colour, layout and exposure: the thumbnail.
    rgb = a[:, :, :3]
    scale = _IMAGE_WORK_PX / max(h, w)
    if scale < 1.0:
        size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
        work = cv2.resize(rgb, size, interpolation=cv2.INTER_NEAREST)
    else:
        work = np.ascontiguousarray(rgb)
    n = work.shape[0] * work.shape[1]
    for c in range(3):
        out[8 * c : 8 * c + 8] = cv2.calcHist([work], [c], None, [8], [0, 256]).reshape(-1) / n
    mean, std = cv2.meanStdDev(work)
    out[36:39] = mean.reshape(-1) / 255.0
    out[39:42] = std.reshape(-1) / 255.0
    work_gray = cv2.cvtColor(work, cv2.COLOR_RGB2GRAY)
    out[42:58] = cv2.resize(work_gray, (4, 4), interpolation=cv2.INTER_AREA).reshape(-1) / 255.0
    s_mean, s_std = cv2.meanStdDev(cv2.cvtColor(work, cv2.COLOR_RGB2HSV)[:, :, 1])
    out[58] = s_mean[0, 0] / 255.0
    out[59] = s_std[0, 0] / 255.0
    out[60] = np.count_nonzero(work_gray <= 5) / n
    out[61] = np.count_nonzero(work_gray >= 250) / n

    # Sharpness and noise: a native-resolution centre crop, in exact integer arithmetic
    # (int16 filter responses of the 8-bit gray crop) as far as it goes.
    ch, cw = min(h, _IMAGE_CROP_PX), min(w, _IMAGE_CROP_PX)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    g = cv2.cvtColor(np.ascontiguousarray(rgb[y0 : y0 + ch, x0 : x0 + cw]), cv2.COLOR_RGB2GRAY)
    m = ch * cw
    dx, dy = cv2.spatialGradient(g)  # 3x3 Sobel, int16
    mag, angle = cv2.cartToPolar(dx.astype(np.float32), dy.astype(np.float32))  # radians, 0..2pi
    # Sobel 3x3 gains up to 4x a one-level step: /4 puts magnitudes on the level scale.
    edges = (mag > np.float32(4 * _EDGE_LEVELS)).view(np.uint8)
    n_edges = int(np.count_nonzero(edges))
    if n_edges:
        # 32 bins of 11.25 degrees; pairs of them make 16 bins centred on multiples of
        # 22.5 degrees (a horizontal or vertical edge sits mid-bin, not on a boundary),
        # folded to 8 over 0..180 degrees: orientation, not direction.
        fine = cv2.calcHist([angle], [0], edges, [32], [0, float(2 * np.pi)]).reshape(-1)
        sixteen = fine[0::2] + np.roll(fine, 1)[0::2]
        out[24:32] = (sixteen[:8] + sixteen[8:]) / n_edges
    else:
        out[24:32] = 1.0 / 8
    out[32] = cv2.norm(mag, cv2.NORM_L2) / np.sqrt(m) / 4.0 / 255.0
    _, lap_std = cv2.meanStdDev(cv2.Laplacian(g, cv2.CV_16S, ksize=1))
    out[33] = np.log10(1.0 + lap_std[0, 0] ** 2)
    if ch >= 3 and cw >= 3:
        resp = cv2.filter2D(g, cv2.CV_16S, _NOISE_KERNEL)[1:-1, 1:-1]
        out[34] = np.sqrt(np.pi / 2.0) * cv2.norm(resp, cv2.NORM_L1) / ((ch - 2) * (cw - 2)) / 6.0 / 255.0
    out[35] = n_edges / m
    return out
