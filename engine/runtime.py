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
A local instance starts in a thread of its own (:class:`RayStart`) and the driver makes
shards itself until it is up (the head start, :func:`_made`); the bytes are the same.

Example::

    summary = run(load_recipe("recipes/demo_in_car.yaml"), "out/demo_in_car")
    print(summary.describe())
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
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
from .env import SHARED_DECODES_ENV, arrow_without_pandas
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
    # Shards the driver made itself while the local Ray instance started (the head start).
    shards_in_driver: int = 0
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
            (f"  ran on {count(self.nodes, 'Ray node')}"
             + (f" ({count(self.shards_in_driver, 'shard')} made by the driver while Ray started)"
                if self.shards_in_driver else "") + "; " if self.shards_written else "  ")
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


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    sys.exit(signum)


class RayStart:
    """Ray started (a private local instance) or joined (``address``) for one block of work.

    A local instance starts in a thread of its own, so the caller goes on meanwhile (a run
    indexes its pools and makes its first shards in the driver): :meth:`ready` says whether
    it is up, :meth:`wait` blocks until it is and returns ``ray`` (or raises why it could
    not start). That thread lives as long as the instance does: Ray binds the processes it
    starts to the *thread* that started them (Linux ``PR_SET_PDEATHSIG``; with Ray 2.60 the
    GCS went away once a starting thread had returned), and :meth:`close` shuts the
    instance down before the thread ends. A cluster is joined in the calling thread, at
    once. ``then(ray)`` (``then(None)`` when Ray will not be there) is called once, in
    whichever thread finished the start.

    Example: ``start = RayStart(None, 2); ...; ray = start.wait(); ...; start.close()``
    """

    def __init__(self, address: str | None = None, workers: int | None = None,
                 then: Callable[[Any], None] | None = None):
        self.address = address
        self._up = threading.Event()
        self._lock = threading.RLock()
        self._later: list[Callable[[Any], None]] = [then] if then is not None else []
        self._end = threading.Event()
        self._ray: Any = None
        self._error: BaseException | None = None
        self._started = False
        self._thread: threading.Thread | None = None
        self.head_start = False  # a local instance starting in its thread: the caller may work meanwhile
        self._sigterm: Any = None  # the SIGTERM handler to put back at close()
        self.node_id = ""  # the driver's Ray node, once up
        # Must be set before Ray starts: keeps a single-node instance on 127.0.0.1 only.
        if address is None:
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        else:
            try:
                probe_address(address)
            except BaseException:
                self._finish(None)
                raise
            for key, value in JOIN_ENV.items():
                os.environ.setdefault(key, value)  # before Ray loads (it reads some on import); a user's own setting wins
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        ray = _ray()
        if ray.is_initialized():  # somebody else's (a test's): used, never shut down
            self._finish(ray)
            return
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "logging_level": "ERROR",
            "configure_logging": True,
        }
        if address is None:
            kwargs["num_cpus"] = workers or os.cpu_count() or 1
            kwargs["_node_ip_address"] = "127.0.0.1"
            self._thread = threading.Thread(target=self._start_local, args=(ray, kwargs), name="shardsmith-ray",
                                            daemon=True)
            self._thread.start()
            self.head_start = True
            if threading.current_thread() is threading.main_thread():
                # What ray.init does on the main thread, and not from its own: SIGTERM (a
                # scheduler's stop, `timeout`) becomes SystemExit, so the run's finally
                # blocks record the failure, release the lease and shut Ray down.
                before = signal.signal(signal.SIGTERM, _exit_on_sigterm)
                self._sigterm = signal.SIG_DFL if before is None else before
            return
        kwargs["address"] = address
        try:
            _join(ray, address, kwargs)
        except BaseException:
            self._finish(None)
            raise
        self._started = True
        self._finish(ray)

    def _finish(self, ray: Any) -> None:
        self._ray = ray
        with self._lock:  # every callback has run by the time ready() says so
            try:
                if ray is not None:
                    self.node_id = ray.get_runtime_context().get_node_id()
                for fn in self._later:
                    try:
                        fn(ray)
                    except Exception as exc:  # noqa: BLE001 - the run goes no further: wait() raises it
                        self._error = self._error or exc
            except Exception as exc:  # noqa: BLE001 - never left waiting: wait() raises it
                self._error = self._error or exc
            finally:
                self._later.clear()
                self._up.set()

    def _start_local(self, ray: Any, kwargs: dict[str, Any]) -> None:
        try:
            with _lean_local_node() as lean:
                ray.init(**kwargs, log_to_driver=not lean)  # a lean instance has no log monitor
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            self._error = ShardsmithError(f"cannot start a local Ray instance: {exc}")
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by wait()
            self._error = exc
        else:
            self._started = True
        self._finish(ray if self._started else None)
        if self._started:
            self._end.wait()  # the instance's processes live as long as this thread

    def when_up(self, fn: Callable[[Any], None]) -> None:
        """Call ``fn(ray)`` (or ``fn(None)``) once Ray is up (or will not be); now if it already is."""
        with self._lock:
            if not self._up.is_set():
                self._later.append(fn)
                return
        fn(self._ray)

    def ready(self) -> bool:
        """Ray is up, or failed to start (:meth:`wait` then raises why)."""
        return self._up.is_set()

    def wait(self) -> Any:
        """``ray`` once it is up; the reason it is not, raised."""
        self._up.wait()
        if self._error is not None:
            raise self._error
        return self._ray

    def close(self) -> None:
        """Shut down what this start started (a start under way is waited for first)."""
        self._up.wait()
        try:
            if self._started:
                self._ray.shutdown()
        finally:
            self._end.set()
            if self._thread is not None:
                self._thread.join()
            if self._sigterm is not None:
                signal.signal(signal.SIGTERM, self._sigterm)
                self._sigterm = None


