"""The only module that knows Ray: start or connect, dispatch one task per shard, progress.

It writes nothing itself: the output's commit protocol (claiming OUT, the pool index,
each shard and its stats record, the run record) is :class:`engine.sink.OutputSink`'s,
and which shards are done is the pure :func:`engine.resume.resume_state`.

A local run (no ``address``) starts a private Ray instance that listens on 127.0.0.1
only, with Ray's token authentication left on (Ray writes ``~/.ray/auth_token``). With
``address`` it joins an existing cluster; one that cannot be reached or joined is a
:class:`~engine.errors.ClusterError` (exit code 2) within about 30 s (``PROBE_TIMEOUT_S``,
``JOIN_ENV``), before anything is written to the output. Either way each shard is one task; finished
shards are skipped on a re-run, so a killed run resumes with nothing lost or duplicated.

Example::

    summary = run(load_recipe("recipes/demo_in_car.yaml"), "out/demo_in_car")
    print(summary.describe())
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from tqdm import tqdm

from .coverage import CoverageStats, analyze_coverage, check_forecast, describe_forecast, finish_coverage, new_coverage
from .env import arrow_without_pandas
from .errors import ClusterError, PoolIndexFault, ShardError, ShardsmithError
from .layout import COVERAGE_FILE, LEGACY_RUN_RECORD_FILE, REJECTS_FILE, RUN_RECORD_FILE, shard_paths
from .plan import make_plan
from .pools import PoolIndex, index_pools, record_fault, thread_mapper
from .recipe import Recipe, recipe_to_dict
from .report import count
from .resume import DAMAGED, DONE, Listing, ResumeState, slim_record, stats_problem
from .sink import OutputSink, pool_index_bytes, read_back
from .storage import read_json_many

# Pools with more files (or bytes) than this to validate are probed as Ray tasks rather
# than local threads, in chunks of at most PROBE_CHUNK files and about PROBE_CHUNK_BYTES.
RAY_PROBE_MIN_FILES = 2000
RAY_PROBE_MIN_BYTES = 1 << 30
PROBE_CHUNK = 500
PROBE_CHUNK_BYTES = 256 << 20


@dataclass
class RunSummary:
    out: str
    samples: int = 0
    shards: int = 0
    shards_written: int = 0
    shards_skipped: int = 0
    seconds_audio: float = 0.0
    wall_s: float = 0.0
    rejects: int = 0
    status: str = "partial"
    splits: dict[str, int] = field(default_factory=dict)
    node_ids: set[str] = field(default_factory=set)
    # Coverage of a complete run (OUT/coverage.json): None when not analyzed.
    coverage_passed: bool | None = None
    coverage_guards: list[dict[str, Any]] = field(default_factory=list)

    @property
    def nodes(self) -> int:
        """How many Ray nodes wrote shards in this run."""
        return len(self.node_ids)

    @property
    def realtime_factor(self) -> float:
        return self.seconds_audio / self.wall_s if self.wall_s > 0 else 0.0

    def _work_line(self) -> str:
        if not self.shards_written:
            return "  nothing to write: every shard was already done"
        if self.seconds_audio > 0:
            return (f"  audio: {self.seconds_audio:.1f} s written in {self.wall_s:.1f} s "
                    f"= {self.realtime_factor:.0f}x realtime")
        # Image recipes write no seconds of audio: samples per second instead.
        rate = f" = {self.samples / self.wall_s:.1f} samples/s" if self.wall_s > 0 and not self.shards_skipped else ""
        return f"  shards written in {self.wall_s:.1f} s{rate}"

    def describe(self) -> str:
        lines = [
            f"shardsmith: {self.status}: {self.samples} samples in {self.shards} shards "
            f"({self.shards_written} written, {self.shards_skipped} already done)",
            self._work_line(),
            "  splits: " + ", ".join(f"{k} {v}" for k, v in self.splits.items()),
            f"  rejected source files: {self.rejects} ({REJECTS_FILE})",
            (f"  ran on {count(self.nodes, 'Ray node')}; " if self.shards_written else "  ")
            + f"output: {self.out}",
        ]
        if self.coverage_passed is not None:
            failed = [g for g in self.coverage_guards if not g["passed"]]
            lines.append(
                f"  coverage guards: {'passed' if self.coverage_passed else 'FAILED'} "
                f"({len(self.coverage_guards) - len(failed)}/{len(self.coverage_guards)}); "
                f"{COVERAGE_FILE}, `shardsmith coverage {self.out} --html report.html`"
            )
            for g in failed:
                lines.append(f"    {g['name']} for pool {g['pool']!r}: {g['value']} (limit {g['limit']:g})")
        return "\n".join(lines)


# --------------------------------------------------------------------------- Ray


def _ray():
    import ray  # Ray loads on first use, not when engine.runtime is imported

    return ray


# Joining a cluster (--address) fails within about this many seconds when nothing answers:
# a TCP probe of the address first, then Ray's own connection with bounded retries.
PROBE_TIMEOUT_S = 5.0
JOIN_ENV = {
    "RAY_gcs_server_port_wait_time_s": "1",  # one connection attempt, not Ray's 20 (~35 s each)
    "RAY_py_gcs_connect_timeout_s": "10",  # that attempt's wait for the cluster's id (30 s by default)
}


def _join_hint(address: str) -> str:
    return (f"check that the cluster is up (`ray status` on its head node) and that {address!r} is its "
            "head node's address (HOST:PORT, port 6379 by default); for a cluster with token authentication "
            "set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN to the cluster's token (or RAY_AUTH_TOKEN_PATH to a "
            "file holding it). Nothing was written to --out")


# What Ray's GCS client logs when the cluster refuses the driver's token (or its lack of one).
_AUTH_REFUSED = ("InvalidAuthToken", "Unauthenticated", "UNAUTHENTICATED")


def _auth_refused(address: str) -> ClusterError:
    """The one message for a cluster that refused this driver's authentication."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        why = "it requires token authentication and this driver sent no token (RAY_AUTH_MODE is not 'token')"
    else:
        source = ("RAY_AUTH_TOKEN" if os.environ.get("RAY_AUTH_TOKEN") else
                  f"RAY_AUTH_TOKEN_PATH={os.environ['RAY_AUTH_TOKEN_PATH']}" if os.environ.get("RAY_AUTH_TOKEN_PATH")
                  else "~/.ray/auth_token, as neither RAY_AUTH_TOKEN nor RAY_AUTH_TOKEN_PATH is set")
        why = f"it refused this driver's token (from {source})"
    return ClusterError(
        f"cannot join the Ray cluster at {address!r}: {why}; set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN to the "
        "cluster's token (or RAY_AUTH_TOKEN_PATH to a file holding it; `ray get-auth-token` on the head node "
        "prints it). Nothing was written to --out"
    )


