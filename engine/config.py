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

import math
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union

from pydantic import (BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator,
                      model_serializer, model_validator)
from pydantic_core import PydanticCustomError

from .audio import rooms
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
                               "media_dir": None, "max_peak_dbfs": 20.0, "min_rms_dbfs": -70.0, "min_side_px": 16,
                               # rir_generator: method image_source and its settings
                               "method": "noise", **{k: None for k in (
                                   "room_x_m_range", "room_y_m_range", "room_z_m_range", "absorption_range",
                                   "wall_absorption_range", "rt60_formula", "min_wall_distance_m",
                                   "min_source_mic_distance_m", "source_z_m_range", "mic_z_m_range", "max_order",
                                   "max_length_s", "speed_of_sound_m_s", "air_absorption")}}


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


WALLS = ("x0", "x1", "y0", "y1", "floor", "ceiling")  # engine.audio.rooms.SURFACES, named for people
# The image-source settings a pool with `method: image_source` gets when the recipe leaves
# them out (filled in when the recipe is read, so they are in its hash).
IMAGE_SOURCE_DEFAULTS: dict[str, Any] = {
    "room_x_m_range": (4.0, 10.0), "room_y_m_range": (3.0, 8.0), "room_z_m_range": (2.5, 3.5),
    "rt60_formula": "image_source", "min_wall_distance_m": 0.5, "min_source_mic_distance_m": 0.5,
    "max_length_s": 2.0, "speed_of_sound_m_s": 343.0, "air_absorption": False,
}
IMAGE_SOURCE_FIELDS = (*IMAGE_SOURCE_DEFAULTS, "absorption_range", "wall_absorption_range",
                       "source_z_m_range", "mic_z_m_range", "max_order")
# Worst case images in one response (the smallest room, the longest response): about
# 2 million images take a second of CPU, so above this the worst room would take ten and
# the recipe is refused with what to change.
MAX_IMAGES = 20_000_000


