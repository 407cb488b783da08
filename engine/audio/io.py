"""Audio file I/O on soundfile (libsndfile): probe, segment reads, encode and decode.

- :func:`probe` inspects a source file once, when its pool is indexed, and raises
  :class:`~engine.errors.BadSourceError` with a short human reason for every kind of
  unusable file (missing, empty, not audio, truncated, NaN samples, silent...).
- :func:`read_segment` reads a window with a seek, never the whole file, through an
  optional per-worker :class:`HandleCache` of open handles.
- :func:`encode` / :func:`decode` turn arrays into FLAC/WAV PCM_16 bytes for shards and
  back; encoding is deterministic (same samples -> same bytes).

Arrays are float32 ``(frames, channels)`` for reads and full scale is 1.0.
"""

from __future__ import annotations

import io
import os
import stat
import struct
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import pyarrow.fs as pafs
import soundfile as sf

from engine import sources
from engine.audio.segments import SegmentHandle
from engine.errors import BadSourceError
from engine.media import AUDIO_FORMATS
from engine.storage import source_location

__all__ = [
    "AudioInfo",
    "MIN_SAMPLE_RATE",
    "MAX_SAMPLE_RATE",
    "MAX_CHANNELS",
    "probe",
    "read_segment",
    "read_all",
    "read_mono",
    "HandleCache",
    "encode",
    "decode",
]

MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384000
MAX_CHANNELS = 8

_BLOCK_FRAMES = 65536  # full-read block: bounds memory to ~2 MB per channel
_SPOT_CHECKS = 8  # evenly spaced ~1 s windows probed inside long files
_CODECS = {"flac": "FLAC", "wav": "WAV"}


@dataclass(frozen=True)
class AudioInfo:
    """What :func:`probe` learned about one source file.

    Example: ``AudioInfo(frames=16000, sample_rate=16000, channels=1, duration_s=1.0, format="WAV", subtype="PCM_16")``
    """

    frames: int
    sample_rate: int
    channels: int
    duration_s: float
    format: str
    subtype: str


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in text)


def _not_audio_reason(path: str, error: Exception) -> str:
    ext = os.path.splitext(path)[1].lower()
    try:
        with _open_raw(path) as fh:
            head = fh.read(512)
    except (OSError, BadSourceError):
        head = b""
    content = "the content looks like text and " if _looks_like_text(head) else ""
    detail = str(error).rsplit(":", 1)[-1].strip().rstrip(".") or type(error).__name__
    if ext in AUDIO_FORMATS:
        promise = f"the {ext} extension suggests {AUDIO_FORMATS[ext]}, but"
    elif ext:
        promise = f"the {ext} extension is not a known audio type, and"
    else:
        promise = "the name has no extension, and"
    return f"not an audio file: {promise} {content}it is not decodable audio (libsndfile: {detail})"


def _open_raw(path: str):
    """A binary file object for a local path or an object-store URI."""
    remote = source_location(path)
    if remote is None:
        return open(path, "rb")
    fs, key = remote
    return fs.open_input_file(key)


def _check_readable(path: str) -> int:
    """Return the size in bytes, or raise BadSourceError for missing/unreadable files."""
    remote = source_location(path)
    if remote is not None:

        fs, key = remote
        try:
            info = fs.get_file_info(key)
        except OSError as exc:
            raise BadSourceError(path, f"not readable: {str(exc).splitlines()[0][:200]}") from None
        if info.type == pafs.FileType.NotFound:
            raise BadSourceError(path, "file not found")
        if info.type != pafs.FileType.File:
            raise BadSourceError(path, "is a directory, not an audio file")
        return int(info.size or 0)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise BadSourceError(path, "file not found") from None
    except PermissionError:
        raise BadSourceError(path, "not readable: permission denied") from None
    except OSError as exc:
        raise BadSourceError(path, f"not readable: {exc.strerror or exc}") from None
    if os.path.isdir(path):
        raise BadSourceError(path, "is a directory, not an audio file")
    if not stat.S_ISREG(st.st_mode):
        # Opening a FIFO would block forever: take regular files only.
        raise BadSourceError(path, "not a regular file (a FIFO, socket or device); pools take regular files only")
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise BadSourceError(path, "not readable: permission denied") from None
    except OSError as exc:
        raise BadSourceError(path, f"not readable: {exc.strerror or exc}") from None
    return st.st_size


