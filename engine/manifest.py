"""The output location's records: shard paths, resume state and ``manifest.json``.

The shard is the unit of truth: a shard whose stats file exists, names this recipe and
matches the shard's sha256 is done. The stats file is written after its shard, so on an
object store (no rename) it is the commit record. The manifest is always rebuilt from
what is there. Every function takes the output as a local folder, a URI or a
:class:`~engine.storage.Store`.

Example::

    state, reason = shard_state(out, spec, "arrow", recipe_hash(recipe))
    manifest = build_manifest(out, recipe, plan)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ShardError
from .plan import Plan, ShardSpec
from .recipe import Recipe, recipe_hash, recipe_to_dict
from .storage import TMP_MARK, Store

MANIFEST = "manifest.json"
REJECTS = "rejects.jsonl"
EXTENSIONS = {"arrow": ".arrow", "parquet": ".parquet"}


def as_store(out: str | Path | Store) -> Store:
    return out if isinstance(out, Store) else Store.open(out)


def shard_paths(spec: ShardSpec, fmt: str) -> tuple[str, str]:
    """``<split>/<split>-00000-of-00012.arrow`` and its ``.stats.json``, relative to OUT."""
    return f"{spec.split}/{spec.name}{EXTENSIONS[fmt]}", f"{spec.split}/{spec.name}.stats.json"


def read_json(out: str | Path | Store, rel: str) -> dict[str, Any] | None:
    """A JSON object stored under OUT, or None when it is missing or unreadable."""
    store = as_store(out)
    try:
        data = json.loads(store.read_bytes(rel).decode("utf-8"))
    except (ShardError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_stats(out: str | Path | Store, rel: str) -> dict[str, Any] | None:
    return read_json(out, rel)


def write_json(out: str | Path | Store, rel: str, data: Any, *, compact: bool = False) -> None:
    """Write JSON so that readers never see half a file (see :class:`Store`)."""
    text = (json.dumps(data, sort_keys=True, separators=(",", ":")) if compact
            else json.dumps(data, indent=1, sort_keys=True))
    as_store(out).write_bytes(rel, (text + "\n").encode("utf-8"))


def _stats_problem(stats: dict[str, Any] | None, spec: ShardSpec, rhash: str, size: int) -> str:
    """Why a stats record does not vouch for a shard of ``size`` bytes ("" when it does):
    the cheap checks, with the types every later reader relies on."""
    if stats is None:
        return "stats file missing or unreadable"
    if stats.get("recipe_hash") != rhash:
        return "written by another recipe"
    rows, nbytes = stats.get("rows"), stats.get("bytes")
    if type(rows) is not int or rows != spec.rows:
        return f"has {rows!r} rows, plan says {spec.rows}"
    if type(nbytes) is not int or size != nbytes:
        return f"size {size} != {nbytes!r} bytes recorded"
    if not isinstance(stats.get("sha256"), str) or not isinstance(stats.get("stats", {}), dict) \
            or not isinstance(stats.get("rejects", []), list):
        return "stats file has fields of the wrong type"
    return ""


def shard_state(out: str | Path | Store, spec: ShardSpec, fmt: str, rhash: str, *,
                verify: bool = True, sizes: dict[str, int] | None = None) -> tuple[str, str]:
    """``("done", "")``, ``("missing", reason)`` or ``("damaged", reason)`` for one planned shard.
    ``sizes`` (from :meth:`Store.sizes`) saves a request per shard when checking many."""
    store = as_store(out)
    shard, stats_rel = shard_paths(spec, fmt)
    size = store.size(shard) if sizes is None else sizes.get(shard)
    if size is None:
        return ("missing", "no shard file")
    stats = read_stats(store, stats_rel)
    problem = _stats_problem(stats, spec, rhash, size)
    if problem:
        return ("damaged", problem)
    assert stats is not None
    if verify and store.sha256(shard) != stats["sha256"]:
        return ("damaged", "sha256 does not match the stats file")
    return ("done", "")


def clean_temporary(out: str | Path | Store) -> int:
    """Remove temporary files a killed run left behind (only our own ``.name.tmp-*``).

    Object stores have none: an object appears only when its upload completes.
    """
    store = as_store(out)
    if not store.is_local:
        return 0
    root = store.local_path()
    removed = 0
    if not root.is_dir():
        return 0
    for folder in [root, *[p for p in root.iterdir() if p.is_dir()]]:
        for p in folder.iterdir():
            if p.name.startswith(".") and TMP_MARK in p.name and p.is_file():
                p.unlink(missing_ok=True)
                removed += 1
    return removed


def read_manifest(out: str | Path | Store) -> dict[str, Any] | None:
    store = as_store(out)
    if not store.exists(MANIFEST):
        return None
    try:
        data = json.loads(store.read_bytes(MANIFEST).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ShardError(
            f"{store.display(MANIFEST)}: manifest is unreadable ({exc}); move it away or use another --out"
        ) from None
    if not isinstance(data, dict):
        raise ShardError(f"{store.display(MANIFEST)}: manifest is not a JSON object; move it away or use another --out")
    if not isinstance(data.get("recipe_hash"), str) or not isinstance(data.get("splits"), dict):
        # Another tool's manifest.json: never delete it (--overwrite) nor write beside it.
        raise ShardError(
            f"{store.display(MANIFEST)}: was not written by shardsmith (no recipe_hash and splits), so "
            f"{store.display()} is not a shardsmith output; choose an empty or new location for --out"
        )
    return data


def manifest_files(manifest: dict[str, Any]) -> list[str]:
    """Every file a manifest accounts for, relative to OUT (what --overwrite may delete)."""
    files = [MANIFEST, REJECTS]
    splits = manifest.get("splits")
    for split in splits.values() if isinstance(splits, dict) else []:
        shards = split.get("shards") if isinstance(split, dict) else None
        for shard in shards if isinstance(shards, list) else []:
            if isinstance(shard, dict):
                files += [shard[k] for k in ("file", "stats") if k in shard]
    for key in ("planned_files", "extra_files"):
        more = manifest.get(key)
        files += more if isinstance(more, list) else []
    return list(dict.fromkeys(f for f in files if isinstance(f, str)))


def prepare_out(out: str | Path | Store, recipe: Recipe, plan: Plan, *, overwrite: bool) -> dict[str, Any] | None:
    """Check OUT before a run; with ``overwrite`` delete what an old manifest lists.

    Returns the existing manifest when this run resumes the same recipe.
    """
    store = as_store(out)
    rhash = recipe_hash(recipe)
    if store.is_local and store.local_path().exists() and not store.local_path().is_dir():
        raise ShardError(f"{store.display()}: --out exists and is not a folder")
    old = read_manifest(store)
    if old is not None and old.get("recipe_hash") != rhash:
        if not overwrite:
            raise ShardError(
                f"{store.display()}: holds the output of another recipe ({old.get('recipe_name')!r}, hash "
                f"{str(old.get('recipe_hash'))[:12]}; this one is {rhash[:12]}). Use a new --out, "
                "or --overwrite to delete the files that run's manifest lists and start again"
            )
        remove_listed(store, old)
        return None
    if old is None and not store.is_empty():
        raise ShardError(
            f"{store.display()}: is not empty and has no {MANIFEST}, so it is not a shardsmith output; "
            "choose an empty or new location for --out"
        )
    if old is not None and overwrite:
        remove_listed(store, old)
        return None
    return old


def _inside(rel: str) -> bool:
    """A manifest entry that stays inside OUT (no absolute path, no '..')."""
    parts = Path(rel).parts
    return bool(parts) and not Path(rel).is_absolute() and ".." not in parts


def remove_listed(out: str | Path | Store, manifest: dict[str, Any]) -> int:
    """Delete the files a manifest lists (never anything outside OUT), and local folders
    left empty by that; nothing else."""
    store = as_store(out)
    removed = 0
    listed = [rel for rel in manifest_files(manifest) if isinstance(rel, str) and _inside(rel)]
    for rel in listed:
        if store.delete(rel):
            removed += 1
    if store.is_local:
        root = store.local_path().resolve()
        for d in sorted({(root / rel).parent for rel in listed}, reverse=True):
            if d != root and d.is_dir() and not any(d.iterdir()):
                d.rmdir()
    return removed


def build_manifest(out: str | Path | Store, recipe: Recipe, plan: Plan) -> dict[str, Any]:
    """Rebuild the manifest from the shard and stats files that are there (no timestamps)."""
    store = as_store(out)
    rhash = recipe_hash(recipe)
    fmt = recipe.output.format
    present = store.sizes()
    splits: dict[str, Any] = {}
    complete = True
    for split, planned in plan.splits.items():
        shards = []
        rows = 0
        seconds = 0.0
        for spec in plan.shards_of(split):
            shard, stats_rel = shard_paths(spec, fmt)
            # The cheap checks of shard_state: a manifest written while damaged shards are
            # still waiting to be rewritten (a run stopped early) must not vouch for them.
            size = present.get(shard)
            stats = read_stats(store, stats_rel) if stats_rel in present and size is not None else None
            if size is None or _stats_problem(stats, spec, rhash, size):
                complete = False
                continue
            assert stats is not None
            shards.append({"file": shard, "stats": stats_rel, "rows": stats["rows"],
                           "bytes": stats["bytes"], "sha256": stats["sha256"]})
            rows += stats["rows"]
            seconds += stats.get("stats", {}).get("seconds", 0.0)
        splits[split] = {"samples": planned, "rows": rows, "seconds": seconds, "shards": shards}
    return {
        "recipe_name": recipe.name,
        "recipe_hash": rhash,
        "engine_version": _version(),
        "format": fmt,
        "status": "complete" if complete else "partial",
        "total_rows": sum(s["rows"] for s in splits.values()),
        "recipe": recipe_to_dict(recipe),
        "recipe_dir": str(recipe.base_dir),
        "splits": splits,
        "rejects": REJECTS,
        # Every shard and stats file this recipe may write, done or not: a run killed before
        # it could list its shards (or stopped with damaged ones unlisted) still names them,
        # so --overwrite removes them too and no stale shard of the old plan is left behind.
        "planned_files": [rel for spec in plan.shards for rel in shard_paths(spec, fmt)],
    }


def write_manifest(out: str | Path | Store, manifest: dict[str, Any]) -> None:
    write_json(out, MANIFEST, manifest)


def write_rejects(out: str | Path | Store, rejects: list[dict[str, Any]]) -> None:
    """``rejects.jsonl``: one JSON object per rejected file with its path and reason."""
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rejects)
    as_store(out).write_bytes(REJECTS, text.encode("utf-8"))


def shard_files(out: str | Path | Store, split: str | None = None) -> list:
    """The shard files of a finished (or partial) run, in plan order, from its manifest:
    local paths for a folder, URIs for an object store.

    Example: ``shard_files("out/demo", "train")``
    """
    store = as_store(out)
    manifest = read_manifest(store)
    if manifest is None:
        raise ShardError(f"{store.display()}: no manifest.json; is this a shardsmith output folder?")
    if split is not None and split not in manifest["splits"]:
        raise ShardError(f"{store.display()}: no split {split!r}; splits are {sorted(manifest['splits'])}")
    rels = [sh["file"] for name, s in manifest["splits"].items() if split is None or name == split
            for sh in s["shards"]]
    if store.is_local:
        return [store.local_path(rel) for rel in rels]
    return [store.display(rel) for rel in rels]


def _version() -> str:
    from . import __version__

    return __version__
