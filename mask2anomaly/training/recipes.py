"""Published training recipes: YAML files shipped in ``mask2anomaly/recipes``, read into a
:class:`RunConfig` with strict validation and ``a.b=c`` overrides."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mask2anomaly.config_utils import from_dict
from mask2anomaly.errors import UserError
from mask2anomaly.training.config import RunConfig


def recipe_names() -> list[str]:
    """Names of the shipped recipes."""
    folder = resources.files("mask2anomaly") / "recipes"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read(source: str) -> tuple[dict[str, Any], str]:
    path = Path(source)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UserError(f"{path}: recipe file not found")
        text, where = path.read_text(), str(path)
    else:
        entry = resources.files("mask2anomaly") / "recipes" / f"{source}.yaml"
        if not entry.is_file():
            raise UserError(f"unknown recipe {source!r}; shipped recipes: {', '.join(recipe_names())}")
        text, where = entry.read_text(), f"recipe {source}"
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{where}: invalid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping at the top level")
    return data, where


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise UserError(f"override {dotted}: {key} is not a section")
    node[keys[-1]] = value


def load_recipe(source: str, overrides: list[str] | None = None) -> RunConfig:
    """Read a recipe by name or path and apply ``key.sub=value`` overrides (values parsed as YAML).

    Unknown keys, in the file or in an override, are errors naming the key and close matches.
    """
    data, where = _read(source)
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UserError(f"override {item!r}: expected key=value")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise UserError(f"override {item!r}: the value is not valid YAML ({str(err).splitlines()[0]})") from None
        _set(data, key.strip(), value)
    return from_dict(RunConfig, data, where=where)
