"""Overfitting study: do the coverage figures (reuse factor, effective sources, Vendi score,
the forecast's verdict) predict how well a model trained on the data generalizes?

Measured with the mismatch probe (``shardsmith mismatch probe``: a logistic regression on
the rows' 66-dim embedding, label ``speaker``) on sets that differ only in how diverse
their noise is. The data is made here, in a temporary folder (nothing is downloaded):
the demo corpus (``engine.demo.generate_demo_corpus``, seed 0), plus the noise of
``--extra-corpora`` more demo corpora (seeds 1, 2, ...) for the widest pool.

- Speech, fixed for every set: each of the 6 voices says each of 10 words twice; the
  first take of each word goes to the training sets, the second to the dev set.
- Dev set: that speech mixed with the six ``-2`` noise recordings of the seed-0 corpus,
  which no training set uses (``--dev`` rows, SNR 0-20 dB).
- Held-out noise: four seed-0 items (``babble-0``, ``brown-0``, ``clatter-1``,
  ``road-1``), held out of every training set's noise pool (``holdout`` on the pool; the
  files are copied under names whose holdout hash puts them first, so the same four
  items are held out of every pool) and used only by its ``train_dev_unseen`` split.
- Training sets, ``--train`` train rows, ``--train-dev`` train_dev rows (seen noise) and
  as many train_dev_unseen rows (held-out noise), SNR 0-20 dB, noise pools of growing
  diversity:

  ``clip``    the first 3 s of one car recording
  ``long``    one long recording (``car-0``, 120 s)
  ``longer``  one 12-minute car recording (``car-0`` of corpora 0-5 end to end): one
              source, but a low reuse factor
  ``few``     four items of four kinds (``car-0``, ``pink-0``, ``rain-1``, ``wind-1``)
  ``all``     every seed-0 item but the held-out and dev ones (15 items, 9 kinds)
  ``many``    ``all`` plus the same 15 items of each extra corpus
  ``clean``   a reference: ``all`` at 60 dB SNR (speech as good as clean); it is left
              out of the correlations, since its noise figures describe noise it barely has

Each set is run (one local Ray session, ``--workers``), its coverage read from
``OUT/coverage.json`` (what the guards check: every split of the pool, the held-out
items and the holdout split's uses too) and recomputed over the rows made from seen
noise only (train and train_dev, through ``engine.coverage.CoverageStats``: the data a
model is trained on), the forecast's verdict computed as ``shardsmith plan`` does, and
the probe fitted on its train split and scored on train, train_dev, train_dev_unseen and
the dev set (``engine.mismatch.probe_errors``). The speech pool's reuse guard is off in
these recipes (the speech is the same in every set; only the noise pool is judged).

Everything is repeated for ``--seeds`` seeds (the recipes' seed; the probe's seed; a dev
set per seed). Printed: per set the mean and standard deviation over the seeds; the
Spearman rank correlation (``scipy.stats.spearmanr``, over every set and seed but
``clean``) of the reuse factor and of the effective sources with the dev error and with
the unseen-source gap; optionally a plot (``--plot``, PNG or SVG) and the raw figures
(``--json``).

    python benchmarks/overfit_study.py --workers 2 --allow-narrow
    python benchmarks/overfit_study.py --train 400 --seeds 1 --workers 2 --allow-narrow   # a quick look
    python benchmarks/overfit_study.py --workers 2 --allow-narrow --plot docs/overfit_study.png --json study.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

HELD_OUT = ("babble/babble-0", "brown/brown-0", "clatter/clatter-1", "road/road-1")
DEV_NOISE = ("babble/babble-2", "car/car-2", "clatter/clatter-2", "rain/rain-2", "road/road-2", "wind/wind-2")
FEW = ("car/car-0", "pink/pink-0", "rain/rain-1", "wind/wind-1")
TIERS = ("clip", "long", "longer", "few", "all", "many", "clean")
LONGER_PARTS = 6  # the 'longer' file: car-0 of this many corpora end to end
CLIP_S = 3.0
POOL = "noise"
LABEL = "speaker"
HOLDOUT_KEY_BELOW = 1e-5  # held-out copies are renamed until their holdout hash is below this


# --------------------------------------------------------------------------- data


def make_data(folder: Path, extra_corpora: int) -> dict[str, list[str]]:
    """The corpora, the speech manifests, the clip, the held-out copies; returns each
    tier's training-noise files (paths relative to ``folder``, where the recipes live)."""
    import soundfile as sf

    from engine.demo import generate_demo_corpus
    from engine.rng import stable_unit

    for seed in range(extra_corpora + 1):
        if not (folder / f"c{seed}" / "noise" / "manifest.csv").exists():
            generate_demo_corpus(folder / f"c{seed}", seed=seed)
    c0 = folder / "c0"
    with open(c0 / "speech" / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    seen: set[tuple[str, str]] = set()
    train, dev = [], []
    for r in rows:
        key = (r["speaker"], r["text"])
        (dev if key in seen else train).append({**r, "path": str(c0 / "speech" / r["path"])})
        seen.add(key)
    for name, part in (("speech_train.csv", train), ("speech_dev.csv", dev)):
        with open(folder / name, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["path", "text", "speaker"])
            w.writeheader()
            w.writerows(part)

    (folder / "clip").mkdir(exist_ok=True)
    x, sr = sf.read(c0 / "noise" / "car" / "car-3.wav")
    sf.write(folder / "clip" / "car-3-first3s.wav", x[: int(CLIP_S * sr)], sr)
    parts = [sf.read(folder / f"c{c}" / "noise" / "car" / "car-0.wav")[0]
             for c in range(min(LONGER_PARTS, extra_corpora + 1))]
    sf.write(folder / "clip" / "car-0-long.wav", np.concatenate(parts), sr)
    # The same four items are the held-out ones of every pool: holdout takes the items
    # with the smallest hash of (pool, item id), so the copies get names whose hash is tiny.
    (folder / "heldout").mkdir(exist_ok=True)
    for stem in HELD_OUT:
        base = stem.split("/")[1]
        salt = 0
        while stable_unit("holdout", POOL, f"heldout/{base}.{salt}.wav") >= HOLDOUT_KEY_BELOW:
            salt += 1
        dst = folder / "heldout" / f"{base}.{salt}.wav"
        if not dst.exists():
            shutil.copy(c0 / "noise" / f"{stem}.wav", dst)

    def items(corpus: int) -> list[str]:
        return sorted(f"c{corpus}/noise/{p.parent.name}/{p.name}" for p in (folder / f"c{corpus}" / "noise").glob("*/*.wav")
                      if not p.stem.endswith("-2") and f"{p.parent.name}/{p.stem}" not in HELD_OUT)

    every = items(0)
    tiers = {
        "clip": ["clip/car-3-first3s.wav"],
        "long": ["c0/noise/car/car-0.wav"],
        "longer": ["clip/car-0-long.wav"],
        "few": [f"c0/noise/{s}.wav" for s in FEW],
        "all": every,
        "many": every + [f for c in range(1, extra_corpora + 1) for f in items(c)],
        "clean": every,
    }
    return tiers


def held_out_files(folder: Path) -> list[str]:
    return sorted(f"heldout/{p.name}" for p in (folder / "heldout").glob("*.wav"))


def recipe_data(name: str, seed: int, noise: list[str], held: list[str], splits: dict[str, dict], *,
                speech: str, snr: list[float], guards: dict) -> dict:
    pool: dict = {"paths": noise + held}
    if held:
        pool["holdout"] = len(held) / len(noise + held)
    return {
        "name": name, "seed": seed,
        "output": {"format": "arrow", "samples_per_shard": 250, "audio_codec": "flac"},
        "pools": {"speech": {"manifest": speech}, POOL: pool},
        "splits": splits,
        "synth": {"type": "speech_noise_mix", "speech": "speech", "sample_rate": 16000,
                  "noise": [{"pool": POOL, "snr_db_range": snr}], "level_dbfs_range": [-32, -20]},
        "guards": guards,
    }


def write_recipe(folder: Path, data: dict) -> Path:
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --------------------------------------------------------------------------- one set


def seen_coverage(out: Path, recipe) -> dict:
    """The coverage report over the rows made from seen noise (the non-holdout splits)."""
    from engine.coverage import CoverageStats, catalog_from_parquet
    from engine.run_record import read_run_record

    record = read_run_record(out)
    catalog = catalog_from_parquet(out / "pool_index.parquet")
    cs = CoverageStats(catalog, {n: s.holdout for n, s in recipe.splits.items()})
    for split, entry in record["splits"].items():
        if recipe.splits[split].holdout:
            continue
        for shard in entry["shards"]:
            cs.add_shard(json.loads((out / shard["stats"]).read_text()), split)
    return cs.report(recipe)


def measure(folder: Path, tier: str, seed: int, recipe_path: Path, dev_out: Path, workers: int,
            allow_narrow: bool, keep: bool) -> dict:
    from engine.coverage import forecast_coverage
    from engine.errors import GuardError
    from engine.mismatch import probe_errors
    from engine.pools import index_pools
    from engine.recipe import load_recipe
    from engine.runtime import run

    recipe = load_recipe(recipe_path)
    index = index_pools(recipe)
    held = [it for it, h in zip(index.pools[POOL].items, index.pools[POOL].holdout) if h]
    if sorted(held) != held_out_files(folder):
        raise RuntimeError(f"{tier}: held-out items {held}, not {held_out_files(folder)}")
    forecast = forecast_coverage(recipe, index)
    fails = [f"{g['name']} ({g['pool']})" for g in forecast["guards"] if not g["passed"]]
    result = {
        "set": tier, "seed": seed,
        "noise_items": int((~index.pools[POOL].holdout).sum()),
        "noise_seconds": float(index.pools[POOL].duration_s[~index.pools[POOL].holdout].sum()),
        "forecast_passed": forecast["passed"], "forecast_fails": fails,
        "forecast_reuse": forecast["pools"][POOL]["reuse_factor"],
    }
    out = folder / "out" / f"{tier}-{seed}"
    t0 = time.perf_counter()
    try:
        run(recipe, out, workers=workers, overwrite=True, progress=False, log=lambda _msg: None,
            allow_narrow=allow_narrow)
    except GuardError:
        result["refused"] = True
        return result
    result["run_s"] = time.perf_counter() - t0
    cov = json.loads((out / "coverage.json").read_text())
    seen = seen_coverage(out, recipe)
    result.update({
        "refused": False,
        "guard_reuse": cov["pools"][POOL]["reuse_factor"],  # what the guard checks: every split
        "guard_passed": cov["passed"],
        "reuse": seen["pools"][POOL]["reuse_factor"],  # the rows made from seen noise
        "effective_sources": seen["pools"][POOL]["effective_sources"],
        "vendi": seen["embedding"]["vendi_score"],
    })
    report = probe_errors(out, LABEL, dev=dev_out, seed=seed)
    result.update({"errors": report.errors, "gaps": report.gap_values, "dominant": report.dominant})
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    return result


# --------------------------------------------------------------------------- summary


def _ms(values: list[float], scale: float = 1.0, spec: str = ".1f") -> str:
    v = np.asarray([x for x in values if x is not None], float) * scale
    if not v.size:
        return "-"
    if v.size == 1:
        return format(v[0], spec)
    return f"{format(v.mean(), spec)} ± {format(v.std(ddof=1), spec)}"


def summarize(results: list[dict], tiers: list[str], seeds: int) -> tuple[list[dict], dict]:
    from scipy.stats import spearmanr

    rows = []
    for tier in tiers:
        rs = [r for r in results if r["set"] == tier]
        done = [r for r in rs if not r.get("refused")]
        row = {
            "set": tier,
            "items": f"{rs[0]['noise_items']}",
            "noise s": f"{rs[0]['noise_seconds']:.0f}",
            "forecast": (f"pass {sum(r['forecast_passed'] for r in rs)}/{len(rs)}" if all(r["forecast_passed"] for r in rs)
                         else f"FAIL {sum(not r['forecast_passed'] for r in rs)}/{len(rs)}"),
        }
        if not done:
            row["note"] = "refused (run without --allow-narrow)"
            rows.append(row)
            continue
        row.update({
            "reuse (guard)": _ms([r["guard_reuse"] for r in done], spec=_spec([r["guard_reuse"] for r in done])),
            "reuse": _ms([r["reuse"] for r in done], spec=_spec([r["reuse"] for r in done])),
            "eff. sources": _ms([r["effective_sources"] for r in done]),
            "Vendi": _ms([r["vendi"] for r in done]),
            "train %": _ms([r["errors"]["train"] for r in done], 100),
            "train-dev %": _ms([r["errors"]["train_dev"] for r in done], 100),
            "unseen %": _ms([r["errors"]["train_dev_unseen"] for r in done], 100),
            "dev %": _ms([r["errors"]["dev"] for r in done], 100),
            "variance": _ms([r["gaps"]["variance"] for r in done], 100),
            "unseen gap": _ms([r["gaps"]["unseen_source_gap"] for r in done], 100),
            "data mismatch": _ms([r["gaps"]["data_mismatch"] for r in done], 100),
            "dominant": ", ".join(f"{k} {v}" if len(set(r["dominant"] for r in done)) > 1 else str(k)
                                  for k, v in _count(r["dominant"] for r in done).items()),
        })
        rows.append(row)
    pts = [r for r in results if not r.get("refused") and r["set"] != "clean"]
    corr = {}
    if len(pts) >= 3:
        for x in ("reuse", "guard_reuse", "effective_sources", "vendi"):
            for yname, y in (("dev_error", lambda r: r["errors"]["dev"]),
                             ("unseen_source_gap", lambda r: r["gaps"]["unseen_source_gap"])):
                res = spearmanr([r[x] for r in pts], [y(r) for r in pts])
                corr[f"{x} ~ {yname}"] = {"rho": float(res.statistic), "p": float(res.pvalue), "n": len(pts)}
    return rows, corr


def _spec(values: list[float]) -> str:
    return ".0f" if max(values) >= 100 else ".1f"


def _count(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def print_table(rows: list[dict]) -> None:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    width = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    print("  " + "  ".join(f"{c:<{width[c]}}" if c in ("set", "dominant", "forecast", "note") else f"{c:>{width[c]}}"
                           for c in cols))
    for r in rows:
        print("  " + "  ".join(f"{str(r.get(c, '')):<{width[c]}}" if c in ("set", "dominant", "forecast", "note")
                               else f"{str(r.get(c, '')):>{width[c]}}" for c in cols))


def plot(path: Path, results: list[dict], tiers: list[str], limit: float | None) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    pts = [r for r in results if not r.get("refused")]
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 3.3), sharey=True)
    colours = {"dev_error": "#c0392b", "unseen_source_gap": "#2e6db4"}
    for ax, x, xlabel in ((axes[0], "reuse", "noise reuse factor (train + train_dev rows), log"),
                          (axes[1], "effective_sources", "noise effective sources (train + train_dev rows), log")):
        for yname, label in (("dev_error", "dev error"), ("unseen_source_gap", "unseen-source gap")):
            get = (lambda r: r["errors"]["dev"]) if yname == "dev_error" else (lambda r: r["gaps"]["unseen_source_gap"])
            main = [r for r in pts if r["set"] != "clean"]
            ax.scatter([r[x] for r in main], [get(r) for r in main], s=14, color=colours[yname], alpha=0.7,
                       label=label)
            for tier in tiers:
                rs = [r for r in main if r["set"] == tier]
                if rs and yname == "dev_error":
                    ax.annotate(tier, (float(np.mean([r[x] for r in rs])), float(np.mean([get(r) for r in rs]))),
                                textcoords="offset points", xytext=(4, 5), fontsize=8)
        clean = [r for r in pts if r["set"] == "clean"]
        if clean:
            ax.axhline(float(np.mean([r["errors"]["dev"] for r in clean])), color="#888", linestyle=":",
                       label="dev error, clean speech")
        if x == "reuse" and limit:
            ax.axvline(limit, color="#555", linestyle="--", linewidth=1, label=f"max_reuse_factor {limit:g}")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("probe error / gap (fraction)", fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=4, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=80)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=int, default=2000, help="train rows per set (default 2000)")
    ap.add_argument("--train-dev", type=int, default=400,
                    help="train_dev rows (seen noise) and train_dev_unseen rows (held-out noise) per set (default 400)")
    ap.add_argument("--dev", type=int, default=600, help="dev rows per seed (default 600)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds: recipes, probe and dev set (default 3)")
    ap.add_argument("--first-seed", type=int, default=1, help="the first seed (default 1)")
    ap.add_argument("--extra-corpora", type=int, default=12,
                    help="demo corpora (seeds 1..N) whose noise widens the 'many' pool and makes the 'longer' file "
                         f"(its first {LONGER_PARTS - 1}) (default 12)")
    ap.add_argument("--tiers", default=",".join(TIERS), help=f"sets to run (default {','.join(TIERS)})")
    ap.add_argument("--workers", type=int, default=2, help="Ray workers (default 2)")
    ap.add_argument("--allow-narrow", action="store_true",
                    help="synthesize sets the forecast refuses (without it they are reported as refused)")
    ap.add_argument("--data", type=Path, help="keep the generated data and outputs here (reused when present)")
    ap.add_argument("--plot", type=Path, help="write the plot here (.png or .svg)")
    ap.add_argument("--json", type=Path, help="write every set's figures and the correlations here")
    args = ap.parse_args()
    tiers = [t.strip() for t in args.tiers.split(",") if t.strip()]
    unknown = sorted(set(tiers) - set(TIERS))
    if unknown:
        ap.error(f"unknown set(s) {', '.join(unknown)}; choose from {', '.join(TIERS)}")

    from engine.config import Guards
    from engine.runtime import ray_session

    limit = Guards().max_reuse_factor
    tmp = None
    if args.data:
        folder = args.data.resolve()
        folder.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="shardsmith-overfit-study-")
        folder = Path(tmp)
    t_start = time.perf_counter()
    results: list[dict] = []
    try:
        t0 = time.perf_counter()
        noise = make_data(folder, args.extra_corpora)
        held = held_out_files(folder)
        print(f"data: demo corpus seed 0 and noise of {args.extra_corpora} more in {folder} "
              f"(made in {time.perf_counter() - t0:.0f} s)", flush=True)
        splits = {"train": {"samples": args.train}, "train_dev": {"samples": args.train_dev},
                  "train_dev_unseen": {"samples": args.train_dev, "holdout": True}}
        with ray_session(workers=args.workers):
            for k in range(args.seeds):
                seed = args.first_seed + k
                dev_path = write_recipe(folder, recipe_data(
                    f"dev-{seed}", 1000 + seed, [f"c0/noise/{s}.wav" for s in DEV_NOISE], [],
                    {"dev": {"samples": args.dev}}, speech="speech_dev.csv", snr=[0, 20],
                    guards={"max_reuse_factor": None}))
                from engine.recipe import load_recipe
                from engine.runtime import run

                dev_out = folder / "out" / f"dev-{seed}"
                run(load_recipe(dev_path), dev_out, workers=args.workers, overwrite=True, progress=False,
                    log=lambda _msg: None)
                for tier in tiers:
                    path = write_recipe(folder, recipe_data(
                        f"{tier}-{seed}", 100 * TIERS.index(tier) + seed, noise[tier], held, splits,
                        speech="speech_train.csv", snr=[60, 60] if tier == "clean" else [0, 20],
                        guards={"pools": {"speech": {"max_reuse_factor": None}}}))
                    r = measure(folder, tier, seed, path, dev_out, args.workers, args.allow_narrow,
                                keep=args.data is not None)
                    results.append(r)
                    if r.get("refused"):
                        print(f"  {tier} seed {seed}: refused by the forecast", flush=True)
                    else:
                        print(f"  {tier} seed {seed}: reuse {r['reuse']:.4g} (guard {r['guard_reuse']:.4g}), "
                              f"eff. sources {r['effective_sources']:.3g}, Vendi {r['vendi']:.3g}, forecast "
                              f"{'pass' if r['forecast_passed'] else 'FAIL'}; probe errors "
                              + " ".join(f"{k}={v:.3f}" for k, v in r["errors"].items() if v is not None)
                              + f"; dominant {r['dominant']} ({r['run_s']:.0f} s)", flush=True)
                if args.data is None:
                    shutil.rmtree(dev_out, ignore_errors=True)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    wall = time.perf_counter() - t_start

    rows, corr = summarize(results, tiers, args.seeds)
    print(f"\nprobe (logistic regression on the 66-dim embedding, label {LABEL!r}) per set, mean ± sd over "
          f"{args.seeds} seed(s); {args.train} train, {args.train_dev} train_dev (seen noise), {args.train_dev} "
          f"train_dev_unseen (held-out noise) rows per set, {args.dev} dev rows (unused noise) per seed; errors "
          "and gaps in %; reuse, effective sources and Vendi over the train + train_dev rows' noise; 'reuse "
          "(guard)' is the run's coverage.json figure (every split, held-out items included); forecast: the "
          "guards' verdict before the run:")
    print_table(rows)
    print("\nSpearman rank correlation over every set and seed but clean (rho, p):")
    for name, c in corr.items():
        print(f"  {name:<40} rho {c['rho']:+.2f}  p {c['p']:.2g}  (n={c['n']})")
    print(f"\n{wall:.0f} s wall on {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
          f"1-minute load average {os.getloadavg()[0]:.1f}; max_reuse_factor default {limit:g}")
    if args.plot:
        plot(args.plot, results, tiers, limit)
        print(f"wrote {args.plot}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results,
                                         "table": rows, "spearman": corr, "wall_s": wall}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
