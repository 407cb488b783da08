"""Image file I/O on OpenCV: probe, decode + normalize, encode.

- :func:`probe` inspects a source file once, when its pool is indexed: the header is
  read first (Pillow, without decoding pixels) so an oversized image is refused before
  it can exhaust memory, then the pixels are decoded exactly as a worker will decode
  them. Every unusable file raises :class:`~engine.errors.BadSourceError` with a short
  reason: missing, empty, not an image, truncated, corrupt, oversized.
- :func:`decode` / :func:`read_image` return ``uint8`` arrays normalized to the pool's
  ``mode``: ``rgb`` ``(H, W, 3)``, ``rgba`` ``(H, W, 4)`` or ``gray`` ``(H, W)``, from
  8- or 16-bit, grayscale, grayscale+alpha, palette, RGB(A) or float sources. JPEG EXIF
  orientation is applied (what a phone photo looks like, not how its sensor stored it).
- :func:`encode` writes PNG, JPEG or WebP bytes; same pixels -> same bytes.

Arrays are in RGB(A) channel order; OpenCV's BGR order never leaves this module.

Example::

    info = probe("photos/a.jpg", max_pixels=40_000_000)
    img = read_image("photos/a.jpg", "rgb")
    blob = encode(img, "jpeg", quality=90)
"""

from __future__ import annotations

import io
import os
import re
import stat
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
import pyarrow.fs as pafs
from PIL import Image, UnidentifiedImageError

from engine import fingerprint, sources
from engine.errors import BadSourceError
from engine.media import IMAGE_FORMATS
from engine.storage import is_uri, source_location

__all__ = [
    "ImageInfo",
    "MODES",
    "FORMATS",
    "EXTENSIONS",
    "probe",
    "decode",
    "read_image",
    "encode",
    "channels_of",
]

MODES = ("rgb", "rgba", "gray")
FORMATS = ("png", "jpeg", "webp")
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
# PNG settings, pinned so the bytes do not follow a library default: zlib level 1 with the
# RLE strategy and the SUB filter (OpenCV's own fast default; on photos it is both faster
# and smaller than level 3+ with adaptive filtering, which costs 2-10x the time).
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
              cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`probe` learned about one source file (size after EXIF orientation).

    Example: ``ImageInfo(width=640, height=480, channels=3, bit_depth=8, format="JPEG")``
    """

    width: int
    height: int
    channels: int  # colour channels stored in the file (1 gray, 2 gray+alpha, 3, 4)
    bit_depth: int
    format: str

    @property
    def pixels(self) -> int:
        return self.width * self.height


def channels_of(mode: str) -> int:
    """Channels of an array normalized to ``mode``: ``channels_of("rgba") == 4``."""
    return {"rgb": 3, "rgba": 4, "gray": 1}[mode]


# --------------------------------------------------------------------------- decode


def _to_uint8(arr: np.ndarray, path: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        # Exact rounding of x * 255 / 65535 in integers (no float drift between machines).
        return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if arr.dtype in (np.float32, np.float64):
        # Float images (TIFF/EXR) are taken as 0..1; non-finite values become 0.
        f = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        return np.clip(np.rint(f * 255.0), 0, 255).astype(np.uint8)
    raise BadSourceError(path, f"unsupported pixel type {arr.dtype} (expected 8/16-bit integers or float)")


_CONVERT = {
    # (source channels, mode) -> cv2 conversion from OpenCV's order (None: keep)
    (1, "rgb"): cv2.COLOR_GRAY2RGB,
    (1, "rgba"): cv2.COLOR_GRAY2RGBA,
    (1, "gray"): None,
    (3, "rgb"): cv2.COLOR_BGR2RGB,
    (3, "rgba"): cv2.COLOR_BGR2RGBA,
    (3, "gray"): cv2.COLOR_BGR2GRAY,
    (4, "rgb"): cv2.COLOR_BGRA2RGB,  # alpha dropped
    (4, "rgba"): cv2.COLOR_BGRA2RGBA,
    (4, "gray"): cv2.COLOR_BGRA2GRAY,
}


def _normalize(arr: np.ndarray, mode: str, path: str) -> np.ndarray:
    arr = _to_uint8(arr, path)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] == 2:  # gray + alpha (a TIFF; OpenCV expands a PNG's)
        gray, alpha = arr[:, :, 0], arr[:, :, 1]
        arr = cv2.merge([gray, gray, gray, alpha])  # BGRA: the alpha is kept for rgba
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    key = (channels, mode)
    if key not in _CONVERT:
        raise BadSourceError(path, f"unsupported image layout {arr.shape} (expected 1, 3 or 4 channels)")
    code = _CONVERT[key]
    out = arr if code is None else cv2.cvtColor(arr, code)
    return np.ascontiguousarray(out)


def _imdecode(data: bytes | np.ndarray, mode: str) -> np.ndarray | None:
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if bytes(buf[:3]) == _JPEG_MAGIC:
        # IMREAD_COLOR / GRAYSCALE apply the EXIF orientation; UNCHANGED would not.
        flag = cv2.IMREAD_GRAYSCALE if mode == "gray" else cv2.IMREAD_COLOR
    else:
        flag = cv2.IMREAD_UNCHANGED  # keeps alpha, 16 bits and float for normalization
    arr = cv2.imdecode(buf, flag)
    if mode == "rgba" and arr is not None and arr.ndim == 2 and bytes(buf[:4]) in _TIFF_MAGIC:
        with_alpha = _tiff_gray_alpha(buf.tobytes())
        arr = arr if with_alpha is None else with_alpha
    return arr


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


def _tiff_gray_alpha(data: bytes) -> np.ndarray | None:
    """A grayscale + alpha TIFF as ``(H, W, 2)`` (OpenCV reads only its gray), or None."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.mode not in ("LA", "La"):
                return None
            return np.asarray(im.convert("LA"))
    except Exception:  # noqa: BLE001 - OpenCV's decode stands
        return None


