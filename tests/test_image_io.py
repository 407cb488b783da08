"""Image I/O and image pools: every image kind is normalized as the pool says; every bad
image kind is a reject with its reason, found once when the pool is indexed."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from engine.errors import BadSourceError, InputError
from engine.image import io as image_io
from engine.pools import index_pools
from engine.recipe import parse_recipe

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)  # H=24, W=32


def png_bytes(arr: np.ndarray) -> bytes:
    """PNG of an RGB(A) / gray array given in RGB order."""
    if arr.ndim == 3:
        code = cv2.COLOR_RGBA2BGRA if arr.shape[2] == 4 else cv2.COLOR_RGB2BGR
        arr = cv2.cvtColor(arr, code)
    return cv2.imencode(".png", arr)[1].tobytes()


def pil_bytes(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height but whose data is a few bytes (a bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


# --------------------------------------------------------------------------- decode


def test_rgb_png_decodes_to_the_same_pixels_in_rgb_order():
    out = image_io.decode(png_bytes(RGB), "rgb")
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3)
    np.testing.assert_array_equal(out, RGB)


def test_gray_becomes_three_equal_channels_in_rgb_mode_and_stays_2d_in_gray_mode():
    gray = RGB[:, :, 0].copy()
    blob = cv2.imencode(".png", gray)[1].tobytes()
    rgb = image_io.decode(blob, "rgb")
    assert rgb.shape == (24, 32, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, :, c], gray)
    np.testing.assert_array_equal(image_io.decode(blob, "gray"), gray)


def test_rgba_keeps_alpha_in_rgba_mode_and_drops_it_in_rgb_mode():
    rgba = np.dstack([RGB, RNG.integers(0, 256, (24, 32), dtype=np.uint8)])
    blob = png_bytes(rgba)
    np.testing.assert_array_equal(image_io.decode(blob, "rgba"), rgba)
    np.testing.assert_array_equal(image_io.decode(blob, "rgb"), RGB)


def test_rgb_source_gets_an_opaque_alpha_in_rgba_mode():
    out = image_io.decode(png_bytes(RGB), "rgba")
    assert out.shape == (24, 32, 4)
    assert (out[:, :, 3] == 255).all()


def test_16_bit_png_is_scaled_to_8_bits_exactly(tmp_path):
    levels = np.arange(256, dtype=np.uint16) * 257  # k * 257 is exactly level k
    img16 = np.tile(levels, (4, 1))
    blob = cv2.imencode(".png", img16)[1].tobytes()
    out = image_io.decode(blob, "gray")
    np.testing.assert_array_equal(out, np.tile(np.arange(256, dtype=np.uint8), (4, 1)))
    assert image_io.probe(write(tmp_path / "deep.png", blob)).bit_depth == 16


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 65535), min_size=1, max_size=64))
def test_16_to_8_bit_conversion_rounds_to_nearest_and_is_monotone(values):
    arr = np.array(values, dtype=np.uint16).reshape(1, -1)
    out = image_io._to_uint8(arr, "x").astype(np.int64)
    expected = np.rint(np.array(values) * 255 / 65535).astype(np.int64)
    assert np.abs(out[0] - expected).max() == 0
    order = np.argsort(values, kind="stable")
    assert (np.diff(out[0][order]) >= 0).all()


def test_palette_png_decodes_to_its_colours():
    two = np.zeros((8, 8, 3), np.uint8)
    two[:, 4:] = (200, 30, 90)
    blob = pil_bytes(Image.fromarray(two).convert("P", palette=Image.Palette.ADAPTIVE, colors=4))
    assert Image.open(io.BytesIO(blob)).mode == "P"
    np.testing.assert_array_equal(image_io.decode(blob, "rgb"), two)


def test_palette_png_with_transparency_gives_alpha_in_rgba_mode():
    two = np.zeros((8, 8, 3), np.uint8)
    two[:, 4:] = (200, 30, 90)
    pal = Image.fromarray(two).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    blob = pil_bytes(pal, transparency=int(np.asarray(pal)[0, 0]))  # the black half is transparent
    out = image_io.decode(blob, "rgba")
    assert (out[:, :4, 3] == 0).all() and (out[:, 4:, 3] == 255).all()


def test_jpeg_exif_orientation_is_applied():
    im = Image.fromarray(RGB)  # 32 wide, 24 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    blob = pil_bytes(im, "JPEG", exif=exif, quality=95)
    assert image_io.decode(blob, "rgb").shape == (32, 24, 3)
    assert image_io.decode(blob, "gray").shape == (32, 24)


def test_float_tiff_that_pillow_cannot_read_still_decodes_via_opencv(tmp_path):
    f = np.linspace(0, 1, 24 * 32 * 3, dtype=np.float32).reshape(24, 32, 3)
    path = write(tmp_path / "f.tiff", cv2.imencode(".tiff", f)[1].tobytes())
    info = image_io.probe(path)
    assert (info.width, info.height) == (32, 24)
    out = image_io.read_image(path, "rgb")
    assert out.dtype == np.uint8 and out[0, 0, 0] == 0 and out.max() == 255


# --------------------------------------------------------------------------- encode


@pytest.mark.parametrize("mode", ["rgb", "rgba", "gray"])
def test_png_round_trip_is_lossless(mode):
    img = image_io.decode(png_bytes(RGB), mode)
    np.testing.assert_array_equal(image_io.decode(image_io.encode(img, "png"), mode), img)


def test_jpeg_quality_changes_size_and_same_pixels_give_same_bytes():
    smooth = cv2.GaussianBlur(cv2.resize(RGB, (256, 192)), (0, 0), 2)
    lo, hi = image_io.encode(smooth, "jpeg", 20), image_io.encode(smooth, "jpeg", 95)
    assert lo[:3] == b"\xff\xd8\xff" and len(lo) < len(hi)
    assert image_io.encode(smooth, "jpeg", 20) == lo
    assert image_io.encode(smooth, "webp", 80)[8:12] == b"WEBP"


def test_jpeg_cannot_hold_alpha():
    with pytest.raises(ValueError, match="alpha"):
        image_io.encode(np.zeros((4, 4, 4), np.uint8), "jpeg")


# --------------------------------------------------------------------------- probe: bad files


def bad_files(folder: Path) -> dict[str, str]:
    """file name -> the word its reject reason must contain."""
    good_png = png_bytes(RGB)
    good_jpg = image_io.encode(cv2.resize(RGB, (64, 48)), "jpeg", 90)
    good_webp = image_io.encode(cv2.resize(RGB, (64, 48)), "webp", 90)
    corrupt = bytearray(png_bytes(cv2.resize(RGB, (64, 48))))
    corrupt[60:120] = bytes(60)  # inside IDAT: the header stays readable, the CRC breaks
    cases = {
        "empty.png": (b"", "empty"),
        "text.png": (b"this is not an image, just some text\n" * 10, "not an image"),
        "truncated.png": (good_png[: len(good_png) // 2], "truncated"),
        "truncated.jpg": (good_jpg[: len(good_jpg) // 2], "truncated"),
        "truncated.webp": (good_webp[: len(good_webp) // 2], "truncated"),
        "corrupt.png": (bytes(corrupt), "corrupt"),
        "bomb.png": (png_header_only(60000, 60000), "oversized"),
    }
    for name, (data, _) in cases.items():
        write(folder / name, data)
    return {name: word for name, (_, word) in cases.items()}


def test_every_bad_image_kind_raises_with_its_reason(tmp_path):
    for name, word in bad_files(tmp_path).items():
        with pytest.raises(BadSourceError) as info:
            image_io.probe(str(tmp_path / name), max_pixels=40_000_000)
        assert word in info.value.reason, (name, info.value.reason)


def test_oversized_image_is_refused_from_its_header_without_decoding(tmp_path, monkeypatch):
    path = write(tmp_path / "bomb.png", png_header_only(60000, 60000))
    monkeypatch.setattr(image_io, "_imdecode", lambda *a: pytest.fail("decoded an oversized image"))
    with pytest.raises(BadSourceError, match="declares 3,600,000,000 pixels, above max_pixels"):
        image_io.probe(path, max_pixels=40_000_000)


def test_max_pixels_limit_applies_to_real_images(tmp_path):
    path = write(tmp_path / "a.png", png_bytes(RGB))
    assert image_io.probe(path, max_pixels=24 * 32).pixels == 768
    with pytest.raises(BadSourceError, match="oversized"):
        image_io.probe(path, max_pixels=24 * 32 - 1)


def test_missing_file_and_directory_are_reasons_not_crashes(tmp_path):
    with pytest.raises(BadSourceError, match="not found"):
        image_io.probe(str(tmp_path / "nope.png"))
    with pytest.raises(BadSourceError, match="not found"):
        image_io.read_image(str(tmp_path / "nope.png"))


# --------------------------------------------------------------------------- image pools


def image_recipe(pool: dict, **synth) -> dict:
    return {
        "name": "img",
        "seed": 1,
        "pools": {"photos": {"kind": "image", **pool}},
        "splits": {"train": {"samples": 10}},
        "synth": {"type": "image_augment", "images": "photos", **synth},
    }


def test_image_pool_indexes_good_files_and_rejects_each_bad_kind_with_a_reason(tmp_path):
    expected = bad_files(tmp_path)
    write(tmp_path / "good.png", png_bytes(RGB))
    write(tmp_path / "gray.png", cv2.imencode(".png", RGB[:, :, 0])[1].tobytes())
    write(tmp_path / "pal.png", pil_bytes(Image.fromarray(RGB).convert("P")))
    recipe = parse_recipe(image_recipe({"paths": ["*.*"]}), base_dir=tmp_path)
    index = index_pools(recipe)
    pool = index.pools["photos"]
    assert pool.items == ["good.png", "gray.png", "pal.png"]
    assert pool.kind == "image"
    assert pool.width.tolist() == [32, 32, 32] and pool.height.tolist() == [24, 24, 24]
    assert pool.channels.tolist() == [3, 1, 3]
    assert pool.duration_s.tolist() == [0.0, 0.0, 0.0] and pool.seconds_available == 0.0
    reasons = {Path(r["path"]).name: r["reason"] for r in index.rejects}
    assert set(reasons) == set(expected)
    for name, word in expected.items():
        assert word in reasons[name], (name, reasons[name])
    assert all(r["pool"] == "photos" for r in index.rejects)
    assert "MP mean" in index.summary()


def test_pool_max_pixels_rejects_larger_images(tmp_path):
    write(tmp_path / "small.png", png_bytes(RGB[:16, :16]))
    write(tmp_path / "big.png", png_bytes(RGB))
    recipe = parse_recipe(image_recipe({"paths": ["*.png"], "max_pixels": 256}), base_dir=tmp_path)
    index = index_pools(recipe)
    assert index.pools["photos"].items == ["small.png"]
    assert "above max_pixels (256)" in index.rejects[0]["reason"]


def test_pool_min_side_px_rejects_smaller_images(tmp_path):
    write(tmp_path / "tiny.png", png_bytes(RGB[:1, :1]))
    write(tmp_path / "ok.png", png_bytes(RGB))
    index = index_pools(parse_recipe(image_recipe({"paths": ["*.png"]}), base_dir=tmp_path))
    assert index.pools["photos"].items == ["ok.png"]
    assert "too small: 1×1 pixels, below pools.photos.min_side_px (16 px a side)" in index.rejects[0]["reason"]
    index = index_pools(parse_recipe(image_recipe({"paths": ["*.png"], "min_side_px": 1}), base_dir=tmp_path))
    assert index.pools["photos"].items == ["ok.png", "tiny.png"]


def test_on_bad_input_fail_stops_at_the_first_bad_image(tmp_path):
    write(tmp_path / "good.png", png_bytes(RGB))
    write(tmp_path / "empty.png", b"")
    recipe = parse_recipe(image_recipe({"paths": ["*.png"]}) | {"on_bad_input": "fail"}, base_dir=tmp_path)
    with pytest.raises(InputError, match="empty.png: empty file"):
        index_pools(recipe)


def test_manifest_labels_are_kept_per_item(tmp_path):
    write(tmp_path / "a.png", png_bytes(RGB))
    write(tmp_path / "b.png", png_bytes(RGB[:, ::-1].copy()))
    (tmp_path / "m.csv").write_text("path,label\nb.png,dog\na.png,cat\n")
    index = index_pools(parse_recipe(image_recipe({"manifest": "m.csv"}), base_dir=tmp_path))
    pool = index.pools["photos"]
    assert pool.items == ["a.png", "b.png"]
    assert [pool.label_row(i)["label"] for i in range(2)] == ["cat", "dog"]


def test_mask_column_is_resolved_probed_and_size_checked(tmp_path):
    write(tmp_path / "fg" / "a.png", png_bytes(RGB))
    write(tmp_path / "fg" / "b.png", png_bytes(RGB))
    write(tmp_path / "fg" / "c.png", png_bytes(RGB))
    mask = np.zeros((24, 32), np.uint8)
    mask[4:20, 8:24] = 255
    write(tmp_path / "fg" / "a_mask.png", cv2.imencode(".png", mask)[1].tobytes())
    write(tmp_path / "fg" / "b_mask.png", cv2.imencode(".png", mask[:10])[1].tobytes())
    (tmp_path / "fg" / "m.csv").write_text("path,mask,label\na.png,a_mask.png,x\nb.png,b_mask.png,y\nc.png,,z\n")
    recipe = parse_recipe(image_recipe({"manifest": "fg/m.csv", "mask_column": "mask"}), base_dir=tmp_path)
    index = index_pools(recipe)
    pool = index.pools["photos"]
    assert pool.items == ["fg/a.png"]
    assert pool.label_row(0)["mask"] == str((tmp_path / "fg" / "a_mask.png").resolve())
    reasons = {Path(r["path"]).name: r["reason"] for r in index.rejects}
    assert "is 32×10 but the image is 32×24" in reasons["b.png"]
    assert "no mask" in reasons["c.png"]


def test_mask_column_must_be_a_manifest_column(tmp_path):
    write(tmp_path / "a.png", png_bytes(RGB))
    (tmp_path / "m.csv").write_text("path,label\na.png,x\n")
    recipe = parse_recipe(image_recipe({"manifest": "m.csv", "mask_column": "mask"}), base_dir=tmp_path)
    with pytest.raises(InputError, match="mask_column: 'mask' is not a column"):
        index_pools(recipe)


def test_webp_keeps_a_real_alpha_channel():
    rgba = np.dstack([RGB, np.tile(np.arange(32, dtype=np.uint8) * 8, (24, 1))])
    out = image_io.decode(image_io.encode(rgba, "webp", 90), "rgba")
    assert out.shape == (24, 32, 4)
    assert np.abs(out[:, :, 3].astype(int) - rgba[:, :, 3]).max() <= 8
