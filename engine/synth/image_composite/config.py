"""The recipe's ``synth`` block for ``type: image_composite`` (see docs/images.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from ...config import SynthConfig, int_range, range_pair, validate_transforms

if TYPE_CHECKING:
    from ...recipe import Recipe

class ImageComposite(SynthConfig):
    """``image_composite``: foreground cut-outs pasted onto a background, then a pipeline."""

    type: Literal["image_composite"]
    foregrounds: str
    backgrounds: str
    count_range: tuple[int, int] = (1, 3)  # objects per image
    scale_range: tuple[float, float] = (0.2, 0.5)  # object's longer side / background's shorter side
    rotation_deg_range: tuple[float, float] = (-15.0, 15.0)
    flip_p: float = Field(0.5, ge=0.0, le=1.0)  # horizontal flip of each object
    feather_p: float = Field(0.5, ge=0.0, le=1.0)  # share of objects with feathered (soft) edges
    feather_px_range: tuple[float, float] = (1.0, 3.0)  # Gaussian sigma of a feathered edge, pixels
    label_column: str = "label"  # the foreground manifest's column naming each object's class
    transforms: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("transforms", mode="before")
    @classmethod
    def _transforms(cls, v: Any) -> list[dict[str, Any]]:
        return validate_transforms(v)

    @field_validator("count_range", mode="before")
    @classmethod
    def _count(cls, v: Any) -> tuple[int, int]:
        return int_range(v, lo=0, hi=50, what="objects per image")

    @field_validator("scale_range", mode="before")
    @classmethod
    def _scale(cls, v: Any) -> tuple[float, float]:
        low, high = range_pair(v, lo=0.01, hi=4.0, what="object size / background's shorter side")
        return (low, high)

    @field_validator("rotation_deg_range", mode="before")
    @classmethod
    def _rotation(cls, v: Any) -> tuple[float, float]:
        return range_pair(v, lo=-180.0, hi=180.0, what="degrees")

    @field_validator("feather_px_range", mode="before")
    @classmethod
    def _feather(cls, v: Any) -> tuple[float, float]:
        return range_pair(v, lo=0.0, hi=50.0, what="pixels")

    def pool_refs(self) -> list[tuple[str, str, tuple[str, ...]]]:
        return [
            ("synth.foregrounds", self.foregrounds, ("image",)),
            ("synth.backgrounds", self.backgrounds, ("image",)),
        ]

    def pools_used(self) -> list[str]:
        return list(dict.fromkeys([self.foregrounds, self.backgrounds]))

    def holdout_pools(self) -> list[str]:
        return self.pools_used()

    def check_recipe(self, recipe: "Recipe") -> list[str]:
        """Cut-outs need an alpha channel or a mask; backgrounds must be RGB."""
        problems = []
        fg = recipe.pools[self.foregrounds]
        if getattr(fg, "mode", None) != "rgba" and not getattr(fg, "mask_column", None):
            problems.append(
                f"pools.{self.foregrounds}.mode: the foregrounds of image_composite need their alpha "
                "(set mode: rgba) or a mask per item (set mask_column to a manifest column of mask files)"
            )
        bg = recipe.pools[self.backgrounds]
        if getattr(bg, "mode", None) != "rgb":
            problems.append(
                f"pools.{self.backgrounds}.mode: the backgrounds of image_composite must be mode: rgb, "
                f"got {getattr(bg, 'mode', None)!r}"
            )
        return problems

