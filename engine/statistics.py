"""Statistics the analyzers share, each formula written once.

Confidence intervals of error rates (the mismatch evaluator's gaps and slices),
diversity of a set of shares or of a sample (the coverage analyzer's effective sources,
its forecast, Vendi score and participation ratio) and pairwise distances. The float
operations are fixed: reports built from them are byte-stable.

Example::

    wilson_interval(0.1, 100)                      # (0.0552, 0.1744)
    effective_numbers(np.array([0.5, 0.25, 0.25])) # (2.83, 2.67, 0.5)
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "normal_quantile",
    "wilson_interval",
    "newcombe_interval",
    "entropy",
    "effective_numbers",
    "participation_ratio",
    "vendi_score",
    "pairwise_mean_square",
    "squared_distances",
    "distances",
    "round_floats",
]


# --------------------------------------------------------------------------- intervals


def normal_quantile(confidence: float) -> float:
    """The two-sided standard normal quantile ``z`` of a confidence level.

    Example: ``round(normal_quantile(0.95), 2) == 1.96``
    """
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(p: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` measured on ``n`` examples.

    Example: ``wilson_interval(0.1, 100)  # (0.055, 0.174)``
    """
    z = normal_quantile(confidence)
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(max(p * (1 - p) / n + z2 / (4 * n * n), 0.0))
    return max(0.0, center - half), min(1.0, center + half)


def newcombe_interval(
    p_a: float, n_a: int | None, p_b: float, n_b: int | None, confidence: float = 0.95
) -> tuple[float, float] | None:
    """Confidence interval of ``p_b - p_a`` for two independent proportions.

    Newcombe's hybrid score method (his method 10): each proportion's Wilson interval,
    combined. A proportion without a count (``None`` or 0) is taken as exact; ``None``
    when neither has a count.

    Example: ``newcombe_interval(0.01, 1000, 0.09, 1000)  # (0.062, 0.099)``
    """
    if n_a is None and n_b is None:
        return None
    la, ua = wilson_interval(p_a, n_a, confidence) if n_a else (p_a, p_a)
    lb, ub = wilson_interval(p_b, n_b, confidence) if n_b else (p_b, p_b)
    d = p_b - p_a
    lower = d - math.sqrt((p_b - lb) ** 2 + (ua - p_a) ** 2)
    upper = d + math.sqrt((ub - p_b) ** 2 + (p_a - la) ** 2)
    return lower, upper


# --------------------------------------------------------------------------- diversity


def entropy(p: np.ndarray) -> float:
    """Shannon entropy in nats, ``-sum p log p``, of positive shares.

    Example: ``entropy(np.array([0.5, 0.5])) == math.log(2)``
    """
    return float(-(p * np.log(p)).sum())


def effective_numbers(shares: np.ndarray, sampled_fraction: float = 1.0) -> tuple[float, float, float]:
    """``(exp(entropy), 1 / sum(share**2), largest share)`` of positive shares.

    The first two are the effective number of sources (Hill numbers of order 1 and 2).
    Shares of a uniform ``sampled_fraction`` of the items estimate the whole: both sums
    are divided by the fraction.

    Example: ``effective_numbers(np.full(4, 0.25)) == (4.0, 4.0, 0.25)``
    """
    effective = math.exp(entropy(shares) / sampled_fraction)
    simpson = 1.0 / (float((shares * shares).sum()) / sampled_fraction)
    return effective, simpson, float(shares.max())


def participation_ratio(corr: np.ndarray) -> float | None:
    """``(sum l)**2 / sum l**2`` over the eigenvalues of a correlation matrix: how many
    dimensions the data spread over (``None`` for an all-zero matrix).

    Example: ``participation_ratio(np.eye(3)) == 3.0``
    """
    lam = np.clip(np.linalg.eigvalsh(corr), 0.0, None)
    return float(lam.sum() ** 2 / (lam * lam).sum()) if (lam * lam).sum() > 0 else None


def vendi_score(sq_distances: np.ndarray, bandwidth: float, *, overwrite: bool = False) -> float:
    """Vendi score: exp(entropy of the eigenvalues of K/m), ``K_ij = exp(-d_ij / (2 h**2))``
    for the ``m x m`` squared distances ``d`` of a sample and bandwidth ``h``; between 1
    (all alike) and m (all distinct). With ``overwrite`` the kernel is built in
    ``sq_distances`` itself (float64; the same bits): for m = 2,000 one 32 MB array less.

    Example: ``round(vendi_score(np.zeros((3, 3)), 1.0), 9) == 1.0``
    """
    m = sq_distances.shape[0]
    # exp(-d / (2 h**2)) / m in one m x m array (the same operations in the same order as
    # with temporaries, so the same bits): for m = 2,000 each temporary was 32 MB more.
    if overwrite and sq_distances.dtype == np.float64:
        kern = np.negative(sq_distances, out=sq_distances)
    else:
        kern = np.negative(sq_distances)
    np.divide(kern, 2.0 * bandwidth**2, out=kern)
    np.exp(kern, out=kern)
    np.divide(kern, m, out=kern)
    ev = np.clip(np.linalg.eigvalsh(kern), 0.0, None)
    ev = ev[ev > 1e-15]
    return float(np.exp(entropy(ev)))


# --------------------------------------------------------------------------- distances


def pairwise_mean_square(z: np.ndarray, chunk: int = 8) -> np.ndarray:
    """Mean over dims of squared differences for every pair of rows (the squared RMS
    distance), elementwise and without BLAS: the same bits on every machine.

    ``chunk`` rows at a time, squared in place: for 2,000 rows of 66 dims the temporary
    is 8 MB (64 rows and a second array for the squares took 2 x 67 MB, the peak of a
    run's coverage analysis, and were slower); each pair's sum is the same whatever the
    chunk.

    Example: ``pairwise_mean_square(np.array([[0.0, 0.0], [1.0, 1.0]]))[0, 1] == 1.0``
    """
    m, d = z.shape
    out = np.empty((m, m), np.float64)
    for first in range(0, m, chunk):
        block = z[first : first + chunk]
        diff = block[:, None, :] - z[None, :, :]
        np.square(diff, out=diff)
        out[first : first + chunk] = diff.sum(axis=2) / d
    return out


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance of every row of ``a`` to every row of ``b`` (scipy's cdist).

    Example: ``squared_distances(np.zeros((1, 2)), np.ones((1, 2)))[0, 0] == 2.0``
    """
    from scipy.spatial.distance import cdist  # lazily: scipy.spatial is only needed here

    return cdist(a, b, "sqeuclidean")


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance of every row of ``a`` to every row of ``b`` (scipy's cdist).

    Example: ``distances(np.zeros((1, 2)), np.array([[3.0, 4.0]]))[0, 0] == 5.0``
    """
    from scipy.spatial.distance import cdist  # lazily, as above

    return cdist(a, b)


# --------------------------------------------------------------------------- rounding


def round_floats(obj: Any, sig: int = 6) -> Any:
    """Every float in a JSON-like value rounded to ``sig`` significant digits (float32
    noise such as ``1.6007499694824219`` reads ``1.60075``); NaN and inf become None;
    ints, bools and strings stay as they are.

    Example: ``round_floats({"a": [1.6007499694824219, float("nan"), 3]}) == {"a": [1.60075, None, 3]}``
    """
    if isinstance(obj, dict):
        return {k: round_floats(v, sig) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [round_floats(v, sig) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return float(f"{v:.{sig}g}") if math.isfinite(v) else None
    return obj
