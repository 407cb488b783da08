"""The ``speech_noise_mix`` synthesizer: clean speech plus noise at an exact SNR.

Per sample: one clean utterance; for each noise layer (kept with probability ``p``) a
noise segment at a random offset, read with seek, looped with a crossfade when the item is
shorter than the speech; everything downmixed to mono and resampled to
``synth.sample_rate``; noise scaled so that the SNR (ARCHITECTURE.md: active speech power
over the power of the exact noise added) equals the sampled value; then peak control.

Example::

    synth = SpeechNoiseMixSynth(recipe, index)
    params = synth.sample_params(rng, holdout_split=False)
    sample = synth.apply(params)      # same params -> same bytes
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa

from .. import features
from ..errors import BadSourceError, RejectSample
from ..synth import Sample, Synthesizer
from . import io as audio_io
from . import ops


def _label_column_names(index_pools: dict, speech_pool: str, noise_pools: list[str]) -> list[tuple[str, str, str, pa.DataType]]:
    """(pool, manifest column, output column, type) for every carried label.

    Speech labels keep their names; a noise pool's label is prefixed with the pool name
    unless it already starts with it (pool ``noise``, column ``noise_type`` stays).
    """
    out: list[tuple[str, str, str, pa.DataType]] = []
    taken = {"sample_id", "split", "audio", "sampling_rate", "duration_s", "sources", "params", "embedding"}
    for pool in [speech_pool] + [p for p in dict.fromkeys(noise_pools) if p != speech_pool]:
        for f in index_pools[pool].label_schema:
            name = f.name if pool == speech_pool or f.name.startswith(pool) else f"{pool}_{f.name}"
            if name in taken:
                name = f"{pool}__{f.name}"
            taken.add(name)
            out.append((pool, f.name, name, f.type))
    return out


class SpeechNoiseMixSynth(Synthesizer):
    type = "speech_noise_mix"

    def __init__(self, recipe, index):
        super().__init__(recipe, index)
        self._positions: dict[str, dict[str, int]] = {}
        self._cache: audio_io.HandleCache | None = None
        self._labels = _label_column_names(
            index.pools, self.config.speech, [layer.pool for layer in self.config.noise]
        )

    # ------------------------------------------------------------------ schema

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

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

    # ------------------------------------------------------------------ sampling

    def sample_params(self, rng: np.random.Generator, *, holdout_split: bool) -> dict[str, Any]:
        cfg = self.config
        speech = self.index.pools[cfg.speech]
        cands = speech.eligible(holdout_split)
        s = int(cands[rng.integers(len(cands))])
        need_s = float(speech.duration_s[s])
        layers = []
        for li, layer in enumerate(cfg.noise):
            pool = self.index.pools[layer.pool]
            # Draw every value even for a skipped layer: the stream stays aligned, so
            # changing one layer's p does not reshuffle the others.
            keep = rng.random() < layer.p
            c = pool.eligible(holdout_split)
            k = int(c[rng.integers(len(c))])
            snr_db = float(rng.uniform(*layer.snr_db_range))
            u = float(rng.random())
            if not keep:
                continue
            dur = float(pool.duration_s[k])
            start_s = u * (dur - need_s) if dur > need_s else u * dur
            layers.append(
                {"layer": li, "pool": layer.pool, "item": pool.items[k], "start_s": start_s, "snr_db": snr_db}
            )
        return {"speech": {"pool": cfg.speech, "item": speech.items[s]}, "noise": layers}

    # ------------------------------------------------------------------ applying

    def _pos(self, pool: str, item: str) -> int:
        table = self._positions.get(pool)
        if table is None:
            table = {it: i for i, it in enumerate(self.index.pools[pool].items)}
            self._positions[pool] = table
        try:
            return table[item]
        except KeyError:
            raise BadSourceError(item, f"item is not in pool {pool!r} (params from another index?)") from None

    def _handles(self) -> audio_io.HandleCache:
        if self._cache is None:
            self._cache = audio_io.HandleCache()
        return self._cache

    def _read_speech(self, pool_name: str, item: str) -> tuple[np.ndarray, str]:
        pool = self.index.pools[pool_name]
        i = self._pos(pool_name, item)
        path = pool.paths[i]
        x = ops.downmix(audio_io.read_all(path, cache=self._handles()))
        x = ops.resample(x, int(pool.sample_rate[i]), self.sample_rate)
        if ops.is_silent(x):
            raise BadSourceError(path, "silent: speech has no signal above -90 dBFS, so no SNR can be set")
        return x, path

    def _read_noise(self, pool_name: str, item: str, start_s: float, n: int) -> tuple[np.ndarray, bool]:
        """Exactly ``n`` output-rate samples of noise from ``start_s`` (looped if too short)."""
        pool = self.index.pools[pool_name]
        i = self._pos(pool_name, item)
        path, sr, frames = pool.paths[i], int(pool.sample_rate[i]), int(pool.frames[i])
        need = int(math.ceil(n * sr / self.sample_rate)) + 1
        start = min(int(round(start_s * sr)), max(frames - 1, 0))
        looped = frames < need
        if not looped:
            start = min(start, frames - need)
            seg = ops.downmix(audio_io.read_segment(path, start, need, cache=self._handles()))
        else:
            whole = ops.downmix(audio_io.read_all(path, cache=self._handles()))
            fade = min(ops.crossfade_len(sr, self.config.crossfade_s), len(whole) // 2)
            seg = ops.loop_to_length(whole, need, start=start, crossfade=fade)
        seg = ops.resample(seg, sr, self.sample_rate)
        if len(seg) < n:  # rounding at the end of a file: wrap the few missing samples
            seg = ops.loop_to_length(seg, n)
        return np.ascontiguousarray(seg[:n], dtype=np.float32), looped

    def apply(self, params: dict[str, Any]) -> Sample:
        cfg = self.config
        sr = self.sample_rate
        sp = params["speech"]
        speech, _ = self._read_speech(sp["pool"], sp["item"])
        n = len(speech)
        p_speech = ops.active_power(speech, sr, threshold_db=cfg.active_threshold_db)
        if not p_speech > 0:
            raise BadSourceError(self.index.pools[sp["pool"]].paths[self._pos(sp["pool"], sp["item"])], "silent speech")
        mix = speech.astype(np.float32, copy=True)
        noise_gains: list[float] = []
        for layer in params["noise"]:
            seg, _ = self._read_noise(layer["pool"], layer["item"], layer["start_s"], n)
            p_noise = ops.power(seg)
            if not p_noise > 1e-20:
                raise RejectSample(f"noise segment of {layer['item']} at {layer['start_s']:.2f} s is silent")
            g = ops.snr_gain(p_speech, p_noise, layer["snr_db"])
            mix += (seg * np.float32(g)).astype(np.float32)
            noise_gains.append(g)
        limit = ops.db_to_gain(cfg.peak_dbfs)
        g_peak = 1.0
        if cfg.clipping == "rescale":
            mix, g_peak = ops.peak_limit(mix, limit)
        elif cfg.clipping == "reject" and ops.peak(mix) > limit:
            raise RejectSample(f"peak {ops.gain_to_db(ops.peak(mix)):.2f} dBFS is over synth.peak_dbfs")
        if not ops.is_finite(mix):
            raise RejectSample("mix is not finite")
        duration_s = n / sr
        sources = [
            {"pool": sp["pool"], "item": sp["item"], "start_s": 0.0, "duration_s": duration_s,
             "gain_db": ops.gain_to_db(g_peak)}
        ]
        for layer, g in zip(params["noise"], noise_gains):
            sources.append(
                {"pool": layer["pool"], "item": layer["item"], "start_s": float(layer["start_s"]),
                 "duration_s": duration_s, "gain_db": ops.gain_to_db(g * g_peak)}
            )
        labels = self._labels_for(params)
        audio_bytes = audio_io.encode(mix, sr, self.recipe.output.audio_codec)
        return Sample(
            columns={
                "audio": {"bytes": audio_bytes, "path": None},
                "sampling_rate": sr,
                "duration_s": duration_s,
            },
            sources=sources,
            embedding=features.audio_embedding(mix, sr),
            labels=labels,
            seconds=duration_s,
        )

    def _labels_for(self, params: dict[str, Any]) -> dict[str, Any]:
        if not self._labels:
            return {}
        used: dict[str, str] = {params["speech"]["pool"]: params["speech"]["item"]}
        for layer in params["noise"]:
            used.setdefault(layer["pool"], layer["item"])
        out: dict[str, Any] = {}
        for pool, col, name, _ in self._labels:
            item = used.get(pool)
            out[name] = None if item is None else self.index.pools[pool].label_row(self._pos(pool, item)).get(col)
        return out

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None
