"""Procedural demo corpus: speech-like voices, noises, room responses and images.

The demo recipes and the tests need data that looks like the real thing in the ways that
matter to shardsmith (many speakers, labelled utterances, long and short noise files at
mixed sample rates, reverberant rooms, backgrounds, cut-outs and labelled photos)
without a download or a licence question. Everything here is synthesized from a seed
with numpy, scipy and OpenCV, so the corpus is the same bytes on every run.

Speech is a small source-filter synthesizer: a glottal pulse train with a per-voice
pitch and an intonation contour, shaped by time-varying formant resonators, with
fricatives and stop bursts as filtered noise. It is not intelligible, but each word of
the vocabulary has its own formant trajectory, so a classifier can learn something.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf
from scipy import fft as sp_fft
from scipy import interpolate, ndimage, signal

__all__ = [
    "BABBLE_VOICES",
    "DEMO_VOICES",
    "DEMO_WORDS",
    "IMAGE_LABELS",
    "NOISE_TYPES",
    "SPEECH_SAMPLE_RATE",
    "Voice",
    "generate_demo_corpus",
]

SPEECH_SAMPLE_RATE = 16000
UTTERANCES_PER_VOICE = 20
SPEECH_DURATION_S_RANGE = (1.0, 4.0)
EDGE_SILENCE_S_RANGE = (0.1, 0.3)
RIR_SAMPLE_RATE = 16000
RIR_COUNT = 6
BACKGROUND_COUNT = 24
FOREGROUND_COUNT = 12
PHOTO_COUNT = 24
BACKGROUND_SIZE = (320, 240)  # width, height
PHOTO_SIZE = (256, 192)
FOREGROUND_SIZE_PX_RANGE = (64, 120)


@dataclass(frozen=True)
class Voice:
    """A synthetic speaker: pitch, vocal-tract length (formant scale) and timbre."""

    name: str
    f0_hz: float
    formant_scale: float
    bandwidth_scale: float
    breathiness: float
    tempo: float


DEMO_VOICES: tuple[Voice, ...] = (
    Voice("v1", 95.0, 1.00, 1.00, 0.04, 1.00),
    Voice("v2", 118.0, 0.96, 1.10, 0.06, 1.08),
    Voice("v3", 142.0, 1.05, 0.95, 0.05, 0.94),
    Voice("v4", 172.0, 1.12, 1.05, 0.10, 1.04),
    Voice("v5", 200.0, 1.17, 1.15, 0.12, 0.97),
    Voice("v6", 230.0, 1.22, 1.20, 0.08, 1.10),
)

# Babble talkers are other people than the speech voices, so a model cannot learn to
# recognise the clean speakers inside the noise.
BABBLE_VOICES: tuple[Voice, ...] = (
    Voice("b1", 88.0, 0.94, 1.05, 0.05, 1.05),
    Voice("b2", 108.0, 1.02, 0.90, 0.07, 0.95),
    Voice("b3", 130.0, 0.98, 1.20, 0.04, 1.12),
    Voice("b4", 158.0, 1.08, 1.00, 0.09, 0.92),
    Voice("b5", 186.0, 1.14, 1.10, 0.11, 1.02),
    Voice("b6", 214.0, 1.20, 0.95, 0.06, 1.07),
    Voice("b7", 245.0, 1.25, 1.25, 0.10, 0.98),
    Voice("b8", 265.0, 1.28, 1.10, 0.13, 1.15),
)

# Adult-male formant targets F1..F4 in Hz (Peterson & Barney style); a voice scales them.
_VOWELS: dict[str, tuple[float, float, float, float]] = {
    "i": (270, 2290, 3010, 3700),
    "I": (390, 1990, 2550, 3600),
    "e": (530, 1840, 2480, 3500),
    "ae": (660, 1720, 2410, 3500),
    "a": (730, 1090, 2440, 3400),
    "ah": (640, 1190, 2390, 3400),
    "o": (570, 840, 2410, 3400),
    "u": (300, 870, 2240, 3300),
    "er": (490, 1350, 1690, 3300),
    "l": (360, 1300, 2700, 3500),
    "n": (250, 1100, 2300, 3400),
    "w": (290, 700, 2200, 3300),
}
_FORMANT_BANDWIDTHS_HZ = (70.0, 100.0, 150.0, 220.0)

# A word is a list of segments at tempo 1: ("V", from, to, dur_s, gain) is voiced with
# a formant glide, ("F", lo_hz, hi_hz, dur_s, gain) is frication, ("S", lo_hz, hi_hz,
# closure_s, gain) is a stop (silence then a short burst). The last item is a pitch
# tilt over the word, so rising and falling words differ in intonation as well.
_WORDS: dict[str, tuple[tuple, float]] = {
    "yes": ((("V", "i", "e", 0.07, 0.6), ("V", "e", "e", 0.14, 1.0),
             ("F", 3800, 7500, 0.12, 0.35)), +0.10),
    "no": ((("V", "n", "n", 0.06, 0.4), ("V", "o", "u", 0.22, 1.0)), -0.10),
    "up": ((("V", "ah", "ah", 0.13, 1.0), ("S", 300, 2000, 0.05, 0.4)), +0.06),
    "down": ((("S", 1500, 4500, 0.03, 0.5), ("V", "a", "u", 0.20, 1.0),
              ("V", "n", "n", 0.07, 0.4)), -0.12),
    "left": ((("V", "l", "e", 0.06, 0.6), ("V", "e", "e", 0.11, 1.0),
              ("F", 1500, 7000, 0.09, 0.15), ("S", 3000, 7000, 0.03, 0.5)), 0.0),
    "right": ((("V", "er", "a", 0.07, 0.6), ("V", "a", "i", 0.18, 1.0),
               ("S", 3000, 7000, 0.04, 0.5)), -0.04),
    "stop": ((("F", 3800, 7500, 0.10, 0.35), ("S", 3000, 7000, 0.04, 0.5),
              ("V", "a", "a", 0.12, 1.0), ("S", 300, 2000, 0.05, 0.4)), -0.06),
    "go": ((("S", 1000, 3000, 0.03, 0.5), ("V", "o", "u", 0.20, 1.0)), +0.12),
    "on": ((("V", "o", "a", 0.13, 1.0), ("V", "n", "n", 0.09, 0.4)), 0.0),
    "off": ((("V", "ah", "o", 0.12, 1.0), ("F", 1200, 7000, 0.13, 0.18)), +0.04),
}
DEMO_WORDS: tuple[str, ...] = tuple(_WORDS)
# Consonant places for filler syllables ("s", "sh", "f", "h" / "p", "k", "d", "t"-like).
_FRICATIVE_BANDS_HZ = ((3800, 7500), (2200, 6000), (1200, 7000), (1000, 4000))
_BURST_BANDS_HZ = ((300, 2000), (1000, 3000), (1500, 4500), (3000, 7000))

NOISE_TYPES: tuple[str, ...] = (
    "car", "road", "wind", "rain", "babble", "clatter", "white", "pink", "brown",
)
# (type, duration_s, sample_rate, channels). Mixed rates and a few stereo files make the
# engine's resampling and downmixing run; the 120 s car file makes segment reads matter.
_NOISE_FILES: tuple[tuple[str, float, int, int], ...] = (
    ("car", 120.0, 16000, 1), ("car", 20.0, 44100, 2), ("car", 30.0, 16000, 1),
    ("car", 12.0, 16000, 1),
    ("road", 25.0, 16000, 1), ("road", 15.0, 22050, 1), ("road", 35.0, 16000, 1),
    ("wind", 20.0, 16000, 1), ("wind", 30.0, 16000, 2), ("wind", 10.0, 22050, 1),
    ("rain", 15.0, 16000, 1), ("rain", 25.0, 44100, 1), ("rain", 8.0, 16000, 1),
    ("babble", 6.0, 16000, 1), ("babble", 10.0, 16000, 1), ("babble", 15.0, 22050, 1),
    ("clatter", 10.0, 16000, 1), ("clatter", 25.0, 16000, 1), ("clatter", 6.0, 22050, 1),
    ("white", 10.0, 16000, 1), ("white", 6.0, 44100, 2),
    ("pink", 15.0, 16000, 1), ("pink", 8.0, 22050, 1),
    ("brown", 20.0, 16000, 1), ("brown", 10.0, 16000, 1),
)

IMAGE_LABELS: tuple[str, ...] = ("car", "ball", "star", "tree")


def generate_demo_corpus(root: str | Path, *, seed: int = 0) -> dict:
    """Write the procedural demo corpus under ``root`` and return a summary.

    The same seed gives the same bytes; re-running rewrites every file atomically (a
    temporary name, then ``os.replace``). Layout::

        speech/<voice>/<voice>-<nnn>.flac, speech/manifest.csv (path,text,speaker)
        noise/<type>/<type>-<n>.wav,       noise/manifest.csv  (path,noise_type)
        rir/rir-<n>.wav
        images/backgrounds/bg-<nnn>.png,   images/foregrounds/fg-<nnn>.png (RGBA)
        images/photos/photo-<nnn>.png,     images/manifest.csv (path,label)
        images/foregrounds/manifest.csv    (path,label)

    Returns ``{"root", "speech_files", "speech_seconds", "noise_files", "noise_seconds",
    "rir_files", "images", "backgrounds", "photos", "foregrounds"}``, where ``images``
    counts backgrounds plus photos.

    Example:
        >>> summary = generate_demo_corpus("/tmp/demo", seed=0)
        >>> summary["speech_files"], summary["rir_files"]
        (120, 6)
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)

    speech_files, speech_seconds = _write_speech(root / "speech", seed)
    noise_files, noise_seconds = _write_noise(root / "noise", seed)
    rir_files = _write_rirs(root / "rir", seed)
    backgrounds, foregrounds, photos = _write_images(root / "images", seed)
    return {
        "root": str(root),
        "speech_files": speech_files,
        "speech_seconds": round(speech_seconds, 3),
        "noise_files": noise_files,
        "noise_seconds": round(noise_seconds, 3),
        "rir_files": rir_files,
        "images": backgrounds + photos,
        "backgrounds": backgrounds,
        "photos": photos,
        "foregrounds": foregrounds,
    }


