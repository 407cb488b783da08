"""Coverage analyzer: how narrow is the synthesized data, and is it too narrow to train on?

Merges the per-shard stats (``engine/stats.py``) of a run; never re-reads audio or
images. Per pool: items available and used, effective number of sources, the largest
share of one item, seconds available / used / unique used, the **reuse factor** and the
fraction of the pool ever used. Per sampled parameter: a histogram against its requested
range. In embedding space: Vendi score, participation ratio, near-duplicate rate. Held-out
items: confirmed never used outside holdout splits. A pool whose items are the rows of a
shardsmith output (chaining) gets an ``upstream`` section: the upstream's own sources'
reuse through the chain, one level deep. **Guards** (``guards:`` in the recipe)
turn the figures into pass/fail; :func:`forecast_coverage` predicts them from the recipe
and the pool index before anything is synthesized.

Definitions (stable; the JSON keys are in brackets):

- usage share of an item: its seconds used / the pool's seconds used (uses instead of
  seconds for pools without durations, e.g. images);
- effective sources [``effective_sources``] = exp(Shannon entropy of the shares), and
  [``effective_sources_simpson``] = 1 / sum(share**2); largest share [``max_share``];
- unique seconds used [``unique_seconds_used``]: the one-second buckets of the items'
  timelines that any source piece touched (a partial last bucket counts its length);
- reuse factor [``reuse_factor``] = seconds used / unique seconds used (pools without
  durations: uses / items used); fraction used [``fraction_used``] = unique seconds used /
  seconds available (items used / items available without durations);
- image pools also: pixels available [``pixels_available``] (width x height summed),
  pixels used [``pixels_used``] (each use counts its item's pixels) and unique pixels used
  [``unique_pixels_used``] (each used item once), from the sizes in the pool index;
- Vendi score: exp(entropy of the eigenvalues of K/n), K_ij = exp(-r_ij**2 / (2 h**2)),
  r_ij the RMS distance over standardized embedding dims (merged mean and std), h =
  :data:`VENDI_BANDWIDTH` = 1.0, over the bottom-k sample (k = 1024); participation ratio
  = (sum l)**2 / sum l**2 over the eigenvalues of the embedding's correlation matrix;
  near-duplicate pairs: sample pairs with r_ij < :data:`NEAR_DUPLICATE_RMS` = 0.1.

Memory: per pool 16 bytes per item plus 1 byte per second of audio available (a bitmap
of the one-second buckets); exact up to :data:`ITEM_CAP` items per pool. A larger pool is
tracked on a fixed hash sample of ``ITEM_CAP`` items (the same in any merge order), its
item figures are scaled estimates (``"exact": false``) and totals stay exact.

Modules, each importing only those below it::

    analyze    a run's folder -> report, coverage.json; the probe's verdict (probe.json)
    report     text, HTML and JSON of a report
    upstream   reuse of an upstream output's own sources through a chain (one level)
    forecast   the plan-time forecast (and refusing a narrow run)
    merge      CoverageStats: shard stats merged, the report's data
    guards     guard limits, checks, the refusal message
    figures    pool / parameter / embedding figures, rounding
    tallies    mergeable per-pool and per-parameter accumulators
    catalog    what each pool holds (the pool index)

Example::

    report = analyze_coverage("out/demo_in_car")
    print(report["passed"], report["pools"]["cabin"]["reuse_factor"])
"""

from __future__ import annotations

from ..stats import STATS_FORMAT, sample_key
from .analyze import (analyze_coverage, finish_coverage, load_coverage_stats, new_coverage, read_probe,
                      start_coverage)
from .catalog import ITEM_CAP, PoolCatalog, build_catalog, catalog_from_index, catalog_from_parquet
from .figures import NEAR_DUPLICATE_RMS, REPORT_BINS, VENDI_BANDWIDTH, round_floats
from .forecast import FORECAST_DRAWS, check_forecast, forecast_coverage
from .guards import GUARDS, evaluate_guards, guard_limits, guard_refusal
from .merge import REPORT_FORMAT, CoverageStats
from .upstream import UPSTREAM_DEPTH, upstream_figures
from .report import (
    coverage_html,
    describe_coverage,
    describe_forecast,
    describe_guards,
    describe_pools,
    describe_probe,
    describe_upstream,
    report_json,
    write_coverage_html,
)

__all__ = [
    "CoverageStats", "PoolCatalog", "analyze_coverage", "load_coverage_stats",
    "forecast_coverage", "check_forecast", "guard_refusal", "evaluate_guards",
    "describe_coverage", "describe_forecast", "coverage_html", "write_coverage_html",
    "catalog_from_index", "catalog_from_parquet", "STATS_FORMAT", "sample_key",
    "REPORT_FORMAT", "ITEM_CAP", "REPORT_BINS", "VENDI_BANDWIDTH", "NEAR_DUPLICATE_RMS",
    "FORECAST_DRAWS", "GUARDS", "build_catalog", "describe_guards", "describe_pools",
    "guard_limits", "report_json", "round_floats", "describe_upstream", "upstream_figures", "UPSTREAM_DEPTH",
    "read_probe", "describe_probe", "new_coverage", "start_coverage", "finish_coverage",
]
