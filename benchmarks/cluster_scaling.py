"""How throughput grows with Ray nodes: the same recipe on a loopback cluster of 1 node and
then 2 nodes (each a separate `ray start` on its own 127.0.0.x address, one CPU each), in
one run, with the ratio. This machine has 2 cores, so 2 one-CPU nodes is as far as a real
measurement goes here; the projection beyond it uses the measured per-node rate and
scaling efficiency, and says so.

    python benchmarks/cluster_scaling.py [--samples 800]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

# A driver joining an explicit address must ask for token auth itself, before Ray loads.
os.environ["RAY_AUTH_MODE"] = "token"
os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)

from engine.demo import generate_demo_corpus  # noqa: E402
from engine.localcluster import LoopbackCluster  # noqa: E402
from engine.recipe import load_recipe  # noqa: E402
from engine.runtime import run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=800)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ss-scale-"))
    try:
        generate_demo_corpus(work / "demo_data")
        recipe_file = work / "recipes" / "demo_in_car.yaml"
        recipe_file.parent.mkdir()
        shutil.copy(REPO / "recipes" / "demo_in_car.yaml", recipe_file)
        overrides = [f"splits.train.samples={args.samples}", "splits.train_dev.samples=1",
                     "splits.train_dev_unseen.samples=1", "output.samples_per_shard=50"]
        results = []
        with LoopbackCluster() as cluster:
            cluster.start_head()
            for nodes in (1, 2):
                if nodes == 2:
                    cluster.add_node("127.0.0.2")
                    time.sleep(2)
                recipe = load_recipe(recipe_file, overrides)
                summary = run(recipe, work / f"out{nodes}", address=cluster.address, progress=False,
                              log=lambda _m: None)
                results.append((nodes, summary.samples, summary.wall_s, summary.seconds_audio, summary.nodes))
        base = results[0][1] / results[0][2]
        print(f"{'nodes':>5} {'used':>5} {'samples':>8} {'wall s':>7} {'samples/s':>10} {'x realtime':>11} {'speed-up':>9}")
        for nodes, samples, wall, audio, used in results:
            print(f"{nodes:>5} {used:>5} {samples:>8} {wall:>7.1f} {samples / wall:>10.1f} "
                  f"{audio / wall:>11.0f} {samples / wall / base:>9.2f}")
        eff = (results[1][1] / results[1][2]) / (2 * base)
        print(f"\nscaling efficiency at 2 nodes: {eff:.2f} (1.00 = linear)")
        # Above 1.0 is measurement noise (a busy machine); never project super-linear growth.
        proj = min(eff, 1.0)
        print(f"projection (per-node rate x nodes x efficiency {proj:.2f}; not measured here):")
        for n in (4, 16, 64):
            print(f"  {n:>3} one-CPU nodes: ~{base * n * proj:,.0f} samples/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
