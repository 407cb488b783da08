"""Each augmentation stage's cost against audiomentations' equivalent, on the same audio.

One run, one process, one clip: ten seconds of the demo corpus's synthetic speech at
16 kHz (``engine.demo``'s voices, concatenated; made here, nothing is downloaded). Every
stage is called on that clip with fixed parameters (audiomentations' transforms with
``p=1`` and each range collapsed to the value shardsmith uses), once to warm up (caches,
numba compilation), then ``--repeats`` times; the figure is the best CPU time
(``time.process_time``: this process, all its threads) per call, in milliseconds per
10 s of audio. CPU time rather than wall time because the machine may be shared; the
ratio is audiomentations' ms over shardsmith's (above 1: shardsmith is faster).

Stages without an equivalent in audiomentations 0.43.1 (Opus, Vorbis, GSM 6.10, mu-law,
A-law, the narrowband telephone round trip, the cubic clip curve) get shardsmith's
column alone. Speed perturbation has no transform of its own there: its row uses
``Resample`` to 16 kHz / speed, played at 16 kHz, as ``benchmarks/peers.py`` does.

Simulated rooms: shardsmith builds a room's impulse response once per pool item (a
worker keeps it) and convolves it per sample, so both costs are printed (a build per
room, whatever the clip's length), and their sum against ``RoomSimulator``, which builds
a room on every call (as it ships: image sources to order 1, then ray tracing, with air
absorption; so shardsmith's row has air absorption on). The image-source computation
alone is set against pyroomacoustics' ``ShoeBox`` to the same order (RoomSimulator's own
image-source-only mode builds a general polyhedron and does not finish at that order).
The rows run when ``engine.audio.rooms`` is there and say "not available" otherwise.

audiomentations is the optional ``bench`` extra, never a runtime dependency; without it
(or without one of its backends) those cells are "-" and the script says how to install
it. fast-mp3-augment (LGPL-2.1-or-later) and pyroomacoustics come with the extra; lameenc
is measured as a second MP3 backend only when it happens to be installed.

    python benchmarks/augment_stages.py                  # best of 5
    python benchmarks/augment_stages.py --quick          # best of 2
    python benchmarks/augment_stages.py --only mp3,room  # stages whose name has these
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from engine.audio import ops  # noqa: E402
from engine.audio.channel import codec_round_trip, telephone_band  # noqa: E402
from engine.audio.eq import biquad, bit_depth, clip  # noqa: E402
from engine.audio.stretch import pitch_shift, time_stretch  # noqa: E402
from peers import INSTALL_HINT  # noqa: E402

try:
    from engine.audio import rooms
except ImportError:  # simulated rooms are not in this checkout yet
    rooms = None

SR = 16000
SECONDS = 10.0
SPEED = TEMPO = 1.1
SEMITONES = 2.0
GAIN_DB = 6.0
MP3_KBPS = 32
TELEPHONE_HZ = (300.0, 3400.0)
DRIVE_DB = 6.0
BITS = 8
RIR_RT60_S = 0.5
# The room: audiomentations' default size ranges (3.6-5.6 x 3.6-3.9 x 2.4-3.0 m) at their
# middle, a source in it and the microphone 0.25 m away along y (azimuth and elevation
# 0), the absorption that gives an RT60 of 0.5 s by Sabine (what RoomSimulator's "rt60"
# mode does with pyroomacoustics.inverse_sabine).
ROOM_SIZE_M = (4.6, 3.75, 2.7)
ROOM_SOURCE_M = (2.0, 1.5, 1.5)
ROOM_MIC_DISTANCE_M = 0.25
ROOM_RT60_S = 0.5


def speech_clip(seconds: float = SECONDS, sr: int = SR) -> np.ndarray:
    """``seconds`` of the demo corpus's synthetic voices (utterances back to back), float32.

    Example: ``speech_clip(0.5).shape == (8000,)``
    """
    from engine import demo  # the demo's speech renderer; its images are not made

    assert sr == demo.SPEECH_SAMPLE_RATE
    n = int(round(seconds * sr))
    parts, have, i = [], 0, 0
    while have < n:
        voice = demo.DEMO_VOICES[i % len(demo.DEMO_VOICES)]
        x = demo._speech_utterance(0, voice, i, demo.DEMO_WORDS[i % len(demo.DEMO_WORDS)])
        parts.append(x)
        have += len(x)
        i += 1
    return np.concatenate(parts)[:n].astype(np.float32)


def impulse_response(sr: int = SR) -> np.ndarray:
    """A recorded-room stand-in for the convolution rows: ``ops.synthetic_rir`` (RT60 0.5 s)."""
    return ops.synthetic_rir(sr, RIR_RT60_S, 6.0, np.random.default_rng(7))


# --------------------------------------------------------------------------- stages


@dataclass
class Stage:
    name: str  # what is done, with the parameters
    # None: not in this checkout; a tuple of row names: the sum of those rows' figures
    ours: Callable[[np.ndarray], object] | tuple[str, ...] | None
    peer_name: str = ""  # audiomentations' transform ("" = no equivalent)
    peer: Callable[[], Callable[[np.ndarray], object]] | None = None  # builds the peer call
    note: str = ""
    per_audio: bool = True  # False: the cost does not grow with the audio (a room's build)


def _am(transform) -> Callable[[np.ndarray], object]:
    return lambda x: transform(samples=x, sample_rate=SR)


def _room() -> tuple[object, int] | None:
    if rooms is None:
        return None
    absorption = rooms.absorption_for_rt60(ROOM_SIZE_M, ROOM_RT60_S, "sabine")
    sx, sy, sz = ROOM_SOURCE_M
    room = rooms.Room(size_m=ROOM_SIZE_M, absorption=(absorption,) * 6, source_m=ROOM_SOURCE_M,
                      mic_m=(sx, sy + ROOM_MIC_DISTANCE_M, sz))
    # as the generator pool does: the length from the formula's predicted RT60
    frames = rooms.frames_for(room, SR, rooms.predicted_rt60(ROOM_SIZE_M, room.absorption, "sabine"))
    return room, frames


def _room_simulator():
    """RoomSimulator as it ships (image sources to order 1, then 10,000 rays), in the same
    room: size, source, microphone and absorption fixed to shardsmith's.

    Its image-source-only mode (``use_ray_tracing=False`` with the order Sabine gives)
    is not measured: RoomSimulator builds the room from corners (a general polyhedron,
    not pyroomacoustics' ShoeBox), and image sources to order ~80 there did not finish in
    ten minutes. The ShoeBox row measures pyroomacoustics' image sources instead."""
    from audiomentations import RoomSimulator

    (x, y, z), (sx, sy, sz) = ROOM_SIZE_M, ROOM_SOURCE_M
    a = rooms.absorption_for_rt60(ROOM_SIZE_M, ROOM_RT60_S, "sabine")
    return RoomSimulator(min_size_x=x, max_size_x=x, min_size_y=y, max_size_y=y, min_size_z=z, max_size_z=z,
                         min_source_x=sx, max_source_x=sx, min_source_y=sy, max_source_y=sy,
                         min_source_z=sz, max_source_z=sz, min_mic_distance=ROOM_MIC_DISTANCE_M,
                         max_mic_distance=ROOM_MIC_DISTANCE_M, min_mic_azimuth=0.0, max_mic_azimuth=0.0,
                         min_mic_elevation=0.0, max_mic_elevation=0.0, min_absorption_value=a,
                         max_absorption_value=a, leave_length_unchanged=True, p=1.0)


def _room_part(part: str):
    """RoomSimulator's two halves apart: ``randomize_parameters`` builds the room and its
    response, ``apply`` convolves."""
    t = _room_simulator()

    def build(x):
        t.randomize_parameters(x, SR)

    def convolve(x):
        return t.apply(x, SR)

    if part == "build":
        return build
    t.randomize_parameters(np.zeros(SR, np.float32), SR)
    return convolve


def _shoebox(room, order: int):
    """pyroomacoustics' own image sources in the same shoebox to the same reflection order
    as shardsmith's response reaches (one band, no air absorption)."""
    import pyroomacoustics as pra

    def build(x):
        r = pra.ShoeBox(list(room.size_m), fs=SR, materials=pra.Material(room.absorption[0]), max_order=order,
                        air_absorption=False, ray_tracing=False)
        r.add_source(list(room.source_m))
        r.add_microphone(list(room.mic_m))
        r.compute_rir()

    return build


def build_stages(ir_folder: Path) -> list[Stage]:
    """Every row, in the order printed (``ir_folder`` holds the response
    ApplyImpulseResponse reads)."""
    A = _audiomentations()
    h = impulse_response()
    lo, hi = TELEPHONE_HZ
    centre = (lo + hi) / 2.0  # audiomentations' band edges: centre -+ bandwidth / 2
    room = _room()

    def peer(make):
        return (lambda: make(A)) if A is not None else None

    def mp3_backend(backend):
        def make(A):
            return _am(A.Mp3Compression(min_bitrate=MP3_KBPS, max_bitrate=MP3_KBPS, backend=backend, p=1.0))
        return make

    out = [
        Stage(f"speed {SPEED}", lambda x: ops.speed_perturb(x, SPEED),
              f"Resample to {int(SR / SPEED)} Hz", peer(lambda A: _am(A.Resample(
                  min_sample_rate=int(SR / SPEED), max_sample_rate=int(SR / SPEED), p=1.0))),
              "no speed transform in audiomentations: Resample, played at 16 kHz, as benchmarks/peers.py"),
        Stage(f"tempo {TEMPO}", lambda x: time_stretch(x, TEMPO, SR),
              "TimeStretch", peer(lambda A: _am(A.TimeStretch(min_rate=TEMPO, max_rate=TEMPO,
                                                              leave_length_unchanged=False, p=1.0)))),
        Stage(f"pitch +{SEMITONES:g} st", lambda x: pitch_shift(x, SEMITONES, SR),
              "PitchShift", peer(lambda A: _am(A.PitchShift(min_semitones=SEMITONES, max_semitones=SEMITONES,
                                                             p=1.0)))),
        Stage(f"gain {GAIN_DB:g} dB", lambda x: ops.gain(x, GAIN_DB),
              "Gain", peer(lambda A: _am(A.Gain(min_gain_db=GAIN_DB, max_gain_db=GAIN_DB, p=1.0)))),
        Stage(f"mp3 {MP3_KBPS} kbps", lambda x: codec_round_trip(x, SR, "mp3", bitrate_kbps=MP3_KBPS),
              "Mp3Compression (fast-mp3-augment)", peer(mp3_backend("fast-mp3-augment"))),
    ]
    if _importable("lameenc"):
        out.append(Stage(f"mp3 {MP3_KBPS} kbps", lambda x: codec_round_trip(x, SR, "mp3", bitrate_kbps=MP3_KBPS),
                         "Mp3Compression (lameenc)", peer(mp3_backend("lameenc"))))
    out += [
        Stage("opus 16 kbps", lambda x: codec_round_trip(x, SR, "opus", bitrate_kbps=16)),
        Stage("vorbis quality 0.3", lambda x: codec_round_trip(x, SR, "vorbis", quality=0.3)),
        Stage("gsm 6.10", lambda x: codec_round_trip(x, SR, "gsm")),
        Stage("mu-law", lambda x: codec_round_trip(x, SR, "mulaw")),
        Stage("a-law", lambda x: codec_round_trip(x, SR, "alaw")),
        Stage(f"telephone band {lo:g}-{hi:g} Hz", lambda x: telephone_band(x, SR, low_hz=lo, high_hz=hi),
              "BandPassFilter (24 dB/oct)", peer(lambda A: _am(A.BandPassFilter(
                  min_center_freq=centre, max_center_freq=centre, min_bandwidth_fraction=(hi - lo) / centre,
                  max_bandwidth_fraction=(hi - lo) / centre, min_rolloff=24, max_rolloff=24, p=1.0)))),
        Stage("telephone band, narrowband", lambda x: telephone_band(x, SR, low_hz=lo, high_hz=hi, narrowband=True)),
        Stage(f"clip hard {DRIVE_DB:g} dB", lambda x: clip(x, "hard", DRIVE_DB),
              "ClippingDistortion (20 %)", peer(lambda A: _am(A.ClippingDistortion(
                  min_percentile_threshold=20, max_percentile_threshold=20, p=1.0))),
              "audiomentations clips at the 10th and 90th percentiles of the samples, shardsmith at a "
              "threshold set by the peak"),
        Stage(f"clip tanh {DRIVE_DB:g} dB", lambda x: clip(x, "tanh", DRIVE_DB),
              "TanhDistortion (0.5)", peer(lambda A: _am(A.TanhDistortion(min_distortion=0.5, max_distortion=0.5,
                                                                          p=1.0)))),
        Stage(f"clip cubic {DRIVE_DB:g} dB", lambda x: clip(x, "cubic", DRIVE_DB)),
        Stage(f"bit depth {BITS}", lambda x: bit_depth(x, BITS),
              "BitCrush", peer(lambda A: _am(A.BitCrush(min_bit_depth=BITS, max_bit_depth=BITS, p=1.0)))),
        Stage("peaking 1 kHz +6 dB q 1", lambda x: biquad(x, SR, "peaking", freq_hz=1000.0, gain_db=6.0, q=1.0),
              "PeakingFilter", peer(lambda A: _am(A.PeakingFilter(
                  min_center_freq=1000.0, max_center_freq=1000.0, min_gain_db=6.0, max_gain_db=6.0,
                  min_q=1.0, max_q=1.0, p=1.0)))),
        Stage("low shelf 200 Hz -9 dB", lambda x: biquad(x, SR, "low_shelf", freq_hz=200.0, gain_db=-9.0, q=0.7),
              "LowShelfFilter", peer(lambda A: _am(A.LowShelfFilter(
                  min_center_freq=200.0, max_center_freq=200.0, min_gain_db=-9.0, max_gain_db=-9.0,
                  min_q=0.7, max_q=0.7, p=1.0)))),
        Stage("high shelf 4 kHz +6 dB", lambda x: biquad(x, SR, "high_shelf", freq_hz=4000.0, gain_db=6.0, q=0.7),
              "HighShelfFilter", peer(lambda A: _am(A.HighShelfFilter(
                  min_center_freq=4000.0, max_center_freq=4000.0, min_gain_db=6.0, max_gain_db=6.0,
                  min_q=0.7, max_q=0.7, p=1.0)))),
        Stage("notch 1 kHz q 2", lambda x: biquad(x, SR, "notch", freq_hz=1000.0, q=2.0),
              "BandStopFilter (12 dB/oct)", peer(lambda A: _am(A.BandStopFilter(
                  min_center_freq=1000.0, max_center_freq=1000.0, min_bandwidth_fraction=0.5,
                  max_bandwidth_fraction=0.5, min_rolloff=12, max_rolloff=12, p=1.0))),
              "audiomentations' band-stop is a Butterworth (order 2 per edge), shardsmith's notch one biquad"),
        Stage(f"reverb: convolve ({len(h) / SR:.1f} s response)", lambda x: ops.convolve_aligned(x, h),
              "ApplyImpulseResponse", peer(lambda A: _am(A.ApplyImpulseResponse(
                  ir_path=str(ir_folder), leave_length_unchanged=True, p=1.0)))),
    ]
    if room is None:
        out.append(Stage("room: build + convolve", None, note="not available (engine.audio.rooms is not in "
                                                               "this checkout)"))
        return out
    r, frames = room
    kept: dict[str, np.ndarray] = {}

    def build(x, air: bool = False):
        kept["h"] = rooms.image_source_rir(r, SR, frames, air_absorption=air)

    def convolve(x):
        return ops.convolve_aligned(x, kept["h"])

    build(None, air=True)  # convolve with the response that has air absorption
    has_pra = A is not None and _importable("pyroomacoustics")
    order = rooms.highest_order(r, frames, SR)
    names = ("room: build the response (per item)", "room: build, air absorption (per item)",
             "room: convolve (per sample)")
    out += [
        Stage(names[0], build, f"pyroomacoustics ShoeBox, order {order}" if has_pra else "",
              (lambda: _shoebox(r, order)) if has_pra else None,
              f"RT60 {ROOM_RT60_S:g} s (Sabine) in {' x '.join(f'{v:g}' for v in ROOM_SIZE_M)} m, microphone "
              f"{ROOM_MIC_DISTANCE_M:g} m from the source: {frames / SR:.2f} s of response, image sources to "
              f"order {order}. Not audiomentations: pyroomacoustics' image sources alone in the same shoebox to "
              "the same order (one band, no air absorption); RoomSimulator cannot (see the script)",
              per_audio=False),
        Stage(names[1], lambda x: build(x, air=True), "RoomSimulator: randomize_parameters" if has_pra else "",
              (lambda: _room_part("build")) if has_pra else None,
              "RoomSimulator as it ships: image sources to order 1, then 10,000 rays, with air absorption",
              per_audio=False),
        Stage(names[2], convolve, "RoomSimulator: apply" if has_pra else "",
              (lambda: _room_part("convolve")) if has_pra else None),
        Stage("room: build (air) + convolve", names[1:], "RoomSimulator" if has_pra else "",
              note="the sum of the two rows above: shardsmith builds a room once per pool item (a worker "
                   "keeps it), RoomSimulator on every call"),
    ]
    return out


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def _audiomentations():
    try:
        import audiomentations
    except ImportError:
        return None
    return audiomentations


# --------------------------------------------------------------------------- timing


LONG_CALL_S = 2.0  # a call longer than this is timed once: more repeats would add little


def cpu_ms(fn: Callable[[np.ndarray], object], x: np.ndarray, repeats: int) -> float:
    """Best CPU time of ``repeats`` calls of ``fn(x)`` after one warm-up call, in ms (one
    timed call when it takes longer than :data:`LONG_CALL_S`)."""
    fn(x)
    best = math.inf
    for _ in range(max(1, repeats)):
        t0 = time.process_time()
        fn(x)
        best = min(best, time.process_time() - t0)
        if best > LONG_CALL_S:
            break
    return best * 1000.0


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}" if v < 1 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


