"""A probe model: a small fixed classifier fitted on a synthesized training set and scored
on every split error analysis asks for (``shardsmith mismatch probe``).

Training the real model takes days; this takes seconds. A logistic regression on the
rows' own embedding (:mod:`engine.features`: 66 log-mel statistics for audio, 64 image
statistics for images; no decoding, no downloaded model) is fitted on the ``train`` split
of a shardsmith output and scored on:

- ``train``: the rows it was fitted on;
- ``train_dev``: the output's ``train_dev`` split, or else a seeded 20 % of ``train`` held
  back from fitting;
- ``train_dev_unseen``: the output's holdout splits (rows made from source items that no
  other split used), pooled;
- ``dev``: real target data, a shardsmith output or labelled audio/image files (a folder
  with one subfolder per class, or a manifest with a path and a label column);
- ``test``: the same kinds as dev.

From these error rates come the gaps of error analysis -- avoidable bias (with a
human-level error), variance, the unseen-source gap, data mismatch and overfitting to dev
-- each with a Newcombe interval, the dominant one and what to try, and the probe's own
errors sliced by provenance (noise item, SNR band, seen vs held-out items) with
:func:`.slices.slice_rows`. Everything is seeded: the same inputs give the same numbers.

Example::

    report = probe_errors("out/diverse", "speaker", dev="out/dev")
    report.errors["dev"], report.gaps["unseen_source_gap"], report.dominant
    print(json.dumps(report.to_json()))
    record_probe(report)   # OUT/probe.json: `shardsmith coverage out/diverse` shows the verdict
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from ..errors import InputError
from ..layout import LEGACY_RUN_RECORD_FILE, RUN_RECORD_FILE
from ..media import MEDIA_EXTENSIONS, find_media, media_kind
from ..report import count, esc, figure_html, new_figure, page, pct, plural, section, table_html
from ..rng import keyed_rng
from ..run_record import read_run_record, shard_files
from ..shards import read_shard
from ..statistics import wilson_interval
from ..storage import as_store, is_uri
from ..synth import synthesizer_class
from ..tables import manifest_paths, require_column
from .columns import read_columns
from .embeddings import featurize_kept
from .errors import ADVICE, GAP_LABELS, Gap, Rate, difference_interval, parse_rate, rank_gaps
from .slices import SliceReport, held_out_items, slice_rows

# The error levels the probe scores, in the order of the decomposition.
ERROR_LEVELS = ("train", "train_dev", "train_dev_unseen", "dev", "test")
# (gap, from level, to level): gap = error(to) - error(from)
PROBE_GAPS = (
    ("avoidable_bias", "human", "train"),
    ("variance", "train", "train_dev"),
    ("unseen_source_gap", "train_dev", "train_dev_unseen"),
    ("data_mismatch", "train_dev", "dev"),
    ("dev_overfitting", "dev", "test"),
)
PROBE_GAP_LABELS = {**GAP_LABELS, "unseen_source_gap": "unseen-source gap"}
LEVEL_LABELS = {
    "human": "human-level",
    "train": "train",
    "train_dev": "train-dev",
    "train_dev_unseen": "train-dev, unseen sources",
    "dev": "dev",
    "test": "test",
}
# What to try, for the probe's gaps: the probe is a fixed small model, so a gap says
# something about the data, except avoidable bias, which says the probe is too weak.
PROBE_ADVICE = {
    "avoidable_bias": (
        "the probe (a linear model on the row embedding) fits this label worse than a person: "
        "the embedding carries too little of it. The other gaps still compare data sets, but "
        "read them as the view of a weak model, and confirm with the real model"
    ),
    "variance": (
        "the probe is right on the rows it was fitted on and wrong on new rows of the same "
        "recipe: the set is too small or too repetitive; synthesize more samples from more "
        "distinct sources (speech and noise); `shardsmith coverage` shows the reuse factors"
    ),
    "unseen_source_gap": (
        "the probe fails on rows made from noise (or other source) items that training never "
        "used: it learned the few items it saw, not the condition. Use more distinct noise "
        "items (a lower reuse factor, more effective sources in `shardsmith coverage`), "
        "perturb them (speed, filters, reversal), and keep a holdout split to check"
    ),
    "data_mismatch": ADVICE["data_mismatch"],
    "dev_overfitting": (
        "the probe is never tuned on dev, so test error above dev error means that dev and test "
        "differ, or that one of them is too small to measure: draw both from the same target "
        "recordings, and make them bigger (for the real model: " + ADVICE["dev_overfitting"] + ")"
    ),
}
TRAIN_DEV_FRACTION = 0.2  # of train, held back from fitting when the output has no train_dev split
PROBE_C = 1.0  # inverse L2 strength of the logistic regression
PROBE_MAX_ITER = 1000
MAX_FIT_ROWS = 50_000  # a seeded sub-sample of train beyond this keeps the fit to seconds
# A probe whose train-dev error is this close to always guessing the commonest class
# learned little of the label: its gaps say little.
CHANCE_SHARE = 0.9

PROBE_RECORD_FORMAT = 1  # of OUT/probe.json

_ROW_COLUMNS = ("sample_id", "split", "sources", "params", "embedding")
_NOT_LABELS = {"sample_id", "split", "params"}
_STREAM_TRAIN_DEV = 301
_STREAM_FIT = 302


def _is_label_type(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t) or pa.types.is_boolean(t)


def label_columns(schema: pa.Schema) -> list[str]:
    """The columns of a shard that can be a class label (text, integer or boolean
    values), in schema order.

    Example: ``label_columns(read_shard(f).schema)  # ['sampling_rate', 'text', 'speaker']``
    """
    return [f.name for f in schema if f.name not in _NOT_LABELS and _is_label_type(f.type)]


def _label_text(value: Any) -> str | None:
    if value is None:
        return None
    return str(value).strip()


@dataclass
class _Rows:
    """Rows of one scored set: embeddings, labels and (for shard rows) provenance."""

    X: np.ndarray
    y: list[str]
    rows: list[dict[str, Any]] | None  # sample_id, split, sources, params; None for raw files
    ids: list[str]


@dataclass
class ScoredSet:
    """The probe's error on one set of rows."""

    name: str
    source: str  # where the rows came from, in words
    n: int
    errors: int
    splits: list[str] = field(default_factory=list)
    unseen_labels: dict[str, int] = field(default_factory=dict)  # label -> rows (scored as errors)
    dropped: int = 0  # rows without a label
    rejects: list[dict[str, str]] = field(default_factory=list)  # unreadable raw files

    @property
    def error(self) -> float:
        return self.errors / self.n

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        return wilson_interval(self.error, self.n, confidence)

    def to_json(self, confidence: float = 0.95) -> dict[str, Any]:
        return {
            "source": self.source, "splits": self.splits, "n": self.n, "errors": self.errors,
            "error": self.error, "ci": list(self.interval(confidence)),
            "unseen_labels": dict(self.unseen_labels), "rows_without_label": self.dropped,
            "unreadable_files": self.rejects,
        }