@contextmanager
def _stderr_held(held: list[str]) -> Iterator[None]:
    """Hold what is written to file descriptor 2 during the block (Ray's C++ client logs
    there, past Python) in ``held``; the caller prints it or replaces it with one message."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            held.append(sink.read().decode("utf-8", "replace"))


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``HOST:PORT`` or ``ray://HOST:PORT`` address; None for
    ``auto``, ``local`` and anything Ray parses itself."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def probe_address(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise :class:`ClusterError` when nothing accepts a TCP connection at ``address``
    within ``timeout`` seconds (Ray itself would retry for many minutes).

    Example: ``probe_address("127.0.0.1:6379")``
    """
    parsed = _host_port(address)
    if parsed is None:
        return
    try:
        with socket.create_connection(parsed, timeout=timeout):
            pass
    except OSError as exc:
        why = f"no answer within {timeout:g} s" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ClusterError(f"cannot reach the Ray cluster at {address!r} ({why}); {_join_hint(address)}") from None


@contextmanager
def ray_session(address: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """Start (or join) Ray for the duration of a block; shut down only what we started.

    Example: ``with ray_session(workers=2): ...``
    """
    # Must be set before Ray starts: keeps a single-node instance on 127.0.0.1 only.
    if address is None:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    else:
        probe_address(address)
        for key, value in JOIN_ENV.items():
            os.environ.setdefault(key, value)  # before Ray loads (it reads some on import); a user's own setting wins
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
        if address is None:
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
                raise ShardsmithError(f"cannot start a local Ray instance: {exc}") from None
        else:
            # Joining: Ray's client logs a refused token on file descriptor 2 and then names
            # the address it resolved, not the one given. Its log is held back and replaced
            # by one message naming the given address (printed as is when the join works).
            held: list[str] = []
            try:
                with _stderr_held(held):
                    ray.init(**kwargs)
            except Exception as exc:  # noqa: BLE001 - any failure to join is one clear error
                log = held[0] if held else ""
                if any(mark in log or mark in str(exc) for mark in _AUTH_REFUSED) or \
                        type(exc).__name__ == "AuthenticationError":
                    raise _auth_refused(address) from None
                first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
                if first.startswith("Failed to connect to Ray cluster at"):
                    first = "Ray could not connect to it"  # Ray names its resolved address there
                raise ClusterError(f"cannot join the Ray cluster at {address!r}: {first}; "
                                   f"{_join_hint(address)}") from None
            if held and held[0]:
                sys.stderr.write(held[0])
        started = True
    try:
        yield ray
    finally:
        if started:
            if address is None:
                _end_local_monitor()
            ray.shutdown()


def _end_local_monitor() -> None:
    """Kill the autoscaler monitor of the local instance this run started, before
    ``ray.shutdown()``.

    Ray stops its processes one after another and gives each up to a second to exit on
    SIGTERM; the monitor takes all of that second (measured with Ray 2.60: 1.0 s of a
    1.1 s shutdown), at the end of every local run. A private single-node instance has
    nothing for it to scale or save. Ray's private API (the version is locked); if it
    changes, this does nothing and the shutdown takes its second.
    """
    try:
        from ray._private import ray_constants  # lazily, like Ray itself (see _ray)
        from ray._private import worker as ray_worker  # lazily, like Ray itself

        infos = list(ray_worker._global_node.all_processes.get(ray_constants.PROCESS_TYPE_MONITOR, []))
    except Exception:  # noqa: BLE001 - a changed private API: leave it to ray.shutdown()
        return
    for info in infos:
        process = getattr(info, "process", None)
        if process is not None and process.poll() is None:
            process.kill()
            with contextlib.suppress(Exception):
                process.wait(timeout=1)


def _probe_chunk(fn: Callable[[str], Any], chunk: list[str]) -> list[Any]:
    # A module-level function: Ray pickles it by reference, not with the driver's globals.
    from .pools import thread_mapper as local_threads

    arrow_without_pandas()  # a Ray worker is shardsmith's own process
    return local_threads(fn, chunk)


def _chunks(n: int, sizes: Sequence[int]) -> list[tuple[int, int]]:
    """``(start, stop)`` runs of at most PROBE_CHUNK items and about PROBE_CHUNK_BYTES."""
    runs, start, held = [], 0, 0
    for i in range(n):
        held += sizes[i] if i < len(sizes) else 0
        if i + 1 - start >= PROBE_CHUNK or held >= PROBE_CHUNK_BYTES:
            runs.append((start, i + 1))
            start, held = i + 1, 0
    if start < n:
        runs.append((start, n))
    return runs


def _ray_mapper(ray: Any | Callable[[], Any]) -> Callable:
    """The probe mapper: local threads for a small pool, Ray tasks for a big one. ``ray``
    is the module, or a function that returns it once Ray is up (the pools are indexed
    while Ray starts; only a big pool waits for it)."""
    def mapper(fn: Callable[[str], Any], items: Sequence[str], sizes: Sequence[int] = ()) -> list[Any]:
        # Every frame of a file is decoded: many files or many bytes go to the cluster.
        if len(items) < RAY_PROBE_MIN_FILES and sum(sizes) < RAY_PROBE_MIN_BYTES:
            return thread_mapper(fn, items)
        ray_ = ray() if callable(ray) else ray
        if ray_ is None:  # Ray did not start: the run is being given up, finish here
            return thread_mapper(fn, items)
        remote = ray_.remote(num_cpus=1)(_probe_chunk)
        refs = [remote.remote(fn, list(items[a:b])) for a, b in _chunks(len(items), sizes)]
        return [r for part in ray_.get(refs) for r in part]

    return mapper


class _Indexing:
    """``index_pools`` and the coverage forecast in a thread of their own, started before
    Ray so that probing the pools (or reading their verdicts from the probe cache) and
    starting Ray overlap. A pool big enough to be probed on Ray waits for
    :meth:`ray_ready`; :meth:`result` joins the thread and returns the index and the
    forecast or raises what they raised."""

    def __init__(self, recipe: Recipe, allow_narrow: bool):
        self._ray_ready = threading.Event()
        self._ray: Any = None
        self._index: PoolIndex | None = None
        self._forecast: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._work, args=(recipe, allow_narrow), name="shardsmith-index", daemon=True)
        self._thread.start()

    def _wait_for_ray(self) -> Any:
        self._ray_ready.wait()
        return self._ray

    def _work(self, recipe: Recipe, allow_narrow: bool) -> None:
        t0 = time.perf_counter()
        try:
            self._index = index_pools(recipe, mapper=_ray_mapper(self._wait_for_ray))
            self.seconds = time.perf_counter() - t0
            # builds the synthesizer: its row schema (labels) is checked here, before any shard
            self._forecast = check_forecast(recipe, self._index, allow_narrow=allow_narrow)
        except BaseException as exc:  # noqa: BLE001 - handed to the run's thread by result()
            self._error = exc

    def ray_ready(self, ray: Any) -> None:
        """Ray is up (``ray``), or will not be (None): a waiting big pool goes on."""
        self._ray = ray
        self._ray_ready.set()

    def result(self) -> tuple[PoolIndex, dict[str, Any]]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._index is not None and self._forecast is not None
        return self._index, self._forecast


