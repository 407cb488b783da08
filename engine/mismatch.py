"""The mismatch evaluator: which gap to work on, and whether the training data covers the target.

Three questions an ML team asks after synthesis, three entry points:

- :func:`decompose_errors` (``shardsmith mismatch errors``): from a model's error rates on
  human-level (Bayes proxy), train, train-dev, dev and test, the four gaps -- avoidable
  bias, variance, data mismatch and overfitting to dev -- with confidence intervals when
  the example counts are known, the gap that dominates and what to try for it.
  :func:`decompose_table` does the same from the general two-column table (error on
  examples trained on / not trained on, for general and target data).
- :func:`compare_data` (``shardsmith mismatch data``): from embeddings alone, how far each
  training set is from the dev (target) set: domain-classifier AUC, MMD² with a
  permutation p-value, Fréchet distance beside its dev-vs-dev reference,
  precision / recall / density / coverage of dev by train, the features that drift most
  and the dev items no training sample covers.
- :func:`slice_errors` (``shardsmith mismatch slices``): a model's per-sample correctness
  joined to each row's provenance; error rate per noise pool, noise item, SNR band,
  reverb, transform, split and seen vs held-out sources, and the error-analysis table
  (each category's share of all errors is the ceiling on what fixing it can gain).

Example::

    result = decompose_errors({"train": 0.01, "train_dev": 0.09, "dev": 0.10})
    result.dominant                     # 'variance'
    data = compare_data(["out/synth"], "dev_audio/")
    print(data.describe())
"""

from __future__ import annotations

import json
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import BadSourceError, InputError

__all__ = [
    "GAPS",
    "LEVELS",
    "Rate",
    "Gap",
    "ErrorDecomposition",
    "GeneralTable",
    "TableDecomposition",
    "parse_rate",
    "wilson_interval",
    "difference_interval",
    "decompose_errors",
    "read_general_table",
    "decompose_table",
    "EmbeddingSet",
    "load_embeddings",
    "featurize_file",
    "embedding_names",
    "domain_classifier_auc",
    "mmd2_permutation_test",
    "frechet_distance",
    "prdc",
    "expected_coverage",
    "feature_drift",
    "PairComparison",
    "DataComparison",
    "compare_embeddings",
    "compare_data",
    "data_report_html",
    "SliceReport",
    "slice_errors",
]

# =========================================================================== errors

LEVELS = ("human", "train", "train_dev", "dev", "test")
LEVEL_LABELS = {
    "human": "human-level (Bayes proxy)",
    "train": "training",
    "train_dev": "training-dev",
    "dev": "dev",
    "test": "test",
}
# (gap, from level, to level): gap = error(to) - error(from)
GAPS = (
    ("avoidable_bias", "human", "train"),
    ("variance", "train", "train_dev"),
    ("data_mismatch", "train_dev", "dev"),
    ("dev_overfitting", "dev", "test"),
)
GAP_LABELS = {
    "avoidable_bias": "avoidable bias",
    "variance": "variance",
    "data_mismatch": "data mismatch",
    "dev_overfitting": "overfitting to dev",
}
ADVICE = {
    "avoidable_bias": (
        "the model fits its own training data worse than a human does: train a bigger model, "
        "train longer or with a better optimizer, revisit the architecture and "
        "hyperparameters, reduce regularization"
    ),
    "variance": (
        "the model does not generalize to unseen examples of its own training distribution: "
        "get more training data (more synthesized samples from more distinct sources), add "
        "regularization (weight decay, dropout, augmentation) or stop earlier"
    ),
    "data_mismatch": (
        "the model generalizes within its training distribution but not to the target: do "
        "error analysis on dev (`shardsmith mismatch slices`) to learn how dev differs, then "
        "collect or synthesize target-like data (e.g. clean speech mixed with the target's "
        "noise); check with `shardsmith mismatch data` and the coverage report that the "
        "synthesis covers more than a narrow slice of the target"
    ),
    "dev_overfitting": (
        "the dev set has been tuned to: get a bigger dev set (and a fresh one), and tune "
        "against it less often"
    ),
}
# A gap counts as a problem beside the dominant one when it is at least this share of it.
PROBLEM_SHARE = 0.5


@dataclass(frozen=True)
class Rate:
    """An error rate as a fraction in [0, 1], with the number of examples it was measured on."""

    value: float
    n: int | None = None


_RATE_RE = re.compile(
    r"^\s*(?:(?P<k>\d+(?:\.\d*)?)\s*/\s*(?P<kn>\d+)"
    r"|(?P<v>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<pct>%)?(?:\s*@\s*(?P<n>\d+))?)\s*$"
)


def parse_rate(text: Any, what: str = "error rate") -> Rate | None:
    """Parse ``0.12``, ``12%``, ``12/100`` (errors out of examples) or ``12%@1000`` / ``0.12@1000``
    (rate and example count). Blank means not measured (``None``).

    Example: ``parse_rate("12/1000") == Rate(0.012, 1000)``
    """
    if text is None:
        return None
    if isinstance(text, bool):
        raise InputError(f"{what}: expected a rate like 0.12, 12% or 12/100, got {text!r}")
    if isinstance(text, (int, float)):
        text = repr(float(text))
    s = str(text).strip()
    if not s or s.lower() in ("-", "nan", "na", "n/a", "none", "null"):
        return None
    m = _RATE_RE.match(s)
    if m is None:
        raise InputError(
            f"{what}: cannot read {s!r}; write a fraction (0.12), a percentage (12%), errors out "
            "of examples (12/100), or a rate with its example count (12%@1000)"
        )
    if m.group("kn") is not None:
        k, n = float(m.group("k")), int(m.group("kn"))
        if n <= 0 or k > n:
            raise InputError(f"{what}: {s!r} needs 0 <= errors <= examples and examples > 0")
        return Rate(k / n, n)
    v = float(m.group("v"))
    if m.group("pct"):
        v /= 100.0
    elif v > 1.0:
        raise InputError(
            f"{what}: {s!r} is more than 1; a bare number is a fraction, so write {s}% for a percentage"
        )
    if not 0.0 <= v <= 1.0:
        raise InputError(f"{what}: {s!r} is not an error rate between 0% and 100%")
    n = int(m.group("n")) if m.group("n") else None
    if n is not None and n <= 0:
        raise InputError(f"{what}: the example count in {s!r} must be positive")
    return Rate(v, n)


