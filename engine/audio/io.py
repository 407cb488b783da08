"""Audio file I/O on soundfile (libsndfile): probe, segment reads, encode and decode.

- :func:`probe` inspects a source file once, when its pool is indexed, and raises
  :class:`~engine.errors.BadSourceError` with a short human reason for every kind of
  unusable file (missing, empty, not audio, truncated, NaN samples, silent...).
- :func:`read_segment` reads a window with a seek, never the whole file, through an
  optional per-worker :class:`HandleCache` of open handles.
- :func:`encode` / :func:`decode` turn arrays into FLAC/WAV PCM_16 bytes for shards and
  back; encoding is deterministic (same samples -> same bytes).

Arrays are float32 ``(frames, channels)`` for reads and full scale is 1.0.

Compressed sources (MP3, Ogg Vorbis, Opus) are read so that a window ``(start, frames)``
gives the same samples however it is reached: a fresh handle, a cached handle used for
other reads in any order, or a whole-file decode sliced. What libsndfile 1.2.2 does and
what that costs, measured (``tests/test_audio_codecs.py`` holds each of these):

- **pysoundfile's** ``SoundFile.read`` **seeks after every read** (to where it thinks the
  read ended). For MP3 that restarts mpg123 at every block: the bit reservoir is lost,
  libmpg123 prints ``part2_3_length ... too large`` and the samples depend on the block
  size. Compressed sources are therefore read with ``sf_readf_float`` directly
  (:func:`_decode_raw`), which continues the decoder.
- **MP3**: libsndfile's seek is never sample-exact (1-ulp differences everywhere, and
  glitches where the reservoir is missing). So a compressed file is never seeked: with a
  :class:`HandleCache` it is decoded whole on its first read (in memory up to 32 MiB of
  samples, 8.7 min at 16 kHz mono; longer ones into an unlinked scratch file read
  through a memory map) and every read is a slice. Without a cache, or beyond both
  budgets, a read decodes forward from the first sample and discards: a stream continues
  forward, and a window before its position reopens the file (figures per format in
  docs/performance.md).
- **MP3 length**: libsndfile trusts the Xing/Info frame count, and without one it
  estimates from the first frame's bitrate, then never returns samples past that
  estimate. Such files (no Xing frame, or one whose count disagrees with the frames in
  the file) are fed to libsndfile through a pipe (without the stale Xing frame), so that
  it decodes to the true end; :func:`probe` always decodes an MP3 to its end.
- **Opus**: libsndfile seeks to a page 80 ms early and lets the decoder converge; that
  is not sample-exact (a few ulp, in up to a fifth of random windows, depending on the
  signal). Read like MP3.
- **Ogg Vorbis**: a seek from a fresh handle is mostly exact, but not into the last page
  (libsndfile's granule arithmetic there is off), and a short forward seek on a used
  handle skips blocks without decoding them, so the first samples lack their overlap.
  Read like MP3.
- **Terminal noise**: libmpg123 writes its complaints straight to the process's stderr.
  Every libsndfile call on an MP3 runs with file descriptor 2 pointed at a scratch file
  (:func:`_decoder_messages`, serialized by a lock: MP3 decoding in one process runs one
  call at a time); other text that lands there meanwhile is written back to stderr. Since
  MP3 reads never seek, a decoder complaint means corrupt data and becomes a
  :class:`~engine.errors.BadSourceError`.
- **Damage**: :func:`probe` decodes every file from start to end, and checks a compressed
  file's container too: an MP3's frame headers are
  walked (a frame cut off, frames missing that the Xing header declares, a gap in the
  chain) and its audio data is checked against the CRC in its LAME tag; every Ogg page's
  CRC is checked, and the stream must end with its end-of-stream page. libogg drops a
  damaged page silently and libmpg123 decodes a changed byte without complaint, so
  without these checks such files would pass. A decodable file under another extension
  is read by its content, as for WAV and FLAC.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import re
import stat
import struct
import sys
import tempfile
import threading
import zlib
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Union

import numpy as np
import pyarrow.fs as pafs
import soundfile as sf

from engine import fingerprint, sources
from engine.env import SHARED_DECODES_ENV
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
_CODECS = {"flac": "FLAC", "wav": "WAV"}


@dataclass(frozen=True)
class AudioInfo:
    """What :func:`probe` learned about one source file.

    Example: ``AudioInfo(frames=16000, sample_rate=16000, channels=1, duration_s=1.0, format="WAV",
    subtype="PCM_16", peak=0.5, rms=0.12)``
    """

    frames: int
    sample_rate: int
    channels: int
    duration_s: float
    format: str
    subtype: str
    peak: float = 1.0  # largest |sample| over every frame (full scale 1.0)
    rms: float = 1.0  # root mean square over every sample of every channel
    ac_rms: float = 1.0  # the same without each channel's DC offset (0 for a constant value)


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in text)


# Containers whose first bytes are unmistakable and whose damage libsndfile reports only
# as "malformed": such a file is a damaged audio file of that kind, not another type.
_MAGIC = ((b"caff", "CAF"), (b"OggS", "Ogg"))


def _caf_truncation(path: str) -> str | None:
    """Why a CAF file is cut short (its data chunk or a chunk before it runs past the end)."""
    try:
        size = _check_readable(path)
        with _open_raw(path) as fh:
            if fh.read(8)[:4] != b"caff":
                return None
            offset = 8
            while offset + 12 <= size:
                fh.seek(offset)
                chunk = fh.read(12)
                tag, length = chunk[:4], struct.unpack(">q", chunk[4:12])[0]
                if tag == b"data":
                    present = size - offset - 12
                    if length >= 0 and length > present:
                        return (f"truncated: the CAF header declares {length - 4} bytes of audio data "
                                f"but the file holds only {max(present - 4, 0)}")
                    return None
                if length < 0 or offset + 12 + length > size:
                    return f"truncated: the CAF file ends inside its {tag.decode('latin-1')!r} chunk ({size} bytes)"
                offset += 12 + length
            return f"truncated: the CAF file ends before its audio data ({size} bytes)"
    except (OSError, BadSourceError, struct.error):
        return None


def _malformed_reason(path: str, head: bytes, detail: str) -> str | None:
    """A reason for a file libsndfile calls malformed whose first bytes are an audio
    container: truncated (when its structure shows where) or corrupt; None otherwise."""
    name = next((n for magic, n in _MAGIC if head.startswith(magic)), None)
    if name is None:
        return None
    if name == "CAF" and (cut := _caf_truncation(path)):
        return cut
    if name == "Ogg":
        try:
            damage = _ogg_damage(_read_bytes(path))
        except (OSError, BadSourceError):
            damage = None
        if damage:
            return damage
    return f"truncated or corrupt {name} file: its header cannot be parsed (libsndfile: {detail})"


def _not_audio_reason(path: str, error: Exception) -> str:
    ext = os.path.splitext(path)[1].lower()
    try:
        with _open_raw(path) as fh:
            head = fh.read(512)
    except (OSError, BadSourceError):
        head = b""
    content = "the content looks like text and " if _looks_like_text(head) else ""
    detail = str(error).rsplit(":", 1)[-1].strip().rstrip(".") or type(error).__name__
    if "malformed" in detail and (damage := _malformed_reason(path, head, detail)):
        return damage
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


def _open_plain(path: str, quiet: bool = False) -> sf.SoundFile:
    """libsndfile's handle of ``path`` (``quiet``: with an MP3 decoder's stderr captured)."""
    try:
        if quiet:
            with _decoder_messages():
                return _open_plain(path)
        if source_location(path) is not None:
            return sf.SoundFile(_open_raw(path))
        return sf.SoundFile(path)
    except BadSourceError:
        raise
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        # Only a failure pays for the diagnosis: missing, unreadable, a folder, not audio.
        size = _check_readable(path)
        header = _read_wav_header(path, size)
        if header is not None and header.sample_rate is not None and header.channels is not None:
            _check_rate_and_channels(path, header.sample_rate, header.channels)
        raise BadSourceError(path, _not_audio_reason(path, exc)) from None


SEGMENT_OVERSHOOT_S = 0.5


class _ArrayHandle:
    """Decoded audio that reads like an open file (seek and read are exact slices)."""

    def __init__(self, data: np.ndarray, samplerate: int, fmt: str, subtype: str):
        self._data = data
        self.frames, self.channels = int(data.shape[0]), int(data.shape[1])
        self.samplerate, self.format, self.subtype = int(samplerate), fmt, subtype
        self._pos = 0
        self.closed = False

    def seekable(self) -> bool:
        return True

    def seek(self, frame: int) -> int:
        self._pos = int(frame)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, frames: int = -1, dtype: str = "float32", always_2d: bool = False) -> np.ndarray:
        stop = self.frames if frames < 0 else min(self.frames, self._pos + int(frames))
        block = self._data[self._pos:stop].astype(dtype, copy=False)
        self._pos = max(self._pos, stop)
        return block if always_2d or block.shape[1] != 1 else block[:, 0]

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> "_ArrayHandle":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


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
        if handle.format == "MP3" or (handle.format == "OGG" and handle.subtype in ("OPUS", "VORBIS")):
            handle = _Stream(where, handle, None)  # a compressed member: read forward, never seeked
    if isinstance(handle, _Stream):
        # Compressed audio inside a container or under a segment: one whole decode, so that
        # every read is a slice of it (their own seeks are not sample-exact).
        with handle:
            decoded = handle.read_whole()
        handle = _ArrayHandle(decoded, handle.samplerate, handle.format, handle.subtype)
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
                    if chunk_size != 0xFFFFFFFF:  # streaming writers leave it unset (or at 0)
                        data_bytes = chunk_size
                        data_available = size - (offset + 8)
                    break
                offset += 8 + chunk_size + (chunk_size & 1)
    except OSError:
        return None
    return _WavHeader(sample_rate, channels, data_bytes, data_available)


# libsndfile silently shortens a file whose header declares more samples than it holds;
# these read the declared size of the containers it opens that way (plain WAV above).
_W64_DATA = b"data\xf3\xac\xd3\x11\x8c\xd1\x00\xc0\x4f\x8e\xdb\x8a"
_CONTAINER_NAMES = {"RF64": "RF64", "W64": "W64", "AIFF": "AIFF", "AU": "AU", "NIST": "NIST SPHERE"}


def _declared_bytes(fh: Any, fmt: str, size: int) -> tuple[int, int] | tuple[int, int, str] | None:
    """``(declared data bytes, bytes present)`` of a non-WAV container's sample data, or
    ``(declared frames, bytes present, "frames")`` when the header counts frames; None
    when the header does not say (a streaming writer's "unknown") or cannot be read."""
    head = fh.read(12)
    if fmt == "RF64" and head[:4] in (b"RF64", b"BW64") and head[8:12] == b"WAVE":
        offset, data_size = 12, None
        while offset + 8 <= size:
            fh.seek(offset)
            chunk = fh.read(8)
            if len(chunk) < 8:
                return None
            tag, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if tag == b"ds64":
                ds64 = fh.read(16)
                if len(ds64) < 16:
                    return None
                data_size = struct.unpack("<Q", ds64[8:16])[0]
            elif tag == b"data":
                declared = data_size if length == 0xFFFFFFFF else length
                return None if declared in (None, 0) else (declared, size - offset - 8)
            offset += 8 + length + (length & 1)
        return None
    if fmt == "W64" and head[:4] == b"riff":
        offset = 40  # riff GUID, size, wave GUID
        while offset + 24 <= size:
            fh.seek(offset)
            chunk = fh.read(24)
            if len(chunk) < 24:
                return None
            length = struct.unpack("<Q", chunk[16:24])[0]  # includes the 24-byte header
            if chunk[:16] == _W64_DATA:
                return None if length <= 24 else (length - 24, size - offset - 24)
            if length < 24:
                return None
            offset += (length + 7) & ~7
        return None
    if fmt == "AIFF" and head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        offset, frames = 12, None
        while offset + 8 <= size:
            fh.seek(offset)
            chunk = fh.read(8)
            if len(chunk) < 8:
                return None
            tag, length = chunk[:4], struct.unpack(">I", chunk[4:])[0]
            if tag == b"COMM":
                comm = fh.read(6)
                if len(comm) < 6:
                    return None
                frames = struct.unpack(">I", comm[2:6])[0]
            elif tag == b"SSND":
                skip = fh.read(4)
                if frames is None or len(skip) < 4:
                    return None
                return (frames, size - offset - 16 - struct.unpack(">I", skip)[0], "frames")
            offset += 8 + length + (length & 1)
        return None
    if fmt == "AU" and head[:4] == b".snd":
        start, data_size = struct.unpack(">II", head[4:12])
        return None if data_size in (0, 0xFFFFFFFF) else (data_size, size - start)
    if fmt == "NIST" and head[:8] == b"NIST_1A\n":
        fh.seek(0)
        text = fh.read(1024).decode("latin-1")
        fields = dict(re.findall(r"^(\w+) -i (\d+)$", text, re.M))
        header = int(text.split("\n")[1].strip() or 0) if "\n" in text else 0
        if "sample_count" not in fields or not header:
            return None
        return (int(fields["sample_count"]), size - header, "frames")
    return None


def _check_declared_length(path: str, fmt: str, size: int, bytes_per_frame: int) -> None:
    """A RF64, W64, AIFF, AU or NIST file holding fewer samples than its header declares
    is truncated (libsndfile would read the shorter part as if it were all)."""
    if fmt not in _CONTAINER_NAMES or not bytes_per_frame:
        return
    try:
        with _open_raw(path) as fh:
            found = _declared_bytes(fh, fmt, size)
    except (OSError, struct.error, ValueError):
        return
    if found is None:
        return
    declared, present = found[0], max(found[1], 0)
    declared_frames = declared if len(found) == 3 else declared // bytes_per_frame
    if declared_frames * bytes_per_frame > present:
        raise BadSourceError(
            path,
            f"truncated: the {_CONTAINER_NAMES[fmt]} header declares {declared_frames} frames "
            f"but the file holds only {present // bytes_per_frame}",
        )


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
        raise _stops_early(path, f.frames, start + block.shape[0])
    return block


def _stops_early(path: str, declared: int, stop: int) -> BadSourceError:
    return BadSourceError(path, f"truncated: the header declares {declared} frames but decoding stops at frame {stop}")


# ---------------------------------------------------------------- compressed sources

_MP3_EXTENSIONS = (".mp3", ".mp2", ".mpga")
_NOT_MP3_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"FORM", b".snd", b"caff", b"NIST", b"riff")
_STDERR_LOCK = threading.Lock()
_SCRATCH: dict[int, int] = {}  # pid -> the scratch file fd 2 points at during an MP3 call


