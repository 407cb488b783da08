"""Where a model's errors are: per-sample correctness joined to each row's provenance
(``shardsmith mismatch slices``).

Error rate per noise pool, noise item, SNR band, reverb, transform, split and seen vs
held-out sources, and the error-analysis table: each category's share of all errors is
the ceiling on what fixing it can gain.

Example::

    report = slice_errors("out/demo", "predictions.csv")
    report.table[0]                      # the category holding the most errors
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError
from ..layout import POOL_INDEX_FILE
from ..run_record import read_run_record, shard_files
from ..storage import Store, as_store
from ..synth import Synthesizer, synthesizer_class
from ..report import count, pct, plural
from ..statistics import wilson_interval
from ..tables import read_table
from .columns import read_columns

_TRUE = {"1", "true", "t", "yes", "y", "correct", "right"}
_FALSE = {"0", "false", "f", "no", "n", "wrong", "incorrect", "error"}
_ACCEPTED = ("true/false, 1/0, yes/no, y/n, t/f, correct/incorrect, right/wrong or error "
             "(any case)")


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
    raise InputError(f"{where}: 'correct' must be one of {_ACCEPTED}, got {value!r}")


def row_categories(
    row: dict[str, Any], params: dict[str, Any], held: set[tuple[str, str]], by: Sequence[str],
    synth: type[Synthesizer],
) -> dict[str, list[str]]:
    """The categories of one row, per dimension (a row can be in several of one dimension,
    e.g. two noise layers): its split, what its synthesizer says of its params
    (:meth:`~engine.synth.Synthesizer.slice_categories`), seen vs held-out source items,
    and the ``by`` columns.

    Example: ``row_categories(row, params, set(), ["speaker"], synthesizer_class("image_augment"))``
    """
    sources = row.get("sources") or []
    cats: dict[str, list[str]] = {"split": [str(row.get("split"))]}
    cats.update(synth.slice_categories(params, sources))
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
    # with --split: the split of each of not_joined that names a row of another split
    elsewhere: dict[str, str] = field(default_factory=dict)

    @property
    def not_joined_splits(self) -> dict[str, int]:
        """How many predictions left out name rows of each other split."""
        return dict(Counter(self.elsewhere.values()))

    @property
    def error_rate(self) -> float:
        return self.errors / self.n_joined if self.n_joined else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "n_predictions": self.n_predictions,
            "n_joined": self.n_joined,
            "n_not_joined": len(self.not_joined),
            "not_joined_examples": self.not_joined[:20],
            "not_joined_splits": self.not_joined_splits,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "dimensions": self.dimensions,
            "table": self.table,
            "notes": self.notes,
        }

    def describe(self, top: int = 20) -> str:
        lines = [
            f"{self.n_joined} predictions joined to rows ({self.errors} errors, error rate {pct(self.error_rate)})"
        ]
        if self.elsewhere:
            named = ", ".join(f"{k} {v}" for k, v in self.not_joined_splits.items())
            lines.append(
                f"{len(self.elsewhere)} of {self.n_predictions} {plural(self.n_predictions, 'prediction')} name rows of "
                f"other splits ({named}) and were left out (only the split asked for is sliced)"
            )
        nowhere = [sid for sid in self.not_joined if sid not in self.elsewhere]
        if nowhere:
            lines.append(
                f"{len(nowhere)} of {self.n_predictions} {plural(self.n_predictions, 'prediction')} "
                f"name no row of the output and were left out, e.g. {', '.join(nowhere[:3])}"
            )
        lines.append("")
        lines.append("error analysis: share of all errors per category (the most fixing it can gain)")
        lines.append(f"  {'dimension':<12} {'category':<40} {'n':>6} {'errors':>7} {'rate':>8} {'share':>7} {'gain':>7}")
        for r in self.table[:top]:
            cat = r["category"] if len(r["category"]) <= 40 else "..." + r["category"][-37:]
            lines.append(
                f"  {r['dimension']:<12} {cat:<40} {r['n']:>6} {r['errors']:>7} {pct(r['error_rate']):>8} "
                f"{r['share_of_errors']:>7.1%} {pct(r['max_gain']):>7}"
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
                    f"  {c['category']:<42} {c['n']:>6} {pct(c['error_rate']):>8}  "
                    f"[{pct(c['ci'][0])}, {pct(c['ci'][1])}]"
                )
        for note in self.notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)


def _read_table_file(path: Path, what: str) -> pa.Table:
    # The table reader speaks of manifests; here the table is ``what``.
    try:
        return read_table(path)
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
    falls in one category per dimension (a dimension can hold several, e.g. two noise
    items): split; the dimensions the output's synthesizer defines (speech_noise_mix: noise
    pool and item, SNR band, events, reverb; the image synthesizers: source pool and item,
    transform); seen vs held-out source items (from ``OUT/pool_index.parquet``); and any
    label column named in ``by``.

    Example: ``slice_errors("out/demo", "preds.csv").table[0]``
    """
    out = as_store(shards)
    record = read_run_record(out)
    if record is None:
        raise InputError(f"{out.display()}: no run record (run.json); --shards must be a shardsmith output folder")
    synth = synthesizer_class(str(record.get("recipe", {}).get("synth", {}).get("type")))
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
    splits = [split] if split else list(record.get("splits", {}))
    for s in splits:
        for f in shard_files(out, s):
            t = read_columns(f, wanted + ["label", "text"] + ([label_column] if label_column else []))
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

    held, notes = held_out_items(out)
    joined: list[tuple[dict[str, Any], bool]] = []
    not_joined: list[str] = []
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
        joined.append((row, ok))
    elsewhere: dict[str, str] = {}
    if split and not_joined:
        # the ids left out may be rows of the splits not asked for: say which
        missing = set(not_joined)
        for s in record.get("splits", {}):
            if s == split:
                continue
            for f in shard_files(out, s):
                for sid in read_columns(f, ["sample_id"]).column("sample_id").to_pylist():
                    if str(sid) in missing:
                        elsewhere[str(sid)] = s
    if not joined:
        if elsewhere:
            named = ", ".join(f"{k} {v}" for k, v in Counter(elsewhere.values()).items())
            raise InputError(
                f"{predictions}: none of its {count(len(ids), 'sample_id')} is a row of split {split!r} of "
                f"{out.display()}; {len(elsewhere)} name rows of other splits ({named}): drop --split "
                "or give that split"
            )
        raise InputError(
            f"{predictions}: none of its {count(len(ids), 'sample_id')} is a row of {out.display()} "
            f"(e.g. {ids[0]!r} if any); are these predictions for this output folder"
            + (f" and split {split!r}" if split else "") + "?"
        )
    report = slice_rows(joined, held, synth, by=by, confidence=confidence, notes=notes,
                        n_predictions=len(ids), not_joined=not_joined)
    report.elsewhere = elsewhere
    return report


