"""Peers side by side: the whole `shardsmith run` against a bare loop and audiomentations.

The same two jobs over the same inputs, three ways, in one run (interleaved, best of
``--repeats``); the data is made here (``audio_throughput.make_data``: synthetic voices,
2,000 ten-second 16 kHz FLAC utterances, a one-hour 16 kHz FLAC noise file, and 20
impulse responses written as WAV files; nothing is downloaded):

* **simple**: one noise layer read from the one-hour FLAC at an SNR drawn in 0-20 dB;
* **full**: that layer perturbed (speed 0.9-1.1, a gain sweep of -6..6 dB, a low-pass
  filter at p 0.3, reversal at p 0.2), the speech reverberated by one of the 20 impulse
  responses at p 0.5, the output level drawn in -35..-20 dBFS.

The three ways, each in a fresh process and each writing one FLAC per sample:

1. **bare loop** (simple job only): decode the speech, seek and read a noise segment from
   the open noise file, add it at a fixed gain, encode FLAC; numpy and soundfile only.
2. **audiomentations** in a plain loop: ``AddBackgroundNoise`` (full job: with a
   ``noise_transform`` of ``Resample``, ``GainTransition``, ``LowPassFilter``, ``Reverse``,
   and ``ApplyImpulseResponse`` on the speech; the output level and the peak limit are
   three numpy lines), then the same FLAC encode. audiomentations is the optional
   ``bench`` extra (``pip install -e '.[bench]'``); without it this column is skipped.
3. **`shardsmith run --workers 1`** as a subprocess, end to end: Ray start, pool indexing,
   forecast, shards, commit, coverage, shutdown; its shard phase is the "written in" time
   it prints. Then ``--workers 2`` against 1 (whole run and shard phase).

Peak memory: VmHWM of the loop processes; for shardsmith the driver's VmHWM (reported by
the driver itself as it exits) and the sum of the VmHWM of every process below it (Ray's
GCS, raylet, workers ...), read from /proc every 0.2 s while the run goes on.

    python benchmarks/peers.py                       # 2,000 samples, best of 3
    python benchmarks/peers.py --samples 500 --repeats 1 --data /tmp/peers-data   # a quick look
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import yaml  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from audio_throughput import FLOOR_SNR_GAIN, NOISE_FILE, SR, _peak_rss_mb, make_data, recipe_data  # noqa: E402

RIRS = 20
SNR = (0.0, 20.0)
LEVEL = (-35.0, -20.0)
INSTALL_HINT = ("audiomentations is not installed: `pip install -e '.[bench]'` (in a separate environment: "
                "python3 -m venv .venv-bench && .venv-bench/bin/pip install -c requirements.lock "
                "-e '.[bench]', then run this script with .venv-bench/bin/python)")


# --------------------------------------------------------------------------- data


def make_rirs(folder: Path) -> None:
    """20 impulse responses (exponentially decaying noise, RT60 0.2-0.8 s) as WAV files."""
    rirs = folder / "rirs"
    if len(list(rirs.glob("*.wav"))) == RIRS:
        return
    rirs.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(RIRS):
        rt60 = rng.uniform(0.2, 0.8)
        n = int(rt60 * SR)
        t = np.arange(n) / SR
        h = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
        h[0] = 1.0
        sf.write(rirs / f"rir-{i:02d}.wav", (h / np.max(np.abs(h)) * 0.9).astype(np.float32), SR, subtype="PCM_16")


def recipe(folder: Path, samples: int, full: bool) -> Path:
    # The simple job is audio_throughput's recipe (one noise layer at 0-20 dB, four shards);
    # the full job adds the perturbation, reverb and level the peers' loop applies.
    data = recipe_data(folder, samples, full=False)
    data["name"] = "peers_full" if full else "peers_simple"
    if full:
        data["pools"]["rirs"] = {"paths": [str(folder / "rirs" / "*.wav")]}
        data["synth"]["noise"][0]["perturb"] = {
            "speed_range": [0.9, 1.1], "gain_db_range": [-6, 6],
            "filter": {"p": 0.3, "types": ["lowpass"]}, "reverse_p": 0.2}
        data["synth"]["reverb"] = {"pool": "rirs", "p": 0.5}
        data["synth"]["level_dbfs_range"] = list(LEVEL)
    path = folder / ("peers_full.yaml" if full else "peers_simple.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def speech_paths(folder: Path, samples: int) -> list[Path]:
    with open(folder / "speech" / "manifest.csv", newline="") as fh:
        paths = [folder / "speech" / r["path"] for r in csv.DictReader(fh)]
    return [paths[i % len(paths)] for i in range(samples)]


# --------------------------------------------------------------------------- loop bodies


def _encode_to(out: Path, i: int, y: np.ndarray) -> None:
    buf = io.BytesIO()
    sf.write(buf, y, SR, format="FLAC", subtype="PCM_16")
    (out / f"{i:06d}.flac").write_bytes(buf.getvalue())


def body_bare(folder: Path, samples: int, out: Path) -> dict:
    """decode speech -> seek-read a noise segment -> add -> encode FLAC -> write the file."""
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with sf.SoundFile(folder / "noise" / NOISE_FILE) as noise:
        for i, p in enumerate(speech_paths(folder, samples)):
            x, _ = sf.read(p, dtype="float32")
            noise.seek(int(rng.integers(0, noise.frames - len(x))))
            y = noise.read(len(x), dtype="float32")
            _encode_to(out, i, x + np.float32(FLOOR_SNR_GAIN) * y)
    return {"elapsed": time.perf_counter() - t0, "peak_rss_mb": _peak_rss_mb()}


def body_audiomentations(folder: Path, samples: int, out: Path, full: bool) -> dict:
    """The same job with audiomentations 0.43 in a plain loop (imports timed too)."""
    t0 = time.perf_counter()
    from audiomentations import (AddBackgroundNoise, ApplyImpulseResponse, Compose, GainTransition,
                                 LowPassFilter, Resample, Reverse)

    out.mkdir(parents=True, exist_ok=True)
    noise_dir = str(folder / "noise")
    rng = np.random.default_rng(0)
    if full:
        noise_transform = Compose([
            # speed 0.9-1.1: resampled to 16 kHz / speed, then played at 16 kHz
            Resample(min_sample_rate=int(SR / 1.1), max_sample_rate=int(SR / 0.9), p=1.0),
            GainTransition(min_gain_db=-6.0, max_gain_db=6.0, p=1.0),
            LowPassFilter(min_cutoff_freq=1000.0, max_cutoff_freq=4000.0, p=0.3),
            Reverse(p=0.2),
        ])
        reverb = ApplyImpulseResponse(ir_path=str(folder / "rirs"), p=0.5, leave_length_unchanged=True)
        add = AddBackgroundNoise(sounds_path=noise_dir, min_snr_db=SNR[0], max_snr_db=SNR[1],
                                 noise_transform=noise_transform, p=1.0)
    else:
        add = AddBackgroundNoise(sounds_path=noise_dir, min_snr_db=SNR[0], max_snr_db=SNR[1], p=1.0)
    for i, p in enumerate(speech_paths(folder, samples)):
        x, _ = sf.read(p, dtype="float32")
        if full:
            x = reverb(samples=x, sample_rate=SR)
        y = add(samples=x, sample_rate=SR)
        if full:  # the output level (RMS, dBFS), then a peak limit at -1 dBFS
            rms = float(np.sqrt(np.mean(np.square(y), dtype=np.float64))) or 1.0
            y = y * np.float32(10 ** (rng.uniform(*LEVEL) / 20) / rms)
            peak = float(np.max(np.abs(y)))
            if peak > 0.891:
                y = y * np.float32(0.891 / peak)
        _encode_to(out, i, y)
    return {"elapsed": time.perf_counter() - t0, "peak_rss_mb": _peak_rss_mb()}


def in_fresh_process(python: str, *args: str) -> dict:
    proc = subprocess.run([python, __file__, "--_body", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark body failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def has_audiomentations(python: str) -> bool:
    return subprocess.run([python, "-c", "import audiomentations"], capture_output=True).returncode == 0


# --------------------------------------------------------------------------- shardsmith run


def _tree(root: int) -> dict[int, int]:
    """VmHWM (KiB) of ``root`` and every process below it."""
    parents, hwm = {}, {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            status = (d / "status").read_text()
        except OSError:
            continue
        pid = int(d.name)
        for line in status.splitlines():
            if line.startswith("PPid:"):
                parents[pid] = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm[pid] = int(line.split()[1])
    found = {}
    for pid in hwm:
        p, hops = pid, 0
        while p and hops < 50:
            if p == root:
                found[pid] = hwm[pid]
                break
            p, hops = parents.get(p, 0), hops + 1
    return found


# `shardsmith run` as engine.cli.run_cli does it, then the process's own VmHWM on the last
# line: polling /proc from outside can miss a peak in the last moments of the run.
CLI_REPORTING_PEAK = """
import atexit, os, sys
from engine.cli import main
from engine.env import arrow_without_pandas
arrow_without_pandas()
code = main(sys.argv[1:])
atexit._run_exitfuncs()
hwm = [line for line in open('/proc/self/status') if line.startswith('VmHWM:')][0].split()[1]
sys.stdout.write(f'\\nVmHWM {hwm} kB\\n')
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
"""


def shardsmith_run(recipe_path: Path, out: Path, workers: int) -> dict:
    """`shardsmith run RECIPE --out OUT --workers N` as a subprocess, timed from spawn to exit."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-c", CLI_REPORTING_PEAK,
           "run", str(recipe_path), "--out", str(out), "--workers", str(workers), "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    peaks: dict[int, int] = {}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for pid, kb in _tree(proc.pid).items():
                peaks[pid] = max(peaks.get(pid, 0), kb)
            done.wait(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, stderr = proc.communicate()
    elapsed = time.perf_counter() - t0
    done.set()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"shardsmith run failed ({proc.returncode}):\n{stdout[-2000:]}\n{stderr[-3000:]}")
    m = re.search(r"written in ([0-9.]+) s", stdout)
    shutil.rmtree(out, ignore_errors=True)
    own = re.search(r"VmHWM ([0-9]+) kB", stdout)
    driver = max(peaks.pop(proc.pid, 0), int(own.group(1)) if own else 0) / 1024.0
    return {"elapsed": elapsed, "shard_phase": float(m.group(1)) if m else float("nan"),
            "peak_rss_mb": driver, "ray_rss_mb": sum(peaks.values()) / 1024.0, "stderr": stderr}


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=2000, help="ten-second utterances per job (default 2000)")
    ap.add_argument("--utterances", type=int, default=2000, help="distinct utterances made (default 2000)")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many interleaved runs")
    ap.add_argument("--data", type=Path, help="keep the generated data here (reused when present)")
    ap.add_argument("--jobs", default="simple,full", help="simple, full or both (default)")
    ap.add_argument("--peer-python", default=sys.executable,
                    help="the interpreter with audiomentations (default: this one)")
    ap.add_argument("--no-two", action="store_true", help="skip --workers 2")
    ap.add_argument("--log", action="store_true", help="print shardsmith's own log of its last run")
    ap.add_argument("--_body", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._body:
        kind, folder, samples, out = args._body
        if kind == "bare":
            res = body_bare(Path(folder), int(samples), Path(out))
        else:
            res = body_audiomentations(Path(folder), int(samples), Path(out), full=kind == "am-full")
        shutil.rmtree(out, ignore_errors=True)
        print(json.dumps(res))
        return 0

    jobs = [j for j in ("simple", "full") if j in args.jobs.split(",")]
    peer = has_audiomentations(args.peer_python)
    if not peer:
        print(INSTALL_HINT + "; its column is skipped")
    tmp = None
    if args.data:
        folder = args.data.resolve()
        folder.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="shardsmith-peers-")
        folder = Path(tmp)
    try:
        t0 = time.perf_counter()
        make_data(folder, args.utterances, 3600.0)
        make_rirs(folder)
        print(f"data: {args.utterances} x 10 s FLAC utterances at {SR} Hz, a one-hour FLAC noise file, {RIRS} "
              f"impulse responses in {folder} (ready in {time.perf_counter() - t0:.0f} s); {os.cpu_count()} CPUs")
        recipes = {job: recipe(folder, args.samples, job == "full") for job in jobs}
        results: dict[tuple[str, str], list[dict]] = {}
        loads = [os.getloadavg()[0]]
        for r in range(args.repeats):
            for job in jobs:
                out = folder / "out"
                if job == "simple":
                    results.setdefault((job, "bare"), []).append(
                        in_fresh_process(sys.executable, "bare", str(folder), str(args.samples), str(out)))
                if peer:
                    kind = "am-full" if job == "full" else "am-simple"
                    results.setdefault((job, "am"), []).append(
                        in_fresh_process(args.peer_python, kind, str(folder), str(args.samples), str(out)))
                results.setdefault((job, "w1"), []).append(shardsmith_run(recipes[job], out, 1))
                if not args.no_two:
                    results.setdefault((job, "w2"), []).append(shardsmith_run(recipes[job], out, 2))
                loads.append(os.getloadavg()[0])
                print(f"  round {r + 1}: {job}: " + ", ".join(
                    f"{way} {runs[-1]['elapsed']:.1f} s" for (j, way), runs in results.items() if j == job),
                    flush=True)
        report(results, jobs, peer, args, loads)
        if args.log:
            print("\nshardsmith's log of its last run:\n" + results[(jobs[-1], "w1")][-1]["stderr"])
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def report(results: dict, jobs: list[str], peer: bool, args: argparse.Namespace, loads: list[float]) -> None:
    def best(job: str, way: str, key: str = "elapsed") -> dict | None:
        runs = results.get((job, way))
        return min(runs, key=lambda r: r[key]) if runs else None

    print(f"\n{args.samples} x 10 s samples, best of {args.repeats} interleaved runs (seconds, wall clock); "
          f"1-minute load average {min(loads):.1f}..{max(loads):.1f}:")
    print(f"  {'job':7s} {'bare loop':>10s} {'audiomentations':>16s} {'shardsmith run -w1':>19s} "
          f"{'shard phase':>12s} {'run / bare':>11s} {'run / audiom.':>14s} {'phase / audiom.':>16s}")
    bare_s = best("simple", "bare")["elapsed"] if ("simple", "bare") in results else None
    for job in jobs:
        am = best(job, "am")
        w1, phase = best(job, "w1"), best(job, "w1", "shard_phase")
        b = bare_s if job == "simple" else None

        def ratio(ref: float | None, t: float) -> str:  # > 1: shardsmith is faster
            return f"{ref / t:.2f}x" if ref else "-"

        am_s = f"{am['elapsed']:.1f}" if am else "-"
        print(f"  {job:7s} {f'{b:.1f}' if b else '-':>10s} {am_s:>16s} "
              f"{w1['elapsed']:19.1f} {phase['shard_phase']:12.1f} {ratio(b, w1['elapsed']):>11s} "
              f"{ratio(am and am['elapsed'], w1['elapsed']):>14s} "
              f"{ratio(am and am['elapsed'], phase['shard_phase']):>16s}")
    print("  (ratios: the other's seconds / shardsmith's, above 1 = shardsmith faster)")
    if not args.no_two:
        for job in jobs:
            w1, w2 = best(job, "w1"), best(job, "w2")
            p1, p2 = best(job, "w1", "shard_phase"), best(job, "w2", "shard_phase")
            print(f"  {job}: --workers 2 {w2['elapsed']:.1f} s, over 1: {w1['elapsed'] / w2['elapsed']:.2f}x whole "
                  f"run, {p1['shard_phase'] / p2['shard_phase']:.2f}x shard phase ({p2['shard_phase']:.1f} s)")
    print("\npeak memory (MB, highest over the runs; VmHWM):")
    for job in jobs:
        parts = []
        if job == "simple" and ("simple", "bare") in results:
            parts.append(f"bare loop {max(r['peak_rss_mb'] for r in results[(job, 'bare')]):.0f}")
        if peer:
            parts.append(f"audiomentations {max(r['peak_rss_mb'] for r in results[(job, 'am')]):.0f}")
        w1 = results[(job, "w1")]
        parts.append(f"shardsmith -w1 driver {max(r['peak_rss_mb'] for r in w1):.0f} + Ray processes "
                     f"{max(r['ray_rss_mb'] for r in w1):.0f} (sum)")
        print(f"  {job}: " + ", ".join(parts))


if __name__ == "__main__":
    raise SystemExit(main())
