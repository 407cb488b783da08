"""Simulated shoebox rooms: impulse responses by the image-source method (Allen & Berkley,
"Image method for efficiently simulating small-room acoustics", JASA 65(4), 1979).

A room is a box ``[0, x] x [0, y] x [0, z]`` metres with one frequency-independent
absorption coefficient per surface (``x0, x1, y0, y1`` the walls, ``z0`` the floor,
``z1`` the ceiling), a point source and an omnidirectional microphone. Every image of the
source within the response's length (and, optionally, up to a reflection order) adds a
pulse at its distance over the speed of sound, of amplitude ``prod(beta ** hits) /
(4 pi d)`` with ``beta = sqrt(1 - absorption)`` per surface, placed at its fractional
delay by a Hann-windowed sinc (:data:`SINC_TAPS` taps, read from a table of
:data:`SINC_STEPS` steps per sample with linear interpolation, as pyroomacoustics does).
Then Allen & Berkley's high-pass filter at :data:`HIGHPASS_HZ` (as Habets' RIR
generator applies it): every image is positive, so the dense late images sum to a
large low-frequency component that is no room's sound and would make the response
decay slower than its images do (the measured RT60 would come out about 1.35 times too
long).

Bytes do not depend on the machine: the sinc table comes from the C library's scalar
``sin``/``cos``, the powers of ``beta`` from repeated products, distances from
``sqrt`` (correctly rounded everywhere), pulses are accumulated by ``np.bincount`` in a
fixed order, and the high-pass is a plain recursion. No vectorised transcendental
function touches a written sample (:func:`image_source_rt60` uses one, and its callers
round what it returns).

Limits: shoebox only, wall absorption the same at every frequency (air absorption,
optional, is the only frequency-dependent loss), no scattering (so a flat room's late sound runs along the floor and lasts longer than
Sabine or Eyring predict; :func:`image_source_rt60` predicts it), a point source and an
omnidirectional microphone.

Example::

    room = Room(size_m=(10.0, 8.0, 3.0), absorption=(0.3,) * 6,
                source_m=(2.0, 3.0, 1.5), mic_m=(6.0, 5.0, 1.2))
    h = image_source_rir(room, 16000, frames_for(room, 16000, image_source_rt60(room.size_m, room.absorption)))
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SURFACES",
    "Room",
    "surface_areas",
    "sabine_rt60",
    "eyring_rt60",
    "absorption_for_rt60",
    "image_source_rt60",
    "predicted_rt60",
    "frames_for",
    "highest_order",
    "image_source_rir",
]

SURFACES = ("x0", "x1", "y0", "y1", "z0", "z1")  # z0 the floor, z1 the ceiling
SINC_TAPS = 32  # taps of the fractional-delay filter (+-1 ms at 16 kHz)
SINC_STEPS = 1024  # table entries per sample of delay (linear interpolation between them)
TAIL_RT60S = 1.2  # the response lasts this many (predicted) RT60s after the direct path
HIGHPASS_HZ = 100.0
# Air absorption: energy attenuation per metre by octave band, 20 C and 50 % relative
# humidity (ISO 9613-1, as pyroomacoustics tabulates it); log-frequency interpolation
# between bands, the end values beyond.
AIR_ABSORPTION_PER_M = ((125.0, 0.1e-3), (250.0, 0.2e-3), (500.0, 0.5e-3), (1000.0, 1.1e-3),
                        (2000.0, 2.7e-3), (4000.0, 9.4e-3), (8000.0, 29.0e-3))
_AIR_FRAME = 256  # STFT frame of the air absorption (hop: half of it)
_CHUNK = 16384  # images per block when placing pulses (bounds memory)


def _sabine_k(c: float) -> float:
    # 60 dB of energy decay: T = 24 ln(10) V / (c A)  (0.161 V / A at 343 m/s)
    return 24.0 * math.log(10.0) / c


@dataclass(frozen=True)
class Room:
    """One shoebox room: size (m), absorption per surface (x0, x1, y0, y1, floor,
    ceiling; each in (0, 1]), source and microphone positions (m, inside the box)."""

    size_m: tuple[float, float, float]
    absorption: tuple[float, float, float, float, float, float]
    source_m: tuple[float, float, float]
    mic_m: tuple[float, float, float]
    speed_of_sound_m_s: float = 343.0

    def __post_init__(self) -> None:
        if len(self.size_m) != 3 or not all(v > 0 for v in self.size_m):
            raise ValueError(f"room size must be three lengths > 0 m, got {self.size_m}")
        if len(self.absorption) != 6 or not all(0.0 < a <= 1.0 for a in self.absorption):
            raise ValueError(f"absorption must be six values in (0, 1], got {self.absorption}")
        for name, p in (("source", self.source_m), ("mic", self.mic_m)):
            if len(p) != 3 or not all(0.0 < v < s for v, s in zip(p, self.size_m)):
                raise ValueError(f"the {name} at {p} is not inside the room {self.size_m}")
        if self.source_m == self.mic_m:
            raise ValueError("source and microphone are at the same point")

    @property
    def distance_m(self) -> float:
        """Source to microphone (the direct path)."""
        return math.sqrt(sum((a - b) ** 2 for a, b in zip(self.source_m, self.mic_m)))


def surface_areas(size_m: tuple[float, float, float]) -> tuple[float, ...]:
    """Areas (m^2) of the six surfaces in :data:`SURFACES` order."""
    x, y, z = size_m
    return (y * z, y * z, x * z, x * z, x * y, x * y)


def _mean_absorption(size_m: tuple[float, float, float], absorption: tuple[float, ...]) -> tuple[float, float]:
    areas = surface_areas(size_m)
    total = sum(areas)
    return sum(a * s for a, s in zip(absorption, areas)) / total, total


def sabine_rt60(size_m: tuple[float, float, float], absorption: tuple[float, ...], c: float = 343.0) -> float:
    """Sabine's reverberation time (s): ``24 ln10 V / (c sum(S_i a_i))``.

    Example: ``sabine_rt60((10, 8, 3), (0.2,) * 6)  # ~0.72``
    """
    x, y, z = size_m
    mean, total = _mean_absorption(size_m, absorption)
    return _sabine_k(c) * x * y * z / (total * mean)


def eyring_rt60(size_m: tuple[float, float, float], absorption: tuple[float, ...], c: float = 343.0) -> float:
    """Eyring's reverberation time (s): ``24 ln10 V / (-c S ln(1 - mean a))`` (0 when
    every surface absorbs everything).

    Example: ``eyring_rt60((10, 8, 3), (0.2,) * 6)  # ~0.64``
    """
    x, y, z = size_m
    mean, total = _mean_absorption(size_m, absorption)
    if mean >= 1.0:
        return 0.0
    return _sabine_k(c) * x * y * z / (-total * math.log1p(-mean))


_DIRECTIONS = 512  # quadrature points on the sphere for image_source_rt60


@functools.lru_cache(maxsize=1)
def _directions() -> tuple[tuple[float, float, float], ...]:
    """|u| of evenly spread unit vectors (a Fibonacci sphere), from scalar math."""
    out = []
    golden = math.pi * (1.0 + math.sqrt(5.0))
    for k in range(_DIRECTIONS):
        z = 1.0 - 2.0 * (k + 0.5) / _DIRECTIONS
        r = math.sqrt(max(0.0, 1.0 - z * z))
        phi = golden * (k + 0.5)
        out.append((abs(r * math.cos(phi)), abs(r * math.sin(phi)), abs(z)))
    return tuple(out)


def image_source_rt60(size_m: tuple[float, float, float], absorption: tuple[float, ...], c: float = 343.0) -> float:
    """The RT60 (s, T20 of the Schroeder curve) of an image-source response itself: a ray
    along ``u`` meets the walls across axis ``i`` ``|u_i| / L_i`` times a metre, so the
    images in that direction lose ``sum_i |u_i| / L_i * (-ln(1 - a_lo) - ln(1 - a_hi)) / 2``
    nepers of energy a metre. Without scattering the energy is the mean over directions
    of each one's exponential: Eyring's formula takes the exponential of the mean
    instead, which is right in a diffuse field but not in a box, whose late sound runs
    along the axes (a flat room's lasts up to 1.5 times Eyring's RT60).

    Example: ``image_source_rt60((10, 8, 3), (0.3,) * 6)  # ~0.60, Eyring 0.41``
    """
    u = np.array(_directions())
    nepers = np.array([(-math.log1p(-min(absorption[2 * i], 1 - 1e-12))
                        - math.log1p(-min(absorption[2 * i + 1], 1 - 1e-12))) / 2.0 / size_m[i] for i in range(3)])
    rates = c * (u[:, 0] * nepers[0] + u[:, 1] * nepers[1] + u[:, 2] * nepers[2])  # nepers a second
    # Callers round what this returns (4 decimals) before it reaches any sample, so the
    # vectorised exp here cannot make bytes differ between machines.

    def edc(t: float) -> float:  # Schroeder integral of the mean energy, from t to infinity
        return float(np.sum(np.exp(-rates * t) / rates))

    total = edc(0.0)

    def when(db: float) -> float:
        level = total * 10.0 ** (db / 10.0)
        lo, hi = 0.0, 1.0
        while edc(hi) > level:
            lo, hi = hi, hi * 2.0
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if edc(mid) > level else (lo, mid)
        return 0.5 * (lo + hi)

    return 3.0 * (when(-25.0) - when(-5.0))


def predicted_rt60(size_m: tuple[float, float, float], absorption: tuple[float, ...], formula: str,
                   c: float = 343.0) -> float:
    """RT60 (s) by ``formula``: ``"image_source"`` (:func:`image_source_rt60`),
    ``"eyring"`` or ``"sabine"``."""
    fn = {"image_source": image_source_rt60, "eyring": eyring_rt60, "sabine": sabine_rt60}[formula]
    return fn(size_m, absorption, c)


def absorption_for_rt60(size_m: tuple[float, float, float], rt60_s: float, formula: str = "image_source",
                        c: float = 343.0) -> float:
    """The absorption of every surface that gives ``rt60_s`` by ``formula`` (the
    image-source decay, Eyring or Sabine, inverted); ``ValueError`` when Sabine would
    need more than 1.

    Example: ``absorption_for_rt60((10, 8, 3), 0.6)  # ~0.30 (Eyring: 0.21)``
    """
    x, y, z = size_m
    if formula == "image_source":  # the RT60 is inversely proportional to -ln(1 - a)
        ratio = image_source_rt60(size_m, (-math.expm1(-1.0),) * 6, c) / rt60_s
    else:
        ratio = _sabine_k(c) * x * y * z / (sum(surface_areas(size_m)) * rt60_s)
    a = ratio if formula == "sabine" else -math.expm1(-ratio)
    if not 0.0 < a <= 1.0:
        raise ValueError(f"an RT60 of {rt60_s:g} s in a {x:g} x {y:g} x {z:g} m room needs an absorption "
                         f"of {a:.3g} by {formula.capitalize()}, outside (0, 1]")
    return a


def frames_for(room: Room, sample_rate: int, rt60_s: float, *, max_length_s: float = 2.0) -> int:
    """Length in samples of a room's response: the direct path's delay plus
    :data:`TAIL_RT60S` times ``rt60_s`` (its predicted RT60), at most ``max_length_s``.

    Example: ``frames_for(room, 16000, 0.6)``
    """
    t = room.distance_m / room.speed_of_sound_m_s + TAIL_RT60S * rt60_s
    cap = max(1, int(round(max_length_s * sample_rate)))
    return max(2, min(cap, int(math.ceil(t * sample_rate))))


def _axis_images(size: float, src: float, mic: float, reach: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Along one axis: every image's offset from the microphone within ``reach`` and its
    hits on the low and the high wall. Image ``(n, p)`` sits at ``(1 - 2p) src + 2 n size``
    and has ``|n - p|`` hits on the wall at 0 and ``|n|`` on the wall at ``size``."""
    top = int(math.ceil(reach / (2.0 * size))) + 1
    n = np.repeat(np.arange(-top, top + 1, dtype=np.int64), 2)
    p = np.tile(np.array([0, 1], dtype=np.int64), 2 * top + 1)
    offset = (1 - 2 * p) * src + 2.0 * n * size - mic
    keep = np.abs(offset) <= reach
    return offset[keep], np.abs(n - p)[keep], np.abs(n)[keep]