def decode(data: bytes, mode: str = "rgb", *, path: str = "<bytes>") -> np.ndarray:
    """Decode image bytes to a ``uint8`` array normalized to ``mode`` (rgb | rgba | gray).

    Raises :class:`BadSourceError` when the bytes are not a decodable image.

    Example: ``decode(open("a.png", "rb").read(), "rgb").shape == (480, 640, 3)``
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not data:
        raise BadSourceError(path, "empty file (0 bytes)")
    arr = _imdecode(data, mode)
    if arr is None or arr.size == 0:
        raise BadSourceError(path, _undecodable_reason(data, path))
    return _normalize(arr, mode, path)


def _read_object(path: str, missing: str) -> bytes:
    """The bytes of an object-store URI such as ``s3://bucket/photos/a.jpg``."""

    def first_line(exc: Exception) -> str:
        return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__

    fs, key = source_location(path)
    try:
        info = fs.get_file_info(key)
    except OSError as exc:
        raise BadSourceError(path, f"cannot open this location ({first_line(exc)})") from None
    if info.type == pafs.FileType.NotFound:
        raise BadSourceError(path, missing)
    if info.type != pafs.FileType.File:
        raise BadSourceError(path, "is a directory, not an image file")
    try:
        with fs.open_input_file(key) as f:
            return f.read()
    except OSError as exc:
        raise BadSourceError(path, f"cannot be read ({first_line(exc)})") from None


def _item_bytes(locator: str) -> bytes:
    """The encoded bytes of an item inside a container (a table row, a tar member)."""
    raw, _ = sources.open_media(locator)
    if not isinstance(raw, str):
        return raw.read()
    fingerprint.verify(raw)
    if is_uri(raw):
        return _read_object(raw, "file not found")
    with open(raw, "rb") as f:  # a table row that names a file beside the table
        return f.read()


def read_image(path: str, mode: str = "rgb") -> np.ndarray:
    """Read and decode one image file, local or on an object store (see :func:`decode`).

    Example: ``read_image("demo_data/images/photos/photo-000.png", "rgb")``
    """
    missing = "file not found (deleted or moved after indexing?)"
    try:
        if sources.is_locator(path):
            data = np.frombuffer(_item_bytes(path), dtype=np.uint8)
        elif is_uri(path):
            fingerprint.verify(path)  # in a worker: the file its pool index validated
            data = np.frombuffer(_read_object(path, missing), dtype=np.uint8)
        else:
            fingerprint.verify(path)
            data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise BadSourceError(path, missing) from None
    except PermissionError:
        raise BadSourceError(path, "not readable (permission denied)") from None
    except OSError as exc:
        raise BadSourceError(path, f"cannot be read ({exc.strerror or exc})") from None
    if data.size == 0:
        raise BadSourceError(path, "empty file (0 bytes)")
    arr = _imdecode(data, mode)
    if arr is None or arr.size == 0:
        raise BadSourceError(path, _undecodable_reason(data.tobytes(), path))
    return _normalize(arr, mode, path)


