"""The ``shardsmith`` command.

Errors that shardsmith raises on purpose are printed as one clear message (no
traceback) with exit code 2 for recipe errors, 3 for guard refusals and 1 otherwise.

Example::

    shardsmith demo-corpus demo_data
    shardsmith run recipes/demo_in_car.yaml --out out/demo_in_car
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .errors import ShardsmithError


def _recipe(args: argparse.Namespace):
    from .recipe import load_recipe

    return load_recipe(args.recipe, overrides=args.set or [])


def cmd_run(args: argparse.Namespace) -> int:
    from .runtime import run

    recipe = _recipe(args)
    out = Path(args.out) if args.out else Path("out") / recipe.name
    summary = run(
        recipe,
        out,
        workers=args.workers,
        address=args.address,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(summary.describe())
    return 0 if summary.status == "complete" else 1


def cmd_plan(args: argparse.Namespace) -> int:
    from .plan import describe_plan, make_plan
    from .pools import index_pools
    from .recipe import recipe_hash

    recipe = _recipe(args)
    plan = make_plan(recipe)
    print(describe_plan(plan))
    print(f"recipe hash {recipe_hash(recipe)[:16]}")
    if not args.no_index:
        index = index_pools(recipe)
        print("pools:")
        print(index.summary())
        for r in index.rejects[:20]:
            print(f"  rejected {r['path']}: {r['reason']}")
        if len(index.rejects) > 20:
            print(f"  ... and {len(index.rejects) - 20} more")
    return 0


def cmd_demo_corpus(args: argparse.Namespace) -> int:
    from .demo import generate_demo_corpus

    summary = generate_demo_corpus(args.dir, seed=args.seed)
    print(
        f"demo corpus in {summary['root']}: {summary['speech_files']} utterances "
        f"({summary['speech_seconds']:.0f} s), {summary['noise_files']} noise files "
        f"({summary['noise_seconds']:.0f} s), {summary['rir_files']} RIRs, {summary['images']} images"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import numpy as np
    import soundfile as sf

    from .audio.io import decode
    from .manifest import shard_files
    from .shards import read_shard

    files = shard_files(args.out, args.split)
    dest = Path(args.to)
    dest.mkdir(parents=True, exist_ok=True)
    written = 0
    for f in files:
        table = read_shard(f)
        if "audio" not in table.column_names:
            raise ShardsmithError(f"{f}: has no audio column; export writes audio samples only")
        for row in table.to_pylist():
            if written >= args.n:
                break
            x, sr = decode(row["audio"]["bytes"])
            sf.write(dest / f"{row['sample_id']}.wav", np.asarray(x), sr, subtype="PCM_16")
            side = {k: v for k, v in row.items() if k not in ("audio", "embedding")}
            side["params"] = json.loads(side["params"])
            (dest / f"{row['sample_id']}.json").write_text(json.dumps(side, indent=1) + "\n")
            written += 1
        if written >= args.n:
            break
    print(f"wrote {written} sample(s) as .wav with .json provenance to {dest}")
    return 0


# [coverage commands]

# [mismatch commands]

# [image commands]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="shardsmith",
        description="Synthesize training data from a recipe on Ray, with provenance and coverage.",
    )
    p.add_argument("--version", action="version", version=f"shardsmith {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def recipe_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("recipe", help="recipe YAML file")
        sp.add_argument(
            "--set", action="append", metavar="KEY=VALUE",
            help="override a recipe field, e.g. --set splits.train.samples=200 (repeatable)",
        )

    r = sub.add_parser("run", help="run a recipe into an output folder (resumes if interrupted)")
    recipe_args(r)
    r.add_argument("--out", help="output folder (default: out/<recipe name>)")
    r.add_argument("--workers", type=int, help="parallel shard tasks (default: all CPUs)")
    r.add_argument("--address", help="join an existing Ray cluster (e.g. auto) instead of starting one")
    r.add_argument("--overwrite", action="store_true",
                   help="delete the files an earlier run's manifest lists in --out, then start again")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)

    pl = sub.add_parser("plan", help="validate a recipe, index its pools and print the plan")
    recipe_args(pl)
    pl.add_argument("--no-index", action="store_true", help="do not probe the pools")
    pl.set_defaults(func=cmd_plan)

    d = sub.add_parser("demo-corpus", help="generate the built-in demo corpus (no download)")
    d.add_argument("dir", nargs="?", default="demo_data")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_demo_corpus)

    e = sub.add_parser("export", help="write samples as .wav files with JSON provenance, to listen")
    e.add_argument("out", help="a run's output folder")
    e.add_argument("--split", required=True)
    e.add_argument("--n", type=int, default=20)
    e.add_argument("--to", required=True, help="folder for the .wav and .json files")
    e.set_defaults(func=cmd_export)

    # [coverage parsers]

    # [mismatch parsers]

    # [image parsers]
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ShardsmithError as exc:
        print(f"shardsmith: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("shardsmith: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
