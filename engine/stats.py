"""Per-shard statistics, written beside each shard by the worker that made it.

The coverage analyzer merges these files; it never re-reads audio or images.

Example::

    stats = ShardStats()
    stats.add(sample_id, params, sources, embedding, seconds)
    blob = stats.to_json()
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np


class ShardStats:
    """Mergeable usage statistics of one shard."""

    def __init__(self) -> None:
        self.rows = 0
        self.seconds = 0.0
        # pool -> item -> [uses, seconds used]
        self.usage: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0, 0.0]))

    def add(
        self,
        sample_id: str,
        params: dict[str, Any],
        sources: list[dict[str, Any]],
        embedding: np.ndarray,
        seconds: float,
    ) -> None:
        self.rows += 1
        self.seconds += seconds
        for src in sources:
            entry = self.usage[src["pool"]][src["item"]]
            entry[0] += 1
            entry[1] += src["duration_s"]

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "seconds": self.seconds,
            "usage": {
                pool: {item: [int(v[0]), float(v[1])] for item, v in sorted(items.items())}
                for pool, items in sorted(self.usage.items())
            },
        }
