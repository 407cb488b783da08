"""The ``image_composite`` synthesizer: foreground cut-outs pasted onto backgrounds.

Per sample, :meth:`ImageCompositeSynth.sample_params` draws a background, a number of
objects and, for each, a foreground item, a scale, a rotation, a flip, an edge (hard or
feathered) and a position, plus an integer seed for the optional albumentations
pipeline that follows. :meth:`~ImageCompositeSynth.apply` is deterministic:

1. each cut-out (RGBA, or RGB + the pool's ``mask_column`` mask) is flipped, resized
   (``INTER_AREA`` when shrinking) and rotated with premultiplied alpha, so no dark
   fringe comes from the transparent pixels around it;
2. a feathered edge softens the alpha inward only (``min(alpha, blur(alpha))``), so no
   halo of background-coloured pixels appears outside the object;
3. objects are alpha-blended in order; each object's mask is its alpha >= 0.5 minus
   what later objects cover (an object hidden entirely is dropped from the annotations,
   still counted as a source);
4. the recipe's pipeline runs with albumentations' ``masks`` and ``bboxes`` targets, so
   every geometric transform moves the masks with the pixels; each object's box is then
   the tight box of its transformed mask (exact under flips, rotations and crops; an
   object cropped out entirely is dropped).

Rows get an ``objects`` column: ``list<struct<label, item, box, area, mask>>`` with
``box`` = ``[x_min, y_min, x_max, y_max]`` in pixels (pascal_voc; max exclusive),
``area`` in pixels and ``mask`` a 1-bit PNG of the whole image.

Example::

    synth = ImageCompositeSynth(recipe, index)
    sample = synth.apply(synth.sample_params(rng, holdout_split=False))
    sample.columns["objects"][0]["box"]
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import pyarrow as pa

from ...image import io as image_io
from ..base import Sample
from ..image_base import ImageSynthBase, image_source

OBJECT_TYPE = pa.struct(
    [
        ("label", pa.string()),
        ("item", pa.string()),
        ("box", pa.list_(pa.float32(), 4)),
        ("area", pa.int32()),
        ("mask", pa.binary()),
    ]
)
ALPHA_THRESHOLD = 0.5  # alpha at or above this belongs to the object's mask


def rotated_size(w: float, h: float, angle_deg: float) -> tuple[float, float]:
    """Width and height of the bounding box of a ``w`` x ``h`` rectangle rotated by ``angle_deg``.

    Example: ``rotated_size(10, 20, 90) == (20.0, 10.0)`` (within rounding)
    """
    a = math.radians(angle_deg)
    c, s = abs(math.cos(a)), abs(math.sin(a))
    return w * c + h * s, w * s + h * c


def mask_box(mask: np.ndarray) -> list[float] | None:
    """Tight ``[x_min, y_min, x_max, y_max]`` (max exclusive) of a mask's non-zero pixels.

    Example: ``mask_box(np.eye(3, dtype=bool)) == [0.0, 0.0, 3.0, 3.0]``
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]


def encode_mask(mask: np.ndarray) -> bytes:
    """A binary mask as 1-bit PNG bytes (decodes to 0 / 255)."""
    ok, buf = cv2.imencode(".png", mask.astype(np.uint8) * 255, [cv2.IMWRITE_PNG_BILEVEL, 1, *image_io.PNG_PARAMS])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 plane
        raise ValueError("OpenCV could not encode a mask")
    return buf.tobytes()


