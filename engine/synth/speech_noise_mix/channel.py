"""The channel after mixing (``synth.channel``) and the noise perturbations ``eq`` and
``distortion``: their recipe models, their draws and their application (docs/audio.md,
"Channel").

``synth.channel`` is an ordered list of stages, each kept with its probability ``p``:

- ``codec``: one codec per use, drawn by ``weight`` among those configured (``mp3``,
  ``opus``, ``vorbis``, ``gsm``, ``mulaw``, ``alaw``), round trip in memory with its
  delay compensated (:mod:`engine.audio.channel`);
- ``telephone``: a 300-3400 Hz band-pass (edges drawn), and with probability
  ``narrowband_p`` a round trip through 8 kHz;
- ``clip`` (hard, tanh or cubic, ``drive_db`` drawn) and ``bit_depth`` (``bits`` drawn);
- ``peaking``, ``low_shelf``, ``high_shelf`` (``freq_hz``, ``gain_db``, ``q`` drawn) and
  ``notch`` (``freq_hz``, ``q``): RBJ biquads (:mod:`engine.audio.eq`).

A noise layer's or event's ``perturb`` takes the filters as ``eq`` and the distortions as
``distortion`` (lists of the same stages).

Params: ``params["channel"]`` lists the stages that fired, each with ``layer`` (its index
in ``synth.channel``, so coverage finds its ``_range`` fields) and its drawn values;
every value is drawn even for a stage that does not fire, so changing one ``p`` does not
reshuffle the others. What the channel did to the SNR is measured by ``apply`` and
recorded under ``params["applied"]["channel"]``.

Example::

    stages = draw_channel(rng, cfg.channel, 16000)      # in sample_params
    mix, measured = apply_channel(stages, mix, speech, 16000, threshold_db=40.0)
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import Field, field_validator, model_validator

from ...audio import channel as audio_channel
from ...audio import eq, ops
from ...config import StrictModel, int_range, range_pair

# --------------------------------------------------------------------------- models


def _weight() -> Any:
    return Field(1.0, gt=0.0, le=1e6)


class Mp3Codec(StrictModel):
    """MP3 at a constant bitrate drawn from the bitrates its MPEG version has within
    ``bitrate_kbps_range`` (MPEG-2 at 16-24 kHz: 8..160 kbps; MPEG-1 from 32 kHz: 32..320)."""

    weight: float = _weight()
    bitrate_kbps_range: tuple[float, float] = (16.0, 64.0)

    @field_validator("bitrate_kbps_range", mode="before")
    @classmethod
    def _bitrate(cls, v: Any) -> tuple[float, float]:
        return range_pair(v, lo=8.0, hi=320.0, what="MP3 bitrate in kbps")


class OpusCodec(StrictModel):
    """Opus at a bitrate drawn from ``bitrate_kbps_range`` (libopus: 6..256 kbps)."""

    weight: float = _weight()
    bitrate_kbps_range: tuple[float, float] = (8.0, 32.0)

    @field_validator("bitrate_kbps_range", mode="before")
    @classmethod
    def _bitrate(cls, v: Any) -> tuple[float, float]:
        lo, hi = audio_channel.OPUS_BITRATE_KBPS
        return range_pair(v, lo=lo, hi=hi, what="Opus bitrate in kbps, libopus' range for one channel")


class VorbisCodec(StrictModel):
    """Vorbis at a quality drawn from ``quality_range`` (0 = lowest, 1 = highest)."""

    weight: float = _weight()
    quality_range: tuple[float, float] = (0.0, 0.5)

    @field_validator("quality_range", mode="before")
    @classmethod
    def _quality(cls, v: Any) -> tuple[float, float]:
        return range_pair(v, lo=0.0, hi=1.0, what="Vorbis quality, 0 = lowest, 1 = highest")


class FixedCodec(StrictModel):
    """A codec without settings (gsm, mulaw, alaw: telephone codecs at 8 kHz)."""

    weight: float = _weight()


class CodecStage(StrictModel):
    """A codec round trip: with probability ``p``, one of the configured codecs, drawn by
    ``weight``, its setting drawn from its range."""

    type: Literal["codec"]
    p: float = Field(1.0, ge=0.0, le=1.0)
    mp3: Mp3Codec | None = None
    opus: OpusCodec | None = None
    vorbis: VorbisCodec | None = None
    gsm: FixedCodec | None = None
    mulaw: FixedCodec | None = None
    alaw: FixedCodec | None = None

    @model_validator(mode="after")
    def _some_codec(self) -> "CodecStage":
        if not self.codecs():
            raise ValueError(f"name at least one codec ({', '.join(audio_channel.CODECS)}), e.g. mp3: {{}}")
        return self

    def codecs(self) -> list[tuple[str, Any]]:
        """``(name, config)`` of the configured codecs, in a fixed order."""
        return [(name, getattr(self, name)) for name in audio_channel.CODECS if getattr(self, name) is not None]


class TelephoneStage(StrictModel):
    """A telephone band: Butterworth band-pass from ``low_hz`` to ``high_hz`` (drawn), and
    with probability ``narrowband_p`` a round trip through 8 kHz."""

    type: Literal["telephone"]
    p: float = Field(1.0, ge=0.0, le=1.0)
    low_hz_range: tuple[float, float] = (300.0, 300.0)
    high_hz_range: tuple[float, float] = (3400.0, 3400.0)
    order: int = Field(4, ge=2, le=8, multiple_of=2)
    narrowband_p: float = Field(0.0, ge=0.0, le=1.0)

    @field_validator("low_hz_range", "high_hz_range", mode="before")
    @classmethod
    def _edges(cls, v: Any) -> tuple[float, float]:
        return _above_zero(v, 96000.0, "band edge in Hz", "band edges above 0 Hz")

    @model_validator(mode="after")
    def _band(self) -> "TelephoneStage":
        if self.low_hz_range[1] >= self.high_hz_range[0]:
            raise ValueError(f"low_hz_range (up to {self.low_hz_range[1]:g} Hz) must stay below high_hz_range "
                             f"(from {self.high_hz_range[0]:g} Hz)")
        return self


class ClipStage(StrictModel):
    """Clipping with a curve drawn from ``curves``: the input's peak lies ``drive_db``
    (drawn) above the clipping threshold."""

    type: Literal["clip"]
    p: float = Field(1.0, ge=0.0, le=1.0)
    curves: list[Literal["hard", "tanh", "cubic"]] = Field(default_factory=lambda: list(eq.CLIP_CURVES), min_length=1)
    drive_db_range: tuple[float, float] = (0.0, 12.0)

    @field_validator("drive_db_range", mode="before")
    @classmethod
    def _drive(cls, v: Any) -> tuple[float, float]:
        return range_pair(v, lo=0.0, hi=40.0, what="dB the peak lies above the clipping threshold")


class BitDepthStage(StrictModel):
    """Quantization to ``bits`` (drawn, whole) with the input's peak as full scale."""

    type: Literal["bit_depth"]
    p: float = Field(1.0, ge=0.0, le=1.0)
    bits_range: tuple[int, int] = (6, 12)

    @field_validator("bits_range", mode="before")
    @classmethod
    def _bits(cls, v: Any) -> tuple[int, int]:
        return int_range(v, lo=2, hi=24, what="bits of the quantizer")