class Table:
    """The rows printed as they are measured (a slow peer shows where the time goes)."""

    def __init__(self, rows: list[Stage], peer_installed: bool) -> None:
        self.w = max([len("stage")] + [len(s.name) for s in rows])
        self.wp = max([len("audiomentations")] + [len(s.peer_name) for s in rows])
        self.peer_installed = peer_installed
        self.notes: list[str] = []

    def header(self) -> None:
        print(f"  {'stage':{self.w}s} {'shardsmith ms':>13s} {'audiomentations':{self.wp}s} {'ms':>7s} {'ratio':>7s}")

    def row(self, r: dict) -> None:
        ratio = f"{r['peer_ms'] / r['ours_ms']:.1f}x" if r["peer_ms"] and r["ours_ms"] else "-"
        peer = r["peer"] or ("(none)" if self.peer_installed else "")
        mark = ""
        if r["note"]:
            self.notes.append(r["note"])
            mark = f" [{len(self.notes)}]"
        print(f"  {r['stage']:{self.w}s} {_ms(r['ours_ms']):>13s} {peer:{self.wp}s} {_ms(r['peer_ms']):>7s} "
              f"{ratio:>7s}{mark}", flush=True)

    def footer(self) -> None:
        print("  (ms of CPU per 10 s of 16 kHz audio (a room's build: per room, whatever the length), best of "
              "the repeats; ratio: audiomentations' ms / shardsmith's, above 1 = shardsmith faster)")
        for i, n in enumerate(self.notes, 1):
            print(f"  [{i}] {n}")


