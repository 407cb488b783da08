"""The image synthesizers without Ray: replay reproduces pixels, every random choice is in
the params, boxes and masks stay inside the image and follow every geometric transform."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import SynthesisError
from engine.features import IMAGE_EMBED_DIM, image_embedding
from engine.image import io as image_io
from engine.synth.image_composite.synth import cutout_layer, mask_box, rotated_size
from engine.pools import index_pools
from engine.recipe import parse_recipe
from engine.rng import sample_rng
from engine.synth import build_synthesizer


def augment_data(corpus: Path, transforms: list, **pool: Any) -> dict:
    return {
        "name": "aug",
        "seed": 3,
        "output": {"image_format": "png"},
        "pools": {"photos": {"kind": "image", "manifest": str(corpus / "images" / "manifest.csv"), **pool}},
        "splits": {"train": {"samples": 50}},
        "synth": {"type": "image_augment", "images": "photos", "transforms": transforms},
    }


def composite_data(corpus: Path, transforms: list, **synth: Any) -> dict:
    return {
        "name": "comp",
        "seed": 5,
        "output": {"image_format": "png"},
        "pools": {
            "objects": {"kind": "image", "mode": "rgba",
                        "manifest": str(corpus / "images" / "foregrounds" / "manifest.csv")},
            "scenes": {"kind": "image", "paths": [str(corpus / "images" / "backgrounds" / "*.png")]},
        },
        "splits": {"train": {"samples": 50}},
        "synth": {"type": "image_composite", "foregrounds": "objects", "backgrounds": "scenes",
                  "count_range": [1, 4], "transforms": transforms, **synth},
    }


def make(data: dict):
    recipe = parse_recipe(data)
    synth = build_synthesizer(recipe, index_pools(recipe))
    return recipe, synth


def params_for(recipe, synth, n: int, split: str = "train") -> list[dict]:
    return [synth.sample_params(sample_rng(recipe.seed, split, i), holdout_split=False) for i in range(n)]


def pixels(sample) -> np.ndarray:
    return image_io.decode(sample.columns["image"]["bytes"], "rgba")


def decode_mask(blob: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_GRAYSCALE) > 0


MOBILE = [
    {"HorizontalFlip": {"p": 0.5}},
    {"Affine": {"rotate": [-5, 5], "p": 0.5}},
    {"OneOf": {"p": 0.8, "transforms": ["MotionBlur", {"Defocus": {"radius": [2, 3]}}]}},
    {"GaussNoise": {"std_range": [0.02, 0.1], "p": 0.5}},
    {"ISONoise": {"p": 0.3}},
    {"ImageCompression": {"quality_range": [30, 70], "p": 0.7}},
]


# --------------------------------------------------------------------------- image_augment


def test_replay_reproduces_every_row_exactly_in_any_order(demo_corpus):
    recipe, synth = make(augment_data(demo_corpus, MOBILE))
    params = params_for(recipe, synth, 12)
    first = [synth.apply(p) for p in params]
    _, fresh = make(augment_data(demo_corpus, MOBILE))
    for p, sample in reversed(list(zip(params, first))):
        again = fresh.apply(json.loads(json.dumps(p)))  # params as stored in the row
        assert again.columns["image"]["bytes"] == sample.columns["image"]["bytes"]
        np.testing.assert_array_equal(again.embedding, sample.embedding)
        assert again.applied == sample.applied
    synth.close()
    fresh.close()


def test_output_ignores_global_random_state(demo_corpus):
    recipe, synth = make(augment_data(demo_corpus, MOBILE))
    p = params_for(recipe, synth, 1)[0]
    np.random.seed(1)
    random.seed(1)
    a = synth.apply(p).columns["image"]["bytes"]
    np.random.seed(2)
    random.seed(2)
    np.random.random(100)
    assert synth.apply(p).columns["image"]["bytes"] == a


def test_params_hold_the_item_and_seed_and_the_record_of_what_was_applied(demo_corpus):
    transforms = [{"HorizontalFlip": {"p": 1.0}}, {"GaussNoise": {"std_range": [0.1, 0.1], "p": 1.0}},
                  {"ImageCompression": {"quality_range": [50, 50], "p": 1.0}}]
    recipe, synth = make(augment_data(demo_corpus, transforms))
    p = params_for(recipe, synth, 1)[0]
    assert set(p) == {"image", "seed"} and p["image"]["pool"] == "photos"
    applied = synth.apply(p).applied
    assert list(applied) == ["HorizontalFlip", "GaussNoise", "ImageCompression"]
    assert applied["ImageCompression"]["quality"] == 50
    # the noise map is a full image: replay needs only the seed, so the record keeps its shape
    assert applied["GaussNoise"]["noise_map"] == "float32[192x256x3]"
    json.dumps(applied, allow_nan=False)


def test_transforms_draw_from_one_stream_so_their_choices_are_independent(demo_corpus):
    # With A.Compose(seed=...) every transform gets the same seed and two p=0.5 flips
    # always fire together; shardsmith shares one stream, so all four combinations occur.
    transforms = [{"HorizontalFlip": {"p": 0.5}}, {"VerticalFlip": {"p": 0.5}}]
    recipe, synth = make(augment_data(demo_corpus, transforms))
    seen = {tuple(sorted(synth.apply(p).applied)) for p in params_for(recipe, synth, 60)}
    assert seen == {(), ("HorizontalFlip",), ("VerticalFlip",), ("HorizontalFlip", "VerticalFlip")}


def test_labels_sources_and_size_columns(demo_corpus):
    recipe, synth = make(augment_data(demo_corpus, [{"RandomCrop": {"height": 100, "width": 120, "p": 1.0}}]))
    pool = synth.index.pools["photos"]
    for p in params_for(recipe, synth, 5):
        sample = synth.apply(p)
        i = pool.items.index(p["image"]["item"])
        assert sample.labels == {"label": pool.label_row(i)["label"]}
        assert sample.sources == [{"pool": "photos", "item": p["image"]["item"], "start_s": 0.0,
                                   "duration_s": 0.0, "gain_db": 0.0}]
        assert (sample.columns["width"], sample.columns["height"]) == (120, 100)
        assert pixels(sample).shape == (100, 120, 4)
        assert sample.embedding.shape == (IMAGE_EMBED_DIM,) and sample.seconds == 0.0


@pytest.mark.parametrize("mode, fmt, channels", [("gray", "png", 1), ("rgba", "png", 4), ("rgb", "jpeg", 3), ("rgb", "webp", 3)])
def test_pool_mode_sets_the_output_channels(demo_corpus, mode, fmt, channels):
    data = augment_data(demo_corpus, [{"HorizontalFlip": {"p": 1.0}}], mode=mode)
    data["output"] = {"image_format": fmt, "image_quality": 80}
    recipe, synth = make(data)
    blob = synth.apply(params_for(recipe, synth, 1)[0]).columns["image"]["bytes"]
    out = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED)
    assert (1 if out.ndim == 2 else out.shape[2]) == channels


def test_a_transform_that_cannot_run_is_a_synthesis_error_with_the_fix(demo_corpus):
    recipe, synth = make(augment_data(demo_corpus, [{"RandomCrop": {"height": 1000, "width": 1000, "p": 1.0}}]))
    with pytest.raises(SynthesisError, match=r"synth.transforms: the pipeline failed on .*256×192.*check the"):
        synth.apply(params_for(recipe, synth, 1)[0])


def test_close_restores_opencv_threads(demo_corpus):
    before = cv2.getNumThreads()
    recipe, synth = make(augment_data(demo_corpus, MOBILE))
    synth.apply(params_for(recipe, synth, 1)[0])
    assert cv2.getNumThreads() == 1
    synth.close()
    assert cv2.getNumThreads() == before


# --------------------------------------------------------------------------- image_composite


def check_objects(sample) -> None:
    """Boxes inside the image, each the tight box of its mask; masks never overlap."""
    w, h = sample.columns["width"], sample.columns["height"]
    union = np.zeros((h, w), dtype=np.int32)
    for obj in sample.columns["objects"]:
        x0, y0, x1, y1 = obj["box"]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        m = decode_mask(obj["mask"])
        assert m.shape == (h, w)
        assert mask_box(m) == obj["box"]
        assert obj["area"] == int(m.sum()) > 0
        union += m
    assert union.max(initial=0) <= 1


def test_composite_rows_have_boxes_and_masks_inside_the_image(demo_corpus):
    transforms = [{"Affine": {"rotate": [-30, 30], "scale": [0.8, 1.2], "translate_percent": [-0.1, 0.1], "p": 0.7}},
                  {"RandomCrop": {"height": 200, "width": 260, "p": 0.5}}, {"HorizontalFlip": {"p": 0.5}}]
    recipe, synth = make(composite_data(demo_corpus, transforms, scale_range=[0.3, 0.9]))
    total = 0
    for p in params_for(recipe, synth, 25):
        sample = synth.apply(p)
        check_objects(sample)
        total += len(sample.columns["objects"])
        assert sample.sources[0]["pool"] == "scenes"
        assert [s["item"] for s in sample.sources[1:]] == [o["item"] for o in p["objects"]]
        for obj in sample.columns["objects"]:
            assert obj["label"] in {"car", "ball", "star", "tree"}
    assert total > 25


def same_params_two_pipelines(corpus: Path, transforms: list, n: int = 12):
    recipe, plain = make(composite_data(corpus, []))
    _, moved = make(composite_data(corpus, transforms))
    for p in params_for(recipe, plain, n):
        yield plain.apply(p), moved.apply(p)


def test_boxes_and_masks_follow_a_horizontal_flip_exactly(demo_corpus):
    for before, after in same_params_two_pipelines(demo_corpus, [{"HorizontalFlip": {"p": 1.0}}]):
        w = before.columns["width"]
        assert len(before.columns["objects"]) == len(after.columns["objects"])
        for a, b in zip(before.columns["objects"], after.columns["objects"]):
            x0, y0, x1, y1 = a["box"]
            assert b["box"] == [w - x1, y0, w - x0, y1]
            np.testing.assert_array_equal(decode_mask(b["mask"]), decode_mask(a["mask"])[:, ::-1])


def test_boxes_and_masks_follow_quarter_turns_exactly(demo_corpus):
    for before, after in same_params_two_pipelines(demo_corpus, [{"RandomRotate90": {"p": 1.0}}]):
        k = after.applied["RandomRotate90"]["factor"]
        for a, b in zip(before.columns["objects"], after.columns["objects"]):
            turned = np.rot90(decode_mask(a["mask"]), k)
            np.testing.assert_array_equal(decode_mask(b["mask"]), turned)
            assert b["box"] == mask_box(turned)


def test_boxes_follow_an_arbitrary_rotation(demo_corpus):
    transforms = [{"Affine": {"rotate": [30, 30], "p": 1.0}}]
    for before, after in same_params_two_pipelines(demo_corpus, transforms):
        assert after.applied["Affine"]["rotate"] == 30.0
        assert after.applied["Affine"]["matrix"] == "float64[3x3]"  # derived; not a parameter
        w, h = after.columns["width"], after.columns["height"]
        matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), 30.0, 1.0)  # about the centre
        check_objects(after)
        if len(before.columns["objects"]) != len(after.columns["objects"]):
            continue  # an object rotated out of the frame is dropped; the rest are checked elsewhere
        for a, b in zip(before.columns["objects"], after.columns["objects"]):
            ys, xs = np.nonzero(decode_mask(a["mask"]))
            centre = matrix[:2, :2] @ np.array([xs.mean(), ys.mean()]) + matrix[:2, 2]
            ys2, xs2 = np.nonzero(decode_mask(b["mask"]))
            x0, y0, x1, y1 = b["box"]
            if x0 == 0 or y0 == 0 or x1 == w or y1 == h:  # partly rotated out of the frame
                continue
            assert np.hypot(*(centre - [xs2.mean(), ys2.mean()])) < 2.0


def test_an_object_hidden_by_a_later_one_is_dropped_but_counted_as_a_source(demo_corpus):
    recipe, synth = make(composite_data(demo_corpus, []))
    p = params_for(recipe, synth, 1)[0]
    obj = {"pool": "objects", "item": synth.index.pools["objects"].items[1], "scale": 0.4, "rotation_deg": 0.0,
           "flip": False, "feather_px": 0.0, "center_x_px": 160.0, "center_y_px": 120.0}
    p["objects"] = [dict(obj), dict(obj)]
    sample = synth.apply(p)
    assert len(sample.columns["objects"]) == 1
    assert len(sample.sources) == 3
    check_objects(sample)


def test_feathering_softens_edges_inward_and_leaves_the_background_alone(demo_corpus):
    recipe, synth = make(composite_data(demo_corpus, []))
    base = params_for(recipe, synth, 1)[0]
    obj = {"pool": "objects", "item": synth.index.pools["objects"].items[0], "scale": 0.5, "rotation_deg": 10.0,
           "flip": False, "feather_px": 0.0, "center_x_px": 150.0, "center_y_px": 110.0}
    hard = synth.apply({**base, "objects": [obj]})
    soft = synth.apply({**base, "objects": [{**obj, "feather_px": 3.0}]})
    bg = synth.apply({**base, "objects": []})
    a_hard, a_soft, a_bg = pixels(hard), pixels(soft), pixels(bg)
    outside = np.all(a_hard == a_bg, axis=2)  # everything the hard paste did not touch
    np.testing.assert_array_equal(a_soft[outside], a_bg[outside])
    assert (a_soft != a_hard).any()


@settings(max_examples=25, deadline=None)
@given(zoom=st.floats(0.2, 3.0), angle=st.floats(-180, 180), flip=st.booleans(), feather=st.floats(0, 4))
def test_cutouts_have_no_dark_fringe(zoom, angle, flip, feather):
    # A white object whose transparent surround is black: straight-alpha resampling would
    # blend that black into the edge; premultiplied alpha must not.
    rgba = np.zeros((40, 30, 4), np.uint8)
    rgba[8:32, 6:24] = 255
    colour, alpha = cutout_layer(rgba, zoom, angle, flip, feather)
    assert colour.shape[:2] == alpha.shape and 0 <= alpha.min() and alpha.max() <= 1
    on_white = colour + 255.0 * (1.0 - alpha)[:, :, None]
    assert on_white.min() >= 254.0


def test_rgb_cutouts_with_a_mask_column(demo_corpus, tmp_path):
    fg_dir = demo_corpus / "images" / "foregrounds"
    rows = ["path,mask,label"]
    for i in range(3):
        rgba = cv2.imread(str(fg_dir / f"fg-{i:03d}.png"), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(tmp_path / f"o{i}.png"), rgba[:, :, :3])
        cv2.imwrite(str(tmp_path / f"o{i}_mask.png"), np.where(rgba[:, :, 3] >= 128, 255, 0).astype(np.uint8))
        rows.append(f"o{i}.png,o{i}_mask.png,thing{i}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    data = composite_data(demo_corpus, [{"HorizontalFlip": {"p": 0.5}}])
    data["pools"]["objects"] = {"kind": "image", "manifest": str(tmp_path / "m.csv"), "mask_column": "mask"}
    recipe, synth = make(data)
    labels = set()
    for p in params_for(recipe, synth, 8):
        sample = synth.apply(p)
        check_objects(sample)
        labels |= {o["label"] for o in sample.columns["objects"]}
    assert labels and labels <= {"thing0", "thing1", "thing2"}
    assert synth.label_fields() == []  # the scenes pool has no manifest


def test_composite_replays_exactly(demo_corpus):
    recipe, synth = make(composite_data(demo_corpus, MOBILE[:3], feather_p=0.5))
    params = params_for(recipe, synth, 6)
    first = [synth.apply(p) for p in params]
    _, fresh = make(composite_data(demo_corpus, MOBILE[:3], feather_p=0.5))
    for p, s in reversed(list(zip(params, first))):
        again = fresh.apply(json.loads(json.dumps(p)))
        assert again.columns == s.columns


@settings(max_examples=50, deadline=None)
@given(w=st.floats(1, 500), h=st.floats(1, 500), angle=st.floats(-360, 360))
def test_rotated_size_contains_the_rotated_corners(w, h, angle):
    rw, rh = rotated_size(w, h, angle)
    a = np.radians(angle)
    corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
    rot = corners @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    assert np.isclose(rot[:, 0].max() - rot[:, 0].min(), rw) and np.isclose(rot[:, 1].max() - rot[:, 1].min(), rh)


# --------------------------------------------------------------------------- embedding


def test_image_embedding_measures_blur_noise_and_colour():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:192, 0:256]
    sharp = np.where(((xx // 16 + yy // 16) % 2)[:, :, None] == 1, 220, 30).astype(np.uint8).repeat(3, axis=2)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 3)
    noisy = np.clip(sharp + rng.normal(0, 12, sharp.shape), 0, 255).astype(np.uint8)
    e_sharp, e_blur, e_noisy = (image_embedding(x) for x in (sharp, blurred, noisy))
    assert e_blur[32] < 0.7 * e_sharp[32]  # gradient RMS
    assert e_blur[33] < e_sharp[33]  # laplacian variance
    assert e_noisy[34] > 5 * max(e_sharp[34], 1e-3)  # noise sigma
    red = np.zeros((64, 64, 3), np.uint8)
    red[:, :, 0] = 250
    e_red = image_embedding(red)
    assert e_red[7] == 1.0 and e_red[8] == 1.0 and e_red[16] == 1.0  # R top bin, G and B bottom bin
    assert e_red[61] == 0.0 and e_red[62] == 6.0 and e_red[63] == 6.0


def test_orientation_histogram_sees_stripe_direction():
    xx = np.tile(np.arange(128), (128, 1))
    vertical_stripes = np.where((xx // 8) % 2 == 1, 200, 40).astype(np.uint8)
    e = image_embedding(vertical_stripes)
    assert np.isclose(e[24:32].sum(), 1.0)
    assert e[24] > 0.9  # gradient along x: orientation 0 degrees
    e_t = image_embedding(np.ascontiguousarray(vertical_stripes.T))
    assert e_t[28] > 0.9  # gradient along y: 90 degrees


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 300), w=st.integers(1, 300), channels=st.sampled_from([0, 1, 3, 4]),
       seed=st.integers(0, 2**31))
def test_image_embedding_is_finite_fixed_size_and_deterministic(h, w, channels, seed):
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels == 0 else (h, w, channels)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    e = image_embedding(img)
    assert e.dtype == np.float32 and e.shape == (IMAGE_EMBED_DIM,) and np.isfinite(e).all()
    np.testing.assert_array_equal(e, image_embedding(img.copy()))
    assert np.isclose(e[:8].sum(), 1.0) and np.isclose(e[24:32].sum(), 1.0)
