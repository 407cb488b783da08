"""Resume state: which planned shards an output already holds. Pure: no I/O, no Ray.

The shard is the unit of truth. A planned shard is

- ``done`` when its stats record (the commit record, written after the shard is in
  place) names this recipe, the planned rows and the shard's size, and, when the shard
  was read back, its sha256;
- ``damaged`` when a shard file is there but no record vouches for it: the record is
  missing, unreadable, of another recipe, or disagrees with the shard (rows, size,
  sha256), or the shard cannot be read back;
- ``missing`` when there is no shard file.

Files shaped like shards or stats records that this plan does not name (another plan's
shard count, another format) are ``stale``: an older plan's or recipe's.

The sink lists the output once (:meth:`engine.sink.OutputSink.listing`); this module
judges that listing, so every rule here is testable with a listing built in memory.

Example::

    listing = Listing(sizes={"train/train-00000-of-00001.arrow": 5120}, records={})
    state = resume_state(plan.shards, "arrow", recipe_hash(recipe), listing)
    state.shards["train-00000-of-00001"].state   # "damaged": no stats record
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .layout import parse_shard_path, shard_paths
from .plan import ShardSpec

DONE, DAMAGED, MISSING, STALE = "done", "damaged", "missing", "stale"


@dataclass(frozen=True)
class Listing:
    """What an output holds, as read once.

    ``sizes``: relative path -> size of every file. ``records``: stats path -> its parsed
    record (None when the file is there but is not a readable JSON object); records of
    shards whose file is absent may be left out. ``digests``: shard path -> sha256 of the
    bytes read back, and ``unreadable``: shard path -> why it could not be read back, for
    the shards that were read back (a shard in neither is judged by the cheap checks).
    """

    sizes: Mapping[str, int]
    records: Mapping[str, dict[str, Any] | None] = field(default_factory=dict)
    digests: Mapping[str, str] = field(default_factory=dict)
    unreadable: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ShardState:
    """One shard's state, why (empty when done), and the record vouching for a done shard."""

    state: str
    reason: str = ""
    record: dict[str, Any] | None = None
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResumeState:
    """``shards``: planned shard name -> state, in plan order. ``stale``: ``<split>/<name>``
    of another plan -> its files."""

    shards: dict[str, ShardState]
    stale: dict[str, ShardState]

    def named(self, state: str) -> list[str]:
        """The planned shards in ``state``, in plan order."""
        return [name for name, s in self.shards.items() if s.state == state]


def record_problem(record: dict[str, Any] | None, spec: ShardSpec, rhash: str, size: int) -> str:
    """Why a stats record does not vouch for ``spec``'s shard of ``size`` bytes ("" when it
    does): the cheap checks, with the types every later reader relies on."""
    if record is None:
        return "stats file missing or unreadable"
    if record.get("recipe_hash") != rhash:
        return "written by another recipe"
    rows, nbytes = record.get("rows"), record.get("bytes")
    if type(rows) is not int or rows != spec.rows:
        return f"has {rows!r} rows, plan says {spec.rows}"
    if type(nbytes) is not int or size != nbytes:
        return f"size {size} != {nbytes!r} bytes recorded"
    if not isinstance(record.get("sha256"), str) or not isinstance(record.get("stats", {}), dict) \
            or not isinstance(record.get("rejects", []), list):
        return "stats file has fields of the wrong type"
    return ""


def shard_state(spec: ShardSpec, fmt: str, rhash: str, listing: Listing) -> ShardState:
    """The state of one planned shard in ``listing`` (see :func:`resume_state`)."""
    shard_rel, stats_rel = shard_paths(spec, fmt)
    size = listing.sizes.get(shard_rel)
    if size is None:
        return ShardState(MISSING, "no shard file")
    record = listing.records.get(stats_rel) if stats_rel in listing.sizes else None
    problem = record_problem(record, spec, rhash, size)
    if problem:
        return ShardState(DAMAGED, problem)
    assert record is not None
    if shard_rel in listing.unreadable:
        return ShardState(DAMAGED, f"cannot be read back ({listing.unreadable[shard_rel]})")
    if shard_rel in listing.digests and listing.digests[shard_rel] != record["sha256"]:
        return ShardState(DAMAGED, "sha256 does not match the stats file")
    return ShardState(DONE, "", record)


def resume_state(shards: Sequence[ShardSpec], fmt: str, rhash: str, listing: Listing) -> ResumeState:
    """Classify every planned shard as done, damaged or missing, and every other
    shard-shaped file in the listing as stale.

    Example: ``resume_state(plan.shards, "arrow", rhash, sink.listing()).named("done")``
    """
    states = {spec.name: shard_state(spec, fmt, rhash, listing) for spec in shards}
    planned = {rel for spec in shards for rel in shard_paths(spec, fmt)}
    stale_files: dict[str, list[str]] = {}
    for rel in sorted(listing.sizes):
        parsed = parse_shard_path(rel)
        if parsed is not None and rel not in planned:
            stale_files.setdefault(f"{parsed[0]}/{parsed[1]}", []).append(rel)
    stale = {key: ShardState(STALE, "not a file of this recipe's plan", files=tuple(files))
             for key, files in stale_files.items()}
    return ResumeState(states, stale)


__all__ = ["Listing", "ShardState", "ResumeState", "resume_state", "shard_state", "record_problem",
           "DONE", "DAMAGED", "MISSING", "STALE"]
