"""The ``speech_noise_mix`` synthesizer: clean speech, noise layers, short events, reverb
and a target level, every choice recorded.

Per sample (all draws in :meth:`SpeechNoiseMixSynth.sample_params`, from the sample's own
generator; :meth:`~SpeechNoiseMixSynth.apply` is deterministic):

1. one clean utterance, downmixed and resampled (polyphase) to ``synth.sample_rate``,
   then with ``synth.speech_perturb`` its speed, tempo, pitch and gain changed
   (:mod:`.speech_perturb`; noise and events are drawn for its new duration);
2. with probability ``reverb.p``, a room impulse response: the speech is convolved with
   it, aligned on the direct path (same length, no time shift) and scaled back to its dry
   active power, so SNRs and levels mean the same with or without reverb;
3. each noise layer (kept with probability ``p``): a segment at a random offset, read with
   seek (looped with a crossfade when the item is shorter), perturbed (speed, reversal,
   filter, level sweep), reverberated too with ``apply_to: speech_and_noise``, then scaled
   so that its SNR against the speech is exact -- its own ``snr_db``, or, with
   ``total_snr_db_range``, its ``share`` of a total SNR that is itself exact;
4. short events placed at random times, each at an exact SNR against the active speech
   around it;
5. the whole mix scaled so the speech's active RMS is ``level_dbfs``, then peak control;
6. with ``synth.channel``, its drawn stages (codecs, telephone band, distortion, EQ;
   channel.py), then peak control again.

SNR (docs/architecture.md): speech power is the active power of the speech as it is in the
mix (after speech perturbation and reverb); noise power is the mean square of the exact noise signal added, after
crop, loop, perturbation and reverb.

Example::

    synth = SpeechNoiseMixSynth(recipe, index)
    params = synth.sample_params(rng, holdout_split=False)
    sample = synth.apply(params)      # same params -> same bytes
    parts = synth.render(params)      # the mix and every component, for analysis
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import pyarrow as pa

from ... import features
from ...audio import generators
from ...audio import io as audio_io
from ...audio import ops
from ...errors import BadSourceError, RecipeError, RejectSample
from ..base import ROW_COLUMNS, Sample, Synthesizer, check_label_columns
from . import channel, provenance
from . import speech_perturb

# Source samples read on each side of a noise segment that is resampled, so that the
# polyphase filter sees real signal at the edges instead of zeros.
RESAMPLE_CONTEXT = 64
# Two-stage resampling (rate, then speed) when one combined fraction would need a filter
# longer than this many phases.
MAX_COMBINED_PHASES = 1000
GENERATED_CACHE_BYTES = 128 * 2**20  # per worker: generated noise items kept in memory
RIR_CACHE_ITEMS = 512

# Per worker process, across shards (a synthesizer is built per shard): generated items
# and impulse responses, keyed by what defines them, so a worker makes each one once.
_GENERATED: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_GENERATED_BYTES = [0]
# Whole decodes of long lossless noise files, kept across the shards a worker makes (each
# shard's synthesizer has its own HandleCache): a noise file is decoded once per worker.
_LOSSLESS = audio_io.DecodeStore()
_RIRS: OrderedDict[tuple[Any, ...], tuple[np.ndarray, int, float | None, float | None]] = OrderedDict()


def _label_column_names(recipe, index_pools: dict, speech_pool: str, noise_pools: list[str],
                        fixed: list[str]) -> list[tuple[str, str, str, pa.DataType]]:
    """(pool, manifest column, output column, type) for every carried label.

    Speech labels keep their names; a noise pool's label is prefixed with the pool name
    unless it already starts with it (pool ``noise``, column ``noise_type`` stays). A label
    named like a row column (``fixed``), or two labels with one output name, is a
    :class:`RecipeError` (:func:`check_label_columns`): never renamed or overwritten.
    """
    out: list[tuple[str, str, str, pa.DataType]] = []
    noise = [p for p in dict.fromkeys(noise_pools) if p != speech_pool]
    for pool in [speech_pool] + noise:
        for f in index_pools[pool].label_schema:
            name = f.name if pool == speech_pool or f.name.startswith(pool) else f"{pool}_{f.name}"
            out.append((pool, f.name, name, f.type))
    check_label_columns(recipe, [(p, c, n) for p, c, n, _ in out], fixed, prefixed=noise)
    return out


def _finite_level(power: float, x: np.ndarray, path: str, what: str) -> float:
    """``power`` (a level :mod:`engine.audio.ops` measured on ``x``) when it is finite; else
    the source is unusable and :class:`BadSourceError` names its file, so the worker
    rejects it and draws again instead of failing on an infinite SNR gain. Levels are
    float64, so only NaN or Inf samples (somewhere a probe did not look, or made by
    float32 processing of samples near float32's limit) end here."""
    if math.isfinite(power):
        return power
    raise BadSourceError(path, f"{what} has no finite level: NaN or Inf samples, or samples so large "
                               "that processing them overflows; re-save the file at a sane scale "
                               "(float samples within [-1, 1])")


def _finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN or infinity: an unmeasurable value is recorded as null."""
    return value if value is not None and math.isfinite(value) else None


@dataclass
class Rendered:
    """Everything :meth:`SpeechNoiseMixSynth.render` builds for one params object.

    ``mix = (speech + sum(noise) + events placed at their offsets) * out_gain``, where
    ``speech``, ``noise`` and ``events`` are the components exactly as added (after
    reverb, perturbation and SNR scaling) and ``out_gain`` is the level gain times the
    peak-control gain.
    """

    mix: np.ndarray
    speech: np.ndarray
    noise: list[np.ndarray] = field(default_factory=list)  # each layer as added
    noise_sum: np.ndarray | None = None  # set when the layers were added as one sum
    events: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (offset, signal)
    level_gain: float = 1.0
    peak_gain: float = 1.0
    speech_gain: float = 1.0  # reverberant speech scaled back to the dry active power
    sources: list[dict[str, Any]] = field(default_factory=list)
    channel: dict[str, Any] | None = None  # the SNR before and after synth.channel, when a stage ran

    @property
    def out_gain(self) -> float:
        return self.level_gain * self.peak_gain

    @property
    def noise_total(self) -> np.ndarray:
        """The sum of the noise layers as added (zeros without noise)."""
        if self.noise_sum is not None:
            return self.noise_sum
        total = np.zeros(len(self.speech), dtype=np.float32)
        for layer in self.noise:
            total += layer
        return total


class SpeechNoiseMixSynth(Synthesizer):
    type = "speech_noise_mix"
    media_column = "audio"
    # A layer's index and a piece's offset: provenance, not sampled values (the pool
    # figures cover offsets).
    unsampled_params = frozenset({"layer", "start_s"})

    def __init__(self, recipe, index):
        super().__init__(recipe, index)
        self._rate: int | None = None
        self._eligible: dict[tuple[str, bool], np.ndarray] = {}
        self._cache: audio_io.HandleCache | None = None
        self._pool_keys: dict[str, str] = {}
        cfg = self.config
        self._labels = _label_column_names(
            recipe, index.pools, cfg.speech, [layer.pool for layer in cfg.noise] + [ev.pool for ev in cfg.events],
            fixed=list(ROW_COLUMNS) + [f.name for f in self.media_fields()],
        )

    # ------------------------------------------------------------------ schema

    @property
    def sample_rate(self) -> int:
        """The output rate: ``synth.sample_rate``, else the speech pool's own rate."""
        if self._rate is None:
            self._rate = self._output_rate()
        return self._rate

    def _output_rate(self) -> int:
        cfg = self.config
        if cfg.sample_rate:
            return int(cfg.sample_rate)
        declared = getattr(self.recipe.pools[cfg.speech], "sample_rate", None)
        rates = sorted({int(r) for r in self.index.pools[cfg.speech].sample_rate})
        if declared:
            rate = int(declared)
        elif len(rates) == 1:
            rate = rates[0]
        else:
            shown = ", ".join(f"{r} Hz" for r in rates[:6]) + (", ..." if len(rates) > 6 else "")
            raise RecipeError(
                f"synth.sample_rate: the items of speech pool {cfg.speech!r} have several rates ({shown}); "
                f"set synth.sample_rate to the rate the output should have (or pools.{cfg.speech}.sample_rate)"
            )
        problems = cfg.rate_problems(rate)
        if problems:
            raise RecipeError("\n".join(problems))
        return rate

    def media_fields(self) -> list[pa.Field]:
        return [
            pa.field("audio", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            pa.field("sampling_rate", pa.int32()),
            pa.field("duration_s", pa.float32()),
        ]

    def hf_media_features(self) -> dict[str, Any]:
        return {
            "audio": {"sampling_rate": self.sample_rate, "_type": "Audio"},
            "sampling_rate": {"dtype": "int32", "_type": "Value"},
            "duration_s": {"dtype": "float32", "_type": "Value"},
        }

    def embedding_dim(self) -> int:
        return features.AUDIO_EMBED_DIM

    def label_fields(self) -> list[pa.Field]:
        return [pa.field(name, typ) for _, _, name, typ in self._labels]

    def media_filename(self, sample_id: str) -> str:
        return f"{sample_id}.{self.recipe.output.audio_codec}"

    # ------------------------------------------------------------------ reading params

    source_pieces = staticmethod(provenance.source_pieces)
    slice_categories = staticmethod(provenance.slice_categories)
    export_row = staticmethod(provenance.export_row)

    # ------------------------------------------------------------------ sampling

    def param_range(self, config: dict[str, Any], name: str) -> tuple[float, float] | None:
        """Ranges that live in the reverb pool's config rather than the synth block: a
        generated response's ``reverb.rt60_s`` / ``reverb.drr_db`` (method noise) and a
        simulated room's draws (``reverb.room.room_x_m`` from ``room_x_m_range``, the
        target RT60 from ``rt60_s_range``, absorption, source and mic heights)."""
        if not name.startswith("reverb.") or self.config.reverb is None:
            return None
        pool = self.recipe.pools[self.config.reverb.pool]
        if getattr(pool, "kind", None) != "rir_generator":
            return None
        key = name.removeprefix("reverb.")
        if pool.method == "noise":
            field = {"rt60_s": "rt60_s_range", "drr_db": "drr_db_range"}.get(key)
        else:
            key = key.removeprefix("room.")
            field = {"room_x_m": "room_x_m_range", "room_y_m": "room_y_m_range", "room_z_m": "room_z_m_range",
                     "rt60_target_s": "rt60_s_range", "source_z_m": "source_z_m_range",
                     "mic_z_m": "mic_z_m_range"}.get(key)
            if key.startswith("absorption_"):
                walls = pool.wall_absorption_range
                if walls is not None:
                    found = walls.get(key.removeprefix("absorption_"))
                    return None if found is None else (float(found[0]), float(found[1]))
                field = "absorption_range"
        found = getattr(pool, field, None) if field else None
        return None if found is None else (float(found[0]), float(found[1]))

    def _candidates(self, pool: str, holdout_split: bool) -> np.ndarray:
        key = (pool, holdout_split)
        c = self._eligible.get(key)
        if c is None:
            c = self._eligible[key] = self.index.pools[pool].eligible(holdout_split)
        return c

    @staticmethod
    def _draw_perturb(rng: np.random.Generator, cfg: Any) -> dict[str, Any] | None:
        """Draw one perturbation; every configured value is drawn even when unused, so
        that changing one probability does not reshuffle the others."""
        if cfg is None:
            return None
        out: dict[str, Any] = {}
        if cfg.speed_range is not None:
            lo, hi = cfg.speed_range
            u = float(rng.uniform(lo, hi))
            speed = float(ops.speed_fraction(u, ops.SPEED_MAX_DENOMINATOR))
            if not lo <= speed <= hi:  # a narrow range between small fractions
                speed = min(max(float(ops.speed_fraction(u)), lo), hi)
            out["speed"] = speed
        if cfg.gain_db_range is not None:
            out["gain_db"] = float(rng.uniform(*cfg.gain_db_range))
        if cfg.filter is not None:
            flt = cfg.filter
            on = rng.random() < flt.p
            kind = flt.types[int(rng.integers(len(flt.types)))]
            lowpass_hz = float(rng.uniform(*flt.lowpass_hz_range))
            highpass_hz = float(rng.uniform(*flt.highpass_hz_range))
            if on:
                entry: dict[str, Any] = {"type": kind}
                if kind in ("lowpass", "bandpass"):
                    entry["lowpass_hz"] = lowpass_hz
                if kind in ("highpass", "bandpass"):
                    entry["highpass_hz"] = highpass_hz
                out["filter"] = entry
        reverse = bool(rng.random() < cfg.reverse_p)
        if cfg.reverse_p > 0:
            out["reverse"] = reverse
        channel.draw_effects(rng, cfg, out)
        return out

    def sample_params(self, rng: np.random.Generator, *, holdout_split: bool) -> dict[str, Any]:
        cfg = self.config
        speech = self.index.pools[cfg.speech]
        cands = self._candidates(cfg.speech, holdout_split)
        s = int(cands[rng.integers(len(cands))])
        speech_s = float(speech.duration_s[s])
        params: dict[str, Any] = {"speech": {"pool": cfg.speech, "item": speech.items[s]}}
        if cfg.speech_perturb is not None:  # drawn first: noise and events fit its duration
            params["speech_perturb"] = speech_perturb.draw(rng, cfg.speech_perturb)
            speech_s *= speech_perturb.time_scale(params["speech_perturb"])

        layers = []
        for li, layer in enumerate(cfg.noise):
            pool = self.index.pools[layer.pool]
            # Draw every value even for a skipped layer: the stream stays aligned, so
            # changing one layer's p does not reshuffle the others.
            keep = rng.random() < layer.p
            c = self._candidates(layer.pool, holdout_split)
            k = int(c[rng.integers(len(c))])
            snr_db = float(rng.uniform(*layer.snr_db_range)) if layer.snr_db_range is not None else None
            u = float(rng.random())
            perturb = self._draw_perturb(rng, layer.perturb)
            if not keep:
                continue
            need_s = speech_s * (perturb or {}).get("speed", 1.0)  # item seconds consumed
            dur = float(pool.duration_s[k])
            start_s = u * (dur - need_s) if dur > need_s else u * dur
            entry: dict[str, Any] = {"layer": li, "pool": layer.pool, "item": pool.items[k], "start_s": start_s}
            if snr_db is not None:
                entry["snr_db"] = snr_db
            else:
                entry["share"] = float(layer.share)
            if perturb is not None:
                entry["perturb"] = perturb
            layers.append(entry)
        if cfg.total_snr_db_range is not None:
            total = float(rng.uniform(*cfg.total_snr_db_range))
            if layers:
                params["total_snr_db"] = total
                weight = sum(e["share"] for e in layers)
                for e in layers:
                    e["share"] = e["share"] / weight
        params["noise"] = layers

        events = []
        for ei, ev in enumerate(cfg.events):
            pool = self.index.pools[ev.pool]
            keep = rng.random() < ev.p
            count = int(rng.integers(ev.count_range[0], ev.count_range[1] + 1))
            c = self._candidates(ev.pool, holdout_split)
            for j in range(ev.count_range[1]):
                k = int(c[rng.integers(len(c))])
                snr_db = float(rng.uniform(*ev.snr_db_range))
                u_crop, u_at = float(rng.random()), float(rng.random())
                perturb = self._draw_perturb(rng, ev.perturb)
                if not (keep and j < count):
                    continue
                speed = (perturb or {}).get("speed", 1.0)
                item_s = float(pool.duration_s[k])
                out_s = min(item_s / speed, ev.max_duration_s, speech_s)
                start_s = u_crop * (item_s - out_s * speed) if item_s > out_s * speed else 0.0
                entry = {"layer": ei, "pool": ev.pool, "item": pool.items[k], "start_s": start_s,
                         "at_s": u_at * max(0.0, speech_s - out_s), "snr_db": snr_db}
                if perturb is not None:
                    entry["perturb"] = perturb
                events.append(entry)
        if events:
            params["events"] = events

        if cfg.reverb is not None:
            keep = rng.random() < cfg.reverb.p
            c = self._candidates(cfg.reverb.pool, holdout_split)
            k = int(c[rng.integers(len(c))])
            if keep:
                item = self.index.pools[cfg.reverb.pool].items[k]
                try:
                    _, _, rt60_s, drr_db = self._rir(cfg.reverb.pool, item)
                except BadSourceError:  # apply() meets it again and the sample is redrawn
                    rt60_s = drr_db = None
                params["reverb"] = {"pool": cfg.reverb.pool, "item": item, "rt60_s": rt60_s, "drr_db": drr_db}
                room = generators.room_labels(self.recipe.pools[cfg.reverb.pool], item)
                if room:  # a simulated room: what was drawn for it, histogrammed by coverage
                    params["reverb"]["room"] = room
        if cfg.level_dbfs_range is not None:
            params["level_dbfs"] = float(rng.uniform(*cfg.level_dbfs_range))
        if cfg.channel:
            channel.draw_channel(rng, cfg.channel, self.sample_rate, params)
        return params

    # ------------------------------------------------------------------ reading sources

    def _handles(self) -> audio_io.HandleCache:
        if self._cache is None:
            _LOSSLESS.hold_for(self.index.token)  # another run's decodes go: its files were checked anew
            _LOSSLESS.decode_at_first_read(self._read_over_per_shard())
            self._cache = audio_io.HandleCache(lossless=_LOSSLESS)
        return self._cache

    def _read_over_per_shard(self) -> list[str]:
        """The files of the noise pools that one shard is expected to read more of than
        they hold (``samples_per_shard`` times the speech pool's mean length per layer
        drawing from the pool, against the pool's total length): decoded whole at their
        first read rather than after a pool's length of seeks (the same samples)."""
        speech = self.index.pools[self.config.speech]
        if not len(speech):
            return []
        per_layer = self.recipe.output.samples_per_shard * float(np.mean(speech.duration_s))
        layers = Counter(layer.pool for layer in self.config.noise)
        paths: list[str] = []
        for name, n in layers.items():
            pool = self.index.pools[name]
            if pool.kind not in generators.GENERATOR_KINDS and float(np.sum(pool.duration_s)) <= n * per_layer:
                paths += pool.paths
        return paths

    def _pool_key(self, pool_name: str) -> str:
        """What defines a pool's items (its validated config), for the per-worker caches."""
        key = self._pool_keys.get(pool_name)
        if key is None:
            key = self._pool_keys[pool_name] = self.recipe.pools[pool_name].model_dump_json()
        return key

    def _generated_item(self, pool_name: str, i: int) -> np.ndarray:
        """The whole signal of a generator pool's item (made once per worker, LRU-bounded)."""
        item = self.index.pools[pool_name].items[i]
        key = (self._pool_key(pool_name), item)
        x = _GENERATED.get(key)
        if x is not None:
            _GENERATED.move_to_end(key)
            return x
        x = generators.render_item(self.recipe.pools[pool_name], item)
        x.setflags(write=False)
        _GENERATED[key] = x
        _GENERATED_BYTES[0] += x.nbytes
        while _GENERATED_BYTES[0] > GENERATED_CACHE_BYTES and len(_GENERATED) > 1:
            _, old = _GENERATED.popitem(last=False)
            _GENERATED_BYTES[0] -= old.nbytes
        return x

    def _frames(self, pool_name: str, i: int, start: int, count: int) -> np.ndarray:
        """Mono float32 frames ``[start, start + count)`` of an item at its own rate
        (fewer at the end of the item)."""
        pool = self.index.pools[pool_name]
        if pool.kind in generators.GENERATOR_KINDS:
            return self._generated_item(pool_name, i)[start : start + count].copy()
        return audio_io.read_mono(pool.paths[i], start, count, cache=self._handles())

    def _path(self, pool_name: str, item: str) -> str:
        """The source file of an item (a generated item's name), as rejects name it."""
        return self.index.pools[pool_name].paths[self._pos(pool_name, item)]

    def _read_speech(self, pool_name: str, item: str) -> tuple[np.ndarray, str]:
        pool = self.index.pools[pool_name]
        i = self._pos(pool_name, item)
        path = pool.paths[i]
        x = self._frames(pool_name, i, 0, int(pool.frames[i]))
        # Silent files were rejected when the pool was indexed (peak below -90 dBFS);
        # render() still refuses speech without active power.
        return ops.resample(x, int(pool.sample_rate[i]), self.sample_rate), path

    def _perturbed_speech(self, speech: np.ndarray, params: dict[str, Any]) -> tuple[np.ndarray, float, float]:
        """``(speech after synth.speech_perturb, the utterance's own seconds, the gain
        factor of the perturbation)``: the speech itself, its length and 1.0 when the
        recipe has no speech perturbation."""
        item_s = len(speech) / self.sample_rate
        drawn = params.get("speech_perturb")
        if not drawn:
            return speech, item_s, 1.0
        gain = ops.db_to_gain(float(drawn["gain_db"])) if "gain_db" in drawn else 1.0
        return speech_perturb.apply(speech, drawn, self.sample_rate), item_s, gain

    def _resample_chain(self, x: np.ndarray, sr_in: int, speed: Fraction) -> np.ndarray:
        sr = self.sample_rate
        if speed == 1:
            return ops.resample(x, sr_in, sr)
        if sr_in == sr:
            return ops.resample(x, speed.numerator, speed.denominator)
        combined = Fraction(sr, sr_in) / speed  # output samples per input sample
        if max(combined.numerator, combined.denominator) <= MAX_COMBINED_PHASES:
            return ops.resample(x, combined.denominator, combined.numerator)
        return ops.resample(ops.resample(x, sr_in, sr), speed.numerator, speed.denominator)

    def _read_noise(
        self, pool_name: str, item: str, start_s: float, n: int, *, speed: float = 1.0, loop: bool = True
    ) -> tuple[np.ndarray, bool]:
        """Exactly ``n`` output-rate samples of noise from ``start_s`` (item seconds),
        played ``speed`` times faster; looped with a crossfade when the item is too short
        (``loop=False``, for events: silence after the item's end instead).
        Returns ``(segment, looped)``."""
        pool = self.index.pools[pool_name]
        i = self._pos(pool_name, item)
        sr_in, frames = int(pool.sample_rate[i]), int(pool.frames[i])
        frac = ops.speed_fraction(speed) if speed != 1.0 else Fraction(1)
        resampling = sr_in != self.sample_rate or frac != 1
        pad = RESAMPLE_CONTEXT if resampling else 0
        core = int(math.ceil(n * frac * Fraction(sr_in, self.sample_rate))) + 1 if resampling else n
        start = min(int(round(start_s * sr_in)), max(frames - 1, 0))
        looped = loop and frames < core
        if not looped:
            start = max(0, min(start, frames - core))
            lead, tail = min(pad, start), max(0, min(pad, frames - start - core))
            seg = self._frames(pool_name, i, start - lead, lead + core + tail)
            if len(seg) < lead + core:  # an event item shorter than the read margin: it ends
                seg = np.pad(seg, (0, lead + core - len(seg)))
        else:
            whole = self._frames(pool_name, i, 0, frames)
            fade = min(ops.crossfade_len(sr_in, self.config.crossfade_s), len(whole) // 2)
            # Context before the start only from the item itself (as without a loop): the
            # loop's stream begins at the item's first sample, and taking the context from
            # its wrap would move the segment into the item by the crossfade.
            lead = min(pad, start)
            seg = ops.loop_to_length(whole, lead + core + pad, start=start - lead, crossfade=fade)
        if resampling:
            seg = self._resample_chain(seg, sr_in, frac)
            off = int(round(lead * Fraction(self.sample_rate, sr_in) / frac))
            seg = seg[off : off + n]
        else:
            seg = seg[:n]
        if len(seg) < n:  # rounding at the end of a file: wrap the few missing samples
            seg = ops.loop_to_length(seg, n)
        return np.ascontiguousarray(seg, dtype=np.float32), looped

    def _rir(self, pool_name: str, item: str) -> tuple[np.ndarray, int, float | None, float | None]:
        """``(h at the output rate, direct-path index, rt60_s, drr_db)`` of an RIR item,
        cached per worker. Measured RIRs get estimated RT60 / DRR (None if not
        measurable); generated ones their defining values."""
        pool = self.index.pools[pool_name]
        i = self._pos(pool_name, item)
        key = (self._pool_key(pool_name), pool.paths[i], int(pool.frames[i]), self.sample_rate)
        hit = _RIRS.get(key)
        if hit is not None:
            _RIRS.move_to_end(key)
            return hit
        sr_in = int(pool.sample_rate[i])
        x = self._frames(pool_name, i, 0, int(pool.frames[i]))
        labels = pool.label_row(i) if pool.kind == "rir_generator" else {}
        if "drr_db" in labels:  # decaying noise, made from its RT60 and DRR
            rt60, drr = float(labels["rt60_s"]), float(labels["drr_db"])
        else:  # a measured response, or a simulated room: both estimated from the response
            if not np.abs(x).max() > 0:
                raise BadSourceError(pool.paths[i], "impulse response is all zeros")
            rt60, drr = ops.rt60_estimate(x, sr_in), ops.drr_estimate_db(x, sr_in)
        h = ops.resample(x, sr_in, self.sample_rate)
        h.setflags(write=False)
        hit = (h, ops.direct_path_index(h, self.sample_rate), _finite_or_none(rt60), _finite_or_none(drr))
        _RIRS[key] = hit
        if len(_RIRS) > RIR_CACHE_ITEMS:
            _RIRS.popitem(last=False)
        return hit

    # ------------------------------------------------------------------ applying

    def _layer_cfg(self, kind: str, index: int) -> Any:
        layers = self.config.noise if kind == "noise" else self.config.events
        return layers[index] if 0 <= index < len(layers) else None

    def _noise_piece(
        self, kind: str, entry: dict[str, Any], n: int, rir: tuple[np.ndarray, int] | None
    ) -> np.ndarray:
        """``n`` samples of the noise of a layer or event entry: read (at its speed),
        reversed, filtered, eq, distortion, swept, reverberated, in that order."""
        perturb = entry.get("perturb") or {}
        # An event is played once: its piece is never longer than the item at its speed
        # (but for a sample of rounding), so it is not looped.
        seg, _ = self._read_noise(entry["pool"], entry["item"], entry["start_s"], n,
                                  speed=perturb.get("speed", 1.0), loop=kind == "noise")
        if perturb.get("reverse"):
            seg = ops.reverse(seg)
        flt = perturb.get("filter")
        if flt:
            layer = self._layer_cfg(kind, int(entry.get("layer", -1)))
            order = layer.perturb.filter.order if layer is not None and layer.perturb and layer.perturb.filter else 4
            seg = ops.band_filter(seg, self.sample_rate, flt["type"], lowpass_hz=flt.get("lowpass_hz"),
                                  highpass_hz=flt.get("highpass_hz"), order=order)
        seg = channel.apply_effects(seg, self.sample_rate, perturb)
        if perturb.get("gain_db"):
            seg = ops.gain_sweep(seg, perturb["gain_db"])
        if rir is not None:
            # A noise layer is steady: convolved circularly, its room is there from the
            # first sample (from silence, the reverberant field would build up over the
            # row's first ~RT60/4, a cue no real recording has).
            seg = ops.convolve_aligned(seg, rir[0], direct=rir[1], circular=kind == "noise")
        return seg

    def render(self, params: dict[str, Any]) -> Rendered:
        """Build the mix and its components from params (deterministic).

        Example: ``parts = synth.render(params); parts.mix.shape == parts.speech.shape``
        """
        cfg = self.config
        sr = self.sample_rate
        thr = cfg.active_threshold_db
        sp = params["speech"]
        speech, path = self._read_speech(sp["pool"], sp["item"])
        speech, speech_item_s, perturb_gain = self._perturbed_speech(speech, params)
        n = len(speech)
        p_speech = _finite_level(ops.active_power(speech, sr, threshold_db=thr), speech, path, "speech")
        if not p_speech > 1e-18:  # -180 dB: nothing to set an SNR against
            raise BadSourceError(path, "silent: speech has no signal, so no SNR can be set")

        rev = params.get("reverb")
        rir = None
        speech_gain = 1.0
        if rev:
            h, direct, _, _ = self._rir(rev["pool"], rev["item"])
            rir = (h, direct)
            wet = ops.convolve_aligned(speech, h, direct=direct)
            p_wet = _finite_level(ops.active_power(wet, sr, threshold_db=thr), wet, path,
                                  f"speech reverberated by {rev['item']}")
            if not p_wet > 0:
                raise RejectSample(f"reverberant speech is silent (RIR {rev['item']})")
            speech_gain = math.sqrt(p_speech / p_wet)
            speech = wet * np.float32(speech_gain)
            p_speech = ops.active_power(speech, sr, threshold_db=thr)
        noise_rir = rir if (rir is not None and cfg.reverb is not None and cfg.reverb.apply_to == "speech_and_noise") else None

        out = Rendered(mix=speech, speech=speech, speech_gain=speech_gain)
        # ---- continuous noise layers
        segs, powers = [], []
        for layer in params["noise"]:
            seg = self._noise_piece("noise", layer, n, noise_rir)
            p_noise = _finite_level(ops.power(seg), seg, self._path(layer["pool"], layer["item"]), "noise")
            if not p_noise > 1e-20:
                raise RejectSample(f"noise segment of {layer['item']} at {layer['start_s']:.2f} s is silent")
            segs.append(seg)
            powers.append(p_noise)
        gains: list[float] = []
        mix = None  # speech + the noise, made by the first addition (no copy of the speech)
        if "total_snr_db" in params and segs:
            # Each layer at its share of the total noise power, then one common factor so
            # that the power of the sum (cross terms included) gives the total SNR exactly.
            total_snr = float(params["total_snr_db"])
            base = [ops.snr_gain(p_speech, p, total_snr - 10.0 * math.log10(layer["share"]))
                    for layer, p in zip(params["noise"], powers)]
            total = np.zeros(n, dtype=np.float32)
            for seg, g in zip(segs, base):
                total += seg * np.float32(g)
            common = ops.snr_gain(p_speech, ops.power(total), total_snr)
            gains = [g * common for g in base]
            for seg, g in zip(segs, gains):
                out.noise.append(seg * np.float32(g))
            out.noise_sum = total * np.float32(common)
            mix = np.add(speech, out.noise_sum)
        else:
            for layer, seg, p in zip(params["noise"], segs, powers):
                g = ops.snr_gain(p_speech, p, float(layer["snr_db"]))
                scaled = np.multiply(seg, np.float32(g), out=seg)  # seg is a fresh array
                if mix is None:
                    mix = np.add(speech, scaled)
                else:
                    mix += scaled
                out.noise.append(scaled)
                gains.append(g)

        if mix is None:  # no noise layer drawn
            mix = speech.copy()

        # ---- short events
        event_gains: list[float] = []
        event_lengths: list[int] = []
        for ev in params.get("events", []):
            layer = self._layer_cfg("events", int(ev.get("layer", -1)))
            max_s = layer.max_duration_s if layer is not None else 2.0
            context = layer.context_s if layer is not None else 0.5
            perturb = ev.get("perturb") or {}
            speed = perturb.get("speed", 1.0)
            pool = self.index.pools[ev["pool"]]
            item_s = float(pool.duration_s[self._pos(ev["pool"], ev["item"])])
            m = max(1, min(int(round(min(item_s / speed, max_s) * sr)), n))
            at = min(max(0, int(round(float(ev["at_s"]) * sr))), n - m)
            event_lengths.append(m)
            piece = self._noise_piece("events", ev, m, None)
            if noise_rir is not None:  # keep the tail of the room's response, up to the end
                room = min(n - at, m + len(noise_rir[0]))
                piece = ops.convolve_aligned(np.pad(piece, (0, room - m)), noise_rir[0], direct=noise_rir[1])
            p_event = _finite_level(ops.power(piece), piece, self._path(ev["pool"], ev["item"]), "event")
            if not p_event > 1e-20:
                raise RejectSample(f"event {ev['item']} at {ev['start_s']:.2f} s is silent")
            ctx = int(round(context * sr))
            p_local = ops.local_active_power(speech, sr, max(0, at - ctx), at + len(piece) + ctx, threshold_db=thr)
            g = ops.snr_gain(p_local, p_event, float(ev["snr_db"]))
            scaled = piece * np.float32(g)
            mix[at : at + len(scaled)] += scaled
            out.events.append((at, scaled))
            event_gains.append(g)

        # ---- level, then peak control (one gain for everything: SNRs are kept)
        if "level_dbfs" in params:
            out.level_gain = ops.level_gain(p_speech, float(params["level_dbfs"]))
            mix *= np.float32(out.level_gain)
        top = ops.peak(mix)  # NaN or inf anywhere shows here too
        if not math.isfinite(top):
            # Every source's level was finite (so were its samples): this is float32
            # overflow, and every gain follows the speech level, so the speech is too loud.
            raise BadSourceError(path, f"speech is too loud to mix: its active level is "
                                       f"{10.0 * math.log10(p_speech):.0f} dBFS and the mix overflows float32; "
                                       "re-save the file at a sane scale (float samples within [-1, 1])")
        limit = ops.db_to_gain(cfg.peak_dbfs)
        if cfg.clipping == "rescale":
            mix, out.peak_gain = ops.peak_limit(mix, limit, known_peak=top)
        elif cfg.clipping == "reject" and top > limit:
            raise RejectSample(f"peak {ops.gain_to_db(top):.2f} dBFS is over synth.peak_dbfs")
        if params.get("channel"):
            mix = self._channel(params["channel"], mix, out)
        out.mix = mix

        # ---- provenance: every piece, in its item's own timeline, with its final gain
        g_out = out.out_gain
        duration_s = n / sr
        sources = [{"pool": sp["pool"], "item": sp["item"], "start_s": 0.0, "duration_s": speech_item_s,
                    "gain_db": ops.gain_to_db(speech_gain * g_out * perturb_gain)}]
        for layer, g in zip(params["noise"], gains):
            speed = (layer.get("perturb") or {}).get("speed", 1.0)
            sources.append({"pool": layer["pool"], "item": layer["item"], "start_s": float(layer["start_s"]),
                            "duration_s": duration_s * speed, "gain_db": ops.gain_to_db(g * g_out)})
        for ev, g, m in zip(params.get("events", []), event_gains, event_lengths):
            speed = (ev.get("perturb") or {}).get("speed", 1.0)
            sources.append({"pool": ev["pool"], "item": ev["item"], "start_s": float(ev["start_s"]),
                            "duration_s": m / sr * speed, "gain_db": ops.gain_to_db(g * g_out)})
        if rev:
            pool = self.index.pools[rev["pool"]]
            i = self._pos(rev["pool"], rev["item"])
            sources.append({"pool": rev["pool"], "item": rev["item"], "start_s": 0.0,
                            "duration_s": float(pool.duration_s[i]), "gain_db": 0.0})
        out.sources = sources
        return out

    def _channel(self, stages: list[dict[str, Any]], mix: np.ndarray, out: Rendered) -> np.ndarray:
        """The drawn ``synth.channel`` stages on the mix after level and peak control (so a
        codec gets its input within full scale), then peak control again (a codec or an EQ
        can raise the peak); records the SNR before and after in ``out.channel``."""
        cfg = self.config
        speech = out.speech * np.float32(out.out_gain)  # the speech as it is in the mix
        mix, out.channel = channel.apply_channel(stages, cfg.channel, mix, speech, self.sample_rate,
                                                 cfg.active_threshold_db)
        limit = ops.db_to_gain(cfg.peak_dbfs)
        if cfg.clipping == "rescale":
            mix, gain = ops.peak_limit(mix, limit)
            out.peak_gain *= gain
        elif cfg.clipping == "reject" and ops.peak(mix) > limit:
            raise RejectSample(f"peak {ops.gain_to_db(ops.peak(mix)):.2f} dBFS after synth.channel is over synth.peak_dbfs")
        return mix

    def apply(self, params: dict[str, Any]) -> Sample:
        sr = self.sample_rate
        # Overflow from an absurdly loud source is checked for and rejected by name (see
        # _finite_level): numpy's warnings about it would only repeat that in the worker's log.
        with np.errstate(over="ignore", invalid="ignore"):
            out = self.render(params)
        duration_s = len(out.mix) / sr
        # After rescale or reject the mix is finite and within the peak limit (<= 0 dBFS).
        checked = self.config.clipping != "allow"
        embedding = features.audio_embedding(out.mix, sr, checked=checked)  # before encoding: still in cache
        return Sample(
            columns={
                "audio": {"bytes": audio_io.encode(out.mix, sr, self.recipe.output.audio_codec, checked=checked),
                          "path": None},
                "sampling_rate": sr,
                "duration_s": duration_s,
            },
            sources=out.sources,
            embedding=embedding,
            labels=self._labels_for(params),
            seconds=duration_s,
            applied={"channel": out.channel} if out.channel is not None else None,
        )

    def _labels_for(self, params: dict[str, Any]) -> dict[str, Any]:
        if not self._labels:
            return {}
        used: dict[str, str] = {params["speech"]["pool"]: params["speech"]["item"]}
        for entry in list(params["noise"]) + list(params.get("events", [])):
            used.setdefault(entry["pool"], entry["item"])
        out: dict[str, Any] = {}
        for pool, col, name, _ in self._labels:
            item = used.get(pool)
            out[name] = None if item is None else self.index.pools[pool].label_row(self._pos(pool, item)).get(col)
        return out

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    @classmethod
    def release_process_state(cls) -> None:
        _LOSSLESS.clear()
        _LOSSLESS.owner = ""
        _GENERATED.clear()
        _GENERATED_BYTES[0] = 0
        _RIRS.clear()