def _open(path: str) -> sf.SoundFile:
    if sources.is_locator(path):
        return _open_item(path)
    try:
        if source_location(path) is not None:
            return sf.SoundFile(_open_raw(path))
        return sf.SoundFile(path)
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        # Only a failure pays for the diagnosis: missing, unreadable, a folder, not audio.
        size = _check_readable(path)
        header = _read_wav_header(path, size)
        if header is not None and header.sample_rate is not None and header.channels is not None:
            _check_rate_and_channels(path, header.sample_rate, header.channels)
        raise BadSourceError(path, _not_audio_reason(path, exc)) from None


SEGMENT_OVERSHOOT_S = 0.5


def _open_item(locator: str) -> Any:
    """An item inside a container (a table row, a tar member) or a segment of a
    recording, opened like a file (see :mod:`engine.sources`)."""
    raw, segment = sources.open_media(locator)
    where = sources.describe(locator)
    if isinstance(raw, str):
        handle = _open(raw)
    else:
        try:
            handle = sf.SoundFile(raw)
        except (sf.SoundFileError, RuntimeError) as exc:
            raise BadSourceError(where, _not_audio_reason(where, exc)) from None
    if segment is None:
        return handle
    sr = int(handle.samplerate)
    start = int(round(segment.start_s * sr))
    frames = handle.frames - start if segment.duration_s is None else int(round(segment.duration_s * sr))
    # A segment may end a little past its recording (Kaldi's extract-segments allows
    # SEGMENT_OVERSHOOT_S, as its --max-overshoot default): it is cut at the end.
    if start < 0 or frames <= 0 or start >= handle.frames or start + frames > handle.frames + SEGMENT_OVERSHOOT_S * sr:
        total = handle.frames / sr
        handle.close()
        raise BadSourceError(
            where, f"segment {segment.start_s:g}..{segment.start_s + (segment.duration_s or 0):g} s is past the "
                   f"end of its {total:.3f} s recording (more than {SEGMENT_OVERSHOOT_S:g} s over)")
    if segment.channel is not None and not 0 <= segment.channel < handle.channels:
        channels = handle.channels
        handle.close()
        raise BadSourceError(where, f"channel {segment.channel} of a {channels}-channel recording")
    return SegmentHandle(handle, start, min(frames, handle.frames - start), segment.channel)


@dataclass(frozen=True)
class _WavHeader:
    sample_rate: int | None
    channels: int | None
    data_bytes: int | None  # declared size of the data chunk (None: unset or absent)
    data_available: int | None  # bytes actually present after the data chunk header


def _read_wav_header(path: str, size: int) -> _WavHeader | None:
    """The fields of a RIFF/WAVE header that libsndfile hides or refuses, or None.

    libsndfile silently shortens a WAV whose data chunk runs past the end of the file,
    and refuses to open one whose sample rate is 0; both are read from the header here.
    """
    sample_rate = channels = data_bytes = data_available = None
    try:
        with _open_raw(path) as fh:
            riff = fh.read(12)
            if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
                return None
            offset = 12
            while offset + 8 <= size:
                fh.seek(offset)
                header = fh.read(8)
                if len(header) < 8:
                    break
                chunk_id, chunk_size = header[:4], struct.unpack("<I", header[4:])[0]
                if chunk_id == b"fmt ":
                    fmt = fh.read(8)
                    if len(fmt) == 8:
                        _, channels, sample_rate = struct.unpack("<HHI", fmt)
                elif chunk_id == b"data":
                    if chunk_size not in (0, 0xFFFFFFFF):  # streaming writers leave it unset
                        data_bytes = chunk_size
                        data_available = size - (offset + 8)
                    break
                offset += 8 + chunk_size + (chunk_size & 1)
    except OSError:
        return None
    return _WavHeader(sample_rate, channels, data_bytes, data_available)


def _check_rate_and_channels(path: str, sample_rate: int, channels: int) -> None:
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise BadSourceError(
            path,
            f"sample rate {sample_rate} Hz is not usable; "
            f"expected {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz",
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise BadSourceError(path, f"{channels} channels is not usable; expected 1..{MAX_CHANNELS}")


def _check_block(path: str, block: np.ndarray, first_frame: int) -> None:
    if not np.isfinite(block).all():
        bad = int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0]) + first_frame
        raise BadSourceError(path, f"contains NaN/Inf samples (first at frame {bad})")


