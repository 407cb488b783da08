"""Pool validation: what checking every frame of every source costs, and what the probe
cache saves.

Indexing a pool decodes every frame of every file (finite samples, damage anywhere,
level, length: :func:`engine.audio.io.probe`) and keeps each verdict in the probe cache
by content fingerprint. This measures, on one pool made here (nothing is downloaded:
``--files`` FLAC noise files of ``--seconds`` each at 16 kHz, about an hour in all by
default), in one process with the default thread mapper:

- ``bare decode``: the baseline, ``soundfile.read`` of every file whole, one by one (the
  least any full check can cost; one thread);
- ``bare decode, threads``: the same on the mapper's thread pool (what the machine can do);
- ``index, cold``: :func:`engine.pools.index_pool` with an empty probe cache;
- ``index, cached``: the same pool again (fingerprints only: a stat and about 200 KiB
  read per file);
- ``fingerprints``: fingerprinting every file alone.

Each figure is the best of ``--repeats`` rounds; the ratios to the bare decode are what
matter (a full validation should cost about one decode; a cached one a small fraction).

    python benchmarks/pool_validation.py                       # 60 files x 60 s, best of 3
    python benchmarks/pool_validation.py --files 20 --seconds 30 --repeats 1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from codec_decode import best  # noqa: E402

from engine.fingerprint import fingerprint  # noqa: E402
from engine.pools import index_pool, thread_mapper  # noqa: E402
from engine.probe_cache import ProbeCache  # noqa: E402
from engine.recipe import AudioPool  # noqa: E402

SR = 16000


def make_pool(folder: Path, files: int, seconds: float) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(files):
        x = (0.05 * rng.standard_normal(int(seconds * SR))).astype(np.float32)
        path = folder / f"noise-{i:04d}.flac"
        sf.write(path, x, SR, subtype="PCM_16")
        paths.append(str(path))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "pool").mkdir()
        paths = make_pool(folder / "pool", args.files, args.seconds)
        pool = AudioPool(paths=["pool/*.flac"])
        hours = args.files * args.seconds / 3600

        def cold() -> None:
            with ProbeCache(folder / f"cache-{time.perf_counter_ns()}.sqlite3") as cache:
                items, rejects = index_pool("noise", pool, folder, cache=cache)
                assert len(items) == args.files and not rejects and items.probed == args.files

        warm_cache = ProbeCache(folder / "warm.sqlite3")
        index_pool("noise", pool, folder, cache=warm_cache)

        def cached() -> None:
            items, _ = index_pool("noise", pool, folder, cache=warm_cache)
            assert items.cached == args.files

        figures = {
            "bare decode": best(lambda: [sf.read(p, dtype="float32") for p in paths], args.repeats),
            "bare decode, threads": best(lambda: thread_mapper(lambda p: sf.read(p, dtype="float32")[0].shape, paths),
                                         args.repeats),
            "index, cold": best(cold, args.repeats),
            "index, cached": best(cached, args.repeats),
            "fingerprints": best(lambda: [fingerprint(p) for p in paths], args.repeats),
        }
        warm_cache.close()
    base = figures["bare decode"]
    print(f"pool: {args.files} FLAC files x {args.seconds:g} s = {hours:.2f} h of 16 kHz mono; "
          f"best of {args.repeats}; {os.cpu_count()} CPUs")
    print(f"{'measure':<24}{'seconds':>10}{'s per hour':>12}{'vs bare decode':>16}")
    for name, t in figures.items():
        print(f"{name:<24}{t:>10.3f}{t / hours:>12.3f}{t / base:>15.2f}x")


if __name__ == "__main__":
    main()