def _z(confidence: float) -> float:
    from statistics import NormalDist

    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(p: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` measured on ``n`` examples.

    Example: ``wilson_interval(0.1, 100)  # (0.055, 0.174)``
    """
    z = _z(confidence)
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(max(p * (1 - p) / n + z2 / (4 * n * n), 0.0))
    return max(0.0, center - half), min(1.0, center + half)


def difference_interval(a: Rate, b: Rate, confidence: float = 0.95) -> tuple[float, float] | None:
    """Confidence interval of ``b.value - a.value`` for two independent proportions.

    Newcombe's hybrid score method (his method 10): each proportion's Wilson interval,
    combined. A rate without a count is taken as exact (e.g. a human-level estimate);
    ``None`` when neither has a count.

    Example: ``difference_interval(Rate(0.01, 1000), Rate(0.09, 1000))``
    """
    if a.n is None and b.n is None:
        return None
    la, ua = wilson_interval(a.value, a.n, confidence) if a.n else (a.value, a.value)
    lb, ub = wilson_interval(b.value, b.n, confidence) if b.n else (b.value, b.value)
    d = b.value - a.value
    lower = d - math.sqrt((b.value - lb) ** 2 + (ua - a.value) ** 2)
    upper = d + math.sqrt((ub - b.value) ** 2 + (a.value - la) ** 2)
    return lower, upper


@dataclass
class Gap:
    """One gap between two error rates (``value = error(to) - error(from)``)."""

    name: str
    source: str
    target: str
    value: float
    ci: tuple[float, float] | None = None

    @property
    def significant(self) -> bool | None:
        """Whether the interval excludes zero (``None`` without counts)."""
        if self.ci is None:
            return None
        return self.ci[0] > 0 or self.ci[1] < 0


@dataclass
class ErrorDecomposition:
    """The result of :func:`decompose_errors`; ``to_json()`` is what ``--json`` prints."""

    rates: dict[str, Rate]
    gaps: dict[str, Gap]
    dominant: str | None
    problems: list[str]
    notes: list[str]
    confidence: float = 0.95

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: (g.value if (g := self.gaps.get(name)) else None) for name, _, _ in GAPS}
        out["dominant"] = self.dominant
        out["problems"] = list(self.problems)
        out["intervals"] = {
            name: (list(g.ci) if g.ci is not None else None) for name, g in self.gaps.items()
        }
        out["confidence"] = self.confidence
        out["error_rates"] = {k: {"rate": r.value, "n": r.n} for k, r in self.rates.items()}
        out["advice"] = {name: ADVICE[name] for name in self.problems}
        out["notes"] = list(self.notes)
        return out

    def describe(self) -> str:
        lines = ["error rates:"]
        for level in LEVELS:
            if level in self.rates:
                r = self.rates[level]
                count = f" (n={r.n})" if r.n else ""
                lines.append(f"  {LEVEL_LABELS[level]:<26} {_pct(r.value):>8}{count}")
        lines.append("gaps:")
        for name, src, dst in GAPS:
            g = self.gaps.get(name)
            if g is None:
                missing = [LEVEL_LABELS[x] for x in (src, dst) if x not in self.rates]
                lines.append(f"  {GAP_LABELS[name]:<26} {'-':>8}  (needs {' and '.join(missing)} error)")
                continue
            ci = ""
            if g.ci is not None:
                sig = "" if g.significant else ", not significant"
                ci = f"  [{_pct(g.ci[0])}, {_pct(g.ci[1])}] {self.confidence:.0%} CI{sig}"
            mark = "  <- dominant" if name == self.dominant else ("  <- also large" if name in self.problems else "")
            lines.append(f"  {GAP_LABELS[name]:<26} {_pct(g.value, signed=True):>8}{ci}{mark}")
        if self.dominant is None:
            lines.append("dominant gap: none (no gap is positive)")
        else:
            lines.append(f"dominant gap: {GAP_LABELS[self.dominant]}")
        for name in self.problems:
            lines.append(f"  what to try for {GAP_LABELS[name]}: {ADVICE[name]}")
        for note in self.notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)


def _pct(v: float, signed: bool = False) -> str:
    s = f"{v * 100:+.2f}%" if signed else f"{v * 100:.2f}%"
    return s


def decompose_errors(
    rates: Mapping[str, Rate | float | str | None],
    counts: Mapping[str, int] | None = None,
    *,
    confidence: float = 0.95,
) -> ErrorDecomposition:
    """Avoidable bias, variance, data mismatch and overfitting to dev from error rates.

    ``rates`` maps any of :data:`LEVELS` to a fraction, a :class:`Rate` or a string that
    :func:`parse_rate` reads; ``counts`` optionally gives each level's example count.
    A gap is known when both its levels are given. The dominant gap is the largest
    positive one; ``problems`` lists it and every other gap at least half as large
    (and not ruled out by its interval).

    Example: ``decompose_errors({"human": 0, "train": 0.10, "train_dev": 0.11, "dev": 0.20}).problems``
    ``== ['avoidable_bias', 'data_mismatch']``
    """
    parsed: dict[str, Rate] = {}
    for level, value in rates.items():
        if level not in LEVELS:
            raise InputError(f"unknown error level {level!r}; use one of {', '.join(LEVELS)}")
        r = value if isinstance(value, Rate) else parse_rate(value, f"{level} error")
        if r is None:
            continue
        if counts and counts.get(level) is not None:
            n = int(counts[level])
            if n <= 0:
                raise InputError(f"{level} error: the example count must be positive, got {n}")
            r = Rate(r.value, n)
        parsed[level] = r
    if len(parsed) < 2:
        raise InputError(
            "give at least two error rates (of human-level, train, train-dev, dev, test) "
            "to compute a gap, e.g. --train 1% --train-dev 9% --dev 10%"
        )
    gaps: dict[str, Gap] = {}
    for name, src, dst in GAPS:
        if src in parsed and dst in parsed:
            a, b = parsed[src], parsed[dst]
            # Rounded so that 7% - 4% and 10% - 7% tie exactly instead of by float noise.
            gaps[name] = Gap(name, src, dst, round(b.value - a.value, 12), difference_interval(a, b, confidence))
    notes: list[str] = []
    if not gaps:
        raise InputError(
            "no gap can be computed from these rates: a gap needs two neighbouring levels "
            "(human-level & train, train & train-dev, train-dev & dev, dev & test)"
        )
    positive = [g for g in gaps.values() if g.value > 0]
    dominant = max(positive, key=lambda g: g.value).name if positive else None
    problems: list[str] = []
    if dominant is not None:
        top = gaps[dominant].value
        problems = [
            g.name for g in sorted(gaps.values(), key=lambda g: -g.value)
            if g.value > 0 and g.value >= PROBLEM_SHARE * top and g.significant is not False
        ]
        if dominant not in problems:
            problems.insert(0, dominant)
    if "human" not in parsed and "train" in parsed:
        tr = parsed["train"].value
        msg = (
            "human-level error not given, so avoidable bias is unknown; if humans get close to "
            f"0% error, the training error ({_pct(tr)}) is itself the avoidable bias"
        )
        if dominant is not None and tr > gaps[dominant].value:
            msg += f" and would be the largest gap (more than {GAP_LABELS[dominant]})"
        notes.append(msg + "; give --human")
    if "avoidable_bias" in gaps and gaps["avoidable_bias"].value < 0:
        notes.append(
            "training error is below human-level error: the model fits its training data "
            "better than a human would (human-level is a poor Bayes proxy here, or the model "
            "memorizes its training set; the variance gap tells which)"
        )
    if "data_mismatch" in gaps and gaps["data_mismatch"].value < 0:
        notes.append(
            "dev error is below training-dev error: the dev data is easier for the model than "
            "its own training distribution"
        )
    if dominant is not None and gaps[dominant].significant is False:
        notes.append(
            f"the {GAP_LABELS[dominant]} gap is within its {confidence:.0%} interval of zero: "
            "measure on more examples before acting on it"
        )
    return ErrorDecomposition(parsed, gaps, dominant, problems, notes, confidence)


# ------------------------------------------------------------------ the general table

TABLE_ROWS = ("human", "trained", "not_trained")
TABLE_ROW_LABELS = {
    "human": "human-level",
    "trained": "error on examples trained on",
    "not_trained": "error on examples not trained on",
}


def _table_row_key(name: str) -> str | None:
    key = re.sub(r"[^a-z]", "", str(name).lower())
    if "human" in key or "bayes" in key:
        return "human"
    if "not" in key or "unseen" in key or "heldout" in key:
        return "not_trained"
    if "train" in key or "seen" in key:
        return "trained"
    return None


@dataclass
class GeneralTable:
    """The general form: rows human-level / trained on / not trained on; one column per
    data distribution (the first is the general, training distribution; the others targets)."""

    columns: list[str]
    cells: dict[str, dict[str, Rate | None]]  # column -> row -> rate

    def cell(self, column: str, row: str) -> Rate | None:
        return self.cells.get(column, {}).get(row)


def _cell_meaning(column_index: int, row: str) -> tuple[str, str]:
    """(what the cell is, how to measure it when it is missing)."""
    general = column_index == 0
    if general:
        return {
            "human": ("human-level error (Bayes proxy)", "have people label a sample of the training data"),
            "trained": ("training error", "evaluate the model on its training examples"),
            "not_trained": (
                "training-dev error",
                "hold out a train-dev set from the training distribution (`shardsmith split`)",
            ),
        }[row]
    return {
        "human": ("human-level error on this data", "have people label a sample of this data"),
        "trained": (
            "error on this data when it is trained on",
            "put some of this data into training and measure the error on those examples",
        ),
        "not_trained": ("dev/test error", "evaluate on a dev set of this data"),
    }[row]


def read_general_table(path: str | Path) -> GeneralTable:
    """Read the general table from CSV (first column the row names) or JSON
    (``{column: {row: rate}}``, columns in order, the first the training distribution).

    Example CSV::

        ,general,target
        human-level,4%,6%
        trained on,7%,6%
        not trained on,10%,6%
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{p}: table file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read the table ({exc})") from None
    raw: dict[str, dict[str, Any]] = {}
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InputError(f"{p}: not valid JSON ({exc})") from None
        if isinstance(data, dict) and isinstance(data.get("columns"), dict):
            data = data["columns"]
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise InputError(
                f"{p}: expected {{column: {{row: rate}}}}, e.g. "
                '{"general": {"human": "4%", "trained": "7%", "not_trained": "10%"}, "target": {...}}'
            )
        for col, rows in data.items():
            raw[str(col)] = {str(k): v for k, v in rows.items()}
    else:
        import csv
        import io

        rows_in = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
        if len(rows_in) < 2 or len(rows_in[0]) < 2:
            raise InputError(
                f"{p}: expected a header row (blank, then one column name per data distribution) "
                "and rows 'human-level', 'trained on', 'not trained on'"
            )
        header = [h.strip() for h in rows_in[0][1:]]
        for h in header:
            raw[h] = {}
        for r in rows_in[1:]:
            for col, value in zip(header, r[1:]):
                raw[col][r[0]] = value
    columns = list(raw)
    if len(columns) < 2:
        raise InputError(f"{p}: needs at least two columns (the training distribution, then a target)")
    cells: dict[str, dict[str, Rate | None]] = {}
    for col in columns:
        cells[col] = {}
        for row_name, value in raw[col].items():
            key = _table_row_key(row_name)
            if key is None:
                raise InputError(
                    f"{p}: unknown row {row_name!r}; rows are 'human-level', "
                    "'error on examples trained on' and 'error on examples not trained on'"
                )
            cells[col][key] = parse_rate(value, f"{p.name}: {col} / {row_name}")
    return GeneralTable(columns, cells)


@dataclass
class TableDecomposition:
    """:func:`decompose_table`'s result: per target column, the five-level decomposition
    and the extra gaps only the general form shows."""

    table: GeneralTable
    targets: dict[str, ErrorDecomposition]
    extra_gaps: dict[str, dict[str, float]]

    @property
    def main(self) -> ErrorDecomposition:
        return next(iter(self.targets.values()))

    def to_json(self) -> dict[str, Any]:
        out = self.main.to_json()
        general = self.table.columns[0]
        out["table"] = {
            "columns": self.table.columns,
            "general": general,
            "cells": {
                col: {
                    row: (
                        {"rate": r.value, "n": r.n, "meaning": _cell_meaning(i, row)[0]}
                        if (r := self.table.cell(col, row)) is not None
                        else None
                    )
                    for row in TABLE_ROWS
                }
                for i, col in enumerate(self.table.columns)
            },
        }
        out["targets"] = {
            col: {**d.to_json(), "extra_gaps": self.extra_gaps[col]} for col, d in self.targets.items()
        }
        return out

    def describe(self) -> str:
        cols = self.table.columns
        width = max(14, *(len(c) + 2 for c in cols))
        lines = ["general form (rows: human-level / trained on / not trained on):"]
        lines.append(" " * 34 + "".join(f"{c:>{width}}" for c in cols))
        missing: list[str] = []
        for row in TABLE_ROWS:
            cells = []
            for i, col in enumerate(cols):
                r = self.table.cell(col, row)
                cells.append(f"{_pct(r.value) if r is not None else '?':>{width}}")
                if r is None:
                    what, how = _cell_meaning(i, row)
                    missing.append(f"  {col} / {TABLE_ROW_LABELS[row]} ({what}): {how}")
            lines.append(f"  {TABLE_ROW_LABELS[row]:<32}" + "".join(cells))
        lines.append("what each cell is:")
        for i, col in enumerate(cols):
            for row in TABLE_ROWS:
                if self.table.cell(col, row) is not None:
                    short = TABLE_ROW_LABELS[row].replace("error on examples ", "")
                    lines.append(f"  {col} / {short}: {_cell_meaning(i, row)[0]}")
        if missing:
            lines.append("missing cells and how to fill them in:")
            lines += missing
        for col, d in self.targets.items():
            lines.append("")
            lines.append(f"{cols[0]} -> {col}:")
            lines += ["  " + line for line in d.describe().splitlines()]
            for name, value in self.extra_gaps[col].items():
                lines.append(f"  {_EXTRA_GAP_LABELS[name]:<48} {_pct(value, signed=True):>8}")
        return "\n".join(lines)


_EXTRA_GAP_LABELS = {
    "target_harder_for_humans": "target harder for humans (human: target - general)",
    "target_avoidable_bias": "avoidable bias on target (trained - human)",
    "target_variance": "variance on target (not trained - trained)",
    "target_harder_when_trained": "target harder even when trained on",
}


def decompose_table(table: GeneralTable, *, confidence: float = 0.95) -> TableDecomposition:
    """Fill in the general form: the first column gives human-level, train and train-dev
    error; each other column's 'not trained on' cell is its dev error. The target column's
    other cells give the gaps only this form shows (how much harder the target is for
    humans, and bias and variance on the target itself).

    Example: ``decompose_table(read_general_table("errors.csv")).main.dominant``
    """
    general = table.columns[0]
    base = {
        "human": table.cell(general, "human"),
        "train": table.cell(general, "trained"),
        "train_dev": table.cell(general, "not_trained"),
    }
    targets: dict[str, ErrorDecomposition] = {}
    extras: dict[str, dict[str, float]] = {}
    for col in table.columns[1:]:
        rates = {k: v for k, v in {**base, "dev": table.cell(col, "not_trained")}.items() if v is not None}
        try:
            targets[col] = decompose_errors(rates, confidence=confidence)
        except InputError as exc:
            raise InputError(f"table column {col!r}: {exc}") from None
        h_g, t_g = base["human"], base["train"]
        h_t, t_t, n_t = (table.cell(col, r) for r in TABLE_ROWS)
        ex: dict[str, float] = {}
        if h_t is not None and h_g is not None:
            ex["target_harder_for_humans"] = h_t.value - h_g.value
        if t_t is not None and h_t is not None:
            ex["target_avoidable_bias"] = t_t.value - h_t.value
        if n_t is not None and t_t is not None:
            ex["target_variance"] = n_t.value - t_t.value
        if t_t is not None and t_g is not None:
            ex["target_harder_when_trained"] = t_t.value - t_g.value
        extras[col] = ex
    return TableDecomposition(table, targets, extras)


# =========================================================================== data

AUDIO_EXTENSIONS = (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf", ".w64", ".sph")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_MAX_N = 2000  # per side, seeded sub-sample: every metric stays fast
MMD_MAX_N = 1000  # per side for the kernel matrix (2000 x 2000 floats) and its permutations
MIN_N = 10


def embedding_names(dim: int) -> list[str]:
    """A readable name for each embedding dimension: the layouts of
    :func:`engine.features.audio_embedding` (66) and ``image_embedding`` (64), else ``dim_17``.

    Example: ``embedding_names(66)[-1] == 'level_dbfs'``
    """
    from . import features

    if dim == features.AUDIO_EMBED_DIM:
        bands = features.N_MEL_BANDS
        top = 2595.0 * math.log10(1.0 + features.MEL_FMAX_HZ / 700.0)
        edges = [700.0 * (10 ** (top * i / (bands + 1) / 2595.0) - 1.0) for i in range(bands + 2)]
        span = [f"{edges[i]:.0f}-{edges[i + 2]:.0f} Hz" for i in range(bands)]
        return (
            [f"mel_mean_{i:02d} ({span[i]})" for i in range(bands)]
            + [f"mel_std_{i:02d} ({span[i]})" for i in range(bands)]
            + ["spectral_flatness", "level_dbfs"]
        )
    if dim == features.IMAGE_EMBED_DIM:
        # The layout documented beside engine.features.image_embedding.
        return (
            [f"hist_{c}_{b}" for c in "rgb" for b in range(8)]
            + [f"grad_orient_{b}" for b in range(8)]
            + ["grad_rms", "laplacian_logvar", "noise_sigma", "edge_density"]
            + [f"thumb_mean_{c}" for c in "rgb"] + [f"thumb_std_{c}" for c in "rgb"]
            + [f"luma_{r}{c}" for r in range(4) for c in range(4)]
            + ["saturation_mean", "saturation_std", "dark_clip", "bright_clip", "log2_width", "log2_height"]
        )
    return [f"dim_{i:02d}" for i in range(dim)]


@dataclass
class EmbeddingSet:
    """Embeddings of one data set (a shard folder, or raw files featurized here)."""

    name: str
    path: str
    kind: str  # "shards" | "audio" | "image"
    ids: list[str]
    X: np.ndarray  # (n, dim) float64
    n_available: int
    splits: list[str] = field(default_factory=list)
    rejects: list[dict[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def describe(self) -> str:
        what = f"shards ({', '.join(self.splits)})" if self.kind == "shards" else f"{self.kind} files"
        sub = f", {len(self)} sampled" if len(self) < self.n_available else ""
        bad = f", {len(self.rejects)} unreadable" if self.rejects else ""
        return f"{self.name}: {self.path} -- {self.n_available} {what}{sub}{bad}"


def _subsample(n: int, max_n: int, seed: int, stream: int) -> np.ndarray:
    """Sorted positions of a seeded sub-sample (all of them when n <= max_n)."""
    if n <= max_n:
        return np.arange(n)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream])))
    return np.sort(rng.permutation(n)[:max_n])


def _read_columns(shard: Path | str, columns: list[str]):
    """Only the named columns of a shard (Parquet reads just those; Arrow is memory-mapped).

    ``shard`` is a local path or an object-store URI (then read whole).
    """
    from .shards import read_shard
    from .storage import is_uri

    if not is_uri(shard) and str(shard).endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            have = pq.read_schema(shard).names
            return pq.read_table(shard, columns=[c for c in columns if c in have])
        except (pa.ArrowInvalid, OSError) as exc:
            from .errors import ShardError

            raise ShardError(f"{shard}: cannot read shard ({exc}); re-run the recipe to rewrite it") from None
    table = read_shard(shard)
    return table.select([c for c in columns if c in table.column_names])


def _shard_embeddings(
    out: Path, name: str, split: str | None, prefer_split: str | None, max_n: int, seed: int
) -> EmbeddingSet:
    import pyarrow as pa

    from .manifest import read_manifest, shard_files

    manifest = read_manifest(out) or {}
    available = list(manifest.get("splits", {}))
    if split is not None:
        if split not in available:
            raise InputError(f"{out}: no split {split!r}; splits are {', '.join(available) or 'none'}")
        splits = [split]
    elif prefer_split in available:
        splits = [prefer_split]  # type: ignore[list-item]
    else:
        splits = available
    tables = []
    for s in splits:
        for f in shard_files(out, s):
            t = _read_columns(f, ["sample_id", "embedding"])
            if "embedding" not in t.column_names:
                raise InputError(f"{f}: shard has no 'embedding' column; re-run it with this shardsmith version")
            tables.append(t.select(["sample_id", "embedding"]))
    if not tables:
        raise InputError(f"{out}: no shards written for split(s) {', '.join(splits)}; run the recipe first")
    table = pa.concat_tables(tables)
    n = table.num_rows
    keep = _subsample(n, max_n, seed, 101)
    table = table.take(pa.array(keep, type=pa.int64()))
    emb = table.column("embedding").combine_chunks()
    if emb.null_count:
        raise InputError(f"{out}: {emb.null_count} row(s) have no embedding; re-run the recipe to rewrite them")
    dim = emb.type.list_size if hasattr(emb.type, "list_size") else len(emb[0])
    X = np.asarray(emb.flatten().to_numpy(zero_copy_only=False), dtype=np.float64).reshape(-1, dim)
    ids = [str(x) for x in table.column("sample_id").to_pylist()]
    return EmbeddingSet(name, os.fspath(out), "shards", ids, X, n, splits)


def _media_kind(path: str) -> str | None:
    ext = os.path.splitext(path)[1].lower()
    if ext in AUDIO_EXTENSIONS:
        return "audio"
    if ext in IMAGE_EXTENSIONS:
        return "image"
    return None


def featurize_file(path: str) -> np.ndarray:
    """The embedding of one raw audio or image file, as shards store it for synthesized rows.

    Audio is read whole, downmixed and embedded at its own sample rate with
    :func:`engine.features.audio_embedding`; images use ``engine.features.image_embedding``.
    Raises :class:`~engine.errors.BadSourceError` for an unusable file.

    Example: ``featurize_file("dev/utt1.flac").shape == (66,)``
    """
    from . import features

    kind = _media_kind(path)
    if kind == "audio":
        from .audio import io as audio_io
        from .audio import ops

        info = audio_io.probe(path)
        x = ops.downmix(audio_io.read_all(path))
        return features.audio_embedding(x, info.sample_rate).astype(np.float64)
    if kind == "image":
        from .image.io import read_image  # the reader the image synthesizers use

        return features.image_embedding(read_image(path, "rgb")).astype(np.float64)
    raise BadSourceError(path, f"unknown media type {os.path.splitext(path)[1]!r} (not audio or an image)")


def _featurize_all(paths: list[str]) -> list[tuple[str, Any]]:
    def one(p: str) -> tuple[str, Any]:
        try:
            return ("ok", featurize_file(p))
        except BadSourceError as exc:
            return ("bad", exc.reason)
        except InputError:
            raise
        except Exception as exc:  # one unreadable file must not stop the comparison
            return ("bad", f"cannot be read ({type(exc).__name__}: {exc})")

    if len(paths) < 8:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as ex:
        return list(ex.map(one, paths))


def _raw_embeddings(
    source: Path, name: str, files: list[str], ids: list[str], max_n: int, seed: int
) -> EmbeddingSet:
    kinds = {k for k in (_media_kind(f) for f in files) if k}
    if not kinds:
        raise InputError(
            f"{source}: no audio or image files (looked for {', '.join(AUDIO_EXTENSIONS + IMAGE_EXTENSIONS)})"
        )
    if len(kinds) > 1:
        raise InputError(f"{source}: holds both audio and image files; point at one kind of data")
    kind = kinds.pop()
    keep = _subsample(len(files), max_n, seed, 102)
    chosen = [files[i] for i in keep]
    results = _featurize_all(chosen)
    rows, good_ids, rejects = [], [], []
    for i, (status, value) in zip(keep, results):
        if status == "ok":
            rows.append(value)
            good_ids.append(ids[i])
        else:
            rejects.append({"path": files[i], "reason": value})
    if not rows:
        first = rejects[0] if rejects else {"path": str(source), "reason": "no files"}
        raise InputError(f"{source}: no file could be featurized (e.g. {first['path']}: {first['reason']})")
    dims = {len(r) for r in rows}
    if len(dims) != 1:
        raise InputError(f"{source}: the featurizer returned embeddings of different sizes {sorted(dims)}")
    return EmbeddingSet(name, os.fspath(source), kind, good_ids, np.vstack(rows), len(files), [], rejects)


def load_embeddings(
    path: str | Path,
    *,
    name: str | None = None,
    split: str | None = None,
    prefer_split: str | None = None,
    max_n: int = DEFAULT_MAX_N,
    seed: int = 0,
    path_column: str = "path",
) -> EmbeddingSet:
    """Embeddings of a data set for :func:`compare_embeddings`.

    ``path`` is a shardsmith output folder (its rows' ``embedding`` column is read; no
    audio is decoded), a folder of raw audio or image files (searched recursively), or a
    manifest (CSV, TSV, JSONL or Parquet with a ``path`` column, relative paths from the
    manifest's folder) of raw files, featurized with the same featurizer the shards use.
    A seeded sub-sample of at most ``max_n`` items is kept (for raw files, before they
    are read). Of a shard folder, ``split`` or else ``prefer_split`` (when it exists) or
    else every split is read.

    Example: ``load_embeddings("out/demo_in_car", prefer_split="train")``
    """
    p = Path(path)
    label = name or p.name or os.fspath(p)
    if not p.exists():
        raise InputError(f"{p}: not found (expected a shardsmith output folder, a folder of files or a manifest)")
    if max_n < MIN_N:
        raise InputError(f"max_n must be at least {MIN_N}, got {max_n}")
    if p.is_dir():
        if (p / "manifest.json").exists():
            return _shard_embeddings(p, label, split, prefer_split, max_n, seed)
        files = sorted(
            os.fspath(f) for f in p.rglob("*") if f.is_file() and _media_kind(os.fspath(f)) is not None
        )
        ids = [Path(os.path.relpath(f, p)).as_posix() for f in files]
        return _raw_embeddings(p, label, files, ids, max_n, seed)
    from .pools import _read_manifest

    table = _read_manifest(p)
    if path_column not in table.column_names:
        raise InputError(
            f"{p}: manifest has no {path_column!r} column (columns: {', '.join(table.column_names) or 'none'})"
        )
    raw = table.column(path_column).to_pylist()
    files, ids = [], []
    for row, value in enumerate(raw):
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{p}: row {row + 1} has an empty {path_column!r}")
        f = Path(value)
        files.append(os.fspath(f if f.is_absolute() else p.parent / f))
        ids.append(value)
    if not files:
        raise InputError(f"{p}: manifest lists no files")
    return _raw_embeddings(p, label, files, ids, max_n, seed)


# ------------------------------------------------------------------ the metrics


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
    import warnings

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


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.spatial.distance import cdist

    return cdist(a, b, "sqeuclidean")


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
    D2 = _sq_dists(Z, Z)
    off = D2[np.triu_indices(len(Z), k=1)]
    sigma2 = float(np.median(off))
    if not sigma2 > 0:
        positive = off[off > 0]
        sigma2 = float(np.median(positive)) if positive.size else 1.0
    K = np.exp(-D2 / (2.0 * sigma2))
    N = n + m
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 7])))
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
    from scipy.linalg import eigh

    mu = x.mean(axis=0) - y.mean(axis=0)
    sx = np.atleast_2d(np.cov(x, rowvar=False))
    sy = np.atleast_2d(np.cov(y, rowvar=False))
    w, v = eigh(sx)
    root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    inner = eigh(root @ sy @ root, eigvals_only=True)
    tr_sqrt = float(np.sqrt(np.clip(inner, 0.0, None)).sum())
    value = float((mu * mu).sum() + np.trace(sx) + np.trace(sy) - 2.0 * tr_sqrt)
    return max(value, 0.0)


def _kth_neighbour_radius(x: np.ndarray, k: int) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

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
    from scipy.spatial.distance import cdist

    real_r = _kth_neighbour_radius(real, k)
    fake_r = _kth_neighbour_radius(fake, k)
    D = cdist(real, fake)  # (n_real, n_fake)
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


# ------------------------------------------------------------------ one train set vs dev

# (metric, direction): +1 higher is closer to dev, -1 lower is closer.
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
    dev_perm = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 1]))).permutation(len(dev))
    train_perm = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 2]))).permutation(len(train))
    di, ti = dev_perm[:n], train_perm[:n]
    mu, sd = _standardizer(dev.X)
    Zd = (dev.X[di] - mu) / sd
    Zt = (train.X[ti] - mu) / sd

    auc, auc_se, scores, is_dev = domain_classifier_auc(Zt, Zd, folds=folds, seed=seed)
    nm = min(n, MMD_MAX_N)
    mmd2, p_value, bandwidth = mmd2_permutation_test(Zt[:nm], Zd[:nm], n_permutations=n_permutations, seed=seed)
    fd = frechet_distance(Zt, Zd)
    if len(dev) >= 2 * n:
        null_n = n
        fd_null = frechet_distance(Zd, (dev.X[dev_perm[n : 2 * n]] - mu) / sd)
        fd_same_n = fd
    else:
        null_n = len(dev) // 2
        a = (dev.X[dev_perm[:null_n]] - mu) / sd
        b = (dev.X[dev_perm[null_n : 2 * null_n]] - mu) / sd
        fd_null = frechet_distance(a, b) if null_n >= 2 else float("nan")
        fd_same_n = frechet_distance(Zt[:null_n], a) if null_n >= 2 else float("nan")
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
            lines.append("  features that drift most (standardized mean difference, train - dev):")
            for d in pc.drift[:8]:
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
                lines.append(f"    ... and {u['count'] - 10} more (--json lists them all)")
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
        notes.append(f"{len(dev_set.rejects)} dev file(s) could not be read and were left out (see --json)")
    settings = {"seed": seed, "max_n": max_n, "k": k, "permutations": n_permutations, "folds": folds,
                "mmd_max_n": MMD_MAX_N, "standardized_by": "dev mean and sd"}
    return DataComparison(dev_set, pairs, closest, settings, notes)


def data_report_html(result: DataComparison, title: str = "shardsmith mismatch: data") -> str:
    """The HTML page of ``mismatch data --html``: metrics table, domain-classifier score
    histograms, a 2-D PCA projection of train vs dev, drift bars, uncovered dev items.

    Example: ``write_report("mismatch.html", data_report_html(compare_data(["out/a"], "dev/")))``
    """
    from .report import figure_html, new_figure, page, section, table_html

    names = list(result.pairs)
    rows = []
    for key in METRIC_KEYS + ("frechet_null", "coverage_null"):
        r: dict[str, Any] = {"metric": key}
        for n in names:
            r[n] = result.pairs[n].metrics[key]
        if len(names) > 1 and key in result.closest:
            r["closest"] = result.closest[key]
        rows.append(r)
    cols = ["metric", *names] + (["closest"] if len(names) > 1 else [])
    verdicts = "".join(
        f"<p><b>{_esc(pc.name)}</b>: " + "; ".join(_esc(v) for v in pc.verdict) + "</p>" for pc in result.pairs.values()
    )
    sections = [section("Summary", table_html(rows, cols), verdicts,
                        "".join(f'<p class="note">{_esc(n)}</p>' for n in result.notes))]

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
    from sklearn.decomposition import PCA

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
        drift = result.pairs[n].plot["smd_all"][:15][::-1]
        fig, ax = new_figure(width=7.0, height=0.28 * len(drift) + 1.0)
        vals = [d["smd"] for d in drift]
        ax.barh([d["feature"] for d in drift], vals, color=["#b00020" if v > 0 else "#1f5fa8" for v in vals])
        ax.axvline(0, color="#444", lw=0.8)
        ax.set_xlabel("standardized mean difference (train - dev), sd")
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(f"{n}: the features that drift most", fontsize=9)
        parts.append(figure_html(fig, f"feature drift of {n}"))
    sections.append(section("Feature drift", *parts))

    parts = []
    for n in names:
        u = result.pairs[n].uncovered
        parts.append(f"<p><b>{_esc(n)}</b>: {u['count']} of {result.pairs[n].n} dev items ({u['fraction']:.0%}) "
                     "have no training item inside their k-NN ball on the dev manifold.</p>")
        parts.append(table_html(u["items"][:50], ["id", "distance_over_radius", "most_unlike_train", "z_vs_train"]))
    sections.append(section("Dev regions no training item covers", *parts))

    guard_rows = [
        {"train set": n, "coverage.json": (pc.coverage_report or {}).get("file", "(none)"),
         "passed": (pc.coverage_report or {}).get("passed", ""),
         "failed guards": ", ".join((pc.coverage_report or {}).get("failed", []))}
        for n, pc in result.pairs.items()
    ]
    sections.append(section("Coverage guards", table_html(guard_rows)))
    return page(title, sections, subtitle=f"dev: {result.dev.path}")


def _esc(value: Any) -> str:
    from .report import esc

    return esc(value)


# =========================================================================== slices

SNR_BAND_DB = 5.0
_TRUE = {"1", "true", "t", "yes", "y", "correct", "right"}
_FALSE = {"0", "false", "f", "no", "n", "wrong", "incorrect", "error"}


def _as_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    s = str(value).strip().lower() if value is not None else ""
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise InputError(f"{where}: 'correct' must be true/false or 1/0, got {value!r}")


def _effective_snr_db(snrs: list[float]) -> float:
    """SNR of speech against all noise layers together (their powers add)."""
    total = sum(10.0 ** (-s / 10.0) for s in snrs)
    return -10.0 * math.log10(total)


def _snr_band(snr_db: float) -> str:
    lo = math.floor(snr_db / SNR_BAND_DB) * SNR_BAND_DB
    return f"[{lo:g}, {lo + SNR_BAND_DB:g}) dB"


def _transform_names(value: Any) -> list[str]:
    if value is None or value is False:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        for key in ("name", "type", "transform", "__class_fullname__"):
            if isinstance(value.get(key), str):
                return [value[key]]
        # {transform name: its applied params (maybe empty)}, or {name: enabled flag}
        return [str(k) for k, v in value.items() if v is not None and v is not False]
    if isinstance(value, (list, tuple)):
        out: list[str] = []
        for v in value:
            out += _transform_names(v)
        return out
    return [str(value)]


def _row_categories(
    row: dict[str, Any], params: dict[str, Any], held: set[tuple[str, str]], by: Sequence[str]
) -> dict[str, list[str]]:
    """The categories of one row, per dimension (a row can be in several of one dimension,
    e.g. two noise layers)."""
    cats: dict[str, list[str]] = {"split": [str(row.get("split"))]}
    sources = row.get("sources") or []
    layers = params.get("noise")
    if isinstance(layers, list):  # speech + noise: slice by the noise actually mixed in
        cats["noise pool"] = list(dict.fromkeys(str(x.get("pool")) for x in layers)) or ["(no noise)"]
        cats["noise item"] = list(dict.fromkeys(str(x.get("item")) for x in layers)) or ["(no noise)"]
        snrs = [float(x["snr_db"]) for x in layers if isinstance(x.get("snr_db"), (int, float))]
        if isinstance(params.get("total_snr_db"), (int, float)):
            cats["SNR band"] = [_snr_band(float(params["total_snr_db"]))]
        elif snrs:
            cats["SNR band"] = [_snr_band(_effective_snr_db(snrs))]
        elif not layers:
            cats["SNR band"] = ["(no noise)"]
        events = params.get("events")
        cats["event item"] = (
            list(dict.fromkeys(str(e.get("item")) for e in events)) if isinstance(events, list) and events
            else ["(no events)"]
        )
        reverb = params.get("reverb")
        cats["reverb"] = ["reverb" if reverb else "dry"]
        cats["reverb item"] = [str(reverb.get("item")) if isinstance(reverb, dict) else "dry"]
    else:  # any other synthesizer: slice by every source it recorded
        cats["source pool"] = list(dict.fromkeys(str(x["pool"]) for x in sources)) or ["(none)"]
        cats["source item"] = list(dict.fromkeys(str(x["item"]) for x in sources)) or ["(none)"]
    for key in ("applied", "transform", "transforms"):
        if key in params:
            names = [re.sub(r"#\d+$", "", n) for n in _transform_names(params[key])]
            cats["transform"] = list(dict.fromkeys(names)) or ["(none)"]
            break
    if held:
        used = {(str(x["pool"]), str(x["item"])) for x in sources}
        cats["sources"] = ["held-out (unseen) item" if used & held else "seen items only"]
    for col in by:
        cats[col] = [str(row.get(col))]
    return cats


# Dimensions whose only category means "the recipe does not use this": not shown.
_ABSENT = {"(no events)", "dry", "(none)"}


@dataclass
class SliceReport:
    """:func:`slice_errors`' result: error rates per category of provenance and the
    error-analysis table (categories ranked by their share of all errors)."""

    n_predictions: int
    n_joined: int
    not_joined: list[str]
    errors: int
    dimensions: dict[str, list[dict[str, Any]]]
    table: list[dict[str, Any]]
    notes: list[str]

    @property
    def error_rate(self) -> float:
        return self.errors / self.n_joined if self.n_joined else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "n_predictions": self.n_predictions,
            "n_joined": self.n_joined,
            "n_not_joined": len(self.not_joined),
            "not_joined_examples": self.not_joined[:20],
            "errors": self.errors,
            "error_rate": self.error_rate,
            "dimensions": self.dimensions,
            "table": self.table,
            "notes": self.notes,
        }

    def describe(self, top: int = 20) -> str:
        lines = [
            f"{self.n_joined} predictions joined to rows ({self.errors} errors, error rate {_pct(self.error_rate)})"
        ]
        if self.not_joined:
            lines.append(
                f"{len(self.not_joined)} of {self.n_predictions} prediction(s) name no row of the output "
                f"and were left out, e.g. {', '.join(self.not_joined[:3])}"
            )
        lines.append("")
        lines.append("error analysis: share of all errors per category (the most fixing it can gain)")
        lines.append(f"  {'dimension':<12} {'category':<40} {'n':>6} {'errors':>7} {'rate':>8} {'share':>7} {'gain':>7}")
        for r in self.table[:top]:
            cat = r["category"] if len(r["category"]) <= 40 else "..." + r["category"][-37:]
            lines.append(
                f"  {r['dimension']:<12} {cat:<40} {r['n']:>6} {r['errors']:>7} {_pct(r['error_rate']):>8} "
                f"{r['share_of_errors']:>7.1%} {_pct(r['max_gain']):>7}"
            )
        if len(self.table) > top:
            lines.append(f"  ... {len(self.table) - top} more categories (--json lists them all)")
        lines.append("  (rate: error rate in the category; share: its share of all errors; gain: the overall")
        lines.append("   error-rate drop if every error in it were fixed)")
        for dim, cats in self.dimensions.items():
            lines.append("")
            lines.append(f"by {dim}:")
            for c in cats:
                lines.append(
                    f"  {c['category']:<42} {c['n']:>6} {_pct(c['error_rate']):>8}  "
                    f"[{_pct(c['ci'][0])}, {_pct(c['ci'][1])}]"
                )
        for note in self.notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)


def _read_table_file(path: Path, what: str):
    from .pools import _read_manifest

    try:
        return _read_manifest(path)
    except InputError as exc:
        raise InputError(str(exc).replace("manifest", what)) from None


def slice_errors(
    shards: str | Path,
    predictions: str | Path,
    *,
    split: str | None = None,
    label_column: str | None = None,
    by: Sequence[str] = (),
    confidence: float = 0.95,
) -> SliceReport:
    """Join a model's per-sample results to the rows' provenance and slice the errors.

    ``predictions`` (CSV, TSV, JSONL or Parquet) has ``sample_id`` and either ``correct``
    (true/false, 1/0) or ``prediction`` -- compared with its own ``label`` column if it has
    one, else with the rows' ``label_column`` (default ``label``, else ``text``). Each row
    falls in one category per dimension (noise pool and noise item can hold several):
    split, noise pool, noise item, SNR band (5 dB bands of the effective SNR of all noise
    layers together), reverb, transform, seen vs held-out source items (from
    ``OUT/pool_index.parquet``) and any label column named in ``by``.

    Example: ``slice_errors("out/demo", "preds.csv").table[0]``
    """
    import pyarrow.parquet as pq

    from .manifest import as_store, read_manifest, shard_files

    out = as_store(shards)
    if read_manifest(out) is None:
        raise InputError(f"{out}: no manifest.json; --shards must be a shardsmith output folder")
    pred = _read_table_file(Path(predictions), "predictions file")
    cols = pred.column_names
    if "sample_id" not in cols:
        raise InputError(f"{predictions}: needs a 'sample_id' column (columns: {', '.join(cols) or 'none'})")
    if "correct" not in cols and "prediction" not in cols:
        raise InputError(
            f"{predictions}: needs a 'correct' column (true/false) or a 'prediction' column "
            f"to compare with the label (columns: {', '.join(cols)})"
        )
    ids = [str(x) if x is not None else None for x in pred.column("sample_id").to_pylist()]
    seen_ids: dict[str, int] = {}
    for i, sid in enumerate(ids):
        if sid is None or not sid.strip():
            raise InputError(f"{predictions}: row {i + 1} has an empty sample_id")
        if sid in seen_ids:
            raise InputError(f"{predictions}: sample_id {sid!r} appears twice (rows {seen_ids[sid] + 1} and {i + 1})")
        seen_ids[sid] = i

    use_row_label = "correct" not in cols and (label_column is not None or "label" not in cols)
    wanted = ["sample_id", "split", "sources", "params", *by]
    rows: dict[str, dict[str, Any]] = {}
    available: set[str] = set()
    manifest = read_manifest(out) or {}
    splits = [split] if split else list(manifest.get("splits", {}))
    for s in splits:
        for f in shard_files(out, s):
            t = _read_columns(f, wanted + ["label", "text"] + ([label_column] if label_column else []))
            available |= set(t.column_names)
            for r in t.to_pylist():
                rows[str(r["sample_id"])] = r
    for col in by:
        if col not in available:
            raise InputError(f"--by {col}: the rows have no such column; label columns are: "
                             f"{', '.join(sorted(available - {'sample_id', 'split', 'sources', 'params'})) or 'none'}")
    row_label = None
    if use_row_label:
        row_label = label_column or ("label" if "label" in available else "text" if "text" in available else None)
        if row_label is None or row_label not in available:
            raise InputError(
                f"{predictions}: has 'prediction' but no 'label', and the rows have no "
                f"{(label_column or 'label or text')!r} column to compare with; name it with --label-column"
            )

    correct_col = pred.column("correct").to_pylist() if "correct" in cols else None
    pred_col = pred.column("prediction").to_pylist() if correct_col is None else None
    label_col = pred.column("label").to_pylist() if (correct_col is None and not use_row_label) else None

    held: set[tuple[str, str]] = set()
    notes: list[str] = []
    if out.exists("pool_index.parquet"):
        with out.open_input("pool_index.parquet") as f:
            t = pq.read_table(f, columns=["pool", "item", "holdout"])
        held = {(p, it) for p, it, h in zip(*(t.column(c).to_pylist() for c in ("pool", "item", "holdout"))) if h}
        if not held:
            notes.append("no pool holds held-out items, so seen vs held-out cannot be sliced")
    else:
        notes.append(f"{out.display('pool_index.parquet')} not found: seen vs held-out cannot be sliced")

    not_joined: list[str] = []
    counts: dict[str, dict[str, list[int]]] = {}
    n = errors = 0
    for i, sid in enumerate(ids):
        row = rows.get(sid)
        if row is None:
            not_joined.append(sid)
            continue
        where = f"{predictions}: row {i + 1} ({sid})"
        if correct_col is not None:
            ok = _as_bool(correct_col[i], where)
        else:
            truth = row.get(row_label) if use_row_label else label_col[i]  # type: ignore[index]
            ok = pred_col[i] is not None and truth is not None and str(pred_col[i]).strip() == str(truth).strip()
        try:
            params = json.loads(row.get("params") or "{}")
        except ValueError:
            params = {}
        n += 1
        errors += 0 if ok else 1
        for dim, cats in _row_categories(row, params if isinstance(params, dict) else {}, held, by).items():
            per = counts.setdefault(dim, {})
            for c in cats:
                tally = per.setdefault(c, [0, 0])
                tally[0] += 1
                tally[1] += 0 if ok else 1
    if n == 0:
        raise InputError(
            f"{predictions}: none of its {len(ids)} sample_id(s) is a row of {out} "
            f"(e.g. {ids[0]!r} if any); are these predictions for this output folder"
            + (f" and split {split!r}" if split else "") + "?"
        )
    dimensions: dict[str, list[dict[str, Any]]] = {}
    table: list[dict[str, Any]] = []
    overall = errors / n
    for dim, per in counts.items():
        if len(per) == 1 and next(iter(per)) in _ABSENT:
            continue
        cats = []
        for c, (cn, ce) in per.items():
            rate = ce / cn
            cats.append({
                "category": c, "n": cn, "errors": ce, "error_rate": rate,
                "ci": list(wilson_interval(rate, cn, confidence)),
                "share_of_errors": ce / errors if errors else 0.0,
                "max_gain": ce / n,
                "lift": rate / overall if overall > 0 else None,
            })
        cats.sort(key=lambda c: (_natural_key(c["category"]) if dim == "SNR band" else (-c["error_rate"], c["category"])))
        dimensions[dim] = cats
        if len(cats) > 1:  # a dimension with one category tells nothing apart
            table += [{"dimension": dim, **c} for c in cats]
    table.sort(key=lambda r: (-r["errors"], -r["error_rate"], r["dimension"], r["category"]))
    if "sources" in dimensions:
        by_cat = {c["category"]: c for c in dimensions["sources"]}
        h, s = by_cat.get("held-out (unseen) item"), by_cat.get("seen items only")
        if h and s and h["error_rate"] > s["error_rate"] and h["ci"][0] > s["ci"][1]:
            notes.append(
                f"error on rows with held-out source items ({_pct(h['error_rate'])}) is clearly above rows made "
                f"only of seen items ({_pct(s['error_rate'])}): the model overfits to the synthesized sources; "
                "use more distinct noise items"
            )
    if errors and table and table[0]["share_of_errors"] >= 0.5 and table[0]["lift"] and table[0]["lift"] >= 2:
        t0 = table[0]
        notes.append(
            f"{t0['dimension']} {t0['category']!r} holds {t0['share_of_errors']:.0%} of the errors at "
            f"{t0['lift']:.1f}x the overall error rate: look there first"
        )
    return SliceReport(len(ids), n, not_joined, errors, dimensions, table, notes)


def _natural_key(category: str) -> tuple:
    m = re.match(r"^\[(-?[\d.]+)", category)
    return (0, float(m.group(1))) if m else (1, category)