def _read_at(f: sf.SoundFile, path: str, start: int, frames: int) -> np.ndarray:
    """Seek and read, turning libsndfile errors into a 'truncated or corrupt' reject."""
    try:
        f.seek(start)
        block = f.read(frames, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as exc:
        detail = str(exc).removeprefix("Error :").strip().rstrip(".")
        raise BadSourceError(
            path,
            f"truncated or corrupt: decoding failed in frames {start}..{start + frames} "
            f"of {f.frames} (libsndfile: {detail})",
        ) from None
    expected = max(0, min(frames, f.frames - start))
    if block.shape[0] < expected:
        got = start + block.shape[0]
        raise BadSourceError(
            path,
            f"truncated: the header declares {f.frames} frames but decoding stops at frame {got}",
        )
    return block


def probe(
    path: str,
    *,
    full_read_max_s: float = 120.0,
    silence_floor_dbfs: float = -90.0,
) -> AudioInfo:
    """Check that ``path`` is usable audio and return its :class:`AudioInfo`.

    Raises :class:`BadSourceError` with a specific reason for: missing or unreadable
    file, 0 bytes, not decodable audio, 0 frames, sample rate outside
    ``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE``, more than ``MAX_CHANNELS`` channels, truncated
    or corrupt data, NaN/Inf samples, and silence (peak below ``silence_floor_dbfs``).
    Files up to ``full_read_max_s`` long are decoded in full, block by block; longer
    files are spot-checked with ~1 s reads at the start, at ``8`` evenly spaced points
    and at the very end (which also finds truncation), so probing cost stays bounded.

    Example: ``probe("noise/car/001.wav").duration_s  # 31.2``
    """
    path = os.fspath(path)
    inside = sources.is_locator(path)  # an item of a container: its bytes are checked by decoding
    size = 0 if inside else _check_readable(path)
    if size == 0 and not inside:
        raise BadSourceError(path, "empty file (0 bytes)")
    with _open(path) as f:
        sample_rate, channels, frames = int(f.samplerate), int(f.channels), int(f.frames)
        fmt, subtype = str(f.format), str(f.subtype)
        _check_rate_and_channels(path, sample_rate, channels)
        if frames <= 0:
            raise BadSourceError(path, "no audio: 0 frames (header only)")
        if fmt.startswith("WAV") and not inside:
            header = _read_wav_header(path, size)
            bytes_per_frame = _bytes_per_frame(subtype, channels)
            if (
                header is not None
                and header.data_bytes is not None
                and bytes_per_frame
                and header.data_bytes > header.data_available
            ):
                raise BadSourceError(
                    path,
                    f"truncated: the WAV header declares {header.data_bytes // bytes_per_frame} "
                    f"frames but the file holds only {header.data_available // bytes_per_frame}",
                )
        peak = 0.0
        duration_s = frames / sample_rate
        if duration_s <= full_read_max_s:
            start = 0
            while start < frames:
                block = _read_at(f, path, start, min(_BLOCK_FRAMES, frames - start))
                _check_block(path, block, start)
                if block.size:
                    peak = max(peak, float(np.max(np.abs(block))))
                start += block.shape[0]
        else:
            window = min(frames, sample_rate)  # ~1 s
            last = frames - window
            starts = sorted(
                {0, last} | {int(round(last * k / (_SPOT_CHECKS + 1))) for k in range(1, _SPOT_CHECKS + 1)}
            )
            for start in starts:
                block = _read_at(f, path, start, window)
                _check_block(path, block, start)
                peak = max(peak, float(np.max(np.abs(block))))

    floor = 10.0 ** (silence_floor_dbfs / 20.0)
    if peak < floor:
        where = "" if duration_s <= full_read_max_s else " in every spot-checked window"
        if peak == 0:
            reason = f"silent: all samples are zero{where}"
        else:
            reason = (
                f"silent: peak {20.0 * np.log10(peak):.1f} dBFS{where} is below the "
                f"{silence_floor_dbfs:g} dBFS floor"
            )
        raise BadSourceError(path, reason)
    return AudioInfo(
        frames=frames,
        sample_rate=sample_rate,
        channels=channels,
        duration_s=duration_s,
        format=fmt,
        subtype=subtype,
    )


def _bytes_per_frame(subtype: str, channels: int) -> int:
    width = {
        "PCM_U8": 1,
        "PCM_S8": 1,
        "PCM_16": 2,
        "PCM_24": 3,
        "PCM_32": 4,
        "FLOAT": 4,
        "DOUBLE": 8,
        "ULAW": 1,
        "ALAW": 1,
    }.get(subtype, 0)
    return width * channels


class HandleCache:
    """A small LRU of open ``soundfile.SoundFile`` handles, one per worker.

    Re-opening a FLAC for every segment costs more than the read; a worker keeps its
    most recently used handles open (``capacity``, default 64) and closes the least
    recently used one when full. Not thread-safe (one per worker process).

    Example: ``with HandleCache() as cache: read_segment(path, 0, 16000, cache=cache)``
    """

    def __init__(self, capacity: int = 64):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._handles: OrderedDict[str, sf.SoundFile] = OrderedDict()

    def get(self, path: str) -> sf.SoundFile:
        """The open handle for ``path`` (opened on first use; BadSourceError if unusable)."""
        key = os.fspath(path)
        handle = self._handles.get(key)
        if handle is not None and not handle.closed:
            self._handles.move_to_end(key)
            return handle
        handle = _open(key)
        self._handles[key] = handle
        while len(self._handles) > self.capacity:
            _, old = self._handles.popitem(last=False)
            old.close()
        return handle

    def discard(self, path: str) -> None:
        """Close and forget the handle of ``path`` (after a decode error left it in a bad state)."""
        handle = self._handles.pop(os.fspath(path), None)
        if handle is not None:
            handle.close()

    def close(self) -> None:
        """Close every open handle."""
        while self._handles:
            _, handle = self._handles.popitem()
            handle.close()

    def __len__(self) -> int:
        return len(self._handles)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, (str, os.PathLike)) and os.fspath(path) in self._handles

    def __enter__(self) -> "HandleCache":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@contextmanager