def _above_zero(v: Any, hi: float, what: str, expected: str) -> tuple[float, float]:
    """A ``[low, high]`` range within ``(0, hi]``: ``range_pair``, and a low end above 0."""
    low, high = range_pair(v, lo=0.0, hi=hi, what=what)
    if low <= 0:
        raise ValueError(f"expected {expected}, got [{low:g}, {high:g}]")
    return (low, high)


class _Biquad(StrictModel):
    """The validators of what every biquad stage draws: ``freq_hz`` and ``q`` (each stage
    declares the fields, with its own defaults)."""

    @field_validator("freq_hz_range", mode="before", check_fields=False)
    @classmethod
    def _freq_range(cls, v: Any) -> tuple[float, float]:
        return _above_zero(v, 96000.0, "frequency in Hz", "frequencies above 0 Hz")

    @field_validator("q_range", mode="before", check_fields=False)
    @classmethod
    def _q_range(cls, v: Any) -> tuple[float, float]:
        return _above_zero(v, 100.0, "quality factor Q", "Q above 0")


class EqStage(_Biquad):
    """A peaking, low-shelf or high-shelf biquad (RBJ cookbook) with ``freq_hz``,
    ``gain_db`` and ``q`` drawn."""

    type: Literal["peaking", "low_shelf", "high_shelf"]
    p: float = Field(1.0, ge=0.0, le=1.0)
    freq_hz_range: tuple[float, float]
    gain_db_range: tuple[float, float] = (-12.0, 12.0)
    q_range: tuple[float, float] = (0.5, 2.0)

    @field_validator("gain_db_range", mode="before")
    @classmethod
    def _gain(cls, v: Any) -> tuple[float, float]:
        return range_pair(v, lo=-40.0, hi=40.0, what="filter gain in dB")


