"""The only module that knows Ray: start or connect, run one task per shard, progress.

A local run (no ``address``) starts a private Ray instance that listens on 127.0.0.1
only, with Ray's token authentication left on (Ray writes ``~/.ray/auth_token``). With
``address`` it joins an existing cluster. Either way each shard is one task; finished
shards are skipped on a re-run, so a killed run resumes with nothing lost or duplicated.

Example::

    summary = run(load_recipe("recipes/demo_in_car.yaml"), "out/demo_in_car")
    print(summary.describe())
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import ShardError, ShardsmithError
from .manifest import (
    build_manifest,
    clean_temporary,
    prepare_out,
    read_stats,
    shard_paths,
    shard_state,
    write_manifest,
    write_rejects,
)
from .plan import Plan, make_plan
from .pools import PoolIndex, index_pools, merge_rejects, thread_mapper
from .recipe import Recipe, recipe_hash, recipe_to_dict

# Pools with more files than this are probed as Ray tasks rather than local threads.
RAY_PROBE_MIN_FILES = 2000
PROBE_CHUNK = 500
POOL_INDEX_FILE = "pool_index.parquet"


@dataclass
class RunSummary:
    out: Path
    samples: int = 0
    shards: int = 0
    shards_written: int = 0
    shards_skipped: int = 0
    seconds_audio: float = 0.0
    wall_s: float = 0.0
    rejects: int = 0
    status: str = "partial"
    splits: dict[str, int] = field(default_factory=dict)

    @property
    def realtime_factor(self) -> float:
        return self.seconds_audio / self.wall_s if self.wall_s > 0 else 0.0

    def describe(self) -> str:
        lines = [
            f"shardsmith: {self.status}: {self.samples} samples in {self.shards} shards "
            f"({self.shards_written} written, {self.shards_skipped} already done)",
            f"  audio: {self.seconds_audio:.1f} s written in {self.wall_s:.1f} s "
            f"= {self.realtime_factor:.0f}x realtime",
            "  splits: " + ", ".join(f"{k} {v}" for k, v in self.splits.items()),
            f"  rejected source files: {self.rejects} (rejects.jsonl)",
            f"  output: {self.out}",
        ]
        return "\n".join(lines)


# --------------------------------------------------------------------------- Ray


def _ray():
    import ray

    return ray


@contextmanager
def ray_session(address: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """Start (or join) Ray for the duration of a block; shut down only what we started.

    Example: ``with ray_session(workers=2): ...``
    """
    # Must be set before Ray starts: keeps a single-node instance on 127.0.0.1 only.
    if address is None:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    ray = _ray()
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "logging_level": "ERROR",
            "log_to_driver": True,
            "configure_logging": True,
        }
        if address is None:
            kwargs["num_cpus"] = workers or os.cpu_count() or 1
            kwargs["_node_ip_address"] = "127.0.0.1"
        else:
            kwargs["address"] = address
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the cluster at {address!r}" if address else "a local Ray instance"
            raise ShardsmithError(
                f"cannot start or reach {where}: {exc}. For a cluster, check `ray status` on the "
                "head node and that this machine has the cluster's auth token (~/.ray/auth_token)"
            ) from None
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _ray_mapper(ray: Any) -> Callable:
    def mapper(fn: Callable[[str], Any], items: Sequence[str]) -> list[Any]:
        if len(items) < RAY_PROBE_MIN_FILES:
            return thread_mapper(fn, items)
        remote = ray.remote(num_cpus=1)(lambda chunk: thread_mapper(fn, chunk))
        chunks = [list(items[i : i + PROBE_CHUNK]) for i in range(0, len(items), PROBE_CHUNK)]
        return [r for part in ray.get([remote.remote(c) for c in chunks]) for r in part]

    return mapper


def _shard_task(recipe_data: dict, base_dir: str, index: PoolIndex, spec: Any, out: str) -> dict:
    # Runs in a Ray worker: re-validate the recipe there (cheap) rather than pickling models.
    from .recipe import parse_recipe
    from .worker import make_shard

    recipe = parse_recipe(recipe_data, base_dir=base_dir)
    return make_shard(recipe, index, spec, out)


def _unwrap(exc: BaseException) -> BaseException:
    """The user-facing error inside a Ray task error (our own errors keep their message)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, ShardsmithError):
        return cause
    return exc


# --------------------------------------------------------------------------- progress


class Progress:
    """A tqdm bar on stderr (samples/s and ETA); plain periodic lines when not a TTY."""

    def __init__(self, total: int, enabled: bool = True):
        self.total = total
        self.enabled = enabled and total > 0
        self._bar = None
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, unit="sample", unit_scale=True, file=sys.stderr, mininterval=1.0,
                dynamic_ncols=True, desc="synthesizing", smoothing=0.1,
            )

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# --------------------------------------------------------------------------- run


