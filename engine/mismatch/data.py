"""How far each training set is from the dev (target) data, from embeddings alone
(``shardsmith mismatch data``).

Per training set: domain-classifier AUC, MMD² and its p-value, Fréchet distance beside
its dev-vs-dev reference, precision / recall / density / coverage of dev by train, the
features that drift most, the dev items no training item covers, and the coverage
guards of ``OUT/coverage.json`` when it exists; then which set is closest to dev on each
metric.

Example::

    data = compare_data(["out/synth"], "dev_audio/")
    print(data.describe())
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..features import embedding_names
from ..report import count
from ..rng import keyed_rng
from .embeddings import DEFAULT_MAX_N, MIN_N, EmbeddingSet, load_embeddings
from .metrics import (domain_classifier_auc, expected_coverage, feature_drift, frechet_distance, mmd2_permutation_test,
                      pooled_scale, prdc)

MMD_MAX_N = 1000  # per side for the kernel matrix (2000 x 2000 floats) and its permutations

CLOSENESS = (
    ("domain_auc", -1), ("mmd2", -1), ("frechet_distance", -1),
    ("precision", +1), ("recall", +1), ("density", +1), ("coverage", +1),
)
METRIC_KEYS = ("domain_auc", "mmd2", "mmd_p_value", "frechet_distance", "precision", "recall", "density", "coverage")


@dataclass
class PairComparison:
    """One training set against dev; ``to_json()`` holds the metrics, ``plot`` the arrays
    the HTML report draws."""

    name: str
    path: str
    n: int  # items per side after equal-size sub-sampling
    metrics: dict[str, Any]
    drift: list[dict[str, Any]]
    uncovered: dict[str, Any]
    coverage_report: dict[str, Any] | None = None
    verdict: list[str] = field(default_factory=list)
    plot: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "n": self.n,
            **self.metrics,
            "top_drift": self.drift,
            "uncovered_dev": self.uncovered,
            "coverage_report": self.coverage_report,
            "verdict": self.verdict,
        }


def _standardizer(dev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dev's mean and sd per dimension: every train set is measured in dev-sd units, so
    their distances to dev are comparable. A (near-)constant dev dimension gets a small
    floor instead of a zero sd."""
    mu = dev.mean(axis=0)
    sd = dev.std(axis=0)
    floor = max(1e-3 * float(np.median(sd)) if sd.size else 0.0, 1e-6)
    return mu, np.maximum(sd, floor)


