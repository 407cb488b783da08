"""Where one `shardsmith run` spends its wall time, phase by phase, in the driver.

Runs the CLI's own ``main`` in this process with a clock around its phases (nothing in
the engine is changed; its functions are wrapped from outside) and prints a timeline:
the imports, Ray's start (in a thread of its own: meanwhile the pool index, the
forecast, the resume check and the shards the driver makes), each shard as it comes back
(with its time in the driver or its worker), the coverage analysis and Ray's shutdown
(which overlap), and the driver's peak memory. With ``--repeats`` the run is
made again into a fresh folder and the best whole run's timeline is printed.

The recipe is any recipe; ``--peers DATA`` uses ``benchmarks/peers.py``'s simple job over
its data (made there first: ``python benchmarks/peers.py --data DATA``).

    python benchmarks/run_phases.py --peers /tmp/peers-data --workers 1 --repeats 3
    python benchmarks/run_phases.py recipes/demo_in_car.yaml --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _rss_mb() -> int | None:
    """This process's resident memory now (MB; Linux only)."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) // 1024 for line in fh if line.startswith("VmRSS"))
    except (OSError, StopIteration):
        return None


def _body(recipe: str, out: str, workers: int) -> None:
    """One run, in this (fresh) process: prints the timeline as JSON on the last line."""
    t0 = time.perf_counter()
    marks: list[tuple[float, str]] = []

    def mark(what: str) -> None:
        marks.append((time.perf_counter() - t0, what, _rss_mb()))

    sys.path.insert(0, str(ROOT))
    from engine.env import arrow_without_pandas

    arrow_without_pandas()  # as the shardsmith command does first
    import engine.cli as cli
    import engine.runtime as rt

    mark("imports done")

    def around(name: str, label: str) -> None:
        inner = getattr(rt, name)

        def wrapped(*args, **kwargs):
            mark(f"{label} begins")
            try:
                return inner(*args, **kwargs)
            finally:
                mark(f"{label} ends")

        setattr(rt, name, wrapped)

    around("_resume_state", "resume check")
    around("_coverage_report", "coverage analysis")
    start_cls = rt.RayStart

    class TimedStart(start_cls):  # Ray starts in a thread of its own; the driver goes on
        def __init__(self, *args, **kwargs):
            mark("Ray starts (pools indexed meanwhile, then shards made by the driver)")
            super().__init__(*args, **kwargs)

        def _finish(self, ray):
            mark("Ray is up")
            super()._finish(ray)

        def close(self):
            mark("Ray shutdown begins")
            super().close()
            mark("Ray shutdown ends")

    rt.RayStart = TimedStart
    made = rt._made

    def timed_made(*args, **kwargs):
        for k, (spec, record) in enumerate(made(*args, **kwargs), 1):
            where = "by the driver" if record.get("node_id") == "" else "in its worker"
            mark(f"shard {k} back ({record['elapsed_s']:.2f} s {where})")
            yield spec, record

    rt._made = timed_made
    with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):
        code = cli.main(["run", recipe, "--out", out, "--workers", str(workers), "--no-progress"])
    mark("command done")
    hwm = next((int(line.split()[1]) // 1024 for line in open("/proc/self/status")
                if line.startswith("VmHWM")), None) if os.path.exists("/proc/self/status") else None
    print(json.dumps({"code": code, "marks": marks, "driver_peak_mb": hwm}))


def _one(recipe: str, workers: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="run-phases-") as tmp:
        out = str(Path(tmp) / "out")
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--_body", recipe, out, str(workers)],
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"the run failed:\n{proc.stderr[-3000:]}")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    if got["code"] != 0:
        sys.exit(f"shardsmith run exited {got['code']}")
    got["wall"] = wall
    return got


def _print(got: dict) -> None:
    print(f"whole run {got['wall']:.2f} s (process start to exit); driver peak {got['driver_peak_mb']} MB")
    last = 0.0
    print(f"  {'time':>9s}  {'step':>8s}  {'driver RSS':>10s}  phase")
    for t, what, rss in got["marks"]:
        print(f"  {t:7.2f} s  (+{max(t - last, 0.0):5.2f})  {rss:7d} MB  {what}")
        last = t
    marks = {what: t for t, what, _ in got["marks"]}
    shards = [t for t, what, _ in got["marks"] if what.startswith("shard ")]
    up = marks.get("Ray is up", 0.0)
    if shards:
        print(f"  Ray up at {up:.2f} s; first shard back at {shards[0]:.2f} s, last at {shards[-1]:.2f} s; "
              f"after the last shard: {got['wall'] - shards[-1]:.2f} s (process exit included)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe", nargs="?", help="a recipe file (or --peers)")
    ap.add_argument("--peers", type=Path, help="peers.py's data folder: its simple job")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1, help="best whole run of this many")
    ap.add_argument("--_body", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._body:
        recipe, out, workers = args._body
        _body(recipe, out, int(workers))
        return
    recipe = str(args.peers / "peers_simple.yaml") if args.peers else args.recipe
    if not recipe or not Path(recipe).is_file():
        sys.exit("name a recipe file, or --peers DATA after `python benchmarks/peers.py --data DATA`")
    runs = []
    for k in range(args.repeats):
        runs.append(_one(recipe, args.workers))
        print(f"run {k + 1}: {runs[-1]['wall']:.2f} s", flush=True)
    best = min(runs, key=lambda r: r["wall"])
    print(f"\n{recipe}, --workers {args.workers}, best of {len(runs)}:")
    _print(best)


if __name__ == "__main__":
    main()