def _powers(beta: float, top: int) -> np.ndarray:
    out = np.empty(top + 1)
    v = 1.0
    for k in range(top + 1):
        out[k] = v
        v *= beta
    return out


def _axis_gains(beta_lo: float, beta_hi: float, lo_hits: np.ndarray, hi_hits: np.ndarray) -> np.ndarray:
    top = int(max(lo_hits.max(initial=0), hi_hits.max(initial=0)))
    return _powers(beta_lo, top)[lo_hits] * _powers(beta_hi, top)[hi_hits]


def highest_order(room: Room, frames: int, sample_rate: int, max_order: int | None = None) -> int:
    """The highest reflection order among the images that reach the microphone within
    ``frames`` samples (at most ``max_order``): cheap, no response is built.

    Example: ``highest_order(room, 11520, 16000)``
    """
    reach = frames / sample_rate * room.speed_of_sound_m_s
    nearest = []  # per axis: the squared offset of the nearest image of each order
    for size, s, m in zip(room.size_m, room.source_m, room.mic_m):
        off, lo, hi = _axis_images(size, s, m, reach)
        hits = lo + hi
        order = np.full(int(hits.max()) + 1, np.inf)
        np.minimum.at(order, hits, off * off)
        nearest.append(order)
    ox, oy, oz = nearest
    # The largest z order that fits the budget left by (x order, y order): a suffix
    # minimum makes the nearest-image distances non-decreasing, then a binary search.
    suffix = np.minimum.accumulate(oz[::-1])[::-1]
    left = reach * reach - (ox[:, None] + oy[None, :])
    kz = np.searchsorted(suffix, left, side="right") - 1
    total = np.arange(ox.size)[:, None] + np.arange(oy.size)[None, :] + kz
    total = np.where(kz >= 0, total, -1)
    best = int(total.max()) if total.size else 0
    if max_order is not None:
        best = min(best, int(max_order))
    return max(best, 0)