@dataclass
class ProbeReport:
    """:func:`probe_errors`' result; ``to_json()`` is what ``--json`` prints.

    ``errors`` and ``gaps`` hold fractions (``None`` when not computable), keyed by
    :data:`ERROR_LEVELS` and the names of :data:`PROBE_GAPS`; ``dominant`` is the largest
    positive gap (``None`` if none is positive).
    """

    train: str
    label: str
    classes: list[str]
    sets: dict[str, ScoredSet]
    human: Rate | None
    gaps: dict[str, Gap | None]
    dominant: str | None
    problems: list[str]
    notes: list[str]
    slices: dict[str, SliceReport]
    features: dict[str, Any]
    model: dict[str, Any]
    seed: int = 0
    confidence: float = 0.95

    @property
    def errors(self) -> dict[str, float | None]:
        return {level: (s.error if (s := self.sets.get(level)) else None) for level in ERROR_LEVELS}

    @property
    def gap_values(self) -> dict[str, float | None]:
        return {name: (g.value if (g := self.gaps.get(name)) else None) for name, _, _ in PROBE_GAPS}

    def to_json(self) -> dict[str, Any]:
        return {
            "train": self.train,
            "label": self.label,
            "classes": list(self.classes),
            "errors": self.errors,
            "gaps": self.gap_values,
            "dominant": self.dominant,
            "problems": list(self.problems),
            "advice": {name: PROBE_ADVICE[name] for name in self.problems},
            "human": None if self.human is None else {"rate": self.human.value, "n": self.human.n},
            "sets": {name: s.to_json(self.confidence) for name, s in self.sets.items()},
            "intervals": {
                "errors": {lv: (list(s.interval(self.confidence)) if (s := self.sets.get(lv)) else None)
                           for lv in ERROR_LEVELS},
                "gaps": {name: (list(g.ci) if (g := self.gaps.get(name)) and g.ci is not None else None)
                         for name, _, _ in PROBE_GAPS},
            },
            "confidence": self.confidence,
            "features": self.features,
            "model": self.model,
            "seed": self.seed,
            "slices": {name: r.to_json() for name, r in self.slices.items()},
            "notes": list(self.notes),
        }

    def describe(self, top: int = 10) -> str:
        m = self.model
        lines = [
            f"probe: {m['name']} on {self.features['name']} ({self.features['dim']} dims), label "
            f"{self.label!r} ({len(self.classes)} classes), fitted on {m['fitted_rows']} rows of "
            f"{self.train} (seed {self.seed})",
            f"error rates ({self.confidence:.0%} Wilson intervals):",
        ]
        if self.human is not None:
            lines.append(f"  {LEVEL_LABELS['human']:<27} {'':>6} {pct(self.human.value):>8}  (given)")
        for level in ERROR_LEVELS:
            s = self.sets.get(level)
            if s is None:
                lines.append(f"  {LEVEL_LABELS[level]:<27} {'-':>6} {'-':>8}  {_missing_level(level)}")
                continue
            lo, hi = s.interval(self.confidence)
            lines.append(
                f"  {LEVEL_LABELS[level]:<27} {s.n:>6} {pct(s.error):>8}  [{pct(lo)}, {pct(hi)}]  {s.source}"
            )
        lines.append("gaps:")
        for name, src, dst in PROBE_GAPS:
            g = self.gaps.get(name)
            if g is None:
                needs = _needs(src, dst, self.sets, self.human)
                lines.append(f"  {PROBE_GAP_LABELS[name]:<27} {'-':>8}  (needs {needs})")
                continue
            ci = ""
            if g.ci is not None:
                ci = f"  [{pct(g.ci[0], signed=True)}, {pct(g.ci[1], signed=True)}]"
                if not g.significant:
                    ci += " not significant"
            mark = "  <- dominant" if name == self.dominant else ("  <- also large" if name in self.problems else "")
            lines.append(f"  {PROBE_GAP_LABELS[name]:<27} {pct(g.value, signed=True):>8}{ci}{mark}")
        dominant = PROBE_GAP_LABELS[self.dominant] if self.dominant else "none (no gap is positive)"
        lines.append(f"dominant gap: {dominant}")
        for name in self.problems:
            lines.append(f"  what to try for {PROBE_GAP_LABELS[name]}: {PROBE_ADVICE[name]}")
        for name, report in self.slices.items():
            lines.append("")
            lines.append(f"where the probe errs on {_slice_title(name, self)}: {report.errors} errors in "
                         f"{report.n_joined} rows")
            lines.append(f"  {'dimension':<12} {'category':<40} {'n':>6} {'errors':>7} {'rate':>8}  interval")
            for r in report.table[:top]:
                cat = r["category"] if len(r["category"]) <= 40 else "..." + r["category"][-37:]
                lines.append(
                    f"  {r['dimension']:<12} {cat:<40} {r['n']:>6} {r['errors']:>7} {pct(r['error_rate']):>8}  "
                    f"[{pct(r['ci'][0])}, {pct(r['ci'][1])}]"
                )
            if len(report.table) > top:
                lines.append(f"  ... {len(report.table) - top} more categories (--json lists them all)")
            for note in report.notes:
                lines.append(f"  note: {note}")
        for note in self.notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)

    def to_html(self) -> str:
        """A one-page HTML report: the error rates with their intervals (table and plot),
        the gaps, what to try, and the slices."""
        rows = []
        for level in ERROR_LEVELS:
            s = self.sets.get(level)
            if s is None:
                rows.append({"set": LEVEL_LABELS[level], "n": "", "error": "-", "interval": "",
                             "rows from": _missing_level(level)})
                continue
            lo, hi = s.interval(self.confidence)
            rows.append({"set": LEVEL_LABELS[level], "n": s.n, "error": pct(s.error),
                         "interval": f"{pct(lo)} .. {pct(hi)}", "rows from": s.source})
        fig, ax = new_figure(7.0, 3.0)
        names = [lv for lv in ERROR_LEVELS if lv in self.sets]
        vals = [self.sets[lv].error for lv in names]
        cis = [self.sets[lv].interval(self.confidence) for lv in names]
        err = np.maximum(np.array([[v - c[0] for v, c in zip(vals, cis)], [c[1] - v for v, c in zip(vals, cis)]]), 0.0)
        short = {**LEVEL_LABELS, "train_dev_unseen": "train-dev,\nunseen sources"}
        ax.bar([short[lv] for lv in names], vals, yerr=err, capsize=4, color="#5b8bd0")
        if self.human is not None:
            ax.axhline(self.human.value, color="#888", linestyle="--", label="human-level")
            ax.legend()
        ax.set_ylabel("probe error rate")
        ax.set_ylim(0, max(1e-3, min(1.0, max(c[1] for c in cis) * 1.15)))
        gap_rows = []
        for name, src, dst in PROBE_GAPS:
            g = self.gaps.get(name)
            gap_rows.append({
                "gap": PROBE_GAP_LABELS[name], "=": f"{LEVEL_LABELS[dst]} - {LEVEL_LABELS[src]}",
                "value": pct(g.value, signed=True) if g else "-",
                "interval": f"{pct(g.ci[0], signed=True)} .. {pct(g.ci[1], signed=True)}" if g and g.ci else "",
                "": "dominant" if name == self.dominant else ("also large" if name in self.problems else ""),
            })
        advice = "".join(f"<p><b>{esc(PROBE_GAP_LABELS[n])}</b>: {esc(PROBE_ADVICE[n])}</p>" for n in self.problems)
        parts = [
            section("Error rates", table_html(rows), figure_html(fig, "probe error rates")),
            section("Gaps", table_html(gap_rows),
                    f"<p>dominant gap: <b>{esc(PROBE_GAP_LABELS[self.dominant]) if self.dominant else 'none'}</b></p>",
                    advice),
        ]
        for name, report in self.slices.items():
            cols = ["dimension", "category", "n", "errors", "error_rate", "share_of_errors"]
            parts.append(section(f"Where the probe errs: {_slice_title(name, self)}", table_html(report.table, cols),
                                 "".join(f'<p class="note">{esc(n)}</p>' for n in report.notes)))
        if self.notes:
            parts.append(section("Notes", "".join(f'<p class="note">{esc(n)}</p>' for n in self.notes)))
        sub = (f"{self.model['name']} on {self.features['name']}, label {self.label!r}, "
               f"{len(self.classes)} classes, fitted on {self.train} (seed {self.seed})")
        return page("shardsmith mismatch probe", parts, sub)