def _looks_truncated(data: bytes) -> bool:
    if data.startswith(_JPEG_MAGIC):
        return b"\xff\xd9" not in data[-64:]
    if data.startswith(_PNG_MAGIC):
        return b"IEND" not in data[-64:]
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 8:
        return int.from_bytes(data[4:8], "little") + 8 > len(data)
    return False


def _format_of(data: bytes) -> str | None:
    if data.startswith(_JPEG_MAGIC):
        return "JPEG"
    if data.startswith(_PNG_MAGIC):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def _undecodable_reason(data: bytes, path: str, known_as: str | None = None) -> str:
    """Why OpenCV could not decode ``data``; ``known_as``: the format Pillow found in it."""
    fmt = _format_of(data)
    if fmt == "PNG" and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        if width == 0 or height == 0:
            return f"empty image: the PNG header declares {width}×{height} pixels"
    if fmt is None and known_as:
        return (f"{known_as} image: a format OpenCV (which decodes every image here) cannot read; "
                "convert it to PNG (e.g. convert FILE out.png)")
    if fmt is not None and _looks_truncated(data):
        return f"truncated {fmt} file: it ends before the image data does ({len(data)} bytes)"
    if fmt is not None:
        return f"corrupt {fmt} data: the header is readable but the pixels cannot be decoded"
    return _not_an_image(path)