# --------------------------------------------------------------------------- plumbing


def _rng(seed: int, key: str) -> np.random.Generator:
    # A string key hashed with crc32 is stable across Python runs (unlike hash()), so
    # each file's draws depend only on (seed, its name), never on generation order.
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(key.encode())]))


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_audio(path: Path, x: np.ndarray, sr: int, fmt: str) -> None:
    # Quantize here rather than in libsndfile so the exact int16 values are ours.
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, pcm, sr, format=fmt, subtype="PCM_16")
    _write_bytes(path, buf.getvalue())


def _write_csv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(sorted(rows))
    _write_bytes(path, buf.getvalue().encode())


def _smooth_random(rng: np.random.Generator, n: int, sr: float, knots_per_s: float,
                   std: float) -> np.ndarray:
    """A slowly varying zero-mean random curve of n samples (monotone cubic knots)."""
    n_knots = max(2, int(np.ceil(n / sr * knots_per_s)) + 2)
    knot_t = np.linspace(0.0, n / sr, n_knots)
    curve = interpolate.PchipInterpolator(knot_t, rng.normal(0.0, std, n_knots))
    # The spline is evaluated on a coarse grid (~50 points per knot) and linearly
    # interpolated: indistinguishable for a slow curve, and much faster on long files.
    step = max(1, int(sr / (50.0 * knots_per_s)))
    coarse_i = np.arange(0, n + step, step)
    return np.interp(np.arange(n), coarse_i, curve(coarse_i / sr))


@functools.lru_cache(maxsize=512)
def _butter(order: int, cutoff: tuple[float, ...] | float, btype: str, sr: int):
    return signal.butter(order, cutoff, btype=btype, fs=sr, output="sos")


def _band(x: np.ndarray, lo_hz: float, hi_hz: float, sr: int, order: int = 4) -> np.ndarray:
    # Edges snap to a 50 Hz grid so the filter-design cache is actually hit.
    lo_hz = 50.0 * round(lo_hz / 50.0)
    hi_hz = 50.0 * round(min(hi_hz, 0.45 * sr) / 50.0)
    return signal.sosfilt(_butter(order, (lo_hz, hi_hz), "bandpass", sr), x)


