"""Build the demo runs' HTML reports and look at them in a real browser (headless Chromium).

For the audio demo (``recipes/demo_in_car.yaml``) and the image demo
(``recipes/demo_images.yaml``) this runs the recipe (skipped when the output is already
complete), writes ``shardsmith coverage --html`` and ``shardsmith mismatch data --html``
(train split against the holdout split ``train_dev_unseen``), then for every page:

- takes a screenshot at a 1280-pixel-wide window (``NAME.png``, the first 800 pixels, as a
  person first sees it, and ``NAME-full.png``, ``--height`` pixels tall);
- loads it in Chromium and measures, after layout, how far the page and its widest table
  reach past the window (``overflow_px``; 0 means everything fits a 1280 px window).

It prints one line per page and exits 1 if any page overflows. Needs ``chromium`` (or
``chromium-browser``, ``google-chrome``) on PATH (Debian: ``apt-get install chromium``).

    python scripts/screenshot_reports.py --demo demo_data --work /tmp/screens
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 1280
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Runs in the page after layout: how far the document and its widest table reach past
# the window, written into the DOM that --dump-dom prints.
_PROBE = """<script>
window.addEventListener('load', function () {
  var doc = document.documentElement, widest = 0;
  document.querySelectorAll('table').forEach(function (t) {
    widest = Math.max(widest, t.getBoundingClientRect().right);
  });
  document.body.setAttribute('data-overflow', Math.max(0, doc.scrollWidth - window.innerWidth,
                                                       Math.ceil(widest) - window.innerWidth));
});
</script>"""


def find_browser() -> str | None:
    """The first Chromium-like browser on PATH, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _browser(browser: str, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             "--disable-dev-shm-usage", "--virtual-time-budget=3000"]
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120)


def overflow_px(browser: str, html: Path, work: Path) -> int:
    """How many pixels the page (or its widest table) reaches past a 1280 px window."""
    probe = work / f".{html.stem}-probe.html"
    probe.write_text(html.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    out = _browser(browser, f"--window-size={WIDTH},800", "--dump-dom", probe.resolve().as_uri()).stdout
    probe.unlink()
    found = re.search(r'data-overflow="(\d+)"', out)
    if found is None:
        raise RuntimeError(f"{html}: the browser did not report the layout (is {browser} working?)")
    return int(found.group(1))


def screenshot(browser: str, html: Path, png: Path, height: int) -> None:
    """A PNG of the page in a ``1280 x height`` window."""
    _browser(browser, f"--screenshot={png.resolve()}", f"--window-size={WIDTH},{height}", html.resolve().as_uri())
    if not png.is_file():
        raise RuntimeError(f"{browser} wrote no screenshot of {html}")


def _cli(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode not in (0, 3):  # 3: a guard failed; the report still shows it
        raise RuntimeError(f"shardsmith {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")


def build_reports(work: Path, workers: int) -> list[Path]:
    """Run the two demo recipes into ``work`` (unless done) and write their HTML reports."""
    pages = []
    for recipe in ("demo_in_car", "demo_images"):
        out = work / recipe
        record = out / "run.json"
        if not (record.is_file() and json.loads(record.read_text()).get("status") == "complete"):
            _cli("run", f"recipes/{recipe}.yaml", "--out", str(out), "--workers", str(workers), "--overwrite")
        cov = work / f"{recipe}-coverage.html"
        _cli("coverage", str(out), "--html", str(cov))
        mm = work / f"{recipe}-mismatch.html"
        _cli("mismatch", "data", "--train", str(out), "--dev", str(out), "--dev-split", "train_dev_unseen",
             "--html", str(mm))
        pages += [cov, mm]
    return pages


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", default="demo_data", help="the demo corpus (shardsmith demo-corpus DIR); the recipes "
                    "read ../demo_data from recipes/, so this must be the repository's demo_data")
    ap.add_argument("--work", default="/tmp/shardsmith-screens", help="outputs, reports and PNGs go here")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--height", type=int, default=4000, help="height of the full-page screenshot (default 4000)")
    ap.add_argument("--html", nargs="*", default=None, help="screenshot these pages instead of building the demo's")
    args = ap.parse_args(argv)
    browser = find_browser()
    if browser is None:
        print("no chromium on PATH (apt-get install chromium)", file=sys.stderr)
        return 2
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.html is None and not (ROOT / args.demo).exists():
        print(f"{args.demo}: no demo corpus (shardsmith demo-corpus {args.demo})", file=sys.stderr)
        return 2
    pages = [Path(p) for p in args.html] if args.html is not None else build_reports(work, args.workers)
    worst = 0
    for html in pages:
        screenshot(browser, html, work / f"{html.stem}.png", 800)
        screenshot(browser, html, work / f"{html.stem}-full.png", args.height)
        over = overflow_px(browser, html, work)
        worst = max(worst, over)
        print(f"{html}: {'fits' if over == 0 else f'{over} px wider than'} a {WIDTH} px window; "
              f"{work / (html.stem + '.png')}, {work / (html.stem + '-full.png')}")
    return 1 if worst else 0


if __name__ == "__main__":
    sys.exit(main())
