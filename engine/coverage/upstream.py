"""Reuse through a chain: a stage-2 pool whose items are the rows of a shardsmith output
(``format: table`` over a stage-1 output folder) reuses stage 1's own sources.

For each such output, the report's ``upstream`` section gives, per pool of stage 1
(speech, noise, ...), the same figures as a pool of the run itself, counted through the
chain: a stage-2 use of a stage-1 row counts one use of every source piece that row names
(with the piece's seconds), and the one-second buckets its pieces cover are unique seconds
used. How far: **one level**. A stage 1 that itself came from a stage 0 shows stage 1's
sources (stage 0's rows); the upstream of the upstream is not followed.

It scales with the counts, not with stage 2's rows: stage 2's merged stats already hold
how often each of its items (a stage-1 row) was used; stage 1's rows are read once, only
their ``sample_id`` and ``sources`` columns (and the key column when the pool names
one), a shard at a time, and only the used rows' sources are decoded.

Example::

    upstream = upstream_figures(recipe, cs)
    upstream["speech"]["outputs"][0]["pools"]["noise"]["reuse_factor"]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..layout import POOL_INDEX_FILE
from ..run_record import find_run_record, shard_files
from ..shards import read_columns
from ..stats import bucket_ranges, merge_ranges
from ..storage import Store, is_uri
from .catalog import catalog_from_parquet
from .merge import CoverageStats

UPSTREAM_DEPTH = 1  # stage 1's own sources; the upstream of an upstream is not followed


def upstream_outputs(pool: Any, base_dir: Path) -> list[tuple[str, Store]]:
    """``(path as the recipe names it, its store)`` of each of a pool's ``paths`` that is a
    shardsmith output folder (a path with no glob that holds a run record)."""
    if getattr(pool, "format", "files") != "table":
        return []
    found = []
    for pattern in pool.paths:
        if any(c in pattern for c in "*?["):
            continue
        full = pattern if is_uri(pattern) or os.path.isabs(pattern) else str(base_dir / pattern)
        try:
            store = Store.open(full)
            if find_run_record(store) is None:
                continue
        except Exception:  # noqa: BLE001 - not an output folder (a table file, gone, unreadable)
            continue
        found.append((pattern, store))
    return found


def _item_prefix(path: str, base_dir: Path) -> str:
    """The item id prefix of a table file, as ``engine.formats.list_table_items`` names it."""
    return path if is_uri(path) else Path(os.path.relpath(path, base_dir)).as_posix()


def chain_figures(used: dict[str, int], store: Store, base_dir: Path,
                  key_column: str | None = None) -> dict[str, Any]:
    """The figures of one stage-1 output through the chain, from ``used``: stage-2 item id
    (a stage-1 row, ``<shard>#row=<n>``) -> stage-2 uses."""
    _, record = find_run_record(store)  # type: ignore[misc]
    with store.open_input(POOL_INDEX_FILE) as f:
        catalog = catalog_from_parquet(f)
    # pool -> item -> [uses, microseconds, flat bucket ranges]: a shard-stats pool block
    usage: dict[str, dict[str, list]] = {}
    rows_available = rows_used = uses = 0
    matched: set[str] = set()
    key_col = key_column or "sample_id"
    for path in shard_files(store):
        table = read_columns(path, sorted({"sample_id", "sources", key_col}))
        rows_available += table.num_rows
        prefix = _item_prefix(str(path), base_dir)
        keys = (table.column(key_column).to_pylist() if key_column
                else [f"row={i}" for i in range(table.num_rows)])
        if key_column:
            keys = [f"{key_column}={k}" for k in keys]
        picks, weights = [], []
        for i, k in enumerate(keys):
            n = used.get(f"{prefix}#{k}", 0)
            if n:
                picks.append(i)
                weights.append(n)
                matched.add(f"{prefix}#{k}")
        if not picks:
            continue
        rows_used += len(picks)
        uses += sum(weights)
        sources = table.column("sources").take(np.asarray(picks, np.int64)).to_pylist()
        for w, pieces in zip(weights, sources):
            for src in pieces or []:
                pool, item = str(src["pool"]), str(src["item"])
                dur = float(src.get("duration_s") or 0.0)
                entry = usage.setdefault(pool, {}).setdefault(item, [0, 0, []])
                entry[0] += w
                entry[1] += w * int(round(dur * 1e6))
                cat = catalog.get(pool)
                at = cat.positions.get(item) if cat is not None else None
                if at is not None:  # an item of the pool index (tracked): its timeline's buckets
                    for a, b in bucket_ranges(float(src.get("start_s") or 0.0), dur, float(cat.duration_s[at])):
                        entry[2] += [a, b]
                    if len(entry[2]) > 64:
                        entry[2] = merge_ranges(entry[2])
    cs = CoverageStats(catalog, {})
    cs.add_shard({"rows": rows_used, "pools": {
        pool: {"items": sorted(t), "uses": [t[i][0] for i in sorted(t)], "us": [t[i][1] for i in sorted(t)],
               "buckets": [merge_ranges(t[i][2]) for i in sorted(t)]}
        for pool, t in usage.items()}})
    return {
        "recipe_name": (record.get("recipe") or {}).get("name", ""),
        "recipe_hash": record.get("recipe_hash", ""),
        "rows_available": rows_available,
        "rows_used": rows_used,
        "uses": uses,
        "pools": {name: cs.pool_figures(name) for name in sorted(catalog)},
        "_matched": matched,
    }


def upstream_figures(recipe: Any, cs: CoverageStats) -> dict[str, Any]:
    """Per pool of the recipe whose items are rows of shardsmith outputs: ``depth`` (1),
    ``uses`` of the pool, ``unmatched_uses`` (uses of items found in none of its outputs'
    rows) and per output its path and the figures of :func:`chain_figures`. Empty when no
    pool is an upstream output."""
    out: dict[str, Any] = {}
    for name in sorted(recipe.pools):
        pool = recipe.pools[name]
        outputs = upstream_outputs(pool, Path(recipe.base_dir))
        if not outputs or name not in cs.catalog:
            continue
        cat, st = cs.catalog[name], cs.pools[name]
        idx = np.flatnonzero(st.uses > 0)
        used = {cat.items[i]: int(st.uses[i]) for i in idx.tolist()}
        entries, matched = [], set()
        for path, store in outputs:
            figs = chain_figures(used, store, Path(recipe.base_dir), getattr(pool, "key_column", None))
            matched |= figs.pop("_matched")
            entries.append({"path": path, **figs})
        out[name] = {
            "depth": UPSTREAM_DEPTH,
            "exact": cat.exact,
            "uses": int(st.total_uses),
            "unmatched_uses": int(sum(n for it, n in used.items() if it not in matched)),
            "outputs": entries,
        }
    return out
