"""Albumentations pipelines from recipe data: parse, validate, build, record.

A recipe holds a pipeline as a list of transforms, in either of two forms::

    transforms:
      - GaussianBlur: {blur_limit: [3, 7], p: 0.5}           # short form
      - HorizontalFlip                                        # no arguments
      - {__class_fullname__: GaussNoise, std_range: [0.02, 0.1], p: 0.5}   # A.to_dict form
      - OneOf: {p: 0.5, transforms: [MotionBlur, {Defocus: {radius: [2, 4]}}]}

or the whole ``A.to_dict(A.Compose([...]))`` output. Only albumentations' own
registered transforms can be named (no ``Lambda``, no import paths: a recipe holds no
code). Each transform is constructed at recipe load, so albumentations' own pydantic
``InitSchema`` checks every argument; its errors come back with the field path, e.g.
``synth.transforms[2].GaussianBlur.blur_limit``. The canonical stored form is the
``A.to_dict`` item form, so a recipe dumped and re-read validates to the same thing.

Per sample, :func:`seed_pipeline` gives the whole pipeline one numpy and one Python
generator from the sample's integer seed. (``A.Compose(seed=...)`` seeds every transform
with the *same* seed, which correlates their draws, e.g. two ``p: 0.5`` flips always
fire together; one shared stream does not.) :func:`applied_params` turns albumentations'
``applied_transforms`` record into JSON: scalars and flat arrays of up to 16 values as
they are; anything larger or of more dimensions (noise maps, affine matrices, 2D blur
kernels: derived from the scalars or too big to be a parameter) as a string naming its
type and shape, e.g. ``"float32[192x256x3]"``. Replay needs only the seed.

Example::

    specs = normalize_transforms([{"GaussianBlur": {"blur_limit": [3, 7]}}])
    compose = build_compose(specs)
    seed_pipeline(compose, 1234)
    out = compose(image=img)
"""

from __future__ import annotations

import difflib
import enum
import functools
import inspect
import math
import random
import warnings
from typing import Any

import numpy as np
from pydantic import ValidationError

from .. import env  # noqa: F401  (albumentations must never phone home from a worker)

__all__ = [
    "allowed_transforms",
    "normalize_transforms",
    "build_transforms",
    "build_compose",
    "seed_pipeline",
    "applied_params",
    "TransformSpecError",
]

COMPOSITIONS = ("OneOf", "SomeOf", "Sequential", "RandomOrder", "OneOrOther", "SelectiveChannelTransform")

# Registered, but not usable from a recipe; the reason is shown to the user.
_REFUSED = {
    "Lambda": "runs arbitrary code; a recipe holds no code",
    "Compose": "the recipe's transforms list is the Compose; nest transforms with Sequential or OneOf",
    "ReplayCompose": "replay is built in (every row records its seed); list the transforms directly",
    "Normalize": "turns pixels into floats; shards store 8-bit images (normalize in the training loader)",
    "ToFloat": "turns pixels into floats; shards store 8-bit images",
    "FromFloat": "expects float input; images here are 8-bit",
    "Mosaic": "needs extra images passed at call time (metadata), which a recipe cannot give",
    "OverlayElements": "needs overlay metadata passed at call time, which a recipe cannot give",
    "TextImage": "needs text metadata passed at call time, which a recipe cannot give",
    "FDA": "needs reference images passed at call time, which a recipe cannot give",
    "HistogramMatching": "needs reference images passed at call time, which a recipe cannot give",
    "PixelDistributionAdaptation": "needs reference images passed at call time, which a recipe cannot give",
    "RandomCropNearBBox": "needs a cropping_bbox passed at call time, which a recipe cannot give",
    "BboxParams": "is not a transform",
    "KeypointParams": "is not a transform",
}
_NOT_TRANSFORMS = {"BasicTransform", "DualTransform", "ImageOnlyTransform", "Transform3D", "MaxSizeTransform"}


class TransformSpecError(ValueError):
    """A transform list problem: ``loc`` is the path inside the list, e.g. ``(2, "GaussianBlur", "blur_limit")``."""

    def __init__(self, loc: tuple[Any, ...], message: str, value: Any = None):
        super().__init__(message)
        self.loc = loc
        self.message = message
        self.value = value


