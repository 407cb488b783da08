"""Per-sample random generators: no global randomness anywhere.

Each sample's Generator comes from ``SeedSequence([recipe_seed, split_id, sample_index])``,
so a sample's bytes do not depend on which worker, node, retry or resume made it.

Example::

    rng = sample_rng(1234, "train", 17)
    snr_db = rng.uniform(0, 20)
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np


@functools.lru_cache(maxsize=1024)
def split_id(split: str) -> int:
    """A stable 32-bit id for a split name (adding a split never reseeds the others).

    Example: ``split_id("train")``
    """
    return int.from_bytes(hashlib.sha256(split.encode("utf-8")).digest()[:4], "big")


def keyed_rng(*keys: int) -> np.random.Generator:
    """A PCG64 Generator fixed by its integer keys (``SeedSequence(keys)``): one
    independent stream per purpose, e.g. ``(seed, 7)`` for the MMD permutations.

    Example: ``keyed_rng(0, 101).permutation(10)``
    """
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(keys))))


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The Generator for one sample.

    Example: ``sample_rng(0, "train", 5).integers(10)``
    """
    return keyed_rng(seed, split_id(split), index)


def stable_unit(*parts: object) -> float:
    """A number in [0, 1) fixed by its arguments (for holdout selection and sampling keys).

    Example: ``stable_unit("car", "noise/car-1.wav")``
    """
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64
