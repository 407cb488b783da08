"""shardsmith: recipe-driven synthesis of training data, with coverage you can measure.

Public API::

    from engine import load_recipe, replay, run
    summary = run(load_recipe("recipes/demo_in_car.yaml"), "out/demo_in_car")
    replay("out/demo_in_car", "demo_in_car-train-000000003").identical   # a row made again from its params
"""

from __future__ import annotations

from . import env  # noqa: F401  (first: environment defaults before any dependency loads)

from .version import __version__  # noqa: E402

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
    from .runtime import run as _run  # on first use: `import engine` loads no Ray, no analyzer

    return _run(recipe, out, **kwargs)


def analyze_coverage(out, recipe=None):
    """The coverage report (a dict with stable keys) of a run's output.

    Example: ``analyze_coverage("out/demo_in_car")["passed"]``
    """
    from .coverage import analyze_coverage as _analyze  # on first use: `import engine` loads no Ray, no analyzer

    return _analyze(out, recipe)


def evaluate_errors(rates, counts=None, **kwargs):
    """Split a model's errors into avoidable bias, variance, data mismatch, dev overfitting.

    Example: ``evaluate_errors({"human": 0.0, "train": 0.10, "train_dev": 0.11, "dev": 0.20}).dominant``
    """
    from .mismatch import decompose_errors  # on first use: `import engine` loads no Ray, no analyzer

    return decompose_errors(rates, counts, **kwargs)


def evaluate_data(train, dev, **kwargs):
    """Compare synthesized training data with real dev data (AUC, MMD, Fréchet, PRDC...).

    Example: ``evaluate_data([("synth", "out/demo_in_car")], "dev_audio/")``
    """
    from .mismatch import compare_data  # on first use: `import engine` loads no Ray, no analyzer

    return compare_data(train, dev, **kwargs)


def evaluate_slices(shards, predictions, **kwargs):
    """Error rates of a model's predictions per provenance category (noise item, SNR band...).

    Example: ``evaluate_slices("out/demo_in_car", "predictions.csv").table[0]``
    """
    from .mismatch import slice_errors  # on first use: `import engine` loads no Ray, no analyzer

    return slice_errors(shards, predictions, **kwargs)


def evaluate_probe(train, label, **kwargs):
    """Fit the probe model on a run's train split and score it on train-dev, held-out
    sources, dev and test: the gaps without training the real model.

    Example: ``evaluate_probe("out/demo_in_car", "speaker", dev="dev_audio/").dominant``
    """
    from .mismatch import probe_errors  # on first use: `import engine` loads no Ray, no analyzer

    return probe_errors(train, label, **kwargs)


def replay(out, sample_id, **kwargs):
    """One row of an output made again from its stored params: a
    :class:`~engine.replayer.Replayed` with the replayed and the stored bytes, ``identical``,
    and the media decoded (``array``, and ``sampling_rate`` for audio). The pools are
    indexed as the run indexed them; for many rows use :class:`engine.replayer.Replayer`.

    Example: ``replay("out/demo_in_car", "demo_in_car-train-000000003").identical``
    """
    from .replayer import replay as _replay  # on first use: `import engine` loads no pools, codec or analyzer

    return _replay(out, sample_id, **kwargs)


__all__ = [
    "__version__",
    "analyze_coverage",
    "evaluate_errors",
    "evaluate_data",
    "evaluate_slices",
    "evaluate_probe",
    "load_recipe",
    "parse_recipe",
    "recipe_hash",
    "replay",
    "run",
    "ShardsmithError",
    "RecipeError",
    "InputError",
    "SynthesisError",
    "ShardError",
    "GuardError",
]