def _slice_title(name: str, report: ProbeReport) -> str:
    if name == "train":
        scored = [lv for lv in ("train_dev", "train_dev_unseen") if lv in report.sets]
        return f"the rows of {report.train} it was not fitted on ({', '.join(scored)})"
    return f"the {name} rows ({report.sets[name].source})"


def _missing_level(level: str) -> str:
    return {
        "train_dev_unseen": "(the output has no holdout split)",
        "dev": "(give --dev)",
        "test": "(give --test)",
    }.get(level, "")


def _needs(src: str, dst: str, sets: dict[str, ScoredSet], human: Rate | None) -> str:
    missing = []
    for level in (src, dst):
        if level == "human" and human is None:
            missing.append("--human")
        elif level != "human" and level not in sets:
            missing.append({"train_dev_unseen": "a holdout split in the output", "dev": "--dev",
                            "test": "--test"}.get(level, level))
    return " and ".join(missing)


# --------------------------------------------------------------------------- reading


def _is_output(path: str) -> bool:
    if is_uri(path):
        return True
    p = Path(path)
    return p.is_dir() and any((p / n).exists() for n in (RUN_RECORD_FILE, LEGACY_RUN_RECORD_FILE))


def _read_split(out: Any, split: str, label: str, columns: Sequence[str], what: str) -> pa.Table | None:
    """One split's rows (only ``columns`` and the label), or None if it has no shards."""
    tables = []
    for f in shard_files(out, split):
        t = read_columns(f, [*columns, label])
        if label not in t.column_names:
            raise InputError(
                f"{what}: the rows have no {label!r} column; columns that can be labels: "
                f"{', '.join(label_columns(read_shard(f).schema)) or 'none'}; pick one with --label"
            )
        if "embedding" in columns and "embedding" not in t.column_names:
            raise InputError(f"{f}: shard has no 'embedding' column; re-run it with this shardsmith version")
        tables.append(t.select([*columns, label]))
    return pa.concat_tables(tables) if tables else None


