"""Replay a written row: its media made again from its stored params, byte for byte.

Every random choice of a sample is drawn into its row's ``params``, and a synthesizer's
``apply(params)`` is deterministic, so a row can be made again from the output alone.
:class:`Replayer` reads the output's run record (the recipe, and the folder its relative
pool paths start from), finds the row's shard from its sample id, reads the row (the
shard checked against its stats record, as ``export`` reads it), indexes the recipe's
pools as the run did (once per replayer), checks that every item the row names is still
the file the run indexed (its content fingerprint in ``pool_index.parquet``) and applies
the params with the recipe's own synthesizer. What it returns, :class:`Replayed`, holds
the replayed and the stored bytes and decodes the media (an audio array and its rate, or
an image array).

This module names no synthesizer: it asks the registry for the recipe's and reads the
media by its Hugging Face feature type (``Audio`` or ``Image``).

Example::

    r = replay("out/demo_in_car", "demo_in_car-train-000000003")
    r.identical, r.sampling_rate, r.array.shape     # True, 16000, (40123,)
    with Replayer("out/demo_in_car") as replayer:    # many rows: the pools are indexed once
        for sid in ids:
            replayer.replay(sid).write(f"listen/{sid}.wav")
"""

from __future__ import annotations

import difflib
import functools
import io
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from . import fingerprint
from .audio import io as audio_io
from .errors import InputError, ShardError, ShardsmithError, SourceChangedError
from .image import io as image_io
from .layout import POOL_INDEX_FILE, shard_paths, temporary_name
from .plan import ShardSpec, make_plan
from .pools import PoolIndex, index_pools, source_of
from .run_record import listed_shards, read_run_record, read_vouched_shard, recorded_recipe
from .storage import Store, as_store, is_uri
from .synth import Sample, Synthesizer, build_synthesizer, synthesizer_class, walk_refs
from .worker import sample_id as make_sample_id


class SourceChangedSinceRun(SourceChangedError):
    """A file a row was made from is not the one the run indexed (changed, gone, or now
    rejected): the row cannot be replayed as it was written."""

    def __init__(self, path: str, detail: str, sample_id: str):
        ShardsmithError.__init__(
            self,
            f"{path}: changed since the run indexed its pool ({detail}), so {sample_id} cannot be replayed "
            "as it was written. Restore the file the run read, or re-run the recipe into a new --out to make "
            "rows from the files as they are now",
        )
        self.path = path
        self.detail = detail
        self.sample_id = sample_id

    def __reduce__(self):  # pickled with its fields, not its message
        return (type(self), (self.path, self.detail, self.sample_id))


def replay_sample(synth: Synthesizer, row: dict[str, Any]) -> Sample:
    """The sample a stored row's params make again. ``params.applied`` (what ``apply``
    resolved, stored beside the draws) is left out: ``apply`` resolves it again.

    Example: ``replay_sample(synth, row).columns[synth.media_column]["bytes"] == row[synth.media_column]["bytes"]``
    """
    params = json.loads(row["params"]) if isinstance(row["params"], str) else dict(row["params"])
    params.pop("applied", None)
    return synth.apply(params)


