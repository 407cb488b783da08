"""Plan: recipe -> splits -> shards -> sample index ranges. Pure: no Ray, no I/O.

Example::

    plan = make_plan(recipe)
    for shard in plan.shards:
        print(shard.name, shard.start, shard.stop)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence, overload

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


class ShardSpecs(Sequence[ShardSpec]):
    """Every shard of a plan in plan order, made on demand from each split's sizes: a plan
    of 10^5 shards holds a few numbers per split, not 10^5 objects. A sequence like a
    tuple (indexing, slicing, ``len``, iteration; equal to a tuple of the same specs).

    Example: ``ShardSpecs([("train", 10, 4, False)])[2] == ShardSpec("train", 2, 3, 8, 10)``
    """

    __slots__ = ("_splits", "_starts", "_len")

    def __init__(self, splits: Sequence[tuple[str, int, int, bool]]):
        # (split, samples, samples per shard, holdout); the shard count is their ceiling ratio
        self._splits = tuple((split, samples, per, -(-samples // per), holdout)
                             for split, samples, per, holdout in splits)
        starts, n = [], 0
        for *_, count, _ in self._splits:
            starts.append(n)
            n += count
        self._starts = tuple(starts)
        self._len = n

    def __len__(self) -> int:
        return self._len

    def _at(self, i: int) -> ShardSpec:
        for (split, samples, per, count, holdout), first in zip(self._splits, self._starts):
            if i < first + count:
                index = i - first
                return ShardSpec(split, index, count, index * per, min(index * per + per, samples), holdout)
        raise IndexError(i)

    @overload
    def __getitem__(self, i: int) -> ShardSpec: ...

    @overload
    def __getitem__(self, i: slice) -> tuple[ShardSpec, ...]: ...

    def __getitem__(self, i: int | slice) -> ShardSpec | tuple[ShardSpec, ...]:
        if isinstance(i, slice):
            return tuple(self._at(j) for j in range(*i.indices(self._len)))
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError("shard index out of range")
        return self._at(i)

    def __iter__(self) -> Iterator[ShardSpec]:
        for split, samples, per, count, holdout in self._splits:
            for index in range(count):
                start = index * per
                yield ShardSpec(split, index, count, start, min(start + per, samples), holdout)

    def position(self, split: str, index: int) -> int | None:
        """Where shard ``index`` of ``split`` is in plan order (None when the plan has no such shard)."""
        for (name, _, _, count, _), first in zip(self._splits, self._starts):
            if name == split:
                return first + index if 0 <= index < count else None
        return None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ShardSpecs):
            return self._splits == other._splits
        if isinstance(other, (tuple, list)):
            return len(other) == self._len and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._splits)

    def __repr__(self) -> str:
        return f"ShardSpecs({len(self)} shards)"

    def __reduce__(self) -> tuple:
        return (ShardSpecs, ([(s, n, per, h) for s, n, per, _, h in self._splits],))


@dataclass(frozen=True)
class Plan:
    recipe_name: str
    seed: int
    samples_per_shard: int
    splits: dict[str, int]
    shards: Sequence[ShardSpec]  # a ShardSpecs from make_plan

    @property
    def total_samples(self) -> int:
        return sum(self.splits.values())

    def shards_of(self, split: str) -> list[ShardSpec]:
        return [s for s in self.shards if s.split == split]

    def position(self, split: str, index: int) -> int | None:
        """Where shard ``index`` of ``split`` is in ``shards`` (None when the plan has no such shard).

        Example: ``plan.shards[plan.position("train", 3)].index == 3``
        """
        if isinstance(self.shards, ShardSpecs):
            return self.shards.position(split, index)
        for i, spec in enumerate(self.shards):
            if spec.split == split and spec.index == index:
                return i
        return None


def make_plan(recipe: Recipe) -> Plan:
    """Cut every split into shards of ``output.samples_per_shard`` samples.

    Example: ``make_plan(load_recipe("recipes/demo_in_car.yaml")).total_samples``
    """
    per = recipe.output.samples_per_shard
    return Plan(
        recipe_name=recipe.name,
        seed=recipe.seed,
        samples_per_shard=per,
        splits={name: cfg.samples for name, cfg in recipe.splits.items()},
        shards=ShardSpecs([(split, cfg.samples, per, cfg.holdout) for split, cfg in recipe.splits.items()]),
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
