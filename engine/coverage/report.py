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

from ..report import count, esc, figure_html, new_figure, page, plural, section, table_html, write_report
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


def describe_pools(pools: dict[str, dict[str, Any]]) -> list[str]:
    head = (f"  {'pool':<14} {'items used':>15} {'eff.sources':>11} {'max share':>9} "
            f"{'s available':>11} {'s used':>10} {'unique s':>10} {'reuse':>8} {'used %':>7}")
    lines = [head]
    for name, f in pools.items():
        used = f"{_num(f['items_used'], '.0f')}/{f['items_available']}"
        lines.append(
            f"  {name:<14} {used:>15} {_num(f['effective_sources'], '.1f'):>11} {_num(f['max_share'], '.3f'):>9} "
            f"{_num(f['seconds_available'], '.0f'):>11} {_num(f['seconds_used'], '.0f'):>10} "
            f"{_num(f['unique_seconds_used'], '.0f'):>10} {_num(f['reuse_factor'], '.1f'):>8} "
            f"{_num(100 * f['fraction_used'] if f['fraction_used'] is not None else None, '.0f'):>7}"
        )
    return lines


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
    lines = [f"coverage of {report['recipe_name']!r}: {count(report['samples'], 'sample')} in {count(report['shards'], 'shard')}"
             + ("" if report["complete"] else " (the run is not complete)")
             + f": {'PASSED' if report['passed'] else 'FAILED'}"]
    lines.append("pools:")
    lines += describe_pools(report["pools"])
    if report["params"]:
        lines.append("parameters (share of the requested range covered, 20 bins):")
        for name, p in report["params"].items():
            rng = f"[{p['range'][0]:g}, {p['range'][1]:g}]" if p["range"] else "(no range)"
            cov = f"{100 * p['range_covered']:.0f}% covered" if p["range_covered"] is not None else ""
            lines.append(f"  {name:<36} {rng:<16} n={p['count']:<8} observed {_num(p['min'])} .. {_num(p['max'])}  {cov}")
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


def coverage_html(report: dict[str, Any], cs: CoverageStats | None = None, probe: dict[str, Any] | None = None) -> str:
    """A self-contained HTML page: tables, item-usage curves, parameter histograms and a
    2-D projection of the embedding sample coloured by noise pool; after the guards, the
    probe's verdict when one was recorded (``probe``)."""
    sections = []
    verdict = "passed" if report["passed"] else "FAILED"
    sections.append(section(
        "Guards",
        f'<p class="{"pass" if report["passed"] else "fail"}">Coverage guards {verdict}.</p>',
        table_html([{**g, "value": g["value"] if g["value"] is not None else "-"} for g in report["guards"]],
                   ["name", "pool", "value", "limit", "passed"]),
    ))
    if probe:
        sections.append(_probe_section(probe))
    cols = ["pool", "items_available", "items_used", "effective_sources", "effective_sources_simpson",
            "max_share", "seconds_available", "seconds_used", "unique_seconds_used", "reuse_factor", "fraction_used"]
    rows = [{"pool": n, **{k: ("-" if f.get(k) is None else f.get(k)) for k in cols[1:]}}
            for n, f in report["pools"].items()]
    parts = [table_html(rows, cols)]
    if cs is not None:
        for name in report["pools"]:
            w = cs.usage_distribution(name)
            if not w.size:
                continue
            fig, ax = new_figure(6.5, 2.8)
            ax.plot(np.arange(1, w.size + 1), w, drawstyle="steps-post", label="items, most used first")
            ax.axhline(float(w.sum()) / cs.catalog[name].n_items, color="#999", linestyle="--",
                       label="if every item were used equally")
            ax.legend(fontsize=8)
            ax.set_yscale("log")
            if w.size > 20:
                ax.set_xscale("log")
            unit = "seconds used" if cs.catalog[name].timed else "uses"
            unused = cs.catalog[name].n_items - report["pools"][name]["items_used"]
            ax.set_xlabel("item rank")
            ax.set_ylabel(unit)
            ax.set_title(f"{name}: {unit} per item, sorted ({count(round(unused), 'item')} never used)")
            parts.append(figure_html(fig, f"usage of {name}"))
    sections.append(section("Pools", *parts))

    for name, u in (report.get("upstream") or {}).items():
        for o in u["outputs"]:
            urows = [{"pool": n, **{k: ("-" if f.get(k) is None else f.get(k)) for k in cols[1:]}}
                     for n, f in o["pools"].items()]
            sections.append(section(
                f"Upstream of pool {name}",
                f"<p>{esc(o['path'])} (recipe {esc(o['recipe_name'])}): {o['rows_used']}/{o['rows_available']} "
                f"{plural(o['rows_available'], 'row')} used {count(o['uses'], 'time')}. Its own sources through the chain, {u['depth']} level (its upstream is "
                "not followed).</p>",
                table_html(urows, cols),
            ))

    if report["params"]:
        parts = []
        prow = [{"parameter": n, "range": p["range"] if p["range"] else "-", "count": p["count"],
                 "min": p["min"] if p["min"] is not None else "-", "max": p["max"] if p["max"] is not None else "-",
                 "range covered": p["range_covered"] if p["range_covered"] is not None else "-"}
                for n, p in report["params"].items()]
        parts.append(table_html(prow))
        for name, p in report["params"].items():
            h = p["histogram"]
            edges, counts = np.array(h["edges"], float), np.array(h["counts"], float)
            fig, ax = new_figure(6.5, 2.6)
            if len(edges) > 2:
                ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#4a78b5", edgecolor="white")
            else:
                ax.bar([edges[0]], counts, width=max(1e-6, abs(edges[0]) * 0.05 + 1e-3), color="#4a78b5")
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
        fig, ax = new_figure(6.5, 4.5)
        for lab in sorted(set(labels)):
            m = np.array([lb == lab for lb in labels])
            ax.scatter(xy[m, 0], xy[m, 1], s=8, alpha=0.7, label=lab)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        ax.set_title("embedding sample (PCA of standardized dims), by noise pool")
        ax.legend(fontsize=8, markerscale=2)
        parts.append(figure_html(fig, "embedding projection"))
    sections.append(section("Embedding space", *parts))

    h = report["holdout"]
    hrows = [{"pool": n, **p} for n, p in h["pools"].items()]
    sections.append(section(
        "Held-out items",
        f'<p class="note">holdout splits: {esc(", ".join(h["holdout_splits"]) or "none")}</p>',
        table_html(hrows),
    ))
    sub = (f"{count(report['samples'], 'sample')}, {report['seconds']:.0f} s, {count(report['shards'], 'shard')}"
           + ("" if report["complete"] else " (run not complete)"))
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