class NotchStage(_Biquad):
    """A band-stop (notch) biquad (RBJ cookbook) with ``freq_hz`` and ``q`` drawn."""

    type: Literal["notch"]
    p: float = Field(1.0, ge=0.0, le=1.0)
    freq_hz_range: tuple[float, float]
    q_range: tuple[float, float] = (2.0, 10.0)


ChannelStage = Annotated[
    Union[CodecStage, TelephoneStage, ClipStage, BitDepthStage, EqStage, NotchStage], Field(discriminator="type")
]
EqEffect = Annotated[Union[EqStage, NotchStage], Field(discriminator="type")]
Distortion = Annotated[Union[ClipStage, BitDepthStage], Field(discriminator="type")]
_FILTERED = (EqStage, NotchStage, TelephoneStage)


# --------------------------------------------------------------------------- validation at a rate


def rate_problems(channel: list[Any] | None, layers: list[tuple[str, int, Any]], rate: int,
                  where_rate: str) -> list[str]:
    """Frequencies not below the Nyquist frequency of ``rate``, and MP3 bitrates the MPEG
    version at that rate does not have, each naming its field. ``layers`` is
    ``(where, index, layer config)`` of the noise layers and events (their perturb's eq).

    Example: ``rate_problems(cfg.channel, [], 16000, "synth.sample_rate 16000")``
    """
    nyquist = rate / 2.0
    problems = []

    def freq(path: str, stage: Any) -> None:
        names = ("low_hz_range", "high_hz_range") if isinstance(stage, TelephoneStage) else ("freq_hz_range",)
        for name in names:
            top = getattr(stage, name)[1]
            if top >= nyquist:
                problems.append(f"{path}.{name}: {top:g} Hz is not below the Nyquist frequency ({nyquist:g} Hz) "
                                f"of {where_rate}")

    for i, stage in enumerate(channel or []):
        path = f"synth.channel[{i}]"
        if isinstance(stage, _FILTERED):
            freq(path, stage)
        if isinstance(stage, CodecStage) and stage.mp3 is not None:
            lo, hi = stage.mp3.bitrate_kbps_range
            mp3_rate = audio_channel.codec_rate("mp3", rate)
            have = audio_channel.mp3_bitrates_kbps(rate)
            if lo < have[0] or hi > have[-1]:
                problems.append(
                    f"{path}.mp3.bitrate_kbps_range: an MP3 of {where_rate} runs at {mp3_rate} Hz "
                    f"({audio_channel.mp3_version(mp3_rate)}), which has {have[0]}..{have[-1]} kbps "
                    f"({', '.join(map(str, have))}); got [{lo:g}, {hi:g}]")
    for where, i, layer in layers:
        perturb = getattr(layer, "perturb", None)
        for j, stage in enumerate(getattr(perturb, "eq", None) or []):
            freq(f"synth.{where}[{i}].perturb.eq[{j}]", stage)
    return problems


# --------------------------------------------------------------------------- draws