def measure(rows: list[Stage], x: np.ndarray, repeats: int, *, table: Table | None = None) -> list[dict]:
    """Every row's ms per 10 s of audio: shardsmith's and, where there is one, the peer's.
    A row whose ``ours`` names earlier rows takes their sum (a room: built per item,
    convolved per sample)."""
    scale = SECONDS * SR / len(x)
    out: list[dict] = []
    for s in rows:
        k = scale if s.per_audio else 1.0
        if isinstance(s.ours, tuple):  # the sum of two rows measured above
            parts = [next(r for r in out if r["stage"] == name) for name in s.ours]
            ours = sum(p["ours_ms"] for p in parts)
            theirs = sum(p["peer_ms"] for p in parts) if all(p["peer_ms"] for p in parts) else None
        else:
            ours = cpu_ms(s.ours, x, repeats) * k if s.ours is not None else None
            theirs = None
        if s.peer is not None:
            theirs = cpu_ms(s.peer(), x, repeats) * k
        out.append({"stage": s.name, "ours_ms": ours, "peer": s.peer_name, "peer_ms": theirs, "note": s.note})
        if table is not None:
            table.row(out[-1])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="best of this many calls after a warm-up (default 5)")
    ap.add_argument("--quick", action="store_true", help="best of 2 (a quick look)")
    ap.add_argument("--seconds", type=float, default=SECONDS,
                    help="length of the clip (figures are scaled to 10 s; default 10)")
    ap.add_argument("--only", default="", help="comma-separated words: only the stages whose name has one")
    args = ap.parse_args(argv)
    repeats = 2 if args.quick else args.repeats

    A = _audiomentations()
    if A is None:
        print(INSTALL_HINT + "; its columns are left empty")
    else:
        print(f"audiomentations {A.__version__}", end="")
        print("" if _importable("pyroomacoustics") else " (pyroomacoustics missing: no room column)")
    x = speech_clip(args.seconds)
    with tempfile.TemporaryDirectory(prefix="shardsmith-stages-") as tmp:
        sf.write(Path(tmp) / "rir.wav", impulse_response(), SR, subtype="FLOAT")
        rows = build_stages(Path(tmp))
        if args.only:
            words = [w.strip() for w in args.only.split(",") if w.strip()]
            rows = [s for s in rows if any(w in s.name for w in words)]
        load = os.getloadavg()[0]
        print(f"{len(x) / SR:g} s of synthetic speech at {SR} Hz; best of {repeats} after a warm-up; "
              f"{os.cpu_count()} CPUs, 1-minute load average {load:.1f}", flush=True)
        table = Table(rows, A is not None)
        table.header()
        measure(rows, x, repeats, table=table)
        table.footer()
    print(f"  1-minute load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
