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

from ...image import io as image_io
from ..base import Sample
from ..image_base import ImageSynthBase, image_source


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
