"""The run record (``OUT/run.json``): which recipe an output belongs to, which shards are done.

The record is always rebuilt from what is on disk: :func:`build_run_record` is a pure
function of the resume state (:mod:`engine.resume`), so after a kill, a resume or a
failure it lists exactly the shards whose stats records vouch for them. The sink
(:mod:`engine.sink`) writes it; coverage, mismatch and export read it here.

Outputs written before the rename hold the same record as ``manifest.json``; it is read
when there is no ``run.json`` (and a run migrates it). A ``manifest.json`` without a
shardsmith record's shape is another tool's: the folder is then not a shardsmith output.

Example::

    record = read_run_record("out/demo_in_car")
    print(record["status"], record["total_rows"])
    files = shard_files("out/demo_in_car", "train")
"""

from __future__ import annotations

import codecs
import json
from array import array
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pyarrow as pa

from .version import __version__
from .errors import ShardError
from .layout import EXTRA_FILES, LEGACY_RUN_RECORD_FILE, REJECTS_FILE, RUN_RECORD_FILE, shard_paths
from .plan import Plan
from .recipe import Recipe, parse_recipe, recipe_hash, recipe_to_dict
from .resume import DONE, ResumeState, ShardStates
from .shards import read_shard
from .storage import Store, as_store, read_json, write_hint


def is_run_record(data: Any) -> bool:
    """True for JSON data shaped like a shardsmith run record (a recipe hash and splits)."""
    return isinstance(data, dict) and isinstance(data.get("recipe_hash"), str) and isinstance(data.get("splits"), dict)


def find_run_record(out: str | Path | Store, *, lean: bool = False,
                    entry: Callable[[tuple[str, ...], Any], None] | None = None) -> tuple[str, dict[str, Any]] | None:
    """``(file name, record)`` of an output's run record: ``run.json``, else an older
    output's ``manifest.json``; None when there is neither. A record that is unreadable or
    not shardsmith's is a :class:`ShardError` (nothing may be written beside it).

    With ``lean``, the lists that grow with the shards (each split's ``shards``,
    ``planned_files``) are checked as JSON but left out of the record (empty tuples): a
    run record of 10^5 shards is read in a few MB, for what does not need them (the
    recipe hash a resume checks). ``entry(path, value)`` is then given each of their
    entries as it is read (``path``: ``("splits", "train", "shards")`` or
    ``("planned_files",)``), to keep what it needs of them.

    Example: ``find_run_record("out/demo", lean=True, entry=lambda path, e: print(path[1], e["stats"]))``
    """
    store = as_store(out)
    for rel in (RUN_RECORD_FILE, LEGACY_RUN_RECORD_FILE):
        if store.exists(rel):
            return rel, _parse(store, rel, lean=lean or entry is not None, entry=entry)
    return None


# Where a run record's long lists are (None: any key).
_LONG_LISTS = (("planned_files",), ("splits", None, "shards"))
_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\n\r"


