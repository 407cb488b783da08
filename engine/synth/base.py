"""The synthesizer base class: what every synthesizer package implements.

A synthesizer draws every random choice in :meth:`Synthesizer.sample_params` into plain,
JSON-able params; :meth:`Synthesizer.apply` turns params into a sample deterministically.
The params are stored in each row, so any row can be replayed exactly. Beside those two,
a synthesizer says what its rows look like (media column, embedding size, labels) and,
as class-level hooks that need no pool data, how the rest of shardsmith reads its params:
which pieces of which pools a params object takes (the coverage forecast), which
categories a row falls in (``mismatch slices``), which params are not sampled values
and which range each sampled value was drawn from (coverage histograms), and how a row
is exported as a file. The base knows no concrete
synthesizer; :mod:`engine.synth.registry` finds and builds them.

Example::

    synth = build_synthesizer(recipe, index)
    params = synth.sample_params(sample_rng(recipe.seed, "train", 0), holdout_split=False)
    sample = synth.apply(params)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable

import numpy as np
import pyarrow as pa

from ..errors import BadSourceError, RecipeError
from ..statistics import round_floats

if TYPE_CHECKING:
    from ..pools import PoolIndex
    from ..recipe import Recipe

SOURCE_TYPE = pa.struct(
    [
        ("pool", pa.string()),
        ("item", pa.string()),
        ("start_s", pa.float64()),
        ("duration_s", pa.float64()),
        ("gain_db", pa.float64()),
    ]
)


# The columns every row has besides its media columns and labels (see shards.shard_schema).
ROW_COLUMNS = ("sample_id", "split", "sources", "params", "embedding")


def _label_origin(recipe: "Recipe", pool: str) -> str:
    """Where a pool's labels come from, for messages: its manifest, its containers, or its kind."""
    cfg = recipe.pools[pool]
    if getattr(cfg, "manifest", None):
        return f"manifest {cfg.manifest}"
    paths = getattr(cfg, "paths", None)
    if paths:
        return f"{getattr(cfg, 'format', 'files')} pool {', '.join(paths)}"
    return f"the {cfg.kind} pool"


def _label_fix(recipe: "Recipe", pool: str, column: str, prefixed: bool) -> str:
    cfg = recipe.pools[pool]
    fixes = []
    if getattr(cfg, "manifest", None):
        fixes.append(f"rename the column {column!r} in {cfg.manifest}")
    elif getattr(cfg, "format", None) in ("table", "webdataset"):
        fixes.append(f"leave {column!r} out with pools.{pool}.label_columns (a list of the labels to carry)")
    if prefixed:
        fixes.append(f"rename the pool {pool!r} in the recipe (its labels are carried as '{pool}_<label>')")
    return " or ".join(fixes) or (f"pools.{pool}'s labels are named by its format "
                                  f"({getattr(cfg, 'format', None) or cfg.kind}), not by a file")


def check_label_columns(recipe: "Recipe", carried: Iterable[tuple[str, str, str]], fixed: Iterable[str],
                        prefixed: Iterable[str] = ()) -> None:
    """Refuse labels that would not reach the rows as they are: ``carried`` is
    ``(pool, manifest column, output column)`` for every label, ``fixed`` the row's own
    columns, ``prefixed`` the pools whose labels get the ``<pool>_`` prefix. A label named
    like a fixed column, or two labels with one output name, is a :class:`RecipeError`
    naming the file, the column and the fix (never a silent rename or overwrite).

    Example: ``check_label_columns(recipe, [("speech", "text", "text")], ["sample_id", "audio"])``
    """
    fixed = list(fixed)
    prefixed = set(prefixed)
    taken: dict[str, tuple[str, str]] = {}
    for pool, column, name in carried:
        where = f"pools.{pool}: the label column {column!r} ({_label_origin(recipe, pool)})"
        fix = _label_fix(recipe, pool, column, pool in prefixed)
        if name in fixed:
            raise RecipeError(
                f"{where} has the name of a column every row has ({', '.join(fixed)}), so it cannot be "
                f"carried under that name; {fix}"
            )
        if name in taken:
            other_pool, other = taken[name]
            carried_as = f" would be carried as {name!r}" if name != column else ""
            raise RecipeError(
                f"{where}{carried_as} and the label {other!r} of pools.{other_pool} "
                f"({_label_origin(recipe, other_pool)}) would both be the rows' column {name!r}, "
                f"so one would overwrite the other; {fix}, or "
                f"{_label_fix(recipe, other_pool, other, other_pool in prefixed)}"
            )
        taken[name] = (pool, column)


@dataclass
class Sample:
    """One synthesized sample before it becomes a row."""

    columns: dict[str, Any]  # media columns (audio struct, sampling_rate, duration_s ...)
    sources: list[dict[str, Any]]  # every source piece used, in SOURCE_TYPE's layout
    embedding: np.ndarray
    labels: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # seconds of media produced (audio); 0 for images
    # What apply() resolved beyond the sampled params (e.g. albumentations' applied
    # transform parameters); the worker stores it in the row's params under "applied".
    applied: Any = None


