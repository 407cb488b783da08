"""Train / train-dev / dev / test planning when the target data is scarce.

The textbook recipe for a mismatched distribution: dev and test come only from the
target distribution (the data the model will meet), the rest of the target goes into
training beside the plentiful other data, and a train-dev set is carved from the
training distribution so that variance (train -> train-dev) and data mismatch
(train-dev -> dev) can be told apart.

:func:`plan_splits` does that from manifests tagged by origin, deterministically by seed;
:func:`write_splits` writes one manifest per split (CSV, JSONL or Parquet, with an
``origin`` column) whose paths resolve from the manifest's own folder, so each works as
a pool in a recipe (``pools: {train: {manifest: splits/train.csv}}``).

Example::

    plan = plan_splits({"web": "web.csv", "app": "app.csv"}, "app", dev=500, test=500, train_dev=0.05, seed=1)
    write_splits(plan, "splits/")
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import csv as pacsv

from .errors import InputError
from .storage import write_json
from .media import find_media
from .report import count, plural
from .rng import keyed_rng, split_id
from .tables import manifest_paths

__all__ = ["SPLIT_NAMES", "SplitPlan", "parse_size", "read_source", "plan_splits", "write_splits"]

SPLIT_NAMES = ("train", "train_dev", "dev", "test")
SUMMARY_FILE = "split_summary.json"
FORMATS = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}


def parse_size(value: Any, what: str) -> int | float:
    """A split size: a whole count (``500``) or a fraction (``0.05`` or ``5%``) of what it is
    taken from.

    Example: ``parse_size("5%", "--train-dev") == 0.05``
    """
    if isinstance(value, bool):
        raise InputError(f"{what}: expected a count (500) or a fraction (0.05 or 5%), got {value!r}")
    if isinstance(value, int):
        count = value
    elif isinstance(value, float):
        return _fraction(value, what, str(value))
    else:
        s = str(value).strip()
        if s.endswith("%"):
            try:
                return _fraction(float(s[:-1]) / 100.0, what, s)
            except ValueError:
                raise InputError(f"{what}: cannot read {s!r} as a percentage") from None
        if re.fullmatch(r"\d+", s):
            count = int(s)
        else:
            try:
                return _fraction(float(s), what, s)
            except ValueError:
                raise InputError(
                    f"{what}: expected a count (500) or a fraction (0.05 or 5%), got {s!r}"
                ) from None
    if count < 0:
        raise InputError(f"{what}: a count must be >= 0, got {count}")
    return count


def _fraction(v: float, what: str, shown: str) -> float:
    if not 0.0 <= v < 1.0:
        raise InputError(f"{what}: a fraction must be in [0, 1), got {shown} (write a whole number for a count)")
    return v


def _resolve(size: int | float, total: int) -> int:
    return int(round(size * total)) if isinstance(size, float) else int(size)


def read_source(origin: str, path: str | Path, *, path_column: str = "path") -> pa.Table:
    """One origin's items as a table with absolute paths in ``path``: from a manifest (CSV,
    TSV, JSONL or Parquet; relative paths from its folder; other columns kept) or a folder
    (every audio or image file under it).

    Example: ``read_source("app", "data/app/manifest.csv").num_rows``
    """
    p = Path(path)
    if p.is_dir():
        files = [os.path.abspath(f) for f in find_media(p)]
        if not files:
            raise InputError(f"--source {origin}={path}: the folder holds no audio or image files")
        return pa.table({"path": files})
    if not p.exists():
        raise InputError(f"--source {origin}={path}: not found (give a manifest file or a folder)")
    table, _, resolved = manifest_paths(p, path_column, fix="add it or set --path-column")
    paths = [os.path.abspath(f) for f in resolved]
    table = table.drop_columns([path_column])
    return table.add_column(0, "path", pa.array(paths, type=pa.string()))


def _unify(tables: list[pa.Table]) -> pa.Table:
    """Concatenate tables with different columns; a column whose types disagree becomes string."""
    columns: dict[str, set[pa.DataType]] = {}
    for t in tables:
        for f in t.schema:
            columns.setdefault(f.name, set()).add(f.type)
    types = {}
    for name, ts in columns.items():
        ts = {t for t in ts if not pa.types.is_null(t)} or {pa.string()}
        types[name] = ts.pop() if len(ts) == 1 else pa.string()
    fixed = []
    for t in tables:
        arrays = []
        for name, typ in types.items():
            if name in t.column_names:
                col = t.column(name)
                arrays.append(col if col.type == typ else col.cast(typ))
            else:
                arrays.append(pa.nulls(t.num_rows, type=typ))
        fixed.append(pa.table(arrays, names=list(types)))
    return pa.concat_tables(fixed)


@dataclass
class SplitPlan:
    """The rows of each split (a table with ``path``, ``origin`` and the manifests' columns)
    and a JSON-able summary."""

    tables: dict[str, pa.Table]
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"target origin: {self.summary['target']}  seed: {self.summary['seed']}"]
        for name in SPLIT_NAMES:
            s = self.summary["splits"][name]
            origins = ", ".join(f"{o} {n}" for o, n in s["by_origin"].items() if n)
            lines.append(f"  {name:<10} {s['rows']:>8} rows  ({origins or 'empty'})")
        for note in self.notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)


def _rng(seed: int, stream: str) -> np.random.Generator:
    return keyed_rng(int(seed), split_id(stream))


def _take_units(order: list[Any], rows_of: Mapping[Any, list[int]], want: int, start: int) -> tuple[list[int], int]:
    """Whole units from ``order[start:]`` until at least ``want`` rows; (rows, next start)."""
    taken: list[int] = []
    i = start
    while len(taken) < want and i < len(order):
        taken += rows_of[order[i]]
        i += 1
    return taken, i


def plan_splits(
    sources: Mapping[str, str | Path],
    target: str,
    *,
    dev: int | float | str,
    test: int | float | str,
    train_dev: int | float | str,
    seed: int = 0,
    group_column: str | None = None,
    path_column: str = "path",
) -> SplitPlan:
    """Plan train / train_dev / dev / test from sources tagged by origin.

    Dev and test are drawn only from the ``target`` origin (a count, or a fraction of the
    target's rows); the rest of the target and every other origin form the training pool;
    train_dev is carved from that pool (a count or a fraction of it), in proportion to
    each origin's share, so it follows the training distribution. Deterministic by
    ``seed``. With ``group_column`` (e.g. ``speaker``) whole groups go to one split, and
    rows of other origins whose group is in dev or test are left out of training (no
    leak); counts are then reached with whole groups (at least the number asked for).
    The same file listed twice is kept once (the first listing).

    Example: ``plan_splits({"web": "web.csv", "app": "app.csv"}, "app", dev=500, test=500, train_dev=0.05)``
    """
    if not sources:
        raise InputError("give at least one --source ORIGIN=MANIFEST")
    if target not in sources:
        raise InputError(f"--target {target!r} is not one of the source origins ({', '.join(sources)})")
    dev_size = parse_size(dev, "--dev")
    test_size = parse_size(test, "--test")
    td_size = parse_size(train_dev, "--train-dev")
    notes: list[str] = []

    tables = []
    for origin, path in sources.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", origin):
            raise InputError(f"--source {origin}={path}: an origin must be letters, digits, '_', '.' or '-'")
        t = read_source(origin, path, path_column=path_column)
        if "origin" in t.column_names:
            notes.append(f"{path}: its own 'origin' column is replaced by the tag {origin!r}")
            t = t.drop_columns(["origin"])
        tables.append(t.add_column(1, "origin", pa.array([origin] * t.num_rows, type=pa.string())))
    table = _unify(tables)
    if group_column is not None and group_column not in table.column_names:
        raise InputError(
            f"--group-column {group_column!r}: no manifest has that column "
            f"(columns: {', '.join(c for c in table.column_names if c not in ('path', 'origin'))})"
        )

    paths = table.column("path").to_pylist()
    origins = table.column("origin").to_pylist()
    first: dict[str, int] = {}
    keep = []
    for i, p in enumerate(paths):
        if p in first:
            continue
        first[p] = i
        keep.append(i)
    duplicates = len(paths) - len(keep)
    if duplicates:
        notes.append(f"{count(duplicates, 'file')} listed more than once; each is kept once (its first listing)")
    groups = table.column(group_column).to_pylist() if group_column else None

    def unit(i: int) -> Any:
        return ("g", str(groups[i])) if groups is not None else ("r", i)

    target_rows = [i for i in keep if origins[i] == target]
    if not target_rows:
        raise InputError(f"--target {target}: its source lists no files")
    t_units: dict[Any, list[int]] = {}
    for i in target_rows:
        t_units.setdefault(unit(i), []).append(i)
    t_order = sorted(t_units, key=lambda u: (u[0], str(u[1])) if groups is not None else u)
    t_order = [t_order[j] for j in _rng(seed, "target").permutation(len(t_order))]
    n_dev, n_test = _resolve(dev_size, len(target_rows)), _resolve(test_size, len(target_rows))
    if n_dev + n_test > len(target_rows):
        raise InputError(
            f"--dev {n_dev} and --test {n_test} need {n_dev + n_test} target rows, but {target!r} has only "
            f"{len(target_rows)}; ask for fewer (or fractions, e.g. --dev 0.25 --test 0.25)"
        )
    dev_rows, nxt = _take_units(t_order, t_units, n_dev, 0)
    test_rows, nxt = _take_units(t_order, t_units, n_test, nxt)
    if len(dev_rows) + len(test_rows) >= len(target_rows) and len(target_rows) > n_dev + n_test:
        notes.append("whole groups took every target row into dev and test; none is left for training")
    held_units = {unit(i) for i in dev_rows + test_rows}
    held_rows = set(dev_rows) | set(test_rows)
    pool = [i for i in keep if i not in held_rows]
    leaked = [i for i in pool if groups is not None and unit(i) in held_units]
    if leaked:
        notes.append(
            f"{count(len(leaked), 'row')} of other origins {plural(len(leaked), 'shares', 'share')} a {group_column} with dev or test and were left out of training"
        )
        leaked_set = set(leaked)
        pool = [i for i in pool if i not in leaked_set]

    n_td = _resolve(td_size, len(pool))
    if n_td >= len(pool) and len(pool) > 0:
        raise InputError(f"--train-dev {n_td} would take the whole training pool ({len(pool)} rows); ask for fewer")
    if groups is not None:
        p_units: dict[Any, list[int]] = {}
        for i in pool:
            p_units.setdefault(unit(i), []).append(i)
        order = sorted(p_units, key=lambda u: str(u[1]))
        order = [order[j] for j in _rng(seed, "train_dev").permutation(len(order))]
        td_rows, _ = _take_units(order, p_units, n_td, 0)
    else:
        # Stratified by origin (largest remainder): train-dev has train's mix of origins.
        by_origin: dict[str, list[int]] = {}
        for i in pool:
            by_origin.setdefault(origins[i], []).append(i)
        quotas = {o: n_td * len(rows) / len(pool) for o, rows in by_origin.items()} if pool else {}
        alloc = {o: int(q) for o, q in quotas.items()}
        rest = n_td - sum(alloc.values())
        for o in sorted(quotas, key=lambda o: (-(quotas[o] - alloc[o]), list(sources).index(o)))[:rest]:
            alloc[o] += 1
        td_rows = []
        for o, rows in by_origin.items():
            perm = _rng(seed, f"train_dev/{o}").permutation(len(rows))
            td_rows += [rows[j] for j in perm[: alloc[o]]]
    td_set = set(td_rows)
    train_rows = [i for i in pool if i not in td_set]

    chosen = {"train": train_rows, "train_dev": td_rows, "dev": dev_rows, "test": test_rows}
    out_tables = {name: table.take(pa.array(sorted(rows), type=pa.int64())) for name, rows in chosen.items()}
    summary = {
        "seed": int(seed),
        "target": target,
        "group_column": group_column,
        "requested": {"dev": dev_size, "test": test_size, "train_dev": td_size},
        "sources": {o: {"path": os.path.abspath(p), "rows": sum(1 for x in origins if x == o)} for o, p in sources.items()},
        "duplicates_dropped": duplicates,
        "group_leaks_dropped": len(leaked),
        "splits": {
            name: {
                "rows": len(rows),
                "by_origin": {o: sum(1 for i in rows if origins[i] == o) for o in sources},
            }
            for name, rows in chosen.items()
        },
    }
    return SplitPlan(out_tables, summary, notes)


def write_splits(
    plan: SplitPlan,
    out: str | Path,
    *,
    relative_paths: bool = True,
    fmt: str = "csv",
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write ``train``, ``train_dev``, ``dev`` and ``test`` manifests and ``split_summary.json``
    into ``out``. Paths are relative to ``out`` (so the folder can move with the data) or,
    with ``relative_paths=False``, absolute. Existing split files are replaced only with
    ``overwrite``.

    Example: ``write_splits(plan, "splits/")["dev"]  # splits/dev.csv``
    """
    if fmt not in FORMATS:
        raise InputError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: --out exists and is not a folder")
    files = {name: out / f"{name}{FORMATS[fmt]}" for name in SPLIT_NAMES}
    existing = [f for f in [*files.values(), out / SUMMARY_FILE] if f.exists()]
    if existing and not overwrite:
        raise InputError(
            f"{out}: already holds {', '.join(f.name for f in existing)}; use --overwrite to replace them "
            "or choose another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    root = out.resolve()
    written: dict[str, Path] = {}
    for name, table in plan.tables.items():
        paths = table.column("path").to_pylist()
        if relative_paths:
            paths = [Path(os.path.relpath(p, root)).as_posix() for p in paths]
        t = table.set_column(0, "path", pa.array(paths, type=pa.string()))
        _write_table(t, files[name], fmt)
        written[name] = files[name]
    summary = json.loads(json.dumps(plan.summary))
    if relative_paths:
        for src in summary["sources"].values():
            src["path"] = Path(os.path.relpath(src["path"], root)).as_posix()
    summary["paths"] = "relative to this folder" if relative_paths else "absolute"
    summary["files"] = {name: f.name for name, f in written.items()}
    summary["notes"] = list(plan.notes)
    write_json(out, SUMMARY_FILE, summary)
    return written


def _write_table(table: pa.Table, path: Path, fmt: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if fmt == "csv":

            pacsv.write_csv(table, tmp)
        elif fmt == "parquet":

            pq.write_table(table, tmp)
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                for row in table.to_pylist():
                    f.write(json.dumps(row, sort_keys=False, default=str) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write ({exc.strerror or exc})") from None
