"""The mergeable accumulators of one pool and of one sampled parameter.

Integers and bitmaps only (uses, microseconds, used one-second buckets, histogram bins,
a bottom-k sample): adding them up gives the same result in any order.

Example::

    tally = PoolTally(catalog["cabin"])
    tally.merge(other_tally)
"""

from __future__ import annotations

import math

import numpy as np

from ..stats import PARAM_BINS, SAMPLE_K
from .catalog import PoolCatalog


class PoolTally:
    """Per tracked item of a pool: uses, microseconds used, and the bitmap of used
    one-second buckets; exact totals also for items outside the hash sample."""

    def __init__(self, cat: PoolCatalog):
        n = len(cat.items)
        self.uses = np.zeros(n, np.int64)
        self.us = np.zeros(n, np.int64)
        self.bitmap = np.zeros(int(cat.offsets[-1]), bool)
        self.total_uses = 0
        self.total_us = 0
        self.unknown_uses = 0

    def merge(self, other: "PoolTally") -> None:
        self.uses += other.uses
        self.us += other.us
        self.bitmap |= other.bitmap
        self.total_uses += other.total_uses
        self.total_us += other.total_us
        self.unknown_uses += other.unknown_uses


class ParamTally:
    """One sampled parameter: count, min, max, and either a histogram over its requested
    range or (without a range) a bottom-k sample of its values."""

    def __init__(self, rng: tuple[float, float] | None):
        self.range = rng
        self.count = 0
        self.min = math.inf
        self.max = -math.inf
        self.bins = np.zeros(PARAM_BINS, np.int64) if rng is not None else None
        self.below = 0
        self.above = 0
        self.sample: list[tuple[int, float]] = []

    def merge(self, other: "ParamTally") -> None:
        if self.range is None and other.range is not None:  # first saw it without a range
            self.range, self.bins = other.range, np.zeros(PARAM_BINS, np.int64)
        self.count += other.count
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        if self.bins is not None and other.bins is not None:
            self.bins += other.bins
        self.below += other.below
        self.above += other.above
        self.sample = sorted(self.sample + other.sample)[:SAMPLE_K]
