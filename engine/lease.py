"""One writer per output: a run holds a lease on OUT while it writes.

Two runs into one output at once (a cluster job retried while the first is still alive)
would both synthesize every shard and race to commit them. So before it writes anything,
a run creates ``OUT/.shardsmith-lease.json`` atomically (:meth:`Store.create_exclusive`:
``O_EXCL`` on a file system, a conditional put with ``If-None-Match: *`` on an
S3-compatible store) holding who it is: run id, host, pid, start time and a heartbeat
that a thread renews every ``HEARTBEAT_S`` seconds.

A second run finds the file and is refused at once, with the holder and what to do. A
lease whose holder is gone is taken over: on the same host when its process no longer
exists, anywhere when its heartbeat is older than ``STALE_AFTER_S``. The heartbeat thread
checks that the file still names its run; if another run took the lease over (a holder
that stalled for minutes), the first learns it at its next beat and stops
(:meth:`Lease.check`) instead of writing beside it.

Example::

    with Lease.acquire(store):
        ...  # write the output
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from .errors import ShardError
from .layout import LEASE_FILE
from .storage import Store
from .version import __version__

HEARTBEAT_S = 20.0
STALE_AFTER_S = 120.0


class LeaseHeld(ShardError):
    """Another run holds the lease on this output."""


@dataclass(frozen=True)
class Holder:
    run_id: str
    host: str
    pid: int
    started: float
    heartbeat: float
    engine_version: str = ""

    def describe(self, now: float) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return (f"run {self.run_id[:8]} on host {self.host}, pid {self.pid}, started {started}, "
                f"last heartbeat {max(0.0, now - self.heartbeat):.0f} s ago")


def _read(store: Store) -> Holder | None:
    try:
        with store.open_input(LEASE_FILE) as f:
            data = json.loads(f.read())
        return Holder(**{k: data[k] for k in ("run_id", "host", "pid", "started", "heartbeat")},
                      engine_version=str(data.get("engine_version", "")))
    except (OSError, ValueError, KeyError, TypeError, ShardError):
        return None


def _gone(holder: Holder, now: float) -> str:
    """Why ``holder`` no longer holds its lease ("" while it does)."""
    if now - holder.heartbeat > STALE_AFTER_S:
        return f"its heartbeat is {now - holder.heartbeat:.0f} s old (more than {STALE_AFTER_S:g} s)"
    if holder.host == socket.gethostname():
        try:
            os.kill(holder.pid, 0)
        except ProcessLookupError:
            return f"its process {holder.pid} on this host has ended"
        except PermissionError:
            pass  # alive, another user's
    return ""


class Lease:
    """This run's lease on an output (see the module docstring)."""

    def __init__(self, store: Store, holder: Holder, took_over: str = ""):
        self.store, self.holder, self.took_over = store, holder, took_over
        self.lost = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def acquire(cls, store: Store, *, heartbeat: bool = True) -> "Lease":
        """Take the lease on ``store`` or raise :class:`LeaseHeld` naming its holder."""
        now = time.time()
        me = Holder(uuid.uuid4().hex, socket.gethostname(), os.getpid(), now, now, __version__)
        took_over = ""
        for _ in range(3):
            if store.create_exclusive(LEASE_FILE, _encode(me)):
                lease = cls(store, me, took_over)
                if heartbeat:
                    lease._start()
                return lease
            holder = _read(store)
            now = time.time()
            if holder is None:
                # Being written this instant, or left half-written by a killed run: a
                # file older than a heartbeat's staleness is the latter.
                age = now - (store.mtime(LEASE_FILE) or now)
                if age <= STALE_AFTER_S:
                    time.sleep(0.2)
                    continue
                took_over = f"an unreadable lease {age:.0f} s old"
            else:
                why = _gone(holder, now)
                if not why:
                    raise LeaseHeld(
                        f"{store.display()}: is being written by another run ({holder.describe(now)}). Wait for "
                        f"it to end or stop it; a lease whose holder has ended (or whose heartbeat is older "
                        f"than {STALE_AFTER_S:g} s) is taken over by the next run. Two runs into one output "
                        "would both write every shard"
                    )
                took_over = f"the lease of {holder.describe(now)}: {why}"
            store.delete(LEASE_FILE)
        raise LeaseHeld(f"{store.display()}: another run keeps taking the lease on this output; run one at a time")

    # ------------------------------------------------------------------ heartbeat

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="shardsmith-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.renew()

    def renew(self) -> None:
        """Write a fresh heartbeat, unless another run holds the lease now (then
        :attr:`lost` says so and :meth:`check` raises)."""
        current = _read(self.store)
        if current is None or current.run_id != self.holder.run_id:
            self.lost = (f"another run took the lease over ({current.describe(time.time())})" if current
                         else "the lease file was removed")
            self._stop.set()
            return
        try:
            self.store.write_bytes(LEASE_FILE, _encode(Holder(**{**asdict(self.holder), "heartbeat": time.time()})))
        except ShardError:
            pass  # a missed beat; the next one tries again

    def check(self) -> None:
        """Raise :class:`LeaseHeld` if this run lost its lease (see :meth:`renew`)."""
        if self.lost:
            raise LeaseHeld(f"{self.store.display()}: this run lost its lease on the output: {self.lost}; it "
                            "stopped so as not to write beside the other run")

    def release(self) -> None:
        """Stop the heartbeat and remove the lease file, if it is still this run's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        current = _read(self.store)
        if current is not None and current.run_id == self.holder.run_id:
            self.store.delete(LEASE_FILE)

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.release()


def _encode(holder: Holder) -> bytes:
    return json.dumps(asdict(holder), sort_keys=True).encode()


__all__ = ["Lease", "LeaseHeld", "Holder", "HEARTBEAT_S", "STALE_AFTER_S"]
