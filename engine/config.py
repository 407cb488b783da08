"""The recipe's building blocks that every part of a run shares: strict models with clear
errors, range validators, and the models of the output, pools, splits and guards.

A synthesizer's own configuration lives in its package (``engine/synth/<type>/config.py``)
and subclasses :class:`SynthConfig`; :mod:`engine.recipe` assembles the whole recipe.

Example::

    class MyConfig(SynthConfig):
        type: Literal["my_type"]
        speech: str
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union

from pydantic import (BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator,
                      model_serializer, model_validator)
from pydantic_core import PydanticCustomError

from .image.pipeline import TransformSpecError, normalize_transforms  # albumentations itself loads lazily

if TYPE_CHECKING:
    from .recipe import Recipe

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SPLIT_PATTERN = r"^[a-z0-9][a-z0-9_]{0,63}$"


class StrictModel(BaseModel):
    # allow_inf_nan=False: a NaN or an infinity is no setting (`.inf` would pass `ge=0`
    # and mean "no limit" by accident; NaN fails every comparison): refused in every field.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    # Optional fields added after a model was first released: left out of its dump while
    # unset (None), so a recipe that does not use them keeps its recipe hash.
    dumped_when_set: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _leave_out_unset(self, handler: Any) -> Any:
        data = handler(self)
        if self.dumped_when_set and isinstance(data, dict):
            for name in self.dumped_when_set:
                if name in data and data[name] is None:
                    del data[name]
        return data


def show(value: Any, limit: int = 120) -> str:
    """repr() for messages: short, and safe for integers too long to print."""
    try:
        text = repr(value)
    except ValueError:  # int longer than sys.get_int_max_str_digits()
        return f"<an integer of about {int(value.bit_length() * 0.30103)} digits>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def range_pair(value: Any, *, lo: float, hi: float, what: str) -> tuple[float, float]:
    """Validate a ``[low, high]`` pair within ``[lo, hi]``; messages say what is expected."""
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(f"expected [low, high] ({what}), got {show(value)}")
    try:
        low, high = float(value[0]), float(value[1])
    except OverflowError:
        raise ValueError(f"expected [low, high] of finite numbers ({what}), got a number too large") from None
    if not (low == low and high == high):  # NaN
        raise ValueError(f"expected [low, high] of finite numbers, got {show(list(value))}")
    if low > high:
        raise ValueError(f"expected [low, high] with low <= high, got {show(list(value))}")
    if low < lo or high > hi:
        raise ValueError(f"expected values within [{lo:g}, {hi:g}] ({what}), got {show(list(value))}")
    return (low, high)



def int_range(value: Any, *, lo: int, hi: int, what: str) -> tuple[int, int]:
    low, high = range_pair(value, lo=lo, hi=hi, what=what)
    if low != int(low) or high != int(high):
        raise ValueError(f"expected [low, high] of whole numbers ({what}), got {show(list(value))}")
    return (int(low), int(high))


def validate_transforms(value: Any) -> list[dict[str, Any]]:
    """Validate an albumentations transform list (see engine/image/pipeline.py); every
    problem is reported at its own path, e.g. ``synth.transforms[2].GaussianBlur.blur_limit``."""
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



# --------------------------------------------------------------------------- output


class Output(StrictModel):
    format: Literal["arrow", "parquet"] = "arrow"
    samples_per_shard: int = Field(1000, ge=1, le=1_000_000)
    audio_codec: Literal["flac", "wav"] = "flac"
    image_format: Literal["png", "jpeg", "webp"] = "png"  # image synthesizers' output encoding
    image_quality: int = Field(90, ge=1, le=100)  # JPEG / WebP quality; PNG is lossless


# --------------------------------------------------------------------------- pools


POOL_FORMATS = ("files", "table", "kaldi", "lhotse", "webdataset")
AUDIO_ONLY_FORMATS = ("kaldi", "lhotse")  # their items are stretches of recordings
# Pool fields added after the first release enter the recipe hash only when they differ
# from these defaults, so an output written before them still resumes.
POOL_FIELDS_HASHED_WHEN_SET = {"format": "files", "media_column": None, "key_column": None, "label_columns": None,
                               "media_dir": None, "max_peak_dbfs": 20.0, "min_rms_dbfs": -70.0, "min_side_px": 16}


# The most channels a source file may have (engine.audio.io.MAX_CHANNELS; a test keeps
# the two equal): more is a reject when indexed, so max_channels cannot allow more.
READABLE_CHANNELS = 8


class _FilePool(StrictModel):
    paths: list[str] | None = None
    manifest: str | None = None
    path_column: str = "path"
    # The folder the manifest's relative paths resolve against (default: the manifest's
    # own folder). Common Voice's TSVs name clips inside clips/: media_dir: clips
    media_dir: str | None = None
    holdout: float = Field(0.0, ge=0.0, le=0.9)
    # How `paths` hold the items: loose media files, tables whose rows hold them (the
    # Hugging Face Audio / Image struct: Parquet, Arrow, a `datasets.save_to_disk` folder,
    # a shardsmith output folder), Kaldi / ESPnet data dirs, Lhotse JSONL manifests, or
    # WebDataset tar shards.
    format: Literal["files", "table", "kaldi", "lhotse", "webdataset"] = "files"
    media_column: str | None = None  # table: the struct column (default: the pool kind, audio or image)
    # webdataset: media_column is the extension of the member to take (default: the one audio/image member)
    key_column: str | None = None  # table: a column naming each row (default: the row number)
    label_columns: list[str] | None = None  # table, webdataset: the labels carried (default: every plain one)

    @field_validator("paths")
    @classmethod
    def _paths_not_empty(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or any(not isinstance(p, str) or not p.strip() for p in v)):
            raise ValueError(f"expected a non-empty list of glob patterns, got {v!r}")
        return v

    @field_validator("manifest", "media_dir")
    @classmethod
    def _a_path(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError(f"expected the path of a file or folder, got {v!r}; give a path or leave the key out")
        if v is not None and "\x00" in v:
            raise ValueError(f"the path holds a NUL byte ({show(v)}), which no file name can")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> "_FilePool":
        if (self.paths is None) == (self.manifest is None):
            raise ValueError(
                "give exactly one of 'paths' (a list of globs) or 'manifest' "
                "(a CSV, JSONL or Parquet file with a 'path' column)"
            )
        if self.format != "files" and self.paths is None:
            raise ValueError(f"format {self.format!r} reads its containers from 'paths' (globs, folders or URIs), "
                             "not from a manifest")
        if self.media_dir is not None and self.manifest is None:
            raise ValueError("media_dir says where a manifest's relative paths point; it goes with 'manifest'")
        if self.format not in ("table", "webdataset") and (
                self.media_column or self.key_column or self.label_columns is not None):
            raise ValueError("media_column, key_column and label_columns go with format: table "
                             "(media_column and label_columns with format: webdataset too)")
        if self.format == "webdataset" and self.key_column:
            raise ValueError("key_column goes with format: table; a webdataset item is named by its members' key")
        kind = getattr(self, "kind", "audio")
        if self.format in AUDIO_ONLY_FORMATS and kind != "audio":
            raise ValueError(f"format {self.format!r} lists audio recordings; {kind} pools read format files, "
                             "table or webdataset")
        return self


class AudioPool(_FilePool):
    kind: Literal["audio"] = "audio"
    sample_rate: int | None = Field(None, ge=1000, le=384000)
    max_channels: int = Field(2, ge=1)
    # Shorter files are rejects. Unset: the minimum of the role the synthesizer gives the
    # pool (SynthConfig.min_durations_s: a speech_noise_mix speech pool 0.25 s, a looped
    # noise layer 1 s, events 0.05 s, room responses 0.01 s); 0 takes any length.
    min_duration_s: float | None = Field(None, ge=0.0)
    max_duration_s: float | None = Field(None, gt=0.0)
    # Levels a recording can have: a file whose peak is above max_peak_dbfs (a float file
    # scaled far past full scale, a 1e30 burst) or whose RMS over the whole file is below
    # min_rms_dbfs (next to silence) is a reject.
    max_peak_dbfs: float = Field(20.0, ge=0.0, le=800.0)  # float32 tops out at +770.6 dBFS
    min_rms_dbfs: float = Field(-70.0, ge=-200.0, le=0.0)

    @field_validator("max_channels")
    @classmethod
    def _readable_channels(cls, v: int) -> int:
        if v > READABLE_CHANNELS:
            raise ValueError(
                f"at most {READABLE_CHANNELS}, got {show(v)}: a file of more than {READABLE_CHANNELS} channels "
                "is rejected when its pool is indexed whatever this says, so a larger limit would let nothing more in"
            )
        return v


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
    # Smaller images (width or height in pixels) are rejects: a 1x1 image blown up to the
    # output size is a solid colour, not a training image.
    min_side_px: int = Field(16, ge=1, le=65_535)
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
        return range_pair(v, lo=-6.0, hi=6.0, what="dB per octave added to the colour's slope")

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
        return range_pair(v, lo=0.05, hi=3.0, what="RT60 in seconds")

    @field_validator("drr_db_range", mode="before")
    @classmethod
    def _drr(cls, v: Any) -> tuple[float, float]:
        return range_pair(v, lo=-20.0, hi=40.0, what="direct-to-reverberant ratio in dB")


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




# --------------------------------------------------------------------------- synthesizers


class SynthConfig(StrictModel):
    """Base of every synthesizer's configuration (the recipe's ``synth`` block).

    A subclass declares ``type: Literal["its_type"]`` and its own fields, and says which
    pools it names (:meth:`pool_refs`); the recipe checks those names and kinds for it.
    """

    type: str

    def pool_refs(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """(field path, pool name, allowed pool kinds) for every pool this synth names."""
        raise NotImplementedError

    def pools_used(self) -> list[str]:
        return list(dict.fromkeys(name for _, name, _ in self.pool_refs()))

    def holdout_pools(self) -> list[str]:
        """Pools whose held-out items make a holdout split 'unseen' (default: all it names)."""
        return self.pools_used()

    def min_durations_s(self) -> dict[str, float]:
        """The shortest usable source in seconds for each audio pool, by the role this
        synthesizer gives it (a pool's own ``min_duration_s`` wins). Default: none."""
        return {}

    def check_recipe(self, recipe: "Recipe") -> list[str]:
        """Cross-field problems with the rest of the recipe, one message each (default: none)."""
        return []
