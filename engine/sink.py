"""The output sink: the one writer of a run's output, and its commit protocol.

In the spirit of Ray Data's ``Datasink`` (``on_write_start`` / ``write`` /
``on_write_complete`` / ``on_write_failed``), :class:`OutputSink` is the only code that
writes a run into OUT (and :func:`write_probe` the only one that adds to it afterwards).
The protocol:

1. ``on_write_start``: check OUT (another recipe's output is refused, or removed with
   ``--overwrite``: only the files its run record lists, never another tool's), migrate an
   older output's ``manifest.json`` to ``run.json``, and claim OUT by writing the run
   record before any shard exists, so that a killed run is resumable.
2. ``record_pools``: the pool index (``pool_index.parquet``) and the rejects found while
   indexing; a resume whose pools changed is refused.
3. Per shard, in a worker: ``open_shard`` writes the shard under a temporary name and
   renames it in place (one upload on an object store); only then ``commit_shard``
   writes its stats record, the commit record. A shard without a record is never done.
4. ``on_write_complete`` / ``on_write_failed``: the run record is rebuilt from disk (it
   lists only shards whose records vouch for them) and ``rejects.jsonl`` rewritten.

Which shards are done is judged by the pure :func:`engine.resume.resume_state` over one
:meth:`OutputSink.listing`. File names come from :mod:`engine.layout`.

Example::

    sink = OutputSink("out/demo", recipe, plan)
    start = sink.on_write_start(overwrite=False)
    sink.record_pools(index)
    for spec in plan.shards:                       # what runtime.py does with Ray tasks
        make_shard(recipe, index, spec, "out/demo")   # open_shard + commit_shard
    record = sink.on_write_complete(index.rejects)
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from .version import __version__
from .errors import ShardError
from .lease import Lease
from .layout import (
    COVERAGE_FILE,
    EXTRA_FILES,
    LEGACY_RUN_RECORD_FILE,
    POOL_INDEX_FILE,
    PROBE_FILE,
    REJECTS_FILE,
    RUN_RECORD_FILE,
    STATS_SUFFIX,
    is_temporary,
    shard_paths,
)
from .plan import Plan, ShardSpec, make_plan
from .pools import PoolIndex, merge_rejects
from .recipe import Recipe, recipe_hash
from .resume import (
    DAMAGED,
    DONE,
    Commits,
    Listing,
    PlanFiles,
    PlannedSizes,
    ResumeState,
    ShardState,
    ShardStates,
    record_problem,
    resume_state,
    slim_record,
)
from .run_record import build_run_record, find_run_record, is_run_record, run_record_files, write_run_record
from .shards import ShardWriter
from .storage import Store, as_store, read_json, read_json_many, write_json


@dataclass(frozen=True)
class WriteStart:
    """What ``on_write_start`` found: ``fresh`` when OUT held no run record (this run
    claimed it), ``created`` when it made the OUT folder, ``migrated`` when it rewrote an
    older output's ``manifest.json`` as ``run.json``, and how many temporary files a
    killed run had left."""

    fresh: bool
    created: bool
    migrated: bool
    removed_temporary: int
    took_over: str = ""  # whose lease this run took over (its holder had ended), if any
    # The listing the claim made (its run record lists the shards already done): a run
    # takes its resume state from it instead of reading every commit record again.
    listing: Listing | None = None


# Stats records read per batch of a listing: enough to keep the reading threads busy,
# few enough that the batch's records are a few MB.
LISTING_BATCH = 4096


def _file_sizes(store: Store) -> Iterator[tuple[str, int]]:
    """``(path, size)`` of every file of OUT, one at a time on a file system (a dict of
    10^5 paths would be tens of MB); an object store's listing comes as one response."""
    if not store.is_local:
        yield from store.sizes().items()
        return
    root = store.local_path()
    if not root.is_dir():
        return
    stack = [""]
    while stack:
        folder = stack.pop()
        try:
            entries = os.scandir(root / folder if folder else root)
        except OSError:
            continue  # vanished meanwhile
        with entries:
            for entry in entries:
                rel = f"{folder}/{entry.name}" if folder else entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):  # as Path.rglob: no walk into linked folders
                        stack.append(rel)
                        continue
                    st = entry.stat()
                except OSError:
                    continue  # vanished meanwhile (a temporary file renamed)
                if stat.S_ISREG(st.st_mode):
                    yield rel, st.st_size