@functools.lru_cache(maxsize=4)
def _sinc_table(taps: int, steps: int) -> np.ndarray:
    """Hann-windowed sinc, ``(steps + 2, taps)``: row ``k`` holds the taps of a pulse
    ``1 - k/steps`` samples after a sample, ``table[k, j] = g(j - taps/2 + k/steps)``
    with ``g(t) = sinc(t) (1 + cos(2 pi t / taps)) / 2`` (zero outside ``|t| < taps/2``;
    one extra row for the interpolation), from scalar ``math.sin``/``math.cos``."""
    half = taps / 2.0

    def g(t: float) -> float:
        if abs(t) >= half:
            return 0.0
        s = 1.0 if t == 0.0 else math.sin(math.pi * t) / (math.pi * t)
        return s * 0.5 * (1.0 + math.cos(math.pi * t / half))

    table = np.array([[g(j - half + k / steps) for j in range(taps)] for k in range(steps + 2)])
    table.setflags(write=False)
    return table


def image_source_rir(room: Room, sample_rate: int, frames: int, *, max_order: int | None = None,
                     air_absorption: bool = False) -> np.ndarray:
    """The room's impulse response, ``frames`` samples at ``sample_rate``, float32: the
    direct path at ``distance / c`` with amplitude ``1 / (4 pi distance)``, then every
    image (up to ``max_order`` reflections, if given) that arrives before the end. With
    ``air_absorption`` the sound arriving at time ``t`` has also lost
    :data:`AIR_ABSORPTION_PER_M` over its ``c t`` metres (more at high frequencies).

    Example: ``h = image_source_rir(room, 16000, 8000)``
    """
    sr = int(sample_rate)
    c = room.speed_of_sound_m_s
    reach = frames / sr * c
    betas = [math.sqrt(1.0 - a) for a in room.absorption]
    axes = []
    for ax, (size, s, m) in enumerate(zip(room.size_m, room.source_m, room.mic_m)):
        off, lo, hi = _axis_images(size, s, m, reach)
        axes.append((off * off, _axis_gains(betas[2 * ax], betas[2 * ax + 1], lo, hi), lo + hi))
    (x2, gx, ox), (y2, gy, oy), (z2, gz, oz) = axes
    yz2 = y2[:, None] + z2[None, :]
    gyz = gy[:, None] * gz[None, :]
    oyz = oy[:, None] + oz[None, :]
    dist: list[np.ndarray] = []
    gain: list[np.ndarray] = []
    for i in range(x2.size):  # one slab of images per x image: memory stays small
        d2 = x2[i] + yz2
        ok = d2 <= reach * reach
        if max_order is not None:
            ok &= ox[i] + oyz <= max_order
        dist.append(np.sqrt(d2[ok]))
        gain.append(gx[i] * gyz[ok])
    d = np.concatenate(dist)
    amp = np.concatenate(gain) / (4.0 * math.pi * d)
    delay = d * (sr / c)  # samples

    taps, steps, half = SINC_TAPS, SINC_STEPS, SINC_TAPS // 2
    table = _sinc_table(taps, steps)
    j = np.arange(taps, dtype=np.int64)
    size = frames + taps + 1
    buf = np.zeros(size)
    for a in range(0, d.size, _CHUNK):
        tau = delay[a : a + _CHUNK]
        n0 = np.floor(tau)
        q = (1.0 - (tau - n0)) * steps  # table row of the pulse, in (0, steps]
        qi = np.floor(q)
        qf = (q - qi)[:, None]
        rows = qi.astype(np.int64)
        vals = table[rows] * (1.0 - qf)
        vals += table[rows + 1] * qf
        vals *= amp[a : a + _CHUNK, None]
        # tap j of a pulse sits at sample n0 - half + 1 + j, i.e. at n0 + 1 + j in buf
        pos = n0.astype(np.int64)[:, None] + (j + 1)[None, :]
        buf += np.bincount(pos.ravel(), weights=vals.ravel(), minlength=size)[:size]
    h = buf[half : half + frames]
    if air_absorption:
        h = _air_absorption(h, sr, c)
    return _highpass(h, sr).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _air_per_m(sample_rate: int) -> tuple[float, ...]:
    """Energy attenuation per metre at each bin of a :data:`_AIR_FRAME` rfft."""
    bands = AIR_ABSORPTION_PER_M
    out = []
    for k in range(_AIR_FRAME // 2 + 1):
        f = k * sample_rate / _AIR_FRAME
        if f <= bands[0][0]:
            out.append(bands[0][1])
        elif f >= bands[-1][0]:
            out.append(bands[-1][1])
        else:
            i = next(j for j in range(1, len(bands)) if f <= bands[j][0])
            (f0, m0), (f1, m1) = bands[i - 1], bands[i]
            u = math.log(f / f0) / math.log(f1 / f0)
            out.append(math.exp(math.log(m0) + u * (math.log(m1) - math.log(m0))))
    return tuple(out)


def _air_absorption(h: np.ndarray, sample_rate: int, c: float) -> np.ndarray:
    """A time-varying filter: frames of :data:`_AIR_FRAME` samples (periodic Hann, half
    overlapping, so the windows sum to one) each lose ``exp(-m(f) d / 2)`` in amplitude,
    ``d`` the distance sound travels by the frame's centre. Gains from scalar ``math.exp``."""
    from scipy import fft as _fft  # scipy.fft is loaded by the other audio operations anyway

    n, hop = _AIR_FRAME, _AIR_FRAME // 2
    window = np.array([0.5 - 0.5 * math.cos(2.0 * math.pi * k / n) for k in range(n)])
    count = -(-(len(h) + hop) // hop)
    padded = np.zeros((count + 1) * hop)
    padded[hop : hop + len(h)] = h  # frame f covers samples (f - 1) hop .. (f + 1) hop of h
    frames = np.stack([padded[f * hop : f * hop + n] for f in range(count)]) * window
    per_m = _air_per_m(sample_rate)
    gains = np.array([[math.exp(-0.5 * m * c * max(0.0, f * hop / sample_rate)) for m in per_m]
                      for f in range(count)])
    spec = _fft.rfft(frames, axis=1) * gains
    pieces = _fft.irfft(spec, n, axis=1)
    out = np.zeros_like(padded)
    for f in range(count):  # overlap-add in a fixed order
        out[f * hop : f * hop + n] += pieces[f]
    return out[hop : hop + len(h)]


def _highpass(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Allen & Berkley's DC-removing filter (two zeros at 1 and ``exp(-w)`` at the
    cut-off ``w``, a double pole at ``exp(-w)``), from scalar ``math.exp``/``math.cos``;
    its first tap is 1, so the direct path keeps its amplitude."""
    from scipy import signal as _signal  # scipy.signal loads only when a room is built

    w = 2.0 * math.pi * HIGHPASS_HZ / sample_rate
    r = math.exp(-w)
    b = np.array([1.0, -(1.0 + r), r])
    a = np.array([1.0, -2.0 * r * math.cos(w), r * r])
    return _signal.lfilter(b, a, x)
