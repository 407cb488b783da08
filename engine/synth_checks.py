"""The contract every synthesizer keeps, as checks any test suite can run on one.

In the spirit of scikit-learn's ``parametrize_with_checks``: shardsmith's own tests run
every check on every registered synthesizer, and a synthesizer written elsewhere runs
them in its own tests on a small recipe of its own::

    from engine.synth_checks import CHECKS, check_context

    @pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
    def test_tone_mix_keeps_the_contract(check, tmp_path):
        check(check_context(load_recipe("tone.yaml"), tmp_path))

Each check raises ``AssertionError`` with a message that names the synthesizer and
what broke. A check draws a few samples (``CheckContext.samples``), so the whole set
runs in seconds on small pools.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from .plan import make_plan
from .pools import PoolIndex, index_pools
from .recipe import Recipe
from .replayer import replay_sample
from .rng import sample_rng
from .shards import read_shard
from .synth.base import SOURCE_TYPE, Sample, Synthesizer
from .synth.registry import build_synthesizer, synthesizer_class
from .worker import make_shard


@dataclass
class CheckContext:
    """A recipe over small pools, indexed once, and a scratch folder for written shards."""

    recipe: Recipe
    index: PoolIndex
    scratch: Path
    samples: int = 8
    _drawn: list[tuple[str, int, dict[str, Any], Sample]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.recipe.synth.type

    def synth(self) -> Synthesizer:
        return build_synthesizer(self.recipe, self.index)

    def drawn(self) -> list[tuple[str, int, dict[str, Any], Sample]]:
        """``(split, index, params, sample)`` of the first samples of every split (cached)."""
        if not self._drawn:
            synth = self.synth()
            try:
                per_split = max(1, self.samples // len(self.recipe.splits))
                for split, cfg in self.recipe.splits.items():
                    for i in range(min(per_split, cfg.samples)):
                        params = synth.sample_params(sample_rng(self.recipe.seed, split, i),
                                                     holdout_split=cfg.holdout)
                        self._drawn.append((split, i, params, synth.apply(params)))
            finally:
                synth.close()
        return self._drawn


def check_context(recipe: Recipe, scratch: str | Path, samples: int = 8) -> CheckContext:
    """Index the recipe's pools once for all checks. Example: ``check_context(recipe, tmp_path)``"""
    return CheckContext(recipe, index_pools(recipe), Path(scratch), samples)


def _media_bytes(cls: type[Synthesizer], sample: Sample) -> bytes:
    media = sample.columns.get(cls.media_column)
    assert isinstance(media, dict) and isinstance(media.get("bytes"), bytes), (
        f"{cls.type}: apply() must put the encoded media under columns[{cls.media_column!r}]['bytes'] "
        f"(its media_column)"
    )
    return media["bytes"]


def check_same_seed_same_bytes(ctx: CheckContext) -> None:
    """A fresh synthesizer with the same seed draws the same params and makes the same bytes."""
    cls = synthesizer_class(ctx.name)
    synth = ctx.synth()
    try:
        for split, i, params, sample in ctx.drawn():
            again = synth.sample_params(sample_rng(ctx.recipe.seed, split, i),
                                        holdout_split=ctx.recipe.splits[split].holdout)
            assert again == params, f"{ctx.name}: sample {split}/{i} drew other params with the same seed"
            assert _media_bytes(cls, synth.apply(again)) == _media_bytes(cls, sample), (
                f"{ctx.name}: sample {split}/{i} made other bytes from the same params"
            )
    finally:
        synth.close()


def check_params_survive_json(ctx: CheckContext) -> None:
    """Params are plain JSON: a round trip changes nothing, and the round-tripped params
    make the same bytes (rows store params as JSON)."""
    cls = synthesizer_class(ctx.name)
    synth = ctx.synth()
    try:
        for split, i, params, sample in ctx.drawn():
            text = json.dumps(params, sort_keys=True, allow_nan=False)
            back = json.loads(text)
            assert back == params, f"{ctx.name}: sample {split}/{i}: params change in a JSON round trip"
            assert _media_bytes(cls, synth.apply(back)) == _media_bytes(cls, sample), (
                f"{ctx.name}: sample {split}/{i}: params read back from JSON make other bytes"
            )
    finally:
        synth.close()


