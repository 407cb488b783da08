"""How planning scales: time and driver memory to plan 10^5 .. 10^7 samples.

The driver holds only the plan (a few numbers per split: each shard's ShardSpec is made
when it is asked for) and, while running, a compact commit record per finished shard
(about 60 bytes); it never holds samples. This prints, for each size, the
planning time and the peak Python memory (tracemalloc), and the ratio to the smallest.

    python benchmarks/plan_scale.py
"""

from __future__ import annotations

import time
import tracemalloc

from engine.plan import make_plan
from engine.recipe import parse_recipe


def recipe(samples: int, per_shard: int):
    return parse_recipe(
        {
            "name": "scale",
            "seed": 1,
            "output": {"samples_per_shard": per_shard},
            "pools": {"speech": {"paths": ["s/*.flac"]}, "noise": {"paths": ["n/*.wav"], "holdout": 0.1}},
            "splits": {
                "train": {"samples": samples},
                "train_dev": {"samples": max(1, samples // 50)},
                "train_dev_unseen": {"samples": max(1, samples // 50), "holdout": True},
            },
            "synth": {"type": "speech_noise_mix", "speech": "speech",
                      "noise": [{"pool": "noise", "snr_db_range": [0, 20]}]},
        }
    )


def main() -> None:
    rows = []
    for samples in (10**5, 10**6, 10**7):
        r = recipe(samples, 1000)
        tracemalloc.start()
        t0 = time.perf_counter()
        plan = make_plan(r)
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rows.append((samples, len(plan.shards), elapsed, peak / 2**20))
    base_t, base_m = rows[0][2], rows[0][3]
    print(f"{'samples':>12} {'shards':>8} {'plan s':>9} {'peak MiB':>9} {'time x':>8} {'mem x':>7}")
    for samples, shards, t, m in rows:
        print(f"{samples:>12,} {shards:>8,} {t:>9.3f} {m:>9.2f} {t / base_t:>8.1f} {m / base_m:>7.1f}")


if __name__ == "__main__":
    main()