@dataclass(frozen=True)
class Replayed:
    """One row made again from its params, beside the row as it is stored."""

    sample_id: str
    split: str
    media_column: str  # the row's media column ("audio", "image", ...)
    media_type: str  # its Hugging Face feature type: "Audio", "Image" (decoded), or another
    filename: str  # the media's file name in the row (its struct's ``path``)
    media: bytes  # the replayed media, encoded as the shard stores it
    stored: bytes  # the media bytes the shard holds
    sources: list[dict[str, Any]]  # the source pieces the replay recorded
    stored_sources: list[dict[str, Any]]
    params: dict[str, Any]  # the row's params as stored (with ``applied``, if any)

    @property
    def identical(self) -> bool:
        """The replayed media has the stored bytes, from the same source pieces."""
        return self.media == self.stored and self.sources == self.stored_sources

    def difference(self) -> str:
        """How the replay differs from the stored row, in words ("" when identical)."""
        parts = []
        if self.media != self.stored:
            at = next((i for i, (a, b) in enumerate(zip(self.media, self.stored)) if a != b),
                      min(len(self.media), len(self.stored)))
            parts.append(f"{len(self.media)} bytes replayed, {len(self.stored)} stored, first difference at byte {at}")
        if self.sources != self.stored_sources:
            parts.append("other source pieces")
        return "; ".join(parts)

    @functools.cached_property
    def _decoded(self) -> tuple[np.ndarray, int | None]:
        if self.media_type == "Audio":
            return audio_io.decode(self.media)
        if self.media_type == "Image":
            return image_io.decode(self.media, _image_mode(self.media)), None
        raise ValueError(f"{self.sample_id}: media of type {self.media_type!r} has no decoder here; "
                         "the encoded bytes are in .media")

    @property
    def array(self) -> np.ndarray:
        """The replayed media decoded: float32 ``(frames,)`` or ``(frames, channels)`` audio,
        or a uint8 ``(height, width[, channels])`` image (RGB, RGBA or gray, as stored)."""
        return self._decoded[0]

    @property
    def sampling_rate(self) -> int | None:
        """The audio's sample rate in Hz; None for an image."""
        return self._decoded[1]

    def write(self, path: str | Path) -> Path:
        """Write the media to ``path`` (a folder: the row's file name in it) and return the
        file written. The stored format's extension writes the replayed bytes as they are;
        ``.wav`` (audio) or ``.png`` (an image) converts without loss. Written under a
        hidden name, then renamed.

        Example: ``replayed.write("listen/")``
        """
        path = Path(path)
        if path.is_dir():
            path = path / self.filename
        have = _extension(self.filename)
        want = _extension(path.name)
        if want == have:
            data = self.media
        elif self.media_type == "Audio" and want == "wav":
            x, sr = self._decoded
            data = audio_io.encode(x, int(sr or 0), "wav")
        elif self.media_type == "Image" and want == "png":
            data = image_io.encode(self.array, "png")
        else:
            other = {"Audio": " or .wav", "Image": " or .png"}.get(self.media_type, "")
            raise InputError(f"--to {path}: the row's media is .{have} ({self.filename}); name the file "
                             f".{have} for the stored bytes{other}")
        tmp = path.with_name(temporary_name(path.name, uuid.uuid4().hex[:12]))
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ShardsmithError(f"{path}: cannot write the replayed media ({exc.strerror or exc})") from None
        return path


def _extension(name: str) -> str:
    ext = Path(name).suffix.lower().lstrip(".")
    return "jpg" if ext == "jpeg" else ext


def _image_mode(data: bytes) -> str:
    """The decode mode that keeps an image's channels as stored: gray, RGBA or RGB
    (Pillow reads only the header; OpenCV decodes the pixels)."""
    with Image.open(io.BytesIO(data)) as im:
        bands = im.getbands()
    if bands == ("L",) or bands == ("I",) or bands == ("1",):
        return "gray"
    return "rgba" if "A" in bands else "rgb"


