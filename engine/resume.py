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
from array import array
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence

from .layout import SHARD_EXTENSIONS, STATS_SUFFIX, parse_shard_path, shard_name, shard_paths
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


class PlanFiles:
    """Where a file of the plan is: ``locate(rel)`` -> ``(position in plan order, is the
    stats record)``, or None for a path that is not one of the plan's shard or stats files.
    Parses the path instead of holding a dict of every planned path (2 per shard).

    Example: ``PlanFiles(plan.shards, "arrow").locate("train/train-00001-of-00004.stats.json") == (1, True)``
    """

    def __init__(self, shards: Sequence[ShardSpec], fmt: str):
        self.shards = shards
        self.fmt = fmt
        self._ext = SHARD_EXTENSIONS[fmt]
        self._position = getattr(shards, "position", None)  # a ShardSpecs knows without a pass
        self._first: dict[str, int] = {}
        if self._position is None:
            for pos, spec in enumerate(shards):
                self._first.setdefault(spec.split, pos - spec.index)

    def position(self, split: str, name: str) -> int | None:
        """The plan position of shard ``name`` of ``split`` (None when the plan has no such shard)."""
        numbers = name[len(split) + 1:].split("-of-")
        if len(numbers) != 2 or not all(n.isdigit() for n in numbers):
            return None
        index = int(numbers[0])
        if self._position is not None:
            pos = self._position(split, index)
        else:
            first = self._first.get(split)
            pos = None if first is None or not 0 <= first + index < len(self.shards) else first + index
        if pos is None:
            return None
        spec = self.shards[pos]
        return pos if spec.split == split and spec.name == name else None

    def locate(self, rel: str) -> tuple[int, bool] | None:
        parsed = parse_shard_path(rel)
        if parsed is None:
            return None
        stats = rel.endswith(STATS_SUFFIX)
        if not stats and not rel.endswith(self._ext):
            return None
        pos = self.position(*parsed)
        return None if pos is None else (pos, stats)

    def paths(self, pos: int) -> tuple[str, str]:
        return shard_paths(self.shards[pos], self.fmt)


class PlannedSizes(Mapping[str, int]):
    """``relative path -> size`` of every file of an output, as a listing's ``sizes``: the
    planned shard and stats files in two integer columns by plan position (16 bytes a
    shard), every other file in a dict.

    Example: ``PlannedSizes.collect(PlanFiles(plan.shards, "arrow"), store.sizes().items())``
    """

    def __init__(self, where: PlanFiles):
        self.where = where
        n = len(where.shards)
        self._shard = array("q", [-1]) * n
        self._stats = array("q", [-1]) * n
        self.unplanned: dict[str, int] = {}  # files that are not this plan's shards or stats records
        self._n = 0

    @classmethod
    def collect(cls, where: PlanFiles, files: Iterable[tuple[str, int]]) -> "PlannedSizes":
        sizes = cls(where)
        for rel, size in files:
            sizes.add(rel, size)
        return sizes

    def add(self, rel: str, size: int) -> None:
        found = self.where.locate(rel)
        if found is None:
            self._n += rel not in self.unplanned
            self.unplanned[rel] = size
            return
        pos, stats = found
        column = self._stats if stats else self._shard
        self._n += column[pos] < 0
        column[pos] = size

    def shard_size(self, pos: int) -> int | None:
        size = self._shard[pos]
        return None if size < 0 else size

    def has_stats(self, pos: int) -> bool:
        return self._stats[pos] >= 0

    def __getitem__(self, rel: str) -> int:
        found = self.where.locate(rel)
        if found is None:
            return self.unplanned[rel]
        pos, stats = found
        size = (self._stats if stats else self._shard)[pos]
        if size < 0:
            raise KeyError(rel)
        return size

    def __contains__(self, rel: object) -> bool:
        try:
            self[rel]  # type: ignore[index]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        for pos in range(len(self._shard)):
            if self._shard[pos] >= 0 or self._stats[pos] >= 0:
                shard_rel, stats_rel = self.where.paths(pos)
                if self._shard[pos] >= 0:
                    yield shard_rel
                if self._stats[pos] >= 0:
                    yield stats_rel
        yield from self.unplanned

    def __len__(self) -> int:
        return self._n


_HEX = frozenset("0123456789abcdef")
_SLIM_KEYS = frozenset(("recipe_hash", "rows", "bytes", "sha256", "rejects", "stats"))
_SLIM_STATS_KEYS = frozenset(("rows", "seconds", "split"))
_INT64 = 2**63


