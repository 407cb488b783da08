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

import sys
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


def record_problem(record: Any, spec: ShardSpec, rhash: str, size: int) -> str:
    """Why a stats record does not vouch for ``spec``'s shard of ``size`` bytes ("" when it
    does): the cheap checks, with the types every later reader relies on."""
    if record is None:
        return "stats file missing or unreadable"
    if not isinstance(record, dict):
        return "stats file is not a JSON object"
    if record.get("recipe_hash") != rhash:
        return "written by another recipe"
    rows, nbytes = record.get("rows"), record.get("bytes")
    if type(rows) is not int or rows != spec.rows:
        return f"has {rows!r} rows, plan says {spec.rows}"
    if type(nbytes) is not int or size != nbytes:
        return f"size {size} != {nbytes!r} bytes recorded"
    if not isinstance(record.get("sha256"), str) or not isinstance(record.get("rejects", []), list) \
            or not all(isinstance(r, dict) and isinstance(r.get("path"), str) for r in record.get("rejects", [])):
        return "stats file has fields of the wrong type"
    problem = stats_problem(record.get("stats", {}))
    return f"stats file has fields of the wrong type ({problem})" if problem else ""


def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_num(v: Any) -> bool:
    return type(v) in (int, float)


def _ints(v: Any) -> bool:
    # set(map(type, v)): the types of a list of thousands of values at C speed
    return isinstance(v, list) and set(map(type, v)) <= {int}


def _pool_problem(name: str, block: Any) -> str:
    if not isinstance(block, dict):
        return f"pools.{name} is not an object"
    items, uses, us = block.get("items", []), block.get("uses", []), block.get("us", [])
    if not (isinstance(items, list) and all(isinstance(x, str) for x in items)) or not _ints(uses) \
            or not _ints(us) or not len(items) == len(uses) == len(us):
        return f"pools.{name}: items, uses and us are not lists of one length"
    buckets = block.get("buckets")
    if buckets is not None and not (isinstance(buckets, list) and len(buckets) == len(items)
                                    and all(_ints(b) and len(b) % 2 == 0 for b in buckets)):
        return f"pools.{name}.buckets is not a list of ranges per item"
    if not _is_int(block.get("heldout_uses", 0)):
        return f"pools.{name}.heldout_uses is not an integer"
    return ""


def _param_problem(name: str, h: Any) -> str:
    if not isinstance(h, dict):
        return f"params.{name} is not an object"
    rng = h.get("range")
    if rng is not None and not (isinstance(rng, list) and len(rng) == 2 and all(_is_num(x) for x in rng)):
        return f"params.{name}.range is not [low, high]"
    if not all(_is_int(h.get(k, 0)) for k in ("count", "below", "above")) \
            or not all(_is_num(h.get(k, 0)) for k in ("min", "max")) or not _ints(h.get("bins", [])):
        return f"params.{name} has counts or bounds that are not numbers"
    sample = h.get("sample", [])
    if not (isinstance(sample, list) and all(isinstance(e, list) and len(e) == 2 and _is_int(e[0])
                                             and _is_num(e[1]) for e in sample)):
        return f"params.{name}.sample is not a list of [key, value]"
    return ""


def _embedding_problem(emb: Any) -> str:
    if not emb:
        return ""
    if not isinstance(emb, dict) or not _is_int(emb.get("dim")) or not _is_int(emb.get("count")) \
            or not _is_int(emb.get("scale_bits", 0)):
        return "embedding is not an object with integer dim and count"
    dim = emb["dim"]
    if not _ints(emb.get("sum")) or len(emb["sum"]) != dim or not _ints(emb.get("sum_outer_upper")) \
            or len(emb["sum_outer_upper"]) != dim * (dim + 1) // 2:
        return "embedding sums are not integer lists of the embedding's size"
    sample = emb.get("sample", [])
    if not (isinstance(sample, list) and all(isinstance(e, list) and len(e) == 4 and _is_int(e[0])
                                             for e in sample)):
        return "embedding.sample is not a list of [key, id, label, values]"
    return ""


def stats_problem(stats: Any) -> str:
    """Why a shard's ``stats`` (the ``stats`` field of its stats record) does not have the
    shape the coverage merge reads ("" when it does): types only, no figures judged.

    Example: ``stats_problem("abc")`` -> ``"stats is not an object"``
    """
    if not isinstance(stats, dict):
        return "stats is not an object"
    if not _is_int(stats.get("rows", 0)) or not _is_num(stats.get("seconds", 0.0)):
        return "stats.rows or stats.seconds is not a number"
    if not isinstance(stats.get("split", ""), (str, type(None))):
        return "stats.split is not a string"
    pools = stats.get("pools")
    if pools is None and "usage" in stats:  # format 1: pool -> item -> [uses, seconds]
        usage = stats["usage"]
        if not (isinstance(usage, dict) and all(
                isinstance(t, dict) and all(isinstance(v, list) and len(v) == 2 and all(_is_num(x) for x in v)
                                            for v in t.values()) for t in usage.values())):
            return "stats.usage is not pool -> item -> [uses, seconds]"
    elif pools is not None:
        if not isinstance(pools, dict):
            return "stats.pools is not an object"
        for name, block in pools.items():
            problem = _pool_problem(name, block)
            if problem:
                return "stats." + problem
    params = stats.get("params")
    if params:
        if not isinstance(params, dict):
            return "stats.params is not an object"
        for name, h in params.items():
            problem = _param_problem(name, h)
            if problem:
                return "stats." + problem
    problem = _embedding_problem(stats.get("embedding"))
    return "stats." + problem if problem else ""


# What a resume, the run record and ``rejects.jsonl`` read of a stats record that vouches
# for its shard; the rest (the bulk: a 66-value embedding's sums of products are ~30 KB of
# JSON) only the coverage merge reads.
COMMIT_FIELDS = ("recipe_hash", "rows", "bytes", "sha256", "rejects")
SLIM_STATS = ("rows", "seconds", "split")


def slim_record(record: dict[str, Any], *, pools: bool = False) -> dict[str, Any]:
    """A stats record that vouches for its shard, cut to what a resume, the run record and
    the rejects read (:data:`COMMIT_FIELDS`, and of ``stats`` its rows, seconds and split;
    its ``pools`` too with ``pools``, for withdrawing the shards that used an item), at a
    small fraction of the memory. Call it only on a record :func:`record_problem` passed:
    the slim one passes it too.

    Example: ``slim_record(record)["sha256"] == record["sha256"]``
    """
    stats = record.get("stats", {})
    keep = (*SLIM_STATS, "pools", "usage") if pools else SLIM_STATS
    slim = {k: record[k] for k in COMMIT_FIELDS if k in record}
    if isinstance(slim.get("recipe_hash"), str):
        slim["recipe_hash"] = sys.intern(slim["recipe_hash"])  # one string for every shard of the run
    slim["stats"] = {k: stats[k] for k in keep if k in stats}
    return slim


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


__all__ = ["Listing", "ShardState", "ResumeState", "resume_state", "shard_state", "record_problem", "stats_problem",
           "slim_record", "COMMIT_FIELDS",
           "DONE", "DAMAGED", "MISSING", "STALE"]