def _embeddings(table: pa.Table, what: str) -> np.ndarray:
    emb = table.column("embedding").combine_chunks()
    if emb.null_count:
        raise InputError(f"{what}: {count(emb.null_count, 'row')} {plural(emb.null_count, 'has', 'have')} no embedding; re-run the recipe to rewrite them")
    if len(emb) == 0:
        return np.zeros((0, 0))
    dim = emb.type.list_size if hasattr(emb.type, "list_size") else len(emb[0])
    X = np.asarray(emb.flatten().to_numpy(zero_copy_only=False), dtype=np.float64).reshape(-1, dim)
    if not np.isfinite(X).all():
        raise InputError(f"{what}: embeddings hold NaN or Inf values; re-run the recipe to rewrite them")
    return X


def _rows_of(table: pa.Table, label: str, what: str, *, provenance: bool) -> tuple[_Rows, int]:
    """A split's table as :class:`_Rows`; rows without a label are dropped (counted)."""
    labels = [_label_text(v) for v in table.column(label).to_pylist()]
    keep = [i for i, v in enumerate(labels) if v is not None and v != ""]
    dropped = len(labels) - len(keep)
    if dropped:
        table = table.take(pa.array(keep, type=pa.int64()))
    X = _embeddings(table, what)
    ids = [str(x) for x in table.column("sample_id").to_pylist()]
    rows = table.select(["sample_id", "split", "sources", "params"]).to_pylist() if provenance else None
    return _Rows(X, [labels[i] for i in keep], rows, ids), dropped  # type: ignore[misc]


