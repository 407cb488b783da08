"""Which synthesizers exist: a registry by the recipe's ``synth.type``.

A synthesizer is a package that, when imported, calls :func:`register` with its type
name, its configuration model (a :class:`~engine.config.SynthConfig`) and its
:class:`~engine.synth.base.Synthesizer` class (or ``"module:Class"``, imported only when
a run needs it, so that reading a recipe does not load every synthesizer's media
libraries). Packages are found through the entry-point group ``shardsmith.synthesizers``
(the built-ins declare theirs in shardsmith's own ``pyproject.toml``); a recipe names
only a registered ``type``, never an import path.

Example (a plugin's ``pyproject.toml`` and package)::

    [project.entry-points."shardsmith.synthesizers"]
    tone_mix = "tone_mix"

    # tone_mix/__init__.py
    from engine.synth import register
    from .config import ToneMix
    register("tone_mix", ToneMix, "tone_mix.synth:ToneMixSynth")
"""

from __future__ import annotations

import importlib
import re
import typing
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from ..config import SynthConfig
from ..errors import RecipeError
from .base import Synthesizer

if TYPE_CHECKING:
    from ..pools import PoolIndex
    from ..recipe import Recipe

ENTRY_POINT_GROUP = "shardsmith.synthesizers"
TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


@dataclass
class Registration:
    """One registered synthesizer: its type name, config model and class (or where it is)."""

    type: str
    config: type[SynthConfig]
    synthesizer: str | type[Synthesizer]
    origin: str = ""  # the entry point or module that registered it, for messages


_REGISTRY: dict[str, Registration] = {}
_LOADED = False


def _config_type(config: type[SynthConfig]) -> str | None:
    """The single value of the config model's ``type: Literal[...]`` field, if it has one."""
    field = config.model_fields.get("type")
    args = typing.get_args(field.annotation) if field is not None else ()
    if field is None or typing.get_origin(field.annotation) is not typing.Literal or len(args) != 1:
        return None
    return args[0]


def register(name: str, config: type[SynthConfig], synthesizer: str | type[Synthesizer]) -> Registration:
    """Register a synthesizer as ``synth.type: name`` (called by its package when imported).

    Example: ``register("tone_mix", ToneMix, "tone_mix.synth:ToneMixSynth")``
    """
    if not isinstance(name, str) or not re.match(TYPE_PATTERN, name):
        raise RecipeError(f"synthesizer type {name!r}: must match {TYPE_PATTERN} (it is what recipes name)")
    if not (isinstance(config, type) and issubclass(config, SynthConfig)):
        raise RecipeError(f"synthesizer {name!r}: its config must be a subclass of engine.config.SynthConfig")
    declared = _config_type(config)
    if declared != name:
        raise RecipeError(
            f"synthesizer {name!r}: {config.__name__} must declare `type: Literal[{name!r}]` "
            f"(it declares {declared!r})"
        )
    if isinstance(synthesizer, str) and ":" not in synthesizer:
        raise RecipeError(f"synthesizer {name!r}: give its class as 'module:Class', got {synthesizer!r}")
    old = _REGISTRY.get(name)
    if old is not None and (old.config is not config or old.synthesizer != synthesizer):
        raise RecipeError(
            f"synthesizer type {name!r} is registered twice ({old.origin or old.config.__module__} and "
            f"{config.__module__}); rename one of them"
        )
    reg = Registration(name, config, synthesizer, origin=config.__module__)
    _REGISTRY[name] = reg
    return reg


def load_plugins() -> None:
    """Import every package of the entry-point group once (each registers itself)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in _REGISTRY:
            continue
        try:
            ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not hide the others
            _LOADED = False
            raise RecipeError(
                f"synthesizer {ep.name!r}: its package {ep.value!r} (entry point group {ENTRY_POINT_GROUP}) "
                f"failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        if ep.name not in _REGISTRY:
            raise RecipeError(
                f"synthesizer {ep.name!r}: importing {ep.value!r} registered no synthesizer of that type; "
                f"its package must call engine.synth.register({ep.name!r}, ...)"
            )
        _REGISTRY[ep.name].origin = f"entry point {ep.name} = {ep.value}"


def registrations() -> dict[str, Registration]:
    """Every registered synthesizer by type, in name order."""
    load_plugins()
    return dict(sorted(_REGISTRY.items()))


def registration(name: str) -> Registration:
    regs = registrations()
    reg = regs.get(name)
    if reg is None:
        raise RecipeError(f"synth.type: unknown synthesizer {name!r}; known: {sorted(regs)}")
    return reg


def synthesizer_class(name: str) -> type[Synthesizer]:
    """The :class:`Synthesizer` subclass registered for ``type`` (imported on first use).

    Example: ``synthesizer_class("speech_noise_mix").media_column == "audio"``
    """
    reg = registration(name)
    cls = reg.synthesizer
    if isinstance(cls, str):
        module, _, attr = cls.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise RecipeError(f"synthesizer {name!r}: cannot load {reg.synthesizer!r}: {exc}") from exc
        reg.synthesizer = cls
    if not (isinstance(cls, type) and issubclass(cls, Synthesizer)):
        raise RecipeError(f"synthesizer {name!r}: {cls!r} is not a subclass of engine.synth.Synthesizer")
    if getattr(cls, "type", None) != name:
        raise RecipeError(f"synthesizer {name!r}: {cls.__name__}.type must be {name!r}")
    return cls


def build_synthesizer(recipe: "Recipe", index: "PoolIndex") -> Synthesizer:
    """The registered synthesizer for ``recipe.synth.type``, built over indexed pools.

    Example: ``build_synthesizer(recipe, index_pools(recipe))``
    """
    return synthesizer_class(recipe.synth.type)(recipe, index)