def compare_embeddings(
    train: EmbeddingSet,
    dev: EmbeddingSet,
    *,
    seed: int = 0,
    max_n: int = DEFAULT_MAX_N,
    k: int = 5,
    n_permutations: int = 200,
    folds: int = 5,
    names: Sequence[str] | None = None,
    top_features: int = 10,
) -> PairComparison:
    """Every data metric of one training set against dev (see :func:`compare_data`).

    Both sides are sub-sampled to the same size ``n = min(len(train), len(dev), max_n)``
    (seeded; the dev sub-sample is the same for every train set of that size) and
    standardized by dev's mean and sd.

    Example: ``compare_embeddings(load_embeddings("out/a"), load_embeddings("dev/")).metrics``
    """
    if train.X.shape[1] != dev.X.shape[1]:
        raise InputError(
            f"{train.name} embeddings have {train.X.shape[1]} dims but {dev.name} has {dev.X.shape[1]}: "
            "they were made by different featurizers (audio vs image, or another shardsmith version)"
        )
    n = min(len(train), len(dev), max_n)
    if n < MIN_N:
        raise InputError(
            f"{train.name} ({len(train)}) vs {dev.name} ({len(dev)}): need at least {MIN_N} items on each "
            "side to compare distributions"
        )
    if not (np.isfinite(train.X).all() and np.isfinite(dev.X).all()):
        raise InputError(f"{train.name} or {dev.name}: embeddings hold NaN or Inf values")
    dim = train.X.shape[1]
    names = list(names) if names is not None else embedding_names(dim)
    dev_perm = keyed_rng(seed, 1).permutation(len(dev))
    train_perm = keyed_rng(seed, 2).permutation(len(train))
    di, ti = dev_perm[:n], train_perm[:n]
    mu, sd = _standardizer(dev.X)
    Zd = (dev.X[di] - mu) / sd
    Zt = (train.X[ti] - mu) / sd

    auc, auc_se, scores, is_dev = domain_classifier_auc(Zt, Zd, folds=folds, seed=seed)
    nm = min(n, MMD_MAX_N)
    mmd2, p_value, bandwidth = mmd2_permutation_test(Zt[:nm], Zd[:nm], n_permutations=n_permutations, seed=seed)
    # Fréchet in units of the pair's pooled sd (not dev's): a feature near-constant in
    # dev but not in train would otherwise dominate it (see frechet_pooled). The
    # dev-vs-dev reference is measured in the same units.
    scale = pooled_scale(train.X[ti], dev.X[di])
    Ft, Fd = (train.X[ti] - mu) / scale, (dev.X[di] - mu) / scale
    fd = frechet_distance(Ft, Fd)
    if len(dev) >= 2 * n:
        null_n = n
        fd_null = frechet_distance(Fd, (dev.X[dev_perm[n : 2 * n]] - mu) / scale)
        fd_same_n = fd
    else:
        null_n = len(dev) // 2
        a = (dev.X[dev_perm[:null_n]] - mu) / scale
        b = (dev.X[dev_perm[null_n : 2 * null_n]] - mu) / scale
        fd_null = frechet_distance(a, b) if null_n >= 2 else float("nan")
        fd_same_n = frechet_distance(Ft[:null_n], a) if null_n >= 2 else float("nan")
    pr = prdc(Zd, Zt, k=k)
    metrics: dict[str, Any] = {
        "domain_auc": auc,
        "domain_auc_se": auc_se,
        "mmd2": mmd2,
        "mmd_p_value": p_value,
        "mmd_n": nm,
        "mmd_bandwidth": bandwidth,
        "mmd_permutations": n_permutations,
        "frechet_distance": fd,
        "frechet_null": fd_null,
        "frechet_null_n": null_n,
        "frechet_distance_at_null_n": fd_same_n,
        "precision": pr["precision"],
        "recall": pr["recall"],
        "density": pr["density"],
        "coverage": pr["coverage"],
        "coverage_null": expected_coverage(n, n, k),
        "k": k,
    }
    drift_all = feature_drift(train.X, dev.X, names)
    drift = drift_all[:top_features]

    # Dev regions no training item covers: dev items whose nearest train item lies
    # outside their own k-NN ball on the dev manifold.
    ratio = pr["nearest_ratio"]
    miss = np.flatnonzero(ratio >= 1.0)
    miss = miss[np.argsort(-ratio[miss], kind="stable")]
    tmu, tsd = train.X.mean(axis=0), np.maximum(train.X.std(axis=0), 1e-9)
    items = []
    for j in miss:
        z = (dev.X[di[j]] - tmu) / tsd
        f = int(np.argmax(np.abs(z)))
        items.append({
            "id": dev.ids[di[j]],
            "distance_over_radius": float(ratio[j]),
            "most_unlike_train": names[f],
            "z_vs_train": float(z[f]),
        })
    uncovered: dict[str, Any] = {"count": int(len(miss)), "fraction": float(len(miss) / n), "items": items}
    if len(miss) >= 2:
        uncovered["features"] = [
            {"feature": d["feature"], "smd": d["smd"]}
            for d in feature_drift(dev.X[di[miss]], train.X, names, top=5)
        ]
    plot = {"scores": scores, "is_dev": is_dev, "Zt": Zt, "Zd": Zd, "smd_all": drift_all}
    return PairComparison(train.name, train.path, n, metrics, drift, uncovered, plot=plot)


def _verdict(pc: PairComparison) -> list[str]:
    m = pc.metrics
    out = []
    auc = m["domain_auc"]
    if auc >= 0.9:
        out.append(f"dev is easy to tell from {pc.name} (domain AUC {auc:.2f}): the data do not look alike")
    elif auc >= 0.7:
        out.append(f"dev is clearly distinguishable from {pc.name} (domain AUC {auc:.2f})")
    elif auc >= 0.6:
        out.append(f"dev is somewhat distinguishable from {pc.name} (domain AUC {auc:.2f})")
    else:
        out.append(f"a classifier can hardly tell dev from {pc.name} (domain AUC {auc:.2f})")
    if m["mmd_p_value"] < 0.05:
        out.append(f"MMD says the distributions differ (p = {m['mmd_p_value']:.3g})")
    else:
        out.append(f"MMD finds no significant difference (p = {m['mmd_p_value']:.3g})")
    null = m["coverage_null"]
    if m["coverage"] < 0.5 * null:
        out.append(
            f"{pc.uncovered['count']} of {pc.n} dev items ({pc.uncovered['fraction']:.0%}) have no "
            f"training item nearby (coverage {m['coverage']:.2f}, {null:.2f} if alike)"
        )
    elif m["coverage"] < 0.85 * null:
        out.append(f"part of dev is not covered (coverage {m['coverage']:.2f}, {null:.2f} if alike)")
    if pc.drift:
        top = pc.drift[0]
        out.append(f"largest drift: {top['feature']} ({top['smd']:+.2f} sd, train vs dev)")
    cov = pc.coverage_report
    if cov is not None:
        if cov.get("passed"):
            out.append("the coverage guards passed")
        else:
            failed = ", ".join(cov.get("failed") or []) or "see coverage.json"
            out.append(f"the coverage guards FAILED ({failed}): the synthesis is narrow even where it is close")
    return out


