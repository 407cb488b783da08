"""Analyzing a run's output folder: read its run record, pool index and shard stats, and
merge them into the coverage report (a run writes it as ``OUT/coverage.json`` through its
sink), with the ``upstream`` section of pools that are shardsmith outputs (``upstream``).

Example::

    report, cs = load_coverage_stats("out/demo_in_car")
    analyze_coverage("out/demo_in_car")["passed"]
    read_probe("out/demo_in_car")   # the probe's verdict (OUT/probe.json), or None
"""

from __future__ import annotations

import io

from pathlib import Path
from typing import Any, Callable

from ..errors import ShardError
from ..layout import POOL_INDEX_FILE, PROBE_FILE
from ..recipe import parse_recipe
from ..resume import stats_problem
from ..run_record import find_run_record
from ..storage import Store, as_store, read_json, read_json_many
from .catalog import catalog_from_parquet
from .figures import round_floats
from .merge import CoverageStats
from .upstream import upstream_figures


def analyze_coverage(out: str | Path, recipe: Any = None) -> dict[str, Any]:
    """Merge a run's shard stats into the coverage report (plain JSON data).

    Example: ``analyze_coverage("out/demo_in_car")["passed"]``
    """
    return load_coverage_stats(out, recipe)[0]


def load_coverage_stats(out: str | Path, recipe: Any = None) -> tuple[dict[str, Any], CoverageStats]:
    """The report and the merged :class:`CoverageStats` (for plots) of a run's output.

    The stats files are read ahead by threads (:func:`~engine.storage.read_json_many`: reading overlaps
    the merge), and merged in the run record's order. Of the run record's shard entries
    only each one's split and stats path are kept (the record is read as a stream): for
    10^5 shards a few MB, not a dict per shard."""
    store = as_store(out)
    splits: list[str] = []
    stats: list[str] = []

    def keep(path: tuple[str, ...], shard: Any) -> None:
        if len(path) == 3 and path[0] == "splits":  # ("splits", split, "shards")
            if not isinstance(shard, dict) or not isinstance(shard.get("stats"), str):
                raise ShardError(f"{store.display()}: a shard entry of split {path[1]!r} in the run record "
                                 "names no stats file; re-run the recipe into this folder to rewrite the record")
            splits.append(path[1])
            stats.append(shard["stats"])

    manifest, recipe, cs = start_coverage(store, recipe, entry=keep)
    for split, rel, record in zip(splits, stats, read_json_many(store, stats)):
        check_record(store, rel, record)
        cs.add_shard(record, split)  # type: ignore[arg-type]
    return finish_coverage(cs, recipe, manifest), cs


def check_record(store: Store, rel: str, record: dict[str, Any] | None) -> None:
    """A :class:`ShardError` naming a stats file the merge cannot read, and the fix."""
    if record is None:
        raise ShardError(f"{store.display(rel)}: stats file missing, unreadable or not a JSON "
                         "object; re-run the recipe into this folder to rewrite the shard")
    problem = stats_problem(record.get("stats", record))
    if problem:
        raise ShardError(f"{store.display(rel)}: stats file is damaged ({problem}); re-run the "
                         "recipe into this folder to rewrite the shard")


def start_coverage(out: str | Path | Store, recipe: Any = None,
                   entry: Callable[[tuple[str, ...], Any], None] | None = None
                   ) -> tuple[dict[str, Any], Any, CoverageStats]:
    """``(run record, recipe, an empty CoverageStats)`` of an output: the catalog from its
    pool index. A run starts one this way and adds each shard's stats record as the shard
    finishes, so the report at its end reads no stats file again (:func:`finish_coverage`).
    With ``entry``, the record is read lean and its long lists' entries go to ``entry``
    (see :func:`~engine.run_record.find_run_record`).

    Example: ``record, recipe, cs = start_coverage("out/demo")``
    """
    store = as_store(out)
    out = store.display()
    found = find_run_record(store, entry=entry)
    if found is None:
        raise ShardError(f"{out}: no run record (run.json); is this a shardsmith output folder?")
    record_file, manifest = found
    if recipe is None:
        try:
            recipe = parse_recipe(manifest["recipe"], source=store.display(record_file),
                                  base_dir=manifest.get("recipe_dir") or out)
        except KeyError:
            raise ShardError(f"{store.display(record_file)}: has no recipe; re-run the recipe into this folder") from None
    return manifest, recipe, new_coverage(store, recipe)


def new_coverage(out: str | Path | Store | None, recipe: Any, pool_index: bytes | None = None) -> CoverageStats:
    """An empty :class:`CoverageStats` for ``recipe`` over the catalog of OUT's pool index
    (or of ``pool_index``, that file's bytes before it is written).

    Example: ``cs = new_coverage("out/demo", recipe); cs.add_shard(record)``
    """
    if pool_index is not None:
        catalog = catalog_from_parquet(io.BytesIO(pool_index))
    else:
        store = as_store(out)
        if not store.exists(POOL_INDEX_FILE):
            raise ShardError(f"{store.display(POOL_INDEX_FILE)}: pool index not found; it is written when a run starts")
        with store.open_input(POOL_INDEX_FILE) as f:
            catalog = catalog_from_parquet(f)
    split_holdout = {name: cfg.holdout for name, cfg in recipe.splits.items()}
    return CoverageStats(catalog, split_holdout)


def finish_coverage(cs: CoverageStats, recipe: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    """The coverage report of merged stats ``cs`` and the output's run record ``manifest``
    (recipe hash, status), with the ``upstream`` section of chained pools."""
    report = cs.report(recipe, recipe_hash=manifest.get("recipe_hash", ""),
                       complete=manifest.get("status") == "complete")
    upstream = upstream_figures(recipe, cs)
    if upstream:  # pools whose items are rows of shardsmith outputs: reuse through the chain
        at = list(report).index("guards")
        items = list(report.items())
        report = dict(items[:at] + [("upstream", round_floats(upstream))] + items[at:])
    return report


def read_probe(out: str | Path) -> dict[str, Any] | None:
    """The mismatch probe's verdict recorded in ``OUT/probe.json`` (``shardsmith mismatch
    probe --record``), or None when there is none (or it is unreadable): ``{"path",
    "stale", "label", "errors", "gaps", "dominant", "dev", "seed"}``. ``stale`` says why the
    verdict may not describe the data the folder holds now (another recipe, or another
    number of rows, than when it was recorded), else None.

    Example: ``read_probe("out/diverse")["dominant"]  # e.g. 'data_mismatch'``
    """
    store = as_store(out)
    data = read_json(store, PROBE_FILE)
    probe = data.get("probe") if data else None
    if not isinstance(probe, dict) or not isinstance(probe.get("errors"), dict):
        return None
    found = find_run_record(store)
    record = found[1] if found else {}
    stale = None
    if data.get("recipe_hash") != record.get("recipe_hash"):  # type: ignore[union-attr]
        stale = "it was recorded for the output of another recipe"
    elif data.get("rows") != record.get("total_rows"):  # type: ignore[union-attr]
        stale = (f"it was recorded when the output had {data.get('rows')} rows; "  # type: ignore[union-attr]
                 f"it has {record.get('total_rows')} now")
    dev = (probe.get("sets") or {}).get("dev") or {}
    return {
        "path": store.display(PROBE_FILE),
        "stale": stale,
        "label": probe.get("label"),
        "errors": probe.get("errors"),
        "gaps": probe.get("gaps") or {},
        "dominant": probe.get("dominant"),
        "dev": dev.get("source"),
        "seed": probe.get("seed"),
    }
