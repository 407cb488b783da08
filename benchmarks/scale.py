"""Scale shown, not projected: driver memory and driver time per shard as the shard count grows.

Tiny shards (one 0.1 s utterance mixed with noise each) so that the per-shard costs of
the driver, not the synthesis, are what is measured. Every count runs in a fresh
process, so its peak memory (``ru_maxrss``) is its own.

- ``ray`` counts (default 10^3 and 10^4): ``engine.run`` end to end with 2 Ray workers:
  plan, pool index, Ray dispatch, commit (shard, then stats record), run record and the
  coverage report merged as shards finish; then a re-run into the same output (resume:
  every shard trusted by its commit record, nothing to write).
- ``direct`` counts (default 10^5): no Ray. The driver's steps are the ones ``engine.run``
  takes (plan, claim with the run record, pool index, each finished shard's record
  merged into the coverage as it arrives, run record rebuilt, coverage.json); then, each
  in its own process as they are in use, a re-run (claim, one listing and every commit
  record, no shard read back, the run record and coverage.json again) and
  ``shardsmith coverage OUT`` (``load_coverage_stats``: every stats file read again).
  The workers' files are made directly: one real shard by ``make_shard``, then for every
  other shard a copy of its bytes and a commit record with that shard's name and sample
  range (their time is not driver time and is printed apart).

Driver time per shard: the driver's CPU seconds (user + system of this process; Ray's
workers are other processes; for ``direct``, of the driver's steps only), divided by the
shard count: CPU time, not wall time, so that a loaded machine does not blur the figures.

    python benchmarks/scale.py                       # 10^3 and 10^4 via Ray, 10^5 direct
    python benchmarks/scale.py --ray 1000 --direct 10000 100000
    python benchmarks/scale.py --dir /tmp/scale      # keep the outputs
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 16000
UTTERANCE_S = 0.1


def make_corpus(root: Path) -> Path:
    """20 utterances of 0.1 s (FLAC, with a manifest) and 3 noise files of 2 s (WAV)."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    (root / "speech").mkdir(parents=True, exist_ok=True)
    (root / "noise").mkdir(exist_ok=True)
    n = int(SR * UTTERANCE_S)
    t = np.arange(n) / SR
    lines = ["path,text,speaker"]
    for i in range(20):
        x = 0.3 * np.sin(2 * np.pi * (150 + 10 * i) * t) * np.hanning(n) + 0.01 * rng.standard_normal(n)
        sf.write(root / "speech" / f"u{i:02d}.flac", x.astype(np.float32), SR, subtype="PCM_16")
        lines.append(f"u{i:02d}.flac,word{i},s{i % 4}")
    (root / "speech" / "manifest.csv").write_text("\n".join(lines) + "\n")
    for i in range(3):
        x = 0.1 * rng.standard_normal(2 * SR)
        sf.write(root / "noise" / f"n{i}.wav", x.astype(np.float32), SR, subtype="PCM_16")
    return root


def recipe_of(corpus: Path, shards: int):
    from engine.recipe import parse_recipe

    return parse_recipe({
        "name": "scale",
        "seed": 1,
        "output": {"format": "arrow", "samples_per_shard": 1, "audio_codec": "flac"},
        "pools": {"speech": {"manifest": str(corpus / "speech" / "manifest.csv"), "min_duration_s": 0.05},
                  "noise": {"paths": [str(corpus / "noise" / "*.wav")]}},
        "splits": {"train": {"samples": shards}},
        "synth": {"type": "speech_noise_mix", "speech": "speech",
                  "noise": [{"pool": "noise", "snr_db_range": [0, 20]}]},
        "guards": {"pools": {"speech": {"max_reuse_factor": None, "min_effective_sources": None},
                             "noise": {"max_reuse_factor": None, "min_effective_sources": None}}},
    }, base_dir=corpus)


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


# --------------------------------------------------------------------------- one count, in its own process


def one_ray(n: int, corpus: Path, out: Path) -> dict:
    from engine.runtime import run

    recipe = recipe_of(corpus, n)
    t0, c0 = time.perf_counter(), cpu_s()
    # head_start=False: every shard goes through Ray's dispatch, and the driver's CPU is
    # its own work per shard, not shards it would make itself while Ray starts.
    summary = run(recipe, out, workers=2, progress=False, log=lambda m: None, allow_narrow=True,
                  head_start=False)
    wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    assert summary.status == "complete" and summary.shards_written == n, summary.describe()
    assert (out / "coverage.json").is_file()
    t1 = time.perf_counter()
    again = run(recipe, out, workers=2, progress=False, log=lambda m: None, allow_narrow=True)
    rerun = time.perf_counter() - t1
    assert (again.shards_written, again.shards_skipped) == (0, n)
    return {"mode": "ray", "shards": n, "wall_s": wall, "driver_cpu_s": cpu, "shard_phase_s": summary.wall_s,
            "rerun_s": rerun, "peak_mb": peak_mb()}


