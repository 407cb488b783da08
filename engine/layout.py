"""Where things live in an output: every file name, extension and mark, defined once.

An output folder (or object-store prefix) ``OUT`` holds::

    run.json                              the run record (which recipe, which shards are done)
    rejects.jsonl                         source files that could not be used, with the reason
    pool_index.parquet                    every usable source item (what coverage measures against)
    coverage.json                         the coverage report of a complete run
    probe.json                            the probe's verdict, when `shardsmith mismatch probe --record` ran
    <split>/<split>-00000-of-00012.arrow  a shard (``.parquet`` with ``output.format: parquet``)
    <split>/<split>-00000-of-00012.stats.json   its stats record: the shard's commit record

Outputs written before the run record was renamed have ``manifest.json`` in its place;
it is read, and a run migrates it (see :mod:`engine.sink`). A file being written carries
:data:`TMP_MARK` in a hidden name beside its final one until it is renamed.

This module imports nothing from the engine: every other module may import it.

Example::

    shard_rel, stats_rel = shard_paths(spec, "arrow")   # "train/train-00000-of-00003.arrow", ...
"""

from __future__ import annotations

import re
from typing import Protocol

RUN_RECORD_FILE = "run.json"
# The run record's name before it was renamed; only ever read, migrated, or deleted
# when its content is shardsmith's (another tool's manifest.json is never touched).
LEGACY_RUN_RECORD_FILE = "manifest.json"
REJECTS_FILE = "rejects.jsonl"
POOL_INDEX_FILE = "pool_index.parquet"
COVERAGE_FILE = "coverage.json"
# Held by the run writing OUT (engine.lease); hidden, and never listed in the run record.
LEASE_FILE = ".shardsmith-lease.json"
# The mismatch probe's verdict on this output (`shardsmith mismatch probe --record`),
# which `shardsmith coverage` shows beside the guards.
PROBE_FILE = "probe.json"
# Files written into OUT besides its record, its rejects and its shards (listed in the
# run record so that --overwrite removes them too: a new run's data makes an old probe
# verdict wrong).
EXTRA_FILES = (POOL_INDEX_FILE, COVERAGE_FILE, PROBE_FILE)

SHARD_EXTENSIONS = {"arrow": ".arrow", "parquet": ".parquet"}
STATS_SUFFIX = ".stats.json"
TMP_MARK = ".tmp-"

_SHARD_PATH = re.compile(
    r"^(?P<split>[^/]+)/(?P<name>(?P=split)-\d{5,}-of-\d{5,})"
    r"(?P<suffix>" + "|".join(re.escape(s) for s in [*SHARD_EXTENSIONS.values(), STATS_SUFFIX]) + r")$"
)


class _Shard(Protocol):
    """What a path needs of a shard (``engine.plan.ShardSpec`` has it; the plan imports this
    module, so it is not imported here)."""

    @property
    def split(self) -> str: ...

    @property
    def name(self) -> str: ...


def shard_name(split: str, index: int, count: int) -> str:
    """``train-00003-of-00012``: the name of shard ``index`` of the ``count`` of a split."""
    return f"{split}-{index:05d}-of-{count:05d}"


def shard_paths(spec: _Shard, fmt: str) -> tuple[str, str]:
    """``(<split>/<name>.arrow, <split>/<name>.stats.json)``, relative to OUT.

    Example: ``shard_paths(plan.shards[0], "parquet")[0]``
    """
    return f"{spec.split}/{spec.name}{SHARD_EXTENSIONS[fmt]}", f"{spec.split}/{spec.name}{STATS_SUFFIX}"


def parse_shard_path(rel: str) -> tuple[str, str] | None:
    """``(split, name)`` of a path shaped like a shard or stats file of any plan, else None.

    Example: ``parse_shard_path("train/train-00001-of-00004.stats.json") == ("train", "train-00001-of-00004")``
    """
    m = _SHARD_PATH.match(rel)
    return (m["split"], m["name"]) if m else None


def temporary_name(name: str, token: str) -> str:
    """The hidden name a file is written under before it is renamed to ``name``."""
    return f".{name}{TMP_MARK}{token}"


def is_temporary(name: str) -> bool:
    """True for a file name made by :func:`temporary_name` (a write that never finished)."""
    return name.startswith(".") and TMP_MARK in name


__all__ = [
    "RUN_RECORD_FILE", "LEGACY_RUN_RECORD_FILE", "REJECTS_FILE", "POOL_INDEX_FILE", "COVERAGE_FILE", "PROBE_FILE",
    "LEASE_FILE",
    "EXTRA_FILES", "SHARD_EXTENSIONS", "STATS_SUFFIX", "TMP_MARK", "shard_name", "shard_paths",
    "parse_shard_path", "temporary_name", "is_temporary",
]