def _draw_stage(rng: np.random.Generator, stage: Any, rate: int) -> dict[str, Any]:
    """Every value of one stage, in a fixed order (drawn whether or not it fires)."""
    if isinstance(stage, CodecStage):
        codecs = stage.codecs()
        u = float(rng.random())
        values: dict[str, dict[str, float]] = {}
        for name, cfg in codecs:
            if name == "mp3":
                lo, hi = cfg.bitrate_kbps_range
                have = [b for b in audio_channel.mp3_bitrates_kbps(rate) if lo <= b <= hi]
                k = int(rng.integers(max(1, len(have))))
                if have:  # rate_problems refused a range without any bitrate at this rate
                    values[name] = {"bitrate_kbps": float(have[k])}
            elif name == "opus":
                values[name] = {"bitrate_kbps": float(rng.uniform(*cfg.bitrate_kbps_range))}
            elif name == "vorbis":
                values[name] = {"quality": float(rng.uniform(*cfg.quality_range))}
        total = sum(cfg.weight for _, cfg in codecs)
        acc, chosen = 0.0, codecs[-1][0]
        for name, cfg in codecs:
            acc += cfg.weight / total
            if u < acc:
                chosen = name
                break
        out: dict[str, Any] = {"type": "codec", "codec": chosen}
        if chosen in values:
            out[chosen] = values[chosen]
        return out
    if isinstance(stage, TelephoneStage):
        return {"type": "telephone", "low_hz": float(rng.uniform(*stage.low_hz_range)),
                "high_hz": float(rng.uniform(*stage.high_hz_range)),
                "narrowband": bool(rng.random() < stage.narrowband_p)}
    if isinstance(stage, ClipStage):
        return {"type": "clip", "curve": stage.curves[int(rng.integers(len(stage.curves)))],
                "drive_db": float(rng.uniform(*stage.drive_db_range))}
    if isinstance(stage, BitDepthStage):
        return {"type": "bit_depth", "bits": int(rng.integers(stage.bits_range[0], stage.bits_range[1] + 1))}
    if isinstance(stage, EqStage):
        return {"type": stage.type, "freq_hz": float(rng.uniform(*stage.freq_hz_range)),
                "gain_db": float(rng.uniform(*stage.gain_db_range)), "q": float(rng.uniform(*stage.q_range))}
    if isinstance(stage, NotchStage):
        return {"type": "notch", "freq_hz": float(rng.uniform(*stage.freq_hz_range)),
                "q": float(rng.uniform(*stage.q_range))}
    raise TypeError(f"not a channel stage: {stage!r}")


def draw_stages(rng: np.random.Generator, stages: list[Any] | None, rate: int) -> list[dict[str, Any]]:
    """The stages of ``stages`` that fire, each ``{"layer": index, "type": ..., values}``;
    nothing is drawn without stages. ``rate`` is the output rate (it decides the bitrates
    an MP3 has; no other stage needs it).

    Example: ``draw_stages(rng, cfg.channel, 16000)``
    """
    out = []
    for i, stage in enumerate(stages or []):
        fire = rng.random() < stage.p
        values = _draw_stage(rng, stage, rate)
        if fire:
            out.append({"layer": i, **values})
    return out


def draw_channel(rng: np.random.Generator, stages: list[Any] | None, rate: int, params: dict[str, Any]) -> None:
    """Draw ``synth.channel`` into ``params["channel"]`` (left out when no stage fires)."""
    drawn = draw_stages(rng, stages, rate)
    if drawn:
        params["channel"] = drawn


def draw_effects(rng: np.random.Generator, perturb: Any, out: dict[str, Any]) -> None:
    """Draw a perturb's ``eq`` and ``distortion`` into ``out`` (its params), after its
    other values; nothing is drawn when neither is configured."""
    for name in ("eq", "distortion"):
        stages = getattr(perturb, name, None)
        if stages:
            drawn = draw_stages(rng, stages, 0)
            if drawn:
                out[name] = drawn


# --------------------------------------------------------------------------- application


