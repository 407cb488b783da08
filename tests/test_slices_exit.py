"""`mismatch slices` with predictions that name no row ends with its message, never with
exit code 134 (issue 16: `terminate called without an active exception` in 2 runs of 12).

The cause: the pool index was read by ``pq.read_table`` over a Python file object, a
threaded scan whose last release of a buffer read through that file (a Python object) can
come after the interpreter has begun to exit; the Arrow thread then takes the GIL, Python
ends it, and the C++ runtime aborts the process. With no prediction joining, the command
fails right after that read, so the release was still in flight. The index is now read
synchronously on the calling thread."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.layout import POOL_INDEX_FILE, RUN_RECORD_FILE
from engine.mismatch.slices import held_out_items

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def output(tmp_path) -> Path:
    """An output folder as `mismatch slices` reads it: a run record and a pool index (no
    shard is needed when no prediction joins)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / RUN_RECORD_FILE).write_text(json.dumps({
        "format": "arrow", "recipe_hash": "0" * 64, "splits": {},
        "recipe": {"name": "t", "synth": {"type": "speech_noise_mix"}},
    }))
    n = 2000
    pq.write_table(pa.table({"pool": ["noise"] * n, "item": [f"n{i:04d}.wav" for i in range(n)],
                             "holdout": [i % 5 == 0 for i in range(n)]}), out / POOL_INDEX_FILE)
    return out


def test_the_pool_index_is_not_read_by_a_threaded_scan_over_a_python_file(output, monkeypatch):
    def threaded_scan(*args, **kwargs):
        raise AssertionError("pq.read_table over a Python file may abort the process at exit")

    monkeypatch.setattr(pq, "read_table", threaded_scan)
    held, notes = held_out_items(output)
    assert len(held) == 400 and notes == []


def test_predictions_naming_no_row_end_with_the_message_not_an_abort(output, tmp_path):
    preds = tmp_path / "preds.csv"
    preds.write_text("sample_id,correct\nnope-1,true\nnope-2,false\n")
    # The Python API with a normal interpreter exit (the command's own exit skips the native
    # teardown, which hid the abort), then the command itself.
    script = ("import sys\nfrom engine import evaluate_slices\nfrom engine.errors import InputError\n"
              "try:\n    evaluate_slices(sys.argv[1], sys.argv[2])\nexcept InputError as e:\n    print(e)\n")
    for _ in range(4):
        proc = subprocess.run([sys.executable, "-c", script, str(output), str(preds)], capture_output=True,
                              text=True, cwd=REPO, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "none of its 2 sample_ids is a row of" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "mismatch", "slices", "--shards", str(output),
                           "--predictions", str(preds)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.startswith(f"shardsmith: error: {preds}: none of its 2 sample_ids is a row of")
    assert "terminate called" not in proc.stderr
