"""Reading only some columns of a run's shards: the embeddings to compare, the
provenance to slice errors by. No audio or image bytes are decoded.

Example::

    table = read_columns("out/demo/train/shard-00000.parquet", ["sample_id", "embedding"])
"""

from __future__ import annotations

from ..shards import read_columns  # it lives with the shard reader (coverage reads upstream shards too)

__all__ = ["read_columns"]
