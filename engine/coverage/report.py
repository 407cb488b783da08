"""The coverage report as text (``shardsmith coverage``, ``shardsmith plan``), as a
self-contained HTML page (``--html``), and as stable JSON.

Example::

    print(describe_coverage(report, probe=read_probe("out/demo")))
    write_coverage_html("coverage.html", report, cs, probe=read_probe("out/demo"))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..report import (count, esc, figure_html, new_figure, page, plain_log_axis, plural, section, table_html,
                      write_report)
from .merge import CoverageStats


def _num(v: Any, spec: str = ".4g") -> str:
    return "-" if v is None else format(v, spec)


def describe_guards(guards: list[dict[str, Any]]) -> list[str]:
    lines = []
    for g in guards:
        upper = g["name"].startswith("max") or g["name"] == "holdout_unseen"
        # the relation the figure has to its limit, so a failing line never reads as true
        rel = ("<=" if g["passed"] else ">") if upper else (">=" if g["passed"] else "<")
        lines.append(f"  {'pass' if g['passed'] else 'FAIL'}  {g['name']:<24} {g['pool']:<14} "
                     f"{_num(g['value'])} {rel} {g['limit']:g}")
    return lines


def is_image_pool(figures: dict[str, Any]) -> bool:
    """Whether a pool's figures are an image pool's (pixels, no seconds)."""
    return figures.get("pixels_available") is not None


def describe_pools(pools: dict[str, dict[str, Any]]) -> list[str]:
    """The pool table: seconds for audio pools; uses and megapixels for image pools."""
    if pools and all(is_image_pool(f) for f in pools.values()):
        amounts_head = f"{'uses':>8} {'MP available':>12} {'MP used':>10} {'unique MP':>10}"

        def amounts(f: dict[str, Any]) -> str:
            return (f"{_num(f.get('uses'), '.0f'):>8} {_num(f['pixels_available'] / 1e6, '.2f'):>12} "
                    f"{_num(f['pixels_used'] / 1e6, '.2f'):>10} {_num(f['unique_pixels_used'] / 1e6, '.2f'):>10}")
    else:
        amounts_head = f"{'s available':>11} {'s used':>10} {'unique s':>10}"

        def amounts(f: dict[str, Any]) -> str:
            return (f"{_num(f['seconds_available'], '.0f'):>11} {_num(f['seconds_used'], '.0f'):>10} "
                    f"{_num(f['unique_seconds_used'], '.0f'):>10}")
    lines = [f"  {'pool':<14} {'items used':>15} {'eff.sources':>11} {'max share':>9} "
             f"{amounts_head} {'reuse':>8} {'used %':>7}"]
    for name, f in pools.items():
        used = f"{_num(f['items_used'], '.0f')}/{f['items_available']}"
        lines.append(
            f"  {name:<14} {used:>15} {_num(f['effective_sources'], '.1f'):>11} {_num(f['max_share'], '.3f'):>9} "
            f"{amounts(f)} {_num(f['reuse_factor'], '.1f'):>8} "
            f"{_num(100 * f['fraction_used'] if f['fraction_used'] is not None else None, '.0f'):>7}"
        )
    return lines


def is_constant(p: dict[str, Any]) -> bool:
    """A parameter that took one value in every row (and has no requested range): a
    setting, not a drawn value; listed apart, never histogrammed."""
    return p["range"] is None and p["count"] > 0 and p["min"] is not None and p["min"] == p["max"]


def _size_line(report: dict[str, Any], seconds: bool = True) -> str:
    """``420 samples (images) in 4 shards`` for an image run, ``1200 samples, 3,600 s, in
    3 shards`` for an audio run (without ``seconds``: ``1200 samples in 3 shards``)."""
    images = report["pools"] and all(is_image_pool(f) for f in report["pools"].values())
    if images and not report["seconds"]:
        what = " (images)"
    else:
        what = f", {report['seconds']:,.0f} s," if seconds else ""
    return f"{count(report['samples'], 'sample')}{what} in {count(report['shards'], 'shard')}"


def describe_forecast(forecast: dict[str, Any]) -> str:
    """Human-readable guard forecast (``shardsmith plan``)."""
    lines = [f"coverage forecast for {count(forecast['samples'], 'sample')} "
             f"({'passes' if forecast['passed'] else 'FAILS'} the guards):"]
    lines += describe_pools(forecast["pools"])
    lines += describe_guards(forecast["guards"]) or ["  (no guards in force)"]
    return "\n".join(lines)


# The probe's error levels and gaps (engine.mismatch.probe's keys), in words.
_PROBE_LEVELS = {"train": "train", "train_dev": "train-dev", "train_dev_unseen": "unseen sources", "dev": "dev",
                 "test": "test"}
_PROBE_GAPS = {"avoidable_bias": "avoidable bias", "variance": "variance", "unseen_source_gap": "unseen-source gap",
               "data_mismatch": "data mismatch", "dev_overfitting": "overfitting to dev"}
_PROBE_HOW = "shardsmith mismatch probe --train OUT --label COLUMN [--dev DEV] --record"


def _pct(v: Any, signed: bool = False) -> str:
    return "-" if v is None else f"{100 * v:{'+' if signed else ''}.1f}%"


def describe_probe(probe: dict[str, Any] | None) -> list[str]:
    """The probe's verdict (:func:`~engine.coverage.analyze.read_probe`) as report lines:
    its dominant gap, its errors and gaps, and where the whole verdict is."""
    if not probe:
        return []
    dominant = _PROBE_GAPS.get(probe["dominant"], probe["dominant"]) if probe["dominant"] else "none (no gap is positive)"
    lines = [f"probe verdict (label {probe['label']!r}{', dev ' + probe['dev'] if probe['dev'] else ', no dev set'}): "
             f"dominant gap {dominant}"]
    lines.append("  errors: " + ", ".join(f"{name} {_pct(probe['errors'].get(k))}" for k, name in _PROBE_LEVELS.items()))
    lines.append("  gaps:   " + ", ".join(f"{name} {_pct(probe['gaps'][k], signed=True)}"
                                          for k, name in _PROBE_GAPS.items() if probe["gaps"].get(k) is not None))
    lines.append(f"  the whole verdict: {probe['path']} (re-run: `{_PROBE_HOW}`; docs/mismatch.md)")
    if probe["stale"]:
        lines.append(f"  STALE: {probe['stale']}; re-run the probe")
    return lines


def describe_coverage(report: dict[str, Any], probe: dict[str, Any] | None = None) -> str:
    """Human-readable coverage report (``shardsmith coverage``), with the probe's verdict
    when one was recorded (``probe``: :func:`~engine.coverage.analyze.read_probe`)."""
    lines = [f"coverage of {report['recipe_name']!r}: {_size_line(report, seconds=False)}"
             + ("" if report["complete"] else " (the run is not complete)")
             + f": {'PASSED' if report['passed'] else 'FAILED'}"]
    lines.append("pools:")
    lines += describe_pools(report["pools"])
    varying = {n: p for n, p in report["params"].items() if not is_constant(p)}
    constant = {n: p for n, p in report["params"].items() if is_constant(p)}
    if varying:
        lines.append("parameters (share of the requested range covered, 20 bins):")
        width = max(36, *(len(n) + 1 for n in varying))
        for name, p in varying.items():
            rng = f"[{p['range'][0]:g}, {p['range'][1]:g}]" if p["range"] else "(no range)"
            cov = f"{100 * p['range_covered']:.0f}% covered" if p["range_covered"] is not None else ""
            lines.append(f"  {name:<{width}} {rng:<16} n={p['count']:<8} observed {_num(p['min'])} .. {_num(p['max'])}  {cov}".rstrip())
    if constant:
        lines.append("constant in every row (settings, not drawn): "
                     + ", ".join(f"{n} = {p['min']:g}" for n, p in constant.items()))
    lines += describe_splits(report.get("splits") or {})
    e = report["embedding"]
    if e["dim"]:
        lines.append(
            f"embedding ({e['dim']} dims, sample of {e['sample_size']}): Vendi score {_num(e['vendi_score'])} "
            f"(bandwidth {e['vendi_bandwidth']:g}), participation ratio {_num(e['participation_ratio'])}, "
            f"near-duplicate pairs {_num(e['near_duplicate_pair_rate'])} (RMS < {e['near_duplicate_rms']:g})"
        )
    h = report["holdout"]
    if h["pools"]:
        for name, p in h["pools"].items():
            lines.append(f"holdout: pool {name!r}: {p['items_held_out']} held-out items, used "
                         f"{p['held_out_uses_outside_holdout_splits']} times outside holdout splits "
                         f"{'(confirmed unseen)' if p['held_out_uses_outside_holdout_splits'] == 0 else '(LEAKED)'}")
    lines += describe_upstream(report.get("upstream") or {})
    lines.append("guards:")
    lines += describe_guards(report["guards"]) or ["  (no guards in force)"]
    lines += describe_probe(probe)
    return "\n".join(lines)


def describe_splits(splits: dict[str, dict[str, Any]]) -> list[str]:
    """Per split: its rows, whether it is a holdout split, and each pool's uses."""
    lines = ["splits:"] if splits else []
    for name, sp in splits.items():
        uses = ", ".join(f"{pool} {a['uses']} uses" + (f" ({a['held_out_item_uses']} of held-out items)"
                                                      if a["held_out_item_uses"] else "")
                         for pool, a in sp["pools"].items())
        lines.append(f"  {name:<18} {count(sp['rows'], 'row'):>12}{' (holdout)' if sp['holdout'] else '':<10}  {uses}")
    return lines


