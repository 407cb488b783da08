"""``shardsmith export``: the first rows of a split as files to listen to or look at.

Each row becomes what its synthesizer's ``export_row`` hook writes (audio as a 16-bit
WAV, an image as it is stored, a composite's object masks as PNG files under ``masks/``)
and a ``<sample_id>.json`` sidecar of its provenance: the labels, ``sources`` and the
parsed ``params``, every float rounded to 6 significant digits
(:data:`engine.synth.base.SIDECAR_DIGITS`). A sidecar names two kinds of file:

- the files the export wrote (a mask) by their path relative to the sidecar's own
  folder, so the export folder can be moved or copied whole;
- the source files a row was made from by their absolute path (or object-store URI), in
  ``sources[].path``, so the path opens from any working directory. An item's id
  (``sources[].item``, and ``item`` in ``params``) stays as the pool index names it:
  relative to the folder of the recipe, which is what a replay looks items up by.

The shards are read only when their stats records still vouch for them, and the files
are written to a hidden folder inside the destination, then moved into place: an export
stopped by an error leaves the destination as it was.

Example::

    written = export_rows("out/demo_in_car", "train", 10, Path("listen"))
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import ShardsmithError
from .layout import temporary_name
from .recipe import Recipe
from .run_record import listed_shards, read_run_record, read_vouched_shard, recorded_recipe
from .storage import Store, as_store, is_uri
from .synth import synthesizer_class
from .synth.base import Synthesizer

def source_file(recipe: Recipe, pool: str, item: str) -> str | None:
    """The absolute path (or URI) of the file a pool item was read from: the item's own
    file, or for an item inside a container (a table row, a tar member, a Kaldi utterance,
    a Lhotse segment: ``<container>#<key>``) the container; None for a generated item or
    a pool the recipe does not have.

    Example: ``source_file(recipe, "cabin", "../demo_data/noise/car/car-3.wav")  # '/work/demo_data/noise/car/car-3.wav'``
    """
    cfg = recipe.pools.get(pool)
    fmt = getattr(cfg, "format", None)
    if fmt is None:
        return None
    name = item if fmt == "files" else (item.rpartition("#")[0] or item)
    if is_uri(name):
        return name
    return os.path.normpath(os.path.join(os.path.abspath(recipe.base_dir), name))


def with_source_paths(row: dict[str, Any], recipe: Recipe) -> dict[str, Any]:
    """The row with ``path`` (:func:`source_file`) added after ``item`` in every source piece.

    Example: ``with_source_paths(row, recipe)["sources"][0]["path"]``
    """
    sources = []
    for src in row.get("sources") or []:
        piece: dict[str, Any] = {}
        for key, value in src.items():
            piece[key] = value
            if key == "item":
                piece["path"] = source_file(recipe, src.get("pool", ""), str(value))
        sources.append(piece)
    return {**row, "sources": sources}


def exported_rows(out: str | Path | Store, split: str, n: int) -> tuple[type[Synthesizer], Iterator[dict[str, Any]]]:
    """``(synthesizer class, the first n rows of split)``, each with its sources' paths;
    every shard is checked against its stats record as it is read, so a damaged one
    stops the rows with a :class:`~engine.errors.ShardError` instead of shortening them.

    Example: ``cls, rows = exported_rows("out/demo", "train", 3)``
    """
    store = as_store(out)
    entries = listed_shards(store, split)
    record = read_run_record(store) or {}
    recipe = recorded_recipe(store, record)
    synth = synthesizer_class(recipe.synth.type)

    def rows() -> Iterator[dict[str, Any]]:
        left = n
        for entry in entries:
            if left <= 0:
                return
            table = read_vouched_shard(store, entry, str(record.get("recipe_hash")))
            if synth.media_column not in table.column_names:
                raise ShardsmithError(f"{store.display(entry['file'])}: has no {synth.media_column} column; "
                                      "nothing to export")
            for row in table.slice(0, left).to_pylist():
                left -= 1
                yield with_source_paths(row, recipe)

    return synth, rows()


def write_rows(synth: type[Synthesizer], rows: Iterable[dict[str, Any]], dest: Path) -> int:
    """Write ``rows`` with the synthesizer's ``export_row`` into a hidden folder inside
    ``dest``, then move the files into place; the number of rows. An export stopped by an
    error (a damaged shard, a full disk) before the move leaves ``dest`` as it was, and no
    folder of its own making.

    Example: ``write_rows(*exported_rows("out/demo", "train", 3), Path("listen"))``
    """
    created = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
        stage = dest / temporary_name("export", uuid.uuid4().hex[:12])
        stage.mkdir()
    except OSError as exc:
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        raise ShardsmithError(f"{dest}: cannot create the --to folder ({exc.strerror or exc})") from None
    done = False
    written = 0
    try:
        for row in rows:
            synth.export_row(row, stage)
            written += 1
        for f in sorted(p for p in stage.rglob("*") if p.is_file()):
            target = dest / f.relative_to(stage)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, target)
        done = True
    except OSError as exc:
        raise ShardsmithError(f"{dest}: cannot write the exported files ({exc.strerror or exc}); "
                              "the export stopped") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created and not done:
            shutil.rmtree(dest, ignore_errors=True)  # only this export's files are in a folder it made
    return written


def export_rows(out: str | Path | Store, split: str, n: int, dest: str | Path) -> int:
    """Export the first ``n`` rows of ``split`` of an output into ``dest`` (see the module
    docstring); the number of rows written.

    Example: ``export_rows("out/demo_in_car", "train", 10, "listen")``
    """
    synth, rows = exported_rows(out, split, n)
    return write_rows(synth, rows, Path(dest))


__all__ = ["source_file", "with_source_paths", "exported_rows", "write_rows", "export_rows"]
