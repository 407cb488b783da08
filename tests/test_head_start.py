"""The head start: while a local Ray instance starts, the driver makes shards itself; once
Ray is up the workers take the rest. Ray's start is played by :class:`SlowStart`, which
says "up" (the module's real instance) after the driver has asked a set number of times,
so which shards the driver makes does not depend on the machine's speed. The bytes are
those of a run made by the workers alone; a fault in a shard the driver made is handled
as one in a worker.

Elsewhere: the real start in a thread (and no process left after it) in
test_lean_process.py; whole CLI runs, which take the head start, in test_run.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from engine import runtime
from engine.plan import make_plan
from engine.pools import index_pools
from engine.recipe import load_recipe
from engine.run_record import read_run_record
from engine.runtime import run

from .conftest import digests, small_recipe, write_recipe

pytestmark = pytest.mark.ray


class SlowStart:
    """A Ray start under the test's control: up (``ray``) once ``ready()`` has been asked
    more than ``after`` times. The callbacks given to ``when_up`` run at that moment, as
    they would in Ray's own thread, and ``on_up`` sees the tasks they submitted."""

    head_start = True

    def __init__(self, ray: Any, after: int, then: Callable[[Any], None] | None = None,
                 on_up: Callable[[], None] | None = None):
        self.ray, self.after, self.asked, self.up = ray, after, 0, False
        self.later: list[Callable[[Any], None]] = [then] if then is not None else []
        self.on_up = on_up or (lambda: None)
        self.closed = False

    @property
    def node_id(self) -> str:
        return self.ray.get_runtime_context().get_node_id()

    def _come_up(self) -> None:
        if not self.up:
            self.up = True
            for fn in self.later:
                fn(self.ray)
            self.on_up()

    def when_up(self, fn: Callable[[Any], None]) -> None:
        if self.up:
            fn(self.ray)
        else:
            self.later.append(fn)

    def ready(self) -> bool:
        self.asked += 1
        if self.asked > self.after:
            self._come_up()
        return self.up

    def wait(self) -> Any:
        self._come_up()
        return self.ray

    def close(self) -> None:
        self.closed = True


def slow_start(monkeypatch, ray: Any, after: int) -> list[SlowStart]:
    """Make ``runtime.run`` start Ray through a :class:`SlowStart`; returns the starts made."""
    made: list[SlowStart] = []

    def start(address, workers, then=None):
        made.append(SlowStart(ray, after, then))
        return made[-1]

    monkeypatch.setattr(runtime, "RayStart", start)
    return made


@pytest.fixture(scope="module")
def recipe_path(demo_corpus, tmp_path_factory) -> Path:
    # 5 shards of 20 rows: train 3, train_dev 1, train_dev_unseen 1
    return write_recipe(tmp_path_factory.mktemp("head") / "r.yaml", small_recipe(demo_corpus))


@pytest.fixture(scope="module")
def by_workers(ray_local, recipe_path, tmp_path_factory) -> Path:
    """The output made by the Ray workers alone (Ray already up: no head start)."""
    out = tmp_path_factory.mktemp("workers") / "out"
    summary = run(load_recipe(recipe_path), out, workers=1, progress=False)
    assert summary.status == "complete" and summary.shards_in_driver == 0
    return out


@pytest.mark.parametrize("after", [1, 2, 99])
def test_the_shards_the_driver_makes_while_ray_starts_are_byte_identical(
        ray_local, recipe_path, by_workers, tmp_path, monkeypatch, after):
    starts = slow_start(monkeypatch, ray_local, after)
    out = tmp_path / "out"
    summary = run(load_recipe(recipe_path), out, workers=1, progress=False)
    assert summary.status == "complete"
    assert summary.shards_in_driver == min(after, 5)  # one shard per "not up yet"
    assert summary.shards_written == 5
    assert summary.nodes == 1  # the driver's shards count on its own node
    assert f"{summary.shards_in_driver} shard" in summary.describe()
    assert starts[0].closed
    assert digests(out, (".arrow", ".parquet")) == digests(by_workers, (".arrow", ".parquet"))
    assert read_run_record(out)["total_rows"] == 100
    assert (out / "coverage.json").read_bytes() == (by_workers / "coverage.json").read_bytes()