def _lowpass(x: np.ndarray, cutoff_hz: float, sr: int, order: int = 4) -> np.ndarray:
    return signal.sosfilt(_butter(order, float(round(cutoff_hz)), "lowpass", sr), x)


def _highpass(x: np.ndarray, cutoff_hz: float, sr: int, order: int = 4) -> np.ndarray:
    return signal.sosfilt(_butter(order, float(round(cutoff_hz)), "highpass", sr), x)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


# ----------------------------------------------------------------------------- speech


def _ramp_envelope(n: int, ramp: int) -> np.ndarray:
    env = np.ones(n)
    ramp = max(1, min(ramp, n // 2))
    rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
    env[:ramp] = rise
    env[n - ramp:] = rise[::-1]
    return env


def _filler_syllable(rng: np.random.Generator) -> list[tuple]:
    """A random consonant-vowel(-consonant) syllable: the carrier around keywords."""
    vowels = ("i", "I", "e", "ae", "a", "ah", "o", "u", "er")
    segments: list[tuple] = []
    onset = rng.integers(4)
    if onset == 1:
        lo, hi = _FRICATIVE_BANDS_HZ[rng.integers(len(_FRICATIVE_BANDS_HZ))]
        segments.append(("F", lo, hi, float(rng.uniform(0.05, 0.09)),
                         float(rng.uniform(0.1, 0.3))))
    elif onset == 2:
        lo, hi = _BURST_BANDS_HZ[rng.integers(len(_BURST_BANDS_HZ))]
        segments.append(("S", lo, hi, float(rng.uniform(0.02, 0.05)),
                         float(rng.uniform(0.3, 0.5))))
    elif onset == 3:
        segments.append(("V", "n", "n", float(rng.uniform(0.04, 0.07)), 0.4))
    a, b = vowels[rng.integers(len(vowels))], vowels[rng.integers(len(vowels))]
    segments.append(("V", a, b if rng.random() < 0.3 else a,
                     float(rng.uniform(0.09, 0.17)), float(rng.uniform(0.7, 1.0))))
    return segments


def _plan_tokens(rng: np.random.Generator, body_s: float, keyword: str | None,
                 tempo: float) -> tuple[list[tuple], list[tuple[float, float, float]]]:
    """Lay out keyword repetitions and filler syllables over ``body_s`` seconds.

    Returns timed segments ``(kind, start_s, a, b, dur_s, gain)`` and pitch tilts
    ``(start_s, dur_s, tilt)`` for each keyword occurrence. With ``keyword=None`` (babble)
    every keyword slot gets a random word.
    """
    n_keywords = int(np.clip(round(body_s / 1.3), 1, 3))
    tokens: list[tuple[list[tuple], float, bool]] = []
    for _ in range(n_keywords):
        word = keyword if keyword is not None else DEMO_WORDS[rng.integers(len(DEMO_WORDS))]
        segments, tilt = _WORDS[word]
        tokens.append((list(segments), tilt, True))

    def token_s(segments: list[tuple]) -> float:
        return sum(seg[3] + (0.012 if seg[0] == "S" else 0.0) for seg in segments) / tempo

    def total_s() -> float:
        return sum(token_s(t[0]) for t in tokens) + 0.12 * max(0, len(tokens) - 1)

    while total_s() < 0.9 * body_s:
        tokens.append((_filler_syllable(rng), 0.0, False))
    # Shuffled so the keyword is not always first: position must not give the label away.
    order = rng.permutation(len(tokens))
    tokens = [tokens[i] for i in order]
    gaps = [float(rng.uniform(0.12, 0.3)) if rng.random() < 0.3 else float(rng.uniform(0.02, 0.05))
            for _ in range(len(tokens) - 1)] + [0.0]
    raw = sum(token_s(t[0]) for t in tokens) + sum(gaps)
    # One stretch factor makes the layout end exactly at body_s: a faster or slower talker.
    stretch = body_s / raw

    timed: list[tuple] = []
    tilts: list[tuple[float, float, float]] = []
    t = 0.0
    for (segments, tilt, is_keyword), gap in zip(tokens, gaps):
        start = t
        for seg in segments:
            dur = seg[3] / tempo * stretch
            if seg[0] == "V":
                timed.append(("V", t, seg[1], seg[2], dur, seg[4]))
                t += dur
            elif seg[0] == "F":
                timed.append(("F", t, seg[1], seg[2], dur, seg[4]))
                t += dur
            else:
                burst = 0.012 / tempo * stretch
                timed.append(("B", t + dur, seg[1], seg[2], burst, seg[4]))
                t += dur + burst
        if is_keyword and tilt:
            tilts.append((start, t - start, tilt))
        t += gap * stretch
    return timed, tilts


def _glottal_source(f0: np.ndarray, sr: int, open_phase: float) -> np.ndarray:
    """Differentiated Rosenberg pulses: the flow derivative includes lip radiation."""
    # One period tabulated and looked up by phase: cheaper than cosines per sample.
    grid = np.linspace(0.0, 1.0, 2049)
    closing = 0.16
    table = np.where(
        grid < open_phase,
        0.5 - 0.5 * np.cos(np.pi * grid / open_phase),
        np.where(grid < open_phase + closing,
                 np.cos(0.5 * np.pi * (grid - open_phase) / closing), 0.0),
    )
    flow = np.interp(np.cumsum(f0 / sr) % 1.0, grid, table)
    return np.diff(flow, prepend=0.0)


def _render_speech(rng: np.random.Generator, voice: Voice, n: int, sr: int,
                   offset_s: float, timed: list[tuple], tilts: list[tuple],
                   pitch_scale: float = 1.0) -> np.ndarray:
    hop = sr // 100
    n_frames = (n + hop - 1) // hop
    voiced_env = np.zeros(n)
    formants = np.full((n_frames, 4), np.nan)
    frame_t = (np.arange(n_frames) + 0.5) * hop / sr
    out_noise = np.zeros(n)
    tract = voice.formant_scale * float(rng.uniform(0.97, 1.03))

    for kind, start_s, a, b, dur_s, gain in timed:
        i0 = int(round((offset_s + start_s) * sr))
        i1 = min(n, i0 + max(2, int(round(dur_s * sr))))
        if i1 <= i0:
            continue
        if kind == "V":
            voiced_env[i0:i1] += gain * _ramp_envelope(i1 - i0, int(0.02 * sr))
            in_seg = (frame_t >= i0 / sr) & (frame_t < i1 / sr)
            pos = (frame_t[in_seg] - i0 / sr) / max(dur_s, 1e-3)
            fa, fb = np.asarray(_VOWELS[a]), np.asarray(_VOWELS[b])
            formants[in_seg] = tract * (fa + np.clip(pos, 0, 1)[:, None] * (fb - fa))
        else:
            noise = _band(rng.standard_normal(i1 - i0 + 256), a, b, sr)[256:]
            noise /= _rms(noise) + 1e-12
            if kind == "B":
                env = np.exp(-np.arange(i1 - i0) / (0.004 * sr))
            else:
                env = _ramp_envelope(i1 - i0, int(0.015 * sr))
            out_noise[i0:i1] += gain * 0.12 * env * noise

    # Formants hold their last value through silences so the filter does not jump.
    valid = ~np.isnan(formants[:, 0])
    if not valid.any():
        formants[:] = tract * np.asarray(_VOWELS["ah"])
    else:
        idx = np.where(valid, np.arange(n_frames), 0)
        np.maximum.accumulate(idx, out=idx)
        first = int(np.argmax(valid))
        idx[:first] = first
        formants = formants[idx]

    t = np.arange(n) / sr
    dur = n / sr
    log_f0 = (0.10 - 0.22 * t / dur  # declination over the utterance
              + _smooth_random(rng, n, sr, 3.0, 0.06)  # intonation
              + _smooth_random(rng, n, sr, 40.0, 0.006))  # jitter
    for start_s, tilt_dur, tilt in tilts:
        s0 = offset_s + start_s
        inside = (t >= s0) & (t < s0 + tilt_dur)
        log_f0[inside] += tilt * ((t[inside] - s0) / tilt_dur - 0.5) * 2.0
    f0 = voice.f0_hz * pitch_scale * np.exp(log_f0)
    source = _glottal_source(f0, sr, open_phase=0.45 + 0.1 * voice.breathiness)
    source /= _rms(source) + 1e-12
    aspiration = _highpass(rng.standard_normal(n), 1500, sr, order=2)
    excitation = (source + 3.0 * voice.breathiness * aspiration) * voiced_env

    bw = np.asarray(_FORMANT_BANDWIDTHS_HZ) * voice.bandwidth_scale
    voiced = _vocal_tract(excitation, np.minimum(formants, 0.45 * sr), bw, sr, hop)
    loud = voiced_env > 0.5
    voiced *= 0.12 / (_rms(voiced[loud]) if loud.any() else 1.0)
    return voiced + out_noise


def _vocal_tract(excitation: np.ndarray, formants_hz: np.ndarray, bandwidths_hz: np.ndarray,
                 sr: int, hop: int) -> np.ndarray:
    """Filter through the formant resonators, with formants updated every ``hop`` samples.

    The four 2-pole resonators are multiplied into one all-pole filter and run like an
    LPC synthesizer: its memory is the last output samples, so new coefficients take
    over without a click. One lfilter call per run of equal coefficients keeps the
    Python overhead low (sosfilt costs several times more per call).
    """
    n_frames = formants_hz.shape[0]
    radius = np.exp(-np.pi * bandwidths_hz / sr)
    theta = 2.0 * np.pi * formants_hz / sr
    a = np.ones((n_frames, 1))
    for k in range(formants_hz.shape[1]):
        quad = (np.ones(n_frames), -2.0 * radius[k] * np.cos(theta[:, k]),
                np.full(n_frames, radius[k] ** 2))
        grown = np.zeros((n_frames, a.shape[1] + 2))
        for shift, coef in enumerate(quad):
            grown[:, shift:shift + a.shape[1]] += a * coef[:, None]
        a = grown
    gain = a.sum(axis=1)  # unity gain at DC, like Klatt's resonators
    order = a.shape[1] - 1
    # zi[k] = -sum_m a[k + 1 + m] * y[-1 - m]: the transposed-form state that a filter
    # with coefficients ``a`` would hold after producing the past outputs.
    tap = np.arange(order)[:, None] + np.arange(order)[None, :] + 1
    in_range = tap <= order
    tap = np.minimum(tap, order)

    n = len(excitation)
    changes = np.flatnonzero(np.any(a[1:] != a[:-1], axis=1)) + 1
    out = np.empty(n)
    history = np.zeros(order)  # most recent output first
    for k0, k1 in zip(np.concatenate([[0], changes]), np.concatenate([changes, [n_frames]])):
        i0, i1 = k0 * hop, min(n, k1 * hop)
        zi = -np.where(in_range, a[k0][tap], 0.0) @ history
        out[i0:i1], _ = signal.lfilter(gain[k0:k0 + 1], a[k0], excitation[i0:i1], zi=zi)
        recent = out[max(0, i1 - order):i1][::-1]
        history = np.concatenate([recent, history[:order - len(recent)]])
    return out


def _speech_utterance(seed: int, voice: Voice, index: int, word: str) -> np.ndarray:
    rng = _rng(seed, f"speech/{voice.name}/{index:03d}")
    sr = SPEECH_SAMPLE_RATE
    total_s = float(rng.uniform(*SPEECH_DURATION_S_RANGE))
    lead_s, trail_s = rng.uniform(*EDGE_SILENCE_S_RANGE, size=2)
    n = int(round(total_s * sr))
    tempo = voice.tempo * float(rng.uniform(0.92, 1.08))
    timed, tilts = _plan_tokens(rng, total_s - lead_s - trail_s, word, tempo)
    x = _render_speech(rng, voice, n, sr, float(lead_s), timed, tilts)
    x *= float(rng.uniform(0.3, 0.8)) / (np.abs(x).max() + 1e-12)
    # A faint noise floor: real recordings are never digital zero between words.
    return x + rng.normal(0.0, 3e-5, n)


def _write_speech(folder: Path, seed: int) -> tuple[int, float]:
    rows = []
    seconds = 0.0
    for voice in DEMO_VOICES:
        # Each word appears equally often per voice; the order is shuffled per voice.
        words = np.resize(np.asarray(DEMO_WORDS), UTTERANCES_PER_VOICE)
        words = _rng(seed, f"speech/{voice.name}/words").permutation(words)
        for index, word in enumerate(words):
            x = _speech_utterance(seed, voice, index, str(word))
            rel = f"{voice.name}/{voice.name}-{index:03d}.flac"
            _write_audio(folder / rel, x, SPEECH_SAMPLE_RATE, "FLAC")
            rows.append((rel, str(word), voice.name))
            seconds += len(x) / SPEECH_SAMPLE_RATE
    _write_csv(folder / "manifest.csv", ("path", "text", "speaker"), rows)
    return len(rows), seconds


# ------------------------------------------------------------------------------ noise


def _coloured(rng: np.random.Generator, n: int, sr: int, exponent: float,
              floor_hz: float) -> np.ndarray:
    """Gaussian noise with power ~ 1/f**exponent (flat below floor_hz, no DC)."""
    m = sp_fft.next_fast_len(n, real=True)
    spectrum = np.fft.rfft(rng.standard_normal(m))
    f = np.fft.rfftfreq(m, 1.0 / sr)
    spectrum *= np.maximum(f, floor_hz) ** (-exponent / 2.0)
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, m)[:n]


def _noise_car(rng, n, sr):
    t_rpm = float(rng.uniform(1400, 3200))
    rpm = np.clip(t_rpm * np.exp(_smooth_random(rng, n, sr, 0.25, 0.18)), 800, 4800)
    # Four-cylinder four-stroke engine: two firings per revolution.
    fire_hz = rpm / 60.0 * 2.0
    half_phase = np.pi * np.cumsum(fire_hz) / sr
    # Engine orders 0.5, 1, 1.5, ... (half orders from uneven cylinders, only low down).
    orders = [m for m in range(1, 21)
              if m / 2.0 * fire_hz.max() <= 0.45 * sr and (m % 2 == 0 or m < 8)]
    weights = {m: (1.0 if m % 2 == 0 else 0.35) * float(rng.uniform(0.5, 1.5)) / (m / 2.0) ** 1.3
               for m in orders}
    offsets = {m: float(rng.uniform(0, 2 * np.pi)) for m in orders}
    hum = np.zeros(n)
    # sin/cos of m * half_phase by the Chebyshev recurrence (one sin and cos for the whole
    # series), in cache-sized blocks: the 120 s file has 2M samples.
    block = 1 << 15
    for b0 in range(0, n, block):
        th = half_phase[b0:b0 + block]
        c1 = np.cos(th)
        s_prev, c_prev = np.zeros_like(th), np.ones_like(th)
        s_cur, c_cur = np.sin(th), c1.copy()
        acc = hum[b0:b0 + block]
        for m in range(1, (orders[-1] if orders else 0) + 1):
            if m in weights:
                acc += weights[m] * (np.cos(offsets[m]) * s_cur + np.sin(offsets[m]) * c_cur)
            s_prev, s_cur = s_cur, 2.0 * c1 * s_cur - s_prev
            c_prev, c_cur = c_cur, 2.0 * c1 * c_cur - c_prev
    hum /= _rms(hum)
    rumble = _lowpass(rng.standard_normal(n), float(rng.uniform(80, 160)), sr)
    rumble /= _rms(rumble)
    tyres = _lowpass(_coloured(rng, n, sr, 1.0, 20.0), 1200, sr, order=2)
    tyres /= _rms(tyres)
    return hum + float(rng.uniform(0.5, 1.0)) * rumble + float(rng.uniform(0.15, 0.4)) * tyres


def _noise_road(rng, n, sr):
    x = _lowpass(rng.standard_normal(n), float(rng.uniform(300, 800)), sr)
    return x * (1.0 + np.clip(_smooth_random(rng, n, sr, 0.4, 0.3), -0.8, 0.8))


def _noise_wind(rng, n, sr):
    # Wind on a microphone is mostly low-frequency buffeting.
    lo = float(rng.uniform(40, 120))
    x = _band(rng.standard_normal(n), lo, lo + float(rng.uniform(200, 700)), sr, order=2)
    gusts = np.exp(1.0 * _smooth_random(rng, n, sr, 0.8, 0.6))
    return x * gusts


def _noise_rain(rng, n, sr):
    hiss = _highpass(rng.standard_normal(n), 1000, sr) * 0.08
    drops = np.zeros(n)
    rate = float(rng.uniform(80, 400))
    for _ in range(3):
        # A few drop "kinds" (a damped sinusoid each) convolved with sparse impulses.
        f = float(rng.uniform(1500, min(6000.0, 0.4 * sr)))
        tau = float(rng.uniform(0.002, 0.008))
        kt = np.arange(int(5 * tau * sr)) / sr
        kernel = np.sin(2 * np.pi * f * kt) * np.exp(-kt / tau)
        count = rng.poisson(rate / 3 * n / sr)
        impulses = np.zeros(n)
        np.add.at(impulses, rng.integers(0, n, count), rng.lognormal(0.0, 0.7, count))
        drops += signal.oaconvolve(impulses, kernel)[:n]
    return hiss + drops / (np.abs(drops).max() + 1e-12)


def _noise_babble(rng, n, sr):
    talkers = rng.choice(len(BABBLE_VOICES), size=int(rng.integers(5, 9)), replace=False)
    x = np.zeros(n)
    for k in sorted(talkers):
        voice = BABBLE_VOICES[k]
        timed, tilts = _plan_tokens(rng, n / sr, None, voice.tempo)
        talk = _render_speech(rng, voice, n, sr, 0.0, timed, tilts,
                              pitch_scale=float(rng.uniform(0.9, 1.1)))
        # Talkers start at different points of their own stream, so no shared onset.
        talk = np.roll(talk, int(rng.integers(n)))
        x += 10 ** (float(rng.uniform(-6, 0)) / 20) * talk
    return x


def _noise_clatter(rng, n, sr):
    x = _coloured(rng, n, sr, 1.0, 20.0)
    x *= 0.01 / (_rms(x) + 1e-12)  # quiet room tone: never digital silence between events
    count = rng.poisson(float(rng.uniform(0.8, 3.0)) * n / sr)
    for onset in np.sort(rng.integers(0, n, count)):
        tau = float(rng.uniform(0.02, 0.25))
        length = min(n - onset, int(4 * tau * sr))
        kt = np.arange(length) / sr
        partials = rng.uniform(400, min(7000.0, 0.45 * sr), int(rng.integers(3, 7)))
        event = np.zeros(length)
        for f in partials:
            event += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * f * kt + rng.uniform(0, 2 * np.pi))
        event *= np.exp(-kt / tau) * float(rng.lognormal(0.0, 0.5))
        x[onset:onset + length] += event
    return x


