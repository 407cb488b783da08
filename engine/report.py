"""Self-contained HTML reports (one file, figures embedded as PNG, no network) and the
number formats the text and HTML reports share.

The coverage and mismatch reports are built from these pieces.

Example::

    fig, ax = new_figure()
    ax.plot([1, 2, 3])
    html = page("Coverage", [section("Usage", figure_html(fig)), section("Table", table_html(rows))])
    write_report("report.html", html)
"""

from __future__ import annotations

import base64
import html as _html
import io
import os
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import ShardsmithError

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
h3{font-size:1rem;margin:1.2rem 0 .3rem}
.table{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem;table-layout:auto;max-width:100%}
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:right;vertical-align:top;font-variant-numeric:tabular-nums}
td{white-space:nowrap}th{background:#f4f4f4;font-weight:600;vertical-align:bottom;overflow-wrap:break-word;hyphens:auto}
td:first-child,th:first-child{text-align:left}
td.text,th.text{text-align:left}td.text{white-space:normal;overflow-wrap:anywhere;min-width:5em}.pass{color:#176b2c;font-weight:600}
.fail{color:#b00020;font-weight:600}img{max-width:100%;height:auto}.note{color:#555;font-size:.9rem}
"""

_NUMERIC = re.compile(r"^\s*(-|[-+]?[\d,.]+(e[-+]?\d+)?\s*%?|[-+]?[\d,.]+ \.\. [-+]?[\d,.]+)\s*$")  # right-aligned text cells
# Headers that plain word-splitting would not make readable.
_HEADERS = {
    "effective_sources": "effective sources",
    "effective_sources_simpson": "effective sources (Simpson)",
    "seconds_available": "seconds available",
    "unique_seconds_used": "unique seconds used",
    "pixels_available": "megapixels available",
    "pixels_used": "megapixels used",
    "unique_pixels_used": "unique megapixels used",
    "fraction_used": "share used",
    "max_share": "largest share",
    "z_vs_train": "z vs train",
    "distance_over_radius": "distance / k-NN radius",
    "smd": "drift (sd)",
    "auc": "AUC",
    "domain_auc": "domain AUC",
    "mmd2": "MMD²",
    "mmd_p_value": "MMD p-value",
    "frechet_distance": "Fréchet distance",
    "frechet_null": "Fréchet, dev vs dev",
    "coverage_null": "coverage if alike",
    "id": "id",
    "dim": "dimensions",
    "count": "rows",
    "sample_size": "sample size",
    "vendi_score": "Vendi score",
    "vendi_bandwidth": "Vendi bandwidth",
    "near_duplicate_rms": "near-duplicate RMS below",
    "near_duplicate_pair_rate": "near-duplicate pairs",
    "near_duplicate_sample_rate": "samples with a near duplicate",
    "held_out_uses_outside_holdout_splits": "uses of held-out items outside holdout splits",
    "seen_item_uses_in_holdout_splits": "uses of seen items in holdout splits",
    "items_held_out": "items held out",
}


def humanize(name: str) -> str:
    """A column key as a table header: known keys by name, others with spaces for ``_``.

    Example: ``humanize("items_available") == "items available"``
    """
    return _HEADERS.get(name, name.replace("_", " "))


def plural(n: float, noun: str, many: str | None = None) -> str:
    """``noun`` for exactly 1, else ``many`` (default ``noun + "s"``): ``plural(1, "shard")`` is
    ``"shard"``, ``plural(2, "shard")`` is ``"shards"``."""
    return noun if n == 1 else (many or noun + "s")


def count(n: float, noun: str, many: str | None = None) -> str:
    """``n`` and its noun, singular only for 1: ``count(1, "shard")`` is ``"1 shard"``."""
    return f"{n} {plural(n, noun, many)}"


def new_figure(width: float = 7.0, height: float = 3.2, ncols: int = 1):
    """A matplotlib figure on the Agg backend (no display needed)."""
    import matplotlib  # matplotlib loads only when a report draws

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # loaded only when a report draws

    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=True)
    return fig, axes


def figure_html(fig: Any, alt: str = "figure") -> str:
    """Render a matplotlib figure to an inline PNG <img> and close it."""
    import matplotlib.pyplot as plt  # loaded only when a report draws

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{_html.escape(alt)}" src="data:image/png;base64,{data}">'


def esc(value: Any) -> str:
    """Any value as HTML-escaped text.

    Example: ``esc("a < b") == "a &lt; b"``
    """
    return _html.escape(str(value))


def fmt(value: Any) -> str:
    """A table cell's text: floats to 4 significant digits (from 10,000 up: whole, with
    thousands separators, never ``1.682e+06``), anything else as ``str``.

    Example: ``fmt(0.123456) == "0.1235"`` and ``fmt(1682167.24) == "1,682,167"``
    """
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    return str(value)


def pct(v: float, signed: bool = False) -> str:
    """A fraction as a percentage with two decimals (``signed``: always with its sign).

    Example: ``pct(0.0123) == "1.23%"`` and ``pct(0.05, signed=True) == "+5.00%"``
    """
    return f"{v * 100:+.2f}%" if signed else f"{v * 100:.2f}%"


def table_html(rows: Sequence[dict[str, Any]], columns: Iterable[str] | None = None,
               headers: dict[str, str] | None = None, note: str = "") -> str:
    """An HTML table from a list of dicts (columns default to the first row's keys).

    Headers are the keys made readable (:func:`humanize`, or ``headers[key]``); booleans
    read yes / no (in a ``passed`` column, green yes and red no); text cells are left
    aligned; the table wraps its cells to fit the page (and scrolls only if a single word
    is wider). ``note``: a line under the table (e.g. :func:`shown_of`).

    Example: ``table_html([{"pool": "car", "items_used": 3}])``
    """
    if not rows:
        return '<p class="note">(none)</p>'
    cols = list(columns) if columns is not None else list(rows[0])
    names = headers or {}
    texts = {c for c in cols for r in rows
             if isinstance(r.get(c, ""), str) and r.get(c, "") != "" and not _NUMERIC.match(r.get(c, ""))}
    head = "".join(('<th class="text">' if c in texts else "<th>") + f"{esc(names.get(c, humanize(c)))}</th>"
                   for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cls = ""
            if isinstance(v, bool):
                if c == "passed":
                    cls = ' class="pass"' if v else ' class="fail"'
                v = "yes" if v else "no"
            elif isinstance(v, str) and not _NUMERIC.match(v):
                cls = ' class="text"'
            cells.append(f"<td{cls}>{esc(fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    tail = f'<p class="note">{esc(note)}</p>' if note else ""
    return f'<div class="table"><table><tr>{head}</tr>{"".join(body)}</table></div>{tail}'


def shown_of(shown: int, total: int, what: str, where: str = "") -> str:
    """The note under a cut list: ``"first 50 of 80 dev items (--json lists them all)"``,
    or ``""`` when nothing was cut.

    Example: ``shown_of(50, 80, "dev items", "--json lists them all") == "first 50 of 80 dev items (--json lists them all)"``
    """
    if shown >= total:
        return ""
    return f"first {shown} of {total} {what}" + (f" ({where})" if where else "")


def plain_log_axis(ax: Any, which: str = "y") -> None:
    """Tick labels of a log axis as plain numbers (185, 1,000, 0.01), not ``1.85×10²``.

    Example: ``ax.set_yscale("log"); plain_log_axis(ax, "y")``
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # loaded only when a report draws

    def label(v: float, _pos: Any = None) -> str:
        if v <= 0:
            return ""
        return f"{v:,.0f}" if v >= 1 else f"{v:.3g}"

    axis = ax.yaxis if which == "y" else ax.xaxis
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(label))
    axis.set_minor_formatter(NullFormatter())


def section(title: str, *parts: str) -> str:
    return f"<h2>{esc(title)}</h2>" + "".join(parts)


def page(title: str, sections: Sequence[str], subtitle: str = "") -> str:
    sub = f'<p class="note">{esc(subtitle)}</p>' if subtitle else ""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{esc(title)}</h1>{sub}{''.join(sections)}</body></html>"
    )


def check_report_path(path: str | Path) -> Path:
    """Refuse, before any work, a report path that cannot be written: a folder, something
    that is not a regular file (a FIFO, a device), or a file whose folder does not exist.

    Example: ``check_report_path("out/report.html")``
    """
    p = Path(path)
    if p.is_dir():
        raise ShardsmithError(f"{p}: is a folder; give the HTML report a file name, e.g. {p / 'report.html'}")
    if p.exists() and not p.is_file():
        raise ShardsmithError(f"{p}: is not a regular file (a FIFO or a device?); give an .html file name")
    parent = p.parent
    if not parent.exists():
        raise ShardsmithError(
            f"{p}: the folder {parent} does not exist; create it first (mkdir -p {parent}) or give another path"
        )
    if not parent.is_dir():
        raise ShardsmithError(f"{p}: {parent} is not a folder; give an .html file name in a folder")
    return p


def write_report(path: str | Path, html: str) -> Path:
    """Write the page to a temporary name beside ``path``, then rename it into place; a
    path that cannot be written is a :class:`ShardsmithError` naming it, and no temporary
    file is left behind."""
    p = check_report_path(path)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, p)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ShardsmithError(f"{p}: cannot write the HTML report ({exc.strerror or exc})") from None
    return p