def describe_upstream(upstream: dict[str, dict[str, Any]]) -> list[str]:
    """The ``upstream`` section: per pool that is a shardsmith output, its sources'
    reuse through the chain (one level)."""
    lines = []
    for name, u in upstream.items():
        for o in u["outputs"]:
            lines.append(f"upstream of pool {name!r}: {o['path']} (recipe {o['recipe_name']!r}, "
                         f"{o['rows_used']}/{o['rows_available']} {plural(o['rows_available'], 'row')} used {count(o['uses'], 'time')}); its own sources "
                         f"through the chain, {u['depth']} level (its upstream is not followed):")
            lines += describe_pools(o["pools"])
        if u["unmatched_uses"]:
            lines.append(f"  {u['unmatched_uses']} uses of pool {name!r} name rows no longer in its outputs")
    return lines


_AUDIO_COLS = ["pool", "items_available", "items_used", "effective_sources", "effective_sources_simpson",
               "max_share", "seconds_available", "seconds_used", "unique_seconds_used", "reuse_factor", "fraction_used"]
_IMAGE_COLS = ["pool", "items_available", "items_used", "uses", "effective_sources", "effective_sources_simpson",
               "max_share", "pixels_available", "pixels_used", "unique_pixels_used", "reuse_factor", "fraction_used"]