def _coverage_join(path: str) -> dict[str, Any] | None:
    """The guard verdict of ``OUT/coverage.json`` (written by the coverage analyzer), if any."""
    f = Path(path) / "coverage.json"
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"file": os.fspath(f), "passed": None, "failed": [], "error": "unreadable"}
    if not isinstance(data, dict):
        return {"file": os.fspath(f), "passed": None, "failed": [], "error": "not a JSON object"}
    guards = data.get("guards")
    failed: list[str] = []
    if isinstance(guards, dict):
        for gname, g in guards.items():
            ok = g.get("passed") if isinstance(g, dict) else g
            if ok is False:
                failed.append(str(gname))
    elif isinstance(guards, list):
        for g in guards:
            if isinstance(g, dict) and g.get("passed") is False:
                label = str(g.get("name") or g.get("guard") or g)
                failed.append(f"{label} ({g['pool']})" if g.get("pool") else label)
    passed = data.get("passed")
    return {"file": os.fspath(f), "passed": passed if isinstance(passed, bool) else None, "failed": failed}


@dataclass
class DataComparison:
    """:func:`compare_data`'s result: dev, one :class:`PairComparison` per training set,
    and which set is closest to dev on each metric."""

    dev: EmbeddingSet
    pairs: dict[str, PairComparison]
    closest: dict[str, str]
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "dev": {"path": self.dev.path, "kind": self.dev.kind, "n_available": self.dev.n_available,
                    "n_loaded": len(self.dev), "splits": self.dev.splits, "rejects": self.dev.rejects},
            "train_sets": {name: pc.to_json() for name, pc in self.pairs.items()},
            "closest": self.closest,
            "settings": self.settings,
            "notes": self.notes,
        }

    def describe(self) -> str:
        names = list(self.pairs)
        w = max(12, *(len(n) + 2 for n in names))
        lines = [f"dev  {self.dev.describe()}"]
        for pc in self.pairs.values():
            lines.append(f"train {pc.name}: {pc.path} ({pc.n} per side compared)")
        lines.append("")
        header = f"{'metric':<34}" + "".join(f"{n:>{w}}" for n in names)
        lines.append(header)
        rows = [
            ("domain AUC (0.5 = alike)", "domain_auc", "{:.3f}"),
            ("MMD² (RBF)", "mmd2", "{:.4f}"),
            ("MMD permutation p-value", "mmd_p_value", "{:.3g}"),
            ("Fréchet distance", "frechet_distance", "{:.2f}"),
            ("  dev vs dev at same n (bias)", "frechet_null", "{:.2f}"),
            ("precision (train in dev manifold)", "precision", "{:.3f}"),
            ("recall (dev in train manifold)", "recall", "{:.3f}"),
            ("density (1 = alike)", "density", "{:.3f}"),
            ("coverage of dev by train", "coverage", "{:.3f}"),
            ("  coverage if alike", "coverage_null", "{:.3f}"),
        ]
        for label, key, f in rows:
            cells = "".join(f"{f.format(self.pairs[n].metrics[key]):>{w}}" for n in names)
            mark = f"  closest: {self.closest[key]}" if key in self.closest and len(names) > 1 else ""
            lines.append(f"{label:<34}{cells}{mark}")
        for pc in self.pairs.values():
            m = pc.metrics
            lines.append("")
            lines.append(f"{pc.name}:")
            if m["frechet_null_n"] != pc.n:
                lines.append(
                    f"  Fréchet at n={m['frechet_null_n']} (the size of the dev-vs-dev reference): "
                    f"{m['frechet_distance_at_null_n']:.2f} vs {m['frechet_null']:.2f}"
                )
            for v in pc.verdict:
                lines.append(f"  - {v}")
            shown = pc.drift[:8]
            features = len(pc.plot.get("smd_all") or pc.drift)
            lines.append(f"  the {len(shown)} of {features} features that drift most "
                         "(standardized mean difference, train - dev):")
            for d in shown:
                lines.append(
                    f"    {d['feature']:<28} {d['smd']:+7.2f}   train {d['train_mean']:9.3f}   dev {d['dev_mean']:9.3f}"
                )
            u = pc.uncovered
            lines.append(f"  dev items no training item covers: {u['count']} of {pc.n} ({u['fraction']:.0%})")
            for it in u["items"][:10]:
                lines.append(
                    f"    {it['id']}  (nearest train {it['distance_over_radius']:.1f}x its k-NN radius; "
                    f"most unlike train: {it['most_unlike_train']} {it['z_vs_train']:+.1f} sd)"
                )
            if u["count"] > 10:
                lines.append(f"    (first 10 of {u['count']}; --json lists them all)")
            if u.get("features"):
                lines.append(
                    "    what sets them apart: "
                    + ", ".join(f"{d['feature']} {d['smd']:+.1f} sd" for d in u["features"][:3])
                )
        if len(names) > 1:
            wins = {n: sum(1 for v in self.closest.values() if v == n) for n in names}
            best = max(names, key=lambda n: wins[n])
            lines.append("")
            lines.append(
                f"closest to dev: {best} (on {wins[best]} of {len(CLOSENESS)} metrics: "
                + ", ".join(k for k, v in self.closest.items() if v == best) + ")"
            )
        for note in self.notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)


