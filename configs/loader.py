"""Strict loading of configs: presets (TOML), files (TOML or JSON) and `key.sub=value` overrides.

Unknown keys and wrong types raise `ValueError` naming the key and what is valid. A resolved config
dumps to JSON (`to_json`) and loads back to an equal object (`from_json`).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from .schema import RunConfig

PRESET_DIR = Path(__file__).parent / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_config(source: str | Path | RunConfig, overrides: typing.Iterable[str] = ()) -> RunConfig:
    """Load a preset by name (see `preset_names()`), a .toml/.json file, or start from a `RunConfig` (a saved
    model's), then apply `key.sub=value` overrides, e.g. `base.train.lr=3e-4` or `base.unet.channel_mults=1,2,4`."""
    data = to_dict(source) if isinstance(source, RunConfig) else _read(source)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} is not of the form key.sub=value (e.g. base.train.lr=3e-4)")
        _set_path(data, key.strip(), value.strip())
    return from_dict(data)


def _read(preset_or_path: str | Path, _seen: tuple = ()) -> dict:
    """Read a preset or file; a top-level `inherit = [...]` list of presets/files is merged in first."""
    data = _read_one(preset_or_path)
    parents = data.pop("inherit", [])
    if isinstance(parents, str):
        parents = [parents]
    merged: dict = {}
    for parent in parents:
        if str(parent) in _seen:
            raise ValueError(f"config {str(preset_or_path)!r} inherits itself through {str(parent)!r}")
        _deep_merge(merged, _read(parent, (*_seen, str(preset_or_path))))
    return _deep_merge(merged, data)


def _deep_merge(into: dict, update: dict) -> dict:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value
    return into


def _read_one(preset_or_path: str | Path) -> dict:
    path = Path(preset_or_path)
    if not path.suffix and not path.exists():
        path = PRESET_DIR / f"{preset_or_path}.toml"
        if not path.is_file():
            raise ValueError(f"unknown preset {str(preset_or_path)!r}{_suggest(str(preset_or_path), preset_names())};"
                             f" presets: {', '.join(preset_names())}, or give a .toml/.json path")
    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} does not exist (give a preset name or a .toml/.json path)")
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"config file {str(path)!r} cannot be parsed: {e}") from None


def _set_path(data: dict, key: str, raw: str) -> None:
    """Store the raw override string at `key`; `from_dict` parses it with the field's type."""
    node, cls = data, RunConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            where = ".".join(parts[:i]) or "the top level"
            raise ValueError(f"unknown config key {key!r}: {part!r} is not a field of {where}"
                             f"{_suggest(part, fields)}; valid: {', '.join(fields)}")
        hint = _hints(cls)[part]
        if i == len(parts) - 1:
            if _is_union(hint) and raw.lower() in ("none", "null"):
                node[part] = None
                return
            if _dataclass_of(hint) is not None:
                raise ValueError(f"config key {key!r} is a section; set one of its fields, e.g. {key}.<field>=...")
            node[part] = _RawOverride(raw)
            return
        cls = _dataclass_of(hint)
        if cls is None:
            raise ValueError(f"config key {key!r}: {'.'.join(parts[: i + 1])} is a value, not a section")
        if node.get(part, {}) is None:
            node[part] = {}
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"config key {key!r}: {'.'.join(parts[: i + 1])} is not a table in the config")


class _RawOverride(str):
    """A command-line value, parsed against the field type (so `3` can become 3.0 or '3')."""


def from_dict(data: dict) -> RunConfig:
    return _build(RunConfig, data, "")


def to_dict(config: Any) -> dict:
    return json.loads(to_json(config))


def to_json(config: Any) -> str:
    return json.dumps(dataclasses.asdict(config), indent=2, sort_keys=False)


def from_json(text: str) -> RunConfig:
    return from_dict(json.loads(text))


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _dataclass_of(hint) -> type | None:
    """The dataclass in `hint` (also through `X | None`), else None."""
    if dataclasses.is_dataclass(hint):
        return hint
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if _is_union(hint) and len(args) == 1 and dataclasses.is_dataclass(args[0]):
        return args[0]
    return None


def _is_union(hint) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _build(cls, data: Any, prefix: str):
    if not isinstance(data, dict):
        raise ValueError(f"config key {prefix.rstrip('.') or 'top level'!r} must be a table, got {data!r}")
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise ValueError(f"unknown config key {prefix + key!r}{_suggest(key, fields)}; "
                             f"valid keys of {prefix.rstrip('.') or 'the top level'}: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, hint in _hints(cls).items():
        if name in data:
            kwargs[name] = _coerce(hint, data[name], prefix + name)
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise ValueError(f"{prefix.rstrip('.')}: {e}" if prefix else str(e)) from None


def _coerce(hint, value, key: str):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if _is_union(hint):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, key)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".")
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"config key {key!r} is {value!r}{_suggest(str(value), args)}; "
                             f"valid choices: {', '.join(map(str, args))}")
        return value
    if origin is tuple:
        items = _split_list(value) if isinstance(value, _RawOverride) else value
        if not isinstance(items, (list, tuple)):
            raise ValueError(f"config key {key!r} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            types_ = [args[0]] * len(items)
        else:
            if len(items) != len(args):
                raise ValueError(f"config key {key!r} needs {len(args)} values, got {len(items)}")
            types_ = list(args)
        return tuple(_coerce(t, v, key) for t, v in zip(types_, items, strict=True))
    return _coerce_scalar(hint, value, key)


def _split_list(raw: str) -> list:
    body = raw.strip().strip("[]()")
    return [_RawOverride(v.strip()) for v in body.split(",") if v.strip()] if body else []


def _coerce_scalar(hint, value, key: str):
    raw = isinstance(value, _RawOverride)
    try:
        if hint is bool:
            if raw and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
                return value.lower() in ("true", "1", "yes", "on")
            if isinstance(value, bool):
                return value
        elif hint is int:
            if raw:
                return int(value)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif hint is float:
            if raw:
                return float(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        elif hint is str:
            if isinstance(value, str):
                return str(value)
        else:
            raise AssertionError(f"unsupported config type {hint} at {key}")
    except ValueError:
        pass
    raise ValueError(f"config key {key!r} must be of type {hint.__name__}, got {value!r}")


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