class RirGeneratorPool(StrictModel):
    """Impulse responses made on the fly, no files: ``count`` virtual items (ids
    ``gen:rir/0003``). ``method: noise`` (the default): exponentially decaying noise after
    a direct path, with an RT60 and a direct-to-reverberant ratio drawn once per item
    from the ranges. ``method: image_source``: a shoebox room per item (size, absorption
    or a target RT60, source and microphone positions drawn from the ranges) simulated by
    the image-source method (engine/audio/rooms.py); its RT60 and DRR are measured."""

    kind: Literal["rir_generator"]
    method: Literal["noise", "image_source"] = "noise"
    count: int = Field(100, ge=1, le=100_000)
    rt60_s_range: tuple[float, float] = (0.2, 0.8)
    drr_db_range: tuple[float, float] = (0.0, 12.0)
    sample_rate: int = Field(16000, ge=4000, le=192000)
    holdout: float = Field(0.0, ge=0.0, le=0.9)
    # method: image_source only (None with method: noise, so its recipe hash is unchanged)
    room_x_m_range: tuple[float, float] | None = None
    room_y_m_range: tuple[float, float] | None = None
    room_z_m_range: tuple[float, float] | None = None
    absorption_range: tuple[float, float] | None = None  # every surface; else rt60_s_range is a target
    wall_absorption_range: dict[Literal["x0", "x1", "y0", "y1", "floor", "ceiling"], tuple[float, float]] | None = None
    rt60_formula: Literal["image_source", "eyring", "sabine"] | None = None
    min_wall_distance_m: float | None = Field(None, ge=0.05, le=10.0)
    min_source_mic_distance_m: float | None = Field(None, ge=0.01, le=100.0)
    source_z_m_range: tuple[float, float] | None = None
    mic_z_m_range: tuple[float, float] | None = None
    max_order: int | None = Field(None, ge=0, le=10_000)
    max_length_s: float | None = Field(None, ge=0.01, le=10.0)
    speed_of_sound_m_s: float | None = Field(None, ge=300.0, le=400.0)
    air_absorption: bool | None = None  # high frequencies fade with the distance travelled

    @model_validator(mode="before")
    @classmethod
    def _image_source_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("method") == "image_source":
            data = {**{k: v for k, v in IMAGE_SOURCE_DEFAULTS.items() if data.get(k) is None}, **{
                k: v for k, v in data.items() if v is not None or k not in IMAGE_SOURCE_DEFAULTS}}
        return data

    @field_validator("rt60_s_range", mode="before")
    @classmethod
    def _rt60(cls, v: Any) -> tuple[float, float]:
        return range_pair(v, lo=0.05, hi=3.0, what="RT60 in seconds")

    @field_validator("drr_db_range", mode="before")
    @classmethod
    def _drr(cls, v: Any) -> tuple[float, float]:
        return range_pair(v, lo=-20.0, hi=40.0, what="direct-to-reverberant ratio in dB")

    @field_validator("room_x_m_range", "room_y_m_range", mode="before")
    @classmethod
    def _side(cls, v: Any) -> tuple[float, float] | None:
        return None if v is None else range_pair(v, lo=1.0, hi=100.0, what="room side in metres")

    @field_validator("room_z_m_range", mode="before")
    @classmethod
    def _height(cls, v: Any) -> tuple[float, float] | None:
        return None if v is None else range_pair(v, lo=1.0, hi=30.0, what="room height in metres")

    @field_validator("source_z_m_range", "mic_z_m_range", mode="before")
    @classmethod
    def _z(cls, v: Any) -> tuple[float, float] | None:
        return None if v is None else range_pair(v, lo=0.0, hi=30.0, what="height above the floor in metres")

    @field_validator("absorption_range", mode="before")
    @classmethod
    def _absorption(cls, v: Any) -> tuple[float, float] | None:
        return None if v is None else _absorption_pair(v)

    @field_validator("wall_absorption_range", mode="before")
    @classmethod
    def _walls(cls, v: Any) -> Any:
        if v is None:
            return None
        if not isinstance(v, dict):
            raise ValueError(f"expected a mapping of every surface ({', '.join(WALLS)}) to [low, high], got {show(v)}")
        missing = [w for w in WALLS if w not in v]
        unknown = [w for w in v if w not in WALLS]
        if missing or unknown:
            raise ValueError(f"expected the six surfaces {', '.join(WALLS)}; "
                             + (f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(map(str, unknown))}"))
        out = {}
        for w in WALLS:
            try:
                out[w] = _absorption_pair(v[w])
            except ValueError as exc:
                raise ValueError(f"{w}: {exc}") from None
        return out

    @model_validator(mode="after")
    def _method_fields(self) -> "RirGeneratorPool":
        if self.method == "noise":
            stray = [k for k in IMAGE_SOURCE_FIELDS if getattr(self, k) is not None]
            if stray:
                raise ValueError(f"{', '.join(stray)} {'goes' if len(stray) == 1 else 'go'} with method: image_source "
                                 "(this pool's method is noise: decaying noise from rt60_s_range and drr_db_range)")
            return self
        return _check_rooms(self)


def _absorption_pair(v: Any) -> tuple[float, float]:
    lo, hi = range_pair(v, lo=0.0, hi=1.0, what="absorption coefficient, 0 < a <= 1")
    if lo <= 0.0:
        raise ValueError(f"expected absorption coefficients in (0, 1], got {show(list(v))}: "
                         "0 is a perfectly reflecting wall, whose room never decays")
    return (lo, hi)


def _check_rooms(p: RirGeneratorPool) -> RirGeneratorPool:
    """Can every room the ranges allow be built? Each message names the field to change."""
    # By value, not by which fields the recipe wrote: a recipe is validated again from its
    # own dump (the run record, the workers), where every default is written out.
    defaults = RirGeneratorPool.model_fields
    if p.drr_db_range != defaults["drr_db_range"].default:
        raise ValueError("drr_db_range goes with method: noise; a simulated room's DRR follows from its geometry "
                         "(it is measured and recorded)")
    if p.absorption_range is not None and p.wall_absorption_range is not None:
        raise ValueError("give absorption_range (every surface) or wall_absorption_range (per surface), not both")
    given = p.absorption_range is not None or p.wall_absorption_range is not None
    if given and p.rt60_s_range != defaults["rt60_s_range"].default:
        raise ValueError("give rt60_s_range (a target RT60: the absorption follows by "
                         f"{p.rt60_formula}) or an absorption, not both")
    w = float(p.min_wall_distance_m)
    (x_lo, x_hi), (y_lo, y_hi), (z_lo, z_hi) = p.room_x_m_range, p.room_y_m_range, p.room_z_m_range
    for name, lo in (("room_x_m_range", x_lo), ("room_y_m_range", y_lo), ("room_z_m_range", z_lo)):
        if lo <= 2 * w:
            raise ValueError(f"{name} starts at {lo:g} m, too small for min_wall_distance_m {w:g} "
                             f"(the source and the microphone keep {w:g} m from both walls): "
                             f"raise the range above {2 * w:g} m or lower min_wall_distance_m")
    # heights allowed in the lowest room
    spans = {}
    for name, rng in (("source_z_m_range", p.source_z_m_range), ("mic_z_m_range", p.mic_z_m_range)):
        if rng is None:
            spans[name] = (w, z_lo - w)
        elif rng[0] < w or rng[1] > z_lo - w:
            raise ValueError(f"{name} {show(list(rng))} is outside the lowest room: room_z_m_range starts at "
                             f"{z_lo:g} m and min_wall_distance_m {w:g} leaves heights {w:g} .. {z_lo - w:g} m")
        else:
            spans[name] = rng
    (s_lo, s_hi), (m_lo, m_hi) = spans["source_z_m_range"], spans["mic_z_m_range"]
    dz = max(abs(s_hi - m_lo), abs(m_hi - s_lo))
    far = ((x_lo - 2 * w) ** 2 + (y_lo - 2 * w) ** 2 + dz**2) ** 0.5
    if p.min_source_mic_distance_m > far:
        raise ValueError(f"min_source_mic_distance_m {p.min_source_mic_distance_m:g} cannot be kept in the smallest "
                         f"room ({x_lo:g} x {y_lo:g} x {z_lo:g} m; at most {far:.3g} m apart with min_wall_distance_m "
                         f"{w:g}): lower it or raise the room ranges")
    c = float(p.speed_of_sound_m_s)
    k = 24.0 * math.log(10.0) / c
    big = k * x_hi * y_hi * z_hi / (2 * (x_hi * y_hi + x_hi * z_hi + y_hi * z_hi))  # V/S of the largest room
    if not given:
        if p.rt60_formula == "sabine" and p.rt60_s_range[0] < big:
            raise ValueError(f"rt60_s_range starts at {p.rt60_s_range[0]:g} s, shorter than Sabine allows in the "
                             f"largest room ({x_hi:g} x {y_hi:g} x {z_hi:g} m needs an absorption above 1 below "
                             f"{big:.3g} s): raise the range, shrink room_*_m_range or use rt60_formula: eyring")
        worst = [((x_lo, y_lo, z_lo), p.rt60_s_range[1])]  # every room's response lasts its target
    else:
        # A response lasts its RT60 predicted by rt60_formula: the least absorbing surfaces
        # at each corner of the size ranges.
        lows = ((p.absorption_range[0],) * 6 if p.absorption_range else
                tuple(p.wall_absorption_range[w][0] for w in WALLS))
        worst = [((x, y, z), rooms.predicted_rt60((x, y, z), lows, p.rt60_formula, c))
                 for x in (x_lo, x_hi) for y in (y_lo, y_hi) for z in (z_lo, z_hi)]
    images, reach, size = max(
        (4.0 / 3.0 * math.pi * r**3 / (sz[0] * sz[1] * sz[2]), r, sz)
        for sz, rt60 in worst
        for r in [c * min(float(p.max_length_s), rooms.TAIL_RT60S * rt60 + math.hypot(*sz) / c)])
    if p.max_order is not None:
        n = p.max_order
        images = min(images, (2 * n + 3) * (2 * n + 2) * (2 * n + 1) / 3.0 + 1)  # images of order <= n
    if images > MAX_IMAGES:
        raise ValueError(f"the longest response ({reach / c:.2g} s) in a {size[0]:g} x {size[1]:g} x {size[2]:g} m "
                         f"room needs about {images:.2g} images, over {MAX_IMAGES:.0e} (about ten seconds of CPU "
                         "per room): lower max_length_s, set max_order, lower the top of rt60_s_range (or raise "
                         "the absorption), or raise the lower ends of room_x_m_range / room_y_m_range / "
                         "room_z_m_range")
    return p


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
