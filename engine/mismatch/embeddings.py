"""The embeddings of a data set, for comparing training data with dev data: read from a
run's shards (the ``embedding`` column), or made from raw audio / image files (a folder
or a manifest) with the featurizer the shards use.

A seeded sub-sample of at most ``max_n`` items keeps every metric fast.

Example::

    train = load_embeddings("out/demo_in_car", prefer_split="train")
    dev = load_embeddings("dev_audio/")
    train.X.shape, dev.kind                # (2000, 66), 'audio'
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import InputError
from ..features.files import featurize_files
from ..layout import LEGACY_RUN_RECORD_FILE, RUN_RECORD_FILE
from ..run_record import read_run_record, shard_files
from ..media import MEDIA_EXTENSIONS, find_media, media_kind
from ..report import count, plural
from ..rng import keyed_rng
from ..tables import manifest_paths
from .columns import read_columns

DEFAULT_MAX_N = 2000  # per side, seeded sub-sample: every metric stays fast
MIN_N = 10


@dataclass
class EmbeddingSet:
    """Embeddings of one data set (a shard folder, or raw files featurized here)."""

    name: str
    path: str
    kind: str  # "shards" | "audio" | "image"
    ids: list[str]
    X: np.ndarray  # (n, dim) float64
    n_available: int
    splits: list[str] = field(default_factory=list)
    rejects: list[dict[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def describe(self) -> str:
        if self.kind == "shards":
            what = (f"{count(self.n_available, 'row')} of {plural(len(self.splits), 'split')} "
                    f"{', '.join(self.splits)}")
        else:
            what = count(self.n_available, f"{self.kind} file")
        sub = f", {len(self)} sampled" if len(self) < self.n_available else ""
        bad = f", {len(self.rejects)} unreadable" if self.rejects else ""
        return f"{self.name}: {self.path} -- {what}{sub}{bad}"


def subsample(n: int, max_n: int, seed: int, stream: int) -> np.ndarray:
    """Sorted positions of a seeded sub-sample (all of them when n <= max_n).

    Example: ``subsample(10, 3, seed=0, stream=101)  # three sorted positions``
    """
    if n <= max_n:
        return np.arange(n)
    rng = keyed_rng(seed, stream)
    return np.sort(rng.permutation(n)[:max_n])


def _shard_embeddings(
    out: Path, name: str, split: str | None, prefer_split: str | None, max_n: int, seed: int
) -> EmbeddingSet:
    manifest = read_run_record(out) or {}
    available = list(manifest.get("splits", {}))
    if split is not None:
        if split not in available:
            raise InputError(f"{out}: no split {split!r}; splits are {', '.join(available) or 'none'}")
        splits = [split]
    elif prefer_split in available:
        splits = [prefer_split]  # type: ignore[list-item]
    else:
        splits = available
    tables = []
    for s in splits:
        for f in shard_files(out, s):
            t = read_columns(f, ["sample_id", "embedding"])
            if "embedding" not in t.column_names:
                raise InputError(f"{f}: shard has no 'embedding' column; re-run it with this shardsmith version")
            tables.append(t.select(["sample_id", "embedding"]))
    if not tables:
        raise InputError(f"{out}: no shards written for {plural(len(splits), 'split')} {', '.join(splits)}; run the recipe first")
    table = pa.concat_tables(tables)
    n = table.num_rows
    keep = subsample(n, max_n, seed, 101)
    table = table.take(pa.array(keep, type=pa.int64()))
    emb = table.column("embedding").combine_chunks()
    if emb.null_count:
        raise InputError(f"{out}: {count(emb.null_count, 'row')} {plural(emb.null_count, 'has', 'have')} no embedding; re-run the recipe to rewrite them")
    dim = emb.type.list_size if hasattr(emb.type, "list_size") else len(emb[0])
    X = np.asarray(emb.flatten().to_numpy(zero_copy_only=False), dtype=np.float64).reshape(-1, dim)
    ids = [str(x) for x in table.column("sample_id").to_pylist()]
    return EmbeddingSet(name, os.fspath(out), "shards", ids, X, n, splits)


def featurize_kept(files: list[str], keep: list[int], where: str, source: str,
                   empty_reason: str) -> tuple[list[int], list[np.ndarray], list[dict[str, str]]]:
    """Featurize ``files[i]`` for each ``i`` in ``keep``: the positions that gave an
    embedding, their embeddings, and ``{"path", "reason"}`` for the others. An InputError
    starting with ``where`` when none could be featurized.

    Example: ``good, rows, rejects = featurize_kept(files, [0, 2], "dev", "dev", "no files")``
    """
    good, rows, rejects = [], [], []
    for i, (status, value) in zip(keep, featurize_files([files[i] for i in keep])):
        if status == "ok":
            good.append(i)
            rows.append(value)
        else:
            rejects.append({"path": files[i], "reason": value})
    if not rows:
        first = rejects[0] if rejects else {"path": source, "reason": empty_reason}
        raise InputError(f"{where}: no file could be featurized (e.g. {first['path']}: {first['reason']})")
    return good, rows, rejects


def _raw_embeddings(
    source: Path, name: str, files: list[str], ids: list[str], max_n: int, seed: int
) -> EmbeddingSet:
    kinds = {k for k in (media_kind(f) for f in files) if k}
    if not kinds:
        raise InputError(f"{source}: no audio or image files (looked for {', '.join(MEDIA_EXTENSIONS)})")
    if len(kinds) > 1:
        raise InputError(f"{source}: holds both audio and image files; point at one kind of data")
    kind = kinds.pop()
    keep = subsample(len(files), max_n, seed, 102)
    good, rows, rejects = featurize_kept(files, keep, str(source), str(source), "no files")
    good_ids = [ids[i] for i in good]
    dims = {len(r) for r in rows}
    if len(dims) != 1:
        raise InputError(f"{source}: the featurizer returned embeddings of different sizes {sorted(dims)}")
    return EmbeddingSet(name, os.fspath(source), kind, good_ids, np.vstack(rows), len(files), [], rejects)


def load_embeddings(
    path: str | Path,
    *,
    name: str | None = None,
    split: str | None = None,
    prefer_split: str | None = None,
    max_n: int = DEFAULT_MAX_N,
    seed: int = 0,
    path_column: str = "path",
) -> EmbeddingSet:
    """Embeddings of a data set for :func:`~engine.mismatch.compare_embeddings`.

    ``path`` is a shardsmith output folder (its rows' ``embedding`` column is read; no
    audio is decoded), a folder of raw audio or image files (searched recursively), or a
    manifest (CSV, TSV, JSONL or Parquet with a ``path`` column, relative paths from the
    manifest's folder) of raw files, featurized with the same featurizer the shards use.
    A seeded sub-sample of at most ``max_n`` items is kept (for raw files, before they
    are read). Of a shard folder, ``split`` or else ``prefer_split`` (when it exists) or
    else every split is read.

    Example: ``load_embeddings("out/demo_in_car", prefer_split="train")``
    """
    p = Path(path)
    label = name or p.name or os.fspath(p)
    if not p.exists():
        raise InputError(f"{p}: not found (expected a shardsmith output folder, a folder of files or a manifest)")
    if max_n < MIN_N:
        raise InputError(f"max_n must be at least {MIN_N}, got {max_n}")
    if p.is_dir():
        if any((p / name).exists() for name in (RUN_RECORD_FILE, LEGACY_RUN_RECORD_FILE)):
            return _shard_embeddings(p, label, split, prefer_split, max_n, seed)
        files = find_media(p)
        ids = [Path(os.path.relpath(f, p)).as_posix() for f in files]
        return _raw_embeddings(p, label, files, ids, max_n, seed)
    _, written, resolved = manifest_paths(p, path_column)
    if not resolved:
        raise InputError(f"{p}: manifest lists no files")
    return _raw_embeddings(p, label, [os.fspath(f) for f in resolved], written, max_n, seed)
