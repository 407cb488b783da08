"""What shardsmith's own processes carry and leave behind: no pandas pulled in by pyarrow,
and a local Ray instance started without the head processes a run has no use for and
ended whole at the end of a run.

Each case runs in a fresh interpreter: the test process has pandas and Ray loaded already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, timeout: float = 120) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_pyarrow_is_kept_from_importing_pandas_and_pandas_still_loads_when_asked():
    got = _python("""
        import json, sys
        from engine.env import arrow_without_pandas
        told = arrow_without_pandas()
        import pyarrow as pa, pyarrow.parquet as pq, io
        t = pa.table({"a": pa.array([1, 2]), "s": ["x", "y"]})
        buf = io.BytesIO(); pq.write_table(t, buf)
        after_arrays = "pandas" in sys.modules
        frame = pq.read_table(io.BytesIO(buf.getvalue())).to_pandas()  # asks for pandas: loads it
        print(json.dumps({"told": told, "after_arrays": after_arrays, "rows": len(frame),
                          "loaded": "pandas" in sys.modules, "again": arrow_without_pandas()}))
    """)
    assert got == {"told": True, "after_arrays": False, "rows": 2, "loaded": True, "again": False}


def test_without_the_call_pyarrow_imports_pandas_for_its_first_array():
    # The reason for the call: if pyarrow stops doing this, arrow_without_pandas can go.
    got = _python("""
        import json, sys
        import pyarrow as pa
        pa.array([0])
        print(json.dumps({"pandas": "pandas" in sys.modules}))
    """)
    assert got == {"pandas": True}


def test_a_local_ray_session_starts_lean_and_leaves_no_process(tmp_path):
    got = _python("""
        import json, os
        import ray
        from ray._private import node as ray_node
        from engine.runtime import ray_session
        from ray._private import worker as ray_worker
        seen, node_class = {}, ray_node.Node
        import threading, time
        with ray_session(workers=1):
            infos = ray_worker._global_node.all_processes
            pids = {kind: [i.process.pid for i in items] for kind, items in infos.items()}
            # Ray started in a thread of its own; its processes die with the thread that
            # started them (PR_SET_PDEATHSIG), so that thread lives on, and a task still runs.
            time.sleep(1.0)
            seen["starter_alive"] = any(t.name == "shardsmith-ray" and t.is_alive() for t in threading.enumerate())
            seen["task"] = ray.get(ray.remote(lambda: 41 + 1).remote(), timeout=60)
            try:
                ray.get(ray.remote(lambda: 1 // 0).remote(), timeout=60)
            except Exception as exc:  # a worker's error still reaches the driver, traceback and all
                seen["error"] = str(exc)
            seen["node_class_back"] = ray_node.Node is node_class
            # what a worker prints is not streamed (no log monitor): it is in the session's logs
            def shout():
                print("shardsmith-lean-marker", flush=True)
            ray.get(ray.remote(shout).remote(), timeout=60)
            import glob
            logs = ray_worker._global_node.get_logs_dir_path()
            seen["printed_to"] = [os.path.basename(f) for f in glob.glob(os.path.join(logs, "worker-*.out"))
                                  if "shardsmith-lean-marker" in open(f).read()]
            import signal
            from engine import runtime
            seen["sigterm_exits"] = signal.getsignal(signal.SIGTERM) is runtime._exit_on_sigterm
        seen["starter_after"] = any(t.name == "shardsmith-ray" for t in threading.enumerate())
        seen["sigterm_after"] = signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        print(json.dumps({"pids": pids, **seen}))
    """)
    assert got["starter_alive"] and got["task"] == 42
    assert "ZeroDivisionError" in got["error"] and "line 18, in <lambda>" in got["error"]
    assert len(got["printed_to"]) == 1, got["printed_to"]
    # No autoscaler monitor, log monitor or API server (Ray is the minimal install here);
    # the GCS and the raylet are there.
    kinds = set(got["pids"])
    assert not kinds & {"monitor", "log_monitor", "dashboard"}, kinds
    assert {"gcs_server", "raylet"} <= kinds, kinds
    assert got["node_class_back"]  # Ray's own Node class is back once ray.init returned
    # SIGTERM exits through the run's finally blocks (as Ray's own handler does on the
    # main thread), and the handler before it is back afterwards.
    assert got["sigterm_exits"] and got["sigterm_after"]
    assert not got["starter_after"]  # ended with the instance
    for kind, pids in got["pids"].items():
        for pid in pids:
            assert not os.path.exists(f"/proc/{pid}") or _zombie(pid), f"{kind} ({pid}) left running"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True
