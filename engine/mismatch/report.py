"""The HTML page of ``shardsmith mismatch data --html``: the metrics side by side,
domain-classifier score histograms, a PCA projection of train vs dev, drift bars, the
uncovered dev items and the coverage guards.

Example::

    write_report("mismatch.html", data_report_html(compare_data(["out/a"], "dev/")))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..report import esc, figure_html, humanize, new_figure, page, section, shown_of, table_html
from .data import METRIC_KEYS, DataComparison

UNCOVERED_SHOWN = 50  # uncovered dev items listed per training set (the note says how many there are)
DRIFT_SHOWN = 15  # features in each drift bar chart


def data_report_html(result: DataComparison, title: str = "shardsmith mismatch: data") -> str:
    """The HTML page of ``mismatch data --html``: metrics table, domain-classifier score
    histograms, a 2-D PCA projection of train vs dev, drift bars, uncovered dev items.

    Example: ``write_report("mismatch.html", data_report_html(compare_data(["out/a"], "dev/")))``
    """
    names = list(result.pairs)
    rows = []
    for key in METRIC_KEYS + ("frechet_null", "coverage_null"):
        r: dict[str, Any] = {"metric": humanize(key)}
        for n in names:
            r[n] = result.pairs[n].metrics[key]
        if len(names) > 1 and key in result.closest:
            r["closest"] = result.closest[key]
        rows.append(r)
    cols = ["metric", *names] + (["closest"] if len(names) > 1 else [])
    verdicts = "".join(
        f"<p><b>{esc(pc.name)}</b>: " + "; ".join(esc(v) for v in pc.verdict) + "</p>" for pc in result.pairs.values()
    )
    sections = [section("Summary", table_html(rows, cols, headers={n: n for n in names}), verdicts,
                        "".join(f'<p class="note">{esc(n)}</p>' for n in result.notes))]

    # Domain-classifier out-of-fold scores: overlapping histograms = alike.
    ncols = len(names)
    fig, axes = new_figure(width=min(4.0 * ncols, 14), height=3.0, ncols=ncols)
    axes = np.atleast_1d(axes)
    bins = np.linspace(0, 1, 26)
    for ax, n in zip(axes, names):
        p = result.pairs[n].plot
        ax.hist(p["scores"][p["is_dev"] == 0], bins=bins, alpha=0.6, label=f"train: {n}")
        ax.hist(p["scores"][p["is_dev"] == 1], bins=bins, alpha=0.6, label="dev")
        ax.set_title(f"{n}: AUC {result.pairs[n].metrics['domain_auc']:.2f}", fontsize=9)
        ax.set_xlabel("out-of-fold P(dev)")
        ax.legend(fontsize=7)
    sections.append(section("Domain classifier", figure_html(fig, "domain classifier scores"),
                            '<p class="note">Out-of-fold probability that an item is from dev; '
                            "the more the histograms overlap, the more alike the data.</p>"))

    # 2-D PCA of all items in dev-standardized units.
    from sklearn.decomposition import PCA  # lazily: scikit-learn is heavy and only the page needs PCA

    first = result.pairs[names[0]].plot
    stack = [first["Zd"]] + [result.pairs[n].plot["Zt"] for n in names]
    pca = PCA(n_components=2, random_state=0).fit(np.vstack(stack))
    fig, ax = new_figure(width=6.5, height=5.0)
    for n in names:
        xy = pca.transform(result.pairs[n].plot["Zt"])
        ax.scatter(xy[:, 0], xy[:, 1], s=8, alpha=0.5, label=f"train: {n}")
    xy = pca.transform(first["Zd"])
    ax.scatter(xy[:, 0], xy[:, 1], s=10, alpha=0.7, c="black", marker="x", label="dev")
    ax.set_xlabel(f"PC1 ({pca.explained_variance_ratio_[0]:.0%})")
    ax.set_ylabel(f"PC2 ({pca.explained_variance_ratio_[1]:.0%})")
    ax.legend(fontsize=8)
    sections.append(section("Embedding projection (PCA)", figure_html(fig, "PCA of train and dev")))

    # Per-feature drift.
    parts = []
    for n in names:
        every = result.pairs[n].plot["smd_all"]
        drift = every[:DRIFT_SHOWN][::-1]
        fig, ax = new_figure(width=7.0, height=0.28 * len(drift) + 1.0)
        vals = [d["smd"] for d in drift]
        ax.barh([d["feature"] for d in drift], vals, color=["#b00020" if v > 0 else "#1f5fa8" for v in vals])
        ax.axvline(0, color="#444", lw=0.8)
        ax.set_xlabel("standardized mean difference (train - dev), sd")
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(f"{n}: the {len(drift)} of {len(every)} features that drift most", fontsize=9)
        parts.append(figure_html(fig, f"feature drift of {n}"))
    sections.append(section("Feature drift", *parts))

    parts = []
    for n in names:
        u = result.pairs[n].uncovered
        parts.append(f"<p><b>{esc(n)}</b>: {u['count']} of {result.pairs[n].n} dev items ({u['fraction']:.0%}) "
                     "have no training item inside their k-NN ball on the dev manifold.</p>")
        shown = u["items"][:UNCOVERED_SHOWN]
        parts.append(table_html(shown, ["id", "distance_over_radius", "most_unlike_train", "z_vs_train"],
                                note=shown_of(len(shown), len(u["items"]), "uncovered dev items, farthest first",
                                              "--json lists them all")))
    sections.append(section("Dev regions no training item covers", *parts))

    guard_rows = [
        {"train set": n, "coverage.json": (pc.coverage_report or {}).get("file", "(none)"),
         "passed": (pc.coverage_report or {}).get("passed", ""),
         "failed guards": ", ".join((pc.coverage_report or {}).get("failed", []))}
        for n, pc in result.pairs.items()
    ]
    sections.append(section("Coverage guards", table_html(guard_rows)))
    # (the metric names in the summary: engine.report.humanize; Fréchet in pooled-sd units, see docs/mismatch.md)
    return page(title, sections, subtitle=f"dev: {result.dev.path}")
