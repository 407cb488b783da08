"""Paths of the wrong kind given to the CLI: a clear error naming the path, within a
second, no traceback, no hang, nothing written.

The CLI runs in a subprocess with a timeout, so a hang fails the test instead of the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.errors import ShardsmithError
from engine.report import write_report

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_ALBUMENTATIONS_UPDATE": "1"}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def _fifo(tmp_path: Path) -> Path:
    p = tmp_path / "recipe.fifo"
    os.mkfifo(p)
    return p


def _folder(tmp_path: Path) -> Path:
    p = tmp_path / "recipes"
    p.mkdir()
    return p


def _huge(tmp_path: Path) -> Path:
    p = tmp_path / "huge.yaml"
    p.write_text("# " + "x" * (1 << 20) + "\nname: x\n")
    return p


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("command", ["plan", "run"])
@pytest.mark.parametrize("make, words", [
    (_fifo, "is a FIFO (named pipe), not a regular file; give the path of a recipe YAML file"),
    (lambda tmp: Path("/dev/zero"), "is a device, not a regular file; give the path of a recipe YAML file"),
    (_folder, "is a folder, not a recipe file; give the path of a recipe YAML file"),
    (_huge, "bytes, larger than a recipe can be (at most 1,048,576 bytes"),
])
def test_a_recipe_path_of_the_wrong_kind_is_refused_at_once(tmp_path, command, make, words):
    if make is not _huge and not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    path = make(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    before = listing(tmp_path)
    extra = ["--no-index"] if command == "plan" else ["--out", str(tmp_path / "out")]
    start = time.monotonic()
    done = cli(command, str(path), *extra, cwd=work)
    took = time.monotonic() - start
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"shardsmith: error: {path}: ")
    assert words in done.stderr
    assert listing(tmp_path) == before  # nothing written (no out/, nothing in the cwd)
    assert took < 30  # a hang or a read of /dev/zero would hit the timeout; startup dominates


def test_the_recipe_path_check_itself_takes_well_under_a_second(tmp_path):
    from engine.errors import RecipeError
    from engine.recipe import load_recipe

    targets = [_folder(tmp_path), _huge(tmp_path)]
    if hasattr(os, "mkfifo"):
        targets.append(_fifo(tmp_path))
    if Path("/dev/zero").exists():
        targets.append(Path("/dev/zero"))
    for target in targets:
        start = time.monotonic()
        with pytest.raises(RecipeError, match=f"^{target}: is "):
            load_recipe(target)
        assert time.monotonic() - start < 1.0, target


def _html_folder(tmp_path: Path) -> tuple[Path, str]:
    d = tmp_path / "reports"
    d.mkdir()
    return d, f"{d}: is a folder; give the HTML report a file name, e.g. {d / 'report.html'}"


def _html_no_parent(tmp_path: Path) -> tuple[Path, str]:
    p = tmp_path / "missing" / "report.html"
    return p, f"{p}: the folder {p.parent} does not exist; create it first"


def _html_parent_is_a_file(tmp_path: Path) -> tuple[Path, str]:
    f = tmp_path / "a_file"
    f.write_text("x")
    p = f / "report.html"
    return p, f"{p}: {f} is not a folder"


HTML_CASES = [_html_folder, _html_no_parent, _html_parent_is_a_file]


@pytest.mark.parametrize("make", HTML_CASES)
@pytest.mark.parametrize("command", [
    ["coverage", "{out}"],
    ["mismatch", "data", "--train", "{out}", "--dev", "{out}"],
])
def test_an_html_report_path_of_the_wrong_kind_is_refused_before_any_work(tmp_path, make, command):
    html, message = make(tmp_path)
    before = listing(tmp_path)
    args = [a.replace("{out}", str(tmp_path / "no_such_run")) for a in command]
    done = cli(*args, "--html", str(html), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("shardsmith: error: ") and message in done.stderr
    assert listing(tmp_path) == before  # no report, no temporary file


@pytest.mark.parametrize("make", HTML_CASES)
def test_write_report_refuses_the_same_paths_and_leaves_no_temporary_file(tmp_path, make):
    html, message = make(tmp_path)
    before = listing(tmp_path)
    with pytest.raises(ShardsmithError) as info:
        write_report(html, "<html></html>")
    assert message in str(info.value)
    assert listing(tmp_path) == before


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "report.html"

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(ShardsmithError, match=f"^{target}: cannot write the HTML report \\(Permission denied\\)"):
        write_report(target, "<html></html>")
    assert listing(tmp_path) == []


def test_write_report_writes_a_file_in_an_existing_folder(tmp_path):
    target = tmp_path / "report.html"
    assert write_report(target, "<html></html>") == target
    assert listing(tmp_path) == ["report.html"]


# The CLI's other path arguments: a FIFO never hangs, a device is never read, a folder
# where a file is needed (and the other way round) is named as such; exit code 1.

def _arg_fifo(tmp_path: Path) -> tuple[Path, str]:
    p = tmp_path / "arg.fifo"
    os.mkfifo(p)
    return p, "is a FIFO (named pipe)"


def _arg_device(tmp_path: Path) -> tuple[Path, str]:
    return Path("/dev/zero"), "is a device"


def _arg_folder(tmp_path: Path) -> tuple[Path, str]:
    p = tmp_path / "a_folder"
    p.mkdir()
    return p, "is a folder"


def _arg_file(tmp_path: Path) -> tuple[Path, str]:
    p = tmp_path / "a_file.csv"
    p.write_text("path\n")
    return p, "is a file"


# (command with {p} for the path under test and {run} for a plain folder, the argument
# named in the message, what it needs, the wrong kinds to try)
ARG_CASES = [
    (["mismatch", "errors", "--table", "{p}"], "--table", "not a file", [_arg_fifo, _arg_device, _arg_folder]),
    (["mismatch", "slices", "--shards", "{run}", "--predictions", "{p}"], "--predictions", "not a file",
     [_arg_fifo, _arg_device, _arg_folder]),
    (["mismatch", "slices", "--shards", "{p}", "--predictions", "{run}/p.csv"], "--shards", "not a folder",
     [_arg_fifo, _arg_device, _arg_file]),
    (["mismatch", "data", "--train", "{p}", "--dev", "{run}"], "--train", "not a folder",
     [_arg_fifo, _arg_device, _arg_file]),
    (["mismatch", "data", "--train", "web={p}", "--dev", "{run}"], "--train", "not a folder", [_arg_fifo]),
    (["mismatch", "data", "--train", "{run}", "--dev", "{p}"], "--dev", "not a file or a folder",
     [_arg_fifo, _arg_device]),
    (["split", "--source", "app={p}", "--target", "app", "--dev", "1", "--test", "1", "--train-dev", "1",
      "--out", "{run}/splits"], "--source app=", "not a file or a folder", [_arg_fifo, _arg_device]),
    (["split", "--source", "app={run}", "--target", "app", "--dev", "1", "--test", "1", "--train-dev", "1",
      "--out", "{p}"], "--out", "not a folder", [_arg_fifo, _arg_device, _arg_file]),
    (["export", "{run}", "--split", "train", "--to", "{p}"], "--to", "not a folder",
     [_arg_fifo, _arg_device, _arg_file]),
    (["export", "{p}", "--split", "train", "--to", "{run}/exported"], "OUT", "not a folder",
     [_arg_fifo, _arg_device, _arg_file]),
    (["coverage", "{p}"], "OUT", "not a folder", [_arg_fifo, _arg_device, _arg_file]),
    (["coverage", "{p}", "--json"], "OUT", "not a folder", [_arg_fifo]),
    (["demo-corpus", "{p}"], "DIR", "not a folder", [_arg_fifo, _arg_device, _arg_file]),
]


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(), reason="no FIFOs or /dev/zero")
@pytest.mark.parametrize("command, arg, needed, makes", ARG_CASES, ids=lambda v: v if isinstance(v, str) else None)
def test_a_path_argument_of_the_wrong_kind_is_refused_at_once(tmp_path, command, arg, needed, makes):
    run = tmp_path / "run"
    run.mkdir()
    for make in makes:
        path, kind = make(tmp_path)
        before = listing(tmp_path)
        args = [a.replace("{p}", str(path)).replace("{run}", str(run)) for a in command]
        done = cli(*args, cwd=tmp_path, timeout=30)  # a hang or a read of /dev/zero times out
        assert done.returncode == 1, (make.__name__, done.stderr)
        assert "Traceback" not in done.stderr
        sep = "" if arg.endswith("=") else " "
        assert done.stderr.startswith(f"shardsmith: error: {arg}{sep}{path}: {kind}, {needed}; give "), \
            (make.__name__, done.stderr)
        assert listing(tmp_path) == before  # nothing written
        if path.is_fifo():
            path.unlink()


# Every command that reads a run's output folder: one that is not there is named as such.
READS_A_RUN = [
    (["coverage", "{p}"], "OUT"),
    (["coverage", "{p}", "--html", "{run}/r.html"], "OUT"),
    (["export", "{p}", "--split", "train", "--to", "{run}/exported"], "OUT"),
    (["mismatch", "slices", "--shards", "{p}", "--predictions", "{run}/p.csv"], "--shards"),
    (["mismatch", "data", "--train", "{p}", "--dev", "{run}"], "--train"),
    (["mismatch", "data", "--train", "web={p}", "--dev", "{run}"], "--train"),
]


@pytest.mark.parametrize("command, arg", READS_A_RUN, ids=lambda v: " ".join(v[:2]) if isinstance(v, list) else v)
@pytest.mark.parametrize("missing", ["gone", "dangling_link"])
def test_a_run_folder_that_does_not_exist_is_named_with_the_fix(tmp_path, command, arg, missing):
    run = tmp_path / "run"
    run.mkdir()
    (run / "p.csv").write_text("sample_id,correct\na,1\n")
    path = tmp_path / missing
    if missing == "dangling_link":
        path.symlink_to(tmp_path / "nowhere")
    before = listing(tmp_path)
    done = cli(*[a.replace("{p}", str(path)).replace("{run}", str(run)) for a in command], cwd=tmp_path, timeout=30)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr == (f"shardsmith: error: {arg} {path}: does not exist; give a shardsmith output folder "
                           "(the --out of `shardsmith run`)\n"), done.stderr
    assert listing(tmp_path) == before


def test_demo_corpus_that_cannot_be_written_or_a_negative_seed_is_one_clear_error(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "speech").write_text("a file where the speech folder goes")
    done = cli("demo-corpus", str(corpus), cwd=tmp_path, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"shardsmith: error: {corpus / 'speech'}"), done.stderr  # the path that failed
    assert "cannot write the demo corpus" in done.stderr
    done = cli("demo-corpus", str(tmp_path / "new"), "--seed", "-1", cwd=tmp_path)
    assert done.returncode == 1 and done.stderr == "shardsmith: error: --seed -1: must be a non-negative integer\n"
    assert not (tmp_path / "new").exists()


def test_the_path_kind_check_itself_takes_well_under_a_second(tmp_path):
    from engine.errors import InputError
    from engine.storage import check_path_kind

    fifo = tmp_path / "f"
    targets = [(_folder(tmp_path), "file"), (Path("/dev/zero"), "file or folder")]
    if hasattr(os, "mkfifo"):
        os.mkfifo(fifo)
        targets.append((fifo, "folder"))
    for target, want in targets:
        start = time.monotonic()
        with pytest.raises(InputError, match=f"^--x {target}: is "):
            check_path_kind(target, arg="--x", want=want, fix="fix it")
        assert time.monotonic() - start < 1.0, target
    check_path_kind(tmp_path / "missing", arg="--x", want="file", fix="fix it")  # the reader reports it
    check_path_kind("s3://bucket/key", arg="--x", want="file", fix="fix it")
