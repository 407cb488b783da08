"""Per-shard statistics, written beside each shard by the worker that made it.

The coverage analyzer (``engine/coverage/``) merges these; it never re-reads audio or
images. Everything here is **mergeable in any order with identical results** and
**byte-deterministic per shard**:

- per pool and item: uses, microseconds used (integers, so sums are exact) and the
  one-second buckets of the item's timeline that were used, as sorted half-open ranges
  ``[a0, b0, a1, b1, ...]`` (a source piece covers ``start_s .. start_s + duration_s``,
  wrapping modulo the item's duration when the item was looped); uses of held-out items;
- per sampled parameter (every numeric leaf of the row's params, see
  :func:`flatten_params`): a histogram of :data:`PARAM_BINS` bins over the parameter's
  requested range (``X_range`` in the recipe's synth config for a value named ``X``,
  else the synthesizer's ``param_range`` hook, e.g. an albumentations transform's
  ``rotate: [-5, 5]``), or, without a known range, min/max and a bottom-k sample;
- the embedding's count, sum and sum of outer products as exact integers (each value
  quantized to 2**-16 and clipped to +-4096, summed in int64 chunks then Python ints:
  no float reduction order, no BLAS), and a bottom-k sample of embeddings keyed by a
  hash of ``sample_id`` (merging any shards in any order keeps the same k samples),
  each stored as base64 of its float32 bytes with the pools of its secondary sources
  (the noise pools; used to colour plots).

Example::

    stats = ShardStats.for_shard(recipe, index, spec)   # or ShardStats() without context
    stats.add(sample_id, params, sources, embedding, seconds)
    blob = stats.to_json()
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

STATS_FORMAT = 2
BUCKET_S = 1.0  # resolution of "unique seconds used"
PARAM_BINS = 100  # stored bins over a requested range (the report coarsens them to 20)
SAMPLE_K = 1024  # bottom-k sample size (embeddings, values of parameters without a range)
# A shard keeps only samples whose key is below KEEP_FACTOR * k / N (N = samples in the
# whole recipe): the merged bottom-k needs ~k/N of them, so per-shard files stay small.
# Keys are uniform, so the chance that fewer than k of N keys fall below 4k/N is nil
# (for k = 1024: expected 4096, sd 64); if it ever happened the merged sample would just
# be smaller, still the same in any merge order.
KEEP_FACTOR = 4
EMBED_SCALE_BITS = 16
EMBED_CLIP = 4096.0
_EMBED_CHUNK = 64  # rows per int64 block: |q| < 2**28, q*q < 2**56, 64 of them < 2**62
MAX_PARAMS = 256  # parameters histogrammed per shard (sorted names beyond this are dropped)
_MAX_LIST = 8  # numeric lists up to this length are flattened element-wise


def sample_key(sample_id: str) -> int:
    """A 64-bit key fixed by a sample id; the bottom-k samples are the smallest keys.

    Example: ``sample_key("demo-train-000000001") < 2**64``
    """
    return int.from_bytes(hashlib.blake2b(sample_id.encode("utf-8"), digest_size=8).digest(), "big")


# --------------------------------------------------------------------------- parameters


def flatten_params(params: Any, skip: frozenset[str] = frozenset()) -> list[tuple[str, float]]:
    """Every numeric leaf of a params object as ``(name, value)``, in a stable order.

    Names are paths: ``noise[0].snr_db``. A list item that carries ``"layer": i`` is
    named by that layer (so a skipped layer does not shift the others); keys in ``skip``
    (a synthesizer's ``unsampled_params``: indices, offsets, seeds) are left out;
    booleans and strings are not parameters; numeric lists of up to 8 values give one
    parameter per element, longer lists and nested lists (matrices) none.

    Example: ``flatten_params({"noise": [{"layer": 1, "snr_db": 5.0}]}, frozenset({"layer"})) == [("noise[1].snr_db", 5.0)]``
    """
    out: list[tuple[str, float]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key in sorted(node, key=str):
                if key in skip:
                    continue
                walk(node[key], f"{path}.{key}" if path else str(key))
        elif isinstance(node, (list, tuple)):
            if any(isinstance(v, (list, tuple)) for v in node):
                return  # a matrix (a blur kernel, a point list): data, not a sampled value
            if node and all(_is_number(v) for v in node):
                if len(node) <= _MAX_LIST:
                    for i, v in enumerate(node):
                        walk(v, f"{path}[{i}]")
                return
            for i, item in enumerate(node):
                idx = item.get("layer", i) if isinstance(item, dict) else i
                if not isinstance(idx, int) or isinstance(idx, bool):
                    idx = i
                walk(item, f"{path}[{idx}]")
        elif _is_number(node):
            v = float(node)
            if math.isfinite(v):
                out.append((path, v))

    walk(params, "")
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


_SEG = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _split_name(name: str) -> list[str | int]:
    return [m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _SEG.finditer(name)]


def _as_range(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(v) for v in value):
        lo, hi = float(value[0]), float(value[1])
        if math.isfinite(lo) and math.isfinite(hi) and lo <= hi:
            return (lo, hi)
    return None


def _find_unique(node: Any, key: str) -> tuple[float, float] | None:
    found: list[Any] = []

    def walk(n: Any) -> None:
        if isinstance(n, dict):
            for k, v in n.items():
                if k == key:
                    found.append(v)
                walk(v)
        elif isinstance(n, (list, tuple)):
            for v in n:
                walk(v)

    walk(node)
    return _as_range(found[0]) if len(found) == 1 else None


def param_range(synth_config: dict[str, Any], name: str) -> tuple[float, float] | None:
    """The requested range of a sampled parameter, by the ``X`` <-> ``X_range`` convention.

    ``noise[0].snr_db`` looks for ``noise[0].snr_db_range`` in the synth config; if the
    layer's config has no such key at that level, a single ``snr_db_range`` anywhere
    inside ``noise[0]`` (e.g. ``noise[0].perturb.speed_range`` for ``noise[0].speed``)
    is used. ``None`` when no range is known.

    Example: ``param_range({"noise": [{"snr_db_range": [0, 20]}]}, "noise[0].snr_db") == (0.0, 20.0)``
    """
    parts = _split_name(name)
    if not parts or not isinstance(parts[-1], str):
        return None
    leaf = f"{parts[-1]}_range"
    node: Any = synth_config
    reached_parent = True
    for part in parts[:-1]:
        if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
            nxt = node[part]
        elif isinstance(part, str) and isinstance(node, dict) and isinstance(node.get(part), (dict, list)):
            nxt = node[part]
        else:
            reached_parent = False
            break
        node = nxt
    if isinstance(node, dict) and leaf in node:
        return _as_range(node[leaf])
    if reached_parent and node is not synth_config:
        return _find_unique(node, leaf)
    return None


# --------------------------------------------------------------------------- context


@dataclass
class StatsContext:
    """What a worker knows beyond the row: its split, item durations and holdout flags,
    the requested parameter ranges and the bottom-k keep threshold."""

    split: str = ""
    holdout_split: bool = False
    # pool -> (item -> (duration_s, held_out)); built lazily from a PoolIndex
    item_info: Callable[[str, str], tuple[float, bool] | None] = lambda pool, item: None
    synth_config: dict[str, Any] = field(default_factory=dict)
    keep_below: int = 2**64
    unsampled_params: frozenset[str] = frozenset()  # the synthesizer's params that are not drawn values
    # The synthesizer's own ranges of params the X <-> X_range convention cannot find
    # (its ``param_range`` hook: e.g. an albumentations transform's ``rotate: [-5, 5]``).
    range_hook: Callable[[dict[str, Any], str], tuple[float, float] | None] | None = None

    @classmethod
    def for_shard(cls, recipe: Any, index: Any, spec: Any,
                  unsampled_params: frozenset[str] = frozenset(),
                  param_range: Callable[[dict[str, Any], str], tuple[float, float] | None] | None = None,
                  ) -> "StatsContext":
        """Context for one planned shard of a recipe over an indexed set of pools."""
        tables: dict[str, dict[str, int]] = {}

        def info(pool: str, item: str) -> tuple[float, bool] | None:
            p = index.pools.get(pool)
            if p is None:
                return None
            table = tables.get(pool)
            if table is None:
                table = tables[pool] = {it: i for i, it in enumerate(p.items)}
            i = table.get(item)
            if i is None:
                return None
            return float(p.duration_s[i]), bool(p.holdout[i])

        total = sum(s.samples for s in recipe.splits.values())
        return cls(
            split=spec.split,
            holdout_split=bool(spec.holdout),
            item_info=info,
            synth_config=recipe.synth.model_dump(mode="json"),
            keep_below=keep_threshold(total),
            unsampled_params=unsampled_params,
            range_hook=param_range,
        )


def keep_threshold(total_samples: int, k: int = SAMPLE_K) -> int:
    """Keys below this are kept per shard for a bottom-k of ``k`` over ``total_samples``."""
    if total_samples <= 0:
        return 2**64
    return min(2**64, (KEEP_FACTOR * k * 2**64) // total_samples)


def bucket_ranges(start_s: float, duration_s: float, item_s: float) -> list[tuple[int, int]]:
    """The one-second buckets ``[a, b)`` of an item's timeline that a piece covers.

    The piece covers ``start_s .. start_s + duration_s`` and wraps modulo ``item_s``
    (a looped item); the last bucket of an item may be shorter than a second.

    Example: ``bucket_ranges(2.5, 1.0, 3.0) == [(0, 1), (2, 3)]``
    """
    n = max(1, math.ceil(item_s / BUCKET_S - 1e-9))
    if item_s <= 0 or duration_s <= 0:
        return []
    if duration_s >= item_s:
        return [(0, n)]
    start = math.fmod(max(start_s, 0.0), item_s)
    end = start + duration_s
    a = min(int(math.floor(start / BUCKET_S)), n - 1)
    if end <= item_s + 1e-9:
        b = min(n, max(a + 1, math.ceil(end / BUCKET_S - 1e-9)))
        return [(a, b)]
    wrap = end - item_s
    b2 = min(n, max(1, math.ceil(wrap / BUCKET_S - 1e-9)))
    if b2 >= a:
        return [(0, n)]
    return [(0, b2), (a, n)]


def merge_ranges(flat: Iterable[int]) -> list[int]:
    """Union of flattened half-open ranges ``[a0, b0, a1, b1, ...]``, sorted and merged."""
    it = list(flat)
    pairs = sorted(zip(it[0::2], it[1::2]))
    out: list[int] = []
    for a, b in pairs:
        if out and a <= out[-1]:
            if b > out[-1]:
                out[-1] = b
        else:
            out += [a, b]
    return out


def _colour_label(sources: list[dict[str, Any]]) -> str:
    """The pools a sample's secondary sources came from (its noise pools), for plots."""
    if len(sources) <= 1:
        return sources[0]["pool"] if sources else "none"
    pools = sorted({str(s["pool"]) for s in sources[1:]})
    return "+".join(pools)


def encode_vector(x: np.ndarray) -> str:
    """A float32 vector as base64 of its little-endian bytes (compact, exact)."""
    return base64.b64encode(np.asarray(x, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(text: str) -> np.ndarray:
    """Inverse of :func:`encode_vector`."""
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


def quantize_embedding(x: np.ndarray) -> np.ndarray:
    """Embedding values as int64 multiples of 2**-16, clipped to +-4096 (exact sums)."""
    a = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0, posinf=EMBED_CLIP, neginf=-EMBED_CLIP)
    a = np.clip(a, -EMBED_CLIP, EMBED_CLIP)
    return np.rint(a * float(2**EMBED_SCALE_BITS)).astype(np.int64)


def outer_sums(q: np.ndarray) -> tuple[list[int], list[int]]:
    """Exact column sums and upper-triangular sums of outer products of int64 rows."""
    n, d = q.shape
    iu = np.triu_indices(d)
    s1 = np.zeros(d, dtype=object)
    s2 = np.zeros(len(iu[0]), dtype=object)
    for first in range(0, n, _EMBED_CHUNK):
        block = q[first : first + _EMBED_CHUNK]
        s1 += block.sum(axis=0).astype(object)
        prod = (block[:, :, None] * block[:, None, :]).sum(axis=0)
        s2 += prod[iu].astype(object)
    return [int(v) for v in s1], [int(v) for v in s2]


# --------------------------------------------------------------------------- stats


class ShardStats:
    """Mergeable usage, parameter and embedding statistics of one shard."""

    def __init__(self, context: StatsContext | None = None) -> None:
        self.ctx = context or StatsContext()
        self.rows = 0
        self.seconds = 0.0
        # pool -> item -> [uses, microseconds, flat bucket ranges]
        self.usage: dict[str, dict[str, list[Any]]] = defaultdict(dict)
        self.heldout_uses: dict[str, int] = defaultdict(int)
        self._ranges: dict[str, tuple[float, float] | None] = {}
        self.params: dict[str, dict[str, Any]] = {}
        self.embed_dim: int | None = None
        self.embed_count = 0
        self._embed_buf: list[np.ndarray] = []
        self._s1: list[int] | None = None
        self._s2: list[int] | None = None
        self.embed_sample: list[list[Any]] = []  # [key, sample_id, label, values]

    @classmethod
    def for_shard(cls, recipe: Any, index: Any, spec: Any,
                  unsampled_params: frozenset[str] = frozenset(),
                  param_range: Callable[[dict[str, Any], str], tuple[float, float] | None] | None = None,
                  ) -> "ShardStats":
        """Stats for one planned shard, knowing item durations, holdout and ranges
        (``unsampled_params`` and ``param_range``: the synthesizer's hooks of those names).

        Example: ``ShardStats.for_shard(recipe, index, plan.shards[0], synth.unsampled_params, synth.param_range)``
        """
        return cls(StatsContext.for_shard(recipe, index, spec, unsampled_params, param_range))

    def add(
        self,
        sample_id: str,
        params: dict[str, Any],
        sources: list[dict[str, Any]],
        embedding: np.ndarray,
        seconds: float,
    ) -> None:
        self.rows += 1
        self.seconds += seconds
        key = sample_key(sample_id)
        for src in sources:
            self._add_source(src)
        for name, value in flatten_params(params, self.ctx.unsampled_params):
            self._add_param(name, value, key)
        if embedding is not None:
            self._add_embedding(sample_id, key, embedding, sources)

    # ------------------------------------------------------------------ pieces

    def _add_source(self, src: dict[str, Any]) -> None:
        pool, item = str(src["pool"]), str(src["item"])
        entry = self.usage[pool].get(item)
        if entry is None:
            entry = self.usage[pool][item] = [0, 0, []]
        dur = float(src.get("duration_s") or 0.0)
        entry[0] += 1
        entry[1] += int(round(dur * 1e6))
        info = self.ctx.item_info(pool, item)
        if info is None:
            return
        item_s, held_out = info
        if held_out:
            self.heldout_uses[pool] += 1
        for a, b in bucket_ranges(float(src.get("start_s") or 0.0), dur, item_s):
            entry[2] += [a, b]
        if len(entry[2]) > 64:  # keep the per-item list short while a shard is built
            entry[2] = merge_ranges(entry[2])

    def _range(self, name: str) -> tuple[float, float] | None:
        if name not in self._ranges:
            rng = param_range(self.ctx.synth_config, name)
            if rng is None and self.ctx.range_hook is not None:
                rng = _as_range(self.ctx.range_hook(self.ctx.synth_config, name))
            self._ranges[name] = rng
        return self._ranges[name]

    def _add_param(self, name: str, value: float, key: int) -> None:
        h = self.params.get(name)
        if h is None:
            rng = self._range(name)
            h = self.params[name] = {"range": rng, "count": 0, "min": value, "max": value}
            if rng is not None:
                h.update(bins=[0] * PARAM_BINS, below=0, above=0)
            else:
                h["sample"] = []
        h["count"] += 1
        h["min"] = min(h["min"], value)
        h["max"] = max(h["max"], value)
        rng = h["range"]
        if rng is not None:
            lo, hi = rng
            if value < lo:
                h["below"] += 1
            elif value > hi:
                h["above"] += 1
            else:
                h["bins"][param_bin(value, lo, hi, PARAM_BINS)] += 1
        elif key < self.ctx.keep_below:
            h["sample"].append([key, value])

    def _add_embedding(self, sample_id: str, key: int, embedding: np.ndarray, sources: list) -> None:
        e = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if self.embed_dim is None:
            self.embed_dim = int(e.size)
        elif e.size != self.embed_dim:
            raise ValueError(f"{sample_id}: embedding has {e.size} values, earlier rows have {self.embed_dim}")
        self.embed_count += 1
        self._embed_buf.append(e)
        if len(self._embed_buf) >= _EMBED_CHUNK:
            self._flush_embeddings()
        if key < self.ctx.keep_below:
            self.embed_sample.append([key, sample_id, _colour_label(sources), encode_vector(e)])

    def _flush_embeddings(self) -> None:
        if not self._embed_buf:
            return
        s1, s2 = outer_sums(quantize_embedding(np.stack(self._embed_buf)))
        self._embed_buf = []
        if self._s1 is None:
            self._s1, self._s2 = s1, s2
        else:
            self._s1 = [a + b for a, b in zip(self._s1, s1)]
            self._s2 = [a + b for a, b in zip(self._s2, s2)]  # type: ignore[arg-type]

    # ------------------------------------------------------------------ output

    def to_json(self) -> dict[str, Any]:
        self._flush_embeddings()
        pools: dict[str, Any] = {}
        for pool in sorted(self.usage):
            items = sorted(self.usage[pool])
            entries = [self.usage[pool][it] for it in items]
            pools[pool] = {
                "items": items,
                "uses": [int(e[0]) for e in entries],
                "us": [int(e[1]) for e in entries],
                "buckets": [merge_ranges(e[2]) for e in entries],
                "heldout_uses": int(self.heldout_uses.get(pool, 0)),
            }
        params: dict[str, Any] = {}
        for name in sorted(self.params)[:MAX_PARAMS]:
            h = dict(self.params[name])
            h["range"] = list(h["range"]) if h["range"] is not None else None
            if "sample" in h:
                h["sample"] = sorted(h["sample"])[:SAMPLE_K]
            params[name] = h
        embedding: dict[str, Any] | None = None
        if self.embed_dim is not None:
            embedding = {
                "dim": self.embed_dim,
                "count": self.embed_count,
                "scale_bits": EMBED_SCALE_BITS,
                "sum": self._s1 or [0] * self.embed_dim,
                "sum_outer_upper": self._s2 or [0] * (self.embed_dim * (self.embed_dim + 1) // 2),
                "sample": sorted(self.embed_sample)[:SAMPLE_K],
            }
        return {
            "format": STATS_FORMAT,
            "split": self.ctx.split,
            "holdout_split": self.ctx.holdout_split,
            "rows": self.rows,
            "seconds": self.seconds,
            "pools": pools,
            "params": params,
            "embedding": embedding,
        }


def param_bin(value: float, lo: float, hi: float, bins: int) -> int:
    """The bin of ``value`` among ``bins`` equal bins over ``[lo, hi]`` (hi in the last)."""
    if hi <= lo:
        return 0
    return min(bins - 1, max(0, int((value - lo) / (hi - lo) * bins)))
