"""Plan: recipe -> splits -> shards -> sample index ranges. Pure: no Ray, no I/O.

Example::

    plan = make_plan(recipe)
    for shard in plan.shards:
        print(shard.name, shard.start, shard.stop)
"""

from __future__ import annotations

from dataclasses import dataclass

from .layout import shard_name
from .recipe import Recipe
from .report import count, plural


@dataclass(frozen=True)
class ShardSpec:
    """One unit of work: samples ``[start, stop)`` of one split, written as one file."""

    split: str
    index: int
    count: int
    start: int
    stop: int
    holdout: bool = False

    @property
    def name(self) -> str:
        return shard_name(self.split, self.index, self.count)

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Plan:
    recipe_name: str
    seed: int
    samples_per_shard: int
    splits: dict[str, int]
    shards: tuple[ShardSpec, ...]

    @property
    def total_samples(self) -> int:
        return sum(self.splits.values())

    def shards_of(self, split: str) -> list[ShardSpec]:
        return [s for s in self.shards if s.split == split]


def make_plan(recipe: Recipe) -> Plan:
    """Cut every split into shards of ``output.samples_per_shard`` samples.

    Example: ``make_plan(load_recipe("recipes/demo_in_car.yaml")).total_samples``
    """
    per = recipe.output.samples_per_shard
    shards: list[ShardSpec] = []
    for split, cfg in recipe.splits.items():
        count = -(-cfg.samples // per)
        for i in range(count):
            start = i * per
            shards.append(
                ShardSpec(split, i, count, start, min(start + per, cfg.samples), cfg.holdout)
            )
    return Plan(
        recipe_name=recipe.name,
        seed=recipe.seed,
        samples_per_shard=per,
        splits={name: cfg.samples for name, cfg in recipe.splits.items()},
        shards=tuple(shards),
    )


def describe_plan(plan: Plan) -> str:
    """Human-readable plan, one line per split.

    Example: ``print(describe_plan(plan))``
    """
    lines = [
        f"plan for {plan.recipe_name!r} (seed {plan.seed}): {count(plan.total_samples, 'sample')} in "
        f"{count(len(plan.shards), 'shard')} of up to {plan.samples_per_shard}"
    ]
    for split, n in plan.splits.items():
        shards = plan.shards_of(split)
        tag = " (held-out sources)" if shards and shards[0].holdout else ""
        names = shards[0].name if len(shards) == 1 else f"{shards[0].name} .. {shards[-1].name}"
        lines.append(
            f"  {split:<20} {n:>10} {plural(n, 'sample'):<7}  {len(shards):>6} {plural(len(shards), 'shard'):<6}  "
            f"{names}{tag}"
        )
    return "\n".join(lines)
