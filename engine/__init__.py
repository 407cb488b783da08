"""shardsmith: recipe-driven synthesis of training data, with coverage you can measure.

Public API::

    from engine import load_recipe, run
    summary = run(load_recipe("recipes/demo_in_car.yaml"), "out/demo_in_car")
"""

from __future__ import annotations

import os

# albumentations checks PyPI for updates on import unless told not to; we never want
# a network call at run time.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    GuardError,
    InputError,
    RecipeError,
    ShardError,
    ShardsmithError,
    SynthesisError,
)
from .recipe import load_recipe, parse_recipe, recipe_hash  # noqa: E402


def run(recipe, out, **kwargs):
    """Run a recipe into ``out`` on Ray (see :func:`engine.runtime.run`).

    Example: ``run(load_recipe("recipes/demo_in_car.yaml"), "out/demo")``
    """
    from .runtime import run as _run

    return _run(recipe, out, **kwargs)


__all__ = [
    "__version__",
    "load_recipe",
    "parse_recipe",
    "recipe_hash",
    "run",
    "ShardsmithError",
    "RecipeError",
    "InputError",
    "SynthesisError",
    "ShardError",
    "GuardError",
]