def _noise_white(rng, n, sr):
    return rng.standard_normal(n)


def _noise_pink(rng, n, sr):
    return _coloured(rng, n, sr, 1.0, 5.0)


def _noise_brown(rng, n, sr):
    return _coloured(rng, n, sr, 2.0, 10.0)


_NOISE_MAKERS = {
    "car": _noise_car, "road": _noise_road, "wind": _noise_wind, "rain": _noise_rain,
    "babble": _noise_babble, "clatter": _noise_clatter, "white": _noise_white,
    "pink": _noise_pink, "brown": _noise_brown,
}


def _noise_file(seed: int, key: str, kind: str, duration_s: float, sr: int,
                channels: int) -> np.ndarray:
    rng = _rng(seed, key)
    n = int(round(duration_s * sr))
    make = _NOISE_MAKERS[kind]
    if channels == 1:
        x = make(rng, n, sr)
    else:
        # Partly correlated channels, like two microphones in the same space.
        left_rng, right_rng = rng.spawn(2)
        a, b = make(left_rng, n, sr), make(right_rng, n, sr)
        x = np.stack([a, 0.8 * a + 0.6 * b], axis=1)
    x = x - x.mean(axis=0)
    x *= 10 ** (float(rng.uniform(-30, -18)) / 20) / (_rms(x) + 1e-12)
    peak = np.abs(x).max()
    if peak > 0.89:
        x *= 0.89 / peak
    return x


