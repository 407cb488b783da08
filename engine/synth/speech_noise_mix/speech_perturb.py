"""Perturbation of the clean speech (``synth.speech_perturb``): speed, tempo, pitch and
gain, each drawn from its ``_range`` and applied with its probability, on the utterance
before reverb and mixing (see docs/audio.md, "Speech perturbation").

Three parts, as every transform here: :class:`SpeechPerturb` (the recipe block),
:func:`draw` (the sample's generator -> JSON-able params, only the stages that fire) and
:func:`apply` (params -> audio, deterministic). The params name each value as the recipe
names its range (``speed`` <- ``speed_range``), so coverage histograms them.

Timing: speed and tempo change the duration, pitch and gain do not. A time ``t`` in the
utterance (a word, a segment) is at ``t / (speed * tempo)`` in the output
(:func:`time_scale`): exactly under speed (resampling), within a quarter WSOLA frame
(8 ms) under tempo and pitch (:mod:`engine.audio.stretch`).

Example::

    cfg = SpeechPerturb(speed_range=(0.9, 1.1), tempo_range=(0.9, 1.1), tempo_p=0.5)
    params = draw(rng, cfg)            # e.g. {"speed": 1.07, "tempo": 0.93}
    y = apply(x, params, 16000)        # len(y) == round(round(len(x) / 1.07) / 0.93)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, field_validator, model_serializer, model_validator

from ...config import StrictModel, range_pair

# (stage, its range field, its probability field), in the order they are drawn and applied
STAGES = (
    ("speed", "speed_range", "speed_p"),
    ("tempo", "tempo_range", "tempo_p"),
    ("pitch_semitones", "pitch_semitones_range", "pitch_p"),
    ("gain_db", "gain_db_range", "gain_p"),
)


class SpeechPerturb(StrictModel):
    """Perturbation of the clean utterance, each stage with probability ``*_p`` when its
    range is given: ``speed`` (polyphase resampling: 1.1 = 10 % faster, shorter and
    higher), ``tempo`` (WSOLA time-stretch: faster or slower, same pitch),
    ``pitch_semitones`` (pitch shift, same duration) and ``gain_db`` (a constant gain).

    The SNR is set against the speech as perturbed, so no stage changes an SNR; the gain
    changes the output level only when ``level_dbfs_range`` is unset (the level is set
    after it and undoes it)."""

    speed_range: tuple[float, float] | None = None
    speed_p: float = Field(1.0, ge=0.0, le=1.0)
    tempo_range: tuple[float, float] | None = None
    tempo_p: float = Field(1.0, ge=0.0, le=1.0)
    pitch_semitones_range: tuple[float, float] | None = None
    pitch_p: float = Field(1.0, ge=0.0, le=1.0)
    gain_db_range: tuple[float, float] | None = None
    gain_p: float = Field(1.0, ge=0.0, le=1.0)

    @field_validator("speed_range", mode="before")
    @classmethod
    def _speed(cls, v: Any) -> tuple[float, float] | None:
        return None if v is None else range_pair(v, lo=0.5, hi=2.0, what="speed factor, 1.0 = unchanged")

    @field_validator("tempo_range", mode="before")
    @classmethod
    def _tempo(cls, v: Any) -> tuple[float, float] | None:
        return None if v is None else range_pair(v, lo=0.5, hi=2.0, what="tempo factor, 1.0 = unchanged")

    @field_validator("pitch_semitones_range", mode="before")
    @classmethod
    def _pitch(cls, v: Any) -> tuple[float, float] | None:
        return None if v is None else range_pair(v, lo=-12.0, hi=12.0, what="pitch shift in semitones")

    @field_validator("gain_db_range", mode="before")
    @classmethod
    def _gain(cls, v: Any) -> tuple[float, float] | None:
        return None if v is None else range_pair(v, lo=-40.0, hi=40.0, what="speech gain in dB")

    @model_validator(mode="before")
    @classmethod
    def _p_needs_its_range(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for _, range_field, p_field in STAGES:
                if p_field in data and data.get(range_field) is None:
                    raise ValueError(f"{p_field} is set but {range_field} is not: give {range_field} "
                                     f"([low, high]) for the stage to happen, or drop {p_field}")
        return data

    @model_serializer(mode="wrap")
    def _leave_out_unset(self, handler: Any) -> Any:
        # A stage without its range dumps no probability either: the dump (run.json, the
        # recipe hash, a worker's copy) must parse again, and `_p_needs_its_range` refuses
        # a `*_p` whose range is unset. A block with every range keeps its dump and hash.
        data = handler(self)
        if isinstance(data, dict):
            for _, range_field, p_field in STAGES:
                if data.get(range_field) is None:
                    data.pop(p_field, None)
        return data

    @model_validator(mode="after")
    def _something(self) -> "SpeechPerturb":
        if all(getattr(self, range_field) is None for _, range_field, _ in STAGES):
            raise ValueError("no stage given: set at least one of " +
                             ", ".join(range_field for _, range_field, _ in STAGES) +
                             " (or drop synth.speech_perturb)")
        return self


def draw(rng: np.random.Generator, cfg: SpeechPerturb) -> dict[str, float]:
    """The stages that fire for one sample, ``{stage: value}``. Every configured stage
    draws its coin and its value even when it does not fire, so that changing one
    probability does not reshuffle the others. A speed is a fraction ``p/q`` with
    ``q <= 100`` (a small polyphase filter), as a noise layer's speed is.

    Example: ``draw(np.random.default_rng(0), SpeechPerturb(gain_db_range=(-6, 6)))  # {"gain_db": ...}``
    """
    from ...audio import ops  # scipy loads only when a recipe perturbs speech

    out: dict[str, float] = {}
    for stage, range_field, p_field in STAGES:
        bounds = getattr(cfg, range_field)
        if bounds is None:
            continue
        on = bool(rng.random() < getattr(cfg, p_field))
        lo, hi = bounds
        value = float(rng.uniform(lo, hi))
        if stage == "speed":
            u = value
            value = float(ops.speed_fraction(u, ops.SPEED_MAX_DENOMINATOR))
            if not lo <= value <= hi:  # a narrow range between small fractions
                value = min(max(float(ops.speed_fraction(u)), lo), hi)
        if on:
            out[stage] = value
    return out


def time_scale(params: dict[str, Any] | None) -> float:
    """Output seconds per second of the utterance: ``1 / (speed * tempo)`` (1.0 without
    perturbation). A word at ``t`` s in the utterance is at ``t * time_scale`` s in the row.

    Example: ``time_scale({"speed": 1.25, "pitch_semitones": 2.0}) == 0.8``
    """
    p = params or {}
    return 1.0 / (float(p.get("speed", 1.0)) * float(p.get("tempo", 1.0)))


def apply(x: np.ndarray, params: dict[str, Any] | None, sample_rate: int) -> np.ndarray:
    """The utterance ``x`` (mono float32 at ``sample_rate``) with the drawn stages applied:
    speed, then tempo and pitch (one WSOLA stretch and one resampling), then gain.
    Lengths: ``round(len(x) / speed)``, then ``round(that / tempo)``.

    Example: ``apply(x, {"speed": 1.1, "gain_db": -3.0}, 16000)``
    """
    from ...audio import ops, stretch  # scipy loads only when a recipe perturbs speech

    p = params or {}
    y = x
    if p.get("speed", 1.0) != 1.0:
        y = ops.speed_perturb(y, float(p["speed"]))
    tempo, semitones = float(p.get("tempo", 1.0)), float(p.get("pitch_semitones", 0.0))
    if tempo != 1.0 or semitones != 0.0:
        y = stretch.stretch_and_shift(y, sample_rate, tempo=tempo, semitones=semitones)
    if p.get("gain_db", 0.0) != 0.0:
        y = ops.gain(y, float(p["gain_db"]))
    return y
