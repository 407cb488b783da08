"""The recipe's ``synth`` block for ``type: speech_noise_mix``: noise layers, events,
reverb, perturbation, level and peak control (see docs/audio.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from ...config import StrictModel, SynthConfig, int_range, range_pair, show
from .speech_perturb import SpeechPerturb
from .channel import ChannelStage, Distortion, EqEffect, rate_problems as channel_rate_problems

if TYPE_CHECKING:
    from ...recipe import Recipe

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
        low, high = range_pair(v, lo=0.0, hi=96000.0, what="cut-off frequency in Hz")
        if low <= 0:
            raise ValueError(f"expected cut-off frequencies above 0 Hz, got {show(list(v))}")
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
    sweep, so a constant gain would cancel out), a filter, and time reversal; then, after
    the filter, ``eq`` biquads and ``distortion`` (synth.channel's stages, channel.py)."""

    dumped_when_set = frozenset({"eq", "distortion"})
    speed_range: tuple[float, float] | None = None
    gain_db_range: tuple[float, float] | None = None
    filter: FilterPerturb | None = None
    reverse_p: float = Field(0.0, ge=0.0, le=1.0)
    eq: list[EqEffect] | None = None
    distortion: list[Distortion] | None = None

    @field_validator("speed_range", mode="before")
    @classmethod
    def _speed(cls, v: Any) -> tuple[float, float] | None:
        return None if v is None else range_pair(v, lo=0.5, hi=2.0, what="speed factor, 1.0 = unchanged")

    @field_validator("gain_db_range", mode="before")
    @classmethod
    def _gain(cls, v: Any) -> tuple[float, float] | None:
        return None if v is None else range_pair(v, lo=-40.0, hi=40.0, what="level sweep in dB")


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
        return range_pair(v, lo=-40.0, hi=100.0, what="SNR in dB")


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
        return range_pair(v, lo=-40.0, hi=100.0, what="SNR in dB")

    @field_validator("count_range", mode="before")
    @classmethod
    def _count(cls, v: Any) -> tuple[int, int]:
        return int_range(v, lo=0, hi=20, what="events per sample")


class Reverb(StrictModel):
    """Convolution with a room impulse response from ``pool`` (files or an
    ``rir_generator``), with probability ``p``; aligned on the direct path."""

    pool: str
    p: float = Field(1.0, ge=0.0, le=1.0)
    apply_to: Literal["speech", "speech_and_noise"] = "speech"


class SpeechNoiseMix(SynthConfig):
    dumped_when_set = frozenset({"channel", "speech_perturb"})
    type: Literal["speech_noise_mix"]
    speech: str
    speech_perturb: SpeechPerturb | None = None
    noise: list[NoiseLayer] = Field(min_length=1)
    total_snr_db_range: tuple[float, float] | None = None
    events: list[EventLayer] = Field(default_factory=list)
    reverb: Reverb | None = None
    level_dbfs_range: tuple[float, float] | None = None
    # The output rate. Unset: the speech pool's rate (its `sample_rate`, or the one rate
    # all its items share); speech at another rate is resampled to it.
    sample_rate: int | None = Field(None, ge=4000, le=192000)
    clipping: Literal["rescale", "reject", "allow"] = "rescale"
    peak_dbfs: float = Field(-1.0, le=0.0, ge=-60.0)
    crossfade_s: float = Field(0.05, ge=0.0, le=1.0)
    active_threshold_db: float = Field(40.0, gt=0.0, le=120.0)
    # Stages after mixing and level (codecs, telephone band, distortion, EQ): channel.py.
    channel: list[ChannelStage] | None = None

    @field_validator("total_snr_db_range", mode="before")
    @classmethod
    def _total_snr(cls, v: Any) -> tuple[float, float] | None:
        return None if v is None else range_pair(v, lo=-40.0, hi=100.0, what="SNR in dB")

    @field_validator("level_dbfs_range", mode="before")
    @classmethod
    def _level(cls, v: Any) -> tuple[float, float] | None:
        return None if v is None else range_pair(v, lo=-80.0, hi=0.0, what="RMS of the active speech in dBFS")

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

    def min_durations_s(self) -> dict[str, float]:
        """Speech 0.25 s (shorter is not an utterance), a looped noise layer 1 s (shorter
        loops into a buzz at the loop rate), events 0.05 s, room responses 0.01 s; a pool in
        two roles takes the larger."""
        role_min = {"synth.speech": 0.25, "synth.noise": 1.0, "synth.events": 0.05, "synth.reverb": 0.01}
        out: dict[str, float] = {}
        for field, name, _ in self.pool_refs():
            least = role_min[field.split("[", 1)[0].removesuffix(".pool")]
            out[name] = max(out.get(name, 0.0), least)
        return out

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
        rate = self.sample_rate or getattr(recipe.pools[self.speech], "sample_rate", None)
        return problems + (self.rate_problems(rate) if rate else [])

    def rate_problems(self, rate: int) -> list[str]:
        """Filter cut-offs that are not below the Nyquist frequency of the output rate."""
        problems = []
        where_rate = f"synth.sample_rate {rate}" if self.sample_rate else f"the output rate ({rate} Hz, the speech pool's)"
        nyquist = rate / 2.0
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
                        f"frequency ({nyquist:g} Hz) of {where_rate}"
                    )
        return problems + channel_rate_problems(self.channel, layers, rate, where_rate)


