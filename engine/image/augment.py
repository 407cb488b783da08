"""The ``image_augment`` synthesizer: one pool image through an albumentations pipeline.

Per sample, :meth:`ImageAugmentSynth.sample_params` draws the image and an integer seed
from the sample's own generator; :meth:`~ImageAugmentSynth.apply` decodes the image
(normalized to the pool's ``mode``), runs the recipe's pipeline with one random stream
made from that seed, and encodes the result as ``output.image_format``. The params hold
only the item and the seed, which is all replay needs; what albumentations actually
applied (blur sigma, JPEG quality, crop box...) is recorded beside them under
``applied`` (large arrays such as noise maps as their shape).

Example::

    synth = ImageAugmentSynth(recipe, index)
    params = synth.sample_params(rng, holdout_split=False)
    sample = synth.apply(params)        # same params -> same pixels, same bytes
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from .. import features
from ..errors import SynthesisError
from ..synth import Sample, Synthesizer
from . import io as image_io
from . import pipeline

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
RESERVED_COLUMNS = frozenset(
    {"sample_id", "split", "image", "width", "height", "objects", "sources", "params", "embedding"}
)


def image_source(pool: str, item: str) -> dict[str, Any]:
    """An image item as a provenance source (no timeline: start, duration and gain are 0)."""
    return {"pool": pool, "item": item, "start_s": 0.0, "duration_s": 0.0, "gain_db": 0.0}


class ImageSynthBase(Synthesizer):
    """What the image synthesizers share: pool lookups, labels, the pipeline, OpenCV threads."""

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

    def _label_columns(self, pool: str) -> list[tuple[str, str, pa.DataType]]:
        """(manifest column, output column, type) of a pool's labels carried into rows."""
        cfg = self.recipe.pools[pool]
        skip = {getattr(cfg, "mask_column", None)}
        out = []
        for f in self.index.pools[pool].label_schema:
            if f.name in skip:
                continue
            name = f.name if f.name not in RESERVED_COLUMNS else f"{pool}_{f.name}"
            out.append((f.name, name, f.type))
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
            import cv2

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
            import cv2

            cv2.setNumThreads(self._saved_threads)
            self._saved_threads = None
        self._compose = None


class ImageAugmentSynth(ImageSynthBase):
    type = "image_augment"

    def __init__(self, recipe, index):
        super().__init__(recipe, index)
        self._mode = recipe.pools[self.config.images].mode
        self._labels = self._label_columns(self.config.images)

    def label_fields(self) -> list[pa.Field]:
        return [pa.field(name, typ) for _, name, typ in self._labels]

    def sample_params(self, rng: np.random.Generator, *, holdout_split: bool) -> dict[str, Any]:
        pool = self.config.images
        k = self._choose(rng, pool, holdout_split)
        return {"image": {"pool": pool, "item": self.index.pools[pool].items[k]}, "seed": int(rng.integers(2**63))}

    def apply(self, params: dict[str, Any]) -> Sample:
        pool_name, item = params["image"]["pool"], params["image"]["item"]
        pool = self.index.pools[pool_name]
        i = self._pos(pool_name, item)
        self._ready()
        img = image_io.read_image(pool.paths[i], self._mode)
        applied: dict[str, Any] = {}
        if self.config.transforms:
            result, applied = self._run_pipeline(int(params["seed"]), item, image=img)
            img = result["image"]
        if img.ndim == 3 and img.shape[2] == 1:
            img = img[:, :, 0]
        return self._sample(img, [image_source(pool_name, item)], pool.label_row(i), applied)
