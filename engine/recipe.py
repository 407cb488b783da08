"""Recipes: the YAML file that says what to synthesize, validated before any work.

A recipe names source pools, splits and one synthesizer. Every model forbids unknown
keys, and every error names the field path, the bad value and the fix, e.g.::

    synth.noise[0].snr_db_range: expected [low, high] with low <= high, got [20, 5]

Example::

    recipe = load_recipe("recipes/demo_in_car.yaml", overrides=["splits.train.samples=200"])
    print(recipe.name, recipe_hash(recipe))
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, create_model, field_validator, model_validator

from .config import (  # noqa: F401  (re-exported: the recipe's models, importable from here)
    NAME_PATTERN,
    NOISE_COLOURS,
    POOL_CLASSES,
    POOL_FIELDS_HASHED_WHEN_SET,
    POOL_KINDS,
    SPLIT_PATTERN,
    AudioPool,
    Guards,
    ImagePool,
    NoiseGeneratorPool,
    Output,
    Pool,
    PoolGuards,
    RirGeneratorPool,
    Split,
    StrictModel,
    SynthConfig,
    show,
)
from .errors import RecipeError
from .storage import path_kind
from .synth import registry

# --------------------------------------------------------------------------- recipe


class Recipe(StrictModel):
    """A validated recipe. Its ``synth`` is the configuration model that the registered
    synthesizer of ``synth.type`` declares: :func:`parse_recipe` validates against
    :func:`recipe_model`, a subclass whose ``synth`` is the union of every registered one."""

    name: str = Field(pattern=NAME_PATTERN)
    seed: int = Field(ge=0, lt=2**63)
    output: Output = Output()
    pools: dict[str, Pool] = Field(min_length=1)
    splits: dict[str, Split] = Field(min_length=1)
    synth: SynthConfig
    guards: Guards = Guards()
    on_bad_input: Literal["skip", "fail"] = "skip"

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @field_validator("seed", mode="before")
    @classmethod
    def _no_bool_seed(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError(f"expected a non-negative integer, got {v!r} (YAML reads yes/no/on/off as booleans)")
        return v

    @model_validator(mode="after")
    def _shard_count(self) -> "Recipe":
        per = self.output.samples_per_shard
        n = sum(-(-s.samples // per) for s in self.splits.values())
        if n > 1_000_000:
            raise ValueError(
                f"the splits need {n} shards of {per} samples; raise output.samples_per_shard "
                "(at most 1,000,000 shards)"
            )
        return self

    @field_validator("pools")
    @classmethod
    def _pool_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"pool name {name!r} must match {NAME_PATTERN}")
        return v

    @field_validator("splits")
    @classmethod
    def _split_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            if not re.match(SPLIT_PATTERN, name):
                raise ValueError(
                    f"split name {name!r} must be lower-case letters, digits and '_' "
                    "(it becomes a folder and file name)"
                )
        return v

    @property
    def base_dir(self) -> Path:
        """Folder that relative pool paths are resolved against (the recipe's folder)."""
        return self._base_dir

    def with_base_dir(self, base_dir: str | Path) -> "Recipe":
        self._base_dir = Path(base_dir).resolve()
        return self


_MODELS: dict[tuple[type[SynthConfig], ...], type[Recipe]] = {}


def recipe_model() -> type[Recipe]:
    """The Recipe model whose ``synth`` is a union of every registered synthesizer's
    config, told apart by ``type`` (built once per set of registered synthesizers)."""
    configs = tuple(reg.config for reg in registry.registrations().values())
    model = _MODELS.get(configs)
    if model is None:
        if not configs:
            raise RecipeError(
                "no synthesizer is registered: shardsmith's own are found through its package "
                f"metadata (entry-point group {registry.ENTRY_POINT_GROUP}); reinstall it with "
                "`pip install -e .` (or run scripts/test.sh)"
            )
        synth = Annotated[Union[configs], Field(discriminator="type")] if len(configs) > 1 else configs[0]
        model = create_model("Recipe", __base__=Recipe, __module__=__name__, synth=(synth, ...))
        _MODELS[configs] = model
    return model


def synth_config_models() -> dict[str, type[SynthConfig]]:
    """``synth.type`` -> its config model, for every registered synthesizer."""
    return {name: reg.config for name, reg in registry.registrations().items()}


def _check_references(recipe: Recipe, source: str) -> None:
    """Cross-field checks that pydantic cannot see one model at a time."""
    synth = recipe.synth
    known = sorted(recipe.pools)
    for field, name, kinds in synth.pool_refs():
        if name not in recipe.pools:
            hint = difflib.get_close_matches(name, known, n=1)
            did = f" Did you mean {hint[0]!r}?" if hint else ""
            raise RecipeError(
                f"{source}: {field}: no pool named {name!r}; the recipe defines pools {known}.{did}"
            )
        kind = recipe.pools[name].kind
        if kind not in kinds:
            raise RecipeError(
                f"{source}: {field}: pool {name!r} is of kind {kind!r}; this field needs a pool of "
                f"kind {' or '.join(repr(k) for k in kinds)}"
            )
    # A synth may check how its fields fit the pools and output (e.g. alpha vs JPEG).
    check_recipe = getattr(synth, "check_recipe", None)
    problems = check_recipe(recipe) if check_recipe is not None else []
    if problems:
        raise RecipeError(f"{source}: " + f"\n  {source}: ".join(problems))
    for name in recipe.guards.pools:
        if name not in recipe.pools:
            raise RecipeError(
                f"{source}: guards.pools.{name}: no pool named {name!r}; the recipe defines pools {known}"
            )
    holdout_splits = [s for s, cfg in recipe.splits.items() if cfg.holdout]
    if holdout_splits:
        candidates = synth.holdout_pools()
        if not any(getattr(recipe.pools[p], "holdout", 0) > 0 for p in candidates):
            raise RecipeError(
                f"{source}: splits.{holdout_splits[0]}.holdout: true, but none of the pools "
                f"{candidates} sets a holdout fraction; set e.g. pools.{candidates[0]}.holdout: 0.1 "
                "so that some items are kept out of the other splits"
            )


# --------------------------------------------------------------------------- errors


def _loc_to_path(loc: tuple[Any, ...]) -> str:
    """('synth', 'speech_noise_mix', 'noise', 0, 'p') -> 'synth.noise[0].p'.

    Discriminated unions put the tag into the location; a user never wrote it, so drop it.
    """
    parts: list[str] = []
    skip_next_tag = None
    for i, item in enumerate(loc):
        if skip_next_tag is not None:
            tags = skip_next_tag
            skip_next_tag = None
            if item in tags:
                continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
        if loc[:1] == ("synth",) and i == 0:
            skip_next_tag = tuple(synth_config_models())
        elif loc[:1] == ("pools",) and i == 1:
            skip_next_tag = POOL_KINDS
    return "".join(parts)


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``list[NoiseLayer]`` or ``X | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _model_for_path(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Which model the last element of a location belongs to (to list its valid fields)."""
    parts = list(loc[:-1])
    model: type[BaseModel] | None = Recipe
    i = 0
    while i < len(parts) and model is not None:
        item = parts[i]
        if model is Recipe and item in ("pools", "splits"):
            i += 2  # skip the user's pool / split name
            if item == "splits":
                model = Split
                continue
            tag = parts[i] if i < len(parts) else "audio"
            model = POOL_CLASSES.get(tag, AudioPool)
            i += 1 if tag in POOL_CLASSES else 0
            continue
        if model is Recipe and item == "synth":
            i += 1
            tag = parts[i] if i < len(parts) else None
            configs = synth_config_models()
            model = configs.get(tag) or (next(iter(configs.values())) if len(configs) == 1 else None)
            i += 1 if tag in configs else 0
            continue
        if model is Guards and item == "pools":
            i += 2  # skip the user's pool name
            model = PoolGuards
            continue
        if not isinstance(item, int):
            field = model.model_fields.get(item)
            model = _submodel(field.annotation) if field else None
        i += 1
    return model


def _format_error(err: dict[str, Any]) -> str:
    loc = tuple(err.get("loc", ()))
    if len(loc) >= 2 and loc[-1] == "[key]":  # a top-level key named "[key]" is just a key
        return f"{_loc_to_path(loc[:-2]) or '(recipe)'}: names must be strings, got {show(loc[-2])}"
    path = _loc_to_path(loc) or "(recipe)"
    kind = err.get("type", "")
    value = err.get("input")
    if kind == "extra_forbidden":
        field = str(loc[-1])
        model = _model_for_path(loc)
        valid = sorted(model.model_fields) if model else []
        hint = difflib.get_close_matches(field, valid, n=1)
        did = f"did you mean {hint[0]!r}? " if hint else ""
        return f"{path}: unknown field; {did}valid fields here: {', '.join(valid)}"
    if kind == "missing":
        return f"{path}: required field is missing"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        disc = "kind" if loc[:1] == ("pools",) else "type"
        return (
            f"{path}.{disc}: unknown value {ctx.get('tag')!r}; "
            f"expected one of {ctx.get('expected_tags')}"
        )
    if kind == "union_tag_not_found":
        ctx = err.get("ctx", {})
        disc = "kind" if loc[:1] == ("pools",) else str(ctx.get("discriminator", "type")).strip("'")
        known = tuple(synth_config_models()) if loc[:1] == ("synth",) else POOL_KINDS
        return f"{path}.{disc}: required field is missing; expected one of {', '.join(known)}"
    if kind == "too_short" and loc in (("splits",), ("pools",)):
        example = "train: {samples: 1000}" if loc == ("splits",) else "speech: {paths: ['clean/*.flac']}"
        return f"{path}: define at least one, e.g. {example}"
    if kind == "literal_error":
        return f"{path}: {err['msg'].lower()}, got {show(value)}"
    msg = err.get("msg", "invalid")
    msg = re.sub(r"^Value error, ", "", msg)
    msg = re.sub(r" or (instance of \w+|object to extract fields from)", "", msg)
    if kind.startswith(("greater", "less", "int_", "float_", "string_", "too_short", "too_long", "bool",
                        "dict_", "list_", "model_", "finite_", "tuple_")):
        return f"{path}: {msg[0].lower() + msg[1:]}, got {show(value)}"
    return f"{path}: {msg}"


def _validation_to_recipe_error(exc: ValidationError, source: str) -> RecipeError:
    lines = [_format_error(e) for e in exc.errors(include_url=False)]
    head = f"{source}: the recipe is not valid ({len(lines)} problem{'s' if len(lines) > 1 else ''}):"
    return RecipeError("\n  ".join([head, *lines]))


# --------------------------------------------------------------------------- overrides


_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _parse_override_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in path.split("."):
        if not piece:
            raise RecipeError(f"--set {path}: empty path segment; write e.g. splits.train.samples=200")
        pos = 0
        for m in _SEGMENT.finditer(piece):
            if m.start() != pos:
                break
            pos = m.end()
            if m.group(1) is not None:
                parts.append(int(m.group(1)) if m.group(1).isdigit() else m.group(1))
            else:
                parts.append(int(m.group(2)))
        if pos != len(piece):
            raise RecipeError(f"--set {path}: cannot parse {piece!r}; write e.g. synth.noise[0].p=0.5")
    return parts


def _override_prefix(parts: list[str | int]) -> str:
    """``["synth", "noise", 0]`` as ``synth.noise[0]``."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set key.path=value`` overrides (values parsed as YAML) to recipe data.

    Example: ``apply_overrides(d, ["splits.train.samples=200", "synth.noise[0].p=0.5"])``
    """
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"--set {item}: expected key.path=value, e.g. splits.train.samples=200")
        path, raw = item.split("=", 1)
        parts = _parse_override_path(path.strip())
        try:
            value = _plain_yaml(raw) if raw.strip() else ""
        except _NotPlainData as exc:
            raise RecipeError(f"--set {path}: value {raw!r}: {exc.problem}") from None
        except _AliasBomb as exc:
            raise RecipeError(f"--set {path}: value {show(raw, 80)}: {exc}") from None
        except (yaml.YAMLError, ValueError, RecursionError) as exc:
            raise RecipeError(f"--set {path}: value {raw!r} is not valid YAML ({exc})") from None
        node: Any = data
        for i, key in enumerate(parts):
            last = i == len(parts) - 1
            where = path.split("=")[0]
            if isinstance(node, dict):
                if isinstance(key, int):
                    key = str(key)
                if last:
                    node[key] = value
                else:
                    if (key not in node or node[key] is None) and isinstance(parts[i + 1], int):
                        # nothing to index: a list can only be set item by item where it exists
                        at = _override_prefix(parts[:i])
                        known = sorted(str(k) for k in node)
                        hint = difflib.get_close_matches(str(key), known, n=1)
                        under = f" under {at}" if at else ""
                        if hint:
                            raise RecipeError(f"--set {where}: unknown field {key!r}{under}; "
                                              f"did you mean {hint[0]!r}?")
                        whole = f"{at}.{key}" if at else str(key)
                        raise RecipeError(f"--set {where}: no field {key!r}{under} to index"
                                          + (f" (there: {', '.join(known)})" if known else "")
                                          + f"; to add a list, set it whole, e.g. --set '{whole}=[...]'")
                    if key not in node or node[key] is None:
                        node[key] = {}
                    node = node[key]
            elif isinstance(node, list):
                if not isinstance(key, int):
                    raise RecipeError(f"--set {where}: {key!r} indexes a list; use a number, e.g. [0]")
                if key >= len(node):
                    raise RecipeError(
                        f"--set {where}: index {key} is out of range (the list has {len(node)} item{'s' if len(node) != 1 else ''})"
                    )
                if last:
                    node[key] = value
                else:
                    node = node[key]
            else:
                raise RecipeError(f"--set {where}: cannot descend into {node!r} (not a mapping)")
    return data


# --------------------------------------------------------------------------- loading


_YAML = "tag:yaml.org,2002:"
# Recipes are plain data: strings, numbers, booleans, null, lists and mappings (and YAML's
# `<<` merge key). Any other tag would make a value JSON has no word for (a set, bytes, a
# date, pairs) or, in an unsafe loader, an object; the recipe hash could not be a function
# of the text (a set's order changes with PYTHONHASHSEED), so such a tag is a recipe error.
_PLAIN_TAGS = frozenset(_YAML + t for t in ("str", "int", "float", "bool", "null", "seq", "map", "merge"))

# A recipe is a short text: the pools list files by glob, folder or manifest, not one by one.
MAX_RECIPE_BYTES = 1 << 20


def _tag_fix(tag: str, node: yaml.Node) -> str:
    """What a tag makes and how to write the same thing as plain data."""
    shown = "!!" + tag[len(_YAML):] if tag.startswith(_YAML) else tag
    kind = tag[len(_YAML):] if tag.startswith(_YAML) else ""
    if kind == "timestamp":
        value = str(node.value)
        return (f"{value!r} reads as a YAML date/time, which is not plain data; "
                f"quote it to keep it as text: '{value}'")
    if kind == "set":
        what, fix = "a set (its order changes from one process to the next)", \
            "write a list instead, e.g. [a, b]"
    elif kind == "binary":
        what, fix = "bytes", "give a path to a file instead, or the text itself"
    elif kind in ("omap", "pairs"):
        what, fix = "a list of pairs", "write a plain mapping instead, e.g. {a: 1, b: 2}"
    elif kind.startswith("python/"):
        what, fix = "a Python object", "remove the tag and write the value itself"
    else:
        what, fix = "a value that is not plain data", "remove the tag (or quote the value to keep it as text)"
    return (f"the YAML tag {shown} makes {what}; a recipe holds only strings, numbers, booleans, "
            f"null, lists and mappings: {fix}")


class _NotPlainData(yaml.constructor.ConstructorError):
    """A YAML tag that makes something other than plain (JSON-like) data."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a repeated key (otherwise the last one silently wins) and any
    tag that is not plain data (``!!set``, ``!!binary``, ``!!omap``, dates, ``!custom``)."""

    def construct_object(self, node, deep=False):
        if node.tag not in _PLAIN_TAGS:
            raise _NotPlainData(None, None, _tag_fix(node.tag, node), node.start_mark)
        return super().construct_object(node, deep=deep)

    def construct_yaml_int(self, node):
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            # Python refuses to read a decimal of more than 4,300 digits at once; read in
            # pieces, so the field's own range check names the field and its range.
            text = str(node.value).replace("_", "")
            sign, digits = (-1, text[1:]) if text.startswith("-") else (1, text.lstrip("+"))
            if not digits.isdigit():
                raise
            value = 0
            for i in range(0, len(digits), 4000):
                piece = digits[i:i + 4000]
                value = value * 10 ** len(piece) + int(piece)
            return sign * value

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == _YAML + "merge":  # `<<: *anchor`; its keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key; the recipe validator reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {show(key)}", key_node.start_mark
                )
        return super().construct_mapping(node, deep)


# YAML aliases repeat a node without repeating its text: ten levels of ten aliases each
# ("billion laughs") make 10**10 values from a few hundred bytes, which no loader, check
# or validator can walk. A recipe is far smaller than this once expanded.
MAX_RECIPE_VALUES = 100_000


class _AliasBomb(yaml.YAMLError):
    """YAML whose aliases expand to more values than :data:`MAX_RECIPE_VALUES`."""

    def __init__(self, count: int):
        super().__init__(
            f"its YAML aliases (*name) expand too far: more than {MAX_RECIPE_VALUES:,} values "
            f"(at least {count:,}); a recipe repeats a block with an alias a few times, not "
            "aliases of aliases: write the values out or use fewer levels of aliases"
        )


def _expanded_size(root: yaml.Node) -> int:
    """How many values the composed ``root`` makes once its aliases are expanded, counted
    once per node (an alias is the same node object as its anchor), so the count is cheap
    however far it expands; stops early past :data:`MAX_RECIPE_VALUES`."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        sizes[key] = 1  # a node that contains itself (`&a [*a]`) counts once here
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k) + size(v)
        if total > MAX_RECIPE_VALUES:
            raise _AliasBomb(total)
        sizes[key] = total
        return total

    return size(root)


_UniqueKeyLoader.add_constructor(_YAML + "int", _UniqueKeyLoader.construct_yaml_int)


def _plain_yaml(text: str) -> Any:
    """``text`` parsed as YAML into plain data (see :class:`_UniqueKeyLoader`); refused
    (:class:`_AliasBomb`) when its aliases expand past :data:`MAX_RECIPE_VALUES` values."""
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _not_plain(data: Any, where: str = "") -> str | None:
    """The field path of the first value in ``data`` that is not plain data, with its type."""
    if isinstance(data, dict):
        for k, v in data.items():
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                return f"{where or '(recipe)'}: key {show(k)} is a {type(k).__name__}"
            found = _not_plain(v, f"{where}.{k}" if where else str(k))
            if found:
                return found
        return None
    if isinstance(data, (list, tuple)):
        for i, v in enumerate(data):
            found = _not_plain(v, f"{where}[{i}]")
            if found:
                return found
        return None
    if data is None or isinstance(data, (str, int, float, bool)):
        return None
    return f"{where or '(recipe)'}: {show(data)} is a {type(data).__name__}"


def parse_recipe(data: Any, *, source: str = "recipe", base_dir: str | Path | None = None) -> Recipe:
    """Validate recipe data (already parsed YAML) into a :class:`Recipe`.

    Example: ``parse_recipe({"name": "x", "seed": 1, ...}, base_dir=".")``
    """
    if not isinstance(data, dict):
        raise RecipeError(
            f"{source}: a recipe must be a YAML mapping with keys name, seed, pools, splits, synth; "
            f"got {type(data).__name__}"
        )
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise RecipeError(f"{source}: top-level keys must be strings, got {bad_keys[0]!r}")
    try:
        odd = _not_plain(data)
    except RecursionError:
        odd = None  # very deep nesting: the validator reports it
    if odd:
        raise RecipeError(
            f"{source}: {odd}; a recipe holds only strings, numbers, booleans, null, lists and "
            "mappings (a set's order, for one, differs between processes): use a list"
        )
    try:
        recipe = recipe_model().model_validate(data)
    except ValidationError as exc:
        raise _validation_to_recipe_error(exc, source) from None
    except (TypeError, ValueError, RecursionError, OverflowError) as exc:  # exotic input
        raise RecipeError(f"{source}: the recipe is not valid: {exc}") from None
    _check_references(recipe, source)
    recipe.with_base_dir(base_dir if base_dir is not None else Path.cwd())
    return recipe


def _read_recipe_text(p: Path) -> str:
    """The text of the recipe file ``p``: a regular file of at most :data:`MAX_RECIPE_BYTES`.

    A FIFO, a device (``/dev/zero``), a folder or a huge file is refused at once, before a
    byte is read (opened non-blocking, so a FIFO with no writer cannot hang the command).
    """
    fix = "give the path of a recipe YAML file, e.g. recipes/demo_in_car.yaml"
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise RecipeError(f"{p}: recipe file not found") from None
    except IsADirectoryError:
        raise RecipeError(f"{p}: is a folder, not a recipe file; {fix}") from None
    except OSError as exc:
        raise RecipeError(f"{p}: cannot read recipe ({exc.strerror or exc})") from None
    st = os.fstat(fd)
    kind = path_kind(st.st_mode)
    if kind != "a regular file":
        os.close(fd)
        if kind == "a folder":
            raise RecipeError(f"{p}: is a folder, not a recipe file; {fix}")
        raise RecipeError(f"{p}: is {kind}, not a regular file; {fix}")
    with os.fdopen(fd, "rb") as f:
        def too_big(size: str) -> RecipeError:
            return RecipeError(
                f"{p}: is {size} bytes, larger than a recipe can be (at most {MAX_RECIPE_BYTES:,} "
                "bytes: pools name their files by glob, folder or manifest, not one by one); "
                "check that this is the recipe file"
            )

        if st.st_size > MAX_RECIPE_BYTES:
            raise too_big(f"{st.st_size:,}")
        try:
            raw = f.read(MAX_RECIPE_BYTES + 1)
        except OSError as exc:
            raise RecipeError(f"{p}: cannot read recipe ({exc.strerror or exc})") from None
    if len(raw) > MAX_RECIPE_BYTES:  # it grew after the check
        raise too_big(f"over {MAX_RECIPE_BYTES:,}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RecipeError(f"{p}: recipe is not UTF-8 text") from None


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe file; relative paths resolve against its folder.

    Example: ``load_recipe("recipes/demo_in_car.yaml", ["seed=7"])``
    """
    p = Path(path)
    text = _read_recipe_text(p)
    try:
        data = _plain_yaml(text)
    except _NotPlainData as exc:
        mark = exc.problem_mark
        raise RecipeError(f"{p}: line {mark.line + 1}, column {mark.column + 1}: {exc.problem}") from None
    except _AliasBomb as exc:
        raise RecipeError(f"{p}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"{p}: not valid YAML{where}: {problem}") from None
    except (ValueError, RecursionError) as exc:  # bad dates, !!int abc, very deep nesting
        raise RecipeError(f"{p}: not valid YAML: {show(str(exc), 200)}") from None
    if data is None:
        raise RecipeError(f"{p}: the recipe file is empty")
    if overrides:
        if not isinstance(data, dict):
            raise RecipeError(f"{p}: a recipe must be a YAML mapping")
        data = apply_overrides(data, overrides)
    return parse_recipe(data, source=str(p), base_dir=p.resolve().parent)


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The normalized recipe (defaults filled in) as plain JSON-able data."""
    return recipe.model_dump(mode="json")


# Fields that decide whether a run may go ahead, not what it writes: changing them must
# not invalidate finished shards.
UNHASHED_FIELDS = ("guards",)


def recipe_hash(recipe: Recipe) -> str:
    """Stable sha256 over the normalized recipe: same content, same hash, any key order.

    Everything that shapes the output bytes is hashed; ``guards`` is not (raising a limit
    does not rewrite finished shards).

    Example: ``recipe_hash(load_recipe("r.yaml"))[:12]``
    """
    data = {k: v for k, v in recipe_to_dict(recipe).items() if k not in UNHASHED_FIELDS}
    for pool in data["pools"].values():
        for key, default in POOL_FIELDS_HASHED_WHEN_SET.items():
            if key in pool and pool[key] == default:
                del pool[key]
        if "min_duration_s" in pool and pool["min_duration_s"] is None:
            # Unset was 0.0 before role minimums existed: an unchanged recipe keeps its hash
            # (which files a minimum leaves out is the pool index's to guard, as for globs).
            pool["min_duration_s"] = 0.0
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
