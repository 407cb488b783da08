"""Recipes: the YAML file that says what to synthesize, validated before any work.

A recipe names source pools, splits and one synthesizer. Every model forbids unknown
keys, and every error names the field path, the bad value and the fix, e.g.::

    synth.noise[0].snr_db_range: expected [low, high] with low <= high, got [20, 5]

Example::

    recipe = load_recipe("recipes/demo_in_car.yaml", overrides=["splits.train.samples=200"])
    print(recipe.name, recipe_hash(recipe))
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import RecipeError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SPLIT_PATTERN = r"^[a-z0-9][a-z0-9_]{0,63}$"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _show(value: Any, limit: int = 120) -> str:
    """repr() for messages: short, and safe for integers too long to print."""
    try:
        text = repr(value)
    except ValueError:  # int longer than sys.get_int_max_str_digits()
        return f"<an integer of about {int(value.bit_length() * 0.30103)} digits>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _range_pair(value: Any, *, lo: float, hi: float, what: str) -> tuple[float, float]:
    """Validate a ``[low, high]`` pair within ``[lo, hi]``; messages say what is expected."""
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(f"expected [low, high] ({what}), got {_show(value)}")
    try:
        low, high = float(value[0]), float(value[1])
    except OverflowError:
        raise ValueError(f"expected [low, high] of finite numbers ({what}), got a number too large") from None
    if not (low == low and high == high):  # NaN
        raise ValueError(f"expected [low, high] of finite numbers, got {_show(list(value))}")
    if low > high:
        raise ValueError(f"expected [low, high] with low <= high, got {_show(list(value))}")
    if low < lo or high > hi:
        raise ValueError(f"expected values within [{lo:g}, {hi:g}] ({what}), got {_show(list(value))}")
    return (low, high)


# --------------------------------------------------------------------------- output


class Output(StrictModel):
    format: Literal["arrow", "parquet"] = "arrow"
    samples_per_shard: int = Field(1000, ge=1, le=1_000_000)
    audio_codec: Literal["flac", "wav"] = "flac"
    image_format: Literal["png", "jpeg", "webp"] = "png"  # image synthesizers' output encoding
    image_quality: int = Field(90, ge=1, le=100)  # JPEG / WebP quality; PNG is lossless


# --------------------------------------------------------------------------- pools


class _FilePool(StrictModel):
    paths: list[str] | None = None
    manifest: str | None = None
    path_column: str = "path"
    holdout: float = Field(0.0, ge=0.0, le=0.9)

    @field_validator("paths")
    @classmethod
    def _paths_not_empty(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or any(not isinstance(p, str) or not p.strip() for p in v)):
            raise ValueError(f"expected a non-empty list of glob patterns, got {v!r}")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> "_FilePool":
        if (self.paths is None) == (self.manifest is None):
            raise ValueError(
                "give exactly one of 'paths' (a list of globs) or 'manifest' "
                "(a CSV, JSONL or Parquet file with a 'path' column)"
            )
        return self


class AudioPool(_FilePool):
    kind: Literal["audio"] = "audio"
    sample_rate: int | None = Field(None, ge=1000, le=384000)
    max_channels: int = Field(2, ge=1, le=64)
    min_duration_s: float = Field(0.0, ge=0.0)
    max_duration_s: float | None = Field(None, gt=0.0)


def _pool_kind(value: Any) -> str | None:
    # A pool without `kind` is an audio pool: the common case needs no boilerplate.
    if isinstance(value, dict):
        return value.get("kind") or "audio"
    return getattr(value, "kind", "audio")


class ImagePool(_FilePool):
    """Images (globs or a manifest), decoded and normalized to ``mode`` when read."""

    kind: Literal["image"]
    mode: Literal["rgb", "rgba", "gray"] = "rgb"
    max_pixels: int = Field(40_000_000, ge=1, le=150_000_000)  # larger images are rejected unread
    mask_column: str | None = None  # manifest column with a mask image per item (cut-outs)


NOISE_COLOURS = ("white", "pink", "brown", "blue", "violet")


class NoiseGeneratorPool(StrictModel):
    """Coloured noise made on the fly, no files: ``count`` virtual items per colour (ids
    ``gen:pink/0003``), each ``duration_s`` long, with a power spectrum sloping by the
    colour's nominal dB per octave (white 0, pink -3, brown -6, blue +3, violet +6) plus
    an offset drawn once per item from ``slope_jitter_db_range``."""

    kind: Literal["noise_generator"]
    colours: list[Literal["white", "pink", "brown", "blue", "violet"]] = Field(
        default_factory=lambda: ["white", "pink", "brown"], min_length=1
    )
    slope_jitter_db_range: tuple[float, float] = (-1.0, 1.0)
    count: int = Field(4, ge=1, le=10_000)
    duration_s: float = Field(30.0, ge=1.0, le=600.0)
    sample_rate: int = Field(16000, ge=4000, le=192000)
    holdout: float = Field(0.0, ge=0.0, le=0.9)

    @field_validator("slope_jitter_db_range", mode="before")
    @classmethod
    def _jitter(cls, v: Any) -> tuple[float, float]:
        return _range_pair(v, lo=-6.0, hi=6.0, what="dB per octave added to the colour's slope")

    @field_validator("colours")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"expected each colour once, got {v!r}")
        return v


class RirGeneratorPool(StrictModel):
    """Synthetic room impulse responses, no files: ``count`` virtual items (ids
    ``gen:rir/0003``), each exponentially decaying noise after a direct path, with an RT60
    and a direct-to-reverberant ratio drawn once per item from the ranges."""

    kind: Literal["rir_generator"]
    count: int = Field(100, ge=1, le=100_000)
    rt60_s_range: tuple[float, float] = (0.2, 0.8)
    drr_db_range: tuple[float, float] = (0.0, 12.0)
    sample_rate: int = Field(16000, ge=4000, le=192000)
    holdout: float = Field(0.0, ge=0.0, le=0.9)

    @field_validator("rt60_s_range", mode="before")
    @classmethod
    def _rt60(cls, v: Any) -> tuple[float, float]:
        return _range_pair(v, lo=0.05, hi=3.0, what="RT60 in seconds")

    @field_validator("drr_db_range", mode="before")
    @classmethod
    def _drr(cls, v: Any) -> tuple[float, float]:
        return _range_pair(v, lo=-20.0, hi=40.0, what="direct-to-reverberant ratio in dB")


Pool = Annotated[
    Union[
        Annotated[AudioPool, Tag("audio")],
        Annotated[ImagePool, Tag("image")],
        Annotated[NoiseGeneratorPool, Tag("noise_generator")],
        Annotated[RirGeneratorPool, Tag("rir_generator")],
    ],
    Discriminator(_pool_kind),
]
POOL_CLASSES: dict[str, type[BaseModel]] = {
    "audio": AudioPool,
    "image": ImagePool,
    "noise_generator": NoiseGeneratorPool,
    "rir_generator": RirGeneratorPool,
}
POOL_KINDS = tuple(POOL_CLASSES)


# --------------------------------------------------------------------------- splits


class Split(StrictModel):
    samples: int = Field(ge=1, le=10**10)
    holdout: bool = False

    @field_validator("samples", mode="before")
    @classmethod
    def _no_bool(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError(f"expected a whole number of samples, got {v!r}")
        return v


# --------------------------------------------------------------------------- synthesizers


FILTER_TYPES = ("lowpass", "highpass", "bandpass")


class FilterPerturb(StrictModel):
    """A band-limiting filter drawn per use: Butterworth low-pass, high-pass, or band-pass
    (a high-pass then a low-pass). Cut-offs are drawn from the ranges; sampled values are
    recorded as ``perturb.filter: {type, lowpass_hz, highpass_hz}``."""

    p: float = Field(0.5, ge=0.0, le=1.0)
    types: list[Literal["lowpass", "highpass", "bandpass"]] = Field(
        default_factory=lambda: list(FILTER_TYPES), min_length=1
    )
    lowpass_hz_range: tuple[float, float] = (1000.0, 4000.0)
    highpass_hz_range: tuple[float, float] = (100.0, 600.0)
    order: int = Field(4, ge=2, le=8, multiple_of=2)

    @field_validator("lowpass_hz_range", "highpass_hz_range", mode="before")
    @classmethod
    def _cutoffs(cls, v: Any) -> tuple[float, float]:
        low, high = _range_pair(v, lo=0.0, hi=96000.0, what="cut-off frequency in Hz")
        if low <= 0:
            raise ValueError(f"expected cut-off frequencies above 0 Hz, got {_show(list(v))}")
        return (low, high)

    @model_validator(mode="after")
    def _band(self) -> "FilterPerturb":
        if "bandpass" in self.types and self.highpass_hz_range[1] >= self.lowpass_hz_range[0]:
            raise ValueError(
                "a bandpass takes its low edge from highpass_hz_range and its high edge from "
                f"lowpass_hz_range, so highpass_hz_range (up to {self.highpass_hz_range[1]:g} Hz) must stay "
                f"below lowpass_hz_range (from {self.lowpass_hz_range[0]:g} Hz)"
            )
        return self


class Perturb(StrictModel):
    """Per-use perturbation of a noise piece (each value drawn per sample and recorded
    under the piece's ``perturb``): speed (polyphase resampling; 1.1 = 10 % faster and
    shorter), a level sweep of ``gain_db`` across the piece (its SNR is set after the
    sweep, so a constant gain would cancel out), a filter, and time reversal."""

    speed_range: tuple[float, float] | None = None
    gain_db_range: tuple[float, float] | None = None
    filter: FilterPerturb | None = None
    reverse_p: float = Field(0.0, ge=0.0, le=1.0)

    @field_validator("speed_range", mode="before")
    @classmethod
    def _speed(cls, v: Any) -> tuple[float, float] | None:
        return None if v is None else _range_pair(v, lo=0.5, hi=2.0, what="speed factor, 1.0 = unchanged")

    @field_validator("gain_db_range", mode="before")
    @classmethod
    def _gain(cls, v: Any) -> tuple[float, float] | None:
        return None if v is None else _range_pair(v, lo=-40.0, hi=40.0, what="level sweep in dB")


class NoiseLayer(StrictModel):
    """A continuous noise layer: kept with probability ``p``, at its own SNR
    (``snr_db_range``) or at a ``share`` of the synth's ``total_snr_db_range``."""

    pool: str
    p: float = Field(1.0, ge=0.0, le=1.0)
    share: float | None = Field(None, gt=0.0, le=1e6)
    # Declared after `share` so that its validator can see it; validated when absent too.
    snr_db_range: tuple[float, float] | None = Field(None, validate_default=True)
    perturb: Perturb | None = None

    @field_validator("snr_db_range", mode="before")
    @classmethod
    def _snr(cls, v: Any, info: Any) -> tuple[float, float] | None:
        share = info.data.get("share")
        if v is None:
            if share is None:
                raise ValueError(
                    "required: give this layer's snr_db_range ([low, high] in dB), or a share "
                    "of the synth's total_snr_db_range"
                )
            return None
        if share is not None:
            raise ValueError("give either snr_db_range or share for a layer, not both")
        return _range_pair(v, lo=-40.0, hi=100.0, what="SNR in dB")