@functools.lru_cache(maxsize=1)
def _registry() -> dict[str, type]:
    import albumentations  # noqa: F401  (registers every transform)
    from albumentations.core.composition import BaseCompose  # albumentations loads only for image recipes
    from albumentations.core.serialization import SERIALIZABLE_REGISTRY
    from albumentations.core.transforms_interface import BasicTransform

    try:
        from albumentations.core.transforms_interface import Transform3D  # albumentations loads only for image recipes
    except ImportError:  # pragma: no cover - other albumentations versions
        Transform3D = ()  # type: ignore[assignment]

    out: dict[str, type] = {}
    for name, cls in SERIALIZABLE_REGISTRY.items():
        if "." in name or name.startswith(("Base", "_")) or name in _NOT_TRANSFORMS:
            continue
        if isinstance(cls, type) and issubclass(cls, BasicTransform) and not (Transform3D and issubclass(cls, Transform3D)):
            out[name] = cls
        elif name in COMPOSITIONS and issubclass(cls, BaseCompose):
            out[name] = cls
    return out


def allowed_transforms() -> list[str]:
    """Names a recipe may use: albumentations' registered 2D transforms and compositions.

    Example: ``"GaussianBlur" in allowed_transforms()``
    """
    return sorted(n for n in _registry() if n not in _REFUSED)


def _show(value: Any, limit: int = 80) -> str:
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int too long to print, a self-nesting list
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _closest(word: str, choices: list[str], n: int = 3) -> list[str]:
    hits = difflib.get_close_matches(word, choices, n=n, cutoff=0.5)
    lower = {c.lower(): c for c in choices}
    if word.lower() in lower and lower[word.lower()] not in hits:
        hits.insert(0, lower[word.lower()])
    return hits[:n]


def _arg_names(cls: type) -> list[str]:
    params = inspect.signature(cls.__init__).parameters
    return sorted(
        name for name, p in params.items()
        if name not in ("self", "strict") and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    )


# --------------------------------------------------------------------------- parsing


def _split_item(item: Any, loc: tuple[Any, ...]) -> tuple[str, dict[str, Any]]:
    """One list item in any accepted form -> (transform name, arguments)."""
    if isinstance(item, str):
        return item, {}
    if isinstance(item, dict) and "__class_fullname__" in item:
        from albumentations.core.serialization import shorten_class_name  # albumentations loads only for image recipes

        name = item["__class_fullname__"]
        if not isinstance(name, str):
            raise TransformSpecError(loc, f"__class_fullname__ must be a transform name, got {_show(name)}", name)
        return shorten_class_name(name), {k: v for k, v in item.items() if k != "__class_fullname__"}
    if isinstance(item, dict) and len(item) == 1:
        (name, args), = item.items()
        if args is None:
            args = {}
        if not isinstance(name, str):
            raise TransformSpecError(loc, f"a transform name must be a string, got {_show(name)}", name)
        if not isinstance(args, dict):
            raise TransformSpecError(
                loc + (name,),
                f"the arguments of {name} must be a mapping, e.g. `- {name}: {{p: 0.5}}`, got {_show(args)}",
                args,
            )
        return name, dict(args)
    raise TransformSpecError(
        loc,
        "expected a transform: `- Name: {arg: value}`, `- Name`, or the A.to_dict form "
        f"`{{__class_fullname__: Name, arg: value}}`; got {_show(item)}",
        item,
    )


def _unwrap_compose(value: dict[str, Any]) -> list[Any]:
    """The transform list inside a whole ``A.to_dict(A.Compose(...))`` dump."""
    inner = value.get("transform", value)
    extra = set(value) - {"transform", "__version__"} if "transform" in value else set()
    if extra or not isinstance(inner, dict):
        raise TransformSpecError((), "expected a list of transforms or the output of A.to_dict(A.Compose([...]))", value)
    if inner.get("__class_fullname__") not in ("Compose", "albumentations.core.composition.Compose"):
        raise TransformSpecError(
            (), f"expected a Compose at the top of an A.to_dict pipeline, got {_show(inner.get('__class_fullname__'))}",
            inner,
        )
    ignorable = {"__class_fullname__", "transforms", "is_check_shapes", "strict", "seed", "mask_interpolation",
                 "save_applied_params"}
    for key, val in inner.items():
        if key in ignorable:
            continue
        if key == "p" and val in (1, 1.0, None):
            continue
        if key in ("bbox_params", "keypoint_params") and val is None:
            continue
        if key == "additional_targets" and not val:
            continue
        raise TransformSpecError(
            (key,),
            f"Compose.{key} = {_show(val)} is not supported in a recipe (boxes and masks are set by the "
            "synthesizer; put p on the transforms)",
            val,
        )
    transforms = inner.get("transforms")
    if not isinstance(transforms, list):
        raise TransformSpecError(("transforms",), "the Compose has no transforms list", transforms)
    return transforms