_MEGA = ("pixels_available", "pixels_used", "unique_pixels_used")


def _pool_table(pools: dict[str, dict[str, Any]]) -> str:
    """The pools as one table: seconds columns for audio pools, uses and megapixels for
    image pools (both sets when a run has both)."""
    images = [n for n, f in pools.items() if is_image_pool(f)]
    cols = _IMAGE_COLS if images and len(images) == len(pools) else _AUDIO_COLS
    if images and len(images) != len(pools):
        cols = _AUDIO_COLS + [c for c in _IMAGE_COLS if c not in _AUDIO_COLS]
    rows = []
    for n, f in pools.items():
        row: dict[str, Any] = {"pool": n}
        for k in cols[1:]:
            v = f.get(k)
            row[k] = "-" if v is None else (v / 1e6 if k in _MEGA else _pct(v) if k == "fraction_used" else v)
        rows.append(row)
    return table_html(rows, cols)


def _usage_figure(name: str, w: np.ndarray, n_items: int, timed: bool, used: float) -> str:
    """Uses (or seconds) per item, most used first, on a linear item-rank axis over the
    whole pool, so the never-used items show as the empty tail; plain log-scale counts."""
    fig, ax = new_figure(6.5, 2.8)
    ranks = np.arange(1, w.size + 1)
    ax.plot(ranks, w, drawstyle="steps-post", label="items, most used first")
    ax.axhline(float(w.sum()) / max(1, n_items), color="#999", linestyle="--", label="if every item were used equally")
    if n_items > w.size:
        ax.axvspan(w.size + 0.5, n_items + 0.5, color="#eee", label="never used")
    ax.set_xlim(0.5, n_items + 0.5)
    ax.set_yscale("log")
    plain_log_axis(ax, "y")
    unit = "seconds used" if timed else "uses"
    unused = n_items - used
    ax.set_xlabel(f"item rank (of {n_items:,} items)")
    ax.set_ylabel(unit)
    ax.set_title(f"{name}: {unit} per item, sorted ({count(round(unused), 'item')} never used)")
    ax.legend(fontsize=8)
    return figure_html(fig, f"usage of {name}")


