"""A real multi-node Ray cluster on one machine, every node on its own loopback address.

For trying cluster runs (and for the tests and the scaling benchmark): a head on
127.0.0.1 and worker nodes on 127.0.0.2, 127.0.0.3, ... started with the ``ray``
command as separate process groups, ended by group id (never with ``ray stop``, which
would end every Ray process of the user). Token authentication stays on; drivers join
with ``RAY_AUTH_MODE=token shardsmith run R --address 127.0.0.1:PORT``.

Example::

    cluster = LoopbackCluster()
    cluster.start_head()
    cluster.add_node("127.0.0.2")
    ...
    cluster.shutdown()
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from .env import DEFAULTS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_env() -> dict[str, str]:
    """The environment for `ray start` on a several-node loopback cluster."""
    env = dict(os.environ)
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "1"  # allow several nodes (all on loopback)
    env["RAY_AUTH_MODE"] = "token"  # every node uses ~/.ray/auth_token
    env.update(DEFAULTS)  # the nodes' workers import albumentations too
    return env


class LoopbackCluster:
    """Ray nodes as separate process groups on 127.0.0.x."""

    def __init__(self, cpus_per_node: int = 1) -> None:
        # Unix socket paths must stay short: a private folder directly under /tmp.
        self.temp_dir = tempfile.mkdtemp(prefix="ssray-", dir="/tmp")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.cpus_per_node = cpus_per_node
        self.groups: dict[str, int] = {}
        self._ray = str(Path(sys.executable).with_name("ray"))

    def _start(self, ip: str, args: list[str]) -> None:
        proc = subprocess.Popen(
            [self._ray, "start", "--node-ip-address", ip, "--num-cpus", str(self.cpus_per_node),
             "--disable-usage-stats", *args],
            env=cluster_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        out, _ = proc.communicate(timeout=180)
        self.groups[ip] = proc.pid  # the daemons it started stay in this process group
        if proc.returncode != 0:
            raise RuntimeError(f"ray start on {ip} failed:\n{out[-3000:]}")

    def start_head(self) -> None:
        self._start("127.0.0.1", ["--head", "--port", str(self.port), "--include-dashboard", "false",
                                  "--temp-dir", self.temp_dir])

    def add_node(self, ip: str) -> None:
        if not ip.startswith("127."):
            raise ValueError(f"{ip}: a loopback cluster uses 127.0.0.0/8 addresses only")
        self._start(ip, ["--address", self.address])

    def kill_node(self, ip: str) -> None:
        try:
            os.killpg(self.groups.pop(ip), signal.SIGKILL)
        except (ProcessLookupError, KeyError):
            pass

    def shutdown(self) -> None:
        for ip in list(self.groups)[::-1]:
            self.kill_node(ip)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> "LoopbackCluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
