"""Embeddings of raw media files, made as the shards make them for synthesized rows.

The mismatch evaluator compares target (dev) data given as raw files with synthesized
shards; both sides must go through the same featurizer.

Example::

    featurize_file("dev/utt1.flac").shape            # (66,)
    featurize_files(["a.wav", "broken.wav"])         # [("ok", array), ("bad", "reason")]
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..audio import io as audio_io
from ..audio import ops
from ..errors import BadSourceError, InputError
from ..media import media_kind
from .audio import audio_embedding
from .image import image_embedding

__all__ = ["featurize_file", "featurize_files"]


def featurize_file(path: str) -> np.ndarray:
    """The embedding of one raw audio or image file, as shards store it for synthesized rows.

    Audio is read whole, downmixed and embedded at its own sample rate with
    :func:`~engine.features.audio_embedding`; images use :func:`~engine.features.image_embedding`.
    Raises :class:`~engine.errors.BadSourceError` for an unusable file.

    Example: ``featurize_file("dev/utt1.flac").shape == (66,)``
    """
    kind = media_kind(path)
    if kind == "audio":
        info = audio_io.probe(path)
        x = ops.downmix(audio_io.read_all(path))
        return audio_embedding(x, info.sample_rate).astype(np.float64)
    if kind == "image":
        # lazily: the reader the image synthesizers use, and OpenCV with it
        from ..image.io import read_image

        return image_embedding(read_image(path, "rgb")).astype(np.float64)
    raise BadSourceError(path, f"unknown media type {os.path.splitext(path)[1]!r} (not audio or an image)")


def featurize_files(paths: list[str]) -> list[tuple[str, Any]]:
    """``("ok", embedding)`` or ``("bad", reason)`` per path, in order; threads for 8 or more.

    One unreadable file must not stop a comparison, so its reason is returned instead.

    Example: ``featurize_files(["a.wav"])[0][0] == "ok"``
    """

    def one(p: str) -> tuple[str, Any]:
        try:
            return ("ok", featurize_file(p))
        except BadSourceError as exc:
            return ("bad", exc.reason)
        except InputError:
            raise
        except Exception as exc:  # one unreadable file must not stop the comparison
            return ("bad", f"cannot be read ({type(exc).__name__}: {exc})")

    if len(paths) < 8:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as ex:
        return list(ex.map(one, paths))
