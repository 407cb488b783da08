"""The mismatch evaluator: which gap to work on, and whether the training data covers the target.

Four questions an ML team asks after synthesis, four entry points:

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
- :func:`probe_errors` (``shardsmith mismatch probe``): without training the real model, a
  small fixed classifier (logistic regression on the rows' embedding) fitted on a run's
  train split and scored on train, train-dev, held-out sources, dev and test; the gaps
  above plus the unseen-source gap, and the probe's errors sliced by provenance.

Modules, each importing only those below it on its line or lower::

    report          probe        the HTML page of the data comparison / the probe model
    data            slices       compare_data / slice_errors and their results
    embeddings      metrics      embeddings of a data set / distances between two samples
    errors          columns      the error decomposition / reading columns of shards

The shared formulas (Wilson and Newcombe intervals, pairwise distances) live in
:mod:`engine.statistics`; the featurizer of raw files in :mod:`engine.features.files`.

Example::

    result = decompose_errors({"train": 0.01, "train_dev": 0.09, "dev": 0.10})
    result.dominant                     # 'variance'
    data = compare_data(["out/synth"], "dev_audio/")
    print(data.describe())
    probe = probe_errors("out/synth", "speaker", dev="dev_audio/")
    probe.dominant                      # e.g. 'data_mismatch'
"""

from __future__ import annotations

from ..features import embedding_names
from ..features.files import featurize_file
from ..statistics import wilson_interval
from .data import (
    CLOSENESS,
    METRIC_KEYS,
    MMD_MAX_N,
    DataComparison,
    PairComparison,
    compare_data,
    compare_embeddings,
)
from .embeddings import DEFAULT_MAX_N, MIN_N, EmbeddingSet, load_embeddings
from .errors import (
    ADVICE,
    GAP_LABELS,
    GAPS,
    LEVEL_LABELS,
    LEVELS,
    PROBLEM_SHARE,
    TABLE_ROW_LABELS,
    TABLE_ROWS,
    ErrorDecomposition,
    Gap,
    GeneralTable,
    Rate,
    TableDecomposition,
    decompose_errors,
    decompose_table,
    difference_interval,
    parse_rate,
    read_general_table,
)
from .metrics import domain_classifier_auc, expected_coverage, feature_drift, frechet_distance, mmd2_permutation_test, prdc
from .probe import (
    ERROR_LEVELS,
    PROBE_ADVICE,
    PROBE_GAPS,
    ProbeReport,
    ScoredSet,
    label_columns,
    probe_errors,
    probe_record,
    record_probe,
)
from .report import data_report_html
from .slices import SliceReport, held_out_items, row_categories, slice_errors, slice_rows

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
    "row_categories",
    "slice_rows",
    "held_out_items",
    "ProbeReport",
    "ScoredSet",
    "probe_errors",
    "probe_record",
    "record_probe",
    "label_columns",
    "ERROR_LEVELS",
    "PROBE_ADVICE",
    "PROBE_GAPS",
    "ADVICE",
    "CLOSENESS",
    "DEFAULT_MAX_N",
    "GAP_LABELS",
    "LEVEL_LABELS",
    "METRIC_KEYS",
    "MIN_N",
    "MMD_MAX_N",
    "PROBLEM_SHARE",
    "TABLE_ROWS",
    "TABLE_ROW_LABELS",
]