class _JsonStream:
    """JSON text read a chunk at a time: each value decoded on its own (json's decoder)."""

    CHUNK = 1 << 20

    def __init__(self, f: Any):
        self._f = f
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.buf, self.pos, self._eof = "", 0, False

    def more(self) -> bool:
        if self._eof:
            return False
        chunk = self._f.read(self.CHUNK)
        if self.pos > self.CHUNK:  # drop what was read already
            self.buf, self.pos = self.buf[self.pos:], 0
        if not chunk:
            self._eof = True
            tail = self._decoder.decode(b"", final=True)
            self.buf += tail
            return bool(tail)
        self.buf += self._decoder.decode(chunk)
        return True

    def peek(self) -> str:
        """The next character that is not whitespace ("" at the end)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def take(self, allowed: str) -> str:
        c = self.peek()
        if not c or c not in allowed:
            raise ValueError(f"expected one of {allowed!r} at character {self.pos}, found {c or 'the end'!r}")
        self.pos += 1
        return c

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError:
                if self.more():
                    continue
                raise
            if end == len(self.buf) and self.more():  # a number may go on in the next chunk
                continue
            self.pos = end
            return value


def _lean_value(s: _JsonStream, path: tuple[str, ...], entry: Callable[[tuple[str, ...], Any], None] | None = None
                ) -> Any:
    def fits(pattern: tuple[str | None, ...], prefix: bool) -> bool:
        return (len(path) < len(pattern) if prefix else len(path) == len(pattern)) and \
            all(p is None or p == k for p, k in zip(pattern, path))

    c = s.peek()
    if c == "[" and any(fits(p, prefix=False) for p in _LONG_LISTS):
        s.take("[")
        if s.peek() == "]":
            s.take("]")
            return ()
        while True:
            value = s.value()  # checked, not kept (``entry`` sees it)
            if entry is not None:
                entry(path, value)
            if s.take(",]") == "]":
                return ()
    if c == "{" and any(fits(p, prefix=True) for p in _LONG_LISTS):
        s.take("{")
        out: dict[str, Any] = {}
        if s.peek() == "}":
            s.take("}")
            return out
        while True:
            if s.peek() != '"':
                raise ValueError(f"expected a key at character {s.pos}")
            key = s.value()
            s.take(":")
            out[key] = _lean_value(s, (*path, key), entry)
            if s.take(",}") == "}":
                return out
    return s.value()


def _read_lean(store: Store, rel: str, entry: Callable[[tuple[str, ...], Any], None] | None = None) -> Any:
    with store.open_input(rel) as f:
        s = _JsonStream(f)
        data = _lean_value(s, (), entry)
        if s.peek():
            raise ValueError(f"extra data at character {s.pos}")
    return data


def _parse(store: Store, rel: str, *, lean: bool = False,
           entry: Callable[[tuple[str, ...], Any], None] | None = None) -> dict[str, Any]:
    try:
        data = _read_lean(store, rel, entry) if lean else json.loads(store.read_bytes(rel).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ShardError(
            f"{store.display(rel)}: run record is unreadable ({exc}); move it away or use another --out"
        ) from None
    if not isinstance(data, dict):
        raise ShardError(f"{store.display(rel)}: run record is not a JSON object; move it away or use another --out")
    if not is_run_record(data):
        # Another tool's file: never delete it (--overwrite) nor write beside it.
        raise ShardError(
            f"{store.display(rel)}: was not written by shardsmith (no recipe_hash and splits), so "
            f"{store.display()} is not a shardsmith output; choose an empty or new location for --out"
        )
    return data


def read_run_record(out: str | Path | Store) -> dict[str, Any] | None:
    """The run record of an output (see :func:`find_run_record`), or None when there is none.

    Example: ``read_run_record("out/demo")["status"]``
    """
    found = find_run_record(out)
    return None if found is None else found[1]


def recorded_recipe(out: str | Path | Store, record: dict[str, Any] | None = None) -> Recipe:
    """The recipe an output was written with, from its run record (``record`` if the caller
    has read it already), its relative pool paths resolved against the folder the recipe
    was in (``recipe_dir``), as the run resolved them. A :class:`ShardError` when there is
    no record or it holds no recipe.

    Example: ``recorded_recipe("out/demo").synth.type``
    """
    store = as_store(out)
    if record is None:
        record = read_run_record(store)
    if record is None:
        raise ShardError(f"{store.display()}: no {RUN_RECORD_FILE}; is this a shardsmith output folder "
                         "(the --out of `shardsmith run`)?")
    if not isinstance(record.get("recipe"), dict):
        raise ShardError(f"{store.display(RUN_RECORD_FILE)}: has no recipe; re-run the recipe into this folder")
    return parse_recipe(record["recipe"], source=store.display(RUN_RECORD_FILE),
                        base_dir=record.get("recipe_dir") or store.display())


def run_record_files(record: dict[str, Any]) -> list[str]:
    """Every file a run record accounts for, relative to OUT (what --overwrite may delete);
    the record's own file is ``run.json`` (an older output's ``manifest.json`` is the
    caller's to add: only it knows which file the record came from)."""
    files = [RUN_RECORD_FILE, REJECTS_FILE]
    splits = record.get("splits")
    for split in splits.values() if isinstance(splits, dict) else []:
        shards = split.get("shards") if isinstance(split, dict) else None
        for shard in shards if isinstance(shards, list) else []:
            if isinstance(shard, dict):
                files += [shard[k] for k in ("file", "stats") if k in shard]
    for key in ("planned_files", "extra_files"):
        more = record.get(key)
        files += more if isinstance(more, list) else []
    return list(dict.fromkeys(f for f in files if isinstance(f, str)))