class OutputSink:
    """Everything a run writes into one output (a local folder or an object-store prefix)."""

    def __init__(self, out: str | Path | Store, recipe: Recipe, plan: Plan | None = None):
        self.store = as_store(out)
        self.recipe = recipe
        self._plan = plan
        self._in_place: dict[str, ShardWriter] = {}
        self.lease: Lease | None = None  # held from take_lease / on_write_start to on_write_complete / failed / withdraw
        self._made: list[Path] = []

    @property
    def plan(self) -> Plan:
        if self._plan is None:
            self._plan = make_plan(self.recipe)
        return self._plan

    @property
    def fmt(self) -> str:
        return self.recipe.output.format

    # ------------------------------------------------------------------ start

    def on_write_start(self, *, overwrite: bool,
                       fold: Callable[[ShardSpec, dict[str, Any]], None] | None = None) -> WriteStart:
        """Check and claim OUT before any work (see the module docstring). The claim lists
        OUT and reads the commit record of every finished shard once; ``fold`` is given
        each record that passes the cheap checks, whole (the coverage merge; see
        :meth:`listing`), and the listing is in the returned :class:`WriteStart`."""
        if self.lease is None:
            self.take_lease()
        try:
            return self._claim(overwrite=overwrite, created=bool(self._made), fold=fold)
        except BaseException:
            self.give_up_lease()
            raise

    def take_lease(self) -> None:
        """Make the OUT folder if needed and take the run's lease on OUT (engine.lease):
        :class:`~engine.lease.LeaseHeld` at once when another run holds it. Comes before any
        other file of OUT is read or written."""
        store = self.store
        if store.is_local and store.local_path().exists() and not store.local_path().is_dir():
            raise ShardError(f"{store.display()}: --out exists and is not a folder")
        if store.is_local:
            path = store.local_path()
            # the folders this run makes, deepest first (removed again if it writes nothing)
            self._made = [p for p in [path, *path.parents] if not p.exists()]
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ShardError(f"{store.display()}: cannot create the output folder ({exc.strerror or exc})") from None
        try:
            self.lease = Lease.acquire(store)
        except BaseException:
            self._remove_created()
            raise

    def give_up_lease(self) -> None:
        """Release the lease of a run that wrote nothing, and the folder it made for it."""
        self.release()
        self._remove_created()

    def _remove_created(self) -> None:
        for folder in self._made:
            try:
                folder.rmdir()  # only when empty
            except OSError:
                break
        self._made = []

    def _claim(self, *, overwrite: bool, created: bool,
               fold: Callable[[ShardSpec, dict[str, Any]], None] | None = None) -> WriteStart:
        store = self.store
        rhash = recipe_hash(self.recipe)
        found = find_run_record(store, lean=True)  # its recipe is checked; its long lists are not needed
        if found is not None:
            rel, old = found
            if old.get("recipe_hash") != rhash and not overwrite:
                raise ShardError(
                    f"{store.display()}: holds the output of another recipe ({old.get('recipe_name')!r}, hash "
                    f"{str(old.get('recipe_hash'))[:12]}; this one is {rhash[:12]}). Use a new --out, "
                    "or --overwrite to delete the files that run's record lists and start again"
                )
            if overwrite:
                whole = find_run_record(store)  # read whole: every file it lists is removed
                remove_listed(store, whole[1] if whole else old, record_file=rel)
                found = None
        elif not store.is_empty():
            raise ShardError(
                f"{store.display()}: is not empty and has no {RUN_RECORD_FILE}, so it is not a shardsmith "
                "output; choose an empty or new location for --out"
            )
        # Claim OUT before any shard exists, so a killed run is resumable.
        listing = self.listing(fold=fold)
        self._write_run_record(build_run_record(self.recipe, self.plan, self.resume_state(listing), lazy=True))
        migrated = self._drop_legacy_record()
        return WriteStart(fresh=found is None, created=created, migrated=migrated,
                          removed_temporary=self.clean_temporary(), took_over=self.lease.took_over if self.lease else "",
                          listing=listing)

    def _drop_legacy_record(self) -> bool:
        """Remove an older output's ``manifest.json`` once ``run.json`` holds its record.

        It goes rather than stays: it would go stale with the first shard written, and a
        reader (an older shardsmith, a user's script) would trust a wrong list of shards
        where a missing file fails loudly. Only a file with a shardsmith record's shape:
        another tool's ``manifest.json`` is never touched.
        """
        if not self.store.exists(LEGACY_RUN_RECORD_FILE):
            return False
        if not is_run_record(read_json(self.store, LEGACY_RUN_RECORD_FILE)):
            return False
        return self.store.delete(LEGACY_RUN_RECORD_FILE)

    def withdraw(self, start: WriteStart) -> None:
        """Undo the claim of a run refused before any shard (a fresh OUT only): its record,
        rejects and extra files, and the folder when this run made it."""
        self.release()
        if not start.fresh:
            return
        remove_listed(self.store, {"extra_files": list(EXTRA_FILES)})
        if start.created:
            with contextlib.suppress(OSError):
                self.store.local_path().rmdir()

    def record_pools(self, index: PoolIndex, data: bytes | None = None) -> None:
        """Write ``pool_index.parquet`` (coverage needs what was available; ``data``: its
        bytes from :func:`pool_index_bytes`, made already) and the rejects found while
        indexing; refuse to resume when the pools changed (the index as written against
        the one the output holds)."""
        if data is None:
            data = pool_index_bytes(index)
        self._check_pools_unchanged(pq.read_table(pa.BufferReader(data)))  # as a resume will read it
        self.store.write_bytes(POOL_INDEX_FILE, data)
        if index.rejects:
            self.write_rejects(index.rejects)

    def _check_pools_unchanged(self, table: pa.Table) -> None:
        """Sampling picks items by position in each pool, so a file added to or removed from
        a glob between a run and its resume would change every sample still to be written."""
        store = self.store
        if not store.exists(POOL_INDEX_FILE) or not any(f.endswith(STATS_SUFFIX) for f in store.list()):
            return
        try:
            with store.open_input(POOL_INDEX_FILE) as f:
                old = pq.read_table(f)
        except (OSError, pa.ArrowInvalid):
            return  # unreadable: it is rewritten; the shards' own checks still apply
        if old.equals(table):
            return
        changes = []
        changed_files: list[str] = []
        before_rows = _rows_by_item(old)
        after_rows = _rows_by_item(table)
        for pool in sorted({p for p, _ in before_rows} | {p for p, _ in after_rows}):
            before = {i for p, i in before_rows if p == pool}
            after = {i for p, i in after_rows if p == pool}
            added, removed = len(after - before), len(before - after)
            if added or removed:
                changes.append(f"pool {pool!r}: {added} item(s) added, {removed} removed")
            # An output started before fingerprints were kept has none to compare.
            changed_files += [f"{pool}/{i}" for i in sorted(before & after)
                              if before_rows[pool, i].get("fingerprint") and after_rows[pool, i].get("fingerprint")
                              and before_rows[pool, i]["fingerprint"] != after_rows[pool, i]["fingerprint"]]
        if changed_files:
            shown = ", ".join(changed_files[:5]) + (f" and {len(changed_files) - 5} more" if len(changed_files) > 5 else "")
            changes.append(f"{len(changed_files)} file(s) have other content now: {shown}")
        if not changes:
            shared = (set(old.column_names) & set(table.column_names)) - {"fingerprint"}
            if all({c: before_rows[k][c] for c in shared} == {c: after_rows[k][c] for c in shared}
                   for k in before_rows):
                return  # the same items; the old index lacks a column a newer shardsmith adds
            changes.append("item durations, rates or channels changed")
        raise ShardError(
            f"{store.display()}: the source pools changed since this output was started ({'; '.join(changes)}); "
            "its finished shards were drawn from the old pools, so resuming would mix two datasets. Restore "
            "the files, or use --overwrite to start again, or choose a new --out"
        )

    # ------------------------------------------------------------------ resume

    def listing(self, fold: Callable[[ShardSpec, dict[str, Any]], None] | None = None,
                known: Mapping[str, dict[str, Any]] | None = None, pools: bool = False) -> Listing:
        """One listing of OUT and the stats records of the planned shards that are there.

        Each record that passes the cheap checks (:func:`~engine.resume.record_problem`) is
        given whole to ``fold`` (the coverage merge), then kept slim
        (:func:`~engine.resume.slim_record`, with ``stats.pools`` when ``pools``). A stats
        path in ``known`` (records this run committed; a :meth:`commits` of this plan is
        used as the listing's records, the records read are added to it) is not read
        again. The sizes and
        records are compact columns by plan position (:class:`~engine.resume.PlannedSizes`,
        :class:`~engine.resume.Commits`), and the records are read a batch at a time: the
        driver's memory does not grow with the number of shards by more than a few dozen
        bytes a shard."""
        where = PlanFiles(self.plan.shards, self.fmt)
        sizes = PlannedSizes.collect(where, _file_sizes(self.store))  # one listing, not a request per shard
        rhash = recipe_hash(self.recipe)
        if isinstance(known, Commits) and known.where.shards is self.plan.shards:
            records = known  # the records read are added to it: they vouch as the run's own do
        else:
            records = Commits(self.plan.shards, self.fmt, rhash, where)
            for rel, record in (known or {}).items():
                records[rel] = record
        batch: list[tuple[ShardSpec, int, str]] = []

        def read(batch: list[tuple[ShardSpec, int, str]]) -> None:
            for (spec, size, stats_rel), record in zip(batch, read_json_many(self.store, [r for *_, r in batch])):
                if record is not None and not record_problem(record, spec, rhash, size):
                    if fold is not None:
                        fold(spec, record)
                    record = slim_record(record, pools=pools)
                records[stats_rel] = record

        for pos, spec in enumerate(self.plan.shards):
            size = sizes.shard_size(pos)
            if size is None or not sizes.has_stats(pos) or records.has(pos):
                continue
            batch.append((spec, size, shard_paths(spec, self.fmt)[1]))
            if len(batch) == LISTING_BATCH:
                read(batch)
                batch = []
        read(batch)
        return Listing(sizes, records)

    def resume_state(self, listing: Listing, digests: Mapping[str, tuple[str, str]] | None = None) -> ResumeState:
        """:func:`~engine.resume.resume_state` of this plan over ``listing``; ``digests``
        (shard path -> :func:`read_back` result) adds the sha256 checks."""
        if digests:
            listing = replace(listing, digests={rel: d for rel, (d, err) in digests.items() if not err},
                              unreadable={rel: err for rel, (_, err) in digests.items() if err})
        return resume_state(self.plan.shards, self.fmt, recipe_hash(self.recipe), listing)

    def reopen(self, state: ResumeState) -> list[tuple[ShardSpec, ShardState]]:
        """The planned shards that are not done, in plan order, with their states; the stats
        record of each damaged one is deleted first: it vouches for the shard no longer, so
        a run that stops before the rewrite never lists the damaged shard."""
        todo = []
        states = state.shards
        for pos, spec in enumerate(self.plan.shards):
            shard = states.at(pos) if isinstance(states, ShardStates) else states[spec.name]
            if shard.state == DONE:
                continue
            if shard.state == DAMAGED:
                self.store.delete(shard_paths(spec, self.fmt)[1])
            todo.append((spec, shard))
        return todo

    def commits(self, state: ResumeState | None = None) -> Commits:
        """The slim commit records (:func:`~engine.resume.slim_record`) of the shards done in
        ``state``, keyed by stats path, as compact columns: what a run adds each shard's
        record to as it finishes and gives to :meth:`on_write_complete` as ``known``.

        Example: ``known = sink.commits(state); known[stats_rel] = slim_record(record)``
        """
        known = Commits(self.plan.shards, self.fmt, recipe_hash(self.recipe))
        states = state.shards if state is not None else None
        if isinstance(states, ShardStates):
            for pos in range(len(states)):
                if states.state_at(pos) == DONE:
                    known.put(pos, states.record_at(pos))
        elif states is not None:
            for spec in self.plan.shards:
                shard = states[spec.name]
                if shard.state == DONE and shard.record is not None:
                    known[shard_paths(spec, self.fmt)[1]] = shard.record
        return known

    def withdraw_shards_using(self, pool: str, item: str) -> list[str]:
        """Delete every finished shard (file and stats record) with a row drawn from
        ``item`` of ``pool``: a source found bad after it was used. Returns their names.
        Call it only when no task of this output is running."""
        withdrawn = []
        for spec, shard in zip(self.plan.shards, self.resume_state(self.listing(pools=True)).shards.values()):
            stats = (shard.record or {}).get("stats", {})
            block = stats.get("pools", {}).get(pool)
            if block is not None:
                used = any(it == item and n > 0 for it, n in zip(block["items"], block["uses"]))
            else:  # stats format 1: pool -> item -> [uses, seconds]
                used = stats.get("usage", {}).get(pool, {}).get(item, [0])[0] > 0
            if used:
                for rel in reversed(shard_paths(spec, self.fmt)):  # the record first: it vouches for the shard
                    self.store.delete(rel)
                withdrawn.append(spec.name)
        return withdrawn

    def clean_temporary(self) -> int:
        """Remove temporary files a killed run left behind (only our own hidden ``.name.tmp-*``).

        Call it only when no task of this output is running. Object stores have none: an
        object appears only when its upload completes.
        """
        if not self.store.is_local:
            return 0
        root = self.store.local_path()
        if not root.is_dir():
            return 0
        removed = 0
        for folder in [root, *[p for p in root.iterdir() if p.is_dir()]]:
            for p in folder.iterdir():
                if is_temporary(p.name) and p.is_file():
                    p.unlink(missing_ok=True)
                    removed += 1
        return removed

    # ------------------------------------------------------------------ one shard (in a worker)

    @contextmanager
    def open_shard(self, spec: ShardSpec, schema: pa.Schema) -> Iterator[ShardWriter]:
        """A writer for ``spec``'s shard: written under a temporary name and renamed in place
        (uploaded whole on an object store) when the block ends without an error."""
        with ShardWriter(self.store, shard_paths(spec, self.fmt)[0], schema, self.fmt) as writer:
            yield writer
        self._in_place[spec.name] = writer

    def commit_shard(self, spec: ShardSpec, *, stats: dict[str, Any], rejects: Iterable[dict[str, Any]],
                     redraws: int) -> dict[str, Any]:
        """Write the stats record of a shard that :meth:`open_shard` put in place: the commit.
        Returns the record."""
        writer = self._in_place.pop(spec.name, None)
        if writer is None:
            raise ShardError(f"{spec.name}: no shard in place to commit (a record is written only after its shard)")
        shard_rel, stats_rel = shard_paths(spec, self.fmt)
        record = {
            "shard": spec.name,
            "split": spec.split,
            "file": shard_rel.rsplit("/", 1)[-1],
            "rows": writer.rows,
            "bytes": writer.bytes,
            "sha256": writer.sha256,
            "recipe_hash": recipe_hash(self.recipe),
            "engine_version": __version__,
            "start": spec.start,
            "stop": spec.stop,
            "redraws": redraws,
            "rejects": sorted(rejects, key=lambda r: r["path"]),
            "stats": stats,
        }
        write_json(self.store, stats_rel, record, compact=True)  # machine-read: the compact encoder is ~10x faster
        return record

    # ------------------------------------------------------------------ end

    def on_write_complete(self, index_rejects: Iterable[dict[str, Any]] = (),
                          known: Mapping[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """Every task has ended: rebuild the run record and ``rejects.jsonl`` from one listing
        of OUT; the stats records of ``known`` (stats path -> record this run committed or
        found done) are not read again."""
        # A temporary file now is one a killed worker left behind (its shard was retried
        # under another temporary name).
        self.clean_temporary()
        state = self.resume_state(self.listing(known=known))
        shards = state.shards
        decode_rejects = shards.rejects() if isinstance(shards, ShardStates) else \
            [r for s in shards.values() if s.record is not None for r in s.record.get("rejects", [])]
        rejects = merge_rejects(index_rejects, decode_rejects)
        self.write_rejects(rejects)
        record = build_run_record(self.recipe, self.plan, state, rejected_files=len(rejects), lazy=True)
        self._write_run_record(record)
        self.release()
        return record

    def release(self) -> None:
        """Give up this run's lease on OUT (a no-op when it holds none)."""
        if self.lease is not None:
            self.lease.release()
            self.lease = None

    def on_write_failed(self, error: BaseException, index_rejects: Iterable[dict[str, Any]] = (),
                        known: Mapping[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """A run stopped by ``error``: the record still lists exactly the shards that are
        whole (the error itself is the caller's to report)."""
        del error  # nothing of it goes to disk: the record describes the files, not the run
        return self.on_write_complete(index_rejects, known)

    def write_rejects(self, rejects: list[dict[str, Any]]) -> None:
        """``rejects.jsonl``: one JSON object per rejected file with its path and reason."""
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rejects)
        self.store.write_bytes(REJECTS_FILE, text.encode("utf-8"))

    def write_coverage(self, report: dict[str, Any]) -> None:
        """``coverage.json``: the coverage report of a complete run."""
        write_json(self.store, COVERAGE_FILE, report)

    def _write_run_record(self, record: dict[str, Any]) -> None:
        write_run_record(self.store, record)  # streamed: the same bytes as write_json


def write_probe(out: str | Path | Store, verdict: dict[str, Any]) -> str:
    """``probe.json``: the mismatch probe's verdict on an output (``shardsmith mismatch
    probe --record``), beside its coverage report; returns where it was written. Written
    after the run, into an output whose run record lists it (``--overwrite`` removes it).

    Example: ``write_probe("out/diverse", {"format": 1, "probe": report.to_json(), ...})``
    """
    store = as_store(out)
    write_json(store, PROBE_FILE, verdict)
    return store.display(PROBE_FILE)


def read_back(out: str | Path | Store, rel: str) -> tuple[str, str]:
    """``(sha256, "")`` of a file read back whole, or ``("", why)`` when it cannot be read.
    Runs in a Ray worker (reading straight from the output location) or in the driver."""
    try:
        return as_store(out).sha256(rel), ""
    except OSError as exc:
        return "", str(exc).splitlines()[0][:200]


def remove_listed(out: str | Path | Store, record: dict[str, Any], *, record_file: str = RUN_RECORD_FILE) -> int:
    """Delete the files a run record lists, and ``record_file`` (the file it was read from),
    never anything outside OUT; then local folders left empty by that; nothing else.

    Example: ``remove_listed("out/demo", read_run_record("out/demo"))``
    """
    store = as_store(out)
    removed = 0
    listed = [rel for rel in [*run_record_files(record), record_file] if _inside(rel)]
    for rel in dict.fromkeys(listed):
        if store.delete(rel):
            removed += 1
    if store.is_local:
        root = store.local_path().resolve()
        for d in sorted({(root / rel).parent for rel in listed}, reverse=True):
            if d != root and d.is_dir() and not any(d.iterdir()):
                d.rmdir()
    return removed


def _inside(rel: str) -> bool:
    """A listed entry that stays inside OUT (no absolute path, no '..')."""
    parts = Path(rel).parts
    return bool(parts) and not Path(rel).is_absolute() and ".." not in parts


def _rows_by_item(table: pa.Table) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["pool"], r["item"]): r for r in table.to_pylist()}


def pool_index_table(index: PoolIndex) -> pa.Table:
    """Every usable item of every pool, one row each (what the shards are drawn from),
    with the content fingerprint of the file it lives in (and, with image pools, each
    item's ``width`` and ``height`` in pixels)."""
    rows: dict[str, list] = {k: [] for k in ("pool", "item", "duration_s", "sample_rate", "channels", "holdout",
                                             "fingerprint")}
    # Pools in name order: the same pools listed in another order in the recipe give the
    # same table (sampling looks pools up by name, so their order changes nothing written).
    for name, pool in sorted(index.pools.items()):
        n = len(pool)
        rows["pool"] += [name] * n
        rows["item"] += pool.items
        rows["duration_s"] += pool.duration_s.tolist()
        rows["sample_rate"] += pool.sample_rate.tolist()
        rows["channels"] += pool.channels.tolist()
        rows["holdout"] += pool.holdout.tolist()
        rows["fingerprint"] += pool.fingerprints or [""] * n
    # Image pools: each item's size, so coverage counts pixels where audio counts seconds
    # (only when there is an image pool: an audio run's index keeps its columns).
    if any(pool.width is not None for pool in index.pools.values()):
        for col in ("width", "height"):
            rows[col] = [v for _, pool in sorted(index.pools.items())
                         for v in (getattr(pool, col).tolist() if getattr(pool, col) is not None else [0] * len(pool))]
    return pa.table(rows)


def pool_index_bytes(index: PoolIndex) -> bytes:
    """``pool_index.parquet`` of ``index`` as bytes: what :meth:`OutputSink.record_pools`
    writes, and what a run's coverage merge takes its catalog from before the file is
    written.

    Example: ``catalog_from_parquet(io.BytesIO(pool_index_bytes(index)))``
    """
    buffer = pa.BufferOutputStream()
    pq.write_table(pool_index_table(index), buffer)
    return buffer.getvalue().to_pybytes()


__all__ = ["OutputSink", "WriteStart", "read_back", "remove_listed", "pool_index_table", "pool_index_bytes",
           "write_probe"]
