"""Decode cost of each pool format relative to FLAC, and how exact libsndfile's own seek is.

The same 60 s of 16 kHz speech-like audio (voiced syllables with a gliding pitch over a
little noise, made here; nothing is downloaded) is written as FLAC, WAV, MP3, Ogg Vorbis
and Opus (soundfile's encoders at their defaults). For each format, in one run:

1. **whole decode**: ``engine.audio.io.read_all`` of the file (no cache);
2. **200 seek reads**: 200 random 1 s windows through ``engine.audio.io.read_mono`` with
   one ``HandleCache`` (the way a worker reads). A compressed file is decoded whole on
   its first read and sliced after, in memory;
3. **spilled**: the same with ``HandleCache(decoded_bytes=0)``: the decode goes to a
   scratch file on disk, as for a file too long to keep in memory;
4. **streaming**: the same with ``HandleCache(decoded_bytes=0, spill_bytes=0)``: no
   whole decode kept, each read before the stream's position decodes again from the
   start (a file beyond both budgets);
5. **probe**: ``engine.audio.io.probe`` (an MP3 is always decoded to its end);
6. **libsndfile seek exact**: of 200 random 1 s windows, how many a plain libsndfile seek
   + read on a fresh handle returns equal to the continuous decode (what the engine no
   longer relies on for compressed formats; it depends on the signal).

Each time is the best of ``--repeats`` runs; ratios are to FLAC's time for the same
measure. Also printed: the cost of one stderr capture window (around every libsndfile
call on an MP3), and probing 32 ten-second files one by one against the pool indexer's
thread pool (``engine.pools.thread_mapper``): MP3 decode calls take turns, as the
capture is per process.

    python benchmarks/codec_decode.py
    python benchmarks/codec_decode.py --seconds 600 --repeats 1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.audio import io as audio_io  # noqa: E402
from engine.pools import thread_mapper  # noqa: E402

RATE = 16000
FORMATS = {  # name -> (suffix, soundfile format, subtype)
    "FLAC": (".flac", "FLAC", "PCM_16"),
    "WAV": (".wav", "WAV", "PCM_16"),
    "MP3": (".mp3", "MP3", "MPEG_LAYER_III"),
    "Ogg Vorbis": (".ogg", "OGG", "VORBIS"),
    "Opus": (".opus", "OGG", "OPUS"),
}


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.3 * t) + 10 * np.sin(2 * np.pi * 2.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voiced = sum(np.sin(k * phase) * np.exp(-k / 6) for k in range(1, 16))
    syllables = np.clip(np.sin(2 * np.pi * 3.5 * t + np.sin(2 * np.pi * 0.2 * t)), 0, None) ** 1.5
    pauses = (np.sin(2 * np.pi * 0.25 * t) > -0.7).astype(float)
    x = 0.15 * voiced * syllables * pauses + 0.004 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def raw_read(handle: sf.SoundFile, frames: int) -> np.ndarray:
    """libsndfile's read without pysoundfile's seek after it (see engine/audio/io.py)."""
    out = np.empty((frames, handle.channels), dtype=np.float32)
    got = sf._snd.sf_readf_float(handle._file, sf._ffi.cast("float *", out.ctypes.data), frames)
    return out[:got]


def libsndfile_seek_exact(path: str, windows: list[int]) -> int:
    whole = audio_io.read_all(path)
    exact = 0
    for start in windows:
        with audio_io._decoder_messages():  # libmpg123 complains after a seek; kept off the terminal
            with sf.SoundFile(path) as f:
                f.seek(start)
                block = raw_read(f, RATE)
        exact += np.array_equal(block, whole[start : start + RATE])
    return exact


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--reads", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    x = speechlike(args.seconds)
    rng = np.random.default_rng(1)
    starts = [int(s) for s in rng.integers(0, x.size - RATE, args.reads)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (suffix, fmt, subtype) in FORMATS.items():
            path = os.path.join(tmp, "speech" + suffix)
            sf.write(path, x, RATE, format=fmt, subtype=subtype)

            def seek_reads(**kwargs) -> None:
                with audio_io.HandleCache(**kwargs) as cache:
                    for start in starts:
                        audio_io.read_mono(path, start, RATE, cache=cache)

            rows.append({
                "format": name,
                "kbps": os.path.getsize(path) * 8 / args.seconds / 1000,
                "whole": best(lambda: audio_io.read_all(path), args.repeats),
                "reads": best(lambda: seek_reads(), args.repeats),
                "spilled": best(lambda: seek_reads(decoded_bytes=0), args.repeats),
                "streaming": best(lambda: seek_reads(decoded_bytes=0, spill_bytes=0), args.repeats),
                "probe": best(lambda: audio_io.probe(path), args.repeats),
                "exact": libsndfile_seek_exact(path, starts),
            })
    flac = rows[0]
    print(f"{args.seconds:g} s of 16 kHz mono speech-like audio; best of {args.repeats}; "
          f"{args.reads} random 1 s reads; ratios to FLAC")
    measures = ("whole", "reads", "spilled", "streaming", "probe")
    titles = ("whole decode", "seek reads", "spilled", "streaming", "probe")
    print(f"{'format':<11} {'kbit/s':>6} " + " ".join(f"{t:>17}" for t in titles) + "  libsndfile seek exact")
    for r in rows:
        cells = [f"{r[k] * 1000:7.1f} ms {r[k] / flac[k]:5.1f}x" for k in measures]
        print(f"{r['format']:<11} {r['kbps']:6.0f} " + " ".join(f"{c:>17}" for c in cells)
              + f"  {r['exact']:>13}/{args.reads}")

    with tempfile.TemporaryDirectory() as tmp:
        for name in ("FLAC", "MP3", "Opus"):
            suffix, fmt, subtype = FORMATS[name]
            paths = []
            for i in range(32):
                paths.append(os.path.join(tmp, f"{i}{suffix}"))
                sf.write(paths[-1], speechlike(10.0, seed=i), RATE, format=fmt, subtype=subtype)
            alone = best(lambda: [audio_io.probe(p) for p in paths], args.repeats)
            pooled = best(lambda: thread_mapper(audio_io.probe, paths), args.repeats)
            print(f"probing 32 x 10 s {name:<5}: one by one {alone * 1000:6.0f} ms, thread pool "
                  f"{pooled * 1000:6.0f} ms ({alone / pooled:.2f}x)")

    n = 20000
    t0 = time.perf_counter()
    for _ in range(n):
        with audio_io._decoder_messages():
            pass
    print(f"stderr capture window around an MP3 libsndfile call: {(time.perf_counter() - t0) / n * 1e6:.1f} us")


if __name__ == "__main__":
    main()