def _split_table(splits: dict[str, dict[str, Any]]) -> str:
    """One row per split: its rows, whether it is a holdout split, each pool's uses in it
    and the uses of held-out items."""
    pools = sorted({p for sp in splits.values() for p in sp["pools"]})
    rows = []
    for name, sp in splits.items():
        row: dict[str, Any] = {"split": name, "holdout split": sp["holdout"], "rows": sp["rows"]}
        for pool in pools:
            row[f"{pool} uses"] = sp["pools"].get(pool, {}).get("uses", 0)
        row["uses of held-out items"] = sum(a["held_out_item_uses"] for a in sp["pools"].values())
        rows.append(row)
    return table_html(rows, headers={f"{pool} uses": f"{pool} uses" for pool in pools})  # pool names as they are


def projection_colours(labels: list[str], splits: list[str]) -> tuple[list[str], str]:
    """What the PCA plot colours its points by, and the words for it: the pools mixed into
    each sample (its sources after the first: noise, events, reverb) when they differ
    between samples, else the split (an image run draws every sample from one pool), else
    one colour, said as such.

    Example: ``projection_colours(["photos", "photos"], ["train", "test"])[0] == ["train", "test"]``
    """
    distinct = sorted(set(labels))
    if len(distinct) > 1:
        return labels, "coloured by the pools mixed into each sample (its sources after the first)"
    pools = distinct[0] if distinct else "none"
    if len(set(splits)) > 1:
        return splits, f"coloured by split (every sample draws on the same pools: {pools})"
    return splits, f"one colour: a single pool ({pools}) and a single split"


def _projection_figure(xy: np.ndarray, labels: list[str], splits: list[str]) -> str:
    """The PCA plot, coloured and titled by :func:`projection_colours`."""
    fig, ax = new_figure(6.5, 4.5)
    colour_by, title = projection_colours(labels, splits)
    for lab in sorted(set(colour_by)):
        m = np.array([lb == lab for lb in colour_by])
        ax.scatter(xy[m, 0], xy[m, 1], s=8, alpha=0.7, label=lab)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(f"embedding sample (PCA of standardized dims),\n{title}", fontsize=9)
    ax.legend(fontsize=8, markerscale=2)
    return figure_html(fig, "embedding projection")