def write_pool_index(out: Path, index: PoolIndex) -> None:
    """``OUT/pool_index.parquet``: every usable item (coverage needs what was available)."""
    rows: dict[str, list] = {k: [] for k in ("pool", "item", "duration_s", "sample_rate", "channels", "holdout")}
    for name, pool in index.pools.items():
        n = len(pool)
        rows["pool"] += [name] * n
        rows["item"] += pool.items
        rows["duration_s"] += pool.duration_s.tolist()
        rows["sample_rate"] += pool.sample_rate.tolist()
        rows["channels"] += pool.channels.tolist()
        rows["holdout"] += pool.holdout.tolist()
    table = pa.table(rows)
    tmp = out / f".{POOL_INDEX_FILE}.tmp-w"
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, out / POOL_INDEX_FILE)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ShardError(f"{out / POOL_INDEX_FILE}: cannot write ({exc.strerror or exc})") from None


def _finish(out: Path, recipe: Recipe, plan: Plan, index: PoolIndex) -> dict[str, Any]:
    manifest = build_manifest(out, recipe, plan)
    manifest["extra_files"] = [POOL_INDEX_FILE]
    decode_rejects = []
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            stats = read_stats(out / shard["stats"]) or {}
            decode_rejects.extend(stats.get("rejects", []))
    rejects = merge_rejects(index.rejects, decode_rejects)
    write_rejects(out, rejects)
    manifest["rejected_files"] = len(rejects)
    write_manifest(out, manifest)
    return manifest


def run(
    recipe: Recipe,
    out: str | Path,
    *,
    workers: int | None = None,
    address: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> RunSummary:
    """Synthesize every planned shard that is not already done into ``out``.

    Example: ``run(load_recipe("recipes/demo_in_car.yaml"), "out/demo", workers=2)``
    """
    say = log or (lambda msg: print(msg, file=sys.stderr))
    out = Path(out).absolute()
    plan = make_plan(recipe)
    rhash = recipe_hash(recipe)
    if workers is not None and workers < 1:
        raise ShardsmithError(f"--workers must be at least 1, got {workers}")
    prepare_out(out, recipe, plan, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    # Record which recipe owns OUT before any shard exists, so a killed run is resumable.
    write_manifest(out, build_manifest(out, recipe, plan) | {"extra_files": [POOL_INDEX_FILE]})
    removed = clean_temporary(out)
    if removed:
        say(f"removed {removed} temporary file(s) left by an interrupted run")

    summary = RunSummary(out=out, shards=len(plan.shards), splits=dict(plan.splits))
    with ray_session(address, workers) as ray:
        t_index = time.perf_counter()
        index = index_pools(recipe, mapper=_ray_mapper(ray))
        say(f"indexed pools in {time.perf_counter() - t_index:.1f} s:\n{index.summary()}")
        write_pool_index(out, index)
        if index.rejects:
            write_rejects(out, index.rejects)

        todo = []
        for spec in plan.shards:
            state, reason = shard_state(out, spec, recipe.output.format, rhash)
            if state == "done":
                summary.shards_skipped += 1
                continue
            if state == "damaged":
                say(f"rewriting {spec.name}: {reason}")
            todo.append(spec)
        if summary.shards_skipped:
            say(f"resuming: {summary.shards_skipped} shard(s) already done, {len(todo)} to write")

        limit = workers or max(1, int(ray.available_resources().get("CPU", 1)))
        task = ray.remote(num_cpus=1, max_retries=3, retry_exceptions=False)(_shard_task)
        recipe_data = recipe_to_dict(recipe)
        index_ref = ray.put(index)
        bar = Progress(sum(s.rows for s in todo), enabled=progress)
        pending: dict[Any, Any] = {}
        queue = list(todo)
        t0 = time.perf_counter()
        try:
            while queue or pending:
                while queue and len(pending) < limit:
                    spec = queue.pop(0)
                    ref = task.remote(recipe_data, str(recipe.base_dir), index_ref, spec, str(out))
                    pending[ref] = spec
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    spec = pending.pop(ref)
                    try:
                        record = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - re-raised as the user-facing error
                        err = _unwrap(exc)
                        if isinstance(err, ShardsmithError):
                            raise err from None
                        raise ShardError(f"{spec.name}: worker failed: {str(err).splitlines()[-1][:500]}") from None
                    summary.shards_written += 1
                    summary.seconds_audio += record["stats"]["seconds"]
                    bar.update(record["rows"])
        finally:
            bar.close()
            for ref in pending:
                ray.cancel(ref, force=True)
            summary.wall_s = time.perf_counter() - t0
            manifest = _finish(out, recipe, plan, index)
    summary.samples = manifest["total_rows"]
    summary.status = manifest["status"]
    summary.rejects = manifest["rejected_files"]
    return summary


__all__ = ["run", "ray_session", "RunSummary"]