class _Background:
    """``fn(*args)`` in a thread; :meth:`result` joins it and returns or raises its outcome."""

    def __init__(self, fn: Callable[..., Any], *args: Any):
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, args=(fn, args), name="shardsmith-background", daemon=True)
        self._thread.start()

    def _work(self, fn: Callable[..., Any], args: tuple) -> None:
        try:
            self._value = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
            self._error = exc

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def _warm_worker(synth_type: str) -> None:
    # A module-level function run once per worker slot while the driver indexes: the
    # worker's imports (the engine's worker code, the synthesizer's package) are then not
    # paid by its first shard.
    arrow_without_pandas()  # a Ray worker is shardsmith's own process
    from . import worker  # noqa: F401
    from .synth.registry import synthesizer_class

    synthesizer_class(synth_type)


def _shard_task(recipe_data: dict, base_dir: str, index: PoolIndex, spec: Any, out: str) -> dict:
    # Runs in a Ray worker: re-validate the recipe there (cheap) rather than pickling models.
    arrow_without_pandas()  # once per worker (a no-op after the first)
    from .recipe import parse_recipe
    from .worker import make_shard

    recipe = parse_recipe(recipe_data, base_dir=base_dir)
    import ray  # Ray loads on first use, not when engine.runtime is imported

    record = make_shard(recipe, index, spec, out)
    record["node_id"] = ray.get_runtime_context().get_node_id()
    return record


