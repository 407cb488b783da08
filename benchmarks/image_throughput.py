"""Image throughput: shardsmith's image_augment vs a bare albumentations loop.

Same source images, same pipeline, same output encoding, measured in one run:

1. **bare**: one process, ``decode -> A.Compose -> encode`` in a loop (OpenCV pinned to
   one thread, as shardsmith pins it in a worker; also shown with OpenCV's default
   threads for reference).
2. **shardsmith per worker**: the body of one Ray shard task (:func:`engine.worker.make_shard`:
   sample, decode, pipeline, encode, embedding, params JSON, Arrow writer, stats) in
   this process, no Ray. Target: at least 0.85 of the bare loop's rate.
3. **1 vs 2 workers**: ``engine.runtime.run`` on one local Ray instance (2 CPUs) started
   before any timing, after a warm-up run; the figure is the shard phase
   (``RunSummary.wall_s``: Ray start-up and pool indexing excluded). Target: 2 workers at
   least 1.7x one (needs 2 idle cores).

The bare loop gets the same images and the same per-sample random draws as shardsmith
(it seeds each sample's stream the same way), so both do exactly the same work.

Each timing is the best of ``--repeats`` runs (the least disturbed by other load).

    python benchmarks/image_throughput.py                 # defaults: 48 photos of 640x480
    python benchmarks/image_throughput.py --size 1280x960 --samples 600 --format png
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# "mobile": the demo recipe's phone-photo pipeline (ISONoise and Defocus dominate its cost).
# "light": cheap transforms only, so shardsmith's fixed per-sample cost shows the most.
PIPELINES = {
    "mobile": [
        {"HorizontalFlip": {"p": 0.5}},
        {"Affine": {"rotate": [-5, 5], "scale": [0.95, 1.05], "p": 0.5}},
        {"OneOf": {"p": 0.7, "transforms": [
            {"MotionBlur": {"blur_limit": [3, 9]}},
            {"GaussianBlur": {"blur_limit": [3, 7]}},
            {"Defocus": {"radius": [2, 4]}},
        ]}},
        {"RandomBrightnessContrast": {"brightness_limit": 0.25, "contrast_limit": 0.2, "p": 0.7}},
        {"Downscale": {"scale_range": [0.4, 0.8], "p": 0.5}},
        {"ISONoise": {"intensity": [0.1, 0.4], "p": 0.5}},
        {"ImageCompression": {"quality_range": [35, 80], "p": 0.8}},
    ],
    "light": [
        {"HorizontalFlip": {"p": 0.5}},
        {"RandomBrightnessContrast": {"p": 0.5}},
        {"GaussianBlur": {"blur_limit": [3, 5], "p": 0.3}},
    ],
}


def make_images(folder: Path, count: int, width: int, height: int) -> list[Path]:
    """Photo-like sources: smooth gradients, shapes and mild texture, saved as JPEG q95."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(count):
        base = rng.uniform(40, 200, 3).astype(np.float32)
        grad = rng.uniform(-0.15, 0.15, (2, 3)).astype(np.float32)
        img = base + xx[..., None] * grad[0] + yy[..., None] * grad[1]
        for _ in range(8):
            c = tuple(int(v) for v in rng.integers(0, 256, 3))
            center = (int(rng.integers(width)), int(rng.integers(height)))
            cv2.circle(img, center, int(rng.integers(10, max(11, width // 5))), c, -1)
        img += rng.normal(0, 3, img.shape).astype(np.float32)
        img = np.clip(img, 0, 255).astype(np.uint8)
        p = folder / f"img-{i:04d}.jpg"
        cv2.imwrite(str(p), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        paths.append(p)
    return paths


def recipe_data(folder: Path, transforms: list, samples: int, per_shard: int, fmt: str, quality: int) -> dict:
    return {
        "name": "bench_images",
        "seed": 1,
        "output": {"format": "arrow", "samples_per_shard": per_shard, "image_format": fmt,
                   "image_quality": quality},
        "pools": {"photos": {"kind": "image", "paths": [str(folder / "*.jpg")]}},
        "splits": {"train": {"samples": samples}},
        "synth": {"type": "image_augment", "images": "photos", "transforms": transforms},
        "guards": {"max_reuse_factor": None},
    }


def planned_draws(recipe_path: Path) -> list[tuple[str, int]]:
    """(image path, seed) of every sample of the recipe's first shard, as shardsmith draws them."""
    from engine.plan import make_plan
    from engine.pools import index_pools
    from engine.recipe import load_recipe
    from engine.rng import sample_rng
    from engine.synth import build_synthesizer

    recipe = load_recipe(recipe_path)
    index = index_pools(recipe)
    synth = build_synthesizer(recipe, index)
    spec = make_plan(recipe).shards[0]
    pool = index.pools["photos"]
    where = {it: p for it, p in zip(pool.items, pool.paths)}
    out = []
    for i in range(spec.start, spec.stop):
        params = synth.sample_params(sample_rng(recipe.seed, spec.split, i), holdout_split=False)
        out.append((where[params["image"]["item"]], params["seed"]))
    return out


def bare_loop(draws: list[tuple[str, int]], transforms: list, fmt: str, quality: int,
              threads: int | None) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of decode -> A.Compose -> encode, nothing else.

    Same images and same random draws as shardsmith (each sample's stream is seeded as
    shardsmith seeds it), so both loops do the same work: an expensive p=0.5 transform
    fires on the same samples in both.
    """
    import albumentations as A

    from engine.image.pipeline import build_transforms, normalize_transforms, seed_pipeline

    saved = cv2.getNumThreads()
    if threads is not None:
        cv2.setNumThreads(threads)
    compose = A.Compose(build_transforms(normalize_transforms(transforms)))
    ext = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}[fmt]
    params = {"png": [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
                      cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB],
              "jpeg": [cv2.IMWRITE_JPEG_QUALITY, quality], "webp": [cv2.IMWRITE_WEBP_QUALITY, quality]}[fmt]
    c0, w0 = time.process_time(), time.perf_counter()
    for path, seed in draws:
        data = np.fromfile(path, dtype=np.uint8)
        img = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        seed_pipeline(compose, seed)
        out = compose(image=img)["image"]
        cv2.imencode(ext, cv2.cvtColor(out, cv2.COLOR_RGB2BGR), params)
    result = (time.process_time() - c0, time.perf_counter() - w0)
    cv2.setNumThreads(saved)
    return result


def shardsmith_worker(recipe_path: Path, out: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one shard task body (make_shard) in this process."""
    from engine.plan import make_plan
    from engine.pools import index_pools
    from engine.recipe import load_recipe
    from engine.worker import make_shard

    recipe = load_recipe(recipe_path)
    index = index_pools(recipe)
    spec = make_plan(recipe).shards[0]
    shutil.rmtree(out, ignore_errors=True)
    c0, w0 = time.process_time(), time.perf_counter()
    make_shard(recipe, index, spec, out)
    return time.process_time() - c0, time.perf_counter() - w0


def ray_run(recipe_path: Path, out: Path, workers: int) -> float:
    """Samples per second of the shard phase (Ray already running; workers warm)."""
    from engine.recipe import load_recipe
    from engine.runtime import run

    shutil.rmtree(out, ignore_errors=True)
    summary = run(load_recipe(recipe_path), out, workers=workers, progress=False, log=lambda msg: None)
    return summary.samples / summary.wall_s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=48, help="distinct source images")
    ap.add_argument("--size", default="640x480", help="source size WxH")
    ap.add_argument("--samples", type=int, default=300, help="samples per in-process measurement")
    ap.add_argument("--ray-samples", type=int, default=1200, help="samples per Ray run (8 shards)")
    ap.add_argument("--pipeline", default="both", choices=["mobile", "light", "both"])
    ap.add_argument("--format", default="jpeg", choices=["png", "jpeg", "webp"])
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-ray", action="store_true", help="skip the 1 vs 2 worker runs")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    names = ["mobile", "light"] if args.pipeline == "both" else [args.pipeline]

    tmp = Path(tempfile.mkdtemp(prefix="shardsmith-bench-"))
    if not args.no_ray:
        import ray

        # One Ray instance for every run, started before any timing: its daemons finish
        # booting first and the worker processes stay warm between runs.
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="ERROR")
        time.sleep(5)
    try:
        make_images(tmp / "photos", args.count, width, height)
        print(f"{args.count} source images {width}x{height} (JPEG q95) -> {args.format} q{args.quality}; "
              f"{args.samples} samples per in-process run, best of {args.repeats}; "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        print("in-process rates use CPU time (robust to other load on the machine); wall time beside them")
        for name in names:
            transforms = PIPELINES[name]
            rp = tmp / f"recipe_{name}.yaml"
            rp.write_text(yaml.safe_dump(recipe_data(tmp / "photos", transforms, args.samples, args.samples,
                                                     args.format, args.quality)))
            draws = planned_draws(rp)
            bare1, bared, ours = [], [], []
            for _ in range(args.repeats):  # interleaved, so drifting load hits all three alike
                bare1.append(bare_loop(draws, transforms, args.format, args.quality, 1))
                bared.append(bare_loop(draws, transforms, args.format, args.quality, None))
                ours.append(shardsmith_worker(rp, tmp / "out_inproc"))
            n = args.samples
            b1 = n / min(c for c, _ in bare1)
            s1 = n / min(c for c, _ in ours)
            print(f"pipeline {name!r} ({len(transforms)} transforms):")
            print(f"  bare loop, OpenCV 1 thread          {b1:8.1f} samples/CPU-s  "
                  f"(wall {n / min(w for _, w in bare1):7.1f}/s)")
            print(f"  bare loop, OpenCV default threads   {'':8s}                 "
                  f"(wall {n / min(w for _, w in bared):7.1f}/s)")
            print(f"  shardsmith, one worker (in-process) {s1:8.1f} samples/CPU-s  "
                  f"(wall {n / min(w for _, w in ours):7.1f}/s)  ratio to bare {s1 / b1:5.2f}  (target >= 0.85)")
            if not args.no_ray:
                per = max(1, args.ray_samples // 8)
                rp2 = tmp / f"recipe_ray_{name}.yaml"
                rp2.write_text(yaml.safe_dump(recipe_data(tmp / "photos", transforms, args.ray_samples, per,
                                                          args.format, args.quality)))
                ray_run(rp2, tmp / "out_warm", 2)  # start both worker processes and their imports
                ones, twos = [], []
                for _ in range(args.repeats):
                    ones.append(ray_run(rp2, tmp / "out_w1", 1))
                    twos.append(ray_run(rp2, tmp / "out_w2", 2))
                one, two = max(ones), max(twos)
                print(f"  Ray, 1 worker (shard phase, wall)   {one:8.1f} samples/s")
                print(f"  Ray, 2 workers (shard phase, wall)  {two:8.1f} samples/s      "
                      f"speed-up {two / one:5.2f}  (target >= 1.7)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not args.no_ray:
            import ray

            ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