def test_without_the_head_start_the_driver_waits_for_ray(ray_local, recipe_path, by_workers, tmp_path, monkeypatch):
    slow_start(monkeypatch, ray_local, 99)  # Ray "up" only when waited for
    summary = run(load_recipe(recipe_path), tmp_path / "out", workers=1, progress=False, head_start=False)
    assert (summary.status, summary.shards_in_driver, summary.shards_written) == ("complete", 0, 5)
    assert digests(tmp_path / "out", (".arrow", ".parquet")) == digests(by_workers, (".arrow", ".parquet"))


@pytest.mark.parametrize("workers, cpus, during", [(1, 2, 1), (2, 2, 1), (1, 1, 0), (3, 8, 3)])
def test_while_the_driver_is_busy_ray_gets_a_slot_fewer_unless_a_core_is_spare(
        ray_local, recipe_path, tmp_path, monkeypatch, workers, cpus, during):
    recipe = load_recipe(recipe_path)
    index = index_pools(recipe)
    todo = make_plan(recipe).shards
    pending: dict = {}
    seen: list[int] = []
    monkeypatch.setattr(runtime, "_usable_cpus", lambda: cpus)
    start = SlowStart(ray_local, after=1, on_up=lambda: seen.append(len(pending)))
    made = list(runtime._made(start, recipe, index, todo, str(tmp_path / "out"), workers, pending))
    # Ray came up while the driver made the first shard: it took ``during`` tasks at once.
    assert seen == [during]
    assert [spec.name for spec, _ in made][:1] == [todo[0].name]
    assert [r["node_id"] for _, r in made].count("") == 1
    assert sorted(spec.name for spec, _ in made) == sorted(s.name for s in todo)
    assert not pending


def test_once_the_run_stops_ray_coming_up_submits_nothing(ray_local, recipe_path, tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "_usable_cpus", lambda: 2)  # a spare core: Ray's thread would submit one
    recipe = load_recipe(recipe_path)
    index = index_pools(recipe)
    start = SlowStart(ray_local, after=99)
    pending: dict = {}
    made = runtime._made(start, recipe, index, make_plan(recipe).shards, str(tmp_path / "out"), 1, pending)
    spec, record = next(made)  # the driver's first shard
    made.close()  # the run stops there (an error, the lease lost): run() closes it in its finally
    start._come_up()  # Ray's thread finishes the start afterwards
    assert pending == {}  # no task that could write into the output after the run let go of it


def test_without_workers_given_every_cpu_of_the_cluster_stays_a_slot_after_the_head_start(
        ray_local, recipe_path, tmp_path, monkeypatch):
    # Ray's thread submits tasks while the driver is busy; the slots after that must still
    # be the cluster's CPUs (2 here), not what those tasks left free.
    monkeypatch.setattr(runtime, "_usable_cpus", lambda: 4)
    limits: list[int] = []
    real = runtime._as_finished
    monkeypatch.setattr(runtime, "_as_finished", lambda submit, items, limit, pending:
                        (limits.append(limit), real(submit, items, limit, pending))[1])
    recipe = load_recipe(recipe_path)
    pending: dict = {}
    seen: list[int] = []
    start = SlowStart(ray_local, after=1, on_up=lambda: seen.append(len(pending)))
    made = list(runtime._made(start, recipe, index_pools(recipe), make_plan(recipe).shards,
                              str(tmp_path / "out"), None, pending))
    assert seen == [2] and limits == [2] and len(made) == 5


