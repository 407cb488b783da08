"""The output folder's records: shard paths, resume state and ``manifest.json``.

The shard is the unit of truth: a shard whose stats file exists, names this recipe and
matches the shard's sha256 is done. The manifest is always rebuilt from what is on disk.

Example::

    state, reason = shard_state(out, spec, "arrow", recipe_hash(recipe))
    manifest = build_manifest(out, recipe, plan)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import ShardError
from .plan import Plan, ShardSpec
from .recipe import Recipe, recipe_hash, recipe_to_dict
from .shards import EXTENSIONS, TMP_MARK, file_sha256, write_json_atomic

MANIFEST = "manifest.json"
REJECTS = "rejects.jsonl"


def shard_paths(out: Path, spec: ShardSpec, fmt: str) -> tuple[Path, Path]:
    """``OUT/<split>/<split>-00000-of-00012.arrow`` and its ``.stats.json``."""
    folder = Path(out) / spec.split
    return folder / f"{spec.name}{EXTENSIONS[fmt]}", folder / f"{spec.name}.stats.json"


def read_stats(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def shard_state(out: Path, spec: ShardSpec, fmt: str, rhash: str, *, verify: bool = True) -> tuple[str, str]:
    """``("done", "")``, ``("missing", reason)`` or ``("damaged", reason)`` for one planned shard."""
    shard, stats_path = shard_paths(out, spec, fmt)
    if not shard.exists():
        return ("missing", "no shard file")
    stats = read_stats(stats_path)
    if stats is None:
        return ("damaged", "stats file missing or unreadable")
    if stats.get("recipe_hash") != rhash:
        return ("damaged", "written by another recipe")
    if stats.get("rows") != spec.rows:
        return ("damaged", f"has {stats.get('rows')} rows, plan says {spec.rows}")
    try:
        size = shard.stat().st_size
    except OSError as exc:
        return ("damaged", f"cannot stat ({exc.strerror})")
    if size != stats.get("bytes"):
        return ("damaged", f"size {size} != {stats.get('bytes')} bytes recorded")
    if verify and file_sha256(shard) != stats.get("sha256"):
        return ("damaged", "sha256 does not match the stats file")
    return ("done", "")


def clean_temporary(out: Path) -> int:
    """Remove temporary files a killed run left behind (only our own ``.name.tmp-*``)."""
    removed = 0
    if not out.is_dir():
        return 0
    for folder in [out, *[p for p in out.iterdir() if p.is_dir()]]:
        for p in folder.iterdir():
            if p.name.startswith(".") and TMP_MARK in p.name and p.is_file():
                p.unlink(missing_ok=True)
                removed += 1
    return removed


def read_manifest(out: Path) -> dict[str, Any] | None:
    path = Path(out) / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ShardError(f"{path}: manifest is unreadable ({exc}); move it away or use another --out") from None
    if not isinstance(data, dict):
        raise ShardError(f"{path}: manifest is not a JSON object; move it away or use another --out")
    return data


def manifest_files(manifest: dict[str, Any]) -> list[str]:
    """Every file a manifest accounts for, relative to OUT (what --overwrite may delete)."""
    files = [MANIFEST, REJECTS]
    for split in manifest.get("splits", {}).values():
        for shard in split.get("shards", []):
            files += [shard["file"], shard["stats"]]
    files += manifest.get("extra_files", [])
    return files


def prepare_out(out: Path, recipe: Recipe, plan: Plan, *, overwrite: bool) -> dict[str, Any] | None:
    """Check OUT before a run; with ``overwrite`` delete what an old manifest lists.

    Returns the existing manifest when this run resumes the same recipe.
    """
    out = Path(out)
    rhash = recipe_hash(recipe)
    if out.exists() and not out.is_dir():
        raise ShardError(f"{out}: --out exists and is not a folder")
    old = read_manifest(out) if out.exists() else None
    if old is not None and old.get("recipe_hash") != rhash:
        if not overwrite:
            raise ShardError(
                f"{out}: holds the output of another recipe ({old.get('recipe_name')!r}, hash "
                f"{str(old.get('recipe_hash'))[:12]}; this one is {rhash[:12]}). Use a new --out, "
                "or --overwrite to delete the files that run's manifest lists and start again"
            )
        remove_listed(out, old)
        return None
    if old is None and out.exists() and any(out.iterdir()):
        raise ShardError(
            f"{out}: is not empty and has no {MANIFEST}, so it is not a shardsmith output; "
            "choose an empty or new folder for --out"
        )
    if old is not None and overwrite:
        remove_listed(out, old)
        return None
    return old


def remove_listed(out: Path, manifest: dict[str, Any]) -> int:
    """Delete the files a manifest lists, and folders left empty by that; nothing else."""
    removed = 0
    root = Path(out).resolve()
    for rel in manifest_files(manifest):
        p = (root / rel).resolve()
        if root not in p.parents:  # never follow a manifest entry outside OUT
            continue
        try:
            p.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    for d in sorted({(root / rel).parent for rel in manifest_files(manifest)}, reverse=True):
        if d != root and d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    return removed


def build_manifest(out: Path, recipe: Recipe, plan: Plan) -> dict[str, Any]:
    """Rebuild the manifest from the shard and stats files on disk (no timestamps)."""
    out = Path(out)
    rhash = recipe_hash(recipe)
    fmt = recipe.output.format
    splits: dict[str, Any] = {}
    complete = True
    for split, planned in plan.splits.items():
        shards = []
        rows = 0
        seconds = 0.0
        for spec in plan.shards_of(split):
            shard, stats_path = shard_paths(out, spec, fmt)
            stats = read_stats(stats_path)
            if stats is None or not shard.exists() or stats.get("recipe_hash") != rhash:
                complete = False
                continue
            shards.append(
                {
                    "file": shard.relative_to(out).as_posix(),
                    "stats": stats_path.relative_to(out).as_posix(),
                    "rows": stats["rows"],
                    "bytes": stats["bytes"],
                    "sha256": stats["sha256"],
                }
            )
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
        "recipe_dir": os.fspath(recipe.base_dir),
        "splits": splits,
        "rejects": REJECTS,
    }


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    write_json_atomic(Path(out) / MANIFEST, manifest)


def write_rejects(out: Path, rejects: list[dict[str, Any]]) -> None:
    """``rejects.jsonl``: one JSON object per rejected file with its path and reason."""
    path = Path(out) / REJECTS
    tmp = path.with_name(f".{path.name}{TMP_MARK}w")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for r in rejects:
                f.write(json.dumps(r, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ShardError(f"{path}: cannot write ({exc.strerror or exc})") from None


def shard_files(out: str | Path, split: str | None = None) -> list[Path]:
    """The shard files of a finished (or partial) run, in plan order, from its manifest.

    Example: ``shard_files("out/demo", "train")``
    """
    manifest = read_manifest(Path(out))
    if manifest is None:
        raise ShardError(f"{out}: no manifest.json; is this a shardsmith output folder?")
    files = []
    for name, s in manifest["splits"].items():
        if split is None or name == split:
            files += [Path(out) / sh["file"] for sh in s["shards"]]
    if split is not None and split not in manifest["splits"]:
        raise ShardError(f"{out}: no split {split!r}; splits are {sorted(manifest['splits'])}")
    return files


def _version() -> str:
    from . import __version__

    return __version__