def _schema_errors(exc: BaseException, args: dict[str, Any]) -> list[tuple[tuple[Any, ...], str, Any]]:
    """Pydantic errors inside an albumentations ValueError -> (sub-path, message, value)."""

    cause = exc.__cause__
    if not isinstance(cause, ValidationError):
        return []
    grouped: dict[tuple[Any, ...], list[str]] = {}
    for err in cause.errors(include_url=False):
        loc = tuple(err.get("loc", ()))
        key = loc[:1]
        if err.get("type") == "missing":
            text = "required argument is missing"
        else:
            msg = str(err.get("msg", "invalid")).replace("Value error, ", "")
            sub = ".".join(str(x) for x in loc[1:])
            text = f"{sub}: {msg}" if sub else msg
        grouped.setdefault(key, [])
        if text not in grouped[key]:
            grouped[key].append(text)
    out = []
    for key, msgs in grouped.items():
        value = args.get(key[0]) if key else None
        got = f" (got {_show(value)})" if key and key[0] in args else ""
        out.append((key, "; ".join(msgs) + got, value))
    return out


def _construct(cls: type, args: dict[str, Any]) -> Any:
    from albumentations.core.composition import BaseCompose  # albumentations loads only for image recipes

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "InitSchema" in cls.__dict__ and not issubclass(cls, BaseCompose):
            # strict: albumentations raises (instead of warning and using defaults) on bad input
            return cls(**args, strict=True)
        return cls(**args)


def _normalize_one(item: Any, loc: tuple[Any, ...], errors: list[TransformSpecError]) -> tuple[dict, Any] | None:
    """Canonical dict + constructed transform for one item; problems go to ``errors``."""
    try:
        name, args = _split_item(item, loc)
    except TransformSpecError as exc:
        errors.append(exc)
        return None
    registry = _registry()
    if name in _REFUSED:
        errors.append(TransformSpecError(loc + (name,), f"{name} cannot be used in a recipe: {_REFUSED[name]}", name))
        return None
    if name not in registry:
        allowed = allowed_transforms()
        hint = _closest(name, allowed)
        did = f"did you mean {', '.join(repr(h) for h in hint)}? " if hint else ""
        errors.append(TransformSpecError(
            loc + (name,),
            f"unknown transform {name!r}; {did}only albumentations' own transforms can be named "
            f"({len(allowed)} of them, e.g. GaussianBlur, GaussNoise, ImageCompression, Downscale, Affine)",
            name,
        ))
        return None
    cls = registry[name]
    here = loc + (name,)
    valid = _arg_names(cls)
    bad = False
    for arg in args:
        if not isinstance(arg, str) or arg not in valid:
            hint = _closest(str(arg), valid)
            did = f"did you mean {', '.join(repr(h) for h in hint)}? " if hint else ""
            errors.append(TransformSpecError(
                here + (str(arg),), f"unknown argument of {name}; {did}valid arguments: {', '.join(valid)}", arg))
            bad = True
    if bad:
        return None
    canon_args = dict(args)
    if name in COMPOSITIONS:
        children = args.get("transforms")
        if not isinstance(children, list) or not children:
            errors.append(TransformSpecError(
                here + ("transforms",), f"{name} needs a non-empty list of transforms", children))
            return None
        built_children, canon_children = [], []
        n_before = len(errors)
        for i, child in enumerate(children):
            got = _normalize_one(child, here + ("transforms", i), errors)
            if got is not None:
                canon_children.append(got[0])
                built_children.append(got[1])
        if len(errors) > n_before:
            return None
        canon_args["transforms"] = canon_children
        args = {**args, "transforms": built_children}
    try:
        built = _construct(cls, args)
    except Exception as exc:  # noqa: BLE001 - every constructor failure is a recipe error
        found = _schema_errors(exc, args)
        if found:
            for sub, msg, value in found:
                errors.append(TransformSpecError(here + sub, msg, value))
        else:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            errors.append(TransformSpecError(here, f"{name} rejects these arguments: {msg}", args))
        return None
    return {"__class_fullname__": name, **canon_args}, built