class Replayer:
    """Replays rows of one output; the pools are indexed once, on the first replay.

    ``index`` may be given (a :class:`~engine.pools.PoolIndex` of the output's recipe)
    to skip indexing. Close it (or use it as a context manager) to release the
    synthesizer's resources.

    Example::

        with Replayer("out/demo_in_car") as replayer:
            replayer.replay("demo_in_car-train-000000003").identical
    """

    def __init__(self, out: str | Path | Store, *, index: PoolIndex | None = None):
        self.store = as_store(out)
        record = read_run_record(self.store)
        if record is None:
            raise ShardError(f"{self.store.display()}: no run.json; is this a shardsmith output folder "
                             "(the --out of `shardsmith run`)?")
        self.record = record
        self.recipe = recorded_recipe(self.store, record)
        self.plan = make_plan(self.recipe)
        self.synth_class = synthesizer_class(self.recipe.synth.type)
        self._index = index
        self._synth: Synthesizer | None = None
        self._indexed: dict[tuple[str, str], str] | None = None
        self._positions: dict[str, dict[str, int]] = {}  # pool -> item id -> position in the new index
        self._table: tuple[str, pa.Table] | None = None

    # ------------------------------------------------------------------ finding rows

    def locate(self, sample_id: str) -> tuple[ShardSpec, int]:
        """``(shard, row offset in it)`` of a sample id; an :class:`InputError` with a
        did-you-mean and the ids of every split when no row has it.

        Example: ``spec, offset = replayer.locate("demo_in_car-train-000000003")``
        """
        name = self.recipe.name
        for split, cfg in self.recipe.splits.items():
            prefix = f"{name}-{split}-"
            rest = sample_id[len(prefix):] if sample_id.startswith(prefix) else ""
            if re.fullmatch(r"[0-9]+", rest) and make_sample_id(name, split, int(rest)) == sample_id:
                i = int(rest)
                if i < cfg.samples:
                    spec = next(s for s in self.plan.shards_of(split) if s.start <= i < s.stop)
                    return spec, i - spec.start
        raise InputError(self._unknown(sample_id))

    def _unknown(self, sid: str) -> str:
        name = self.recipe.name
        samples = {split: cfg.samples for split, cfg in self.recipe.splits.items()}
        ranges = "; ".join(
            f"{split}: {make_sample_id(name, split, 0)}"
            + (f" … {make_sample_id(name, split, n - 1)}" if n > 1 else "")
            for split, n in samples.items()
        )
        guess = None
        stem = re.sub(r"\.[A-Za-z]{3,4}$", "", sid.strip())  # a file name pasted as the id: x.flac, x.json
        m = re.search(r"([0-9]+)$", stem)
        head = (stem[: m.start()] if m else stem).rstrip("-_ ")
        heads = {f"{name}-{split}": split for split in samples}
        close = difflib.get_close_matches(head, list(heads), n=1, cutoff=0.6)
        if close and m and int(m.group(1)) < samples[heads[close[0]]]:
            guess = make_sample_id(name, heads[close[0]], int(m.group(1)))
        hint = f"; did you mean {guess!r}?" if guess and guess != sid else "."
        return (f"sample id {sid!r}: no row of {self.store.display()} has it{hint} This output's ids are "
                f"<recipe name>-<split>-<index, 9 digits>, per split: {ranges}")

    def row(self, sample_id: str) -> dict[str, Any]:
        """The stored row of a sample id, read from its shard once the shard's stats
        record vouches for it (the last shard read is kept for the next row)."""
        spec, offset = self.locate(sample_id)
        rel = shard_paths(spec, self.recipe.output.format)[0]
        if self._table is None or self._table[0] != rel:
            entry = next((e for e in listed_shards(self.store, spec.split) if e.get("file") == rel), None)
            if entry is None:
                raise ShardError(
                    f"{sample_id}: its shard {self.store.display(rel)} is not done (the run record does not list "
                    f"it: the run stopped before it); resume the run (`shardsmith run RECIPE --out "
                    f"{self.store.display()}`), then replay"
                )
            self._table = (rel, read_vouched_shard(self.store, entry, str(self.record.get("recipe_hash"))))
        row = self._table[1].slice(offset, 1).to_pylist()[0]
        if row.get("sample_id") != sample_id:
            raise ShardError(f"{self.store.display(rel)}: row {offset} is {row.get('sample_id')!r}, not {sample_id!r}; "
                             "the shard is not the one its plan names; re-run the recipe into a new --out")
        return row

    # ------------------------------------------------------------------ replaying

    @property
    def index(self) -> PoolIndex:
        """The recipe's pools, indexed as the run indexed them (on first use)."""
        if self._index is None:
            self._index = index_pools(self.recipe)
        return self._index

    def _synthesizer(self) -> Synthesizer:
        if self._synth is None:
            self._synth = build_synthesizer(self.recipe, self.index)
        return self._synth

    def _indexed_fingerprints(self) -> dict[tuple[str, str], str]:
        """(pool, item) -> the content fingerprint the run indexed (pool_index.parquet);
        empty for an output written before fingerprints were kept."""
        if self._indexed is None:
            self._indexed = {}
            if self.store.exists(POOL_INDEX_FILE):
                with self.store.open_input(POOL_INDEX_FILE) as f:
                    table = pq.read_table(f)
                if "fingerprint" in table.column_names:
                    cols = table.select(["pool", "item", "fingerprint"]).to_pydict()
                    self._indexed = {(p, i): fp for p, i, fp in zip(cols["pool"], cols["item"], cols["fingerprint"])
                                     if fp}
        return self._indexed

    def _check_sources(self, sample_id: str, row: dict[str, Any], params: dict[str, Any]) -> None:
        """Every item the row names is a usable item of the new index, with the content
        the run indexed; else :class:`SourceChangedSinceRun` naming the file."""
        refs = {(s["pool"], s["item"]) for s in row.get("sources") or []}
        refs |= {(pool, item) for _, pool, item in walk_refs(params)}
        before = self._indexed_fingerprints()
        for pool, item in sorted(refs):
            items = self.index.pools.get(pool)
            if pool not in self._positions:
                self._positions[pool] = {it: k for k, it in enumerate(items.items)} if items is not None else {}
            pos = self._positions[pool]
            if item not in pos:
                where = item if is_uri(item) else os.path.normpath(os.path.join(self.recipe.base_dir, item))
                rejected = next((r["reason"] for r in self.index.rejects if r.get("pool") == pool
                                 and os.path.normpath(os.path.join(self.recipe.base_dir, str(r.get("path")))) == where),
                                None)
                detail = (f"now rejected: {rejected}" if rejected
                          else f"no longer an item of pool {pool!r}: moved, renamed or deleted")
                raise SourceChangedSinceRun(where, detail, sample_id)
            now = items.fingerprints[pos[item]] if items.fingerprints else ""
            then = before.get((pool, item), "")
            if now and then and now != then:
                raise SourceChangedSinceRun(source_of(items.paths[pos[item]]),
                                            "its content differs from the fingerprint in pool_index.parquet",
                                            sample_id)

    def replay(self, sample_id: str) -> Replayed:
        """The row of ``sample_id`` made again from its params, beside the stored row.

        Example: ``replayer.replay("demo_in_car-train-000000003").identical``
        """
        row = self.row(sample_id)
        params = json.loads(row["params"])
        self._check_sources(sample_id, row, params)
        synth = self._synthesizer()
        fingerprint.expect(self.index.sources)  # every file read must be the one just indexed
        try:
            sample = replay_sample(synth, row)
        finally:
            fingerprint.expect({})
        media = self.synth_class.media_column
        try:
            media_type = str(synth.hf_media_features()[media].get("_type", ""))
        except (NotImplementedError, KeyError, AttributeError):
            media_type = ""
        return Replayed(
            sample_id=sample_id,
            split=row["split"],
            media_column=media,
            media_type=media_type,
            filename=row[media].get("path") or synth.media_filename(sample_id),
            media=sample.columns[media]["bytes"],
            stored=row[media]["bytes"],
            sources=sample.sources,
            stored_sources=row["sources"],
            params=params,
        )

    def close(self) -> None:
        if self._synth is not None:
            self._synth.close()
            self._synth = None

    def __enter__(self) -> "Replayer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def replay(out: str | Path | Store, sample_id: str, *, index: PoolIndex | None = None) -> Replayed:
    """One row of an output made again from its params (see :class:`Replayer` for many).

    Example: ``replay("out/demo_in_car", "demo_in_car-train-000000003").identical``
    """
    with Replayer(out, index=index) as replayer:
        return replayer.replay(sample_id)


__all__ = ["Replayed", "Replayer", "SourceChangedSinceRun", "replay", "replay_sample"]