def _take(r: _Rows, idx: np.ndarray) -> _Rows:
    return _Rows(r.X[idx], [r.y[i] for i in idx], None if r.rows is None else [r.rows[i] for i in idx],
                 [r.ids[i] for i in idx])


def _concat(parts: list[_Rows]) -> _Rows:
    return _Rows(np.vstack([p.X for p in parts]), [y for p in parts for y in p.y],
                 [r for p in parts for r in (p.rows or [])], [i for p in parts for i in p.ids])


@dataclass
class _Target:
    """A dev or test set: its rows and where they came from."""

    rows: _Rows
    source: str
    splits: list[str]
    dropped: int
    rejects: list[dict[str, str]]
    out: Any = None  # the output's store when the set is a shardsmith output (for slices)
    synth_type: str | None = None


def _record(path: str, arg: str) -> dict[str, Any]:
    record = read_run_record(path)
    if record is None:
        raise InputError(
            f"{arg} {path}: no run record (run.json); give a shardsmith output folder (the --out of `shardsmith run`)"
        )
    return record


def _load_output_target(path: str, label: str, split: str | None, prefer: str, arg: str) -> _Target:
    store = as_store(path)
    record = _record(path, arg)
    available = list(record.get("splits", {}))
    if split is not None:
        if split not in available:
            raise InputError(f"{arg} {path}: no split {split!r}; splits are {', '.join(available) or 'none'}")
        splits = [split]
    else:
        splits = [prefer] if prefer in available else available
    parts, dropped, used = [], 0, []
    for s in splits:
        t = _read_split(store, s, label, _ROW_COLUMNS, f"{arg} {path} (split {s})")
        if t is None:
            continue
        rows, d = _rows_of(t, label, f"{arg} {path}", provenance=True)
        parts.append(rows)
        dropped += d
        used.append(s)
    if not parts or sum(len(p.y) for p in parts) == 0:
        raise InputError(f"{arg} {path}: no labelled rows in {plural(len(splits), 'split')} {', '.join(splits)}; run the recipe first")
    synth_type = str((record.get("recipe") or {}).get("synth", {}).get("type"))
    source = f"{path} split{'s' if len(used) > 1 else ''} {', '.join(used)}"
    return _Target(_concat(parts), source, used, dropped, [], store, synth_type)


def _load_files_target(path: str, label: str, path_column: str, arg: str) -> _Target:
    p = Path(path)
    if p.is_dir():
        files = find_media(p)
        if not files:
            raise InputError(f"{arg} {p}: no audio or image files (looked for {', '.join(MEDIA_EXTENSIONS)})")
        labels: list[str | None] = []
        for f in files:
            parts = Path(os.path.relpath(f, p)).parts
            if len(parts) < 2:
                raise InputError(
                    f"{arg} {p}: {parts[0]} lies directly in the folder, so it has no label; put each class in "
                    f"its own subfolder ({p}/<{label}>/file), or give a manifest (CSV, TSV, JSONL or Parquet) "
                    f"with a path and a {label!r} column"
                )
            labels.append(parts[0])
        ids = [Path(os.path.relpath(f, p)).as_posix() for f in files]
        source = f"{p} (one subfolder per {label})"
    else:
        fix = f"give a manifest with a {label!r} column (or a folder with one subfolder per class)"
        table, written, resolved = manifest_paths(p, path_column, fix="add it or set --path-column")
        require_column(table, label, f"{arg} {p}", fix)
        labels = [_label_text(v) for v in table.column(label).to_pylist()]
        files = [os.fspath(f) for f in resolved]
        ids = [str(w) for w in written]
        source = f"{p} (column {label!r})"
    kinds = {k for k in (media_kind(f) for f in files) if k}
    if not kinds:
        raise InputError(f"{arg} {p}: lists no audio or image files (looked for {', '.join(MEDIA_EXTENSIONS)})")
    if len(kinds) > 1:
        raise InputError(f"{arg} {p}: holds both audio and image files; point at one kind of data")
    keep = [i for i, v in enumerate(labels) if v]
    dropped = len(labels) - len(keep)
    good, X, rejects = featurize_kept(files, keep, f"{arg} {p}", str(p), "no labelled files")
    y, good_ids = [labels[i] for i in good], [ids[i] for i in good]
    return _Target(_Rows(np.vstack(X), y, None, good_ids), source, [], dropped, rejects)  # type: ignore[arg-type]


def _load_target(path: str | Path, label: str, split: str | None, prefer: str, path_column: str, arg: str) -> _Target:
    text = os.fspath(path)
    if not is_uri(text) and not Path(text).exists():
        raise InputError(
            f"{arg} {text}: not found (expected a shardsmith output folder, a folder of labelled files or a manifest)"
        )
    if _is_output(text):
        return _load_output_target(text, label, split, prefer, arg)
    if split is not None:
        raise InputError(f"{arg} {text}: is not a shardsmith output, so it has no splits; leave out the split")
    return _load_files_target(text, label, path_column, arg)