def apply_stage(x: np.ndarray, rate: int, stage: dict[str, Any], reference: float | None = None) -> tuple[np.ndarray, float | None]:
    """One drawn stage on mono ``x``; returns ``(y, reference)`` where ``reference`` is
    the amplitude a clip or bit-depth stage took as its peak (given, or measured on
    ``x``), so that another signal can be treated exactly the same.

    Example: ``y, _ = apply_stage(x, 16000, {"type": "notch", "freq_hz": 50.0, "q": 10.0})``
    """
    kind = stage["type"]
    if kind == "codec":
        setting = stage.get(stage["codec"], {})
        return audio_channel.codec_round_trip(x, rate, stage["codec"], **setting), None
    if kind == "telephone":
        order = int(stage.get("order", 4))
        return audio_channel.telephone_band(x, rate, low_hz=stage["low_hz"], high_hz=stage["high_hz"], order=order,
                                            narrowband=bool(stage.get("narrowband"))), None
    if kind in ("clip", "bit_depth"):
        ref = ops.peak(x) if reference is None else reference
        if kind == "clip":
            return eq.clip(x, stage["curve"], stage["drive_db"], reference=ref), ref
        return eq.bit_depth(x, stage["bits"], reference=ref), ref
    if kind in eq.BIQUAD_TYPES:
        return eq.biquad(x, rate, kind, freq_hz=stage["freq_hz"], gain_db=stage.get("gain_db", 0.0),
                         q=stage["q"]), None
    raise ValueError(f"unknown channel stage type {kind!r}")


def run_stages(x: np.ndarray, rate: int, stages: list[dict[str, Any]], config: list[Any] | None = None,
               references: list[float | None] | None = None) -> tuple[np.ndarray, list[float | None]]:
    """Every drawn stage in order; ``config`` (the stages' recipe models, by ``layer``)
    gives settings that are not drawn (a telephone stage's ``order``). Returns the output
    and the references the stages took (see :func:`apply_stage`)."""
    used: list[float | None] = []
    y = x
    for j, stage in enumerate(stages):
        layer = int(stage.get("layer", -1))
        model = config[layer] if config is not None and 0 <= layer < len(config) else None
        if isinstance(model, TelephoneStage):
            stage = {**stage, "order": model.order}
        y, ref = apply_stage(y, rate, stage, None if references is None else references[j])
        used.append(ref)
    return y, used


def apply_effects(seg: np.ndarray, rate: int, perturb: dict[str, Any]) -> np.ndarray:
    """A noise piece's drawn ``eq`` then ``distortion`` (``seg`` itself without them)."""
    for name in ("eq", "distortion"):
        if perturb.get(name):
            seg, _ = run_stages(seg, rate, perturb[name])
    return seg


def _snr_db(speech: np.ndarray, noise: np.ndarray, rate: int, threshold_db: float) -> float | None:
    p_noise = ops.power(noise)
    p_speech = ops.active_power(speech, rate, threshold_db=threshold_db)
    if not (p_noise > 0 and p_speech > 0):
        return None
    value = 10.0 * math.log10(p_speech / p_noise)
    return value if math.isfinite(value) else None


def apply_channel(stages: list[dict[str, Any]], config: list[Any] | None, mix: np.ndarray, speech: np.ndarray,
                  rate: int, threshold_db: float) -> tuple[np.ndarray, dict[str, Any]]:
    """The channel on the mix, and what it did to the SNR.

    ``speech`` is the speech as it is in ``mix`` (same gains). It goes through the same
    stages with the same settings (a clip's threshold and a quantizer's full scale those
    of the mix), and the SNR is measured before and after by the contract's definition
    (active power of the speech; mean square of everything else, here ``mix - speech``):
    ``{"snr_db_before": ..., "snr_db_after": ...}`` (null when not measurable).

    Example: ``out, measured = apply_channel(params["channel"], cfg.channel, mix, speech, 16000, 40.0)``
    """
    before = _snr_db(speech, mix - speech, rate, threshold_db)
    y, refs = run_stages(mix, rate, stages, config)
    speech_after, _ = run_stages(speech, rate, stages, config, references=refs)
    after = _snr_db(speech_after, y - speech_after, rate, threshold_db)
    return y, {"snr_db_before": before, "snr_db_after": after}
