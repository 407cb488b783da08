"""Synthesizers: the base class, the registry, and one package per synthesizer.

Importing this package loads no concrete synthesizer: :func:`build_synthesizer` and
:func:`synthesizer_class` find the one a recipe names through the registry
(entry-point group ``shardsmith.synthesizers``). docs/synthesizers.md shows how to
write one.

Example::

    synth = build_synthesizer(recipe, index)
    params = synth.sample_params(sample_rng(recipe.seed, "train", 0), holdout_split=False)
    sample = synth.apply(params)
"""

from .base import ROW_COLUMNS, SOURCE_TYPE, Sample, Synthesizer, check_label_columns, first_seen, walk_refs, write_sidecar
from .registry import (
    ENTRY_POINT_GROUP,
    Registration,
    build_synthesizer,
    register,
    registrations,
    synthesizer_class,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "ROW_COLUMNS",
    "Registration",
    "SOURCE_TYPE",
    "Sample",
    "Synthesizer",
    "build_synthesizer",
    "check_label_columns",
    "first_seen",
    "register",
    "registrations",
    "synthesizer_class",
    "walk_refs",
    "write_sidecar",
]
