"""The ``shardsmith`` command.

Errors that shardsmith raises on purpose are printed as one clear message (no
traceback) with exit code 2 for recipe errors, 3 for guard refusals and 1 otherwise.

Example::

    shardsmith demo-corpus demo_data
    shardsmith run recipes/demo_in_car.yaml --out out/demo_in_car
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import sys
from pathlib import Path

from .version import __version__
from .errors import InputError, ShardsmithError
from .env import arrow_without_pandas


def _check_path(path: str, arg: str, want: str, fix: str) -> None:
    """Refuse a path argument of the wrong kind (a FIFO, a device, a file for a folder or
    the other way round) before any work; see :func:`engine.storage.check_path_kind`."""
    # loaded per command: `shardsmith --help` imports no Ray, analyzer or codec
    from .storage import check_path_kind

    check_path_kind(path, arg=arg, want=want, fix=fix)


_RUN_FOLDER_FIX = "give a shardsmith output folder (the --out of `shardsmith run`)"


def _check_run_folder(path: str, arg: str) -> None:
    """Refuse a run's output folder argument that is of the wrong kind or not there at all
    (an output to read, unlike an --out to write, has to exist), naming ``arg`` and the path."""
    # loaded per command: `shardsmith --help` imports no Ray, analyzer or codec
    from .storage import is_uri

    _check_path(path, arg, "folder", _RUN_FOLDER_FIX)
    if not is_uri(path) and not os.path.exists(path.removeprefix("file://")):
        raise InputError(f"{arg} {path}: does not exist; {_RUN_FOLDER_FIX}")


def _recipe(args: argparse.Namespace):
    # loaded per command: `shardsmith --help` imports no Ray, analyzer or codec
    from .recipe import load_recipe

    return load_recipe(args.recipe, overrides=args.set or [])


def cmd_run(args: argparse.Namespace) -> int:
    # loaded per command: `shardsmith --help` imports no Ray, analyzer or codec
    from .runtime import run

    recipe = _recipe(args)
    # Kept as text: Path("s3://b/p") would fold the '//' into a local folder "s3:/b/p".
    out = args.out if args.out else Path("out") / recipe.name
    summary = run(
        recipe,
        out,
        workers=args.workers,
        address=args.address,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        allow_narrow=args.allow_narrow,
        verify=args.verify,
    )
    print(summary.describe())
    if summary.coverage_passed is False and not args.allow_narrow:
        print("shardsmith: error: the finished data fails its coverage guards (see above and "
              f"{summary.out}/coverage.json); exit code 3", file=sys.stderr)
        return 3
    return 0 if summary.status == "complete" else 1


def cmd_plan(args: argparse.Namespace) -> int:
    # loaded per command: `shardsmith --help` imports no Ray, analyzer or codec
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
        # loaded per command: `shardsmith --help` imports no Ray, analyzer or codec
        from .coverage import describe_forecast, forecast_coverage, guard_refusal

        forecast = forecast_coverage(recipe, index)
        print(describe_forecast(forecast))
        if not forecast["passed"]:
            if not args.allow_narrow:
                # loaded per command: `shardsmith --help` imports no Ray, analyzer or codec
                from .errors import GuardError

                raise GuardError(guard_refusal(forecast, recipe))
            print("the forecast fails the guards; a run with --allow-narrow would go ahead")
    else:
        print("coverage guards not forecast (--no-index)")
    return 0


def cmd_demo_corpus(args: argparse.Namespace) -> int:
    # loaded per command: `shardsmith --help` imports no Ray, analyzer or codec
    from .demo import generate_demo_corpus

    if args.seed < 0:
        raise ShardsmithError(f"--seed {args.seed}: must be a non-negative integer")
    _check_path(args.dir, "DIR", "folder", "give a folder for the demo corpus (created if missing)")
    try:
        summary = generate_demo_corpus(args.dir, seed=args.seed)
    except OSError as exc:
        where = exc.filename or args.dir
        raise ShardsmithError(f"{where}: cannot write the demo corpus ({exc.strerror or exc}); "
                              "give a folder you can write to as DIR") from None
    print(
        f"demo corpus in {summary['root']}: {summary['speech_files']} utterances "
        f"({summary['speech_seconds']:.0f} s), {summary['noise_files']} noise files "
        f"({summary['noise_seconds']:.0f} s), {summary['rir_files']} RIRs, {summary['images']} images"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    # loaded per command: `shardsmith --help` imports no Ray, analyzer or codec
    from .export import exported_rows, write_rows
    from .report import count

    _check_run_folder(args.out, "OUT")
    _check_path(args.to, "--to", "folder",
                "give a folder for the exported files (created if missing), e.g. --to exported/")
    if args.n < 0:
        raise InputError(f"--n {args.n}: must be 0 or more (the number of rows to export)")
    synth, rows = exported_rows(args.out, args.split, args.n)
    dest = Path(args.to)
    written = write_rows(synth, rows, dest)
    print(f"wrote {count(written, 'sample')} ({synth.media_column} files, each with a .json of its provenance) to {dest}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    # loaded per command: `shardsmith --help` imports no Ray, analyzer or codec
    from .replayer import Replayer

    _check_run_folder(args.out, "OUT")
    if not args.to and not args.check:
        raise InputError("give --to FILE to write the row's media, --check to compare it with the stored bytes, "
                         "or both")
    if args.to:
        _check_path(args.to, "--to", "file or folder",
                    "give a file to write the media to (e.g. --to sample.flac), or a folder to write it into")
    with Replayer(args.out) as replayer:
        replayed = replayer.replay(args.sample_id)
        if args.to:
            path = replayed.write(args.to)
            print(f"wrote {path} ({len(replayed.media)} bytes, made again from the params of {args.sample_id})")
    if replayed.identical:
        print(f"{args.sample_id}: the replayed {replayed.media_column} is byte-identical to the stored row's")
        return 0
    message = f"{args.sample_id}: the replay differs from the stored row: {replayed.difference()}"
    if args.check:
        print(f"shardsmith: error: {message}", file=sys.stderr)
        return 1
    print(message)
    return 0


# [coverage commands]


def cmd_coverage(args: argparse.Namespace) -> int:
    # loaded per command: `shardsmith --help` imports no Ray, analyzer or codec
    from .coverage import describe_coverage, load_coverage_stats, read_probe, report_json, write_coverage_html
    from .report import check_report_path

    if args.html:
        check_report_path(args.html)  # before any work
    _check_run_folder(args.out, "OUT")
    report, merged = load_coverage_stats(args.out)
    probe = read_probe(args.out)  # the probe's verdict, when `mismatch probe --record` ran
    if args.json:
        print(report_json({**report, "probe": probe} if probe else report))
    else:
        print(describe_coverage(report, probe))
    if args.html:
        path = write_coverage_html(args.html, report, merged, probe)
        print(f"wrote {path}", file=sys.stderr)
    return 0 if report["passed"] else 3


# [mismatch commands]


def _print_json(data) -> None:

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None  # NaN / Inf are not JSON
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    print(json.dumps(clean(data), indent=1, default=str))


def cmd_mismatch_errors(args: argparse.Namespace) -> int:
    # loaded per command: `shardsmith --help` imports no Ray, analyzer or codec
    from .mismatch import decompose_errors, decompose_table, read_general_table

    levels = {"human": args.human, "train": args.train, "train_dev": args.train_dev,
              "dev": args.dev, "test": args.test}
    given = {k: v for k, v in levels.items() if v is not None}
    if args.table:
        _check_path(args.table, "--table", "file", "give the general table as a CSV or JSON file")
        if given:
            raise ShardsmithError("give either --table or the error rates (--human, --train, ...), not both")
        result = decompose_table(read_general_table(args.table), confidence=args.confidence)
    else:
        result = decompose_errors(given, confidence=args.confidence)
    if args.json:
        _print_json(result.to_json())
    else:
        print(result.describe())
    return 0


def _named_path(value: str) -> tuple[str, str] | str:
    """``NAME=PATH`` -> (NAME, PATH); a bare path (or one that exists as written) stays."""
    name, sep, path = value.partition("=")
    if sep and name and path and not Path(value).exists() and all(c.isalnum() or c in "_.-" for c in name):
        return (name, path)
    return value


def cmd_mismatch_data(args: argparse.Namespace) -> int:
    # loaded per command: `shardsmith --help` imports no Ray, analyzer or codec
    from .mismatch import compare_data, data_report_html
    from .report import check_report_path, write_report

    if args.html:
        check_report_path(args.html)  # before any work
    train = [_named_path(t) for t in args.train]
    for t in train:
        _check_run_folder(t[1] if isinstance(t, tuple) else t, "--train")
    _check_path(args.dev, "--dev", "file or folder",
                "give a shardsmith output folder, a folder of audio/image files or a manifest file")
    result = compare_data(
        train,
        args.dev,
        train_split=args.train_split,
        dev_split=args.dev_split,
        seed=args.seed,
        max_n=args.max_n,
        k=args.k,
        n_permutations=args.permutations,
        folds=args.folds,
        path_column=args.path_column,
    )
    if args.html:
        write_report(args.html, data_report_html(result))
    if args.json:
        _print_json(result.to_json())
    else:
        print(result.describe())
        if args.html:
            print(f"report: {args.html}")
    return 0


def cmd_mismatch_slices(args: argparse.Namespace) -> int:
    # loaded per command: `shardsmith --help` imports no Ray, analyzer or codec
    from .mismatch import slice_errors

    _check_run_folder(args.shards, "--shards")
    _check_path(args.predictions, "--predictions", "file",
                "give a CSV/JSONL/Parquet file with sample_id and correct (or prediction)")
    report = slice_errors(
        args.shards, args.predictions, split=args.split, label_column=args.label_column, by=args.by or []
    )
    if args.json:
        _print_json(report.to_json())
    else:
        print(report.describe(top=args.top))
    return 0


def cmd_mismatch_probe(args: argparse.Namespace) -> int:
    # loaded per command: `shardsmith --help` imports no Ray, analyzer or codec
    from .mismatch import probe_errors, record_probe
    from .report import check_report_path, write_report

    if args.html:
        check_report_path(args.html)  # before any work
    _check_path(args.train, "--train", "folder", _RUN_FOLDER_FIX)
    target_fix = ("give a shardsmith output folder, a folder with one subfolder of audio/image files per class, "
                  "or a manifest file with a path and a label column")
    for arg, value in (("--dev", args.dev), ("--test", args.test)):
        if value is not None:
            _check_path(value, arg, "file or folder", target_fix)
    report = probe_errors(
        args.train, args.label, dev=args.dev, test=args.test, human=args.human, dev_split=args.dev_split,
        test_split=args.test_split, path_column=args.path_column, seed=args.seed, confidence=args.confidence,
    )
    if args.html:
        write_report(args.html, report.to_html())
    recorded = record_probe(report) if args.record else None
    if args.json:
        _print_json(report.to_json())
    else:
        print(report.describe(top=args.top))
        if args.html:
            print(f"report: {args.html}")
    if recorded:
        print(f"recorded the verdict in {recorded}; `shardsmith coverage {args.train}` shows it", file=sys.stderr)
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    # loaded per command: `shardsmith --help` imports no Ray, analyzer or codec
    from .splits import plan_splits, write_splits

    sources: dict[str, str] = {}
    for s in args.source:
        origin, sep, path = s.partition("=")
        if not sep or not origin or not path:
            raise ShardsmithError(f"--source {s!r}: expected ORIGIN=PATH, e.g. --source app=data/app.csv")
        if origin in sources:
            raise ShardsmithError(f"--source {origin}: given twice")
        _check_path(path, f"--source {origin}=", "file or folder",
                    "give a manifest file (CSV/TSV/JSONL/Parquet with a path column) or a folder of files")
        sources[origin] = path
    _check_path(args.out, "--out", "folder", "give a folder for the split manifests (created if missing)")
    plan = plan_splits(
        sources, args.target, dev=args.dev, test=args.test, train_dev=args.train_dev, seed=args.seed,
        group_column=args.group_column, path_column=args.path_column,
    )
    files = write_splits(plan, args.out, relative_paths=not args.absolute_paths, fmt=args.format,
                         overwrite=args.overwrite)
    print(plan.describe())
    print(f"wrote {', '.join(f.name for f in files.values())} and split_summary.json to {args.out}")
    return 0


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
                   help="delete the files an earlier run's record (run.json) lists in --out, then start again")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--verify", action="store_true",
                   help="on a resume, read every finished shard back and check its sha256 against its stats "
                        "file (by default a finished shard is trusted by its stats file: recipe hash, rows, size)")
    r.set_defaults(func=cmd_run)

    pl = sub.add_parser("plan", help="validate a recipe, index its pools and print the plan")
    recipe_args(pl)
    pl.add_argument("--no-index", action="store_true", help="do not probe the pools")
    pl.set_defaults(func=cmd_plan)

    d = sub.add_parser("demo-corpus", help="generate the built-in demo corpus (no download)")
    d.add_argument("dir", nargs="?", default="demo_data")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_demo_corpus)

    e = sub.add_parser("export", help="write samples as .wav (audio) or image files with JSON provenance")
    e.add_argument("out", help="a run's output folder")
    e.add_argument("--split", required=True, help="the split to export, e.g. train")
    e.add_argument("--n", type=int, default=20, help="rows to export, the split's first (default: %(default)s)")
    e.add_argument("--to", required=True, help="folder for the media files and their .json sidecars "
                   "(created if missing)")
    e.set_defaults(func=cmd_export)

    rp = sub.add_parser("replay", help="make one row's media again from its stored params (and check it is "
                        "byte-identical)")
    rp.add_argument("out", help="a run's output folder")
    rp.add_argument("sample_id", help="the row's sample_id, e.g. demo_in_car-train-000000003")
    rp.add_argument("--to", metavar="FILE", help="write the media here: the stored format's extension gives the "
                    "stored bytes; .wav (audio) or .png (images) converts losslessly; a folder takes the row's "
                    "file name")
    rp.add_argument("--check", action="store_true",
                    help="compare with the stored bytes; exit 1 if they differ")
    rp.set_defaults(func=cmd_replay)

    # [coverage parsers]
    narrow_help = ("go ahead although the coverage forecast fails the recipe's guards "
                   "(the report still shows the figures)")
    r.add_argument("--allow-narrow", action="store_true", help=narrow_help)
    pl.add_argument("--allow-narrow", action="store_true", help=narrow_help)
    cv = sub.add_parser("coverage", help="how varied a run's data is: reuse, sources, parameters, "
                        "embedding diversity; exit 3 if a guard fails")
    cv.add_argument("out", help="a run's output folder")
    cv.add_argument("--json", action="store_true", help="print the report as JSON (stable keys)")
    cv.add_argument("--html", metavar="FILE", help="also write an HTML report with plots")
    cv.set_defaults(func=cmd_coverage)

    # [mismatch parsers]
    mm = sub.add_parser("mismatch", help="which gap to work on: from error rates, from data, from predictions")
    msub = mm.add_subparsers(dest="mismatch_command", required=True)
    rate_help = "error rate: 0.12, 12%%, 12/1000 (errors/examples) or 12%%@1000 (rate@examples)"
    me = msub.add_parser("errors", help="avoidable bias, variance, data mismatch, dev overfitting from error rates")
    me.add_argument("--human", help=f"human-level (Bayes proxy) {rate_help}")
    me.add_argument("--train", help=f"training {rate_help}")
    me.add_argument("--train-dev", help=f"training-dev {rate_help}")
    me.add_argument("--dev", help=f"dev {rate_help}")
    me.add_argument("--test", help=f"test {rate_help}")
    me.add_argument("--table", metavar="FILE",
                    help="the general table instead (CSV or JSON: rows human-level / trained on / "
                         "not trained on; columns general data, then target data)")
    me.add_argument("--confidence", type=float, default=0.95, help="confidence level of the intervals")
    me.add_argument("--json", action="store_true", help="print JSON")
    me.set_defaults(func=cmd_mismatch_errors)

    md = msub.add_parser("data", help="how far each training set is from the dev data (embeddings)")
    md.add_argument("--train", action="append", required=True, metavar="[NAME=]OUT",
                    help="a shardsmith output folder (repeatable: compared side by side)")
    md.add_argument("--dev", required=True,
                    help="a shardsmith output folder, a folder of audio/image files, or a manifest of them")
    md.add_argument("--train-split", help="split of the --train folders (default: train, else all)")
    md.add_argument("--dev-split", help="split of a --dev output folder (default: dev, else all)")
    md.add_argument("--max-n", type=int, default=2000, help="items per side, seeded sub-sample (default 2000)")
    md.add_argument("--k", type=int, default=5, help="neighbours of the k-NN manifolds (default 5)")
    md.add_argument("--permutations", type=int, default=200, help="MMD permutations (default 200)")
    md.add_argument("--folds", type=int, default=5, help="domain-classifier cross-validation folds")
    md.add_argument("--seed", type=int, default=0)
    md.add_argument("--path-column", default="path", help="path column of a --dev manifest")
    md.add_argument("--json", action="store_true", help="print JSON")
    md.add_argument("--html", metavar="FILE", help="also write an HTML report with plots")
    md.set_defaults(func=cmd_mismatch_data)

    ms = msub.add_parser("slices", help="error rate per noise source, SNR band, transform, seen vs held-out")
    ms.add_argument("--shards", required=True, help="the shardsmith output folder the predictions are for")
    ms.add_argument("--predictions", required=True,
                    help="CSV/JSONL/Parquet with sample_id and correct, or sample_id and prediction (+ label)")
    ms.add_argument("--split", help="only this split's rows")
    ms.add_argument("--label-column", help="row column a prediction is compared with (default: label, else text)")
    ms.add_argument("--by", action="append", metavar="COLUMN", help="also slice by this row column (repeatable)")
    ms.add_argument("--top", type=int, default=20, help="rows of the error-analysis table to print")
    ms.add_argument("--json", action="store_true", help="print JSON")
    ms.set_defaults(func=cmd_mismatch_slices)

    mp = msub.add_parser("probe", help="fit a small fixed classifier on a run's train split and score it on "
                         "train-dev, held-out sources, dev and test: which gap dominates")
    mp.add_argument("--train", required=True, metavar="OUT",
                    help="the shardsmith output folder to fit on (its train split)")
    mp.add_argument("--label", required=True, metavar="COLUMN", help="the row column to classify, e.g. speaker")
    mp.add_argument("--dev", help="target data: a shardsmith output, a folder with one subfolder per class, "
                    "or a manifest (CSV/TSV/JSONL/Parquet) with a path and the label column")
    mp.add_argument("--test", help="a second target set, of the same kinds as --dev")
    mp.add_argument("--human", help=f"human-level (Bayes proxy) {rate_help}")
    mp.add_argument("--dev-split", help="split of a --dev output folder (default: dev, else all)")
    mp.add_argument("--test-split", help="split of a --test output folder (default: test, else all)")
    mp.add_argument("--path-column", default="path", help="path column of a --dev/--test manifest")
    mp.add_argument("--seed", type=int, default=0, help="seed of the held-back train-dev part (when OUT has no "
                    "train_dev split) and of sub-sampling")
    mp.add_argument("--confidence", type=float, default=0.95, help="confidence level of the intervals")
    mp.add_argument("--top", type=int, default=10, help="rows of each slice table to print")
    mp.add_argument("--json", action="store_true", help="print JSON")
    mp.add_argument("--html", metavar="FILE", help="also write an HTML report")
    mp.add_argument("--record", action="store_true",
                    help="record the verdict in OUT/probe.json, where `shardsmith coverage OUT` shows it")
    mp.set_defaults(func=cmd_mismatch_probe)

    sp = sub.add_parser("split", help="train / train-dev / dev / test manifests, dev and test from the target only")
    sp.add_argument("--source", action="append", required=True, metavar="ORIGIN=PATH",
                    help="a manifest (CSV/TSV/JSONL/Parquet with path) or folder, tagged by origin (repeatable)")
    sp.add_argument("--target", required=True, help="the origin dev and test come from")
    sp.add_argument("--dev", required=True, help="dev size: a count (500) or a fraction of the target (0.1, 10%%)")
    sp.add_argument("--test", required=True, help="test size: a count or a fraction of the target")
    sp.add_argument("--train-dev", required=True, help="train-dev size: a count or a fraction of the training pool")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", required=True, help="folder for train/train_dev/dev/test manifests")
    sp.add_argument("--group-column", help="keep groups (e.g. speaker) whole, and out of training when in dev/test")
    sp.add_argument("--path-column", default="path", help="path column of the source manifests")
    sp.add_argument("--format", default="csv", choices=["csv", "jsonl", "parquet"])
    sp.add_argument("--absolute-paths", action="store_true", help="write absolute paths (default: relative to --out)")
    sp.add_argument("--overwrite", action="store_true", help="replace split files already in --out")
    sp.set_defaults(func=cmd_split)

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


def run_cli() -> None:
    """The ``shardsmith`` command: :func:`main`, then an exit that skips the native
    libraries' teardown.

    After a command has done all its work, the C++ teardown of a native library's thread
    pool at process exit sometimes aborts (``terminate called without an active
    exception``, exit code 134; seen after ``mismatch slices`` in about 1 run of 8).
    Nothing is left to do by then: Python's own exit handlers run (Ray's shutdown,
    logging, temporary files), the streams are flushed, and the process ends with the
    command's exit code.
    """
    arrow_without_pandas()  # this process is shardsmith's own
    code = main()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run_cli()