class EventLayer(StrictModel):
    """Short noise events (horn, door, clatter) placed at random times: with probability
    ``p`` a sample gets ``count_range`` events from ``pool``, each at most
    ``max_duration_s`` long, at an SNR relative to the active speech within
    ``context_s`` of the event."""

    pool: str
    p: float = Field(1.0, ge=0.0, le=1.0)
    count_range: tuple[int, int] = (1, 1)
    snr_db_range: tuple[float, float]
    max_duration_s: float = Field(2.0, gt=0.0, le=60.0)
    context_s: float = Field(0.5, ge=0.0, le=10.0)
    perturb: Perturb | None = None

    @field_validator("snr_db_range", mode="before")
    @classmethod
    def _snr(cls, v: Any) -> tuple[float, float]:
        return _range_pair(v, lo=-40.0, hi=100.0, what="SNR in dB")

    @field_validator("count_range", mode="before")
    @classmethod
    def _count(cls, v: Any) -> tuple[int, int]:
        return _int_range(v, lo=0, hi=20, what="events per sample")


class Reverb(StrictModel):
    """Convolution with a room impulse response from ``pool`` (files or an
    ``rir_generator``), with probability ``p``; aligned on the direct path."""

    pool: str
    p: float = Field(1.0, ge=0.0, le=1.0)
    apply_to: Literal["speech", "speech_and_noise"] = "speech"