# --------------------------------------------------------------------------- the probe


def _fit(X: np.ndarray, y: list[str]) -> tuple[Any, list[str]]:
    # lazily: scikit-learn takes a second to import and only the analyzers need it
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER))
    notes = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # constant features: the scaler keeps them at 0
        model.fit(X, np.asarray(y, dtype=object))
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        notes.append(f"the probe's solver stopped at {PROBE_MAX_ITER} iterations before converging; its train "
                     "error may be a little high")
    return model, notes


def _score(model: Any, rows: _Rows, classes: set[str]) -> tuple[np.ndarray, dict[str, int]]:
    """Per row, whether the probe is right; labels training never saw are errors."""
    if len(rows.y) == 0:
        return np.zeros(0, dtype=bool), {}
    pred = model.predict(rows.X)
    truth = np.asarray(rows.y, dtype=object)
    unseen: dict[str, int] = {}
    for v in rows.y:
        if v not in classes:
            unseen[v] = unseen.get(v, 0) + 1
    return pred == truth, dict(sorted(unseen.items()))


def probe_errors(
    train: str | Path,
    label: str,
    *,
    dev: str | Path | None = None,
    test: str | Path | None = None,
    human: Rate | float | str | None = None,
    dev_split: str | None = None,
    test_split: str | None = None,
    path_column: str = "path",
    seed: int = 0,
    confidence: float = 0.95,
) -> ProbeReport:
    """Fit the probe on ``train``'s train split and score it on every set error analysis
    asks for; see the module docstring for the sets, the features and the model.

    ``train`` is a shardsmith output (local or on an object store). ``dev`` and ``test``
    are shardsmith outputs (their ``dev`` / ``test`` split if they have one, else every
    split; or ``dev_split`` / ``test_split``), folders of audio or image files with one
    subfolder per class (the subfolder's name is the label), or manifests (CSV, TSV,
    JSONL or Parquet) with a ``path_column`` and a ``label`` column. ``human`` is a
    human-level error (a fraction, or text such as ``"2%"`` or ``"3/200"``). Dev or test
    rows whose label the train split never has are scored as errors (the probe cannot
    predict a class it never saw) and counted in ``sets[...].unseen_labels``.

    Example::

        report = probe_errors("out/diverse", "speaker", dev="out/dev", human="0%")
        report.errors["train_dev_unseen"], report.gaps["unseen_source_gap"].value
        report.dominant                       # e.g. 'data_mismatch'
        json.dumps(report.to_json())          # errors, gaps, dominant, sets, slices, notes
    """
    train_text = os.fspath(train)
    arg = "--train"
    if not is_uri(train_text) and not Path(train_text).exists():
        raise InputError(f"{arg} {train_text}: not found; give a shardsmith output folder "
                         "(the --out of `shardsmith run`)")
    store = as_store(train_text)
    record = _record(train_text, arg)
    if not label or not str(label).strip():
        raise InputError("--label: give the name of the row column to classify, e.g. --label speaker")
    human_rate = human if isinstance(human, Rate) or human is None else parse_rate(human, "--human")
    splits_done = list(record.get("splits", {}))
    recipe_splits = (record.get("recipe") or {}).get("splits") or {}
    holdout = [s for s in splits_done if (recipe_splits.get(s) or {}).get("holdout")]
    if "train" not in splits_done or not shard_files(store, "train"):
        raise InputError(
            f"{arg} {train_text}: has no train split (splits: {', '.join(splits_done) or 'none'}); the probe is "
            "fitted on the split named 'train': give an output whose recipe has a `train` split, run to the end"
        )
    notes: list[str] = []
    synth = synthesizer_class(str((record.get("recipe") or {}).get("synth", {}).get("type")))
    where = f"{arg} {train_text}"

    train_table = _read_split(store, "train", label, _ROW_COLUMNS, f"{where} (split train)")
    train_rows, dropped_train = _rows_of(train_table, label, where, provenance=False)  # type: ignore[arg-type]
    if dropped_train:
        notes.append(f"{count(dropped_train, 'train row')} {plural(dropped_train, 'has', 'have')} no {label!r} value and were left out")
    has_train_dev = "train_dev" in splits_done and "train_dev" not in holdout and shard_files(store, "train_dev")
    sets: dict[str, ScoredSet] = {}
    scored: dict[str, _Rows] = {}
    if has_train_dev:
        td_table = _read_split(store, "train_dev", label, _ROW_COLUMNS, f"{where} (split train_dev)")
        td_rows, d = _rows_of(td_table, label, where, provenance=True)  # type: ignore[arg-type]
        fit_rows = train_rows
        td_source, td_splits = f"{train_text} split train_dev", ["train_dev"]
    else:
        n = len(train_rows.y)
        n_back = max(1, int(round(TRAIN_DEV_FRACTION * n))) if n >= 2 else 0
        perm = keyed_rng(seed, _STREAM_TRAIN_DEV).permutation(n)
        back, fit_idx = np.sort(perm[:n_back]), np.sort(perm[n_back:])
        fit_rows = _take(train_rows, fit_idx)
        # the held-back rows' provenance, for the slices
        td_full = train_table.take(pa.array(back, type=pa.int64()))  # type: ignore[union-attr]
        td_rows, d = _rows_of(td_full, label, where, provenance=True)
        td_source = f"{train_text} split train, {TRAIN_DEV_FRACTION:.0%} held back from fitting (seed {seed})"
        td_splits = ["train"]
        notes.append(f"the output has no train_dev split: {len(back)} train rows ({TRAIN_DEV_FRACTION:.0%}, seeded) "
                     "were held back from fitting and scored as train-dev")
    n_fit_all = len(fit_rows.y)
    if n_fit_all > MAX_FIT_ROWS:
        sub = np.sort(keyed_rng(seed, _STREAM_FIT).permutation(n_fit_all)[:MAX_FIT_ROWS])
        fit_rows = _take(fit_rows, sub)
        notes.append(f"the probe was fitted on a seeded sub-sample of {MAX_FIT_ROWS} of the {n_fit_all} train rows")
    classes = sorted(set(fit_rows.y))
    if len(classes) < 2:
        what = f"a single value ({classes[0]!r})" if classes else "no values"
        candidates = label_columns(read_shard(shard_files(store, "train")[0]).schema)
        raise InputError(
            f"{where}: column {label!r} has {what} in the train rows the probe is fitted on; a classifier needs "
            f"at least two classes: pick another --label (columns that can be labels: {', '.join(candidates)})"
        )
    model, fit_notes = _fit(fit_rows.X, fit_rows.y)
    notes += fit_notes
    known = set(classes)

    ok, _ = _score(model, fit_rows, known)
    sets["train"] = ScoredSet("train", f"{train_text} split train (the rows fitted on)", len(ok), int((~ok).sum()),
                              ["train"], dropped=dropped_train)
    outcomes: list[tuple[dict[str, Any], bool]] = []
    ok, unseen = _score(model, td_rows, known)
    if len(ok):
        sets["train_dev"] = ScoredSet("train_dev", td_source, len(ok), int((~ok).sum()), td_splits, unseen, d)
        outcomes += list(zip(td_rows.rows or [], ok.tolist()))
        scored["train_dev"] = td_rows
    if holdout:
        parts, dropped, used = [], 0, []
        for s in holdout:
            t = _read_split(store, s, label, _ROW_COLUMNS, f"{where} (split {s})")
            if t is None:
                continue
            r, dd = _rows_of(t, label, where, provenance=True)
            parts.append(r)
            dropped += dd
            used.append(s)
        if parts and sum(len(p.y) for p in parts):
            un_rows = _concat(parts)
            ok, unseen = _score(model, un_rows, known)
            sets["train_dev_unseen"] = ScoredSet(
                "train_dev_unseen", f"{train_text} split{'s' if len(used) > 1 else ''} {', '.join(used)} "
                "(held-out source items)", len(ok), int((~ok).sum()), used, unseen, dropped)
            outcomes += list(zip(un_rows.rows or [], ok.tolist()))
    else:
        notes.append(f"{train_text} has no holdout split, so the unseen-source gap is not measured: add a split "
                     "with `holdout: true` and a `holdout` fraction on the noise pool (docs/recipes.md, splits "
                     "and holdout)")
    others = [s for s in splits_done if s not in ("train", "train_dev", *holdout)]
    if others:
        notes.append(f"{plural(len(others), 'split')} {', '.join(others)} of {train_text} {plural(len(others), 'is', 'are')} not scored (only train, train_dev and "
                     "holdout splits are)")

    slices: dict[str, SliceReport] = {}
    if outcomes:
        held, held_notes = held_out_items(store)
        slices["train"] = slice_rows(outcomes, held, synth, confidence=confidence, notes=held_notes)

    dim = fit_rows.X.shape[1]
    for name, path, split, arg_t in (("dev", dev, dev_split, "--dev"), ("test", test, test_split, "--test")):
        if path is None:
            continue
        target = _load_target(path, label, split, name, path_column, arg_t)
        if target.rows.X.shape[1] != dim:
            raise InputError(
                f"{arg_t} {path}: its embeddings have {target.rows.X.shape[1]} dims but the train rows' have {dim}: "
                "they were made by different featurizers (audio vs image, or another shardsmith version)"
            )
        ok, unseen = _score(model, target.rows, known)
        sets[name] = ScoredSet(name, target.source, len(ok), int((~ok).sum()), target.splits, unseen,
                               target.dropped, target.rejects)
        if unseen:
            shown = ", ".join(f"{k!r} ({v})" for k, v in list(unseen.items())[:10])
            notes.append(
                f"{name}: {sum(unseen.values())} of {len(ok)} rows have a {label} the train split never has "
                f"({shown}{', ...' if len(unseen) > 10 else ''}); they are scored as errors, since no model "
                f"trained on this data can predict them: synthesize from speech with those {label}s too"
            )
        if target.dropped:
            notes.append(f"{name}: {count(target.dropped, 'row')} without a {label!r} value were left out")
        if target.rejects:
            r0 = target.rejects[0]
            notes.append(f"{name}: {count(len(target.rejects), 'file')} could not be read and were left out "
                         f"(e.g. {r0['path']}: {r0['reason']})")
        if target.out is not None and target.rows.rows:
            held, held_notes = held_out_items(target.out)
            tsynth = synthesizer_class(str(target.synth_type))
            slices[name] = slice_rows(list(zip(target.rows.rows, ok.tolist())), held, tsynth, confidence=confidence,
                                      notes=[n for n in held_notes if "no pool holds" not in n])

    rates: dict[str, Rate] = {lv: Rate(s.error, s.n) for lv, s in sets.items()}
    if human_rate is not None:
        rates["human"] = human_rate
    gaps: dict[str, Gap | None] = {}
    for name, src, dst in PROBE_GAPS:
        if src in rates and dst in rates:
            a, b = rates[src], rates[dst]
            gaps[name] = Gap(name, src, dst, round(b.value - a.value, 12), difference_interval(a, b, confidence))
        else:
            gaps[name] = None
    dominant, problems = rank_gaps({k: g for k, g in gaps.items() if g is not None})
    if human_rate is None:
        notes.append("no --human: avoidable bias is not measured (for a label people get right, --human 0% "
                     "makes the probe's own train error the avoidable bias)")
    counts = np.unique(np.asarray(fit_rows.y, dtype=object), return_counts=True)[1]
    chance = 1.0 - counts.max() / counts.sum()
    td = sets.get("train_dev")
    if td is not None and td.error >= CHANCE_SHARE * chance:
        notes.append(
            f"the probe's train-dev error ({pct(td.error)}) is near always guessing the commonest {label} "
            f"({pct(chance)}): the row embedding carries little of {label!r}, so these gaps say little; "
            "probe a label the embedding carries (a speaker, a device, a scene), or train the real model"
        )
    features = {
        "name": "the rows' embedding", "column": "embedding", "dim": int(dim),
        "about": "the shards' own embedding (engine.features: audio log-mel band means and stds, spectral "
                 "flatness, level; image colour, layout, sharpness statistics); raw dev/test files are "
                 "featurized with the same function",
    }
    model_info = {
        "name": "logistic regression", "library": "scikit-learn",
        "pipeline": "StandardScaler + LogisticRegression(lbfgs, L2)", "C": PROBE_C, "max_iter": PROBE_MAX_ITER,
        "fitted_rows": len(fit_rows.y), "train_dev_fraction": None if has_train_dev else TRAIN_DEV_FRACTION,
        "max_fit_rows": MAX_FIT_ROWS, "chance_error": chance,
    }
    return ProbeReport(train_text, label, classes, sets, human_rate, gaps, dominant, problems, notes, slices,
                       features, model_info, seed, confidence)