@contextmanager
def ray_session(address: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """Start (or join) Ray for the duration of a block; shut down only what we started.

    Example: ``with ray_session(workers=2): ...``
    """
    start = RayStart(address, workers)
    try:
        yield start.wait()
    finally:
        start.close()


def _join(ray: Any, address: str, kwargs: dict[str, Any]) -> None:
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


@contextmanager
def _lean_local_node() -> Iterator[bool]:
    """While ``ray.init`` starts a private local instance: leave out the head processes it
    has no use for. Yields whether it did (the log monitor is then gone too).

    - The autoscaler monitor: a fixed single-node instance has nothing to scale. It also
      held every shutdown for a second (Ray stops its processes one after another and
      gives each up to a second on SIGTERM, and the monitor took all of it).
    - The log monitor: it streams the workers' stdout and stderr to the driver. The
      workers print nothing of their own (a failed shard reaches the run as an error
      naming the shard); what a synthesizer prints in a worker stays in Ray's session
      logs (``worker-*.out``, ``worker-*.err``; docs/cluster.md).
    - The API server, only where Ray is the minimal install that requirements.lock pins:
      with the dashboard off it runs the usage-stats module alone, which ``ray.init``
      turns off, and ``ray.init`` waits about a second for it. With ``ray[default]``'s
      dashboard packages installed it is kept: the dashboard agent's event module then
      waits for the address it publishes.

    Measured with Ray 2.60 on two cores: ``ray.init`` takes 1.7-1.8 s instead of
    2.4-3.5 s, and Ray's processes use 1-2 CPU-seconds fewer while it starts.
    ``ray.init`` has no switch for these (``ray start --no-monitor`` and
    ``--include-log-monitor=false`` exist on its command line only), so this puts a
    subclass of Ray's private ``Node`` class in place until the call returns. Ray is
    pinned in requirements.lock; ``scripts/test-latest.sh`` runs the tests on the newest
    Ray the project allows, where ``tests/test_lean_process.py`` notices if this stops
    leaving them out. If the class cannot be found, Ray starts in full.
    """
    try:
        from ray._private import node as ray_node  # lazily, like Ray itself (see _ray)
        from ray._private.utils import get_dashboard_dependency_error

        base = ray_node.Node
        minimal = get_dashboard_dependency_error() is not None

        class LeanNode(base):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                params = kwargs.get("ray_params", args[0] if args else None)
                if hasattr(params, "no_monitor") and hasattr(params, "include_log_monitor"):
                    params.no_monitor = True
                    params.include_log_monitor = False
                super().__init__(*args, **kwargs)

            def start_api_server(self, *args: Any, **kwargs: Any) -> Any:
                if minimal and kwargs.get("include_dashboard") is False:
                    return None
                return super().start_api_server(*args, **kwargs)

    except Exception:  # noqa: BLE001 - a changed private API: Ray starts in full
        yield False
        return
    ray_node.Node = LeanNode
    try:
        yield True
    finally:
        ray_node.Node = base


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


def _driver_shard(recipe: Recipe, index: PoolIndex, spec: Any, out: str) -> dict:
    """One shard made in the driver while Ray starts; a failure reads as a worker's would."""
    from .worker import make_shard  # the synthesizers' code loads with the first shard, as in a worker

    try:
        return make_shard(recipe, index, spec, out)
    except ShardsmithError:
        raise
    except Exception as exc:  # noqa: BLE001 - re-raised as the user-facing error
        why = str(exc).strip().splitlines()[-1][:500] if str(exc).strip() else type(exc).__name__
        raise ShardError(f"{spec.name}: failed in the driver: {why}") from None


SHARED_DECODES_PREFIX = "shardsmith-decodes-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # somebody else's process
        return True
    return True


@contextmanager
def _shared_decodes() -> Iterator[str]:
    """A private folder (mode 0700, in the temporary folder) where the driver and the
    workers of the local Ray instance share the whole decodes of long noise files
    (:data:`~engine.env.SHARED_DECODES_ENV`, set before Ray starts, so its workers inherit
    it): a file is decoded once on the machine, not once per process. Removed with what
    is in it when the run ends (a process still mapping a decode keeps it until it lets
    go); a folder left by a run that was killed (its process is gone) goes at the next."""
    base = tempfile.gettempdir()
    host = socket.gethostname().replace("/", "_")  # a temporary folder shared between hosts: only this host's
    with contextlib.suppress(OSError):
        for entry in os.scandir(base):
            owner = entry.name[len(SHARED_DECODES_PREFIX):].rsplit("-", 2)  # host, pid, mkdtemp's letters
            if entry.name.startswith(SHARED_DECODES_PREFIX) and len(owner) == 3 and owner[0] == host \
                    and owner[1].isdigit() and not _alive(int(owner[1])) \
                    and entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_uid == os.getuid():
                shutil.rmtree(entry.path, ignore_errors=True)
    folder = tempfile.mkdtemp(prefix=f"{SHARED_DECODES_PREFIX}{host}-{os.getpid()}-", dir=base)
    before = os.environ.get(SHARED_DECODES_ENV)
    os.environ[SHARED_DECODES_ENV] = folder
    try:
        yield folder
    finally:
        if before is None:
            os.environ.pop(SHARED_DECODES_ENV, None)
        else:
            os.environ[SHARED_DECODES_ENV] = before
        shutil.rmtree(folder, ignore_errors=True)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _made(starting: RayStart, recipe: Recipe, index: PoolIndex, todo: Sequence[Any], out: str,
          workers: int | None, pending: dict[Any, Any], *, head_start: bool = True) -> Iterator[tuple[Any, dict]]:
    """``(spec, stats record)`` of each shard of ``todo`` as it is made.

    A head start: while a local Ray instance is still starting (3-5 s on two cores), the
    driver makes shards itself, one at a time. Once Ray is up the driver finishes the shard
    in hand and makes no more; the workers take the rest, at most one task per worker slot
    at a time. While the driver is still busy, Ray gets every slot when the machine has a
    core beyond them (``--workers 1`` on two cores) and one slot fewer otherwise, so that
    no more shards are made at once than there are cores or slots. ``pending`` (ref ->
    spec) is the caller's, to cancel what still runs when it stops early. A shard's bytes
    are the same wherever it is made.
    """
    queue = list(todo)
    lock = threading.Lock()
    submitter: list[Callable[[Any], Any]] = []

    def tasks(ray: Any) -> Callable[[Any], Any]:
        if not submitter:
            task = ray.remote(num_cpus=1, max_retries=3, retry_exceptions=False)(_shard_task)
            recipe_data, index_ref = recipe_to_dict(recipe), ray.put(index)
            submitter.append(lambda spec: task.remote(recipe_data, str(recipe.base_dir), index_ref, spec, out))
        return submitter[0]

    limits: list[int] = []

    def slots(ray: Any) -> int:  # once: the cluster's CPUs, not what tasks already submitted left free
        if not limits:
            limits.append(workers or max(1, int(ray.cluster_resources().get("CPU", 1))))
        return limits[0]

    busy = [True]  # the driver is still in its head start: Ray's thread may submit

    def up_while_busy(ray: Any) -> None:  # in Ray's thread, while the driver makes a shard
        if ray is None:
            return
        limit = slots(ray)
        if limit >= _usable_cpus():
            limit -= 1  # no spare core: the driver's shard takes a slot until it is done
        with lock:
            while busy[0] and queue and len(pending) < limit:
                spec = queue.pop(0)
                pending[tasks(ray)(spec)] = spec

    made_here = 0
    head_start = head_start and starting.head_start
    if head_start:
        # Ray's thread pickles the index while the driver's shard reads it: what the index
        # caches on first use is made here first, so that nothing changes under the pickler.
        index.sources  # noqa: B018 - a cached property, computed now
        starting.when_up(up_while_busy)
    try:
        while head_start and not starting.ready():
            with lock:
                if not queue:
                    break
                spec = queue.pop(0)
            record = _driver_shard(recipe, index, spec, out)
            made_here += 1
            record["node_id"] = ""  # the driver's node: named by the caller once Ray is up
            yield spec, record
    finally:
        with lock:  # from here on only this thread submits (the caller cancels what it did)
            busy[0] = False
    if made_here:
        from .worker import release_process_state  # loaded with the shard made above

        release_process_state(recipe)  # the driver makes no more shards: the workers hold their own
    if not (queue or pending):
        return  # every shard made by the driver: whether Ray came up does not matter to this run
    ray = starting.wait()
    for spec, ref in _as_finished(tasks(ray), queue, slots(ray), pending):
        try:
            record = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - re-raised as the user-facing error
            err = _unwrap(exc)
            if isinstance(err, ShardsmithError):
                raise err from None
            raise ShardError(f"{spec.name}: worker failed: {str(err).splitlines()[-1][:500]}") from None
        yield spec, record


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
    head_start: bool = True,
) -> RunSummary:
    """Synthesize every planned shard that is not already done into ``out``.

    Before any shard, the coverage guards are forecast from the plan and the pool index
    and a run bound to be narrow is refused with :class:`GuardError` (exit code 3) unless
    ``allow_narrow``; a complete run ends with ``OUT/coverage.json`` and the guards
    checked on the real stats (``summary.coverage_passed``).

    On a resume a finished shard is trusted by its commit record (recipe hash, rows, and
    its size in one listing of OUT); ``verify`` also reads every finished shard back and
    checks its sha256 against the record (a same-size corruption is found only so).

    Without ``address`` the local Ray instance starts while the driver indexes the pools
    and then makes shards itself; once Ray is up the workers make the rest
    (``summary.shards_in_driver`` counts the driver's). ``head_start=False``: the driver
    waits for Ray and makes none (a benchmark of Ray's dispatch).

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

        def ray_up(ray: Any) -> None:
            indexing.ray_ready(ray)
            if ray is not None:
                warm_task = ray.remote(num_cpus=1)(_warm_worker)
                for _ in range(workers or 1):
                    warm_task.remote(recipe.synth.type)  # fire and forget

        if address is None:  # the driver and the local workers decode a noise file once
            scope.enter_context(_shared_decodes())
        starting = RayStart(address, workers, then=ray_up)
        scope.callback(starting.close)
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

            limit = workers or 1
            if verify:  # the workers may hash the finished shards: Ray first
                limit = workers or max(1, int(starting.wait().available_resources().get("CPU", 1)))
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

            bar = Progress(sum(s.rows for s in todo), enabled=progress)
            pending: dict[Any, Any] = {}
            failure: BaseException | None = None
            t0 = time.perf_counter()
            made = _made(starting, recipe, index, todo, sink.store.uri, workers, pending, head_start=head_start)
            try:
                for spec, record in made:
                    if sink.lease is not None:
                        sink.lease.check()  # another run took the output over: stop, do not write beside it
                    coverage.add_shard(record, spec.split)
                    known[shard_paths(spec, sink.fmt)[1]] = slim_record(record)
                    summary.shards_written += 1
                    summary.seconds_audio += record["stats"]["seconds"]
                    summary.node_ids.add(record["node_id"])
                    summary.shards_in_driver += record["node_id"] == ""
                    bar.update(record["rows"])
            except BaseException as exc:
                failure = exc
                raise
            finally:
                made.close()  # Ray's thread submits nothing after this
                bar.close()
                if "" in summary.node_ids:  # shards made in the driver while Ray started
                    summary.node_ids.discard("")
                    summary.node_ids.add(starting.node_id)
                # Every task ends (or is cancelled) before the sink rebuilds the record.
                for ref in pending:
                    _ray().cancel(ref, force=True)
                if isinstance(failure, PoolIndexFault):
                    if pending:  # no commit may land after the withdrawal
                        _ray().wait(list(pending), num_returns=len(pending), timeout=60)
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
