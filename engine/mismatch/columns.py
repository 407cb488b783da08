"""Reading only some columns of a run's shards: the embeddings to compare, the
provenance to slice errors by. No audio or image bytes are decoded.

Example::

    table = read_columns("out/demo/train/shard-00000.parquet", ["sample_id", "embedding"])
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ShardError
from ..shards import read_shard
from ..storage import is_uri


def read_columns(shard: Path | str, columns: list[str]) -> pa.Table:
    """Only the named columns of a shard that it has (Parquet reads just those; Arrow is
    memory-mapped). ``shard`` is a local path or an object-store URI (then read whole).

    Example: ``read_columns(shard, ["sample_id", "params"]).column_names``
    """
    if not is_uri(shard) and str(shard).endswith(".parquet"):
        try:
            have = pq.read_schema(shard).names
            return pq.read_table(shard, columns=[c for c in columns if c in have])
        except (pa.ArrowInvalid, OSError) as exc:
            raise ShardError(f"{shard}: cannot read shard ({exc}); re-run the recipe to rewrite it") from None
    table = read_shard(shard)
    return table.select([c for c in columns if c in table.column_names])
