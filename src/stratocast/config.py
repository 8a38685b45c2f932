"""Small typed configs. Every component owns one; a run composes them outside the library.

A wrong key or value raises :class:`ConfigError` naming the file and the dotted key path, so a
user never has to guess which line of a YAML file is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from stratocast.errors import StratocastError


class ConfigError(StratocastError, ValueError):
    """A configuration file or section is malformed."""


class ComponentConfig(BaseModel):
    """Base of every component config: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


C = TypeVar("C", bound=BaseModel)


def _format_validation(err: ValidationError, where: str) -> str:
    lines = [f"invalid configuration in {where}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {loc}: unknown key (check spelling; allowed keys are the fields)")
        else:
            lines.append(f"  {loc}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def parse_config(cls: type[C], data: Any, where: str) -> C:
    """Validate ``data`` as ``cls``; errors name ``where`` and the offending key."""
    try:
        return cls.model_validate(data if data is not None else {})
    except ValidationError as err:
        raise ConfigError(_format_validation(err, where)) from None


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file (and line, for syntax errors)."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot parse YAML in {path}: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def load_config(cls: type[C], path: Path) -> C:
    return parse_config(cls, read_yaml(path), str(path))