def check_replay_reproduces_the_row(ctx: CheckContext) -> None:
    """A written shard's rows are replayed from their stored params alone, byte for byte
    (as :func:`engine.replay` replays a row)."""
    cls = synthesizer_class(ctx.name)
    spec = make_plan(ctx.recipe).shards[0]
    out = ctx.scratch / f"replay-{ctx.name}"
    make_shard(ctx.recipe, ctx.index, spec, out)
    table = read_shard(next(p for p in out.rglob("*") if p.suffix in (".arrow", ".parquet")))
    synth = ctx.synth()
    try:
        for row in table.slice(0, ctx.samples).to_pylist():
            sample = replay_sample(synth, row)
            assert _media_bytes(cls, sample) == row[cls.media_column]["bytes"], (
                f"{ctx.name}: row {row['sample_id']} is not reproduced from its params"
            )
            assert sample.sources == row["sources"], f"{ctx.name}: row {row['sample_id']}: other sources on replay"
    finally:
        synth.close()


def check_sources_fit_the_schema(ctx: CheckContext) -> None:
    """Every source piece has the provenance layout and names a real item of a used pool."""
    used = set(ctx.recipe.synth.pools_used())
    for split, i, _, sample in ctx.drawn():
        assert sample.sources, f"{ctx.name}: sample {split}/{i} records no source"
        pa.array(sample.sources, type=SOURCE_TYPE)  # raises if a field is missing or mistyped
        for src in sample.sources:
            assert set(src) == {f.name for f in SOURCE_TYPE}, f"{ctx.name}: source fields {sorted(src)}"
            assert src["pool"] in used, f"{ctx.name}: source pool {src['pool']!r} is not one the synth uses"
            assert src["item"] in set(ctx.index.pools[src["pool"]].items), (
                f"{ctx.name}: source item {src['item']!r} is not in pool {src['pool']!r}"
            )
            assert all(math.isfinite(src[k]) for k in ("start_s", "duration_s", "gain_db")), src


def check_embedding_has_its_declared_size(ctx: CheckContext) -> None:
    """The embedding is finite float32 of ``embedding_dim()`` values, as the schema says."""
    synth = ctx.synth()
    try:
        dim = synth.embedding_dim()
    finally:
        synth.close()
    for split, i, _, sample in ctx.drawn():
        e = np.asarray(sample.embedding)
        assert e.shape == (dim,), f"{ctx.name}: sample {split}/{i}: embedding shape {e.shape}, declared ({dim},)"
        assert e.dtype == np.float32 and np.isfinite(e).all(), f"{ctx.name}: embedding must be finite float32"


def check_forecast_pieces_match_the_realized(ctx: CheckContext) -> None:
    """``source_pieces`` predicts, from params alone, the pieces ``apply`` records: the
    same (pool, item) pieces, each within 1 % (or 10 ms) of its realized length (items
    used whole are predicted at their full length)."""
    cls = synthesizer_class(ctx.name)

    def duration(pool: str, item: str) -> float:
        p = ctx.index.pools[pool]
        return float(p.duration_s[list(p.items).index(item)])

    for split, i, params, sample in ctx.drawn():
        predicted = cls.source_pieces(params, duration, ctx.recipe.synth)
        assert Counter((p, it) for p, it, _ in predicted) == Counter((s["pool"], s["item"]) for s in sample.sources), (
            f"{ctx.name}: sample {split}/{i}: forecast pieces {predicted} differ from the sources recorded"
        )
        realized = sorted((s["pool"], s["item"], s["duration_s"]) for s in sample.sources)
        for (pool, item, secs), (_, _, real) in zip(sorted(predicted), realized):
            whole = duration(pool, item)
            if real == 0.0 and secs == whole:  # an item without a timeline (an image) used whole
                continue
            assert abs(secs - real) <= max(0.01, 0.01 * real), (
                f"{ctx.name}: sample {split}/{i}: {pool}/{item} forecast {secs:.3f} s, realized {real:.3f} s"
            )


def check_slices_yield_categories(ctx: CheckContext) -> None:
    """Every row falls in at least one category of every slice dimension it names."""
    cls = synthesizer_class(ctx.name)
    for split, i, params, sample in ctx.drawn():
        cats = cls.slice_categories(json.loads(json.dumps(params)), sample.sources)
        assert cats, f"{ctx.name}: sample {split}/{i}: no slice dimension"
        for dim, values in cats.items():
            assert isinstance(dim, str) and values and all(isinstance(v, str) and v for v in values), (
                f"{ctx.name}: slice dimension {dim!r} has categories {values!r}"
            )


CHECKS: list[Callable[[CheckContext], None]] = [
    check_same_seed_same_bytes,
    check_params_survive_json,
    check_replay_reproduces_the_row,
    check_sources_fit_the_schema,
    check_embedding_has_its_declared_size,
    check_forecast_pieces_match_the_realized,
    check_slices_yield_categories,
]