# With --verify, finished shards are hashed again at resume. Up to this many bytes in all
# the driver does it itself (no Ray tasks to start for a small output); beyond it the
# workers hash their shares in parallel, each reading straight from the output location
# (so an output on an object store is not funnelled through the driver).
VERIFY_ON_DRIVER_MAX_BYTES = 256 * 2**20


def _as_finished(submit: Callable[[Any], Any], items: Sequence[Any], limit: int,
                 pending: dict[Any, Any]) -> Iterator[tuple[Any, Any]]:
    """Submit ``items`` as Ray tasks (``submit(item)`` returns the ref), at most ``limit``
    at a time, and yield ``(item, ref)`` as each finishes. ``pending`` (ref -> item) is the
    caller's, so that it can cancel what is still running when it stops early."""
    import ray  # Ray loads on first use, not when engine.runtime is imported

    queue = list(items)
    while queue or pending:
        while queue and len(pending) < limit:
            item = queue.pop(0)
            pending[submit(item)] = item
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            yield pending.pop(ref), ref


def _resume_state(sink: OutputSink, limit: int, say: Callable[[str], None], coverage: CoverageStats,
                  verify: bool, listing: Listing) -> ResumeState:
    """The cheap checks (stats, recipe, rows, size) of every planned shard from the claim's
    ``listing``, whose records were folded into ``coverage`` as the claim read them; with
    ``verify`` (the claim folded nothing), a listing of its own, then the sha256 of each
    shard that passed the checks, read back here or by the workers, and the stats of the
    shards the digests judged done added to ``coverage``. Without it a finished shard is
    trusted by its commit record: no shard is read."""
    if not verify:
        cheap = sink.resume_state(listing)
        finished = cheap.named(DONE)
        if finished:
            say(f"trusting {count(len(finished), 'finished shard')} by their commit records (recipe hash, rows, size; "
                "not read back: --verify hashes them)")
        return cheap
    state = _verified_state(sink, limit, say)
    done = [spec for spec in sink.plan.shards if state.shards[spec.name].state == DONE]
    for spec, record in zip(done, read_json_many(sink.store, [shard_paths(spec, sink.fmt)[1] for spec in done])):
        if record is not None and not stats_problem(record.get("stats", record)):
            coverage.add_shard(record, spec.split)  # else the end falls back to reading the stats files
    return state


