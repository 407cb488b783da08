"""Image recipes: albumentations pipelines are validated at load, with the path of every
problem and the closest valid names; only albumentations' own transforms can be named."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import albumentations as A
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import RecipeError
from engine.image.pipeline import allowed_transforms, build_compose, normalize_transforms
from engine.recipe import load_recipe, parse_recipe, recipe_hash, recipe_to_dict

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def augment_recipe(transforms: Any = None, **pool: Any) -> dict[str, Any]:
    return {
        "name": "photos",
        "seed": 1,
        "pools": {"photos": {"kind": "image", "paths": ["photos/*.jpg"], **pool}},
        "splits": {"train": {"samples": 100}},
        "synth": {"type": "image_augment", "images": "photos",
                  "transforms": transforms if transforms is not None else []},
    }


def composite_recipe(**synth: Any) -> dict[str, Any]:
    return {
        "name": "cars",
        "seed": 1,
        "pools": {
            "cars": {"kind": "image", "paths": ["cars/*.png"], "mode": "rgba"},
            "streets": {"kind": "image", "paths": ["streets/*.jpg"]},
        },
        "splits": {"train": {"samples": 100}},
        "synth": {"type": "image_composite", "foregrounds": "cars", "backgrounds": "streets", **synth},
    }


def error_of(data: dict) -> str:
    with pytest.raises(RecipeError) as info:
        parse_recipe(data)
    return str(info.value)


# --------------------------------------------------------------------------- forms


def test_short_form_and_to_dict_form_give_the_same_canonical_pipeline():
    short = [{"GaussianBlur": {"blur_limit": [3, 7], "p": 0.5}}, "HorizontalFlip"]
    long = [{"__class_fullname__": "GaussianBlur", "blur_limit": [3, 7], "p": 0.5},
            {"__class_fullname__": "HorizontalFlip"}]
    a, b = parse_recipe(augment_recipe(short)), parse_recipe(augment_recipe(long))
    assert a.synth.transforms == b.synth.transforms == long
    assert recipe_hash(a) == recipe_hash(b)


def test_the_whole_a_to_dict_output_is_accepted():
    pipeline = A.Compose([A.GaussianBlur(blur_limit=(3, 7), p=0.5), A.OneOf([A.MotionBlur(), A.Defocus()], p=0.3),
                          A.ImageCompression(quality_range=(40, 80))])
    recipe = parse_recipe(augment_recipe(A.to_dict(pipeline)))
    names = [t["__class_fullname__"] for t in recipe.synth.transforms]
    assert names == ["GaussianBlur", "OneOf", "ImageCompression"]
    assert [t["__class_fullname__"] for t in recipe.synth.transforms[1]["transforms"]] == ["MotionBlur", "Defocus"]


def test_a_dumped_recipe_validates_to_the_same_recipe():
    data = augment_recipe([{"OneOf": {"p": 0.5, "transforms": ["MotionBlur", {"Defocus": {"radius": [2, 4]}}]}},
                           {"ImageCompression": {"quality_range": [30, 60]}}])
    first = parse_recipe(data)
    again = parse_recipe(recipe_to_dict(first))
    assert recipe_to_dict(again) == recipe_to_dict(first)
    assert recipe_hash(again) == recipe_hash(first)


def test_nested_compositions_build_into_a_compose():
    specs = normalize_transforms([{"SomeOf": {"n": 2, "transforms": ["HorizontalFlip", "VerticalFlip", "Transpose"]}}])
    compose = build_compose(specs)
    assert type(compose.transforms[0]).__name__ == "SomeOf"
    assert len(compose.transforms[0].transforms) == 3


def test_only_albumentations_transforms_are_allowed_and_none_runs_code():
    allowed = allowed_transforms()
    assert {"GaussianBlur", "ImageCompression", "Affine", "OneOf"} <= set(allowed)
    assert not {"Lambda", "Compose", "ReplayCompose", "Normalize", "BasicTransform", "DualTransform"} & set(allowed)
    assert not any(name.endswith("3D") for name in allowed)


# --------------------------------------------------------------------------- errors


def test_unknown_transform_names_the_closest_valid_names():
    msg = error_of(augment_recipe([{"GausianBlur": {"blur_limit": [3, 7]}}]))
    assert "synth.transforms[0].GausianBlur: unknown transform 'GausianBlur'" in msg
    assert "did you mean 'GaussianBlur'" in msg


def test_unknown_argument_names_the_closest_valid_arguments():
    msg = error_of(augment_recipe(["HorizontalFlip", "VerticalFlip", {"GaussianBlur": {"blur_limt": [3, 7]}}]))
    assert "synth.transforms[2].GaussianBlur.blur_limt: unknown argument of GaussianBlur" in msg
    assert "did you mean 'blur_limit'" in msg
    assert "valid arguments: blur_limit, p, sigma_limit" in msg


def test_bad_argument_value_is_reported_by_albumentations_own_schema_at_its_path():
    msg = error_of(augment_recipe(["HorizontalFlip", "VerticalFlip", {"GaussianBlur": {"blur_limit": [3, "x"]}}]))
    assert "synth.transforms[2].GaussianBlur.blur_limit:" in msg
    assert "got [3, 'x']" in msg
    msg = error_of(augment_recipe([{"ImageCompression": {"quality_range": [0, 200]}}]))
    assert "synth.transforms[0].ImageCompression.quality_range:" in msg and ">= 1 and <= 100" in msg


def test_missing_required_argument_is_named():
    msg = error_of(augment_recipe(["RandomCrop"]))
    assert "synth.transforms[0].RandomCrop.height: required argument is missing" in msg
    assert "synth.transforms[0].RandomCrop.width: required argument is missing" in msg


def test_problems_inside_a_composition_have_the_full_path():
    msg = error_of(augment_recipe([{"OneOf": {"transforms": ["MotionBlur", {"Blurr": {}}]}}]))
    assert "synth.transforms[0].OneOf.transforms[1].Blurr: unknown transform" in msg
    assert "'Blur'" in msg


def test_every_problem_is_listed_at_once():
    msg = error_of(augment_recipe(["Blurr", {"GaussianBlur": {"sigma": 1}}, "HorizontalFlip"]))
    assert "(2 problems)" in msg
    assert "synth.transforms[0].Blurr" in msg and "synth.transforms[1].GaussianBlur.sigma" in msg


@pytest.mark.parametrize("name, why", [
    ("Lambda", "runs arbitrary code"),
    ("Normalize", "floats"),
    ("ReplayCompose", "replay is built in"),
    ("Mosaic", "call time"),
])
def test_refused_transforms_say_why(name, why):
    msg = error_of(augment_recipe([name]))
    assert f"synth.transforms[0].{name}: {name} cannot be used in a recipe" in msg and why in msg


def test_import_paths_are_not_transform_names():
    msg = error_of(augment_recipe([{"__class_fullname__": "os.system", "command": "rm -rf /"}]))
    assert "unknown transform 'os.system'" in msg


@pytest.mark.parametrize("item", [42, ["GaussianBlur"], {"GaussianBlur": 3}, {"A": {}, "B": {}}])
def test_malformed_items_explain_the_accepted_forms(item):
    msg = error_of(augment_recipe([item]))
    assert "synth.transforms[0]" in msg


def test_a_compose_with_box_params_is_not_a_recipe_pipeline():
    dumped = A.to_dict(A.Compose([A.HorizontalFlip()], bbox_params=A.BboxParams(format="coco")))
    assert "Compose.bbox_params" in error_of(augment_recipe(dumped))


def test_image_synth_needs_an_image_pool():
    data = augment_recipe([])
    data["pools"]["photos"].pop("kind")  # an audio pool by default
    assert "pool 'photos' is of kind 'audio'; this field needs a pool of kind 'image'" in error_of(data)


def test_image_pool_fields_are_checked():
    assert "pools.photos.mode" in error_of(augment_recipe([], mode="cmyk"))
    assert "pools.photos.max_pixels" in error_of(augment_recipe([], max_pixels=0))
    assert "did you mean 'mode'" in error_of(augment_recipe([], mod="rgb"))


def test_jpeg_output_of_an_rgba_pool_is_refused():
    data = augment_recipe([], mode="rgba")
    data["output"] = {"image_format": "jpeg"}
    assert "output.image_format: jpeg has no alpha channel" in error_of(data)


def test_output_quality_is_bounded():
    data = augment_recipe([])
    data["output"] = {"image_format": "webp", "image_quality": 101}
    assert "output.image_quality" in error_of(data)


def test_composite_needs_cutouts_with_alpha_or_a_mask():
    data = composite_recipe()
    data["pools"]["cars"]["mode"] = "rgb"
    assert "pools.cars.mode: the foregrounds of image_composite need their alpha" in error_of(data)
    data["pools"]["cars"] = {"kind": "image", "manifest": "cars.csv", "mask_column": "mask"}
    parse_recipe(data)


def test_composite_ranges_are_validated():
    assert "synth.count_range" in error_of(composite_recipe(count_range=[3, 1]))
    assert "whole numbers" in error_of(composite_recipe(count_range=[1.5, 2]))
    assert "synth.scale_range" in error_of(composite_recipe(scale_range=[0, 0.5]))
    assert "synth.rotation_deg_range" in error_of(composite_recipe(rotation_deg_range=[-200, 0]))
    assert "synth.transforms[0].Blurr" in error_of(composite_recipe(transforms=["Blurr"]))


def test_composite_holdout_can_come_from_either_pool():
    data = composite_recipe()
    data["splits"]["unseen"] = {"samples": 10, "holdout": True}
    assert "sets a holdout fraction" in error_of(copy.deepcopy(data))
    data["pools"]["cars"]["holdout"] = 0.2
    assert parse_recipe(data).synth.holdout_pools() == ["cars", "streets"]


@pytest.mark.parametrize("name", ["demo_images", "demo_composite", "mobile_photos"])
def test_shipped_image_recipes_are_valid(name):
    recipe = load_recipe(RECIPES / f"{name}.yaml")
    assert recipe.synth.type.startswith("image_")


_NAMES = st.sampled_from(allowed_transforms()[:40] + ["Lambda", "Blurr", "OneOf", "Compose", "__class_fullname__"])
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.builds(lambda: 10**5000),
                     st.floats(allow_nan=True), st.text(max_size=5))
_VALUES = st.recursive(_SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=2),
                       max_leaves=6)
_ARGS = st.dictionaries(st.sampled_from(["p", "blur_limit", "transforms", "quality_range", "height", "width", "x"]),
                        _VALUES, max_size=3)
_ITEMS = st.one_of(_NAMES, st.builds(lambda n, a: {n: a}, _NAMES, _ARGS),
                   st.builds(lambda n, a: {"__class_fullname__": n, **a}, _NAMES, _ARGS), _SCALARS)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(st.lists(_ITEMS, max_size=4), st.dictionaries(st.sampled_from(["transform", "__version__"]), _ITEMS,
                                                               max_size=2), _SCALARS))
def test_arbitrary_transform_lists_are_a_recipe_or_a_recipe_error(transforms):
    try:
        parse_recipe(augment_recipe(transforms))
    except RecipeError:
        pass