def held_out_items(out: str | Path | Store) -> tuple[set[tuple[str, str]], list[str]]:
    """The ``(pool, item)`` pairs an output kept for its holdout splits (from
    ``OUT/pool_index.parquet``), and a note when seen vs held-out cannot be told apart.

    Example: ``held, notes = held_out_items("out/demo")``
    """
    store = as_store(out)
    if not store.exists(POOL_INDEX_FILE):
        return set(), [f"{store.display(POOL_INDEX_FILE)} not found: seen vs held-out cannot be sliced"]
    with store.open_input(POOL_INDEX_FILE) as f:
        # One synchronous read on this thread. pq.read_table over a Python file object
        # scans in Arrow's thread pool, which may drop its last reference to a buffer read
        # through the file (a Python object) only after the interpreter has begun to exit:
        # that thread then takes the GIL, is ended by Python, and the C++ runtime aborts
        # the process (exit code 134, "terminate called without an active exception"),
        # most often when the command fails right after this read (no prediction joins).
        t = pq.ParquetFile(f).read(columns=["pool", "item", "holdout"], use_threads=False)
    held = {(p, it) for p, it, h in zip(*(t.column(c).to_pylist() for c in ("pool", "item", "holdout"))) if h}
    if not held:
        return held, ["no pool holds held-out items, so seen vs held-out cannot be sliced"]
    return held, []


def slice_rows(
    joined: Sequence[tuple[dict[str, Any], bool]],
    held: set[tuple[str, str]],
    synth: type[Synthesizer],
    *,
    by: Sequence[str] = (),
    confidence: float = 0.95,
    notes: Sequence[str] = (),
    n_predictions: int | None = None,
    not_joined: Sequence[str] = (),
) -> SliceReport:
    """Slice per-row outcomes by provenance: ``joined`` holds ``(row, correct)`` pairs, each
    row with at least ``split``, ``sources`` and ``params`` (and the ``by`` columns);
    ``held`` is :func:`held_out_items`. The core of :func:`slice_errors`, for callers that
    already hold the rows and the outcomes (the probe model of :mod:`.probe`).

    Example: ``slice_rows([(row, False)], set(), synthesizer_class("speech_noise_mix")).table``
    """
    notes = list(notes)
    counts: dict[str, dict[str, list[int]]] = {}
    n = errors = 0
    for row, ok in joined:
        try:
            params = json.loads(row.get("params") or "{}")
        except ValueError:
            params = {}
        n += 1
        errors += 0 if ok else 1
        for dim, cats in row_categories(row, params if isinstance(params, dict) else {}, held, by, synth).items():
            per = counts.setdefault(dim, {})
            for c in cats:
                tally = per.setdefault(c, [0, 0])
                tally[0] += 1
                tally[1] += 0 if ok else 1
    if n == 0:
        raise InputError("no rows to slice")
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
                f"error on rows with held-out source items ({pct(h['error_rate'])}) is clearly above rows made "
                f"only of seen items ({pct(s['error_rate'])}): the model overfits to the synthesized sources; "
                "use more distinct noise items"
            )
    if errors and table and table[0]["share_of_errors"] >= 0.5 and table[0]["lift"] and table[0]["lift"] >= 2:
        t0 = table[0]
        notes.append(
            f"{t0['dimension']} {t0['category']!r} holds {t0['share_of_errors']:.0%} of the errors at "
            f"{t0['lift']:.1f}x the overall error rate: look there first"
        )
    return SliceReport(n if n_predictions is None else n_predictions, n, list(not_joined), errors, dimensions,
                       table, notes)


def _natural_key(category: str) -> tuple:
    m = re.match(r"^\[(-?[\d.]+)", category)
    return (0, float(m.group(1))) if m else (1, category)