def _verified_state(sink: OutputSink, limit: int, say: Callable[[str], None]) -> ResumeState:
    """The cheap checks, then the sha256 of every shard that passed them."""
    import ray  # Ray loads on first use, not when engine.runtime is imported

    listing = sink.listing()
    cheap = sink.resume_state(listing)
    fmt = sink.fmt
    finished = [shard_paths(spec, fmt)[0] for spec in sink.plan.shards if cheap.shards[spec.name].state == DONE]
    total = sum(listing.sizes[rel] for rel in finished)
    if total <= VERIFY_ON_DRIVER_MAX_BYTES:
        t0 = time.perf_counter()
        state = sink.resume_state(listing, {rel: read_back(sink.store, rel) for rel in finished})
        if finished:
            say(f"verified {count(len(finished), 'finished shard')} ({total / 2**20:,.1f} MiB, sha256) in the driver in "
                f"{time.perf_counter() - t0:.1f} s")
        return state
    t0 = time.perf_counter()
    task = ray.remote(num_cpus=1, max_retries=3)(read_back)
    digests: dict[str, tuple[str, str]] = {}
    pending: dict[Any, Any] = {}
    try:
        for rel, ref in _as_finished(lambda r: task.remote(sink.store.uri, r), finished, limit, pending):
            digests[rel] = ray.get(ref)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
    say(f"verified {count(len(finished), 'finished shard')} ({total / 2**20:,.0f} MiB, sha256) on "
        f"{count(limit, 'worker')} in {time.perf_counter() - t0:.1f} s")
    return sink.resume_state(listing, digests)


