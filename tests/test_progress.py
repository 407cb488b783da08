"""Progress on stderr (issue 16): a tqdm bar on a terminal only; plain lines, never
carriage-return frames, in a log file, a pipe or CI."""

from __future__ import annotations

import io

from engine.runtime import Progress


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_progress_writes_plain_lines_when_not_on_a_terminal():
    stream, clock = io.StringIO(), _Clock()
    p = Progress(440, stream=stream, clock=clock)
    for _ in range(22):  # 22 shards of 20 samples, 0.4 s each
        clock.t += 0.4
        p.update(20)
    p.close()
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert len(lines) == 10, lines  # one per 10 % mark crossed
    assert lines[4] == "synthesizing: 220/440 samples (50 %), 50.0 samples/s, eta 4 s"
    assert lines[-1] == "synthesizing: 440/440 samples (100 %), 50.0 samples/s"


def test_progress_prints_every_30_s_when_it_is_slow():
    stream, clock = io.StringIO(), _Clock()
    p = Progress(1000, stream=stream, clock=clock)
    for _ in range(4):
        clock.t += 31.0
        p.update(1)
    p.close()
    assert len(stream.getvalue().splitlines()) == 4


def test_progress_uses_a_bar_only_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    p = Progress(100, stream=stream)
    p.update(100)
    p.close()
    assert "\r" in stream.getvalue()
    quiet = io.StringIO()
    Progress(100, enabled=False, stream=quiet).close()
    assert quiet.getvalue() == ""