def _scratch_fd() -> int:
    """This process's scratch file (a forked child makes its own: a shared one would share
    its offset with the parent)."""
    pid = os.getpid()
    if pid not in _SCRATCH:
        with tempfile.TemporaryFile(buffering=0) as f:
            _SCRATCH[pid] = os.dup(f.fileno())  # unlinked already; lives as long as the process
    return _SCRATCH[pid]


def _is_decoder_line(line: str) -> bool:
    return "libmpg123" in line or line.startswith(("Note: ", "Warning: ", "error: "))


@contextmanager
def _decoder_messages() -> Iterator[list[str]]:
    """Run one libsndfile call with fd 2 pointed at a scratch file; yields the list that
    receives what the decoder wrote there (its complaints, one per line).

    libmpg123 prints to the process's stderr itself, below Python, so only a file
    descriptor redirect hides it. fd 2 is per process: the lock makes each window belong
    to one call, so a complaint is known to be about that file. Text from elsewhere that
    lands in the window (another thread's warning) is written back to stderr. Costs a
    few system calls (~10 us) per call: nothing beside decoding a block.
    """
    messages: list[str] = []
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no stderr at all: nothing to hide
            yield messages
            return
        scratch = _scratch_fd()
        os.lseek(scratch, 0, os.SEEK_SET)
        os.ftruncate(scratch, 0)
        os.dup2(scratch, 2)
        try:
            yield messages
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            size = os.fstat(scratch).st_size
            text = os.pread(scratch, size, 0).decode("utf-8", "replace") if size else ""
            other = []
            for line in text.splitlines():
                if line.strip():
                    (messages if _is_decoder_line(line) else other).append(line)
            if other:
                os.write(2, ("\n".join(other) + "\n").encode())


