"""Which files are media: the audio and image file extensions the engine knows, once.

The readers name the format an extension promises when a file does not decode
(:data:`AUDIO_FORMATS`, :data:`IMAGE_FORMATS`); folders of raw data are searched for
:data:`MEDIA_EXTENSIONS` (``shardsmith split``, ``shardsmith mismatch data``).

Example::

    media_kind("dev/utt1.FLAC")      # 'audio'
    find_media("dev_audio/")         # every audio or image file below, sorted
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["AUDIO_FORMATS", "IMAGE_FORMATS", "AUDIO_EXTENSIONS", "IMAGE_EXTENSIONS", "MEDIA_EXTENSIONS",
           "media_kind", "find_media"]

# extension -> what it promises (named in "not an audio file" messages)
AUDIO_FORMATS: dict[str, str] = {
    ".wav": "WAV audio",
    ".wave": "WAV audio",
    ".flac": "FLAC audio",
    ".ogg": "Ogg audio",
    ".oga": "Ogg audio",
    ".opus": "Opus audio",
    ".mp3": "MP3 audio",
    ".aif": "AIFF audio",
    ".aiff": "AIFF audio",
    ".au": "AU audio",
    ".caf": "CAF audio",
    ".w64": "Wave64 audio",
    ".sph": "NIST SPHERE audio",
}
# extension -> what it promises (named in "not an image" messages); a folder search
# skips .gif: it is named when a file fails, never looked for as data.
IMAGE_FORMATS: dict[str, str] = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WebP",
    ".tif": "TIFF", ".tiff": "TIFF", ".gif": "GIF",
}
AUDIO_EXTENSIONS: tuple[str, ...] = tuple(AUDIO_FORMATS)
IMAGE_EXTENSIONS: tuple[str, ...] = tuple(ext for ext in IMAGE_FORMATS if ext != ".gif")
MEDIA_EXTENSIONS: tuple[str, ...] = AUDIO_EXTENSIONS + IMAGE_EXTENSIONS


def media_kind(path: str | os.PathLike[str]) -> str | None:
    """``"audio"``, ``"image"`` or ``None``, by the file's extension (any case).

    Example: ``media_kind("photos/a.JPG") == "image"``
    """
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext in AUDIO_EXTENSIONS:
        return "audio"
    if ext in IMAGE_EXTENSIONS:
        return "image"
    return None


def find_media(folder: str | os.PathLike[str]) -> list[str]:
    """Every audio or image file below ``folder`` (recursively), sorted, as paths that
    start with ``folder`` as given.

    Example: ``find_media("demo_data/noise")[0]  # 'demo_data/noise/babble/babble-0.wav'``
    """
    return sorted(os.fspath(f) for f in Path(folder).rglob("*") if f.is_file() and media_kind(f) is not None)