def cutout_layer(rgba: np.ndarray, zoom: float, angle_deg: float, flip: bool,
                 feather_px: float) -> tuple[np.ndarray, np.ndarray]:
    """A cut-out ready to blend: (premultiplied RGB float32 (h, w, 3), alpha float32 0..1 (h, w)).

    Example: ``colour, alpha = cutout_layer(rgba, 0.5, 10.0, False, 2.0)``
    """
    src = rgba[:, ::-1] if flip else rgba
    alpha = src[:, :, 3].astype(np.float32) * np.float32(1 / 255)
    layer = np.empty(src.shape, dtype=np.float32)
    layer[:, :, :3] = src[:, :, :3] * alpha[:, :, None]
    layer[:, :, 3] = alpha
    h, w = src.shape[:2]
    nw, nh = max(1, int(round(w * zoom))), max(1, int(round(h * zoom)))
    if (nw, nh) != (w, h):
        interp = cv2.INTER_AREA if zoom < 1 else cv2.INTER_LINEAR
        layer = cv2.resize(layer, (nw, nh), interpolation=interp)
    if angle_deg % 360 != 0:
        ow, oh = rotated_size(nw, nh, angle_deg)
        ow, oh = int(math.ceil(ow - 1e-6)), int(math.ceil(oh - 1e-6))
        m = cv2.getRotationMatrix2D((nw / 2.0, nh / 2.0), angle_deg, 1.0)
        m[0, 2] += (ow - nw) / 2.0
        m[1, 2] += (oh - nh) / 2.0
        layer = cv2.warpAffine(layer, m, (ow, oh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=(0, 0, 0, 0))
    colour, a = layer[:, :, :3], np.clip(layer[:, :, 3], 0.0, 1.0)
    if feather_px > 0:
        soft = np.minimum(a, cv2.GaussianBlur(a, (0, 0), sigmaX=float(feather_px), borderType=cv2.BORDER_CONSTANT))
        ratio = np.divide(soft, a, out=np.zeros_like(a), where=a > 1e-6)
        colour = colour * ratio[:, :, None]
        a = soft
    return np.ascontiguousarray(colour), np.ascontiguousarray(a)


class ImageCompositeSynth(ImageSynthBase):
    type = "image_composite"
    _pipeline_targets = True

    def __init__(self, recipe, index):
        super().__init__(recipe, index)
        cfg = self.config
        self._fg_cfg = recipe.pools[cfg.foregrounds]
        self._labels = self._label_columns(cfg.backgrounds)
        schema = index.pools[cfg.foregrounds].label_schema
        self._label_col = cfg.label_column if cfg.label_column in schema.names else None

    def media_fields(self) -> list[pa.Field]:
        return super().media_fields() + [pa.field("objects", pa.list_(OBJECT_TYPE))]

    def label_fields(self) -> list[pa.Field]:
        return [pa.field(name, typ) for _, name, typ in self._labels]

    @classmethod
    def param_range(cls, config: dict[str, Any], name: str) -> tuple[float, float] | None:
        """An object's drawn value against the config's range of it (``objects[2].scale``
        -> ``scale_range``, ``rotation_deg`` -> ``rotation_deg_range``, ``feather_px`` ->
        ``feather_px_range``; an unfeathered object's 0 falls below it), else the applied
        transform parameters' ranges (:meth:`ImageSynthBase.param_range`).

        Example: ``ImageCompositeSynth.param_range({"scale_range": [0.2, 0.5]}, "objects[0].scale") == (0.2, 0.5)``
        """
        if name.startswith("objects["):
            value = config.get(f"{name.rsplit('.', 1)[-1]}_range")
            if isinstance(value, (list, tuple)) and len(value) == 2:
                return (float(value[0]), float(value[1]))
            return None
        return super().param_range(config, name)

    # ------------------------------------------------------------------ sampling

    def sample_params(self, rng: np.random.Generator, *, holdout_split: bool) -> dict[str, Any]:
        cfg = self.config
        bg_pool, fg_pool = self.index.pools[cfg.backgrounds], self.index.pools[cfg.foregrounds]
        b = self._choose(rng, cfg.backgrounds, holdout_split)
        W, H = float(bg_pool.width[b]), float(bg_pool.height[b])
        count = int(rng.integers(cfg.count_range[0], cfg.count_range[1] + 1))
        objects = []
        for _ in range(count):
            k = self._choose(rng, cfg.foregrounds, holdout_split)
            scale = float(rng.uniform(*cfg.scale_range))
            angle = float(rng.uniform(*cfg.rotation_deg_range))
            flip = bool(rng.random() < cfg.flip_p)
            feather = bool(rng.random() < cfg.feather_p)
            feather_px = float(rng.uniform(*cfg.feather_px_range))
            u, v = float(rng.random()), float(rng.random())
            fw, fh = float(fg_pool.width[k]), float(fg_pool.height[k])
            zoom = scale * min(W, H) / max(fw, fh)
            rw, rh = rotated_size(fw * zoom, fh * zoom, angle)
            # The centre keeps the whole object in frame when it fits; otherwise it is centred.
            lo_x, hi_x = min(rw / 2, W / 2), max(W - rw / 2, W / 2)
            lo_y, hi_y = min(rh / 2, H / 2), max(H - rh / 2, H / 2)
            objects.append({
                "pool": cfg.foregrounds,
                "item": fg_pool.items[k],
                "scale": scale,
                "rotation_deg": angle,
                "flip": flip,
                "feather_px": feather_px if feather else 0.0,
                "center_x_px": lo_x + u * (hi_x - lo_x),
                "center_y_px": lo_y + v * (hi_y - lo_y),
            })
        return {
            "background": {"pool": cfg.backgrounds, "item": bg_pool.items[b]},
            "objects": objects,
            "seed": int(rng.integers(2**63)),
        }

    # ------------------------------------------------------------------ applying

    def _read_cutout(self, pool_name: str, item: str) -> tuple[np.ndarray, int]:
        pool = self.index.pools[pool_name]
        i = self._pos(pool_name, item)
        mask_col = getattr(self._fg_cfg, "mask_column", None)
        if mask_col:
            rgb = image_io.read_image(pool.paths[i], "rgb")
            mask = image_io.read_image(pool.label_row(i)[mask_col], "gray")
            rgba = np.dstack([rgb, np.where(mask > 0, np.uint8(255), np.uint8(0))])
        else:
            rgba = image_io.read_image(pool.paths[i], "rgba")
        return rgba, i

    def apply(self, params: dict[str, Any]) -> Sample:
        self._ready()
        bg_ref = params["background"]
        bg_pool = self.index.pools[bg_ref["pool"]]
        b = self._pos(bg_ref["pool"], bg_ref["item"])
        canvas = image_io.read_image(bg_pool.paths[b], "rgb").astype(np.float32)
        H, W = canvas.shape[:2]
        masks: list[np.ndarray] = []
        kept: list[int] = []
        for j, obj in enumerate(params["objects"]):
            rgba, _ = self._read_cutout(obj["pool"], obj["item"])
            h, w = rgba.shape[:2]
            zoom = obj["scale"] * min(W, H) / max(w, h)
            colour, alpha = cutout_layer(rgba, zoom, obj["rotation_deg"], obj["flip"], obj["feather_px"])
            oh, ow = alpha.shape
            x0 = int(math.floor(obj["center_x_px"] - ow / 2.0 + 0.5))
            y0 = int(math.floor(obj["center_y_px"] - oh / 2.0 + 0.5))
            cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + ow, W), min(y0 + oh, H)
            if cx0 >= cx1 or cy0 >= cy1:
                continue
            sub_a = alpha[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
            sub_c = colour[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
            region = canvas[cy0:cy1, cx0:cx1]
            region *= (1.0 - sub_a)[:, :, None]
            region += sub_c
            inside = sub_a >= ALPHA_THRESHOLD
            for m in masks:  # what this object covers is no longer visible of earlier ones
                m[cy0:cy1, cx0:cx1] &= ~inside
            full = np.zeros((H, W), dtype=bool)
            full[cy0:cy1, cx0:cx1] = inside
            masks.append(full)
            kept.append(j)
        img = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)

        visible = [(j, m) for j, m in zip(kept, masks) if m.any()]
        applied: dict[str, Any] = {}
        out_masks = [m for _, m in visible]
        if self.config.transforms:
            boxes = np.array([mask_box(m) for _, m in visible], dtype=np.float32).reshape(-1, 4)
            result, applied = self._run_pipeline(
                int(params["seed"]), bg_ref["item"], image=img,
                masks=[m.astype(np.uint8) for _, m in visible], bboxes=boxes,
                object_ids=list(range(len(visible))),
            )
            img = result["image"]
            out_masks = [np.asarray(m) > 0 for m in result["masks"]]

        fg_pool = self.index.pools[self.config.foregrounds]
        objects = []
        for (j, _), m in zip(visible, out_masks):
            box = mask_box(m)
            if box is None:  # transformed out of the frame
                continue
            obj = params["objects"][j]
            label = None
            if self._label_col is not None:
                value = fg_pool.label_row(self._pos(obj["pool"], obj["item"])).get(self._label_col)
                label = None if value is None else str(value)
            objects.append({"label": label, "item": obj["item"], "box": box,
                            "area": int(np.count_nonzero(m)), "mask": encode_mask(m)})

        sources = [image_source(bg_ref["pool"], bg_ref["item"])]
        sources += [image_source(o["pool"], o["item"]) for o in params["objects"]]
        return self._sample(img, sources, bg_pool.label_row(b), applied, objects=objects)