def _reading(path: str, cache: HandleCache | None) -> Iterator[sf.SoundFile]:
    """An open handle for one read: from the cache (kept open, dropped if the file turns
    out bad, so a broken handle is not reused) or opened and closed here."""
    handle = cache.get(path) if cache is not None else _open(path)
    try:
        yield handle
    except BadSourceError:
        if cache is not None:
            cache.discard(path)
        raise
    finally:
        if cache is None:
            handle.close()


def _check_range(start_frame: int, frames: int) -> tuple[int, int]:
    start_frame, frames = int(start_frame), int(frames)
    if start_frame < 0 or frames < 0:
        raise ValueError(f"start_frame and frames must be >= 0, got {start_frame}, {frames}")
    return start_frame, frames


def _segment(handle: sf.SoundFile, path: str, start_frame: int, frames: int) -> np.ndarray:
    if start_frame >= handle.frames or frames == 0:
        return np.zeros((0, handle.channels), dtype=np.float32)
    block = _read_at(handle, path, start_frame, frames)
    _check_block(path, block, start_frame)
    return block


def read_segment(
    path: str, start_frame: int, frames: int, *, cache: HandleCache | None = None
) -> np.ndarray:
    """Read ``frames`` frames from ``start_frame`` with a seek: float32 ``(frames_read, channels)``.

    The read is clipped at the end of the file (fewer frames, or none, come back).
    Raises :class:`BadSourceError` for unusable files, decode errors, truncation and
    NaN/Inf samples. With a ``cache`` the handle stays open for the next read.

    Example: ``read_segment("speech.flac", 16000, 8000).shape  # (8000, 1)``
    """
    path = os.fspath(path)
    start_frame, frames = _check_range(start_frame, frames)
    with _reading(path, cache) as handle:
        return _segment(handle, path, start_frame, frames)


_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")