def _closeness_score(key: str, value: float) -> float:
    if key == "density":
        return min(value, 1.0)  # above 1: train piles up in dense dev regions, not closer
    return value


def compare_data(
    train: Sequence[str | Path | tuple[str, str | Path]],
    dev: str | Path,
    *,
    train_split: str | None = None,
    dev_split: str | None = None,
    seed: int = 0,
    max_n: int = DEFAULT_MAX_N,
    k: int = 5,
    n_permutations: int = 200,
    folds: int = 5,
    path_column: str = "path",
) -> DataComparison:
    """Compare one or more training sets with the dev (target) data, from embeddings.

    ``train``: shard folders (or ``(name, folder)`` pairs); their ``train`` split is read
    unless ``train_split`` names another (every split if there is no ``train``). ``dev``:
    a shard folder (its ``dev`` split if it has one, else all) or raw audio / images
    (a folder or a manifest), featurized like the shards. Per training set: domain AUC,
    MMD² and its p-value, Fréchet distance with its dev-vs-dev reference,
    precision / recall / density / coverage, drifting features, uncovered dev items, and
    the coverage guards of ``OUT/coverage.json`` when it exists.

    Example: ``compare_data([("clean", "out/clean"), ("synth", "out/synth")], "dev_audio/").closest``
    """
    if not train:
        raise InputError("give at least one training set (--train OUT)")
    if n_permutations < 1 or n_permutations > 10000:
        raise InputError(f"permutations must be between 1 and 10000, got {n_permutations}")
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    for entry in train:
        path = entry[1] if isinstance(entry, tuple) else entry
        if not Path(path).is_dir():
            raise InputError(f"--train {path}: not found or not a folder (expected a shardsmith output folder)")
    dev_set = load_embeddings(
        dev, name="dev", split=dev_split, prefer_split="dev", max_n=max_n, seed=seed, path_column=path_column
    )
    pairs: dict[str, PairComparison] = {}
    for entry in train:
        name, path = entry if isinstance(entry, tuple) else (Path(entry).name or os.fspath(entry), entry)
        base, i = name, 2
        while name in pairs or name == "dev":
            name, i = f"{base}_{i}", i + 1
        tset = load_embeddings(
            path, name=name, split=train_split, prefer_split="train", max_n=max_n, seed=seed, path_column=path_column
        )
        pc = compare_embeddings(
            tset, dev_set, seed=seed, max_n=max_n, k=k, n_permutations=n_permutations, folds=folds
        )
        pc.coverage_report = _coverage_join(os.fspath(path)) if Path(path).is_dir() else None
        pc.verdict = _verdict(pc)
        pairs[name] = pc
    closest: dict[str, str] = {}
    for key, direction in CLOSENESS:
        best = max(pairs, key=lambda nm: direction * _closeness_score(key, pairs[nm].metrics[key]))
        closest[key] = best
    notes = []
    sizes = {pc.n for pc in pairs.values()}
    if len(sizes) > 1:
        notes.append(
            f"the training sets were compared at different sizes ({', '.join(str(s) for s in sorted(sizes))} "
            "per side); Fréchet distance and the k-NN metrics depend on n, so compare them with care "
            "(or set --max-n to the smallest)"
        )
    if dev_set.rejects:
        notes.append(f"{count(len(dev_set.rejects), 'dev file')} could not be read and were left out (see --json)")
    settings = {"seed": seed, "max_n": max_n, "k": k, "permutations": n_permutations, "folds": folds,
                "mmd_max_n": MMD_MAX_N, "standardized_by": "dev mean and sd",
                "frechet_standardized_by": "pooled sd of train and dev (per pair)"}
    return DataComparison(dev_set, pairs, closest, settings, notes)