def test_every_shard_made_by_the_driver_needs_no_ray(recipe_path, tmp_path):
    class NeverUp(SlowStart):
        def wait(self):
            raise AssertionError("waited for a Ray that was not needed")

    recipe = load_recipe(recipe_path)
    start = NeverUp(None, after=99)
    made = list(runtime._made(start, recipe, index_pools(recipe), make_plan(recipe).shards,
                              str(tmp_path / "out"), 1, {}))
    assert len(made) == 5 and all(r["node_id"] == "" for _, r in made)


def test_the_driver_drops_its_decodes_once_it_makes_no_more_shards(
        ray_local, recipe_path, tmp_path, monkeypatch):
    from engine import worker

    released: list[str] = []
    real = worker.release_process_state
    monkeypatch.setattr(worker, "release_process_state", lambda recipe: (released.append(recipe.name), real(recipe)))
    recipe = load_recipe(recipe_path)
    index = index_pools(recipe)
    todo = make_plan(recipe).shards
    start = SlowStart(ray_local, after=2)
    order: list[str] = []
    for spec, record in runtime._made(start, recipe, index, todo, str(tmp_path / "out"), 1, {}):
        order.append("driver" if record["node_id"] == "" else "ray")
        if order[-1] == "ray":
            assert released == [recipe.name]  # before the first shard from Ray came back
    assert order == ["driver", "driver", "ray", "ray", "ray"]
    assert released == [recipe.name]


def test_no_head_start_when_ray_is_there_or_joined(ray_local, recipe_path, tmp_path):
    start = runtime.RayStart()  # the module's instance is up: used, not started
    assert start.ready() and not start.head_start
    assert start.wait() is ray_local
    start.close()
    assert ray_local.is_initialized()  # somebody else's: never shut down


def test_speech_noise_mix_lets_go_of_what_its_process_kept_across_shards(recipe_path, tmp_path):
    from engine import worker
    from engine.synth.speech_noise_mix import synth as snm

    recipe = load_recipe(recipe_path)
    index = index_pools(recipe)
    worker.make_shard(recipe, index, make_plan(recipe).shards[0], str(tmp_path / "out"))
    assert snm._LOSSLESS.seen and snm._LOSSLESS.owner == index.token  # the noise files' reads, kept for the next shard
    worker.release_process_state(recipe)
    assert not (snm._LOSSLESS.seen or snm._LOSSLESS.decoded or snm._GENERATED or snm._RIRS)
    assert snm._LOSSLESS.owner == "" and snm._GENERATED_BYTES == [0]


def test_a_local_run_shares_decodes_in_a_private_folder_it_removes_and_sweeps_a_killed_runs(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys
    import tempfile

    from engine.env import SHARED_DECODES_ENV

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    host = socket.gethostname()
    left = tmp_path / f"{runtime.SHARED_DECODES_PREFIX}{host}-{int(gone.stdout)}-abc"  # a run killed with its decodes
    left.mkdir()
    (left / "x.f32").write_bytes(b"0" * 16)
    alive = tmp_path / f"{runtime.SHARED_DECODES_PREFIX}{host}-{os.getppid()}-def"  # a run still going
    alive.mkdir()
    elsewhere = tmp_path / f"{runtime.SHARED_DECODES_PREFIX}other-host-{int(gone.stdout)}-ghi"  # another host's
    elsewhere.mkdir()
    monkeypatch.setenv(SHARED_DECODES_ENV, "/somewhere/else")
    with runtime._shared_decodes() as folder:
        assert os.environ[SHARED_DECODES_ENV] == folder
        assert Path(folder).parent == tmp_path and (os.stat(folder).st_mode & 0o777) == 0o700
        (Path(folder) / "y.f32").write_bytes(b"1" * 16)
        assert not left.exists() and alive.exists() and elsewhere.exists()
    assert not Path(folder).exists()
    assert os.environ[SHARED_DECODES_ENV] == "/somewhere/else"
