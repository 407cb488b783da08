"""Old names of the run record's functions, for the modules that still import them.

The output's run record is :mod:`engine.run_record` (``OUT/run.json``); file names are in
:mod:`engine.layout`. ``coverage``, ``mismatch`` and ``splits`` import these names from
here until they are pointed at those modules; nothing new should.

Example: ``from engine.run_record import read_run_record`` (not ``read_manifest``)
"""

from __future__ import annotations

from .run_record import read_run_record as read_manifest
from .run_record import shard_files
from .storage import as_store, read_json as read_stats, write_json

__all__ = ["as_store", "read_manifest", "read_stats", "shard_files", "write_json"]
