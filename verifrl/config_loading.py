"""Recipe YAML + CLI overrides -> a validated :class:`verifrl.config.Config`.

``load_config("recipes/tiny-arith.yaml", ["trainer.lr=3e-5", "rollout.group_size=8"])``. Values
are coerced to the dataclass field types; unknown keys and wrong types raise
:class:`~verifrl.config.ConfigError` with a one-line message naming the key (with a "did you
mean" for a near miss), then :func:`verifrl.config_validation.validate` checks the values.

Numbers: YAML 1.1 (PyYAML) reads ``3e-5`` as a string; recipes are read with YAML 1.2's number
syntax instead, so an unquoted ``3e-5`` is a float while a quoted ``"1e3"`` stays a string. A CLI
override whose field is a string keeps the text as typed (``data.path=1e3`` is the path "1e3").
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from verifrl.config import Config, ConfigError
from verifrl.config_validation import validate


class _RecipeLoader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads YAML 1.2 exponent floats without a dot (``3e-5``)."""


_RecipeLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_RecipeLoader)  # noqa: S506 - a SafeLoader subclass


@dataclass(frozen=True)
class _Override:
    """A CLI override's value: the text as typed and its YAML reading; the field's type picks one."""

    text: str
    parsed: Any


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _wants_text(tp: Any) -> bool:
    return tp is str or (typing.get_origin(tp) in (typing.Union, types.UnionType) and str in typing.get_args(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    if isinstance(value, _Override):
        # a string field keeps what was typed when YAML read it as something else (1e3, 5, a: b)
        keep_text = _wants_text(tp) and value.parsed is not None and not isinstance(value.parsed, str)
        value = value.text.strip() if keep_text else value.parsed
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            # YAML 1.1 reads on/off/yes/no as booleans, so `wandb=off` arrives as False
            hint = " (YAML read a bare on/off/yes/no as a boolean)" if isinstance(value, bool) else ""
            raise ConfigError(f"{key}: must be one of {', '.join(map(repr, args))}, got {value!r}{hint}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return _build(tp, value, key)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported config type {tp!r}")


def _build(cls: type, values: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in hints:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {prefix + '.' if prefix else ''}{close[0]}?)" if close else ""
            raise ConfigError(f"unknown config key {full!r}{hint}")
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def _split_override(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has no key")
    return key, raw


def _read_value(raw: str) -> Any:
    try:
        return _read_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw


def parse_override(text: str) -> tuple[str, Any]:
    """``"trainer.lr=3e-5"`` -> ("trainer.lr", 3e-05); the value is read as YAML (1.2 numbers)."""
    key, raw = _split_override(text)
    return key, _read_value(raw)


def load_config(recipe: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Recipe YAML (optional) + dotted overrides -> validated :class:`Config`."""
    tree: dict = {}
    if recipe is not None:
        path = Path(recipe)
        if not path.is_file():
            raise ConfigError(f"recipe file not found: {path}")
        try:
            loaded = _read_yaml(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: invalid YAML: {str(err).splitlines()[0]}")
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a recipe must be a mapping of sections")
        tree = loaded or {}
    for text in overrides or []:
        key, raw = _split_override(text)
        _set_dotted(tree, key, _Override(raw, _read_value(raw)))
    config = _build(Config, tree)
    validate(config)
    return config
