"""What the image synthesizers share (not a synthesizer itself): the image media columns,
pool lookups and labels, the albumentations pipeline with one OpenCV thread, encoding,
and how image rows are sliced and exported.

Example::

    class MyImageSynth(ImageSynthBase):
        type = "my_image_synth"
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import cv2
import pyarrow as pa

from .. import features
from ..errors import SynthesisError
from ..image import io as image_io
from ..image import pipeline
from .base import Sample, Synthesizer, check_label_columns, first_seen, write_sidecar

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
MASKS_FOLDER = "masks"  # an export's object masks, beside the images and their sidecars
RESERVED_COLUMNS = frozenset(
    {"sample_id", "split", "image", "width", "height", "objects", "sources", "params", "embedding"}
)


# Keys albumentations records in its applied params that are not drawn values: fill
# values, interpolation and border flags, sizes, its own noise seeds, kernels built from
# a drawn sigma (GaussianBlur), matrices built from drawn angles.
TRANSFORM_INTERNALS = frozenset({
    "fill", "fill_mask", "fill_value", "mask_fill_value", "interpolation", "mask_interpolation", "border_mode",
    "output_shape", "random_seed", "kernel", "matrix", "bbox_matrix", "shape", "rows", "cols",
})
_APPLIED = re.compile(r"^applied\.([^.\[\]#]+)(?:#\d+)?\.([^.\[\]]+)(?:\[\d+\])?(?:\.([^.\[\]]+))?$")


def _pair(value: Any) -> tuple[float, float] | None:
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        lo, hi = float(value[0]), float(value[1])
        return (lo, hi) if lo <= hi else None
    return None


def _specs_named(specs: Any, name: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for spec in specs if isinstance(specs, list) else []:
        if isinstance(spec, dict):
            if spec.get("__class_fullname__") == name:
                out.append(spec)
            out += _specs_named(spec.get("transforms"), name)
    return out


def requested_range(specs: list[dict[str, Any]], name: str) -> tuple[float, float] | None:
    """The ``[low, high]`` the recipe's transforms give for an applied parameter named
    ``applied.<Transform>.<key>[.<axis>]``: the transform's ``<key>``, ``<key>_range`` or
    ``<key>_limit`` (an ``{x: .., y: ..}`` mapping by axis); None when there is no pair.

    Example: ``requested_range([{"__class_fullname__": "Affine", "scale": [0.9, 1.1]}], "applied.Affine.scale.x") == (0.9, 1.1)``
    """
    m = _APPLIED.match(name)
    if m is None:
        return None
    transform, key, axis = m.groups()
    found: set[tuple[float, float]] = set()
    for spec in _specs_named(specs, transform):
        for arg in (key, f"{key}_range", f"{key}_limit"):
            value = spec.get(arg)
            if isinstance(value, dict) and axis is not None:
                value = value.get(axis)
            rng = _pair(value)
            if rng is not None:
                found.add(rng)
                break
    return found.pop() if len(found) == 1 else None


def image_source(pool: str, item: str) -> dict[str, Any]:
    """An image item as a provenance source (no timeline: start, duration and gain are 0)."""
    return {"pool": pool, "item": item, "start_s": 0.0, "duration_s": 0.0, "gain_db": 0.0}


class ImageSynthBase(Synthesizer):
    """What the image synthesizers share: pool lookups, labels, the pipeline, OpenCV threads."""

    media_column = "image"
    # The pipeline's seed (replay needs it, coverage does not), and what albumentations
    # records beside the values it drew: fill values, interpolation and border flags,
    # output sizes, its own noise seeds and the blur kernels built from a drawn sigma.
    unsampled_params = frozenset({"seed", *TRANSFORM_INTERNALS})
    _pipeline_targets = False  # masks + boxes through the pipeline (image_composite)

    def __init__(self, recipe, index):
        super().__init__(recipe, index)
        self._compose: Any = None
        self._saved_threads: int | None = None

    # ------------------------------------------------------------------ schema

    def media_fields(self) -> list[pa.Field]:
        return [
            pa.field("image", IMAGE_STRUCT),
            pa.field("width", pa.int32()),
            pa.field("height", pa.int32()),
        ]

    def hf_media_features(self) -> dict[str, Any]:
        return {
            "image": {"_type": "Image"},
            "width": {"dtype": "int32", "_type": "Value"},
            "height": {"dtype": "int32", "_type": "Value"},
        }

    def embedding_dim(self) -> int:
        return features.IMAGE_EMBED_DIM

    def media_filename(self, sample_id: str) -> str:
        return f"{sample_id}.{image_io.EXTENSIONS[self.recipe.output.image_format]}"

    def _label_columns(self, pool: str) -> list[tuple[str, str, pa.DataType]]:
        """(manifest column, output column, type) of a pool's labels carried into rows,
        under their own names; one named like a row column is a :class:`RecipeError`."""
        cfg = self.recipe.pools[pool]
        skip = {getattr(cfg, "mask_column", None)}
        out = [(f.name, f.name, f.type) for f in self.index.pools[pool].label_schema if f.name not in skip]
        check_label_columns(self.recipe, [(pool, col, name) for col, name, _ in out], sorted(RESERVED_COLUMNS))
        return out

    # ------------------------------------------------------------------ helpers

    def _choose(self, rng: np.random.Generator, pool: str, holdout_split: bool) -> int:
        cands = self.index.pools[pool].eligible(holdout_split)
        return int(cands[rng.integers(len(cands))])

    def _ready(self) -> Any:
        """Build the pipeline once per synthesizer; pin OpenCV to one thread meanwhile.

        One thread per worker: parallelism comes from Ray's processes, and a sample's
        pixels must not depend on how OpenCV split its work (restored by :meth:`close`).
        """
        if self._compose is None:

            self._saved_threads = cv2.getNumThreads()
            cv2.setNumThreads(1)
            self._compose = pipeline.build_compose(self.config.transforms, masks_and_boxes=self._pipeline_targets)
        return self._compose

    def _run_pipeline(self, seed: int, where: str, **data: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        compose = self._ready()
        pipeline.seed_pipeline(compose, seed)
        try:
            result = compose(**data)
        except Exception as exc:  # noqa: BLE001 - a transform that cannot run on this input
            msg = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            img = data["image"]
            raise SynthesisError(
                f"synth.transforms: the pipeline failed on {where} ({img.shape[1]}×{img.shape[0]}, "
                f"{1 if img.ndim == 2 else img.shape[2]} channel(s)): {type(exc).__name__}: {msg}; check the "
                "transforms' arguments against the pool's image sizes and channels"
            ) from None
        out = result["image"]
        if out.dtype != np.uint8 or out.ndim not in (2, 3) or (out.ndim == 3 and out.shape[2] not in (1, 3, 4)):
            raise SynthesisError(
                f"synth.transforms: the pipeline turned {where} into {out.dtype} of shape {out.shape}; "
                "shards store 8-bit images with 1, 3 or 4 channels"
            )
        return result, pipeline.applied_params(result.get("applied_transforms", []))

    def _sample(self, img: np.ndarray, sources: list[dict[str, Any]], label_row: dict[str, Any],
                applied: Any, **columns: Any) -> Sample:
        """The row of one finished image: encoded pixels, size, labels, provenance."""
        embedding = features.image_embedding(img)  # first, while the pixels are in cache
        return Sample(
            columns={
                "image": {"bytes": self._encode(img), "path": None},
                "width": int(img.shape[1]),
                "height": int(img.shape[0]),
                **columns,
            },
            sources=sources,
            embedding=embedding,
            labels={name: label_row.get(col) for col, name, _ in self._labels},
            seconds=0.0,
            applied=applied,
        )

    def _encode(self, img: np.ndarray) -> bytes:
        out = self.recipe.output
        try:
            return image_io.encode(img, out.image_format, out.image_quality)
        except ValueError as exc:
            raise SynthesisError(f"output.image_format: {exc}") from None

    def close(self) -> None:
        if self._saved_threads is not None:

            cv2.setNumThreads(self._saved_threads)
            self._saved_threads = None
        self._compose = None

    # ------------------------------------------------------------------ reading params

    @classmethod
    def param_range(cls, config: dict[str, Any], name: str) -> tuple[float, float] | None:
        """An applied transform parameter's range as the recipe gave it: for
        ``applied.<Transform>.<key>[.<axis>]`` the transform's ``<key>``, ``<key>_range`` or
        ``<key>_limit`` when that is a ``[low, high]`` pair (``rotate: [-5, 5]``,
        ``quality_range: [35, 80]``; ``scale: [0.9, 1.1]`` for ``scale.x`` and ``scale.y``,
        or ``scale: {x: [..], y: [..]}``). None when the recipe gave no pair (a default,
        a scalar limit) or names the transform twice with different ranges.

        Example: ``ImageSynthBase.param_range({"transforms": [{"__class_fullname__": "ImageCompression", "quality_range": [35, 80]}]}, "applied.ImageCompression.quality") == (35.0, 80.0)``
        """
        return requested_range(config.get("transforms") or [], name)

    @classmethod
    def slice_categories(cls, params: dict[str, Any], sources: list[dict[str, Any]]) -> dict[str, list[str]]:
        """Every source pool and item, and the transforms albumentations applied."""
        cats = super().slice_categories(params, sources)
        for key in ("applied", "transform", "transforms"):
            if key in params:
                names = [re.sub(r"#\d+$", "", n) for n in transform_names(params[key])]
                cats["transform"] = first_seen(names) or ["(none)"]
                break
        return cats

    @classmethod
    def export_row(cls, row: dict[str, Any], dest: Path) -> None:
        """The encoded image as it is, and its provenance. Objects that carry a mask (PNG
        bytes of the whole image) have it written as ``masks/<sample_id>-<k>.png`` (``k``
        the object's position in ``objects``); the sidecar names that file, relative to
        the sidecar's own folder, in place of the bytes."""
        name = row["image"]["path"] or f"{row['sample_id']}.png"
        (dest / name).write_bytes(row["image"]["bytes"])
        if row.get("objects"):
            objects = []
            for k, obj in enumerate(row["objects"]):
                obj = dict(obj)
                mask = obj.pop("mask", None)
                if mask:
                    rel = f"{MASKS_FOLDER}/{row['sample_id']}-{k}.png"
                    (dest / MASKS_FOLDER).mkdir(exist_ok=True)
                    (dest / rel).write_bytes(mask)
                    obj["mask"] = rel
                objects.append(obj)
            row = {**row, "objects": objects}
        write_sidecar(row, dest, skip=("image",))


def transform_names(value: Any) -> list[str]:
    """The transform names in a params entry (``applied``: name -> its params, or a list)."""
    if value is None or value is False:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        for key in ("name", "type", "transform", "__class_fullname__"):
            if isinstance(value.get(key), str):
                return [value[key]]
        # {transform name: its applied params (maybe empty)}, or {name: enabled flag}
        return [str(k) for k, v in value.items() if v is not None and v is not False]
    if isinstance(value, (list, tuple)):
        out: list[str] = []
        for v in value:
            out += transform_names(v)
        return out
    return [str(value)]