def _write_noise(folder: Path, seed: int) -> tuple[int, float]:
    rows = []
    seconds = 0.0
    counters: dict[str, int] = {}
    for kind, duration_s, sr, channels in _NOISE_FILES:
        index = counters.get(kind, 0)
        counters[kind] = index + 1
        rel = f"{kind}/{kind}-{index}.wav"
        x = _noise_file(seed, f"noise/{rel}", kind, duration_s, sr, channels)
        _write_audio(folder / rel, x, sr, "WAV")
        rows.append((rel, kind))
        seconds += duration_s
    _write_csv(folder / "manifest.csv", ("path", "noise_type"), rows)
    return len(rows), seconds


# ------------------------------------------------------------------------------- RIRs


def _rir(seed: int, index: int) -> np.ndarray:
    rng = _rng(seed, f"rir/{index}")
    sr = RIR_SAMPLE_RATE
    # Spread RT60 over the whole 0.2-0.9 s range so the rooms really differ.
    rt60 = float(np.clip(0.2 + 0.7 * (index + rng.uniform(0.0, 1.0)) / RIR_COUNT, 0.2, 0.9))
    drr_db = float(rng.uniform(-3.0, 10.0))
    delay = int(round(rng.uniform(0.002, 0.005) * sr))
    n = delay + int(np.ceil(1.1 * rt60 * sr))
    t = np.arange(n - delay) / sr
    decay = 10 ** (-3.0 * t / rt60)  # -60 dB after rt60 seconds
    tail = _lowpass(rng.standard_normal(n - delay), float(rng.uniform(3000, 7000)), sr, 2)
    tail *= decay * (1.0 - np.exp(-t / 0.004))  # a short build-up after the direct path
    early = np.zeros(n - delay)
    for _ in range(int(rng.integers(4, 10))):
        k = int(rng.uniform(0.002, 0.04) * sr)
        early[k] += float(rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.6) * decay[k])
    reverb = early + 0.3 * tail / (np.abs(tail).max() + 1e-12)
    reverb *= np.sqrt(10 ** (-drr_db / 10) / np.sum(reverb ** 2))
    # The direct path must stay the peak, whatever the drawn ratio.
    if np.abs(reverb).max() > 0.7:
        reverb *= 0.7 / np.abs(reverb).max()
    h = np.zeros(n)
    h[delay] = 1.0
    h[delay:] += reverb
    return 0.9 * h