class Steps:
    """Wall and CPU seconds of named steps of this process (time between ``mark`` calls)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.start()

    def start(self) -> None:
        self._t, self._c = time.perf_counter(), time.process_time()

    def mark(self, name: str) -> None:
        t, c = time.perf_counter(), time.process_time()
        self.wall[name] = self.wall.get(name, 0.0) + t - self._t
        self.cpu[name] = self.cpu.get(name, 0.0) + c - self._c
        self._t, self._c = t, c


def one_direct(n: int, corpus: Path, out: Path) -> dict:
    """The driver's steps of a run, the workers' files made directly (see the module docstring)."""
    from engine.coverage import finish_coverage, new_coverage
    from engine.layout import shard_paths
    from engine.plan import make_plan
    from engine.pools import index_pools
    from engine.resume import slim_record
    from engine.sink import OutputSink
    from engine.storage import write_json
    from engine.worker import make_shard

    recipe = recipe_of(corpus, n)
    steps = Steps()
    plan = make_plan(recipe)
    steps.mark("plan")
    sink = OutputSink(out, recipe, plan)
    sink.take_lease()
    sink.on_write_start(overwrite=False)  # claims OUT: the run record with every planned file
    steps.mark("claim + run record")
    index = index_pools(recipe)
    sink.record_pools(index)
    coverage = new_coverage(sink.store, recipe)
    known = sink.commits()  # as engine.run holds the slim records of the shards that finish
    steps.mark("pools")

    # The workers' files are made directly (their time is not driver time); the driver
    # merges each record as its shard "finishes", as engine.run does with a task's result.
    make_s = 0.0
    t_make = time.perf_counter()
    first = plan.shards[0]
    template = make_shard(recipe, index, first, out)
    shard_bytes = (out / shard_paths(first, "arrow")[0]).read_bytes()
    make_s += time.perf_counter() - t_make
    steps.start()
    for i, spec in enumerate(plan.shards):
        shard_rel, stats_rel = shard_paths(spec, "arrow")
        if i == 0:
            record = template
        else:
            t_make = time.perf_counter()
            sink.store.write_bytes(shard_rel, shard_bytes)
            record = dict(template, shard=spec.name, file=shard_rel.rsplit("/", 1)[-1],
                          start=spec.start, stop=spec.stop)
            write_json(sink.store, stats_rel, record, compact=True)
            make_s += time.perf_counter() - t_make
            steps.start()
        coverage.add_shard(record, spec.split)
        known[stats_rel] = slim_record(record)
        steps.mark("merge records as shards finish")
    run_record = sink.on_write_complete(index.rejects, known)
    assert run_record["status"] == "complete", run_record["status"]
    steps.mark("run record rebuilt")
    report = finish_coverage(coverage, recipe, run_record)
    sink.write_coverage(report)
    steps.mark("coverage.json")
    return {"mode": "direct", "shards": n, "steps": steps.cpu, "driver_s": sum(steps.wall.values()),
            "driver_cpu_s": sum(steps.cpu.values()), "make_files_s": make_s, "peak_mb": peak_mb()}


def one_resume(n: int, corpus: Path, out: Path) -> dict:
    """A re-run's driver steps over the output ``one_direct`` left, as ``engine.run`` takes
    them: the claim (one listing and every commit record, read once: the run record
    rewritten from them and each merged into the coverage of the resumed run as it is
    read; no shard read back), the resume state from the claim's listing, the run record
    and coverage.json again."""
    from engine.coverage import finish_coverage, new_coverage
    from engine.plan import make_plan
    from engine.resume import DONE
    from engine.sink import OutputSink

    recipe = recipe_of(corpus, n)
    written = json.loads((out / "coverage.json").read_text())
    t, c = time.perf_counter(), time.process_time()
    sink = OutputSink(out, recipe, make_plan(recipe))
    seeded = new_coverage(sink.store, recipe)  # the run makes it from the pool index it just made
    start = sink.on_write_start(overwrite=False, fold=lambda spec, record: seeded.add_shard(record, spec.split))
    assert not start.fresh and start.listing is not None
    state = sink.resume_state(start.listing)
    assert state.count(DONE) == n
    known = sink.commits(state)
    del state
    run_record = sink.on_write_complete([], known)
    report = finish_coverage(seeded, recipe, run_record)
    sink.write_coverage(report)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    assert json.loads(json.dumps(report)) == written
    return {"mode": "resume", "shards": n, "wall_s": wall, "cpu_s": cpu, "peak_mb": peak_mb()}


def one_coverage(n: int, corpus: Path, out: Path) -> dict:
    """``shardsmith coverage OUT`` (``load_coverage_stats``: every stats file read again)."""
    from engine.coverage import load_coverage_stats

    written = json.loads((out / "coverage.json").read_text())
    t, c = time.perf_counter(), time.process_time()
    analyzed, _ = load_coverage_stats(out)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    assert json.loads(json.dumps(analyzed)) == written
    return {"mode": "coverage", "shards": n, "wall_s": wall, "cpu_s": cpu, "peak_mb": peak_mb()}


# --------------------------------------------------------------------------- driver of the benchmark


def measure(mode: str, n: int, corpus: Path, work: Path, *, fresh: bool = True) -> dict:
    out = work / f"{'ray' if mode == 'ray' else 'direct'}-{n}"
    if fresh and out.exists():
        shutil.rmtree(out)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    done = subprocess.run([sys.executable, __file__, "--one", mode, str(n), str(corpus), str(out)],
                          env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{mode} {n}: failed\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ray", type=int, nargs="*", default=[1000, 10000], help="shard counts run through Ray")
    ap.add_argument("--direct", type=int, nargs="*", default=[100000], help="shard counts with files made directly")
    ap.add_argument("--dir", help="keep the corpus and outputs here (default: a temporary folder, removed)")
    ap.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        mode, n, corpus, out = args.one
        fn = {"ray": one_ray, "direct": one_direct, "resume": one_resume, "coverage": one_coverage}[mode]
        print(json.dumps(fn(int(n), Path(corpus), Path(out))))
        return
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="scale-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        corpus = make_corpus(work / "corpus")
        if args.ray:
            print("through Ray (engine.run, 2 workers), then a re-run with nothing to write:")
            print(f"{'shards':>7} {'wall s':>8} {'shard phase s':>14} {'driver CPU s':>13} "
                  f"{'driver ms/shard':>16} {'re-run s':>9} {'driver peak MB':>15}")
            for n in args.ray:
                r = measure("ray", n, corpus, work)
                print(f"{n:>7} {r['wall_s']:>8.1f} {r['shard_phase_s']:>14.1f} {r['driver_cpu_s']:>13.1f} "
                      f"{1000 * r['driver_cpu_s'] / n:>16.2f} {r['rerun_s']:>9.1f} {r['peak_mb']:>15.0f}", flush=True)
        if args.direct:
            print("workers' files made directly (no Ray): the driver's steps of a run, then a re-run (resume) "
                  "and `shardsmith coverage`, each in its own process:")
            print(f"{'shards':>7} {'driver CPU s':>13} {'ms/shard':>9} {'peak MB':>8} | {'resume CPU s':>13} "
                  f"{'ms/shard':>9} {'peak MB':>8} | {'coverage CPU s':>15} {'ms/shard':>9} {'peak MB':>8} "
                  f"| {'(files made s)':>14}")
            for n in args.direct:
                r = measure("direct", n, corpus, work)
                again = measure("resume", n, corpus, work, fresh=False)
                cov = measure("coverage", n, corpus, work, fresh=False)
                print(f"{n:>7} {r['driver_cpu_s']:>13.1f} {1000 * r['driver_cpu_s'] / n:>9.3f} {r['peak_mb']:>8.0f} | "
                      f"{again['cpu_s']:>13.1f} {1000 * again['cpu_s'] / n:>9.3f} {again['peak_mb']:>8.0f} | "
                      f"{cov['cpu_s']:>15.1f} {1000 * cov['cpu_s'] / n:>9.3f} {cov['peak_mb']:>8.0f} | "
                      f"{r['make_files_s']:>14.0f}", flush=True)
                print("         driver CPU s by step: " + ", ".join(f"{k} {v:.1f}" for k, v in r["steps"].items()),
                      flush=True)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
