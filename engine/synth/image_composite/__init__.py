"""``image_composite``: foreground cut-outs pasted onto backgrounds, then a pipeline
(see docs/images.md). Registers itself when imported."""

from ..registry import register
from .config import ImageComposite

register("image_composite", ImageComposite, "engine.synth.image_composite.synth:ImageCompositeSynth")