def normalize_transforms(value: Any) -> list[dict[str, Any]]:
    """Validate a recipe's transform list and return its canonical form.

    Raises :class:`TransformSpecError` (the first problem; ``.all`` holds every one).

    Example: ``normalize_transforms(["HorizontalFlip"]) == [{"__class_fullname__": "HorizontalFlip"}]``
    """
    if value is None:
        return []
    if isinstance(value, dict):
        value = _unwrap_compose(value)
    if not isinstance(value, list):
        raise TransformSpecError((), f"expected a list of transforms, got {_show(value)}", value)
    errors: list[TransformSpecError] = []
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        got = _normalize_one(item, (i,), errors)
        if got is not None:
            out.append(got[0])
    if errors:
        first = errors[0]
        first.all = errors  # type: ignore[attr-defined]
        raise first
    return out


def build_transforms(specs: list[dict[str, Any]]) -> list[Any]:
    """Constructed albumentations transforms from canonical specs.

    Example: ``build_transforms([{"__class_fullname__": "HorizontalFlip", "p": 1.0}])``
    """
    out = []
    for spec in specs:
        name = spec["__class_fullname__"]
        args = {k: v for k, v in spec.items() if k != "__class_fullname__"}
        if name in COMPOSITIONS:
            args["transforms"] = build_transforms(args["transforms"])
        out.append(_construct(_registry()[name], args))
    return out


def build_compose(specs: list[dict[str, Any]], *, masks_and_boxes: bool = False) -> Any:
    """An ``A.Compose`` over the specs that records what it applied.

    With ``masks_and_boxes`` it also carries ``masks`` and pascal_voc ``bboxes`` (labelled
    by ``object_ids``) through geometric transforms.

    Example: ``build_compose(normalize_transforms(["HorizontalFlip"]))(image=img)["image"]``
    """
    import albumentations as A  # albumentations loads only for image recipes

    bbox_params = None
    if masks_and_boxes:
        bbox_params = A.BboxParams(format="pascal_voc", label_fields=["object_ids"], clip=True,
                                   min_area=0.0, min_visibility=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return A.Compose(build_transforms(specs), bbox_params=bbox_params, save_applied_params=True, seed=0)


def seed_pipeline(compose: Any, seed: int) -> None:
    """Give the whole pipeline one shared numpy and Python random stream from ``seed``.

    Example: ``seed_pipeline(compose, params["seed"])``
    """
    compose.set_random_state(np.random.Generator(np.random.PCG64(seed)), random.Random(seed))


_SMALL = 16  # arrays up to this many values are kept; larger ones become their shape


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        return _json_safe(value.value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.ndarray):
        if value.ndim <= 1 and value.size <= _SMALL and value.dtype.kind in "biuf":
            return _json_safe(value.tolist())
        # A string, not numbers: it says what was there without posing as a sampled value.
        return f"{value.dtype}[{'x'.join(str(n) for n in value.shape)}]"
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) > _SMALL or any(isinstance(v, (list, tuple, np.ndarray)) for v in value):
            return f"list[{len(value)}]"
        return [_json_safe(v) for v in value]
    return type(value).__name__


def applied_params(applied: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """albumentations' ``applied_transforms`` as JSON-safe records keyed by transform name
    (``Name#2`` for a second application of the same transform), so a parameter keeps
    its name whichever other transforms fired.

    Example: ``applied_params(result["applied_transforms"])["GaussianBlur"]["sigma"]``
    """
    out: dict[str, dict[str, Any]] = {}
    for name, params in applied:
        key, n = name, 1
        while key in out:
            n += 1
            key = f"{name}#{n}"
        out[key] = {str(k): _json_safe(v) for k, v in params.items() if k != "shape"}
    return out
