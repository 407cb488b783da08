"""How long and how much memory the coverage analyzer needs for 1,000 shards' stats.

Writes a synthetic run folder (run.json, pool_index.parquet and N shard
``.stats.json`` files of realistic size: 1,000 rows per shard from a 100,000-utterance
speech pool and two noise pools of 5,000 and 2,000 long files, two SNR parameters and a
66-dim embedding), then times :func:`engine.coverage.load_coverage_stats` on 100 and on
1,000 shards and reports its peak memory (tracemalloc, which sees numpy buffers). The
baseline measured in the same run is the floor any analyzer pays: reading and parsing
the same stats files with ``json.loads``.

    python benchmarks/coverage_scale.py [--shards 1000] [--rows 1000] [--dir /tmp/x]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.coverage import load_coverage_stats
from engine.layout import POOL_INDEX_FILE, RUN_RECORD_FILE, STATS_SUFFIX
from engine.recipe import parse_recipe, recipe_hash, recipe_to_dict
from engine.stats import ShardStats, StatsContext, keep_threshold

SPEECH_ITEMS = 100_000
NOISE_ITEMS = {"cabin": 5_000, "weather": 2_000}


def make_recipe(total: int, per_shard: int):
    return parse_recipe({
        "name": "bench",
        "seed": 1,
        "output": {"samples_per_shard": per_shard},
        "pools": {"speech": {"paths": ["speech/*.flac"]},
                  "cabin": {"paths": ["cabin/*.wav"], "holdout": 0.1},
                  "weather": {"paths": ["weather/*.wav"]}},
        "splits": {"train": {"samples": total}},
        "synth": {"type": "speech_noise_mix", "speech": "speech",
                  "noise": [{"pool": "cabin", "snr_db_range": [0, 20]},
                            {"pool": "weather", "snr_db_range": [10, 30], "p": 0.3}]},
    }, base_dir=".")


def write_run(root: Path, shards: int, rows: int) -> Path:
    rng = np.random.default_rng(0)
    pools = {
        "speech": (np.array([f"speech/{i:06d}.flac" for i in range(SPEECH_ITEMS)]),
                   rng.uniform(2, 15, SPEECH_ITEMS), np.zeros(SPEECH_ITEMS, bool)),
    }
    for name, n in NOISE_ITEMS.items():
        hold = np.zeros(n, bool)
        if name == "cabin":
            hold[: n // 10] = True
        pools[name] = (np.array([f"{name}/{i:05d}.wav" for i in range(n)]), rng.uniform(30, 600, n), hold)
    table = {"pool": [], "item": [], "duration_s": [], "sample_rate": [], "channels": [], "holdout": []}
    info: dict[str, dict[str, tuple[float, bool]]] = {}
    for name, (items, dur, hold) in pools.items():
        table["pool"] += [name] * len(items)
        table["item"] += items.tolist()
        table["duration_s"] += dur.tolist()
        table["sample_rate"] += [16000] * len(items)
        table["channels"] += [1] * len(items)
        table["holdout"] += hold.tolist()
        info[name] = {it: (float(d), bool(h)) for it, d, h in zip(items.tolist(), dur, hold)}
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(table), root / POOL_INDEX_FILE)

    recipe = make_recipe(shards * rows, rows)
    keep = keep_threshold(shards * rows)
    cfg = recipe.synth.model_dump(mode="json")
    seen_cabin = np.flatnonzero(~pools["cabin"][2])
    shard_entries = []
    (root / "train").mkdir(exist_ok=True)
    t0 = time.perf_counter()
    for s in range(shards):
        stats = ShardStats(StatsContext(split="train", item_info=lambda p, i: info[p].get(i),
                                        synth_config=cfg, keep_below=keep))
        for r in range(rows):
            i = s * rows + r
            u = int(rng.integers(SPEECH_ITEMS))
            dur = float(pools["speech"][1][u])
            sources = [{"pool": "speech", "item": pools["speech"][0][u], "start_s": 0.0, "duration_s": dur}]
            layers = []
            c = int(seen_cabin[rng.integers(len(seen_cabin))])
            sources.append({"pool": "cabin", "item": pools["cabin"][0][c],
                            "start_s": float(rng.uniform(0, pools["cabin"][1][c] - dur)), "duration_s": dur})
            layers.append({"layer": 0, "snr_db": float(rng.uniform(0, 20))})
            if rng.random() < 0.3:
                w = int(rng.integers(NOISE_ITEMS["weather"]))
                sources.append({"pool": "weather", "item": pools["weather"][0][w],
                                "start_s": float(rng.uniform(0, pools["weather"][1][w] - dur)), "duration_s": dur})
                layers.append({"layer": 1, "snr_db": float(rng.uniform(10, 30))})
            emb = (rng.standard_normal(66) * 8 - 40).astype(np.float32)
            stats.add(f"bench-train-{i:09d}", {"noise": layers}, sources, emb, dur)
        name = f"train-{s:05d}-of-{shards:05d}"
        record = {"shard": name, "split": "train", "rows": rows, "stats": stats.to_json()}
        (root / "train" / f"{name}{STATS_SUFFIX}").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        shard_entries.append({"file": f"train/{name}.arrow", "stats": f"train/{name}{STATS_SUFFIX}",
                              "rows": rows, "bytes": 0, "sha256": ""})
    gen_s = time.perf_counter() - t0
    record = {
        "recipe_name": "bench", "recipe_hash": recipe_hash(recipe), "status": "complete",
        "recipe": recipe_to_dict(recipe), "recipe_dir": str(root),
        "splits": {"train": {"samples": shards * rows, "rows": shards * rows, "shards": shard_entries}},
    }
    (root / RUN_RECORD_FILE).write_text(json.dumps(record))
    print(f"wrote {shards} stats files ({rows} rows each) in {gen_s:.0f} s")
    return root


def limit_run(root: Path, shards: int) -> Path:
    """A second folder view with only the first ``shards`` shards (links, no copies)."""
    view = root.parent / f"{root.name}-{shards}"
    if not view.exists():
        view.mkdir()
        (view / "train").mkdir()
        os.symlink(root / POOL_INDEX_FILE, view / POOL_INDEX_FILE)
        record = json.loads((root / RUN_RECORD_FILE).read_text())
        entries = record["splits"]["train"]["shards"][:shards]
        for e in entries:
            os.symlink(root / e["stats"], view / e["stats"])
        record["splits"]["train"]["shards"] = entries
        (view / RUN_RECORD_FILE).write_text(json.dumps(record))
    return view


def measure(fn):
    """(result, wall seconds, peak traced bytes): timed in one call, memory traced in a
    second one (tracemalloc slows Python-heavy code several times)."""
    t0 = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - t0
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, wall, peak


def json_floor(folder: Path) -> int:
    record = json.loads((folder / RUN_RECORD_FILE).read_text())
    n = 0
    for e in record["splits"]["train"]["shards"]:
        n += len(json.loads((folder / e["stats"]).read_text())["stats"]["pools"])
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--dir", help="where to write the synthetic run (default: a temporary folder)")
    args = ap.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="coverage-bench-")) / "run"
    if not (root / RUN_RECORD_FILE).exists():
        write_run(root, args.shards, args.rows)
    files = sorted((root / "train").glob("*" + STATS_SUFFIX))
    size = sum(f.stat().st_size for f in files)
    print(f"{len(files)} stats files, {size / 1e6:.0f} MB ({size / len(files) / 1e3:.0f} kB each)")
    load_coverage_stats(root)  # warm up imports and the page cache
    print(f"{'shards':>7} {'json.loads s':>13} {'analyze s':>10} {'ratio':>6} {'analyze peak MB':>16}")
    for n in sorted({max(1, args.shards // 10), args.shards}):
        folder = limit_run(root, n) if n < args.shards else root
        _, floor_s, _ = measure(lambda: json_floor(folder))
        (report, _), wall, peak = measure(lambda: load_coverage_stats(folder))
        print(f"{n:>7} {floor_s:>13.2f} {wall:>10.2f} {wall / floor_s:>6.2f} {peak / 1e6:>16.0f}")
    cabin = report["pools"]["cabin"]
    print(f"sanity: {report['samples']} samples; cabin reuse factor {cabin['reuse_factor']}, "
          f"effective sources {cabin['effective_sources']}; Vendi {report['embedding']['vendi_score']}")


if __name__ == "__main__":
    main()