def read_mono(
    path: str, start_frame: int, frames: int, *, cache: HandleCache | None = None
) -> np.ndarray:
    """Like :func:`read_segment`, but mono float32 ``(frames_read,)``: a mono file is read
    straight into a 1-D array (no copy), a multichannel one is averaged over channels.
    Integer PCM and FLAC cannot hold NaN/Inf, so only float files are checked for them.

    Example: ``read_mono("noise/one_hour.flac", 16000 * 600, 160000, cache=cache).shape  # (160000,)``
    """
    path = os.fspath(path)
    start_frame, frames = _check_range(start_frame, frames)
    with _reading(path, cache) as handle:
        if start_frame >= handle.frames or frames == 0:
            return np.zeros(0, dtype=np.float32)
        if handle.channels != 1:
            block = _segment(handle, path, start_frame, frames)
            return block.mean(axis=1, dtype=np.float64).astype(np.float32)
        try:
            if handle.tell() != start_frame:  # a fresh handle is already at 0: no FLAC seek
                handle.seek(start_frame)
            block = handle.read(frames, dtype="float32", always_2d=False)
        except (sf.SoundFileError, RuntimeError):
            block = _read_at(handle, path, start_frame, frames)[:, 0]  # raises the clear reason
        expected = max(0, min(frames, handle.frames - start_frame))
        if block.shape[0] < expected:
            raise BadSourceError(
                path,
                f"truncated: the header declares {handle.frames} frames but decoding stops at frame "
                f"{start_frame + block.shape[0]}",
            )
        if handle.subtype in _FLOAT_SUBTYPES:
            _check_block(path, block[:, None], start_frame)
        return block


def read_all(path: str, *, cache: HandleCache | None = None) -> np.ndarray:
    """Read a whole (short) file: float32 ``(frames, channels)``. Use read_segment for long ones.

    Example: ``read_all("rir/room1.wav").shape  # (8000, 1)``
    """
    path = os.fspath(path)
    with _reading(path, cache) as handle:  # one open for the length and the read
        return _segment(handle, path, 0, int(handle.frames))


def encode(x: np.ndarray, sample_rate: int, codec: str = "flac", *, checked: bool = False) -> bytes:
    """Encode mono ``(frames,)`` or ``(frames, channels)`` float audio as PCM_16 FLAC or WAV bytes.

    Samples are clipped to [-1, 1]; NaN/Inf is a ValueError. With ``checked=True`` the
    caller guarantees finite samples within [-1, 1] (e.g. after peak control) and both
    passes over the signal are skipped. The bytes are deterministic: the same samples
    and rate always give the same bytes.

    Example: ``decode(encode(np.zeros(160, np.float32), 16000))[1] == 16000``
    """
    key = codec.lower()
    if key not in _CODECS:
        raise ValueError(f"codec must be one of {sorted(_CODECS)}, got {codec!r}")
    a = np.asarray(x, dtype=np.float32)
    if a.ndim not in (1, 2):
        raise ValueError(f"expected (frames,) or (frames, channels), got shape {a.shape}")
    if not checked:
        if not np.isfinite(a).all():
            raise ValueError("cannot encode NaN/Inf samples")
        a = np.clip(a, -1.0, 1.0)
    if key == "flac":
        # libsndfile's FLAC writer maps float x to rint(x * 32768) clipped to the int16
        # range; doing that here in three vector passes gives the same bytes and saves a
        # sixth of the encode (its own conversion loop is scalar).
        a = _flac_pcm16(a)
    buf = io.BytesIO()
    sf.write(buf, a, int(sample_rate), format=_CODECS[key], subtype="PCM_16")
    return buf.getvalue()


def _flac_pcm16(a: np.ndarray) -> np.ndarray:
    """float32 samples as the int16 values libsndfile's FLAC writer would make of them."""
    scaled = np.multiply(a, np.float32(32768.0))  # a power of two: exact
    np.clip(scaled, -32768.0, 32767.0, out=scaled)
    pcm = np.empty(scaled.shape, dtype=np.int16)
    np.rint(scaled, out=pcm, casting="unsafe")  # half to even, as lrintf in the default mode
    return pcm


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Decode audio bytes (as made by :func:`encode`): float32 ``(frames,)`` for mono, else
    ``(frames, channels)``, and the sample rate. ValueError if the bytes are not audio.

    Example: ``x, sample_rate = decode(row["audio"]["bytes"])``
    """
    try:
        x, sample_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except (sf.SoundFileError, RuntimeError) as exc:
        raise ValueError(f"bytes are not decodable audio ({exc})") from None
    return x, int(sample_rate)