def _write_rirs(folder: Path, seed: int) -> int:
    for index in range(RIR_COUNT):
        _write_audio(folder / f"rir-{index}.wav", _rir(seed, index), RIR_SAMPLE_RATE, "WAV")
    return RIR_COUNT


# ----------------------------------------------------------------------------- images

# Colours are RGB; conversion to OpenCV's BGR order happens only when encoding.
_PALETTES: tuple[dict[str, tuple], ...] = (
    {"sky": ((90, 150, 230), (190, 220, 250)), "ground": ((90, 160, 70), (50, 100, 40)),
     "accents": ((200, 60, 50), (240, 230, 210), (120, 120, 130), (250, 220, 80))},
    {"sky": ((60, 40, 110), (250, 150, 90)), "ground": ((80, 60, 60), (30, 25, 35)),
     "accents": ((40, 30, 50), (250, 200, 120), (150, 80, 90), (90, 70, 110))},
    {"sky": ((10, 15, 40), (40, 50, 90)), "ground": ((30, 35, 40), (10, 10, 15)),
     "accents": ((250, 240, 180), (80, 90, 110), (200, 200, 210), (40, 60, 90))},
    {"sky": ((150, 155, 165), (200, 200, 205)), "ground": ((110, 110, 105), (70, 70, 70)),
     "accents": ((60, 60, 65), (170, 60, 50), (90, 110, 130), (210, 210, 200))},
    {"sky": ((120, 180, 240), (240, 230, 200)), "ground": ((220, 190, 130), (180, 140, 90)),
     "accents": ((160, 110, 60), (90, 130, 60), (240, 220, 170), (120, 80, 50))},
    {"sky": ((120, 170, 200), (200, 225, 230)), "ground": ((40, 90, 40), (20, 50, 25)),
     "accents": ((70, 50, 30), (30, 110, 50), (110, 160, 70), (200, 210, 150))},
    {"sky": ((170, 190, 215), (230, 235, 245)), "ground": ((240, 245, 250), (200, 210, 225)),
     "accents": ((60, 70, 90), (150, 40, 40), (110, 140, 170), (40, 90, 60))},
    {"sky": ((210, 190, 160), (240, 225, 200)), "ground": ((140, 100, 70), (100, 70, 50)),
     "accents": ((60, 90, 140), (200, 70, 60), (230, 200, 120), (80, 60, 40))},
    {"sky": ((170, 190, 200), (215, 225, 230)), "ground": ((90, 100, 110), (60, 65, 75)),
     "accents": ((200, 200, 190), (40, 120, 160), (230, 130, 40), (30, 30, 35))},
)