class Commits(MutableMapping[str, Any]):
    """``stats path -> slim commit record`` (:func:`slim_record`) of a plan's shards, held
    as columns by plan position: rows, bytes, seconds and the raw sha256 (about 60 bytes a
    shard where a dict of dicts takes about 1 KB). A record of another shape (a damaged
    one, one with ``stats.pools``, a path outside the plan) is kept whole beside them; a
    record read back is equal to the one stored.

    Example::

        commits = Commits(plan.shards, "arrow", rhash)
        commits[stats_rel] = slim_record(record)
        commits[stats_rel]["sha256"] == record["sha256"]
    """

    def __init__(self, shards: Sequence[ShardSpec], fmt: str, rhash: str, where: PlanFiles | None = None):
        self.where = where or PlanFiles(shards, fmt)
        self.rhash = sys.intern(rhash)
        n = len(shards)
        self._has = bytearray(n)  # 0 none, 1 in the columns, 2 kept whole in _whole
        self._rows = array("q", [0]) * n
        self._bytes = array("q", [0]) * n
        self._seconds = array("d", [0.0]) * n
        self._sha = bytearray(32 * n)
        self._rejects: dict[int, list] = {}  # the few records with rejects
        self._whole: dict[int, Any] = {}
        self._outside: dict[str, Any] = {}  # keys that are not the plan's stats paths
        self._n = 0

    def _pos(self, rel: str) -> int | None:
        found = self.where.locate(rel)
        return found[0] if found is not None and found[1] else None

    def _fits(self, pos: int, record: Any) -> bool:
        if not isinstance(record, dict) or record.keys() != _SLIM_KEYS:
            return False
        rows, nbytes, sha, rejects, stats = (record["rows"], record["bytes"], record["sha256"], record["rejects"],
                                             record["stats"])
        return (record["recipe_hash"] == self.rhash and type(rows) is int and type(nbytes) is int
                and -_INT64 <= rows < _INT64 and -_INT64 <= nbytes < _INT64
                and type(sha) is str and len(sha) == 64 and _HEX.issuperset(sha) and type(rejects) is list
                and type(stats) is dict and stats.keys() == _SLIM_STATS_KEYS and type(stats["rows"]) is int
                and stats["rows"] == rows and type(stats["seconds"]) is float
                and stats["split"] == self.where.shards[pos].split and type(stats["split"]) is str)

    def __setitem__(self, rel: str, record: Any) -> None:
        pos = self._pos(rel)
        if pos is None:
            self._n += rel not in self._outside
            self._outside[rel] = record
            return
        self.put(pos, record)

    def put(self, pos: int, record: Any) -> None:
        """Store the record of the shard at plan position ``pos``."""
        self._n += not self._has[pos]
        self._rejects.pop(pos, None)
        self._whole.pop(pos, None)
        if not self._fits(pos, record):
            self._has[pos] = 2
            self._whole[pos] = record
            return
        self._has[pos] = 1
        self._rows[pos] = record["rows"]
        self._bytes[pos] = record["bytes"]
        self._seconds[pos] = record["stats"]["seconds"]
        self._sha[32 * pos:32 * pos + 32] = bytes.fromhex(record["sha256"])
        if record["rejects"]:
            self._rejects[pos] = record["rejects"]

    def at(self, pos: int) -> Any:
        """The record of the shard at plan position ``pos`` (None when there is none)."""
        has = self._has[pos]
        if has == 2:
            return self._whole[pos]
        if not has:
            return None
        rows = self._rows[pos]
        return {"recipe_hash": self.rhash, "rows": rows, "bytes": self._bytes[pos],
                "sha256": self._sha[32 * pos:32 * pos + 32].hex(), "rejects": self._rejects.get(pos, []),
                "stats": {"rows": rows, "seconds": self._seconds[pos], "split": self.where.shards[pos].split}}

    def has(self, pos: int) -> bool:
        return bool(self._has[pos])

    def __getitem__(self, rel: str) -> Any:
        pos = self._pos(rel)
        if pos is None:
            return self._outside[rel]
        if not self._has[pos]:
            raise KeyError(rel)
        return self.at(pos)

    def __delitem__(self, rel: str) -> None:
        pos = self._pos(rel)
        if pos is None:
            del self._outside[rel]
        elif not self._has[pos]:
            raise KeyError(rel)
        else:
            self._has[pos] = 0
            self._rejects.pop(pos, None)
            self._whole.pop(pos, None)
        self._n -= 1

    def __contains__(self, rel: object) -> bool:
        if not isinstance(rel, str):
            return False
        pos = self._pos(rel)
        return rel in self._outside if pos is None else bool(self._has[pos])

    def __iter__(self) -> Iterator[str]:
        for pos in range(len(self._has)):
            if self._has[pos]:
                yield self.where.paths(pos)[1]
        yield from self._outside

    def __len__(self) -> int:
        return self._n

    def rejects(self, keep: Callable[[int], bool] = lambda pos: True) -> Iterator[dict[str, Any]]:
        """Every reject of the records at the plan positions ``keep`` accepts, in plan order."""
        for pos in sorted({*self._rejects, *self._whole}):
            if not keep(pos):
                continue
            record = self.at(pos)
            yield from (record.get("rejects", []) if isinstance(record, dict) else [])

    def copy(self) -> "Commits":
        """A copy sharing nothing mutable but the records kept whole and the reject lists."""
        new = Commits.__new__(Commits)
        new.where, new.rhash, new._n = self.where, self.rhash, self._n
        new._has, new._sha = bytearray(self._has), bytearray(self._sha)
        new._rows, new._bytes, new._seconds = array("q", self._rows), array("q", self._bytes), array("d", self._seconds)
        new._rejects, new._whole, new._outside = dict(self._rejects), dict(self._whole), dict(self._outside)
        return new


