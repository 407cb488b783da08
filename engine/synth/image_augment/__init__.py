"""``image_augment``: one pool image through an albumentations pipeline (see
docs/images.md). Registers itself when imported."""

from ..registry import register
from .config import ImageAugment

register("image_augment", ImageAugment, "engine.synth.image_augment.synth:ImageAugmentSynth")
