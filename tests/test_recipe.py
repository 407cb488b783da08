"""Recipe validation: every malformed recipe is a RecipeError that names the field.

The base recipe is plain data; ``parse_recipe`` never touches the files it names.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import RecipeError
from engine.recipe import Recipe, load_recipe, parse_recipe, recipe_hash, recipe_to_dict


def base_recipe() -> dict[str, Any]:
    """A small valid recipe: speech from a manifest, car noise from globs, one held-out split."""
    return {
        "name": "in_car",
        "seed": 1234,
        "output": {"format": "arrow", "samples_per_shard": 100},
        "pools": {
            "speech": {"manifest": "speech.csv"},
            "car": {"paths": ["noise/car/*.wav"], "holdout": 0.1},
        },
        "splits": {
            "train": {"samples": 1000},
            "train_dev": {"samples": 100},
            "train_dev_unseen": {"samples": 100, "holdout": True},
        },
        "synth": {
            "type": "speech_noise_mix",
            "speech": "speech",
            "noise": [{"pool": "car", "snr_db_range": [0, 20]}],
        },
        "guards": {"max_reuse_factor": 20.0},
        "on_bad_input": "skip",
    }


@pytest.fixture
def base() -> dict[str, Any]:
    return base_recipe()


def _get(data: Any, path: tuple) -> Any:
    for key in path:
        data = data[key]
    return data


def _set(data: dict, path: tuple, value: Any) -> dict:
    _get(data, path[:-1])[path[-1]] = value
    return data


def _del(data: dict, path: tuple) -> dict:
    del _get(data, path[:-1])[path[-1]]
    return data


def _names_field(message: str, field: str) -> bool:
    """The field path starts a line (or follows the file name) and is followed by a colon."""
    return re.search(rf"(^|\n\s*|: ){re.escape(field)}:", message) is not None


def _write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the valid recipe


def test_base_recipe_is_valid_and_fills_defaults(base):
    recipe = parse_recipe(base)

    assert isinstance(recipe, Recipe)
    assert recipe.name == "in_car" and recipe.seed == 1234
    assert recipe.pools["car"].kind == "audio"  # pools without `kind` are audio pools
    assert recipe.pools["car"].holdout == 0.1
    assert recipe.splits["train_dev_unseen"].holdout is True
    assert recipe.splits["train"].holdout is False
    assert recipe.synth.noise[0].snr_db_range == (0.0, 20.0)
    assert recipe.synth.noise[0].p == 1.0
    assert recipe.synth.pools_used() == ["speech", "car"]
    assert recipe.output.audio_codec == "flac"


def test_parse_recipe_needs_no_files_to_exist(base, tmp_path):
    recipe = parse_recipe(base, base_dir=tmp_path / "does-not-exist")
    assert recipe.pools["speech"].manifest == "speech.csv"


def test_recipe_is_frozen(base):
    recipe = parse_recipe(base)
    with pytest.raises(Exception):
        recipe.seed = 5  # type: ignore[misc]


# --------------------------------------------------------------------------- malformed recipes

NOISE0 = ("synth", "noise", 0)

MALFORMED = [
    # (id, mutate(data) -> data, field path named, further fragments the message must contain)
    ("reversed_snr_range", lambda d: _set(d, NOISE0 + ("snr_db_range",), [20, 5]),
     "synth.noise[0].snr_db_range", ["low <= high", "[20, 5]"]),
    ("nan_in_snr_range", lambda d: _set(d, NOISE0 + ("snr_db_range",), [0, math.nan]),
     "synth.noise[0].snr_db_range", ["finite", "nan"]),
    ("snr_range_of_one_number", lambda d: _set(d, NOISE0 + ("snr_db_range",), [5]),
     "synth.noise[0].snr_db_range", ["[low, high]", "[5]"]),
    ("snr_range_as_string", lambda d: _set(d, NOISE0 + ("snr_db_range",), "0-20"),
     "synth.noise[0].snr_db_range", ["[low, high]", "'0-20'"]),
    ("snr_range_out_of_bounds", lambda d: _set(d, NOISE0 + ("snr_db_range",), [0, 200]),
     "synth.noise[0].snr_db_range", ["[-40, 100]", "200"]),
    ("snr_range_missing", lambda d: _del(d, NOISE0 + ("snr_db_range",)),
     "synth.noise[0].snr_db_range", ["required"]),
    ("noise_probability_above_one", lambda d: _set(d, NOISE0 + ("p",), 1.5),
     "synth.noise[0].p", ["1.5"]),
    ("typo_in_pool_field", lambda d: _set(d, ("pools", "speech", "smaple_rate"), 16000),
     "pools.speech.smaple_rate", ["unknown field", "did you mean 'sample_rate'"]),
    ("typo_in_noise_layer_field", lambda d: _set(d, NOISE0 + ("pp",), 0.5),
     "synth.noise[0].pp", ["did you mean 'p'"]),
    ("typo_in_synth_field", lambda d: _set(d, ("synth", "sample_rat"), 16000),
     "synth.sample_rat", ["did you mean 'sample_rate'"]),
    ("typo_in_guard", lambda d: _set(d, ("guards", "max_reuse_factr"), 2),
     "guards.max_reuse_factr", ["did you mean 'max_reuse_factor'"]),
    ("unknown_top_level_key", lambda d: _set(d, ("sead",), 1),
     "sead", ["unknown field", "did you mean 'seed'"]),
    ("unknown_output_format", lambda d: _set(d, ("output", "format"), "csv"),
     "output.format", ["'arrow'", "'parquet'", "'csv'"]),
    ("zero_samples_per_shard", lambda d: _set(d, ("output", "samples_per_shard"), 0),
     "output.samples_per_shard", ["got 0"]),
    ("zero_split_samples", lambda d: _set(d, ("splits", "train", "samples"), 0),
     "splits.train.samples", ["greater than or equal to 1", "got 0"]),
    ("split_samples_not_a_number", lambda d: _set(d, ("splits", "train", "samples"), "lots"),
     "splits.train.samples", ["integer", "'lots'"]),
    ("split_samples_missing", lambda d: _del(d, ("splits", "train", "samples")),
     "splits.train.samples", ["required field is missing"]),
    ("split_is_null", lambda d: _set(d, ("splits", "train"), None),
     "splits.train", []),
    ("unknown_clipping_mode", lambda d: _set(d, ("synth", "clipping"), "clip"),
     "synth.clipping", ["'rescale'", "'reject'", "'allow'", "'clip'"]),
    ("negative_seed", lambda d: _set(d, ("seed",), -1), "seed", ["-1"]),
    ("seed_not_a_number", lambda d: _set(d, ("seed",), "abc"), "seed", ["'abc'"]),
    ("fractional_seed", lambda d: _set(d, ("seed",), 1.5), "seed", ["1.5"]),
    ("seed_too_large", lambda d: _set(d, ("seed",), 2**63), "seed", [str(2**63)]),
    ("seed_missing", lambda d: _del(d, ("seed",)), "seed", ["required field is missing"]),
    ("name_with_space", lambda d: _set(d, ("name",), "in car"), "name", ["'in car'"]),
    ("pool_with_paths_and_manifest", lambda d: _set(d, ("pools", "car", "manifest"), "car.csv"),
     "pools.car", ["exactly one of 'paths'", "'manifest'"]),
    ("pool_with_neither_paths_nor_manifest", lambda d: _del(d, ("pools", "car", "paths")),
     "pools.car", ["exactly one of 'paths'", "'manifest'"]),
    ("pool_with_empty_paths", lambda d: _set(d, ("pools", "car", "paths"), []),
     "pools.car.paths", ["non-empty list", "[]"]),
    ("pool_holdout_too_large", lambda d: _set(d, ("pools", "car", "holdout"), 0.95),
     "pools.car.holdout", ["0.9", "0.95"]),
    ("unknown_pool_kind", lambda d: _set(d, ("pools", "car", "kind"), "video"),
     "pools.car.kind", ["'video'", "audio"]),
    ("bad_pool_name", lambda d: _set(d, ("pools", "bad name!"), {"paths": ["x/*.wav"]}),
     "pools", ["'bad name!'"]),
    ("unknown_synth_type", lambda d: _set(d, ("synth", "type"), "speech_noise_mixx"),
     "synth.type", ["'speech_noise_mixx'", "speech_noise_mix'"]),
    ("synth_type_missing", lambda d: _del(d, ("synth", "type")),
     "synth.type", ["missing", "speech_noise_mix"]),
    ("empty_noise_list", lambda d: _set(d, ("synth", "noise"), []),
     "synth.noise", ["at least 1"]),
    ("noise_layer_names_missing_pool", lambda d: _set(d, NOISE0 + ("pool",), "cars"),
     "synth.noise[0].pool", ["'cars'", "Did you mean 'car'?"]),
    ("speech_names_missing_pool", lambda d: _set(d, ("synth", "speech"), "speeh"),
     "synth.speech", ["'speeh'", "Did you mean 'speech'?"]),
    ("holdout_split_without_holdout_pool", lambda d: _del(d, ("pools", "car", "holdout")),
     "splits.train_dev_unseen.holdout", ["pools.car.holdout"]),
    ("upper_case_split_name", lambda d: _set(d, ("splits", "Train"), {"samples": 3}),
     "splits", ["'Train'", "lower-case"]),
    ("split_name_with_dash", lambda d: _set(d, ("splits", "train-dev"), {"samples": 3}),
     "splits", ["'train-dev'"]),
    ("no_splits", lambda d: _set(d, ("splits",), {}), "splits", ["at least one"]),
    ("no_pools", lambda d: _set(d, ("pools",), {}), "pools", ["at least one"]),
    ("on_bad_input_typo", lambda d: _set(d, ("on_bad_input",), "skipp"),
     "on_bad_input", ["'skip'", "'fail'", "'skipp'"]),
]


@pytest.mark.parametrize(
    "mutate, field, fragments", [pytest.param(*case[1:], id=case[0]) for case in MALFORMED]
)
def test_malformed_recipe_names_the_field(base, mutate, field, fragments):
    with pytest.raises(RecipeError) as info:
        parse_recipe(mutate(base))
    message = str(info.value)
    assert _names_field(message, field), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"


def test_every_problem_is_reported_at_once(base):
    base["seed"] = -1
    base["output"]["format"] = "csv"
    with pytest.raises(RecipeError) as info:
        parse_recipe(base, source="r.yaml")
    message = str(info.value)
    assert message.startswith("r.yaml: ") and "2 problems" in message
    assert _names_field(message, "seed") and _names_field(message, "output.format")


@pytest.mark.parametrize(
    "data, type_name",
    [([1, 2], "list"), ("name: x", "str"), (None, "NoneType"), (42, "int")],
    ids=["list", "string", "null", "number"],
)
def test_recipe_that_is_not_a_mapping_is_rejected(data, type_name):
    with pytest.raises(RecipeError, match=rf"must be a YAML mapping.*got {type_name}"):
        parse_recipe(data)


def test_non_string_top_level_key_is_rejected(base):
    base[7] = "x"
    with pytest.raises(RecipeError, match="keys must be strings, got 7"):
        parse_recipe(base)


def test_boolean_seed_is_rejected(base):
    # `seed: yes` is YAML for True; silently seeding with 1 hides the typo.
    base["seed"] = True
    with pytest.raises(RecipeError, match="seed"):
        parse_recipe(base)


# --------------------------------------------------------------------------- load_recipe: files


def test_load_recipe_reads_a_yaml_file(base, tmp_path):
    recipe = load_recipe(_write(tmp_path / "r.yaml", base))
    assert recipe_to_dict(recipe) == recipe_to_dict(parse_recipe(base))


def test_relative_paths_resolve_against_the_recipe_folder_not_the_cwd(base, tmp_path, monkeypatch):
    folder = tmp_path / "project" / "recipes"
    (folder / "noise" / "car").mkdir(parents=True)
    (folder / "speech.csv").write_text("path\nclean/a.flac\n")
    path = _write(folder / "in_car.yaml", base)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    recipe = load_recipe(path)

    assert recipe.base_dir == folder.resolve()
    assert (recipe.base_dir / recipe.pools["speech"].manifest).is_file()
    assert not (Path.cwd() / recipe.pools["speech"].manifest).exists()


def test_base_dir_is_absolute_when_the_recipe_path_is_relative(base, tmp_path, monkeypatch):
    _write(tmp_path / "recipes" / "r.yaml", base)
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe("recipes/r.yaml")
    assert recipe.base_dir.is_absolute()
    assert recipe.base_dir == (tmp_path / "recipes").resolve()


def test_parse_recipe_takes_base_dir_explicitly(base, tmp_path):
    assert parse_recipe(base, base_dir=tmp_path).base_dir == tmp_path.resolve()


def test_missing_recipe_file_is_a_recipe_error(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "~\n"], ids=repr)
def test_empty_recipe_file_says_it_is_empty(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError, match="empty") as info:
        load_recipe(path)
    assert str(path) in str(info.value)


def test_top_level_list_file_is_rejected(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("- name: x\n- seed: 1\n")
    with pytest.raises(RecipeError, match="mapping.*got list"):
        load_recipe(path)


def test_invalid_yaml_reports_the_line(base, tmp_path):
    text = yaml.safe_dump(base, sort_keys=False)
    lines = text.splitlines()
    lines.insert(4, "  broken: [unclosed, {")
    path = tmp_path / "r.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "not valid YAML" in message
    line = int(re.search(r"at line (\d+)", message).group(1))
    assert 5 <= line <= len(lines) + 1  # the parser stops at or after the broken line


def test_indentation_error_reports_its_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: x\nseed: 1\n  pools: {}\n")
    with pytest.raises(RecipeError, match=r"not valid YAML at line 3"):
        load_recipe(path)


def test_recipe_that_is_not_utf8_is_a_recipe_error(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(RecipeError, match="UTF-8"):
        load_recipe(path)


def test_validation_errors_from_a_file_name_the_file(base, tmp_path):
    base["output"]["format"] = "csv"
    path = _write(tmp_path / "r.yaml", base)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert str(info.value).startswith(f"{path}: ")
    assert _names_field(str(info.value), "output.format")


def test_python_tags_are_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "r.yaml"
    path.write_text(
        f'name: x\nseed: !!python/object/apply:os.system ["touch {marker}"]\n'
        f'other: !!python/object/apply:os.system ["echo hi"]\n'
    )
    with pytest.raises(RecipeError, match="python/object/apply:os.system"):
        load_recipe(path)
    assert not marker.exists()


# --------------------------------------------------------------------------- --set overrides


@pytest.fixture
def recipe_file(base, tmp_path) -> Path:
    return _write(tmp_path / "r.yaml", base)


def test_override_sets_an_int(recipe_file):
    assert load_recipe(recipe_file, overrides=["seed=7"]).seed == 7


def test_override_sets_a_nested_int(recipe_file):
    recipe = load_recipe(recipe_file, overrides=["splits.train.samples=200"])
    assert recipe.splits["train"].samples == 200


def test_override_value_is_parsed_as_yaml_list(recipe_file):
    recipe = load_recipe(recipe_file, overrides=["synth.noise[0].snr_db_range=[5, 15]"])
    assert recipe.synth.noise[0].snr_db_range == (5.0, 15.0)


def test_override_indexes_into_a_list(recipe_file):
    recipe = load_recipe(recipe_file, overrides=["synth.noise[0].p=0.5"])
    assert recipe.synth.noise[0].p == 0.5


def test_override_replaces_a_whole_list(recipe_file):
    recipe = load_recipe(recipe_file, overrides=["pools.car.paths=[a/*.wav, b/*.wav]"])
    assert recipe.pools["car"].paths == ["a/*.wav", "b/*.wav"]


def test_override_adds_a_new_split(recipe_file):
    recipe = load_recipe(recipe_file, overrides=["splits.test.samples=50"])
    assert list(recipe.splits) == ["train", "train_dev", "train_dev_unseen", "test"]
    assert recipe.splits["test"].samples == 50 and not recipe.splits["test"].holdout


def test_later_overrides_win(recipe_file):
    assert load_recipe(recipe_file, overrides=["seed=1", "seed=2"]).seed == 2


def test_override_with_a_value_containing_equals(recipe_file):
    recipe = load_recipe(recipe_file, overrides=["pools.car.paths=['a=b/*.wav']"])
    assert recipe.pools["car"].paths == ["a=b/*.wav"]


def test_overrides_do_not_change_the_file(recipe_file):
    before = recipe_file.read_text()
    load_recipe(recipe_file, overrides=["seed=7"])
    assert recipe_file.read_text() == before
    assert load_recipe(recipe_file).seed == 1234


def test_overridden_values_are_validated(recipe_file):
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe_file, overrides=["synth.noise[0].snr_db_range=[20, 5]"])
    assert _names_field(str(info.value), "synth.noise[0].snr_db_range")


@pytest.mark.parametrize(
    "override, fragments",
    [
        pytest.param("seed", ["seed", "key.path=value"], id="no_equals_sign"),
        pytest.param("synth.noise[3].p=1", ["synth.noise[3].p", "index 3 is out of range", "1 item"],
                     id="index_out_of_range"),
        pytest.param("seed.low=1", ["seed.low", "cannot descend", "1234"], id="descend_into_scalar"),
        pytest.param("synth.noise.p=1", ["synth.noise.p", "indexes a list"], id="name_on_a_list"),
        pytest.param("synth..p=1", ["synth..p", "empty path segment"], id="empty_segment"),
        pytest.param("synth.noise[x].p=1", ["synth.noise[x].p", "cannot parse 'noise[x]'"],
                     id="non_numeric_index"),
        pytest.param("seed=[1", ["seed", "not valid YAML"], id="bad_yaml_value"),
        # issue 16: a misspelt list field is named, not reported as an index out of range
        pytest.param("synth.nois[0].p=0.5", ["synth.nois[0].p", "unknown field 'nois' under synth",
                                             "did you mean 'noise'?"], id="misspelt_list_field"),
        pytest.param("synth.zzz[0].p=0.5", ["synth.zzz[0].p", "no field 'zzz' under synth to index",
                                            "noise", "synth.zzz=[...]"], id="absent_list_field"),
    ],
)
def test_bad_override_is_a_recipe_error_naming_the_override(recipe_file, override, fragments):
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe_file, overrides=[override])
    message = str(info.value)
    assert message.startswith("--set "), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"


# --------------------------------------------------------------------------- recipe_hash


def _reverse_key_order(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reverse_key_order(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reverse_key_order(v) for v in value]
    return value


def test_hash_is_a_sha256_hex_digest(base):
    digest = recipe_hash(parse_recipe(base))
    assert re.fullmatch(r"[0-9a-f]{64}", digest)


def test_hash_ignores_key_order(base):
    assert recipe_hash(parse_recipe(base)) == recipe_hash(parse_recipe(_reverse_key_order(base)))


def test_hash_ignores_yaml_formatting_and_comments(base, tmp_path):
    block = _write(tmp_path / "block.yaml", base)
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "# the same recipe, written differently\n"
        + yaml.safe_dump(_reverse_key_order(base), default_flow_style=True, indent=4)
    )
    assert block.read_text() != flow.read_text()
    assert recipe_hash(load_recipe(block)) == recipe_hash(load_recipe(flow))


def test_hash_does_not_depend_on_int_or_float_spelling(base):
    other = copy.deepcopy(base)
    other["synth"]["noise"][0]["snr_db_range"] = [0.0, 20.0]
    assert recipe_hash(parse_recipe(base)) == recipe_hash(parse_recipe(other))


def test_hash_is_the_same_with_defaults_written_out(base):
    explicit = copy.deepcopy(base)
    explicit["output"].update(audio_codec="flac")
    explicit["pools"]["car"].update(kind="audio", path_column="path", min_duration_s=0.0)
    explicit["pools"]["speech"].update(kind="audio", holdout=0.0, sample_rate=None)
    explicit["splits"]["train"]["holdout"] = False
    explicit["synth"].update(sample_rate=None, clipping="rescale", peak_dbfs=-1.0, crossfade_s=0.05)
    explicit["synth"]["noise"][0]["p"] = 1.0
    explicit["guards"].update(min_effective_sources=None, max_source_share=None)

    minimal = copy.deepcopy(base)
    del minimal["output"], minimal["guards"], minimal["on_bad_input"]
    minimal["output"] = {"samples_per_shard": 100}

    h = recipe_hash(parse_recipe(base))
    assert recipe_hash(parse_recipe(explicit)) == h
    assert recipe_hash(parse_recipe(minimal)) == h


@pytest.mark.parametrize(
    "path, value",
    [
        (("seed",), 1235),
        (("name",), "in_car2"),
        (("splits", "train", "samples"), 1001),
        (("splits", "train_dev", "holdout"), True),
        (NOISE0 + ("snr_db_range",), [0, 21]),
        (NOISE0 + ("snr_db_range",), [-1, 20]),
        (NOISE0 + ("p",), 0.99),
        (("pools", "car", "holdout"), 0.2),
        (("pools", "car", "paths"), ["noise/car/*.flac"]),
        (("output", "samples_per_shard"), 101),
        (("output", "format"), "parquet"),
        (("synth", "clipping"), "reject"),
        (("on_bad_input",), "fail"),
        (("splits", "test"), {"samples": 5}),
    ],
    ids=lambda v: ".".join(map(str, v)) if isinstance(v, tuple) else None,
)
def test_hash_changes_when_any_value_changes(base, path, value):
    before = recipe_hash(parse_recipe(base))
    after = recipe_hash(parse_recipe(_set(copy.deepcopy(base), path, value)))
    assert after != before


def test_hash_ignores_the_recipe_folder(base, tmp_path):
    # The hash is over content; where the recipe sits is recorded separately.
    a = parse_recipe(base, base_dir=tmp_path / "a")
    b = parse_recipe(base, base_dir=tmp_path / "b")
    assert recipe_hash(a) == recipe_hash(b)


def test_normalized_recipe_round_trips(base):
    recipe = parse_recipe(base)
    again = parse_recipe(recipe_to_dict(recipe))
    assert again == recipe and recipe_hash(again) == recipe_hash(recipe)


# --------------------------------------------------------------------------- fuzzing

# Integers reach past float overflow on purpose (the int->str digit limit has its own test).
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**1000), max_value=10**1000)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
json_like = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


def _all_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    paths = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        paths.append(prefix + (key,))
        paths.extend(_all_paths(child, prefix + (key,)))
    return paths


BASE_PATHS = _all_paths(base_recipe())
BASE_KEY_PATHS = [p for p in BASE_PATHS if isinstance(p[-1], str)]

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _parses_or_recipe_error(data: Any) -> None:
    try:
        recipe = parse_recipe(data)
    except RecipeError as exc:
        assert str(exc)
        return
    assert isinstance(recipe, Recipe)
    recipe_hash(recipe)  # anything that validates must also hash


@FUZZ
@given(data=json_like)
def test_arbitrary_data_is_a_recipe_or_a_recipe_error(data):
    _parses_or_recipe_error(data)


@FUZZ
@given(data=st.dictionaries(st.sampled_from(list(base_recipe())) | st.text(max_size=8), json_like, max_size=8))
def test_arbitrary_data_under_recipe_keys_is_a_recipe_or_a_recipe_error(data):
    _parses_or_recipe_error(data)


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for child in value.values() for leaf in _leaves(child)] + list(value)
    if isinstance(value, list):
        return [leaf for child in value for leaf in _leaves(child)]
    return [value]


# Values that already occur in the recipe make the mutations semantic (a split size moved
# to a pool name, a pool renamed) rather than only type errors.
_near_values = st.sampled_from(sorted(set(map(repr, _leaves(base_recipe()))))).map(eval) | json_like
_near_keys = st.sampled_from(sorted({p[-1] for p in BASE_KEY_PATHS})) | st.text(max_size=8)


@FUZZ
@given(
    mutations=st.lists(
        st.one_of(
            st.tuples(st.just("replace"), st.sampled_from(BASE_PATHS), _near_values),
            st.tuples(st.just("delete"), st.sampled_from(BASE_KEY_PATHS), st.none()),
            st.tuples(st.just("add"), st.sampled_from(BASE_KEY_PATHS), st.tuples(_near_keys, _near_values)),
            st.tuples(st.just("rename"), st.sampled_from(BASE_KEY_PATHS), _near_keys),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_mutated_base_recipe_is_a_recipe_or_a_recipe_error(mutations):
    data = base_recipe()
    for op, path, arg in mutations:
        try:
            parent = _get(data, path[:-1])
            if op == "replace":
                parent[path[-1]] = arg
            elif op == "delete":
                del parent[path[-1]]
            elif op == "add":
                parent[arg[0]] = arg[1]
            else:
                parent[arg] = parent.pop(path[-1])
        except (KeyError, IndexError, TypeError, AttributeError):
            continue  # an earlier mutation removed or retyped this path
    _parses_or_recipe_error(data)


_yaml_alphabet = st.sampled_from(list("abcdeknopsty_019-.:,[]{}#&*!|>'\"? \n\t%@`~") + ["seed", "name", "!!"])


@FUZZ
@given(text=st.text(max_size=200) | st.lists(_yaml_alphabet, max_size=60).map("".join))
def test_arbitrary_text_file_is_a_recipe_or_a_recipe_error(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_recipe(path)
    except RecipeError:
        pass


@FUZZ
@given(data=st.data())
def test_mangled_valid_yaml_is_a_recipe_or_a_recipe_error(tmp_path, data):
    text = yaml.safe_dump(base_recipe(), sort_keys=False)
    at = data.draw(st.integers(0, len(text)))
    cut = data.draw(st.integers(0, 10))
    insert = data.draw(st.text(max_size=10) | _yaml_alphabet)
    path = tmp_path / "fuzz.yaml"
    path.write_text(text[:at] + insert + text[at + cut:], encoding="utf-8", errors="surrogatepass")
    try:
        load_recipe(path)
    except RecipeError:
        pass


# --------------------------------------------------------------------------- known crashes
# Each of these once escaped as a bare Python exception.


def test_huge_integer_in_snr_range_is_a_recipe_error(base):
    base["synth"]["noise"][0]["snr_db_range"] = [0, 10**400]
    with pytest.raises(RecipeError, match=r"synth\.noise\[0\]\.snr_db_range"):
        parse_recipe(base)


def test_integer_too_long_to_print_is_a_recipe_error(base):
    base["splits"]["train"]["samples"] = 10**5000
    with pytest.raises(RecipeError, match=r"splits\.train\.samples"):
        parse_recipe(base)


@pytest.mark.parametrize(
    "text, match",
    [("seed: 2020-13-45\n", "line 1, column 7: '2020-13-45' reads as a YAML date/time"),
     ("seed: !!int abc\n", "not valid YAML"), ("seed: !!float x\n", "not valid YAML")],
    ids=["bad_date", "bad_int", "bad_float"],
)
def test_yaml_constructor_errors_are_recipe_errors(tmp_path, text, match):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError, match=match) as info:
        load_recipe(path)
    assert str(path) in str(info.value)


def test_deeply_nested_yaml_is_a_recipe_error(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("[" * 1000)
    with pytest.raises(RecipeError):
        load_recipe(path)


def test_override_with_an_impossible_date_is_a_recipe_error(recipe_file):
    with pytest.raises(RecipeError, match="--set seed"):
        load_recipe(recipe_file, overrides=["seed=2020-13-45"])


def test_changing_a_guard_keeps_the_recipe_hash_so_finished_shards_stay_valid(base):
    looser = copy.deepcopy(base)
    looser["guards"] = {"max_reuse_factor": 500.0, "min_effective_sources": 3}
    assert recipe_hash(parse_recipe(looser)) == recipe_hash(parse_recipe(base))


def test_an_unhashable_yaml_key_is_a_recipe_error_not_a_crash(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: x\n? [[1], 2]\n: 3\n")
    with pytest.raises(RecipeError):
        load_recipe(path)