_CODES = (DONE, DAMAGED, MISSING)
_DEFAULT_REASON = {DONE: "", MISSING: "no shard file"}


class ShardStates(Mapping[str, "ShardState"]):
    """Planned shard name -> :class:`ShardState`, in plan order, held as one state code a
    shard (reasons only where they are not the usual one; records in the listing's
    ``records``): a :class:`ShardState` is made when asked for."""

    def __init__(self, where: PlanFiles, records: Mapping[str, Any]):
        self.where = where
        self._codes = bytearray(len(where.shards))
        self._reasons: dict[int, str] = {}
        self._records = records

    def set(self, pos: int, state: ShardState) -> None:
        self._codes[pos] = _CODES.index(state.state)
        if state.reason != _DEFAULT_REASON.get(state.state):
            self._reasons[pos] = state.reason

    def state_at(self, pos: int) -> str:
        return _CODES[self._codes[pos]]

    def record_at(self, pos: int) -> dict[str, Any] | None:
        """The record vouching for the done shard at ``pos`` (None for a shard not done)."""
        if self._codes[pos]:
            return None
        if isinstance(self._records, Commits):
            return self._records.at(pos)
        return self._records.get(self.where.paths(pos)[1])

    def at(self, pos: int) -> ShardState:
        state = _CODES[self._codes[pos]]
        return ShardState(state, self._reasons.get(pos, _DEFAULT_REASON.get(state, "")),
                          self.record_at(pos) if state == DONE else None)

    def count(self, state: str) -> int:
        return self._codes.count(_CODES.index(state))

    def rejects(self) -> list[dict[str, Any]]:
        """The rejects of the done shards' records, in plan order."""
        if isinstance(self._records, Commits):
            return list(self._records.rejects(lambda pos: not self._codes[pos]))
        return [r for state in self.values() if state.record is not None for r in state.record.get("rejects", [])]

    def __getitem__(self, name: str) -> ShardState:
        parsed = name.rsplit("-of-", 1)[0].rsplit("-", 1)[0] if isinstance(name, str) else None
        pos = None if parsed is None else self.where.position(parsed, name)
        if pos is None:
            raise KeyError(name)
        return self.at(pos)

    def __iter__(self) -> Iterator[str]:
        return (spec.name for spec in self.where.shards)

    def __len__(self) -> int:
        return len(self._codes)

    def values(self) -> Iterator[ShardState]:  # type: ignore[override]
        """Every state in plan order (made one at a time)."""
        return (self.at(pos) for pos in range(len(self._codes)))

    def items(self) -> Iterator[tuple[str, ShardState]]:  # type: ignore[override]
        return ((spec.name, self.at(pos)) for pos, spec in enumerate(self.where.shards))


@dataclass(frozen=True)
class ResumeState:
    """``shards``: planned shard name -> state, in plan order (a :class:`ShardStates`).
    ``stale``: ``<split>/<name>`` of another plan -> its files."""

    shards: Mapping[str, ShardState]
    stale: dict[str, ShardState]

    def named(self, state: str) -> list[str]:
        """The planned shards in ``state``, in plan order."""
        if isinstance(self.shards, ShardStates):
            code = _CODES.index(state)
            codes = self.shards._codes
            return [spec.name for pos, spec in enumerate(self.shards.where.shards) if codes[pos] == code]
        return [name for name, s in self.shards.items() if s.state == state]

    def count(self, state: str) -> int:
        """How many planned shards are in ``state``."""
        if isinstance(self.shards, ShardStates):
            return self.shards.count(state)
        return sum(s.state == state for s in self.shards.values())


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
    sizes = listing.sizes
    same = isinstance(sizes, PlannedSizes) and sizes.where.shards is shards and sizes.where.fmt == fmt
    where = sizes.where if same else PlanFiles(shards, fmt)
    states = ShardStates(where, listing.records)
    for pos, spec in enumerate(shards):
        states.set(pos, shard_state(spec, fmt, rhash, listing))
    others = sizes.unplanned if isinstance(sizes, PlannedSizes) and sizes.where is where else \
        (rel for rel in sizes if where.locate(rel) is None)
    stale_files: dict[str, list[str]] = {}
    for rel in sorted(others):
        parsed = parse_shard_path(rel)
        if parsed is not None:
            stale_files.setdefault(f"{parsed[0]}/{parsed[1]}", []).append(rel)
    stale = {key: ShardState(STALE, "not a file of this recipe's plan", files=tuple(files))
             for key, files in stale_files.items()}
    return ResumeState(states, stale)


__all__ = ["Listing", "ShardState", "ResumeState", "ShardStates", "PlanFiles", "PlannedSizes", "Commits", "resume_state", "shard_state", "record_problem", "stats_problem",
           "slim_record", "COMMIT_FIELDS",
           "DONE", "DAMAGED", "MISSING", "STALE"]
