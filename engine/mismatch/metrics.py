"""Distances between two samples of embeddings (train vs dev): domain-classifier AUC,
MMD² with a permutation test, Fréchet distance, precision / recall / density / coverage
and per-feature drift.

scikit-learn and scipy are imported by the metrics that use them, when they run.

Example::

    auc, se, scores, is_dev = domain_classifier_auc(train_X, dev_X)
    prdc(dev_X, train_X, k=5)["coverage"]
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..rng import keyed_rng
from ..statistics import distances, squared_distances


def domain_classifier_auc(
    train: np.ndarray, dev: np.ndarray, *, folds: int = 5, seed: int = 0
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """How well a classifier tells dev from train: ROC AUC of out-of-fold scores.

    Logistic regression on standardized features (the scaler is fitted inside each
    fold), stratified ``folds``-fold cross-validation, every item scored by the model that
    did not see it. 0.5 means indistinguishable, 1.0 perfectly separated. Returns
    ``(auc, standard_error, scores, is_dev)``; the standard error is Hanley and McNeil's.

    Example: ``auc, se, scores, y = domain_classifier_auc(train_X, dev_X)``
    """
    # lazily: scikit-learn takes a second to import and only the data comparison needs it
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.vstack([train, dev])
    y = np.concatenate([np.zeros(len(train), dtype=np.int8), np.ones(len(dev), dtype=np.int8)])
    folds = max(2, min(folds, len(train), len(dev)))
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Separable data (clean vs noisy) is the expected case, not a fitting problem.
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        scores = cross_val_predict(model, X, y, cv=cv, method="predict_proba")[:, 1]
    auc = float(roc_auc_score(y, scores))
    n1, n2 = len(dev), len(train)
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n1 - 1) * (q1 - auc * auc) + (n2 - 1) * (q2 - auc * auc)) / (n1 * n2)
    return auc, float(math.sqrt(max(var, 0.0))), scores, y


def mmd2_permutation_test(
    x: np.ndarray, y: np.ndarray, *, n_permutations: int = 200, seed: int = 0
) -> tuple[float, float, float]:
    """Unbiased MMD² with a Gaussian (RBF) kernel and its permutation p-value.

    The bandwidth is the median pairwise distance of the pooled sample (the median
    heuristic). The p-value is ``(1 + #{permuted MMD² >= observed}) / (1 + n_permutations)``
    over seeded random relabellings. Returns ``(mmd2, p_value, bandwidth)``.

    Example: ``mmd2, p, sigma = mmd2_permutation_test(train_X, dev_X, n_permutations=200)``
    """
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise InputError("MMD needs at least 2 items on each side")
    Z = np.vstack([x, y])
    D2 = squared_distances(Z, Z)
    off = D2[np.triu_indices(len(Z), k=1)]
    sigma2 = float(np.median(off))
    if not sigma2 > 0:
        positive = off[off > 0]
        sigma2 = float(np.median(positive)) if positive.size else 1.0
    K = np.exp(-D2 / (2.0 * sigma2))
    N = n + m
    rng = keyed_rng(seed, 7)
    labels = np.zeros((N, n_permutations + 1), dtype=np.float64)
    labels[:n, 0] = 1.0  # column 0: the real split
    for j in range(1, n_permutations + 1):
        labels[rng.permutation(N)[:n], j] = 1.0
    KA = K @ labels
    row = K.sum(axis=1)
    sxx = (labels * KA).sum(axis=0) - n  # pairs within x, the diagonal (k=1) removed
    KB = row[:, None] - KA
    syy = ((1.0 - labels) * KB).sum(axis=0) - m
    sxy = (labels * KB).sum(axis=0)
    stats = sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2.0 * sxy / (n * m)
    observed = float(stats[0])
    # A small tolerance: permutations equal to the observed value up to rounding count.
    p = (1.0 + float(np.sum(stats[1:] >= observed - 1e-12))) / (1.0 + n_permutations)
    return observed, p, math.sqrt(sigma2)


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two samples:
    ``|mu_x - mu_y|² + tr(S_x + S_y - 2 (S_x S_y)^(1/2))``.

    The trace of the matrix square root is computed as the sum of square roots of the
    eigenvalues of ``S_x^(1/2) S_y S_x^(1/2)`` (symmetric, so no complex round-off, the
    same value as ``scipy.linalg.sqrtm``). Biased upward at small n: compare it with a
    dev-vs-dev reference at the same n (as :func:`compare_embeddings` does).

    Example: ``frechet_distance(np.zeros((5, 2)), np.ones((5, 2))) == 2.0``
    """
    from scipy.linalg import eigh  # lazily, like scikit-learn above

    mu = x.mean(axis=0) - y.mean(axis=0)
    sx = np.atleast_2d(np.cov(x, rowvar=False))
    sy = np.atleast_2d(np.cov(y, rowvar=False))
    w, v = eigh(sx)
    root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    inner = eigh(root @ sy @ root, eigvals_only=True)
    tr_sqrt = float(np.sqrt(np.clip(inner, 0.0, None)).sum())
    value = float((mu * mu).sum() + np.trace(sx) + np.trace(sy) - 2.0 * tr_sqrt)
    return max(value, 0.0)


def pooled_scale(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per feature, the pooled sd of two samples, ``sqrt((var_x + var_y) / 2)`` (the unit
    of :func:`feature_drift`), floored at 1e-3 of the median feature's (and at 1e-12), so a
    feature constant on both sides divides by a small number, never by zero.

    Example: ``pooled_scale(np.array([[0.0], [2.0]]), np.array([[0.0], [2.0]])).tolist() == [1.4142135623730951]``
    """
    vx = x.var(axis=0, ddof=1) if len(x) > 1 else np.zeros(x.shape[1])
    vy = y.var(axis=0, ddof=1) if len(y) > 1 else np.zeros(y.shape[1])
    sd = np.sqrt((vx + vy) / 2.0)
    floor = max(1e-3 * float(np.median(sd)) if sd.size else 0.0, 1e-12)
    return np.maximum(sd, floor)


def frechet_pooled(x: np.ndarray, y: np.ndarray) -> float:
    """:func:`frechet_distance` of two samples with every feature in units of the pair's
    pooled sd (:func:`pooled_scale`), the unit of the per-feature drift.

    In those units a feature adds at most ``smd**2 + 2`` (its squared standardized mean
    difference, and a variance term bounded by ``var_x + var_y = 2``), so a feature that is
    near-constant on one side cannot blow the distance up: measured in the other side's
    sd instead, dev with ``sd ~ 0`` on a feature where train varies gave 1,682,167 against a
    dev-vs-dev 57.75 while no feature drifted by more than 0.63 sd.

    Example: ``frechet_pooled(train_X, dev_X) <= sum(d["smd"] ** 2 for d in feature_drift(train_X, dev_X, names)) + 2 * dim``
    """
    scale = pooled_scale(x, y)
    mu = (x.mean(axis=0) + y.mean(axis=0)) / 2.0
    return frechet_distance((x - mu) / scale, (y - mu) / scale)


def _kth_neighbour_radius(x: np.ndarray, k: int) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors  # lazily, like the classifier's imports

    k = min(k, len(x) - 1)
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    return dist[:, k]  # column 0 is the point itself


def prdc(real: np.ndarray, fake: np.ndarray, *, k: int = 5) -> dict[str, Any]:
    """Precision, recall, density and coverage (Naeem et al. 2020) of ``real`` by ``fake``.

    Each real item's k-NN ball (radius: distance to its k-th nearest real neighbour)
    makes the real manifold. Precision: share of fake items inside some real ball.
    Recall: share of real items inside some fake item's k-NN ball. Density: mean number
    of real balls a fake item falls in, over k (1 for identical distributions).
    Coverage: share of real items whose ball holds at least one fake item. Here real is
    dev and fake is a training set. Also returns, per real item, ``nearest_ratio``: the
    distance to the nearest fake item over the ball radius (> 1: not covered).

    Example: ``prdc(dev_X, train_X, k=5)["coverage"]``
    """
    real_r = _kth_neighbour_radius(real, k)
    fake_r = _kth_neighbour_radius(fake, k)
    D = distances(real, fake)  # (n_real, n_fake)
    inside = D < real_r[:, None]
    precision = float(inside.any(axis=0).mean())
    recall = float((D < fake_r[None, :]).any(axis=1).mean())
    density = float(inside.sum() / (k * fake.shape[0]))
    nearest = D.min(axis=1)
    coverage = float((nearest < real_r).mean())
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(real_r > 0, nearest / real_r, np.where(nearest > 0, np.inf, 0.0))
    return {
        "precision": precision, "recall": recall, "density": density, "coverage": coverage,
        "radius": real_r, "nearest": nearest, "nearest_ratio": ratio,
    }


def expected_coverage(n_real: int, n_fake: int, k: int = 5) -> float:
    """Expected coverage when train and dev come from one distribution (Naeem et al. 2020):
    ``1 - prod_{i=1..k} (n_real - i) / (n_real + n_fake - i)``, about ``1 - 2^-k`` at equal sizes.

    Example: ``round(expected_coverage(1000, 1000, 5), 3) == 0.969``
    """
    prod = 1.0
    for i in range(1, k + 1):
        prod *= (n_real - i) / (n_real + n_fake - i)
    return 1.0 - prod


def feature_drift(train: np.ndarray, dev: np.ndarray, names: Sequence[str], top: int | None = None) -> list[dict[str, Any]]:
    """Standardized mean difference per dimension, ``(mean_train - mean_dev) / pooled sd``,
    largest magnitude first.

    Example: ``feature_drift(train_X, dev_X, embedding_names(66), top=5)[0]["feature"]``
    """
    mt, md = train.mean(axis=0), dev.mean(axis=0)
    vt = train.var(axis=0, ddof=1) if len(train) > 1 else np.zeros_like(mt)
    vd = dev.var(axis=0, ddof=1) if len(dev) > 1 else np.zeros_like(md)
    sd = np.sqrt((vt + vd) / 2.0)
    smd = (mt - md) / np.maximum(sd, 1e-9)
    order = np.argsort(-np.abs(smd), kind="stable")
    if top is not None:
        order = order[:top]
    return [
        {"feature": names[i], "index": int(i), "smd": float(smd[i]), "train_mean": float(mt[i]),
         "dev_mean": float(md[i]), "train_sd": float(math.sqrt(vt[i])), "dev_sd": float(math.sqrt(vd[i]))}
        for i in order
    ]
