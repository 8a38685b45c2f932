"""Small typed configs. Every component owns one; a run composes them outside the library.

A wrong key or value raises :class:`ConfigError` naming the file and the dotted key path, so a
user never has to guess which line of a YAML file is wrong.

A config file is input like any other: it is read as bytes with a size cap, must be UTF-8, and
its YAML graph is measured before anything is built from it, so an alias bomb (a few KB that
expand to billions of nodes) is refused before validation. Values quoted in messages are cut to
:data:`QUOTE_CHARS`, and counts have upper bounds (:func:`count`) no real run comes near.
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stratocast.errors import StratocastError

MAX_CONFIG_BYTES = 4 * 2**20  # configs are hand-written: a few KB
# Nodes after expanding every alias: the demo config has ~150; a config composed with anchors
# and aliases for hundreds of sources stays below 10^4. A bomb is 10^9 and more.
MAX_EXPANDED_NODES = 100_000
QUOTE_CHARS = 200

# Upper bounds for counts a person would never mean to exceed (a typo, an extra zero run of
# keys, a unit mistake). They are far above any real run and appear in the error message.
STEPS_MAX = 100_000_000  # optimizer steps; the largest weather-model runs use ~10^6
BATCH_MAX = 65_536  # samples per micro-batch or per forecast batch
WORKERS_MAX = 4_096  # processes/threads/nodes on one job
HORIZON_HOURS_MAX = 24 * 366  # forecast/verification horizon: one year
MEMBERS_MAX = 10_000  # ensemble members
SAMPLES_MAX = 10_000_000  # bootstrap samples, minimum-sample thresholds and similar


class ConfigError(StratocastError, ValueError):
    """A configuration file or section is malformed."""


class ComponentConfig(BaseModel):
    """Base of every component config: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


C = TypeVar("C", bound=BaseModel)


def count(default: Any, *, le: int, ge: int = 1, **kw: Any) -> Any:
    """A bounded integer field: ``Field(default, ge=ge, le=le)``. The bound is one of the
    ``*_MAX`` constants above, so pydantic's message ("less than or equal to N") names it."""
    return Field(default=default, ge=ge, le=le, **kw)


_SHORT = reprlib.Repr()
_SHORT.maxlevel = 3
_SHORT.maxstring = QUOTE_CHARS
_SHORT.maxother = QUOTE_CHARS
_SHORT.maxlong = 60


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters, computed without building the whole repr
    (a shared-structure value's full repr can be exponentially long)."""
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value)} chars)"
    try:
        text = _SHORT.repr(value)
    except Exception:  # a hostile __repr__ must not turn a config error into a crash
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


def format_validation(err: ValidationError, where: str) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            parts.append(f"{loc}: unknown key (check spelling; allowed keys are the fields)")
        else:
            msg = e["msg"] if len(e["msg"]) <= 2 * QUOTE_CHARS else e["msg"][: 2 * QUOTE_CHARS]
            parts.append(f"{loc}: {msg} (got {quote(e.get('input'))})")
    # One line: the CLI prints every error as a single line on stderr.
    return f"invalid configuration in {where}: " + "; ".join(parts)


def parse_config(cls: type[C], data: Any, where: str) -> C:
    """Validate ``data`` as ``cls``; errors name ``where`` and the offending key."""
    try:
        return cls.model_validate(data if data is not None else {})
    except ValidationError as err:
        raise ConfigError(format_validation(err, where)) from None


def _expanded_nodes(root: yaml.Node, limit: int, where: str) -> int:
    """Nodes of ``root`` with every alias expanded, stopping once past ``limit``.

    Memoised per node, so the walk is linear in the distinct nodes however large the expansion;
    a node reached again while its own children are being counted is a recursive alias.
    """
    done: dict[int, int] = {}
    active: set[int] = set()

    def walk(node: yaml.Node) -> int:
        key = id(node)
        if key in done:
            return done[key]
        if key in active:
            mark = node.start_mark
            raise ConfigError(
                f"{where}:{mark.line + 1}:{mark.column + 1}: recursive YAML alias (a value "
                "that contains itself)"
            )
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children: list[yaml.Node] = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        for child in children:
            total += walk(child)
            if total > limit:
                break
        active.discard(key)
        done[key] = total
        if total > limit:
            mark = node.start_mark
            raise ConfigError(
                f"{where}:{mark.line + 1}:{mark.column + 1}: YAML aliases expand to more than "
                f"{limit} nodes (an alias bomb?); refusing before building any value"
            )
        return total

    return walk(root)


def _yaml_message(err: yaml.YAMLError, text: str, where: str) -> str:
    if isinstance(err, yaml.reader.ReaderError):  # a character YAML does not allow
        pos = err.position
        line, col = text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)
        return (
            f"cannot parse YAML in {where}:{line}:{col}: unacceptable character "
            f"#x{err.character:04x} ({err.reason})"
        )
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None)
    if mark is None or problem is None:
        return f"cannot parse YAML in {where}: {' '.join(str(err).split())}"
    context = getattr(err, "context", None)
    ctx = f" ({' '.join(str(context).split())})" if context else ""
    return f"cannot parse YAML in {where}:{mark.line + 1}:{mark.column + 1}: {problem}{ctx}"


def parse_yaml_text(text: str, where: str) -> Any:
    """Compose ``text`` (safe tags only), measure its alias expansion, then construct it."""
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # checks every character already
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_nodes(node, MAX_EXPANDED_NODES, where)
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise ConfigError(_yaml_message(err, text, where)) from None
    except RecursionError:
        raise ConfigError(f"cannot parse YAML in {where}: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file (and line, for syntax errors)."""
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {size} bytes; a config file is at most {MAX_CONFIG_BYTES}")
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not a UTF-8 text file (byte {err.start}: {raw[err.start : err.start + 1]!r});"
            " is this the right file?"
        ) from None
    data = parse_yaml_text(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def load_config(cls: type[C], path: Path) -> C:
    return parse_config(cls, read_yaml(path), str(path))