def walk_refs(node: Any, path: str = "") -> Iterable[tuple[str, str, str]]:
    """``(path, pool, item)`` of every ``{"pool": ..., "item": ...}`` in a params object.

    Example: ``list(walk_refs({"image": {"pool": "p", "item": "a.png"}})) == [("image", "p", "a.png")]``
    """
    if isinstance(node, dict):
        if isinstance(node.get("pool"), str) and isinstance(node.get("item"), str):
            yield path, node["pool"], node["item"]
        for k in sorted(node, key=str):
            yield from walk_refs(node[k], f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk_refs(v, f"{path}[{i}]")


def first_seen(values: Iterable[Any]) -> list[str]:
    """Distinct values as strings, in the order first seen."""
    return list(dict.fromkeys(str(v) for v in values))


class Synthesizer:
    """Base class of every synthesizer; a subclass sets ``type`` and ``media_column``.

    Constructors only store: pool data is read lazily during :meth:`apply`.
    """

    type: ClassVar[str]
    # The Hugging Face Audio / Image struct column (bytes, path) that holds a row's media.
    media_column: ClassVar[str]
    # Keys in params that are indices, offsets or seeds, not sampled values: coverage
    # does not histogram them (the pool figures cover offsets).
    unsampled_params: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, recipe: "Recipe", index: "PoolIndex"):
        self.recipe = recipe
        self.config = recipe.synth
        self.index = index
        self._positions: dict[str, dict[str, int]] = {}

    def _pos(self, pool: str, item: str) -> int:
        """The position of an item id in its pool (params name items by id)."""
        table = self._positions.get(pool)
        if table is None:
            table = {it: i for i, it in enumerate(self.index.pools[pool].items)}
            self._positions[pool] = table
        try:
            return table[item]
        except KeyError:
            raise BadSourceError(item, f"item is not in pool {pool!r} (params from another index?)") from None

    # ------------------------------------------------------------------ per sample

    def sample_params(self, rng: np.random.Generator, *, holdout_split: bool) -> dict[str, Any]:
        """Draw every random choice of one sample into JSON-able params."""
        raise NotImplementedError

    def apply(self, params: dict[str, Any]) -> Sample:
        """Make the sample that ``params`` describe; the same params give the same bytes."""
        raise NotImplementedError

    # ------------------------------------------------------------------ rows

    def media_fields(self) -> list[pa.Field]:
        """The media columns of a row: ``media_column`` first, then e.g. rate, size."""
        raise NotImplementedError

    def hf_media_features(self) -> dict[str, Any]:
        """The Hugging Face feature entries of the media columns."""
        raise NotImplementedError

    def embedding_dim(self) -> int:
        raise NotImplementedError

    def label_fields(self) -> list[pa.Field]:
        """Label columns carried from the pools' manifests into every row."""
        return []

    def media_filename(self, sample_id: str) -> str:
        """The file name a row's media takes (its struct's ``path``, and on export)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release per-worker resources (open files)."""

    @classmethod
    def release_process_state(cls) -> None:
        """Drop what this synthesizer keeps in its process across shards (whole decodes,
        generated items): called when a process makes no more shards, as the driver after
        the shards it made while Ray started. Default: nothing kept, nothing to drop."""

    # ------------------------------------------------------------------ reading params
    # Class-level: they read params and rows, never pool data, so analysis tools call
    # them without building a synthesizer.

    @classmethod
    def source_pieces(cls, params: dict[str, Any], duration: Callable[[str, str], float],
                      config: Any) -> list[tuple[str, str, float]]:
        """The ``(pool, item, seconds)`` pieces that ``apply(params)`` will record as
        sources, predicted without media (the coverage forecast). Default: every item
        the params name, used whole."""
        return [(pool, item, duration(pool, item)) for _, pool, item in walk_refs(params)]

    @classmethod
    def param_range(cls, config: dict[str, Any], name: str) -> tuple[float, float] | None:
        """The range the recipe asked for of the sampled param ``name`` (a path as
        :func:`~engine.stats.flatten_params` names it, e.g. ``applied.Affine.rotate``), from
        the synth config as JSON; coverage histograms the param over it. Consulted only
        when the ``X`` <-> ``X_range`` convention finds nothing (``noise[0].snr_db`` ->
        ``noise[0].snr_db_range`` needs no hook). Default: None (no range known).

        Example: ``ImageAugmentSynth.param_range({"transforms": [{"__class_fullname__": "Affine", "rotate": [-5, 5]}]}, "applied.Affine.rotate") == (-5.0, 5.0)``
        """
        return None

    @classmethod
    def slice_categories(cls, params: dict[str, Any], sources: list[dict[str, Any]]) -> dict[str, list[str]]:
        """The categories a row falls in, per dimension, for ``mismatch slices`` (a row
        can be in several of one dimension). Default: every source pool and item."""
        return {
            "source pool": first_seen(x["pool"] for x in sources) or ["(none)"],
            "source item": first_seen(x["item"] for x in sources) or ["(none)"],
        }

    @classmethod
    def export_row(cls, row: dict[str, Any], dest: Path) -> None:
        """Write one row as a media file plus a ``.json`` of its provenance beside it.
        Default: the stored media bytes as they are, under the row's media path."""
        media = row[cls.media_column]
        (dest / (media["path"] or row["sample_id"])).write_bytes(media["bytes"])
        write_sidecar(row, dest, skip=(cls.media_column,))


# Significant digits of every float in an export's sidecars: enough for any sampled value,
# few enough that float32 noise (1.6007499694824219) reads as the value (1.60075). The
# exact params stay in the shard; `shardsmith replay` works from those.
SIDECAR_DIGITS = 6


def write_sidecar(row: dict[str, Any], dest: Path, skip: Iterable[str] = ()) -> None:
    """``<sample_id>.json``: the row's provenance (params parsed), without media or
    embedding, every float rounded to :data:`SIDECAR_DIGITS` significant digits.

    Example: ``write_sidecar(row, Path("listen"), skip=("audio",))``
    """
    drop = {"embedding", *skip}
    side = {k: v for k, v in row.items() if k not in drop}
    side["params"] = json.loads(side["params"])
    side = round_floats(side, SIDECAR_DIGITS)
    (dest / f"{row['sample_id']}.json").write_text(json.dumps(side, indent=1, allow_nan=False) + "\n")
