"""Which gap to work on: a model's errors split into avoidable bias, variance, data
mismatch and overfitting to dev (``shardsmith mismatch errors``).

From error rates on human-level (Bayes proxy), train, train-dev, dev and test, the four
gaps with confidence intervals when the example counts are known, the gap that
dominates and what to try for it. :func:`decompose_table` does the same from the general
two-column table (error on examples trained on / not trained on, for general and target
data).

Example::

    result = decompose_errors({"train": 0.01, "train_dev": 0.09, "dev": 0.10})
    result.dominant                     # 'variance'
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import InputError
from ..report import pct
from ..statistics import newcombe_interval

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


def difference_interval(a: Rate, b: Rate, confidence: float = 0.95) -> tuple[float, float] | None:
    """Confidence interval of ``b.value - a.value`` for two independent error rates
    (:func:`~engine.statistics.newcombe_interval`). A rate without a count is taken as
    exact (e.g. a human-level estimate); ``None`` when neither has a count.

    Example: ``difference_interval(Rate(0.01, 1000), Rate(0.09, 1000))``
    """
    return newcombe_interval(a.value, a.n, b.value, b.n, confidence)


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
                lines.append(f"  {LEVEL_LABELS[level]:<26} {pct(r.value):>8}{count}")
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
                ci = f"  [{pct(g.ci[0])}, {pct(g.ci[1])}] {self.confidence:.0%} CI{sig}"
            mark = "  <- dominant" if name == self.dominant else ("  <- also large" if name in self.problems else "")
            lines.append(f"  {GAP_LABELS[name]:<26} {pct(g.value, signed=True):>8}{ci}{mark}")
        if self.dominant is None:
            lines.append("dominant gap: none (no gap is positive)")
        else:
            lines.append(f"dominant gap: {GAP_LABELS[self.dominant]}")
        for name in self.problems:
            lines.append(f"  what to try for {GAP_LABELS[name]}: {ADVICE[name]}")
        for note in self.notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)


def rank_gaps(gaps: Mapping[str, Gap]) -> tuple[str | None, list[str]]:
    """The dominant gap (the largest positive one, ``None`` if none is positive) and the
    problems: it and every other positive gap at least :data:`PROBLEM_SHARE` of it whose
    interval does not rule it out, largest first. Ties keep the order of ``gaps``.

    Example: ``rank_gaps({"variance": Gap("variance", "train", "train_dev", 0.08)})``
    ``== ("variance", ["variance"])``
    """
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
    return dominant, problems


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
    dominant, problems = rank_gaps(gaps)
    if "human" not in parsed and "train" in parsed:
        tr = parsed["train"].value
        msg = (
            "human-level error not given, so avoidable bias is unknown; if humans get close to "
            f"0% error, the training error ({pct(tr)}) is itself the avoidable bias"
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


# --------------------------------------------------------------------------- the general table

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
                cells.append(f"{pct(r.value) if r is not None else '?':>{width}}")
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
                lines.append(f"  {_EXTRA_GAP_LABELS[name]:<48} {pct(value, signed=True):>8}")
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
