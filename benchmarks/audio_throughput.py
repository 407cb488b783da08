"""Audio throughput: shardsmith's speech_noise_mix against the codec floor.

The data is made here, in a temporary folder (nothing is downloaded): 2,000 ten-second
16 kHz FLAC utterances (the demo corpus's synthetic voices, concatenated per speaker,
with a transcript and a speaker column) and a one-hour 16 kHz FLAC noise file (demo car,
road and wind noise in 30 s stretches at varying levels). Measured in one run:

1. **codec floor**: a minimal loop over the same utterances -- decode the speech FLAC,
   read a noise segment of the same length from the one-hour file (seek + read on an
   open handle), add them at a fixed gain, encode FLAC -- in a fresh process.
2. **shardsmith per worker**: the body of every shard task
   (:func:`engine.worker.make_shard`: draw params, read, mix at an exact SNR, peak
   control, FLAC encode, embedding, params JSON, Arrow writer, coverage stats), in a
   fresh process, no Ray. Realtime factor = seconds of audio / seconds of wall time;
   the engine/floor ratio compares the two. Targets: >= 1000x realtime, >= 0.75 of the
   floor. The same is shown for a "full" recipe (speed/filter/reverse/sweep perturbation,
   two layers at shares of a total SNR, events, synthetic reverb, output level) for
   reference.
3. **1 vs 2 workers** through ``engine.runtime.run`` on a private local Ray instance: the
   shard phase (``RunSummary.wall_s``; Ray start-up and pool indexing excluded).
   Target: 2 workers >= 1.7x one (needs two idle cores).
4. **peak resident memory per worker**: ``ru_maxrss`` of the fresh worker process, and
   ``VmHWM`` of each Ray worker process after the run. Target: < 400 MB with the
   one-hour noise file.

Each timing is the best of ``--repeats`` runs (engine and floor interleaved), the least
disturbed by other load on the machine.

    python benchmarks/audio_throughput.py            # 2,000 x 10 s, one-hour noise
    python benchmarks/audio_throughput.py --quick    # 200 x 10 s, ten-minute noise
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SR = 16000
UTTERANCE_S = 10.0
NOISE_BLOCK_S = 30.0
FLOOR_SNR_GAIN = 0.3
NOISE_FILE = "long_noise.flac"


# --------------------------------------------------------------------------- data


def make_data(folder: Path, utterances: int, noise_s: float) -> None:
    """Write the speech pool (FLAC + manifest.csv) and one long FLAC noise file."""
    from engine.audio import ops
    from engine.demo import generate_demo_corpus

    marker = folder / "ready.json"
    want = {"utterances": utterances, "noise_s": noise_s, "version": 2}
    if marker.exists() and json.loads(marker.read_text()) == want:
        return
    demo = folder / "demo"
    generate_demo_corpus(demo)
    rng = np.random.default_rng(0)

    clips: dict[str, list[tuple[np.ndarray, str]]] = {}
    with open(demo / "speech" / "manifest.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            x, sr = sf.read(demo / "speech" / row["path"], dtype="float32")
            clips.setdefault(row["speaker"], []).append((x if sr == SR else ops.resample(x, sr, SR), row["text"]))
    speakers = sorted(clips)
    n = int(UTTERANCE_S * SR)
    speech = folder / "speech"
    speech.mkdir(parents=True, exist_ok=True)
    rows = []
    for u in range(utterances):
        spk = speakers[u % len(speakers)]
        parts, words, total = [], [], 0
        while total < n:
            x, word = clips[spk][int(rng.integers(len(clips[spk])))]
            gap = np.zeros(int(rng.uniform(0.05, 0.3) * SR), dtype=np.float32)
            parts += [x, gap]
            words.append(word)
            total += len(x) + len(gap)
        y = np.concatenate(parts)[:n] * np.float32(10 ** (rng.uniform(-6, 3) / 20))
        name = f"{spk}/utt-{u:05d}.flac"
        (speech / spk).mkdir(exist_ok=True)
        sf.write(speech / name, np.clip(y, -1, 1), SR, format="FLAC", subtype="PCM_16")
        rows.append((name, " ".join(words), spk))
    with open(speech / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "text", "speaker"])
        w.writerows(rows)

    sources = []
    for kind in ("car", "road", "wind"):
        for p in sorted((demo / "noise" / kind).glob("*.wav")):
            x, sr = sf.read(p, dtype="float32", always_2d=True)
            sources.append(ops.resample(ops.downmix(x), sr, SR))
    shutil.rmtree(folder / "noise", ignore_errors=True)
    (folder / "noise").mkdir()
    block = int(NOISE_BLOCK_S * SR)
    with sf.SoundFile(folder / "noise" / NOISE_FILE, "w", SR, 1, format="FLAC", subtype="PCM_16") as f:
        for _ in range(int(np.ceil(noise_s / NOISE_BLOCK_S))):
            src = sources[int(rng.integers(len(sources)))]
            y = ops.loop_to_length(src, block, start=int(rng.integers(len(src))), crossfade=800)
            f.write(np.clip(y * np.float32(10 ** (rng.uniform(-10, 0) / 20)), -1, 1))
    shutil.rmtree(demo / "images", ignore_errors=True)
    marker.write_text(json.dumps(want))


def recipe_data(folder: Path, samples: int, full: bool) -> dict:
    """The benchmark recipe: one noise layer (or, with ``full``, everything); four shards,
    so that two workers get the same work."""
    per_shard = max(1, samples // 4)
    data = {
        "name": "bench_full" if full else "bench",
        "seed": 1,
        "output": {"format": "arrow", "samples_per_shard": per_shard, "audio_codec": "flac"},
        "pools": {
            "speech": {"manifest": str(folder / "speech" / "manifest.csv")},
            "noise": {"paths": [str(folder / "noise" / "*.flac")]},
        },
        "splits": {"train": {"samples": samples}},
        "synth": {
            "type": "speech_noise_mix",
            "speech": "speech",
            "sample_rate": SR,
            "noise": [{"pool": "noise", "snr_db_range": [0, 20]}],
        },
        "guards": {"max_reuse_factor": None},
    }
    if full:
        data["pools"]["hum"] = {"kind": "noise_generator", "count": 4, "duration_s": 30}
        data["pools"]["clatter"] = {"paths": [str(folder / "demo" / "noise" / "clatter" / "*.wav")]}
        data["pools"]["rooms"] = {"kind": "rir_generator", "count": 50, "rt60_s_range": [0.2, 0.8]}
        data["synth"].update(
            total_snr_db_range=[0, 20],
            noise=[
                {"pool": "noise", "share": 3, "perturb": {
                    "speed_range": [0.9, 1.1], "gain_db_range": [-6, 6], "filter": {"p": 0.3}, "reverse_p": 0.2}},
                {"pool": "hum", "share": 1, "p": 0.5},
            ],
            events=[{"pool": "clatter", "p": 0.5, "count_range": [1, 2], "snr_db_range": [0, 15]}],
            reverb={"pool": "rooms", "p": 0.5},
            level_dbfs_range=[-35, -20],
        )
    return data


def write_recipe(folder: Path, samples: int, full: bool) -> Path:
    path = folder / ("full.yaml" if full else "recipe.yaml")
    path.write_text(yaml.safe_dump(recipe_data(folder, samples, full), sort_keys=False))
    return path


# --------------------------------------------------------------------------- measured bodies


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would include the parent's
    peak inherited at fork)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def body_floor(folder: Path, samples: int) -> dict:
    """decode speech -> read a noise segment -> add -> encode -> append the bytes to a
    file; nothing else. The process's allocator is tuned as a worker's is."""
    import io as _io

    from engine.worker import tune_allocator

    tune_allocator()
    with open(folder / "speech" / "manifest.csv", newline="") as fh:
        paths = [folder / "speech" / r["path"] for r in csv.DictReader(fh)]
    rng = np.random.default_rng(0)
    noise = sf.SoundFile(folder / "noise" / NOISE_FILE)
    out = open(folder / "floor-output.bin", "wb")  # the encoded bytes go to disk, as a shard's do

    def loop(items: list[Path]) -> float:
        seconds = 0.0
        for p in items:
            x, _ = sf.read(p, dtype="float32")
            noise.seek(int(rng.integers(0, noise.frames - len(x))))
            y = noise.read(len(x), dtype="float32")
            mix = x + np.float32(FLOOR_SNR_GAIN) * y
            buf = _io.BytesIO()
            sf.write(buf, mix, SR, format="FLAC", subtype="PCM_16")
            out.write(buf.getvalue())
            seconds += len(x) / SR
        return seconds

    loop(paths[-20:])  # warm-up, not timed
    wall, cpu = _clocks()
    seconds = loop([paths[i % len(paths)] for i in range(samples)])
    out.close()
    wall2, cpu2 = _clocks()
    noise.close()
    (folder / "floor-output.bin").unlink()
    return {"seconds": seconds, "elapsed": wall2 - wall, "cpu": cpu2 - cpu, "peak_rss_mb": _peak_rss_mb()}


def body_engine(recipe_path: Path, out: Path) -> dict:
    """Every shard of the recipe through engine.worker.make_shard in this process, after
    one untimed warm-up shard (a worker's one-time start-up is not per-sample work)."""
    from engine.plan import make_plan
    from engine.pools import index_pools
    from engine.recipe import load_recipe
    from engine.worker import make_shard

    recipe = load_recipe(recipe_path)
    index = index_pools(recipe)
    plan = make_plan(recipe)
    make_shard(recipe, index, plan.shards[-1], out / "warm-up")
    seconds = 0.0
    wall, cpu = _clocks()
    for spec in plan.shards:
        seconds += make_shard(recipe, index, spec, out)["stats"]["seconds"]
    wall2, cpu2 = _clocks()
    return {"seconds": seconds, "elapsed": wall2 - wall, "cpu": cpu2 - cpu, "peak_rss_mb": _peak_rss_mb()}


def in_fresh_process(*args: str) -> dict:
    """Run one measured body in a new interpreter (clean memory figures)."""
    proc = subprocess.run([sys.executable, __file__, "--_body", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark body failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- Ray


def _ray_worker_peaks() -> list[float]:
    """VmHWM (peak RSS, MB) of the Ray worker processes below this process."""
    me = os.getpid()
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            status = (d / "status").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        parents[int(d.name)] = int(fields.get("PPid", "0").strip())
        names[int(d.name)] = cmd + "|" + fields.get("VmHWM", "0 kB").strip()

    def below_me(pid: int) -> bool:
        seen = 0
        while pid and seen < 50:
            if pid == me:
                return True
            pid = parents.get(pid, 0)
            seen += 1
        return False

    peaks = []
    for pid, text in names.items():
        cmd, hwm = text.rsplit("|", 1)
        if ("default_worker" in cmd or cmd.startswith("ray::")) and below_me(pid):
            peaks.append(int(hwm.split()[0]) / 1024.0)
    return sorted(peaks, reverse=True)


def ray_run(recipe_path: Path, out: Path, workers: int) -> dict:
    """The shard phase of engine.runtime.run with ``workers`` workers, after a small
    untimed run that starts and warms the same worker processes."""
    from engine.recipe import load_recipe
    from engine.runtime import ray_session, run

    kwargs = {"workers": workers, "progress": False, "log": lambda msg: None}
    if "allow_narrow" in inspect.signature(run).parameters:
        kwargs["allow_narrow"] = True
    with ray_session(None, workers):
        warm = load_recipe(recipe_path, [f"splits.train.samples={4 * workers}", "output.samples_per_shard=4"])
        run(warm, out.with_name(out.name + "-warm-up"), **kwargs)
        summary = run(load_recipe(recipe_path), out, **kwargs)
        peaks = _ray_worker_peaks()
    shutil.rmtree(out.with_name(out.name + "-warm-up"), ignore_errors=True)
    return {"seconds": summary.seconds_audio, "elapsed": summary.wall_s, "worker_peaks_mb": peaks[:workers],
            "status": summary.status}


# --------------------------------------------------------------------------- main


def _rtf(r: dict) -> float:
    """Seconds of audio per second of wall time."""
    return r["seconds"] / r["elapsed"]


def _rtf_cpu(r: dict) -> float:
    """Seconds of audio per CPU second of the process (insensitive to other load)."""
    return r["seconds"] / r["cpu"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="200 utterances and a ten-minute noise file")
    ap.add_argument("--samples", type=int, help="utterances (default 2000, --quick 200)")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many runs per timing")
    ap.add_argument("--data", type=Path, help="keep the generated data here (reused when present)")
    ap.add_argument("--no-ray", action="store_true", help="skip the 1 vs 2 workers runs")
    ap.add_argument("--no-full", action="store_true", help="skip the full-recipe reference figure")
    ap.add_argument("--ray-only", action="store_true", help="only the 1 vs 2 workers runs")
    ap.add_argument("--_body", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._body:
        kind, *rest = args._body
        if kind == "floor":
            result = body_floor(Path(rest[0]), int(rest[1]))
        else:
            result = body_engine(Path(rest[0]), Path(rest[1]))
        print(json.dumps(result))
        return 0

    samples = args.samples or (200 if args.quick else 2000)
    noise_s = 600.0 if args.quick else 3600.0
    tmp = None
    if args.data:
        folder = args.data.resolve()
        folder.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="shardsmith-audio-bench-")
        folder = Path(tmp)
    try:
        t0 = time.perf_counter()
        make_data(folder, max(samples, 1), noise_s)
        print(f"data: {samples} x {UTTERANCE_S:g} s FLAC utterances at {SR} Hz, a {noise_s / 60:g}-minute FLAC "
              f"noise file ({(folder / 'noise' / NOISE_FILE).stat().st_size / 2**20:.0f} MB) in {folder} "
              f"(made in {time.perf_counter() - t0:.0f} s)")
        recipe = write_recipe(folder, samples, full=False)
        full = write_recipe(folder, samples, full=True)

        floors, engines, fulls = [], [], []
        for r in range(0 if args.ray_only else args.repeats):
            floors.append(in_fresh_process("floor", str(folder), str(samples)))
            out = folder / f"out-engine-{r}"
            shutil.rmtree(out, ignore_errors=True)
            engines.append(in_fresh_process("engine", str(recipe), str(out)))
            shutil.rmtree(out, ignore_errors=True)
        if not (args.no_full or args.ray_only):
            out = folder / "out-full"
            shutil.rmtree(out, ignore_errors=True)
            fulls.append(in_fresh_process("engine", str(full), str(out)))
            shutil.rmtree(out, ignore_errors=True)
        if not args.ray_only:
            print_per_worker(folder, samples, args.repeats, floors, engines, fulls)
        if not args.no_ray:
            print_ray(folder, recipe, args.repeats)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def print_per_worker(folder: Path, samples: int, repeats: int, floors: list, engines: list, fulls: list) -> None:
    floor, engine = max(floors, key=_rtf), max(engines, key=_rtf)
    floor_cpu, engine_cpu = max(floors, key=_rtf_cpu), max(engines, key=_rtf_cpu)
    audio_h = engine["seconds"] / 3600
    shard = recipe_data(folder, samples, False)["output"]["samples_per_shard"]
    print(f"\nper worker (one process, no Ray; {audio_h:.2f} h of audio, shards of {shard}; best of "
          f"{repeats}), realtime factor by wall clock and by the process's CPU time:")
    print(f"  {'':48s} {'wall':>8s} {'CPU':>8s}")
    print(f"  {'codec floor (decode, read noise, add, encode)':48s} {_rtf(floor):7.0f}x {_rtf_cpu(floor_cpu):7.0f}x"
          f"   all runs (wall): {', '.join(f'{_rtf(r):.0f}x' for r in floors)}")
    print(f"  {'shardsmith make_shard':48s} {_rtf(engine):7.0f}x {_rtf_cpu(engine_cpu):7.0f}x"
          f"   all runs (wall): {', '.join(f'{_rtf(r):.0f}x' for r in engines)}")
    ratio, ratio_cpu = _rtf(engine) / _rtf(floor), _rtf_cpu(engine_cpu) / _rtf_cpu(floor_cpu)
    print(f"  {'engine / floor (target >= 0.75)':48s} {ratio:8.2f} {ratio_cpu:8.2f}")
    print(f"  target >= 1000x realtime per worker: wall {'met' if _rtf(engine) >= 1000 else 'NOT met'}, "
          f"CPU {'met' if _rtf_cpu(engine_cpu) >= 1000 else 'NOT met'}")
    if fulls:
        print(f"  {'full recipe (perturb, shares, events, reverb, level)':48s} {_rtf(fulls[0]):7.0f}x "
              f"{_rtf_cpu(fulls[0]):7.0f}x   (reference, no target)")
    print(f"  peak RSS: engine worker process {engine['peak_rss_mb']:.0f} MB, floor process "
          f"{floor['peak_rss_mb']:.0f} MB" + (f", full recipe {fulls[0]['peak_rss_mb']:.0f} MB" if fulls else "")
          + "  (target < 400 MB)")


def print_ray(folder: Path, recipe: Path, repeats: int) -> None:
    runs = {}
    loads = [os.getloadavg()[0]]
    for workers in (1, 2):
        best = None
        for r in range(repeats):
            out = folder / f"out-ray-{workers}-{r}"
            shutil.rmtree(out, ignore_errors=True)
            res = ray_run(recipe, out, workers)
            shutil.rmtree(out, ignore_errors=True)
            loads.append(os.getloadavg()[0])
            if best is None or _rtf(res) > _rtf(best):
                best = res
        runs[workers] = best
    one, two = runs[1], runs[2]
    print(f"\nengine.runtime.run on local Ray (shard phase, after a warm-up run), best of {repeats}:")
    for w, res in runs.items():
        print(f"  {w} worker{'s' if w > 1 else ' '} {_rtf(res):8.0f}x realtime ({res['elapsed']:.1f} s), "
              f"peak RSS per Ray worker: {', '.join(f'{m:.0f} MB' for m in res['worker_peaks_mb']) or 'n/a'}")
    print(f"  scaling 2 / 1 workers {_rtf(two) / _rtf(one):.2f}x  (target >= 1.7x; needs {2} idle cores: "
          f"{os.cpu_count()} CPUs here, 1-minute load average {min(loads):.1f}..{max(loads):.1f} during the runs)")


if __name__ == "__main__":
    raise SystemExit(main())