# --------------------------------------------------------------------------- the record


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None  # NaN / Inf are not JSON
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def probe_record(report: ProbeReport) -> dict[str, Any]:
    """What :func:`record_probe` writes: the report's JSON (``probe``) and the state of the
    output it was fitted on (``recipe_hash``, ``rows``, ``status`` of its run record), by
    which ``shardsmith coverage`` tells a verdict on other data than the folder now holds.

    Example: ``probe_record(report)["probe"]["dominant"]``
    """
    record = read_run_record(report.train) or {}
    return {
        "format": PROBE_RECORD_FORMAT,
        "recipe_hash": record.get("recipe_hash"),
        "rows": record.get("total_rows"),
        "status": record.get("status"),
        "probe": _finite(report.to_json()),
    }


def record_probe(report: ProbeReport) -> str:
    """Write the probe's verdict into the output it was fitted on (``OUT/probe.json``,
    :func:`probe_record`), where ``shardsmith coverage OUT`` (text and ``--html``) shows
    its errors and dominant gap beside the guards; returns where it was written.

    Example: ``record_probe(probe_errors("out/diverse", "speaker", dev="out/dev"))``
    """
    from ..sink import write_probe  # the sink (and the pool code under it) loads only to record a verdict

    return write_probe(report.train, probe_record(report))