def _gradient(h: int, w: int, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    mix = np.linspace(0.0, 1.0, h)[:, None, None]
    return np.broadcast_to((1 - mix) * top + mix * bottom, (h, w, 3)).astype(np.float64)


def _jitter(rng: np.random.Generator, colour, amount: float = 18.0) -> np.ndarray:
    return np.clip(np.asarray(colour, float) + rng.uniform(-amount, amount, 3), 0, 255)


def _scene(rng: np.random.Generator, w: int, h: int, clean: bool) -> np.ndarray:
    """Sky and ground with hills and shapes; ``clean`` skips texture noise (web photos)."""
    pal = _PALETTES[rng.integers(len(_PALETTES))]
    horizon = int(h * rng.uniform(0.35, 0.7))
    img = np.empty((h, w, 3))
    img[:horizon] = _gradient(horizon, w, _jitter(rng, pal["sky"][0]),
                              _jitter(rng, pal["sky"][1]))
    img[horizon:] = _gradient(h - horizon, w, _jitter(rng, pal["ground"][0]),
                              _jitter(rng, pal["ground"][1]))
    canvas = np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8))

    def colour():
        return tuple(int(v) for v in _jitter(rng, pal["accents"][rng.integers(4)], 25))

    if rng.random() < 0.7:
        xs = np.linspace(0, w, int(rng.integers(4, 9)))
        ys = horizon - np.abs(rng.normal(0, h * 0.12, xs.size))
        poly = np.concatenate([np.stack([xs, ys], 1), [[w, horizon], [0, horizon]]])
        hill = 0.5 * np.asarray(pal["ground"][0]) + 0.5 * np.asarray(pal["sky"][1])
        cv2.fillPoly(canvas, [poly.astype(np.int32)], tuple(int(v) for v in _jitter(rng, hill)))
    for _ in range(int(rng.integers(2, 5) if clean else rng.integers(4, 11))):
        shape = rng.integers(5)
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        if shape == 0:  # a building standing on the horizon
            bw, bh = int(rng.integers(w // 16, w // 5)), int(rng.integers(h // 10, h // 2))
            cv2.rectangle(canvas, (x, horizon - bh), (x + bw, horizon + 2), colour(), -1)
        elif shape == 1:  # sun, moon or a round bush
            cv2.circle(canvas, (x, int(rng.integers(0, h))), int(rng.integers(5, h // 6)),
                       colour(), -1)
        elif shape == 2:
            cv2.ellipse(canvas, (x, max(y, horizon)), (int(rng.integers(8, w // 6)),
                        int(rng.integers(4, h // 10))), float(rng.uniform(0, 180)), 0, 360,
                        colour(), -1)
        elif shape == 3:
            pts = np.stack([rng.integers(0, w, 3), rng.integers(0, h, 3)], 1)
            cv2.fillPoly(canvas, [pts.astype(np.int32)], colour())
        else:
            cv2.line(canvas, (x, y), (int(rng.integers(0, w)), int(rng.integers(0, h))),
                     colour(), int(rng.integers(1, 4)))
    out = canvas.astype(np.float64)
    if not clean:
        # Texture: smooth blotches plus fine grain, so no two backgrounds are flat.
        sigma = float(rng.uniform(1.0, 4.0))
        blotch = ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma)
        blotch *= float(rng.uniform(4.0, 16.0)) / (blotch.std() + 1e-12)
        out += blotch[:, :, None] + rng.normal(0.0, float(rng.uniform(1.5, 5.0)), (h, w, 3))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


_SUPERSAMPLE = 4


def _downsample(a: np.ndarray) -> np.ndarray:
    s = _SUPERSAMPLE
    h, w = a.shape[0] // s, a.shape[1] // s
    return a.reshape(h, s, w, s, *a.shape[2:]).mean(axis=(1, 3))


def _object_rgba(rng: np.random.Generator, label: str, size: int, soft_px: float) -> np.ndarray:
    """An RGBA cut-out of ``label``, drawn at 4x and averaged down for clean edges."""
    s = _SUPERSAMPLE
    if label == "car":
        w, h = size, int(round(size * rng.uniform(0.55, 0.7)))
    elif label == "tree":
        w, h = int(round(size * rng.uniform(0.65, 0.8))), size
    else:
        w = h = size
    W, H = w * s, h * s
    body = tuple(int(v) for v in rng.integers(30, 235, 3))
    dark = tuple(int(v * 0.55) for v in body)
    rgb = np.empty((H, W, 3), np.uint8)
    rgb[:] = body  # fringes of a soft edge take the body colour, not black
    mask = np.zeros((H, W), np.uint8)

    def both(draw, colour):
        draw(rgb, colour)
        draw(mask, 255)

    if label == "car":
        r = int(0.12 * H)
        x0, x1, y0, y1 = int(0.03 * W), int(0.97 * W), int(0.38 * H), int(0.8 * H)
        for cx, cy in ((x0 + r, y0 + r), (x1 - r, y0 + r), (x0 + r, y1 - r), (x1 - r, y1 - r)):
            both(lambda im, c, cx=cx, cy=cy: cv2.circle(im, (cx, cy), r, c, -1), body)
        both(lambda im, c: cv2.rectangle(im, (x0 + r, y0), (x1 - r, y1), c, -1), body)
        both(lambda im, c: cv2.rectangle(im, (x0, y0 + r), (x1, y1 - r), c, -1), body)
        cabin = np.array([[0.28 * W, 0.4 * H], [0.36 * W, 0.08 * H],
                          [0.68 * W, 0.08 * H], [0.78 * W, 0.4 * H]], np.int32)
        both(lambda im, c: cv2.fillPoly(im, [cabin], c), body)
        window = np.array([[0.33 * W, 0.38 * H], [0.39 * W, 0.14 * H],
                           [0.65 * W, 0.14 * H], [0.72 * W, 0.38 * H]], np.int32)
        cv2.fillPoly(rgb, [window], (170, 200, 225))
        cv2.circle(rgb, (int(0.93 * W), int(0.5 * H)), int(0.05 * H), (250, 240, 170), -1)
        wheel_r = int(0.17 * H)
        for cx in (int(0.25 * W), int(0.75 * W)):
            both(lambda im, c, cx=cx: cv2.circle(im, (cx, int(0.8 * H)), wheel_r, c, -1),
                 (25, 25, 25))
            cv2.circle(rgb, (cx, int(0.8 * H)), wheel_r // 2, (160, 160, 165), -1)
    elif label == "ball":
        yy, xx = np.mgrid[0:H, 0:W] + 0.5
        c, r = W / 2, W / 2 - 2 * s
        inside = (xx - c) ** 2 + (yy - c) ** 2 <= r * r
        hx, hy = c - 0.35 * r, c - 0.35 * r
        shade = 1.0 - 0.55 * np.clip(np.hypot(xx - hx, yy - hy) / (1.6 * r), 0, 1)
        stripe = np.abs((yy - c) - 0.25 * r * np.sin(np.pi * (xx - c) / r)) < 0.15 * r
        base = np.where(stripe[..., None], np.asarray((245, 245, 240)), np.asarray(body))
        rgb[:] = np.clip(base * shade[..., None], 0, 255).astype(np.uint8)
        mask[inside] = 255
    elif label == "star":
        c, outer = W / 2, W / 2 - 2 * s
        angles = float(rng.uniform(0, 2 * np.pi / 5)) + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, outer, outer * rng.uniform(0.38, 0.5))
        pts = np.stack([c + radii * np.cos(angles), c + radii * np.sin(angles)], 1)
        both(lambda im, col: cv2.fillPoly(im, [pts.astype(np.int32)], col), body)
        cv2.polylines(rgb, [pts.astype(np.int32)], True, dark, 2 * s)
    else:  # tree
        trunk = (110, 75, 45)
        both(lambda im, c: cv2.rectangle(im, (int(0.42 * W), int(0.55 * H)),
                                         (int(0.58 * W), H - 2 * s), c, -1), trunk)
        green = tuple(int(v) for v in _jitter(rng, (50, 130, 50), 30))
        for cx, cy, rr in ((0.5, 0.3, 0.28), (0.3, 0.45, 0.22), (0.7, 0.45, 0.22)):
            both(lambda im, c, cx=cx, cy=cy, rr=rr: cv2.circle(
                im, (int(cx * W), int(cy * H)), int(rr * W), c, -1), green)

    colour = _downsample(rgb.astype(np.float64))
    alpha = _downsample(mask.astype(np.float64))
    if soft_px > 0:
        alpha = ndimage.gaussian_filter(alpha, soft_px)
    rgba = np.dstack([colour, alpha])
    return np.clip(np.round(rgba), 0, 255).astype(np.uint8)


def _png(img: np.ndarray) -> bytes:
    code = cv2.COLOR_RGBA2BGRA if img.shape[2] == 4 else cv2.COLOR_RGB2BGR
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, code))
    if not ok:
        raise RuntimeError("OpenCV could not encode a PNG")
    return buf.tobytes()


def _write_images(folder: Path, seed: int) -> tuple[int, int, int]:
    for index in range(BACKGROUND_COUNT):
        img = _scene(_rng(seed, f"images/bg/{index}"), *BACKGROUND_SIZE, clean=False)
        _write_bytes(folder / "backgrounds" / f"bg-{index:03d}.png", _png(img))

    fg_rows = []
    for index in range(FOREGROUND_COUNT):
        rng = _rng(seed, f"images/fg/{index}")
        label = IMAGE_LABELS[index % len(IMAGE_LABELS)]
        size = int(rng.integers(FOREGROUND_SIZE_PX_RANGE[0], FOREGROUND_SIZE_PX_RANGE[1] + 1))
        rgba = _object_rgba(rng, label, size, soft_px=float(rng.uniform(0.8, 1.6)))
        name = f"fg-{index:03d}.png"
        _write_bytes(folder / "foregrounds" / name, _png(rgba))
        fg_rows.append((name, label))
    _write_csv(folder / "foregrounds" / "manifest.csv", ("path", "label"), fg_rows)

    photo_rows = []
    pw, ph = PHOTO_SIZE
    for index in range(PHOTO_COUNT):
        rng = _rng(seed, f"images/photo/{index}")
        label = IMAGE_LABELS[index % len(IMAGE_LABELS)]
        scene = _scene(rng, pw, ph, clean=True).astype(np.float64)
        obj = _object_rgba(rng, label, int(rng.integers(80, 141)), soft_px=0.0)
        oh, ow = obj.shape[:2]
        # The subject sits near the centre and fully in frame, as in a stock photo.
        x = int(np.clip((pw - ow) / 2 + rng.normal(0, pw * 0.08), 0, pw - ow))
        y = int(np.clip((ph - oh) / 2 + rng.normal(0, ph * 0.08), 0, ph - oh))
        a = obj[:, :, 3:4] / 255.0
        patch = scene[y:y + oh, x:x + ow]
        scene[y:y + oh, x:x + ow] = a * obj[:, :, :3] + (1 - a) * patch
        img = np.clip(np.round(scene), 0, 255).astype(np.uint8)
        rel = f"photos/photo-{index:03d}.png"
        _write_bytes(folder / rel, _png(img))
        photo_rows.append((rel, label))
    _write_csv(folder / "manifest.csv", ("path", "label"), photo_rows)
    return BACKGROUND_COUNT, FOREGROUND_COUNT, PHOTO_COUNT
