"""How the rest of shardsmith reads a ``speech_noise_mix`` row's params: the source pieces
the coverage forecast predicts, the categories ``mismatch slices`` groups errors by, and
how ``export`` writes a row. Pure functions of params and rows, no pool data.

Example::

    slice_categories({"noise": [{"pool": "car", "item": "a.wav", "snr_db": 7.0}]}, [])["SNR band"]
    # ['[5, 10) dB']
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import soundfile as sf

from ...audio.io import decode
from ..base import first_seen, walk_refs, write_sidecar
from .speech_perturb import time_scale

SNR_BAND_DB = 5.0  # width of the SNR bands errors are sliced by


def _speed(entry: dict[str, Any]) -> float:
    return float((entry.get("perturb") or {}).get("speed", 1.0))


def source_pieces(params: dict[str, Any], duration: Callable[[str, str], float],
                  config: Any = None) -> list[tuple[str, str, float]]:
    """As ``apply`` records sources: the utterance whole; each noise layer for the
    output's length (the utterance's, over its speech speed and tempo) times its speed;
    each event for its crop (at most ``max_duration_s`` of output, times its speed); the
    rest (reverb) whole."""
    sp = params["speech"]
    item_s = duration(sp["pool"], sp["item"])
    out = [(sp["pool"], sp["item"], item_s)]
    need = item_s * time_scale(params.get("speech_perturb"))
    for layer in params.get("noise", []):
        out.append((layer["pool"], layer["item"], need * _speed(layer)))
    events_cfg = getattr(config, "events", None) or []
    for ev in params.get("events", []):
        speed = _speed(ev)
        layer = ev.get("layer", 0)
        cap = getattr(events_cfg[layer], "max_duration_s", need) if layer < len(events_cfg) else need
        item_s = duration(ev["pool"], ev["item"])
        out.append((ev["pool"], ev["item"], min(item_s / speed, cap, need) * speed))
    rest = {k: v for k, v in params.items() if k not in ("speech", "noise", "events")}
    return out + [(pool, item, duration(pool, item)) for _, pool, item in walk_refs(rest)]


def effective_snr_db(snrs: list[float]) -> float:
    """SNR of speech against all noise layers together (their powers add)."""
    total = sum(10.0 ** (-s / 10.0) for s in snrs)
    return -10.0 * math.log10(total)


def snr_band(snr_db: float) -> str:
    lo = math.floor(snr_db / SNR_BAND_DB) * SNR_BAND_DB
    return f"[{lo:g}, {lo + SNR_BAND_DB:g}) dB"


# The speech perturbations a row is sliced by, as ``params["speech_perturb"]`` names them.
SPEECH_PERTURBATIONS = {"speed": "speed changed", "tempo": "tempo changed", "pitch_semitones": "pitch shifted",
                        "gain_db": "gain changed"}


def _stages(params: dict[str, Any]) -> list[dict[str, Any]]:
    stages = params.get("channel")
    return [s for s in stages if isinstance(s, dict)] if isinstance(stages, list) else []


def channel_categories(params: dict[str, Any]) -> dict[str, list[str]]:
    """The channel and speech perturbation a row went through: ``codec``, each codec that
    ran (``mulaw``, ``opus``, ...); ``phone band``, the telephone band (``narrowband`` when
    it went through 8 kHz, ``band-pass`` when it kept its rate); ``speech``, each speech
    perturbation that fired (``speed changed``, ``tempo changed``, ``pitch shifted``,
    ``gain changed``; ``unperturbed`` when the recipe's ``speech_perturb`` fired none).
    ``(none)`` where nothing ran: alone, it is a dimension the recipe does not use, which
    ``mismatch slices`` hides.

    Example: ``channel_categories({"channel": [{"layer": 3, "type": "codec", "codec": "gsm"}]})["codec"] == ["gsm"]``
    """
    stages = _stages(params)
    codecs = first_seen(str(s.get("codec")) for s in stages if s.get("type") == "codec" and s.get("codec"))
    bands = first_seen("narrowband" if s.get("narrowband") else "band-pass"
                       for s in stages if s.get("type") == "telephone")
    perturb = params.get("speech_perturb")
    if isinstance(perturb, dict):
        fired = [name for key, name in SPEECH_PERTURBATIONS.items() if key in perturb] or ["unperturbed"]
    else:
        fired = ["(none)"]
    return {"codec": codecs or ["(none)"], "phone band": bands or ["(none)"], "speech": fired}


def slice_categories(params: dict[str, Any], sources: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Slice by the noise actually mixed in: its pools and items, the SNR band (of the
    total SNR, or of all layers together), events, and reverb; and by the channel and the
    speech perturbation (:func:`channel_categories`)."""
    cats: dict[str, list[str]] = {}
    layers = params.get("noise")
    if not isinstance(layers, list):
        layers = []
    cats["noise pool"] = first_seen(x.get("pool") for x in layers) or ["(no noise)"]
    cats["noise item"] = first_seen(x.get("item") for x in layers) or ["(no noise)"]
    snrs = [float(x["snr_db"]) for x in layers if isinstance(x.get("snr_db"), (int, float))]
    if isinstance(params.get("total_snr_db"), (int, float)):
        cats["SNR band"] = [snr_band(float(params["total_snr_db"]))]
    elif snrs:
        cats["SNR band"] = [snr_band(effective_snr_db(snrs))]
    elif not layers:
        cats["SNR band"] = ["(no noise)"]
    events = params.get("events")
    cats["event item"] = (
        first_seen(e.get("item") for e in events) if isinstance(events, list) and events else ["(no events)"]
    )
    reverb = params.get("reverb")
    cats["reverb"] = ["reverb" if reverb else "dry"]
    cats["reverb item"] = [str(reverb.get("item")) if isinstance(reverb, dict) else "dry"]
    cats.update(channel_categories(params))
    return cats


def export_row(row: dict[str, Any], dest: Path) -> None:
    """The row's audio as 16-bit WAV (any player opens it) and its provenance beside it."""
    x, sr = decode(row["audio"]["bytes"])
    sf.write(dest / f"{row['sample_id']}.wav", np.asarray(x), sr, subtype="PCM_16")
    write_sidecar(row, dest, skip=("audio",))
