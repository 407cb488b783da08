"""Small per-sample embeddings for the coverage analyzer and the mismatch evaluator.

- :mod:`.audio`: log-mel statistics of audio (``AUDIO_EMBED_DIM`` = 66 values);
- :mod:`.image`: colour, layout, sharpness and noise of an image (``IMAGE_EMBED_DIM`` = 64);
- :mod:`.files`: the same embeddings of raw media files (imported on its own: it loads
  the audio readers, which a worker that only embeds rows does not need).

Import order: ``audio`` and ``image`` import nothing of the engine; ``files`` imports
both and the readers.

Example::

    e = audio_embedding(x, 16000)
    embedding_names(e.size)[-1]      # 'level_dbfs'
"""

from __future__ import annotations

from .audio import (
    AUDIO_EMBED_DIM,
    MAX_FRAMES,
    MEL_FMAX_HZ,
    N_MEL_BANDS,
    audio_embedding,
    audio_feature_names,
    mel_band_edges_hz,
    mel_filterbank,
)
from .image import IMAGE_EMBED_DIM, IMAGE_FEATURE_NAMES, image_embedding

__all__ = [
    "AUDIO_EMBED_DIM",
    "MAX_FRAMES",
    "MEL_FMAX_HZ",
    "N_MEL_BANDS",
    "IMAGE_EMBED_DIM",
    "IMAGE_FEATURE_NAMES",
    "audio_embedding",
    "audio_feature_names",
    "embedding_names",
    "image_embedding",
    "mel_band_edges_hz",
    "mel_filterbank",
]


def embedding_names(dim: int) -> list[str]:
    """A readable name for each embedding dimension: the layouts of
    :func:`audio_embedding` (66) and :func:`image_embedding` (64), else ``dim_17``.

    Example: ``embedding_names(66)[-1] == 'level_dbfs'``
    """
    if dim == AUDIO_EMBED_DIM:
        return audio_feature_names()
    if dim == IMAGE_EMBED_DIM:
        return list(IMAGE_FEATURE_NAMES)
    return [f"dim_{i:02d}" for i in range(dim)]