class ShardEntries(Sequence[dict[str, Any]]):
    """The run record's entries of one split's done shards (``{"file", "stats", "rows",
    "bytes", "sha256"}``), made on demand from the resume state's compact records: a run
    record of 10^5 shards is written (:func:`write_run_record`) without 10^5 dicts held."""

    def __init__(self, plan: Plan, fmt: str, state: ResumeState, positions: Sequence[int]):
        self._plan, self._fmt, self._state, self._positions = plan, fmt, state, positions

    def __len__(self) -> int:
        return len(self._positions)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        pos = self._positions[i]
        spec = self._plan.shards[pos]
        record = _done_record(self._state, pos, spec)
        shard_rel, stats_rel = shard_paths(spec, self._fmt)
        return {"file": shard_rel, "stats": stats_rel, "rows": record["rows"], "bytes": record["bytes"],
                "sha256": record["sha256"]}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and len(other) == len(self) and all(a == b for a, b in zip(self, other))


class PlannedFiles(Sequence[str]):
    """Every shard and stats file of a plan, in plan order (two a shard), made on demand."""

    def __init__(self, plan: Plan, fmt: str):
        self._plan, self._fmt = plan, fmt

    def __len__(self) -> int:
        return 2 * len(self._plan.shards)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError("planned file index out of range")
        return shard_paths(self._plan.shards[i // 2], self._fmt)[i % 2]

    def __iter__(self) -> Iterator[str]:
        for spec in self._plan.shards:
            yield from shard_paths(spec, self._fmt)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and len(other) == len(self) and all(a == b for a, b in zip(self, other))


def _done_record(state: ResumeState, pos: int, spec: Any) -> dict[str, Any]:
    shards = state.shards
    record = shards.record_at(pos) if isinstance(shards, ShardStates) else shards[spec.name].record
    assert record is not None
    return record


def _is_done(state: ResumeState, pos: int, spec: Any) -> bool:
    shards = state.shards
    return (shards.state_at(pos) if isinstance(shards, ShardStates) else shards[spec.name].state) == DONE


def build_run_record(recipe: Recipe, plan: Plan, state: ResumeState,
                     rejected_files: int | None = None, *, lazy: bool = False) -> dict[str, Any]:
    """The run record of an output in ``state`` (no timestamps: the same disk, the same record).

    Only done shards are listed: a record written while damaged shards still wait to be
    rewritten (a run stopped early) never vouches for them. With ``lazy``, the lists that
    grow with the shards (each split's ``shards``, ``planned_files``) are sequences made on
    demand (:func:`write_run_record` writes them in the same bytes); else plain lists.

    Example: ``build_run_record(recipe, plan, resume_state(plan.shards, fmt, rhash, listing))``
    """
    fmt = recipe.output.format
    done: dict[str, array] = {split: array("q") for split in plan.splits}
    totals: dict[str, list] = {split: [0, 0.0] for split in plan.splits}
    complete = True
    for pos, spec in enumerate(plan.shards):
        if not _is_done(state, pos, spec):
            complete = False
            continue
        record = _done_record(state, pos, spec)
        done[spec.split].append(pos)
        total = totals[spec.split]
        total[0] += record["rows"]
        total[1] += record.get("stats", {}).get("seconds", 0.0)
    splits: dict[str, Any] = {}
    for split, planned in plan.splits.items():
        entries = ShardEntries(plan, fmt, state, done[split])
        rows, seconds = totals[split]
        splits[split] = {"samples": planned, "rows": rows, "seconds": seconds,
                         "shards": entries if lazy else list(entries)}
    planned_files = PlannedFiles(plan, fmt)
    record: dict[str, Any] = {
        "recipe_name": recipe.name,
        "recipe_hash": recipe_hash(recipe),
        "engine_version": __version__,
        "format": fmt,
        "status": "complete" if complete else "partial",
        "total_rows": sum(s["rows"] for s in splits.values()),
        "recipe": recipe_to_dict(recipe),
        "recipe_dir": str(recipe.base_dir),
        "splits": splits,
        "rejects": REJECTS_FILE,
        # Every shard and stats file this recipe may write, done or not: a run killed before
        # it could list its shards (or stopped with damaged ones unlisted) still names them,
        # so --overwrite removes them too and no stale shard of the old plan is left behind.
        "planned_files": planned_files if lazy else list(planned_files),
        "extra_files": list(EXTRA_FILES),
    }
    if rejected_files is not None:
        record["rejected_files"] = rejected_files
    return record


# Elements encoded per write while a run record is streamed.
_WRITE_BATCH = 2048


def run_record_text(record: dict[str, Any]) -> Iterator[str]:
    """The run record as ``write_json(store, "run.json", record)`` writes it (indented JSON,
    sorted keys, a final newline), in pieces: the long lists (each split's ``shards``,
    ``planned_files``) are encoded a batch of elements at a time, so a record of 10^5 shards
    is never one string (nor a list of dicts, with :func:`build_run_record`'s ``lazy``).

    Example: ``"".join(run_record_text(record)) == json.dumps(record, indent=1, sort_keys=True) + "\n"``
    """
    skeleton = dict(record)
    long_lists: list[Sequence[Any]] = []

    def token(seq: Sequence[Any]) -> str:
        long_lists.append(seq)
        return f"\x00shardsmith-list-{len(long_lists) - 1}\x00"

    if isinstance(record.get("planned_files"), Sequence) and not isinstance(record["planned_files"], str):
        skeleton["planned_files"] = token(record["planned_files"])
    splits = record.get("splits")
    if isinstance(splits, dict):
        skeleton["splits"] = {
            name: dict(entry, shards=token(entry["shards"]))
            if isinstance(entry, dict) and isinstance(entry.get("shards"), Sequence)
            and not isinstance(entry["shards"], str) else entry
            for name, entry in splits.items()}
    text = json.dumps(skeleton, indent=1, sort_keys=True)
    quoted = [json.dumps(f"\x00shardsmith-list-{i}\x00") for i in range(len(long_lists))]
    at = [text.find(q) for q in quoted]
    if any(i < 0 or text.count(q) != 1 for i, q in zip(at, quoted)):  # a token in the recipe itself: no streaming
        yield json.dumps(_plain(record), indent=1, sort_keys=True) + "\n"
        return
    done = 0
    for i in sorted(range(len(long_lists)), key=at.__getitem__):
        yield text[done:at[i]]
        line = text[text.rfind("\n", 0, at[i]) + 1:at[i]]  # '   "shards": '
        depth = len(line) - len(line.lstrip(" "))
        yield from _list_text(long_lists[i], depth)
        done = at[i] + len(quoted[i])
    yield text[done:] + "\n"


def _list_text(seq: Sequence[Any], depth: int) -> Iterator[str]:
    """``seq`` as json.dumps(indent=1) writes a list that is the value of a key indented by ``depth``."""
    if not len(seq):
        yield "[]"
        return
    inner = "\n" + " " * (depth + 1)
    pieces: list[str] = []
    first = True
    for element in seq:
        encoded = json.dumps(element, indent=1, sort_keys=True).replace("\n", inner)
        pieces.append(("[" if first else ",") + inner + encoded)
        first = False
        if len(pieces) == _WRITE_BATCH:
            yield "".join(pieces)
            pieces = []
    pieces.append("\n" + " " * depth + "]")
    yield "".join(pieces)


def _plain(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    if isinstance(data, (ShardEntries, PlannedFiles)):
        return [_plain(v) for v in data]
    return data


def write_run_record(out: str | Path | Store, record: dict[str, Any]) -> None:
    """Write ``run.json`` (whole or not at all), streamed by :func:`run_record_text`: the
    same bytes as ``write_json(out, "run.json", record)``.

    Example: ``write_run_record("out/demo", build_run_record(recipe, plan, state, lazy=True))``
    """
    store = as_store(out)
    try:
        with store.open_output(RUN_RECORD_FILE) as f:
            for piece in run_record_text(record):
                f.write(piece.encode("utf-8"))
    except OSError as exc:
        raise ShardError(f"{store.display(RUN_RECORD_FILE)}: cannot write "
                         f"({getattr(exc, 'strerror', None) or exc}){write_hint(exc)}") from None


def listed_shards(out: str | Path | Store, split: str | None = None) -> list[dict[str, Any]]:
    """The run record's entries of the shards of a finished (or partial) run, in plan
    order: ``{"file", "stats", "rows", "bytes", "sha256"}`` as a run writes them (each has at
    least its ``file``), paths relative to OUT.

    Example: ``[e["file"] for e in listed_shards("out/demo", "train")]``
    """
    store = as_store(out)
    record = read_run_record(store)
    if record is None:
        raise ShardError(f"{store.display()}: no {RUN_RECORD_FILE}; is this a shardsmith output folder?")
    if split is not None and split not in record["splits"]:
        raise ShardError(f"{store.display()}: no split {split!r}; splits are {sorted(record['splits'])}")
    entries = []
    for name, s in record["splits"].items():
        if split is not None and name != split:
            continue
        shards = s.get("shards") if isinstance(s, dict) else None
        if not isinstance(shards, list) or not all(isinstance(e, dict) and isinstance(e.get("file"), str)
                                                   for e in shards):
            raise ShardError(f"{store.display(RUN_RECORD_FILE)}: splits.{name}.shards is damaged (not a list of "
                             "shard entries with a file); re-run `shardsmith run` into this folder to rebuild it")
        entries += shards
    return entries


def shard_files(out: str | Path | Store, split: str | None = None) -> list:
    """The shard files of a finished (or partial) run, in plan order, from its run record:
    local paths for a folder, URIs for an object store.

    Example: ``shard_files("out/demo", "train")``
    """
    store = as_store(out)
    rels = [entry["file"] for entry in listed_shards(store, split)]
    if store.is_local:
        return [store.local_path(rel) for rel in rels]
    return [store.display(rel) for rel in rels]


def read_vouched_shard(out: str | Path | Store, entry: dict[str, Any], rhash: str) -> pa.Table:
    """Read a shard the run record lists (``entry``, from :func:`listed_shards`) only when its
    stats record still vouches for it, by the checks a resume makes (see :mod:`engine.resume`):
    the record is this recipe's (``rhash``) and agrees with the run record, and the file
    has the recorded size, sha256 and rows. Else a :class:`ShardError` naming the file, why,
    and the fix: a shard cut short after its schema reads as fewer rows without any error.

    Example: ``read_vouched_shard("out/demo", listed_shards("out/demo", "train")[0], rhash).num_rows``
    """
    store = as_store(out)
    rel = entry["file"]

    def damaged(why: str) -> ShardError:
        return ShardError(
            f"{store.display(rel)}: shard is damaged ({why}); re-run `shardsmith run` with its recipe and "
            f"--out {store.display()}, which rewrites damaged shards, then try again"
        )

    stats_rel = entry.get("stats")
    if not isinstance(stats_rel, str):
        raise damaged(f"{RUN_RECORD_FILE} names no stats record for it")
    record = read_json(store, stats_rel)
    if not isinstance(record, dict):
        raise damaged(f"its stats record {stats_rel} is missing or unreadable")
    if record.get("recipe_hash") != rhash:
        raise damaged(f"its stats record {stats_rel} was written by another recipe")
    rows, nbytes, sha = record.get("rows"), record.get("bytes"), record.get("sha256")
    if type(rows) is not int or type(nbytes) is not int or not isinstance(sha, str):
        raise damaged(f"its stats record {stats_rel} has fields of the wrong type")
    if (rows, nbytes, sha) != (entry.get("rows"), entry.get("bytes"), entry.get("sha256")):
        raise damaged(f"its stats record {stats_rel} disagrees with {RUN_RECORD_FILE}")
    size = store.size(rel)
    if size is None:
        raise damaged("the file is missing")
    if size != nbytes:
        cut = "; it was cut short" if size < nbytes else ""
        raise damaged(f"{size} bytes, its stats record says {nbytes}{cut}")
    try:
        digest = store.sha256(rel)
    except OSError as exc:
        raise damaged(f"cannot be read: {exc.strerror or exc}") from None
    if digest != sha:
        raise damaged("its sha256 does not match its stats record")
    table = read_shard(store.local_path(rel) if store.is_local else store.display(rel))
    if table.num_rows != rows:
        raise damaged(f"{table.num_rows} rows, its stats record says {rows}")
    return table


__all__ = ["is_run_record", "find_run_record", "read_run_record", "recorded_recipe", "run_record_files",
           "build_run_record", "run_record_text", "write_run_record", "ShardEntries", "PlannedFiles",
           "listed_shards", "shard_files", "read_vouched_shard"]