def _complaint(line: str) -> str:
    """A decoder message without libmpg123's source-location prefix."""
    if line.startswith("[") and "] " in line:
        line = line.split("] ", 1)[1]
    return line.strip()


def _fatal(messages: list[str]) -> list[str]:
    # "Warning: Xing stream size off": the header is stale, handled by _mp3_layout.
    return [m for m in messages if not m.startswith("Warning: ")]


def _decode_raw(handle: sf.SoundFile, path: str, frames: int, first_frame: int, quiet: bool) -> np.ndarray:
    """Decode the next ``frames`` frames with libsndfile's ``sf_readf_float``: float32
    ``(frames_read, channels)``, fewer at the end of the stream.

    Not ``SoundFile.read``: pysoundfile seeks after each read to where it thinks the read
    ended, and for MP3 that seek restarts mpg123 (see the module docstring). ``quiet``
    runs the call with the decoder's stderr captured; a complaint is a BadSourceError.
    """
    out = np.empty((frames, handle.channels), dtype=np.float32)
    buf = sf._ffi.cast("float *", out.ctypes.data)  # pysoundfile's own cffi binding of libsndfile
    if quiet:
        with _decoder_messages() as messages:
            got = sf._snd.sf_readf_float(handle._file, buf, frames)
        bad = _fatal(messages)
    else:
        got, bad = sf._snd.sf_readf_float(handle._file, buf, frames), []
    error = handle._errorcode
    if error or bad:
        detail = (
            f"the decoder reports {len(bad)} error(s), first: {_complaint(bad[0])}"
            if bad
            else f"libsndfile: {sf.LibsndfileError(error).error_string.rstrip('.')}"
        )
        raise BadSourceError(
            path,
            f"corrupt: decoding failed in frames {first_frame}..{first_frame + frames} ({detail})",
        )
    return out[:got]


@dataclass(frozen=True)
class _Mp3Layout:
    """The MPEG audio frames of a file, walked header by header (nothing decoded)."""

    data: bytes
    xing: tuple[int, int] | None  # (offset, size) of the Xing/Info frame, if any
    xing_frames: int | None  # the frame count it declares
    audio_frames: int  # frames after the Xing frame, up to where the chain stops
    cut_bytes: int  # > 0: the last frame runs this many bytes past the end of the file
    lame: int | None = None  # offset of the LAME tag after the Xing fields, if any
    stop: int = 0  # byte offset where the chain of frame headers stops

    @property
    def header_is_right(self) -> bool:
        """libsndfile's length will be right: the Xing count matches the frames present."""
        return self.xing_frames is not None and self.xing_frames == self.audio_frames and not self.cut_bytes


