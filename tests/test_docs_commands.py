"""Every example the docs show runs (issue 16): the ```bash / ```sh, ```console and
```python blocks of README.md and docs/*.md, in page order, one temporary folder per page
that holds `demo_data/` (the demo corpus), a copy of `recipes/`, and, for a page that reads
the README's tour run, a copy of its `out/tour`. The `shardsmith` command is this checkout's.

How a block is read (docs/README.md, "Examples that run"):

- ```bash / ```sh: a bash script (``set -euo pipefail``); a command that ends with the
  comment ``# exits N`` must exit with N, every other one with 0;
- ```console: a transcript; each line that starts with ``$ `` is a command (``\\`` carries
  it on), the other lines are its output and are not compared; ``$ echo $?`` followed by
  a number says the exit code of the command before; ``# exits N`` works as in bash;
- ```python: a script, run with this interpreter;
- a block of any language whose first line is a file name comment (``# mm/dev.yaml``,
  ``# gain_crop/config.py``) is that file, written into the folder for the page's later
  commands, not run;
- a block whose first line starts with ``# illustration only`` is not run (the rest of
  that line says why: a cluster, an object store, the network, a benchmark of minutes).

Usage synopses (``[--top 20]``) and output are ```text blocks. A page that starts Ray
(`shardsmith run`, ``engine.run``) or reads the tour run is marked ``slow_docs`` (CI runs it; ``-m "not
slow_docs"`` leaves it out locally). After each page no process started in its folder
may be left (Ray is shut down by the command)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKER = "# illustration only"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
_EXITS = re.compile(r"\s+#\s*exits\s+(\d+)\s*$")
_FILE_BLOCK = re.compile(r"#\s*([\w/-][\w./-]*\.\w+)\s*$")
_RUNS_RAY = re.compile(r"\bshardsmith run\b|\brun\(load_recipe|\bLoopbackCluster\(")
RUNNABLE = {"bash", "sh", "shell", "console", "python"}
TOUR = "out/tour"
BLOCK_TIMEOUT_S = 600


@dataclass
class Block:
    page: str
    line: int
    lang: str
    body: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass
class Page:
    path: Path
    blocks: list[Block] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.relative_to(ROOT).as_posix()

    @property
    def text(self) -> str:
        return "".join(b.body for b in self.blocks)


def page_blocks(path: Path) -> Page:
    """The runnable blocks of one page, in order (illustrations left out)."""
    text = path.read_text()
    page = Page(path)
    for m in _FENCE.finditer(text):
        lang, body = m.group(1).lower(), m.group(2)
        if body.lstrip().startswith(MARKER):
            continue
        if _FILE_BLOCK.fullmatch(body.lstrip().split("\n", 1)[0].strip()):
            lang = "file"
        elif lang not in RUNNABLE:
            continue
        page.blocks.append(Block(page.name, text[: m.start()].count("\n") + 1, lang, body))
    return page


def console_script(body: str) -> str:
    """A ```console transcript as a bash script: its ``$`` commands, each with the exit
    code the transcript states (``# exits N``, or ``$ echo $?`` and the number after it)."""
    commands: list[list[str]] = []  # [command, expected exit code]
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            i += 1
            continue
        cmd = line[2:]
        while cmd.endswith("\\") and i + 1 < len(lines):
            i += 1
            cmd = cmd[:-1] + " " + lines[i].strip()
        i += 1
        if cmd.strip() == "echo $?":
            if commands and i < len(lines) and lines[i].strip().isdigit():
                commands[-1][1] = lines[i].strip()
            continue
        m = _EXITS.search(cmd)
        commands.append([cmd[: m.start()] if m else cmd, m.group(1) if m else "0"])
    return "\n".join(_expect(cmd, code) for cmd, code in commands) + "\n"


def bash_script(body: str) -> str:
    """A ```bash block as a script: heredocs and ``\\`` continuations kept whole; a line
    ending in ``# exits N`` must exit N."""
    out: list[str] = []
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        heredoc = re.search(r"<<-?\s*'?\"?(\w+)'?\"?", line)
        if heredoc:
            out.append(line)
            i += 1
            while i < len(lines):
                out.append(lines[i])
                i += 1
                if lines[i - 1].strip() == heredoc.group(1):
                    break
            continue
        cmd = line
        while cmd.endswith("\\") and i + 1 < len(lines):
            i += 1
            cmd = cmd[:-1] + " " + lines[i].strip()
        i += 1
        m = _EXITS.search(cmd)
        out.append(_expect(cmd[: m.start()], m.group(1)) if m else cmd)
    return "\n".join(out) + "\n"


def _expect(cmd: str, code: str) -> str:
    if code == "0":
        return cmd
    quoted = cmd.replace("'", "'\\''")
    return (f"set +e; {cmd}\n__rc=$?; set -e\n"
            f"if [ \"$__rc\" != {code} ]; then echo 'docs: expected exit {code}, got '\"$__rc\"': {quoted}' >&2; "
            f"exit 97; fi")


