"""The body of one shard task: sample, apply, featurize, write. No Ray here.

``runtime.py`` runs :func:`make_shard` as a Ray task; tests call it directly.

Example::

    result = make_shard(recipe, index, plan.shards[0], "out/demo")
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import time
from pathlib import Path
from typing import Any

from . import fingerprint, sources
from .version import __version__
from .errors import BadSourceError, PoolIndexFault, RejectSample, SynthesisError
from .plan import ShardSpec
from .pools import PoolIndex
from .recipe import Recipe, recipe_hash
from .rng import sample_rng
from .shards import shard_schema
from .sink import OutputSink
from .storage import Store
from .stats import ShardStats
from .synth import build_synthesizer, synthesizer_class

# A sample is drawn again when the draw is unusable (peak rejected, a silent noise
# window); this many draws in a row failing means the recipe cannot be met.
MAX_DRAWS = 25


def sample_id(recipe_name: str, split: str, index: int) -> str:
    return f"{recipe_name}-{split}-{index:09d}"


def _item_of_path(index: PoolIndex, path: str) -> tuple[str, str]:
    """``(pool, item id)`` of the item a decoder named ``path`` (its locator, or the
    short name a locator is described by); ``("", "")`` when no item has it."""
    for name, pool in index.pools.items():
        for locator, item in zip(pool.paths, pool.items):
            if path == locator or (sources.is_locator(locator) and path == sources.describe(locator)):
                return name, item
    return "", ""


_ALLOCATOR_TUNED = False


def _libc_function(name: str) -> Any:
    """glibc's function ``name`` through ctypes, or None where there is no such (not Linux)."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def tune_allocator() -> None:
    """Keep freed memory in the worker process instead of handing it back to the OS.

    Every sample allocates and frees the same few-MB buffers; by default glibc serves
    such sizes with fresh mmap()s and unmaps them on free, so each sample pays page faults
    for every buffer again (measured: a float64 copy of 10 s of audio costs 3 ms faulting
    vs 0.13 ms on reused pages). Raising the mmap and trim thresholds makes the heap reuse
    its pages. glibc (Linux) only; a no-op elsewhere. Called once per process.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return
    _ALLOCATOR_TUNED = True

    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    mallopt(m_mmap_threshold, 64 * 2**20)
    mallopt(m_trim_threshold, 256 * 2**20)
    mallopt(m_top_pad, 16 * 2**20)


def release_process_state(recipe: Recipe) -> None:
    """Drop what this process keeps across shards (the synthesizer's decodes, generated
    items) and hand the freed heap back to the OS: for a process that makes no more shards,
    as the driver after the shards it made while Ray started.

    Example: ``release_process_state(recipe)``
    """
    synthesizer_class(recipe.synth.type).release_process_state()
    gc.collect()
    malloc_trim = _libc_function("malloc_trim")
    if malloc_trim is not None:  # else not glibc: the allocator keeps what it keeps
        malloc_trim(0)


def make_shard(recipe: Recipe, index: PoolIndex, spec: ShardSpec, out: str | Path | Store) -> dict[str, Any]:
    """Write one shard and commit it with its stats record (through the output's
    :class:`~engine.sink.OutputSink`); returns the stats record.

    Example: ``make_shard(recipe, index, plan.shards[0], "out")["rows"]``
    """
    t0 = time.perf_counter()
    tune_allocator()
    sink = OutputSink(out, recipe)
    rhash = recipe_hash(recipe)
    synth = build_synthesizer(recipe, index)
    schema = shard_schema(
        synth,
        {"recipe_hash": rhash, "engine_version": __version__, "recipe_name": recipe.name,
         "split": spec.split, "shard": spec.name},
    )
    stats = ShardStats.for_shard(recipe, index, spec, unsampled_params=synth.unsampled_params,
                                 param_range=synth.param_range)
    redraws = 0
    fingerprint.expect(index.sources)  # every file read below must be the one the index validated
    try:
        with sink.open_shard(spec, schema) as writer:
            for i in range(spec.start, spec.stop):
                rng = sample_rng(recipe.seed, spec.split, i)
                last = ""
                for _ in range(MAX_DRAWS):
                    params = synth.sample_params(rng, holdout_split=spec.holdout)
                    try:
                        sample = synth.apply(params)
                        break
                    except BadSourceError as exc:
                        # Every frame of every source was validated when its pool was indexed:
                        # a source that fails now is a fault of the index, whatever on_bad_input
                        # says. The shard is abandoned (its temporary file removed); the driver
                        # withdraws finished shards that used the file.
                        pool, item = _item_of_path(index, exc.path)
                        raise PoolIndexFault(pool, item, exc.path, exc.reason) from None
                    except RejectSample as exc:
                        last = str(exc)
                    redraws += 1
                else:
                    raise SynthesisError(
                        f"{spec.name}: sample {i} failed {MAX_DRAWS} draws in a row (last: {last}); "
                        "check the recipe's ranges and the pools"
                    )
                sid = sample_id(recipe.name, spec.split, i)
                row = {"sample_id": sid, "split": spec.split, **sample.columns, **sample.labels}
                media = synth.media_column
                row[media] = {"bytes": row[media]["bytes"], "path": synth.media_filename(sid)}
                if sample.applied is not None:
                    params = {**params, "applied": sample.applied}
                row["sources"] = sample.sources
                row["params"] = json.dumps(params, sort_keys=True, separators=(",", ":"))
                row["embedding"] = sample.embedding
                writer.write_row(row)
                stats.add(sid, params, sample.sources, sample.embedding, sample.seconds)
    finally:
        fingerprint.expect({})
        synth.close()
    # Only now, with the shard in place: a stats record vouches for a complete shard.
    record = sink.commit_shard(spec, stats=stats.to_json(), rejects=(), redraws=redraws)
    record["elapsed_s"] = time.perf_counter() - t0
    return record