_MP3_KBPS = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mp3_frame(data: bytes, i: int) -> tuple[int, int] | None:
    """(frame size in bytes, offset of a Xing tag in it) of the MPEG audio frame at ``i``, or None."""
    if i + 4 > len(data):
        return None
    h = int.from_bytes(data[i : i + 4], "big")
    version, layer_bits = (h >> 19) & 3, (h >> 17) & 3
    rate_index, kbps_index = (h >> 10) & 3, (h >> 12) & 15
    if (h >> 21) != 0x7FF or version == 1 or layer_bits == 0 or rate_index == 3 or kbps_index in (0, 15):
        return None
    mpeg1, layer = version == 3, 4 - layer_bits
    bitrate = _MP3_KBPS[(mpeg1, min(layer, 2) if not mpeg1 else layer)][kbps_index] * 1000
    rate, padding, mono = _MP3_RATES[version][rate_index], (h >> 9) & 1, ((h >> 6) & 3) == 3
    if layer == 1:
        size = (12 * bitrate // rate + padding) * 4
    else:
        size = (144 if mpeg1 or layer == 2 else 72) * bitrate // rate + padding
    side = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    return size, i + 4 + (0 if (h >> 16) & 1 else 2) + side


def _next_frame_chain(data: bytes, start: int, limit: int | None = None) -> int | None:
    """The offset of the first two consecutive MPEG frame headers at or after ``start``
    (within ``limit`` bytes), or None. Tags at the end of a file (ID3v1, APE) hold none."""
    end = len(data) if limit is None else min(len(data), start + limit)
    i = data.find(b"\xff", start, end)
    while i != -1:
        frame = _mp3_frame(data, i)
        if frame is not None and (i + frame[0] >= len(data) or _mp3_frame(data, i + frame[0]) is not None):
            return i
        i = data.find(b"\xff", i + 1, end)
    return None


def _mp3_layout(data: bytes) -> _Mp3Layout | None:
    """Walk the frame headers of MP3 bytes; None if no chain of MPEG audio frames starts
    within the first 64 KiB after any ID3v2 tag (then it is not an MP3 at all)."""
    start = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        start = 10 + int.from_bytes(bytes(b & 0x7F for b in data[6:10]), "big") + (10 if data[5] & 0x10 else 0)
    first = _next_frame_chain(data, start, limit=65536)
    if first is None:
        return None
    xing = xing_frames = None
    size, tag = _mp3_frame(data, first)
    i, frames = first, 0
    lame = None
    if data[tag : tag + 4] in (b"Xing", b"Info"):
        flags = int.from_bytes(data[tag + 4 : tag + 8], "big")
        if flags & 1:
            xing_frames = int.from_bytes(data[tag + 8 : tag + 12], "big")
        lame = tag + 8 + 4 * bool(flags & 1) + 4 * bool(flags & 2) + 100 * bool(flags & 4) + 4 * bool(flags & 8)
        xing, i = (first, size), first + size
    cut = 0
    while (frame := _mp3_frame(data, i)) is not None:
        if i + frame[0] > len(data):
            cut = i + frame[0] - len(data)
            break
        frames += 1
        i += frame[0]
    return _Mp3Layout(data, xing, xing_frames, frames, cut, lame, i)


def _crc16_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC16 = _crc16_table()  # CRC-16/ARC, the LAME tag's checksums


def _crc16(data: bytes) -> int:
    crc, table = 0, _CRC16
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc


def _mp3_damage(layout: _Mp3Layout) -> str | None:
    """Why the MP3's bytes are damaged, or None. Truncation: the last frame is cut, or the
    Xing frame declares more frames than the file holds (fewer: a stale count, e.g. files
    joined after encoding, decoded to the true end). Corruption: the LAME tag's CRC of the
    audio data does not match (checked when the tag's own CRC holds; ~0.1 s per MB).
    Without a LAME tag a changed byte inside a frame's audio data goes unseen."""
    declared = f"; the Xing header declares {layout.xing_frames} frames" if layout.xing_frames else ""
    if layout.cut_bytes:
        return (
            f"truncated: MPEG frame {layout.audio_frames + 1} needs {layout.cut_bytes} more bytes than "
            f"the file holds ({layout.audio_frames} whole frames{declared})"
        )
    if (resume := _next_frame_chain(layout.data, layout.stop)) is not None:
        return (
            f"corrupt: no MPEG frame header at byte {layout.stop} (after frame {layout.audio_frames}); "
            f"frames resume at byte {resume}"
        )
    if layout.xing_frames is not None and layout.xing_frames > layout.audio_frames:
        return f"truncated: the file holds {layout.audio_frames} whole MPEG frames{declared}"
    data, lame = layout.data, layout.lame
    if layout.header_is_right and lame is not None and data[lame : lame + 4] in (b"LAME", b"Lavc", b"Lavf"):
        offset, size = layout.xing
        if _crc16(data[offset : lame + 34]) == int.from_bytes(data[lame + 34 : lame + 36], "big"):
            music_bytes = int.from_bytes(data[lame + 28 : lame + 32], "big")
            music = data[offset + size : offset + music_bytes]
            if music_bytes and _crc16(music) != int.from_bytes(data[lame + 32 : lame + 34], "big"):
                return "corrupt: the audio data does not match the CRC in its LAME tag (bytes changed after encoding)"
    return None


_BIT_REVERSED = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def _ogg_crc(page: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, MSB first, no reflection) through zlib's reflected
    one: reverse the bits of every byte, drop zlib's initial value and final xor by
    linearity, reverse the result."""
    reflected = page.translate(_BIT_REVERSED)
    raw = zlib.crc32(reflected) ^ zlib.crc32(bytes(len(reflected)))
    return int(f"{raw:032b}"[::-1], 2)


def _ogg_damage(data: bytes) -> str | None:
    """Why an Ogg file's pages are damaged, or None: a page whose CRC fails (libogg drops
    it silently and the decode goes on past a gap), a cut last page, or no end-of-stream
    page (the file stops early on a page boundary). ~5 ms per MB."""
    i, pages, end_of_stream = 0, 0, False
    while i < len(data):
        if data[i : i + 4] != b"OggS":
            return f"corrupt: no Ogg page where page {pages + 1} should start (byte {i} of {len(data)})"
        if i + 27 > len(data) or i + 27 + data[i + 26] > len(data):
            return f"truncated: Ogg page {pages + 1} (byte {i}) is cut off"
        segments = data[i + 26]
        end = i + 27 + segments + sum(data[i + 27 : i + 27 + segments])
        if end > len(data):
            return f"truncated: Ogg page {pages + 1} needs {end - len(data)} more bytes than the file holds"
        page = data[i : i + 22] + bytes(4) + data[i + 26 : end]
        if _ogg_crc(page) != int.from_bytes(data[i + 22 : i + 26], "little"):
            return f"corrupt: Ogg page {pages + 1} (bytes {i}..{end}) fails its CRC"
        end_of_stream = bool(data[i + 5] & 4)
        i, pages = end, pages + 1
    if not end_of_stream:
        return f"truncated: the Ogg stream stops after page {pages} without its end-of-stream page"
    return None


def _read_bytes(path: str) -> bytes:
    with _open_raw(path) as fh:
        return fh.read()


def _open_pipe(data: bytes) -> sf.SoundFile:
    """libsndfile reading ``data`` from a pipe: it cannot look at the end of the stream,
    so mpg123 has no length to trust and libsndfile decodes to the true end."""
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        try:
            with open(write_fd, "wb") as w:
                w.write(data)
        except OSError:  # the reader closed early (EPIPE): nothing more is wanted
            pass

    threading.Thread(target=feed, name="shardsmith-mp3-pipe", daemon=True).start()
    try:
        return sf.SoundFile(read_fd, closefd=True)
    except BaseException:
        os.close(read_fd)
        raise


def _may_be_mp3(path: str) -> bool:
    ext = os.path.splitext(path)[1].lower()
    if ext in _MP3_EXTENSIONS:
        return True
    if ext in (".wav", ".wave", ".flac") or source_location(path) is not None:
        return False  # the hot path: no extra read (a mislabelled MP3 is found after opening)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return len(head) == 4 and head not in _NOT_MP3_MAGIC


class _Stream:
    """An MP3, Opus or Ogg Vorbis source read forward only from its first sample, so that
    every read is a slice of one continuous decode (their seeks are not sample-exact).

    ``frames`` is None when the length is unknown until decoded (an MP3 read through a
    pipe); ``layout`` is the MP3 frame walk (None for Ogg).
    """

    def __init__(self, path: str, handle: sf.SoundFile, layout: _Mp3Layout | None):
        self.path, self.handle, self.layout = path, handle, layout
        self.pos = 0
        self.quiet = handle.format == "MP3"
        self.frames: int | None = int(handle.frames) if handle.seekable() else None
        self.channels, self.samplerate = int(handle.channels), int(handle.samplerate)
        self.format, self.subtype = str(handle.format), str(handle.subtype)

    @property
    def closed(self) -> bool:
        return self.handle.closed

    def close(self) -> None:
        self.handle.close()

    def rewind(self) -> None:
        self.handle.close()
        self.handle = _open_stream_handle(self.path, self.layout, self.quiet)
        self.pos = 0

    def decode(self, frames: int) -> np.ndarray:
        block = _decode_raw(self.handle, self.path, frames, self.pos, self.quiet)
        self.pos += block.shape[0]
        return block

    def read(self, start: int, frames: int) -> np.ndarray:
        """Frames ``[start, start + frames)``: fewer at the end, a BadSourceError if the
        decode stops before the length the header declares."""
        if start < self.pos:
            self.rewind()
        while self.pos < start:
            if self.decode(min(_BLOCK_FRAMES, start - self.pos)).shape[0] == 0:
                break
        block = self.decode(frames) if self.pos == start else np.zeros((0, self.channels), np.float32)
        if self.frames is not None and block.shape[0] < max(0, min(frames, self.frames - start)):
            raise _stops_early(self.path, self.frames, self.pos)
        return block

    def read_whole(self, max_frames: int | None = None) -> np.ndarray | None:
        """The whole decode, or None if it is longer than ``max_frames`` (then the stream
        is left part way)."""
        if self.pos:
            self.rewind()
        if self.frames is not None:
            if max_frames is not None and self.frames > max_frames:
                return None
            return self.read(0, self.frames)
        blocks, total = [], 0
        while (block := self.decode(_BLOCK_FRAMES)).shape[0]:
            blocks.append(block)
            total += block.shape[0]
            if max_frames is not None and total > max_frames:
                return None
        return np.concatenate(blocks) if blocks else np.zeros((0, self.channels), np.float32)

    def __enter__(self) -> "_Stream":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _open_stream_handle(path: str, layout: _Mp3Layout | None, quiet: bool) -> sf.SoundFile:
    if layout is None or layout.header_is_right:
        return _open_plain(path, quiet=quiet)
    data = layout.data or _read_bytes(path)  # a cached stream does not keep the bytes
    if layout.xing is not None:  # a stale count: without the Xing frame mpg123 decodes to the end
        offset, size = layout.xing
        data = data[:offset] + data[offset + size :]
    with _decoder_messages():
        return _open_pipe(data)


_Source = Union[sf.SoundFile, _Stream]


def _open_mp3(path: str) -> _Stream | None:
    """An MP3 source as a :class:`_Stream`, or None if the bytes hold no MPEG audio frames."""
    try:
        layout = _mp3_layout(_read_bytes(path))
    except OSError:
        return None  # _open_plain says why
    if layout is None:
        return None
    if layout.audio_frames == 0:
        raise BadSourceError(path, _mp3_damage(layout) or "no audio: the MPEG stream holds no audio frame")
    handle = _open_stream_handle(path, layout, quiet=True)
    if handle.format != "MP3":  # the frame walk was fooled: libsndfile knows better
        handle.close()
        return None
    return _Stream(path, handle, layout)


def _open(path: str) -> _Source:
    """An open source: a SoundFile, or a :class:`_Stream` for MP3, Opus and Vorbis (read
    forward only); BadSourceError with the reason if the file is unusable."""
    if sources.is_locator(path):
        return _open_item(path)
    fingerprint.verify(path)  # in a worker: the file its pool index validated, or SourceChangedError
    maybe_mp3 = _may_be_mp3(path)
    if maybe_mp3 and (stream := _open_mp3(path)) is not None:
        return stream
    handle = _open_plain(path, quiet=maybe_mp3)
    if handle.format == "MP3":  # an MP3 under another name, or one the frame walk missed
        handle.close()
        stream = _open_mp3(path)
        return stream if stream is not None else _Stream(path, _open_plain(path, quiet=True), None)
    if handle.format == "OGG" and handle.subtype in ("OPUS", "VORBIS"):
        return _Stream(path, handle, None)
    return handle


def probe(path: str, *, silence_floor_dbfs: float = -90.0) -> AudioInfo:
    """Check that every frame of ``path`` decodes to finite samples; return its :class:`AudioInfo`.

    Raises :class:`BadSourceError` with a specific reason for: missing or unreadable
    file, 0 bytes, not decodable audio, 0 frames, sample rate outside
    ``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE``, more than ``MAX_CHANNELS`` channels, truncated
    or corrupt data anywhere in the file, NaN/Inf samples anywhere, and silence (peak
    below ``silence_floor_dbfs``). The whole file is decoded, block by block (memory
    stays bounded), so a damaged frame late in a long file is found here and not by a
    worker; the peak and RMS measured on the way let a pool judge the level
    (:mod:`engine.pools`). An hour of 16 kHz FLAC takes about a second; the verdict is
    cached with the pool index (:mod:`engine.probe_cache`).

    Example: ``probe("noise/car/001.wav").duration_s  # 31.2``
    """
    path = os.fspath(path)
    inside = sources.is_locator(path)  # an item of a container: its bytes are checked by decoding
    size = 0 if inside else _check_readable(path)
    if size == 0 and not inside:
        raise BadSourceError(path, "empty file (0 bytes)")
    with _open(path) as source:
        f = source.handle if isinstance(source, _Stream) else source
        sample_rate, channels = int(f.samplerate), int(f.channels)
        frames = int(f.frames) if f.seekable() else 0  # 0: an MP3 whose length only decoding tells
        fmt, subtype = str(f.format), str(f.subtype)
        _check_rate_and_channels(path, sample_rate, channels)
        if fmt == "OGG" and not inside and (damage := _ogg_damage(_read_bytes(path))):
            raise BadSourceError(path, damage)
        level = _Level()
        if isinstance(source, _Stream):
            frames = _decode_to_end(source, level)
            return _probe_result(path, frames, sample_rate, channels, fmt, subtype, level, silence_floor_dbfs)
        if frames <= 0:
            header = _read_wav_header(path, size) if fmt.startswith("WAV") and not inside else None
            if header is not None and header.data_bytes == 0 and header.data_available:
                raise BadSourceError(
                    path, f"no audio: the WAV header declares 0 bytes of data but {header.data_available:,} bytes "
                          "follow it (a streaming writer that never finished its header); re-export the file, "
                          "or rewrite its header (e.g. sox --ignore-length in.wav out.wav)")
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
        elif not inside:
            _check_declared_length(path, fmt, size, _bytes_per_frame(subtype, channels))
        start = 0
        while start < frames:
            block = _read_at(f, path, start, min(_BLOCK_FRAMES, frames - start))
            _check_block(path, block, start)
            level.add(block)
            start += block.shape[0]
    return _probe_result(path, frames, sample_rate, channels, fmt, subtype, level, silence_floor_dbfs)


class _Level:
    """Peak, RMS and RMS without the DC offset over the (finite) blocks of a decode.

    Per channel, each block's mean and centred sum of squares are merged into the running
    ones (Chan et al.'s pairwise update), so a large DC offset does not swamp a small
    signal in rounding. Squares are summed in float32 while they cannot overflow and in
    float64 beyond (a float file at 1e36 has a finite peak and squares float32 cannot hold).
    """

    def __init__(self) -> None:
        self.peak, self.frames = 0.0, 0
        self.mean: np.ndarray | None = None  # per channel, float64
        self.m2: np.ndarray | None = None  # per channel: sum of squared deviations from the mean

    def add(self, block: np.ndarray) -> None:
        n = block.shape[0]
        if not n:
            return
        self.peak = max(self.peak, float(block.max()), -float(block.min()))
        mean_b = block.mean(axis=0, dtype=np.float64)
        wide = self.peak >= 1e15  # 1e30 per square, 2**16 of them: far below float32's 3.4e38
        centred = (block.astype(np.float64) if wide else block) - mean_b.astype(np.float64 if wide else np.float32)
        m2_b = np.einsum("ij,ij->j", centred, centred).astype(np.float64)
        if self.mean is None:
            self.mean, self.m2, self.frames = mean_b, m2_b, n
            return
        total = self.frames + n
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2_b + delta * delta * (self.frames * n / total)
        self.frames = total

    @property
    def ac_rms(self) -> float:
        """RMS of the signal without its DC offset (per channel), over all channels."""
        return float(np.sqrt(np.mean(self.m2) / self.frames)) if self.frames else 0.0

    @property
    def rms(self) -> float:
        """RMS over every sample of every channel."""
        if not self.frames:
            return 0.0
        return float(np.sqrt(np.mean(self.m2 / self.frames + self.mean * self.mean)))


def _decode_to_end(stream: _Stream, level: _Level) -> int:
    """Decode a stream from its start to its end, measuring its level; returns its frames.
    An MP3 is decoded whole whatever its length, as only that tells its true length when
    the header is absent or wrong (about 0.5 s per hour of 16 kHz audio, see
    docs/performance.md)."""
    layout, path = stream.layout, stream.path
    damage = _mp3_damage(layout) if layout is not None else None
    if damage:
        raise BadSourceError(path, damage)
    while (block := stream.decode(_BLOCK_FRAMES)).shape[0]:
        _check_block(path, block, stream.pos - block.shape[0])
        level.add(block)
    if stream.frames is not None and stream.pos < stream.frames:
        raise _stops_early(path, stream.frames, stream.pos)
    if stream.pos == 0:
        raise BadSourceError(path, "no audio: 0 frames (no decodable audio frame)")
    return stream.pos


def _probe_result(
    path: str, frames: int, sample_rate: int, channels: int, fmt: str, subtype: str,
    level: _Level, silence_floor_dbfs: float,
) -> AudioInfo:
    floor = 10.0 ** (silence_floor_dbfs / 20.0)
    if level.peak < floor:
        if level.peak == 0:
            reason = "silent: all samples are zero"
        else:
            reason = (
                f"silent: peak {20.0 * np.log10(level.peak):.1f} dBFS is below the "
                f"{silence_floor_dbfs:g} dBFS floor"
            )
        raise BadSourceError(path, reason)
    return AudioInfo(
        frames=frames,
        sample_rate=sample_rate,
        channels=channels,
        duration_s=frames / sample_rate,
        format=fmt,
        subtype=subtype,
        peak=level.peak,
        rms=level.rms,
        ac_rms=level.ac_rms,
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


class DecodeStore:
    """Whole decodes held by key (see :class:`HandleCache`), least recently used first,
    and the keys known to fit neither budget. A cache holds its MP3, Opus and Vorbis
    decodes in one of its own, by path. The lossless files read in segments go in another,
    keyed by path, size and mtime, with the frames read so far from each: a worker keeps
    that one across the caches of its shards, so a long noise file is decoded once per
    worker. The budgets are those of the cache that adds a decode.

    A file named in :meth:`decode_at_first_read` is decoded whole on its first segment
    read instead of once the reads add up to its length: for a pool that every shard is
    bound to read over (a single hour of noise under thousands of samples), the seeks
    before the decode would be spent for nothing.

    Example: ``store = DecodeStore(); HandleCache(lossless=store)``
    """

    def __init__(self) -> None:
        self.decoded: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.seen: dict[tuple, int] = {}
        self.too_long: set[tuple] = set()
        self.eager: set[str] = set()
        self.owner = ""  # whom the decodes are held for (a run's pool index token)
        # the decodes that are files of the run's shared folder (engine.env.SHARED_DECODES_ENV),
        # by key: one evicted over the budgets is removed from the folder too
        self.shared: dict[tuple, str] = {}

    def held(self, key: Any) -> np.ndarray | None:
        """The decode held under ``key`` (now the most recently used), or None: not decoded
        yet, or known to fit neither budget (``key in self.too_long``)."""
        pcm = self.decoded.get(key)
        if pcm is not None:
            self.decoded.move_to_end(key)
        return pcm

    def decode_at_first_read(self, paths: Iterable[str]) -> None:
        """Decode these files whole on their first segment read (within the cache's budgets)."""
        self.eager.update(os.fspath(p) for p in paths)

    def hold_for(self, owner: str) -> None:
        """Keep the decodes for ``owner`` only: another owner starts empty."""
        if owner != self.owner:
            self.clear()
            self.owner = owner

    def forget(self, path: str) -> None:
        """Drop what is held for ``path`` (after a decode error)."""
        for table in (self.decoded, self.seen, self.shared):
            for ident in [k for k in table if k[0] == path]:
                del table[ident]
        self.too_long = {k for k in self.too_long if k[0] != path}

    def clear(self) -> None:
        """Drop every decode (the files of the run's shared folder stay for the other
        processes: the run removes the folder at its end)."""
        self.decoded.clear()
        self.seen.clear()
        self.too_long.clear()
        self.eager.clear()
        self.shared.clear()


class HandleCache:
    """A small LRU of open sources, one per worker, and the whole decodes of MP3, Opus and
    Vorbis files.

    Re-opening a FLAC for every segment costs more than the read; a worker keeps its
    most recently used handles open (``capacity``, default 64) and closes the least
    recently used one when full. A compressed file is decoded whole on its first read
    (its reads are then slices, sample-exact; see the module docstring): in memory if the
    decode takes at most a quarter of ``decoded_bytes`` (default 128 MiB in all), else in
    an unlinked scratch file under ``spill_dir`` (default: the temporary folder) read
    through a memory map, up to ``spill_bytes`` on disk in all (default 8 GiB; one hour
    of 16 kHz mono is 230 MB). The least recently used decodes go first. A file beyond
    both is read as a stream: forward, and from the start again for an earlier window.

    A lossless file (FLAC, WAV, ...) read in segments, as a long noise file is, is decoded
    whole too once the segments read from it add up to its length: from then on its reads
    are slices of that decode, the same samples its seek-and-read gave (libsndfile seeks
    these formats sample-exact), and the whole decode cost no more than the reads already
    made (or on its first segment read, for the files its :class:`DecodeStore` was told
    will be read over anyway). Whole reads (a speech utterance) never count. The same
    budgets hold.
    Not thread-safe (one per worker process).

    Example: ``with HandleCache() as cache: read_segment(path, 0, 16000, cache=cache)``
    """

    def __init__(
        self,
        capacity: int = 64,
        decoded_bytes: int = 128 * 2**20,
        spill_bytes: int = 8 * 2**30,
        spill_dir: str | None = None,
        lossless: "DecodeStore | None" = None,
    ):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.decoded_bytes, self.spill_bytes, self.spill_dir = int(decoded_bytes), int(spill_bytes), spill_dir
        self._handles: OrderedDict[str, _Source] = OrderedDict()
        # whole decodes of MP3, Opus and Vorbis files (by path): this cache's own
        self._compressed = DecodeStore()
        self._decoded = self._compressed.decoded  # the same table, by its older name
        # whole decodes of lossless files read in segments: this cache's own, or a store a
        # worker keeps across its caches (one per shard) so that a noise file is decoded once
        self._lossless = lossless if lossless is not None else DecodeStore()

    def source(self, path: str) -> _Source:
        """The open source of ``path``: a SoundFile, or a forward-only stream for MP3, Opus
        and Vorbis (opened on first use; BadSourceError if unusable)."""
        key = os.fspath(path)
        handle = self._handles.get(key)
        if handle is not None and not handle.closed:
            self._handles.move_to_end(key)
            return handle
        handle = _open(key)
        if isinstance(handle, _Stream) and handle.layout is not None:  # a file's bytes are not kept open
            handle.layout = dataclasses.replace(handle.layout, data=b"")
        self._handles[key] = handle
        while len(self._handles) > self.capacity:
            _, old = self._handles.popitem(last=False)
            old.close()
        return handle

    def get(self, path: str) -> sf.SoundFile:
        """The open libsndfile handle for ``path`` (opened on first use; BadSourceError if unusable)."""
        source = self.source(path)
        return source.handle if isinstance(source, _Stream) else source

    def decoded(self, stream: _Stream) -> np.ndarray | None:
        """The whole decode of a stream, read-only (in memory or memory-mapped), or None if
        it fits neither budget."""
        key, store = stream.path, self._compressed
        pcm = store.held(key)
        if pcm is not None or key in store.too_long:
            return pcm
        return self._keep(key, self._decode_whole(_stream_blocks(stream), stream.channels, stream.frames), store)

    def hot(self, handle: sf.SoundFile, path: str, frames: int) -> np.ndarray | None:
        """The whole decode of a lossless file read in segments, ``(frames, channels)``
        read-only, once the segments read from it (``frames`` now included) exceed its
        length; None before that or if it fits neither budget."""
        key = os.fspath(path)
        try:
            st = os.stat(key)
        except OSError:
            return None
        ident = (key, st.st_size, st.st_mtime_ns)  # a rewritten file is another entry
        store = self._lossless
        pcm = store.held(ident)
        if pcm is not None or ident in store.too_long:
            return pcm
        seen = store.seen.get(ident, 0) + int(frames)
        store.seen[ident] = seen
        if seen <= handle.frames and key not in store.eager:
            return None
        check = handle.subtype in _FLOAT_SUBTYPES
        share = _shared_name(ident, handle.channels)
        pcm = self._decode_whole(_file_blocks(handle, key, check), handle.channels, handle.frames, share=share)
        if share is not None and isinstance(pcm, np.memmap):
            store.shared[ident] = share
        return self._keep(ident, pcm, store)

    def _keep(self, key: Any, pcm: np.ndarray | None, store: DecodeStore) -> np.ndarray | None:
        """Hold a whole decode in ``store`` (None: too long for either budget, remembered),
        evicting the least recently used ones beyond this cache's budgets."""
        if pcm is None:
            store.too_long.add(key)
            return None
        held_by = store.decoded
        held_by[key] = pcm
        for spilled in (False, True):
            budget = self.spill_bytes if spilled else self.decoded_bytes
            held = [k for k, a in held_by.items() if isinstance(a, np.memmap) == spilled]
            while sum(held_by[k].nbytes for k in held) > budget and len(held) > 1:
                old = held.pop(0)
                del held_by[old]  # an unlinked scratch file goes with its map
                shared = store.shared.pop(old, None)
                if shared is not None:  # over this process's budget: the run's folder lets it go too
                    with contextlib.suppress(OSError):
                        os.unlink(shared)  # a process that maps it keeps it; one that needs it decodes it again
        return pcm

    def _decode_whole(self, source: Iterator[np.ndarray], channels: int, frames: int | None,
                      share: str | None = None) -> np.ndarray | None:
        """Every block of ``source`` in one array: in memory up to a quarter of
        ``decoded_bytes``, else in an unlinked scratch file read through a memory map;
        None past ``spill_bytes`` (or known to be, from ``frames``). With ``share`` (a
        file name, :func:`_shared_name`) a decode that spills is the file of that name: mapped
        as it is when another process of the run has made it, else written under a temporary
        name and renamed to it once whole (and checked)."""
        frame_bytes = 4 * channels
        in_memory = self.decoded_bytes // 4
        known = None if frames is None else frames * frame_bytes
        if known is not None and known > max(in_memory, self.spill_bytes):
            return None
        if share is not None and known is not None and known > in_memory:
            pcm = _map_shared(share, known, channels)
            if pcm is not None:
                return pcm
        blocks: list[np.ndarray] = []
        total, spill, part = 0, None, None
        try:
            for block in source:
                total += block.nbytes
                if total > self.spill_bytes and total > in_memory:
                    return None
                if spill is None and total > in_memory:
                    where = os.path.dirname(share) if share is not None else self.spill_dir
                    fd, name = tempfile.mkstemp(prefix="shardsmith-decoded-", suffix=".part", dir=where)
                    if share is not None:
                        part = name  # renamed to ``share`` once whole
                    else:
                        os.unlink(name)  # gone from the folder now; the space goes with the last reference
                    spill = os.fdopen(fd, "w+b")
                    for earlier in blocks:
                        spill.write(earlier.tobytes())
                    blocks = []
                if spill is not None:
                    spill.write(block.tobytes())
                else:
                    blocks.append(block)
            if spill is None:
                pcm = np.concatenate(blocks) if blocks else np.zeros((0, channels), np.float32)
                pcm.setflags(write=False)
                return pcm
            spill.flush()
            pcm = np.memmap(spill, dtype=np.float32, mode="r", shape=(total // frame_bytes, channels))
            if part is not None and share is not None:
                os.replace(part, share)  # whole and checked: the other processes of the run map it
                part = None
            return pcm
        finally:
            if spill is not None:
                spill.close()  # the map keeps its own descriptor
            if part is not None:  # not whole (an error, or past the budget): nobody maps it
                with contextlib.suppress(OSError):
                    os.unlink(part)

    def discard(self, path: str) -> None:
        """Close and forget the handle of ``path`` (after a decode error left it in a bad state)."""
        key = os.fspath(path)
        self._compressed.decoded.pop(key, None)
        self._lossless.forget(key)
        handle = self._handles.pop(key, None)
        if handle is not None:
            handle.close()

    def close(self) -> None:
        """Close every open handle and drop the decodes."""
        self._compressed.clear()
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


def _shared_name(ident: tuple[str, int, int], channels: int) -> str | None:
    """Where the whole decode of a lossless file (``ident``: path, size, mtime) is shared
    by the processes of a run on this machine, or None: the folder named by
    :data:`engine.env.SHARED_DECODES_ENV` (a local run sets it for its driver and the
    workers of the Ray instance it starts) is not set or gone."""
    folder = os.environ.get(SHARED_DECODES_ENV)
    if not folder:
        return None
    try:
        st = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None  # only a private folder of this user (as the run makes it): nobody else can plant a decode
    name = hashlib.blake2b(repr((*ident, channels)).encode(), digest_size=16).hexdigest()
    return os.path.join(folder, f"{name}.f32")


def _map_shared(name: str, nbytes: int, channels: int) -> np.ndarray | None:
    """The decode another process of the run made under ``name`` (``nbytes`` long), read
    through a memory map; None when there is none yet (or it is not whole)."""
    try:
        with open(name, "rb") as f:
            if os.fstat(f.fileno()).st_size != nbytes:
                return None
            return np.memmap(f, dtype=np.float32, mode="r", shape=(nbytes // (4 * channels), channels))
    except (OSError, ValueError):
        return None


def _stream_blocks(stream: _Stream) -> Iterator[np.ndarray]:
    """A compressed stream from its start, block by block (BadSourceError if it stops
    before the frames its header declares)."""
    if stream.pos:
        stream.rewind()
    while (block := stream.decode(_BLOCK_FRAMES)).shape[0]:
        yield block
    if stream.frames is not None and stream.pos < stream.frames:
        raise _stops_early(stream.path, stream.frames, stream.pos)


def _file_blocks(handle: sf.SoundFile, path: str, check: bool) -> Iterator[np.ndarray]:
    """A lossless file from its start, block by block, with the checks of a segment read
    (decode errors, truncation, and NaN/Inf where ``check``: float files)."""
    for start in range(0, int(handle.frames), _BLOCK_FRAMES):
        block = _read_at(handle, path, start, min(_BLOCK_FRAMES, int(handle.frames) - start))
        if check:
            _check_block(path, block, start)
        yield block


@contextmanager
def _reading(path: str, cache: HandleCache | None) -> Iterator[_Source]:
    """An open source for one read: from the cache (kept open, dropped if the file turns
    out bad, so a broken handle is not reused) or opened and closed here."""
    handle = cache.source(path) if cache is not None else _open(path)
    try:
        yield handle
    except BadSourceError:
        if cache is not None:
            cache.discard(path)
        raise
    finally:
        if cache is None:
            handle.close()


def _stream_segment(
    source: _Stream, path: str, start_frame: int, frames: int, cache: HandleCache | None
) -> np.ndarray:
    """Frames of an MP3, Opus or Vorbis source, sample-exact (see the module docstring):
    float32 ``(frames_read, channels)``, a new array."""
    pcm = cache.decoded(source) if cache is not None else None
    block = np.array(pcm[start_frame : start_frame + frames]) if pcm is not None else source.read(start_frame, frames)
    _check_block(path, block, start_frame)
    return block


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
        if isinstance(handle, _Stream):
            return _stream_segment(handle, path, start_frame, frames, cache)
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
        if isinstance(handle, _Stream):
            block = _stream_segment(handle, path, start_frame, frames, cache)
            return block[:, 0].copy() if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float64).astype(np.float32)
        if start_frame >= handle.frames or frames == 0:
            return np.zeros(0, dtype=np.float32)
        whole = cache.hot(handle, path, frames) if cache is not None and frames < handle.frames else None
        if whole is not None:  # checked as it was decoded
            block = whole[start_frame : start_frame + frames]
            return block[:, 0].copy() if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float64).astype(np.float32)
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
            raise _stops_early(path, handle.frames, start_frame + block.shape[0])
        if handle.subtype in _FLOAT_SUBTYPES:
            _check_block(path, block[:, None], start_frame)
        return block


def read_all(path: str, *, cache: HandleCache | None = None) -> np.ndarray:
    """Read a whole (short) file: float32 ``(frames, channels)``. Use read_segment for long ones.

    Example: ``read_all("rir/room1.wav").shape  # (8000, 1)``
    """
    path = os.fspath(path)
    with _reading(path, cache) as handle:  # one open for the length and the read
        if isinstance(handle, _Stream):
            pcm = cache.decoded(handle) if cache is not None else None
            whole = np.array(pcm) if pcm is not None else handle.read_whole()
            _check_block(path, whole, 0)
            return whole
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
