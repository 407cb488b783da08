"""A segment of an open recording that reads like a recording of its own.

Kaldi ``segments``, Lhotse supervisions and cuts name a stretch of a longer recording
(and sometimes one channel of it). :class:`SegmentHandle` wraps an open
``soundfile.SoundFile`` so that frame 0 is the segment's first frame, ``frames`` is its
length and reads stop at its end; the readers in :mod:`engine.audio.io` use it as they
use a file, so seek reads, probing and replay work the same on segments.

Example::

    h = SegmentHandle(sf.SoundFile("rec.flac"), start_frame=16000, frames=8000, channel=None)
    h.read(100, dtype="float32", always_2d=True).shape   # (100, channels)
"""

from __future__ import annotations

from typing import Any

import numpy as np


class SegmentHandle:
    """Frames ``[start_frame, start_frame + frames)`` of ``inner``, one channel or all."""

    def __init__(self, inner: Any, start_frame: int, frames: int, channel: int | None):
        self._inner = inner
        self._start = int(start_frame)
        self.frames = int(frames)
        self._channel = channel
        self.samplerate = inner.samplerate
        self.channels = 1 if channel is not None else inner.channels
        self.format = inner.format
        self.subtype = inner.subtype
        self._pos = 0
        inner.seek(self._start)

    @property
    def closed(self) -> bool:
        return self._inner.closed

    def seekable(self) -> bool:
        return True

    def seek(self, frame: int) -> int:
        self._inner.seek(self._start + int(frame))
        self._pos = int(frame)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, frames: int = -1, dtype: str = "float64", always_2d: bool = False) -> np.ndarray:
        left = self.frames - self._pos
        n = left if frames < 0 else max(0, min(int(frames), left))
        block = self._inner.read(n, dtype=dtype, always_2d=True) if n else np.zeros((0, self._inner.channels), dtype)
        self._pos += block.shape[0]
        if self._channel is not None:
            block = block[:, self._channel : self._channel + 1]
        if always_2d or block.shape[1] != 1:
            return block
        return block[:, 0]

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> "SegmentHandle":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