def _not_an_image(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    promised = IMAGE_FORMATS.get(ext)
    if promised:
        return f"not an image: the {ext} name promises {promised} but the content is not a decodable image"
    return "not an image (the content is no image format OpenCV or Pillow recognise)"


# --------------------------------------------------------------------------- probe


def _above(max_pixels: int) -> str:
    return f"above max_pixels ({max_pixels:,}); raise the pool's max_pixels or downscale the file"


# Formats whose files may hold several images (animation frames, pages). A JPEG with a
# depth map or a preview (Pillow's "MPO", as phones write) is one photo: not counted.
_MULTI_FRAME_FORMATS = ("GIF", "PNG", "TIFF", "WEBP")


def _header(data: bytes, path: str, max_pixels: int) -> tuple[int, int, int, int, str] | None:
    """(width, height, channels, bit depth, format) from the header, without decoding
    the pixels; None when Pillow does not know the format (OpenCV may still). A file of
    several frames or pages (an animated GIF, PNG or WebP, a multi-page TIFF) is refused:
    a worker would silently use its first frame."""

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: we check the size ourselves
            im = Image.open(io.BytesIO(data))
            width, height = im.size
            mode, fmt = im.mode, im.format or "?"
            frames = int(getattr(im, "n_frames", 1) or 1) if fmt in _MULTI_FRAME_FORMATS else 1
    except UnidentifiedImageError:
        return None
    except Image.DecompressionBombError as exc:
        # Pillow refuses past ~179 M pixels before we see the size; its message has the count.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        count = f"{int(found.group(1)):,} pixels" if found else "more than 178,956,970 pixels"
        raise BadSourceError(path, f"oversized: the header declares {count}, {_above(max_pixels)}") from None
    except Exception as exc:  # noqa: BLE001 - a broken header is a reject, never a crash
        msg = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        fmt = _format_of(data)
        if fmt and _looks_truncated(data):
            return None  # let the decode path report it as truncated
        raise BadSourceError(path, f"corrupt image header ({msg})") from None
    if frames > 1:
        what = "pages" if fmt == "TIFF" else "frames (an animation)"
        raise BadSourceError(
            path, f"{frames} {what} in one {fmt} file; shardsmith reads single images, and would use only "
                  "the first: extract the frames to files of their own (e.g. ffmpeg -i FILE frame-%03d.png, "
                  "or convert FILE frame-%03d.png) and list those")
    bands = {"1": 1, "L": 1, "P": 3, "LA": 2, "PA": 4, "RGB": 3, "RGBA": 4, "CMYK": 4, "YCbCr": 3,
             "I;16": 1, "I;16B": 1, "I;16L": 1, "I": 1, "F": 1, "RGBa": 4, "La": 2}.get(mode, 3)
    depth = 16 if mode.startswith("I;16") or mode == "I" else 32 if mode == "F" else 1 if mode == "1" else 8
    return width, height, bands, depth, fmt


def probe(path: str, max_pixels: int = 40_000_000, mode: str = "rgb") -> ImageInfo:
    """Check one source image and return what a sampler needs to know about it.

    Raises :class:`BadSourceError` with a reason for: missing, unreadable, empty, not an
    image, oversized (more than ``max_pixels``; refused before decoding), truncated and
    corrupt files. Decodes the pixels once, as a worker will (with ``mode``). ``path``
    is a local file or an object-store URI (``s3://bucket/key``).

    Example: ``probe("photos/a.png").width``
    """
    try:
        if sources.is_locator(path):
            data = _item_bytes(path)
        elif is_uri(path):
            data = _read_object(path, "file not found")
        else:
            st = os.stat(path)
            if stat.S_ISDIR(st.st_mode):
                raise BadSourceError(path, "is a directory, not an image file")
            if not stat.S_ISREG(st.st_mode):
                # a FIFO would block the read, /dev/zero never ends (and both have size 0)
                raise BadSourceError(path, "not a regular file (a FIFO, socket or device); pools take regular files only")
            if st.st_size == 0:
                raise BadSourceError(path, "empty file (0 bytes)")
            with open(path, "rb") as f:
                data = f.read()
        if not data:
            raise BadSourceError(path, "empty file (0 bytes)")
    except FileNotFoundError:
        raise BadSourceError(path, "file not found") from None
    except IsADirectoryError:
        raise BadSourceError(path, "is a directory, not an image file") from None
    except PermissionError:
        raise BadSourceError(path, "not readable (permission denied)") from None
    except OSError as exc:
        raise BadSourceError(path, f"cannot be read ({exc.strerror or exc})") from None
    header = _header(data, path, max_pixels)
    if header is not None:
        width, height, channels, depth, fmt = header
        if width <= 0 or height <= 0:
            raise BadSourceError(path, f"empty image: the header declares {width}×{height} pixels")
        if width * height > max_pixels:
            raise BadSourceError(path, f"oversized: {width}×{height} = {width * height:,} pixels is {_above(max_pixels)}")
    arr = _imdecode(data, mode)
    if arr is None or arr.size == 0:
        raise BadSourceError(path, _undecodable_reason(data, path, header[4] if header is not None else None)
                             if header is not None or _format_of(data) else _not_an_image(path))
    h, w = arr.shape[:2]
    if header is None:  # a format only OpenCV knows (e.g. float TIFF): check after decoding
        if w * h > max_pixels:
            raise BadSourceError(path, f"oversized: {w}×{h} = {w * h:,} pixels is {_above(max_pixels)}")
        channels = 1 if arr.ndim == 2 else int(arr.shape[2])
        depth = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(arr.dtype, 32)
        fmt = os.path.splitext(path)[1].lstrip(".").upper() or "?"
    _normalize(arr, mode, path)  # raises for layouts a worker could not use
    return ImageInfo(width=int(w), height=int(h), channels=int(channels), bit_depth=int(depth), format=fmt)


# --------------------------------------------------------------------------- encode


def encode(img: np.ndarray, fmt: str = "png", quality: int = 90) -> bytes:
    """Encode an RGB / RGBA / gray ``uint8`` array as PNG, JPEG or WebP bytes.

    ``quality`` (1-100) applies to JPEG and WebP; PNG is lossless (see ``PNG_PARAMS``).

    Example: ``encode(np.zeros((8, 8, 3), np.uint8), "jpeg", 85)[:3] == b"\\xff\\xd8\\xff"``
    """
    if fmt not in FORMATS:
        raise ValueError(f"image format must be one of {FORMATS}, got {fmt!r}")
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        bgr = img
    elif img.shape[2] == 3:
        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.shape[2] == 4:
        if fmt == "jpeg":
            raise ValueError("JPEG has no alpha channel; use png or webp for RGBA images")
        bgr = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    else:
        raise ValueError(f"expected 1, 3 or 4 channels, got shape {img.shape}")
    if fmt == "png":
        params = list(PNG_PARAMS)
    elif fmt == "jpeg":
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    else:
        params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)]
    ok, buf = cv2.imencode("." + EXTENSIONS[fmt], bgr, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {fmt} image of shape {img.shape}")
    return buf.tobytes()
