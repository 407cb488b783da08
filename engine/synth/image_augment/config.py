"""The recipe's ``synth`` block for ``type: image_augment`` (see docs/images.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from ...config import SynthConfig, validate_transforms

if TYPE_CHECKING:
    from ...recipe import Recipe

class ImageAugment(SynthConfig):
    """``image_augment``: one image from a pool through an albumentations pipeline."""

    type: Literal["image_augment"]
    images: str
    transforms: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("transforms", mode="before")
    @classmethod
    def _transforms(cls, v: Any) -> list[dict[str, Any]]:
        return validate_transforms(v)

    def pool_refs(self) -> list[tuple[str, str, tuple[str, ...]]]:
        return [("synth.images", self.images, ("image",))]

    def pools_used(self) -> list[str]:
        return [self.images]

    def holdout_pools(self) -> list[str]:
        return [self.images]

    def check_recipe(self, recipe: "Recipe") -> list[str]:
        """Cross-field problems: JPEG cannot hold the alpha of an rgba pool."""
        pool = recipe.pools[self.images]
        if getattr(pool, "mode", "rgb") == "rgba" and recipe.output.image_format == "jpeg":
            return [
                f"output.image_format: jpeg has no alpha channel, but pools.{self.images}.mode is rgba; "
                "use png or webp, or set the pool's mode to rgb"
            ]
        return []