def _env(cache: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if cache is not None:
        env["SHARDSMITH_CACHE_DIR"] = str(cache)  # one probe cache for every page, as a user has
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH", "")] if p)
    env["NO_ALBUMENTATIONS_UPDATE"] = "1"
    env.pop("RAY_ADDRESS", None)
    return env


def run_block(block: Block, cwd: Path, n: int, cache: Path | None = None) -> None:
    if block.lang == "file":  # written for the page's later commands
        rel = _FILE_BLOCK.fullmatch(block.body.lstrip().split("\n", 1)[0].strip()).group(1)
        assert ".." not in Path(rel).parts, f"{block.where}: {rel} is outside the page's folder"
        dest = cwd / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(block.body)
        return
    if block.lang == "python":
        script = cwd / f".doc_block_{n}.py"
        script.write_text(block.body)
        argv = [sys.executable, str(script)]
    else:
        script = cwd / f".doc_block_{n}.sh"
        script.write_text(console_script(block.body) if block.lang == "console" else bash_script(block.body))
        argv = ["bash", "-euo", "pipefail", str(script)]
    try:
        proc = subprocess.run(argv, cwd=cwd, env=_env(cache), capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.where}: still running after {BLOCK_TIMEOUT_S} s")
    if proc.returncode != 0:
        pytest.fail(f"{block.where} ({block.lang}) exited {proc.returncode}:\n--- block\n{block.body}"
                    f"--- stdout (end)\n{proc.stdout[-3000:]}\n--- stderr (end)\n{proc.stderr[-4000:]}")


def processes_in(folder: Path) -> list[str]:
    """Processes whose working folder is ``folder`` or below it (what a page left running)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
        except OSError:
            continue
        if cwd == str(folder) or cwd.startswith(str(folder) + os.sep):
            found.append(f"{proc.name}: {cmd}")
    return found


def run_page(page: Page, cwd: Path, corpus: Path, tour: Path | None, cache: Path | None = None) -> None:
    cwd.mkdir(parents=True, exist_ok=True)
    if "demo-corpus demo_data" in page.text:
        shutil.copytree(corpus, cwd / "demo_data", symlinks=True)  # the page writes it: its own copy
    else:
        (cwd / "demo_data").symlink_to(corpus)
    shutil.copytree(ROOT / "recipes", cwd / "recipes")
    if "benchmarks/" in page.text:
        (cwd / "benchmarks").symlink_to(ROOT / "benchmarks")
    if tour is not None and TOUR in page.text:
        shutil.copytree(tour, cwd / TOUR)
    try:
        for n, block in enumerate(page.blocks):
            run_block(block, cwd, n, cache)
    finally:
        deadline = time.monotonic() + 15  # a process being shut down may take a moment to go
        while (left := processes_in(cwd)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, f"{page.name}: processes left running in its folder:\n" + "\n".join(left)


def _pages() -> list:
    params = []
    for path in PAGES:
        page = page_blocks(path)
        if not page.blocks or path.name == "README.md" and path.parent == ROOT:
            continue
        marks = [pytest.mark.slow_docs] if _RUNS_RAY.search(page.text) or TOUR in page.text else []
        params.append(pytest.param(page, id=page.name, marks=marks))
    return params


@pytest.fixture(scope="session")
def docs_cache(tmp_path_factory) -> Path:
    """The probe cache the pages share (each source file is decoded and checked once)."""
    return tmp_path_factory.mktemp("docs_probe_cache")


@pytest.fixture(scope="session")
def readme_folder(demo_corpus, docs_cache, tmp_path_factory) -> Path:
    """The README run top to bottom; its tour output (out/tour) is what the other pages read."""
    cwd = tmp_path_factory.mktemp("docs") / "README"
    run_page(page_blocks(ROOT / "README.md"), cwd, demo_corpus, None, docs_cache)
    return cwd


@pytest.mark.slow_docs
def test_the_readme_runs(readme_folder):
    assert (readme_folder / TOUR / "coverage.json").is_file()
    assert len(list((readme_folder / "listen").glob("*.json"))) == 10


@pytest.mark.parametrize("page", _pages())
def test_every_example_of_the_page_runs(page, demo_corpus, docs_cache, tmp_path, request):
    tour = request.getfixturevalue("readme_folder") / TOUR if TOUR in page.text else None
    run_page(page, tmp_path / page.path.stem, demo_corpus, tour, docs_cache)


def test_the_docs_have_runnable_examples():
    pages = {p.name: p for p in map(page_blocks, PAGES)}
    assert len(pages["README.md"].blocks) >= 5
    assert sum(len(p.blocks) for p in pages.values()) >= 30


@pytest.mark.parametrize("lang", ["bash", "console"])
def test_a_stated_exit_code_is_checked(lang, tmp_path):
    body = {"bash": "false   # exits 1\ntrue\n", "console": "$ false\n...\n$ echo $?\n1\n$ true\n"}[lang]
    run_block(Block("t.md", 1, lang, body), tmp_path, 0)
    wrong = {"bash": "true   # exits 3\n", "console": "$ true\n$ echo $?\n3\n"}[lang]
    with pytest.raises(pytest.fail.Exception, match="expected exit 3, got 0"):
        run_block(Block("t.md", 1, lang, wrong), tmp_path, 1)
    with pytest.raises(pytest.fail.Exception, match="exited 1"):
        run_block(Block("t.md", 1, lang, "false\n" if lang == "bash" else "$ false\n"), tmp_path, 2)


def test_illustrations_and_other_languages_are_not_run():
    page = Page(Path("x"))
    text = "```bash\n# illustration only: needs a cluster\nray up c.yaml\n```\n```text\n$ ls\n```\n"
    path = ROOT / "tests" / ".doc_probe.md"
    try:
        path.write_text(text)
        page = page_blocks(path)
    finally:
        path.unlink()
    assert page.blocks == []


def test_a_process_left_in_a_page_folder_is_found(tmp_path):
    proc = subprocess.Popen(["sleep", "60"], cwd=tmp_path)
    try:
        assert any(line.startswith(f"{proc.pid}:") for line in processes_in(tmp_path))
    finally:
        proc.kill()
        proc.wait()
    assert processes_in(tmp_path) == []