class SpeechNoiseMix(StrictModel):
    type: Literal["speech_noise_mix"]
    speech: str
    noise: list[NoiseLayer] = Field(min_length=1)
    total_snr_db_range: tuple[float, float] | None = None
    events: list[EventLayer] = Field(default_factory=list)
    reverb: Reverb | None = None
    level_dbfs_range: tuple[float, float] | None = None
    sample_rate: int = Field(16000, ge=4000, le=192000)
    clipping: Literal["rescale", "reject", "allow"] = "rescale"
    peak_dbfs: float = Field(-1.0, le=0.0, ge=-60.0)
    crossfade_s: float = Field(0.05, ge=0.0, le=1.0)
    active_threshold_db: float = Field(40.0, gt=0.0, le=120.0)

    @field_validator("total_snr_db_range", mode="before")
    @classmethod
    def _total_snr(cls, v: Any) -> tuple[float, float] | None:
        return None if v is None else _range_pair(v, lo=-40.0, hi=100.0, what="SNR in dB")

    @field_validator("level_dbfs_range", mode="before")
    @classmethod
    def _level(cls, v: Any) -> tuple[float, float] | None:
        return None if v is None else _range_pair(v, lo=-80.0, hi=0.0, what="RMS of the active speech in dBFS")

    def pool_refs(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """(field path, pool name, allowed pool kinds) for every pool this synth names."""
        noise_kinds = ("audio", "noise_generator")
        refs = [("synth.speech", self.speech, ("audio",))]
        refs += [(f"synth.noise[{i}].pool", layer.pool, noise_kinds) for i, layer in enumerate(self.noise)]
        refs += [(f"synth.events[{i}].pool", ev.pool, noise_kinds) for i, ev in enumerate(self.events)]
        if self.reverb is not None:
            refs.append(("synth.reverb.pool", self.reverb.pool, ("audio", "rir_generator")))
        return refs

    def pools_used(self) -> list[str]:
        return list(dict.fromkeys(name for _, name, _ in self.pool_refs()))

    def holdout_pools(self) -> list[str]:
        """Pools whose held-out items make a holdout split 'unseen' (all but the speech)."""
        return list(dict.fromkeys(name for field, name, _ in self.pool_refs() if field != "synth.speech"))

    def check_recipe(self, recipe: "Recipe") -> list[str]:
        """SNR mode of the layers (own range or share of a total) and filter cut-offs below Nyquist."""
        problems = []
        shares = [i for i, layer in enumerate(self.noise) if layer.share is not None]
        if self.total_snr_db_range is None and shares:
            problems.append(
                f"synth.noise[{shares[0]}].share: a share needs synth.total_snr_db_range (the total SNR the "
                "shares split); set it, or give the layer its own snr_db_range"
            )
        if self.total_snr_db_range is not None:
            own = [i for i, layer in enumerate(self.noise) if layer.share is None]
            if own:
                problems.append(
                    f"synth.noise[{own[0]}].snr_db_range: with synth.total_snr_db_range every noise layer "
                    "gives a share of it instead of its own SNR (e.g. share: 1)"
                )
        nyquist = self.sample_rate / 2.0
        layers = [("noise", i, layer) for i, layer in enumerate(self.noise)]
        layers += [("events", i, ev) for i, ev in enumerate(self.events)]
        for where, i, layer in layers:
            flt = layer.perturb.filter if layer.perturb is not None else None
            if flt is None:
                continue
            for name in ("lowpass_hz_range", "highpass_hz_range"):
                top = getattr(flt, name)[1]
                if top >= nyquist:
                    problems.append(
                        f"synth.{where}[{i}].perturb.filter.{name}: {top:g} Hz is not below the Nyquist "
                        f"frequency ({nyquist:g} Hz) of synth.sample_rate {self.sample_rate}"
                    )
        return problems


def _transform_list(value: Any) -> list[dict[str, Any]]:
    """Validate an albumentations transform list (see engine/image/pipeline.py); every
    problem is reported at its own path, e.g. ``synth.transforms[2].GaussianBlur.blur_limit``."""
    from pydantic_core import PydanticCustomError

    from .image.pipeline import TransformSpecError, normalize_transforms

    try:
        return normalize_transforms(value)
    except TransformSpecError as exc:
        line_errors = [
            {
                "type": PydanticCustomError("transform", "{message}", {"message": e.message}),
                "loc": e.loc,
                "input": e.value,
            }
            for e in getattr(exc, "all", [exc])
        ]
        raise ValidationError.from_exception_data("transforms", line_errors) from None


def _int_range(value: Any, *, lo: int, hi: int, what: str) -> tuple[int, int]:
    low, high = _range_pair(value, lo=lo, hi=hi, what=what)
    if low != int(low) or high != int(high):
        raise ValueError(f"expected [low, high] of whole numbers ({what}), got {_show(list(value))}")
    return (int(low), int(high))


class ImageAugment(StrictModel):
    """``image_augment``: one image from a pool through an albumentations pipeline."""

    type: Literal["image_augment"]
    images: str
    transforms: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("transforms", mode="before")
    @classmethod
    def _transforms(cls, v: Any) -> list[dict[str, Any]]:
        return _transform_list(v)

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


class ImageComposite(StrictModel):
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
        return _transform_list(v)

    @field_validator("count_range", mode="before")
    @classmethod
    def _count(cls, v: Any) -> tuple[int, int]:
        return _int_range(v, lo=0, hi=50, what="objects per image")

    @field_validator("scale_range", mode="before")
    @classmethod
    def _scale(cls, v: Any) -> tuple[float, float]:
        low, high = _range_pair(v, lo=0.01, hi=4.0, what="object size / background's shorter side")
        return (low, high)

    @field_validator("rotation_deg_range", mode="before")
    @classmethod
    def _rotation(cls, v: Any) -> tuple[float, float]:
        return _range_pair(v, lo=-180.0, hi=180.0, what="degrees")

    @field_validator("feather_px_range", mode="before")
    @classmethod
    def _feather(cls, v: Any) -> tuple[float, float]:
        return _range_pair(v, lo=0.0, hi=50.0, what="pixels")

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


Synth = Annotated[Union[SpeechNoiseMix, ImageAugment, ImageComposite], Field(discriminator="type")]
SYNTH_CLASSES: dict[str, type[BaseModel]] = {
    "speech_noise_mix": SpeechNoiseMix,
    "image_augment": ImageAugment,
    "image_composite": ImageComposite,
}
SYNTH_TYPES = tuple(SYNTH_CLASSES)


# --------------------------------------------------------------------------- guards


class PoolGuards(StrictModel):
    """Per-pool guard overrides: a field given here (``null`` turns it off for the pool)
    replaces the recipe-wide value; a field left out inherits it."""

    max_reuse_factor: float | None = Field(None, gt=0)
    min_effective_sources: float | None = Field(None, gt=0)
    max_source_share: float | None = Field(None, gt=0, le=1)
    min_pool_fraction_used: float | None = Field(None, gt=0, le=1)


class Guards(StrictModel):
    """Coverage limits; forecast at plan time and checked on the finished stats
    (see engine/coverage.py)."""

    max_reuse_factor: float | None = Field(20.0, gt=0)
    min_effective_sources: float | None = Field(None, gt=0)
    max_source_share: float | None = Field(None, gt=0, le=1)
    min_pool_fraction_used: float | None = Field(None, gt=0, le=1)
    pools: dict[str, PoolGuards] = Field(default_factory=dict)


# --------------------------------------------------------------------------- recipe


class Recipe(StrictModel):
    name: str = Field(pattern=NAME_PATTERN)
    seed: int = Field(ge=0, lt=2**63)
    output: Output = Output()
    pools: dict[str, Pool] = Field(min_length=1)
    splits: dict[str, Split] = Field(min_length=1)
    synth: Synth
    guards: Guards = Guards()
    on_bad_input: Literal["skip", "fail"] = "skip"

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @field_validator("seed", mode="before")
    @classmethod
    def _no_bool_seed(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError(f"expected a non-negative integer, got {v!r} (YAML reads yes/no/on/off as booleans)")
        return v

    @model_validator(mode="after")
    def _shard_count(self) -> "Recipe":
        per = self.output.samples_per_shard
        n = sum(-(-s.samples // per) for s in self.splits.values())
        if n > 1_000_000:
            raise ValueError(
                f"the splits need {n} shards of {per} samples; raise output.samples_per_shard "
                "(at most 1,000,000 shards)"
            )
        return self

    @field_validator("pools")
    @classmethod
    def _pool_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"pool name {name!r} must match {NAME_PATTERN}")
        return v

    @field_validator("splits")
    @classmethod
    def _split_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            if not re.match(SPLIT_PATTERN, name):
                raise ValueError(
                    f"split name {name!r} must be lower-case letters, digits and '_' "
                    "(it becomes a folder and file name)"
                )
        return v

    @property
    def base_dir(self) -> Path:
        """Folder that relative pool paths are resolved against (the recipe's folder)."""
        return self._base_dir

    def with_base_dir(self, base_dir: str | Path) -> "Recipe":
        self._base_dir = Path(base_dir).resolve()
        return self


def _check_references(recipe: Recipe, source: str) -> None:
    """Cross-field checks that pydantic cannot see one model at a time."""
    synth = recipe.synth
    known = sorted(recipe.pools)
    for field, name, kinds in synth.pool_refs():
        if name not in recipe.pools:
            hint = difflib.get_close_matches(name, known, n=1)
            did = f" Did you mean {hint[0]!r}?" if hint else ""
            raise RecipeError(
                f"{source}: {field}: no pool named {name!r}; the recipe defines pools {known}.{did}"
            )
        kind = recipe.pools[name].kind
        if kind not in kinds:
            raise RecipeError(
                f"{source}: {field}: pool {name!r} is of kind {kind!r}; this field needs a pool of "
                f"kind {' or '.join(repr(k) for k in kinds)}"
            )
    # A synth may check how its fields fit the pools and output (e.g. alpha vs JPEG).
    check_recipe = getattr(synth, "check_recipe", None)
    problems = check_recipe(recipe) if check_recipe is not None else []
    if problems:
        raise RecipeError(f"{source}: " + f"\n  {source}: ".join(problems))
    for name in recipe.guards.pools:
        if name not in recipe.pools:
            raise RecipeError(
                f"{source}: guards.pools.{name}: no pool named {name!r}; the recipe defines pools {known}"
            )
    holdout_splits = [s for s, cfg in recipe.splits.items() if cfg.holdout]
    if holdout_splits:
        candidates = synth.holdout_pools()
        if not any(getattr(recipe.pools[p], "holdout", 0) > 0 for p in candidates):
            raise RecipeError(
                f"{source}: splits.{holdout_splits[0]}.holdout: true, but none of the pools "
                f"{candidates} sets a holdout fraction; set e.g. pools.{candidates[0]}.holdout: 0.1 "
                "so that some items are kept out of the other splits"
            )


# --------------------------------------------------------------------------- errors


def _loc_to_path(loc: tuple[Any, ...]) -> str:
    """('synth', 'speech_noise_mix', 'noise', 0, 'p') -> 'synth.noise[0].p'.

    Discriminated unions put the tag into the location; a user never wrote it, so drop it.
    """
    parts: list[str] = []
    skip_next_tag = None
    for i, item in enumerate(loc):
        if skip_next_tag is not None:
            tags = skip_next_tag
            skip_next_tag = None
            if item in tags:
                continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
        if loc[:1] == ("synth",) and i == 0:
            skip_next_tag = SYNTH_TYPES
        elif loc[:1] == ("pools",) and i == 1:
            skip_next_tag = POOL_KINDS
    return "".join(parts)


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``list[NoiseLayer]`` or ``X | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _model_for_path(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Which model the last element of a location belongs to (to list its valid fields)."""
    parts = list(loc[:-1])
    model: type[BaseModel] | None = Recipe
    i = 0
    while i < len(parts) and model is not None:
        item = parts[i]
        if model is Recipe and item in ("pools", "splits"):
            i += 2  # skip the user's pool / split name
            if item == "splits":
                model = Split
                continue
            tag = parts[i] if i < len(parts) else "audio"
            model = POOL_CLASSES.get(tag, AudioPool)
            i += 1 if tag in POOL_CLASSES else 0
            continue
        if model is Recipe and item == "synth":
            i += 1
            tag = parts[i] if i < len(parts) else None
            model = SYNTH_CLASSES.get(tag, SpeechNoiseMix)
            i += 1 if tag in SYNTH_CLASSES else 0
            continue
        if model is Guards and item == "pools":
            i += 2  # skip the user's pool name
            model = PoolGuards
            continue
        if not isinstance(item, int):
            field = model.model_fields.get(item)
            model = _submodel(field.annotation) if field else None
        i += 1
    return model


def _format_error(err: dict[str, Any]) -> str:
    loc = tuple(err.get("loc", ()))
    if len(loc) >= 2 and loc[-1] == "[key]":  # a top-level key named "[key]" is just a key
        return f"{_loc_to_path(loc[:-2]) or '(recipe)'}: names must be strings, got {_show(loc[-2])}"
    path = _loc_to_path(loc) or "(recipe)"
    kind = err.get("type", "")
    value = err.get("input")
    if kind == "extra_forbidden":
        field = str(loc[-1])
        model = _model_for_path(loc)
        valid = sorted(model.model_fields) if model else []
        hint = difflib.get_close_matches(field, valid, n=1)
        did = f"did you mean {hint[0]!r}? " if hint else ""
        return f"{path}: unknown field; {did}valid fields here: {', '.join(valid)}"
    if kind == "missing":
        return f"{path}: required field is missing"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        disc = "kind" if loc[:1] == ("pools",) else "type"
        return (
            f"{path}.{disc}: unknown value {ctx.get('tag')!r}; "
            f"expected one of {ctx.get('expected_tags')}"
        )
    if kind == "union_tag_not_found":
        ctx = err.get("ctx", {})
        disc = "kind" if loc[:1] == ("pools",) else str(ctx.get("discriminator", "type")).strip("'")
        known = SYNTH_TYPES if loc[:1] == ("synth",) else POOL_KINDS
        return f"{path}.{disc}: required field is missing; expected one of {', '.join(known)}"
    if kind == "too_short" and loc in (("splits",), ("pools",)):
        example = "train: {samples: 1000}" if loc == ("splits",) else "speech: {paths: ['clean/*.flac']}"
        return f"{path}: define at least one, e.g. {example}"
    if kind == "literal_error":
        return f"{path}: {err['msg'].lower()}, got {_show(value)}"
    msg = err.get("msg", "invalid")
    msg = re.sub(r"^Value error, ", "", msg)
    msg = re.sub(r" or (instance of \w+|object to extract fields from)", "", msg)
    if kind.startswith(("greater", "less", "int_", "float_", "string_", "too_short", "too_long", "bool",
                        "dict_", "list_", "model_", "finite_", "tuple_")):
        return f"{path}: {msg[0].lower() + msg[1:]}, got {_show(value)}"
    return f"{path}: {msg}"


def _validation_to_recipe_error(exc: ValidationError, source: str) -> RecipeError:
    lines = [_format_error(e) for e in exc.errors(include_url=False)]
    head = f"{source}: the recipe is not valid ({len(lines)} problem{'s' if len(lines) > 1 else ''}):"
    return RecipeError("\n  ".join([head, *lines]))


# --------------------------------------------------------------------------- overrides


_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _parse_override_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in path.split("."):
        if not piece:
            raise RecipeError(f"--set {path}: empty path segment; write e.g. splits.train.samples=200")
        pos = 0
        for m in _SEGMENT.finditer(piece):
            if m.start() != pos:
                break
            pos = m.end()
            if m.group(1) is not None:
                parts.append(int(m.group(1)) if m.group(1).isdigit() else m.group(1))
            else:
                parts.append(int(m.group(2)))
        if pos != len(piece):
            raise RecipeError(f"--set {path}: cannot parse {piece!r}; write e.g. synth.noise[0].p=0.5")
    return parts


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set key.path=value`` overrides (values parsed as YAML) to recipe data.

    Example: ``apply_overrides(d, ["splits.train.samples=200", "synth.noise[0].p=0.5"])``
    """
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"--set {item}: expected key.path=value, e.g. splits.train.samples=200")
        path, raw = item.split("=", 1)
        parts = _parse_override_path(path.strip())
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except (yaml.YAMLError, ValueError, RecursionError) as exc:
            raise RecipeError(f"--set {path}: value {raw!r} is not valid YAML ({exc})") from None
        node: Any = data
        for i, key in enumerate(parts):
            last = i == len(parts) - 1
            where = path.split("=")[0]
            if isinstance(node, dict):
                if isinstance(key, int):
                    key = str(key)
                if last:
                    node[key] = value
                else:
                    if key not in node or node[key] is None:
                        node[key] = [] if isinstance(parts[i + 1], int) else {}
                    node = node[key]
            elif isinstance(node, list):
                if not isinstance(key, int):
                    raise RecipeError(f"--set {where}: {key!r} indexes a list; use a number, e.g. [0]")
                if key >= len(node):
                    raise RecipeError(
                        f"--set {where}: index {key} is out of range (the list has {len(node)} item{'s' if len(node) != 1 else ''})"
                    )
                if last:
                    node[key] = value
                else:
                    node = node[key]
            else:
                raise RecipeError(f"--set {where}: cannot descend into {node!r} (not a mapping)")
    return data


# --------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a repeated key (otherwise the last one silently wins)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key; the recipe validator reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {_show(key)}", key_node.start_mark
                )
        return super().construct_mapping(node, deep)


def parse_recipe(data: Any, *, source: str = "recipe", base_dir: str | Path | None = None) -> Recipe:
    """Validate recipe data (already parsed YAML) into a :class:`Recipe`.

    Example: ``parse_recipe({"name": "x", "seed": 1, ...}, base_dir=".")``
    """
    if not isinstance(data, dict):
        raise RecipeError(
            f"{source}: a recipe must be a YAML mapping with keys name, seed, pools, splits, synth; "
            f"got {type(data).__name__}"
        )
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise RecipeError(f"{source}: top-level keys must be strings, got {bad_keys[0]!r}")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise _validation_to_recipe_error(exc, source) from None
    except (TypeError, ValueError, RecursionError, OverflowError) as exc:  # exotic input
        raise RecipeError(f"{source}: the recipe is not valid: {exc}") from None
    _check_references(recipe, source)
    recipe.with_base_dir(base_dir if base_dir is not None else Path.cwd())
    return recipe


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe file; relative paths resolve against its folder.

    Example: ``load_recipe("recipes/demo_in_car.yaml", ["seed=7"])``
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{p}: recipe file not found") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{p}: recipe is not UTF-8 text") from None
    except OSError as exc:
        raise RecipeError(f"{p}: cannot read recipe ({exc.strerror})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"{p}: not valid YAML{where}: {problem}") from None
    except (ValueError, RecursionError) as exc:  # bad dates, !!int abc, very deep nesting
        raise RecipeError(f"{p}: not valid YAML: {_show(str(exc), 200)}") from None
    if data is None:
        raise RecipeError(f"{p}: the recipe file is empty")
    if overrides:
        if not isinstance(data, dict):
            raise RecipeError(f"{p}: a recipe must be a YAML mapping")
        data = apply_overrides(data, overrides)
    return parse_recipe(data, source=str(p), base_dir=p.resolve().parent)


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The normalized recipe (defaults filled in) as plain JSON-able data."""
    return recipe.model_dump(mode="json")


# Fields that decide whether a run may go ahead, not what it writes: changing them must
# not invalidate finished shards.
UNHASHED_FIELDS = ("guards",)


def recipe_hash(recipe: Recipe) -> str:
    """Stable sha256 over the normalized recipe: same content, same hash, any key order.

    Everything that shapes the output bytes is hashed; ``guards`` is not (raising a limit
    does not rewrite finished shards).

    Example: ``recipe_hash(load_recipe("r.yaml"))[:12]``
    """
    data = {k: v for k, v in recipe_to_dict(recipe).items() if k not in UNHASHED_FIELDS}
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
