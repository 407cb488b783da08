"""Synthesizer base class and registry (by the recipe's ``synth.type``).

A synthesizer draws every random choice in :meth:`Synthesizer.sample_params` into plain,
JSON-able params; :meth:`Synthesizer.apply` turns params into a sample deterministically.
The params are stored in each row, so any row can be replayed exactly.

Example::

    synth = build_synthesizer(recipe, index)
    params = synth.sample_params(sample_rng(recipe.seed, "train", 0), holdout_split=False)
    sample = synth.apply(params)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from .errors import BadSourceError, RecipeError
from .pools import PoolIndex
from .recipe import Recipe

SOURCE_TYPE = pa.struct(
    [
        ("pool", pa.string()),
        ("item", pa.string()),
        ("start_s", pa.float64()),
        ("duration_s", pa.float64()),
        ("gain_db", pa.float64()),
    ]
)


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


class Synthesizer:
    """Base class; subclasses set ``type`` and are registered under it."""

    type: ClassVar[str]
    registry: ClassVar[dict[str, type["Synthesizer"]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type" in cls.__dict__:
            Synthesizer.registry[cls.type] = cls

    def __init__(self, recipe: Recipe, index: PoolIndex):
        # Constructors only store; pool data is read lazily during apply().
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

    def sample_params(self, rng: np.random.Generator, *, holdout_split: bool) -> dict[str, Any]:
        raise NotImplementedError

    def apply(self, params: dict[str, Any]) -> Sample:
        raise NotImplementedError

    def media_fields(self) -> list[pa.Field]:
        raise NotImplementedError

    def hf_media_features(self) -> dict[str, Any]:
        """The Hugging Face feature entries of the media columns."""
        raise NotImplementedError

    def embedding_dim(self) -> int:
        raise NotImplementedError

    def label_fields(self) -> list[pa.Field]:
        """Label columns carried from the pools' manifests into every row."""
        return []

    def close(self) -> None:
        """Release per-worker resources (open files)."""


def build_synthesizer(recipe: Recipe, index: PoolIndex) -> Synthesizer:
    """The registered synthesizer for ``recipe.synth.type``.

    Example: ``build_synthesizer(recipe, index_pools(recipe))``
    """
    from .audio import mix  # noqa: F401  (registers speech_noise_mix)

    if recipe.synth.type.startswith("image_"):  # albumentations loads only for image recipes
        from .image import augment, composite  # noqa: F401  (register image_augment, image_composite)

    kind = recipe.synth.type
    cls = Synthesizer.registry.get(kind)
    if cls is None:
        raise RecipeError(f"synth.type: unknown synthesizer {kind!r}; known: {sorted(Synthesizer.registry)}")
    return cls(recipe, index)