def _unwrap(exc: BaseException) -> BaseException:
    """The user-facing error inside a Ray task error (our own errors keep their message)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, ShardsmithError):
        return cause
    return exc


def _on_fault(fault: PoolIndexFault, recipe: Recipe, index: PoolIndex, sink: OutputSink,
              say: Callable[[str], None]) -> None:
    """A source failed in a worker after its pool index had validated it: no row made from
    it stays (finished shards that used it are withdrawn) and the probe cache records it as
    a reject, so the next index leaves it out."""
    if not fault.item:
        say(f"{fault.path} is no item of the pool index; no finished shard could be traced to it")
        return
    withdrawn = sink.withdraw_shards_using(fault.pool, fault.item)
    record_fault(recipe, index, fault.pool, fault.item, f"{fault.reason} (found when a worker decoded it)")
    say(f"withdrew {count(len(withdrawn), 'finished shard')} that used {fault.path}"
        + (": " + ", ".join(withdrawn[:5]) + (" ..." if len(withdrawn) > 5 else "") if withdrawn else "")
        + f"; the file is now a reject of pool {fault.pool!r}: fix or remove it, then re-run with --overwrite "
          "(the pools differ from the ones this output was started with)")


def _coverage_report(coverage: CoverageStats, merged: set[str], recipe: Recipe, run_record: dict[str, Any],
                     sink: OutputSink) -> dict[str, Any]:
    """The report of the stats merged while the run went, when they are exactly those of
    the shards the run record lists (always so for a complete run); else, as a safeguard,
    the report re-read from the stats files."""
    listed = {shard["stats"] for entry in run_record.get("splits", {}).values() for shard in entry.get("shards", [])}
    if listed == merged and coverage.shards == len(merged):
        return finish_coverage(coverage, recipe, run_record)
    return analyze_coverage(sink.store, recipe)


# --------------------------------------------------------------------------- progress


class Progress:
    """A tqdm bar on stderr (samples/s and ETA) when stderr is a terminal; otherwise (a log
    file, a pipe, CI) plain lines, one per 10 % or 30 s, whichever comes first, and one at
    the end, e.g. ``synthesizing: 240/440 samples (55 %), 49.5 samples/s, eta 4 s``.

    Example: ``p = Progress(440); p.update(40); p.close()``
    """

    EVERY_FRACTION = 0.10
    EVERY_S = 30.0

    def __init__(self, total: int, enabled: bool = True, *, stream: Any = None,
                 clock: Callable[[], float] = time.monotonic):
        self.total = total
        self.enabled = enabled and total > 0
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._bar = None
        self._done = 0
        self._t0 = self._last_t = clock()
        self._last_n = 0
        if self.enabled and self._is_terminal():
            self._bar = tqdm(
                total=total, unit="sample", unit_scale=True, file=self._stream, mininterval=1.0,
                dynamic_ncols=True, desc="synthesizing", smoothing=0.1,
            )

    def _is_terminal(self) -> bool:
        try:
            return bool(self._stream.isatty())
        except (AttributeError, ValueError, OSError):
            return False

    def _line(self) -> str:
        n, total = self._done, self.total
        elapsed = self._clock() - self._t0
        rate = n / elapsed if elapsed > 0 else 0.0
        text = f"synthesizing: {n}/{total} sample{'s' if total != 1 else ''} ({100 * n / total:.0f} %)"
        if rate > 0:
            text += f", {rate:.1f} samples/s"
            if n < total:
                text += f", eta {(total - n) / rate:.0f} s"
        return text

    def _print(self) -> None:
        print(self._line(), file=self._stream, flush=True)
        self._last_n, self._last_t = self._done, self._clock()

    def update(self, n: int) -> None:
        if not self.enabled:
            return
        self._done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        step = self.EVERY_FRACTION * self.total
        if (int(self._done / step) > int(self._last_n / step)  # crossed a 10 % mark
                or self._clock() - self._last_t >= self.EVERY_S):
            self._print()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self._done != self._last_n:
            self._print()


# --------------------------------------------------------------------------- run


def run(
    recipe: Recipe,
    out: str | Path,
    *,
    workers: int | None = None,
    address: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    allow_narrow: bool = False,
    verify: bool = False,
) -> RunSummary:
    """Synthesize every planned shard that is not already done into ``out``.

    Before any shard, the coverage guards are forecast from the plan and the pool index
    and a run bound to be narrow is refused with :class:`GuardError` (exit code 3) unless
    ``allow_narrow``; a complete run ends with ``OUT/coverage.json`` and the guards
    checked on the real stats (``summary.coverage_passed``).

    On a resume a finished shard is trusted by its commit record (recipe hash, rows, and
    its size in one listing of OUT); ``verify`` also reads every finished shard back and
    checks its sha256 against the record (a same-size corruption is found only so).

    Example: ``run(load_recipe("recipes/demo_in_car.yaml"), "out/demo", workers=2)``
    """

    say = log or (lambda msg: print(msg, file=sys.stderr))
    plan = make_plan(recipe)
    sink = OutputSink(out, recipe, plan)
    if workers is not None and workers < 1:
        raise ShardsmithError(f"--workers must be at least 1, got {workers}")
    summary = RunSummary(out=sink.store.display(), shards=len(plan.shards), splits=dict(plan.splits))
    analysis: _Background | None = None
    with contextlib.ExitStack() as scope:
        # The lease first: a second run into OUT is refused at once, before Ray starts. On
        # every way out it is released, and a folder made for it goes when nothing else was
        # written there (a cluster that cannot be joined leaves nothing in OUT).
        sink.take_lease()
        scope.callback(sink.give_up_lease)
        indexing = _Indexing(recipe, allow_narrow)  # the pools are indexed while Ray starts
        try:
            ray = scope.enter_context(ray_session(address, workers))
        except BaseException:
            indexing.ray_ready(None)
            raise
        indexing.ray_ready(ray)
        warm_task = ray.remote(num_cpus=1)(_warm_worker)
        warm = [warm_task.remote(recipe.synth.type) for _ in range(workers or 1)]  # noqa: F841 - fire and forget
        # A bad pool, a bad label or the guards refuse the run here, before OUT is claimed
        # (the lease goes with the scope, and the folder when this run made it).
        index, forecast = indexing.result()
        # The coverage report is merged as shards finish, seeded with the stats of the
        # finished ones from the commit records the claim reads anyway (each read once): the
        # end of the run reads no stats file again. Its catalog comes from the pool index's
        # bytes, written to OUT once the claim is made.
        pool_index = pool_index_bytes(index)
        coverage = new_coverage(None, recipe, pool_index)
        fold = None if verify else (lambda spec, record: coverage.add_shard(record, spec.split))
        start = sink.on_write_start(overwrite=overwrite, fold=fold)
        try:
            if start.took_over:
                say(f"took over {start.took_over}")
            if start.migrated:
                say(f"migrated the run record of an older shardsmith output from {LEGACY_RUN_RECORD_FILE} to "
                    f"{RUN_RECORD_FILE}")
            if start.removed_temporary:
                say(f"removed {count(start.removed_temporary, 'temporary file')} left by an interrupted run")
            say(f"indexed pools in {indexing.seconds:.1f} s (while Ray started):\n{index.summary()}")
            say(describe_forecast(forecast))
            if not forecast["passed"]:
                say("going ahead although the forecast fails the guards (--allow-narrow)")
            sink.record_pools(index, pool_index)

            limit = workers or max(1, int(ray.available_resources().get("CPU", 1)))
            # ``known``: the commit records (slim) of the finished shards, so the run record
            # at the end reads none again either.
            state = _resume_state(sink, limit, say, coverage, verify, start.listing)
            if state.stale:
                say(f"leaving {count(len(state.stale), 'shard')} of another plan alone (not in this run's record): "
                    + ", ".join(list(state.stale)[:5]) + (" ..." if len(state.stale) > 5 else ""))
            known = sink.commits(state)  # slim already (sink.listing); compact columns, not a dict per shard
            reopened = sink.reopen(state)
            del state  # its records are in ``known`` (slim) and ``coverage``
            for spec, shard in reopened:
                if shard.state == DAMAGED:
                    say(f"rewriting {spec.name}: {shard.reason}")
            todo = [spec for spec, _ in reopened]
            summary.shards_skipped = len(plan.shards) - len(todo)
            if summary.shards_skipped:
                say(f"resuming: {count(summary.shards_skipped, 'shard')} already done, {len(todo)} to write")

            task = ray.remote(num_cpus=1, max_retries=3, retry_exceptions=False)(_shard_task)
            recipe_data = recipe_to_dict(recipe)
            index_ref = ray.put(index)
            bar = Progress(sum(s.rows for s in todo), enabled=progress)
            pending: dict[Any, Any] = {}
            failure: BaseException | None = None
            t0 = time.perf_counter()

            def submit(spec: Any) -> Any:
                return task.remote(recipe_data, str(recipe.base_dir), index_ref, spec, sink.store.uri)

            try:
                for spec, ref in _as_finished(submit, todo, limit, pending):
                    try:
                        record = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - re-raised as the user-facing error
                        err = _unwrap(exc)
                        if isinstance(err, ShardsmithError):
                            raise err from None
                        raise ShardError(f"{spec.name}: worker failed: {str(err).splitlines()[-1][:500]}") from None
                    if sink.lease is not None:
                        sink.lease.check()  # another run took the output over: stop, do not write beside it
                    coverage.add_shard(record, spec.split)
                    known[shard_paths(spec, sink.fmt)[1]] = slim_record(record)
                    summary.shards_written += 1
                    summary.seconds_audio += record["stats"]["seconds"]
                    summary.node_ids.add(record.get("node_id", ""))
                    bar.update(record["rows"])
            except BaseException as exc:
                failure = exc
                raise
            finally:
                bar.close()
                # Every task ends (or is cancelled) before the sink rebuilds the record.
                for ref in pending:
                    ray.cancel(ref, force=True)
                if isinstance(failure, PoolIndexFault):
                    ray.wait(list(pending), num_returns=len(pending), timeout=60)  # no commit may land after the withdrawal
                    _on_fault(failure, recipe, index, sink, say)
                summary.wall_s = time.perf_counter() - t0
                if failure is None:
                    run_record = sink.on_write_complete(index.rejects, known)
                    if run_record["status"] == "complete":  # finished while Ray shuts down
                        analysis = _Background(_coverage_report, coverage, set(known), recipe, run_record, sink)
                else:
                    run_record = sink.on_write_failed(failure, index.rejects, known)
        finally:
            sink.release()  # every way out of a run gives up its lease on OUT
    summary.samples = run_record["total_rows"]
    summary.status = run_record["status"]
    summary.rejects = run_record["rejected_files"]
    if summary.status == "complete":
        report = (analysis.result() if analysis is not None
                  else _coverage_report(coverage, set(known), recipe, run_record, sink))
        sink.write_coverage(report)
        summary.coverage_passed = report["passed"]
        summary.coverage_guards = report["guards"]
    return summary


__all__ = ["run", "ray_session", "probe_address", "RunSummary"]