def coverage_html(report: dict[str, Any], cs: CoverageStats | None = None, probe: dict[str, Any] | None = None) -> str:
    """A self-contained HTML page: guards, pools (seconds for audio, megapixels for
    images) with item-usage curves, each split's rows and uses, parameter histograms over
    their requested ranges (constants listed apart), the embedding's diversity and a 2-D
    projection coloured by what differs between samples, held-out items; after the
    guards, the probe's verdict when one was recorded (``probe``)."""
    sections = []
    verdict = "passed" if report["passed"] else "FAILED"
    sections.append(section(
        "Guards",
        f'<p class="{"pass" if report["passed"] else "fail"}">Coverage guards {verdict}.</p>',
        table_html([{**g, "value": g["value"] if g["value"] is not None else "-"} for g in report["guards"]],
                   ["name", "pool", "value", "limit", "passed"], headers={"name": "guard"}),
    ))
    if probe:
        sections.append(_probe_section(probe))
    parts = [_pool_table(report["pools"])]
    images = bool(report["pools"]) and all(is_image_pool(f) for f in report["pools"].values())
    if images:
        parts.append('<p class="note">Image pools: reuse factor = uses / items used; share used = items used / '
                     "items available; megapixels used count each use, unique megapixels each used item once.</p>")
    if cs is not None:
        for name in report["pools"]:
            w = cs.usage_distribution(name)
            if w.size:
                parts.append(_usage_figure(name, w, cs.catalog[name].n_items, cs.catalog[name].timed,
                                           report["pools"][name]["items_used"]))
    sections.append(section("Pools", *parts))

    if report.get("splits"):
        sections.append(section("Splits", _split_table(report["splits"])))

    for name, u in (report.get("upstream") or {}).items():
        for o in u["outputs"]:
            sections.append(section(
                f"Upstream of pool {name}",
                f"<p>{esc(o['path'])} (recipe {esc(o['recipe_name'])}): {o['rows_used']}/{o['rows_available']} "
                f"{plural(o['rows_available'], 'row')} used {count(o['uses'], 'time')}. Its own sources through the chain, {u['depth']} level (its upstream is "
                "not followed).</p>",
                _pool_table(o["pools"]),
            ))

    varying = {n: p for n, p in report["params"].items() if not is_constant(p)}
    constant = {n: p for n, p in report["params"].items() if is_constant(p)}
    if report["params"]:
        parts = []
        prow = [{"parameter": n, "requested range": f"{p['range'][0]:g} .. {p['range'][1]:g}" if p["range"] else "-",
                 "rows": p["count"], "min": p["min"] if p["min"] is not None else "-",
                 "max": p["max"] if p["max"] is not None else "-",
                 "range covered": _pct(p["range_covered"]) if p["range_covered"] is not None else "-"}
                for n, p in varying.items()]
        parts.append(table_html(prow))
        if constant:
            parts.append('<p class="note">Constant in every row (settings, not drawn values; not plotted): '
                         + esc(", ".join(f"{n} = {p['min']:g}" for n, p in constant.items())) + "</p>")
        for name, p in varying.items():
            h = p["histogram"]
            edges, counts = np.array(h["edges"], float), np.array(h["counts"], float)
            fig, ax = new_figure(6.5, 2.6)
            if len(edges) > 2:
                ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#4a78b5", edgecolor="white")
            if p["range"]:
                ax.axvspan(p["range"][0], p["range"][1], color="#f0b400", alpha=0.15, label="requested range")
                ax.legend(loc="upper right", fontsize=8)
            ax.set_title(f"{name}" + (" (from a sample of the values)" if h["from_sample"] else ""))
            ax.set_ylabel("samples")
            parts.append(figure_html(fig, f"histogram of {name}"))
        sections.append(section("Parameters", *parts))

    e = report["embedding"]
    parts = [table_html([{k: ("-" if v is None else v) for k, v in e.items()}])]
    proj = cs.projection() if cs is not None else None
    if proj is not None:
        xy, labels = proj
        parts.append(_projection_figure(xy, labels, [s[2] for s in cs.embed_sample]))  # type: ignore[union-attr]
    sections.append(section("Embedding space", *parts))

    h = report["holdout"]
    hrows = [{"pool": n, **p} for n, p in h["pools"].items()]
    sections.append(section(
        "Held-out items",
        f'<p class="note">holdout splits: {esc(", ".join(h["holdout_splits"]) or "none")}</p>',
        table_html(hrows),
    ))
    sub = _size_line(report) + ("" if report["complete"] else " (run not complete)")
    return page(f"Coverage: {report['recipe_name']}", sections, subtitle=sub)


def _probe_section(probe: dict[str, Any]) -> str:
    dominant = _PROBE_GAPS.get(probe["dominant"], probe["dominant"]) if probe["dominant"] else "none (no gap is positive)"
    rows = [{"set": name, "probe error": _pct(probe["errors"].get(k))} for k, name in _PROBE_LEVELS.items()]
    gaps = [{"gap": name, "value": _pct(probe["gaps"][k], signed=True), "": "dominant" if k == probe["dominant"] else ""}
            for k, name in _PROBE_GAPS.items() if probe["gaps"].get(k) is not None]
    stale = f'<p class="fail">Stale: {esc(probe["stale"])}; re-run the probe.</p>' if probe["stale"] else ""
    return section(
        "Probe verdict",
        f"<p>The mismatch probe (label <b>{esc(probe['label'])}</b>, "
        f"{'dev ' + esc(probe['dev']) if probe['dev'] else 'no dev set'}): dominant gap <b>{esc(dominant)}</b>.</p>",
        stale,
        table_html(rows),
        table_html(gaps) if gaps else "",
        f'<p class="note">The whole verdict (intervals, slices, what to try): {esc(probe["path"])}; re-run with '
        f"<code>{esc(_PROBE_HOW)}</code> (docs/mismatch.md).</p>",
    )


def write_coverage_html(path: str | Path, report: dict[str, Any], cs: CoverageStats | None = None,
                        probe: dict[str, Any] | None = None) -> Path:
    """Write :func:`coverage_html` to ``path`` (atomically); returns the path.

    Example: ``write_coverage_html("coverage.html", *load_coverage_stats("out/demo_in_car"))``
    """
    return write_report(path, coverage_html(report, cs, probe))


def report_json(report: dict[str, Any]) -> str:
    """The report as stable JSON text (sorted keys)."""
    return json.dumps(report, indent=1, sort_keys=True)
