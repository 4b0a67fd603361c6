"""Config primitives shared by the exporter and the renewer.

- :func:`parse_duration` reads Prometheus-style durations (``500ms``, ``5s``, ``1h30m``, ``21d``, ``1w``, ``1y``).
- :data:`Duration` is a pydantic field type for them; it renders back to the same notation.
- :class:`StrictModel` is the base of every config model: unknown keys are errors, models are frozen.
- :func:`load_model` turns a YAML file into a model, raising :class:`ConfigError` whose path names the
  bad field (``targets[3].timeout: expected a duration like "5s"``).
- :func:`resolve_secret` reads secrets from ``*_file`` paths or ``${ENV}`` references; they are never logged.
- Environment variables (``--config.expand-env``, as Loki does): :func:`expand_env` replaces ``${VAR}`` and
  ``${VAR:-default}`` in every string of the loaded YAML (``$$`` writes a ``$``); an unset variable without
  a default is an error naming it and the key. Without the flag a ``${...}`` is left as written, and
  :func:`load_model` refuses it anywhere but in fields annotated :data:`SECRET` (resolved when used, by
  :func:`resolve_secret`) or :data:`VERBATIM` (argv handed to a program, which may be a shell): a
  ``data_dir: ${X}`` must never become a directory named ``${X}``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator, Mapping
from datetime import timedelta
from enum import Enum
from pathlib import Path, PurePath
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, ValidationError

from certloop.errors import ConfigError

__all__ = [
    "EMPTY_CONFIG",
    "SECRET",
    "VERBATIM",
    "Duration",
    "EnvUse",
    "StrictModel",
    "expand_env",
    "format_duration",
    "load_model",
    "parse_duration",
    "parse_listen_address",
    "resolve_secret",
    "validate_model",
]

_UNITS: dict[str, float] = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "y": 365 * 86400,
}
_DURATION_RE = re.compile(r"^((?:\d+(?:ms|y|w|d|h|m|s))+)$")
_PART_RE = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")


def parse_duration(text: str) -> timedelta:
    """Parse a Prometheus-style duration such as ``5s`` or ``1h30m`` into a timedelta."""
    if not isinstance(text, str) or not _DURATION_RE.match(text.strip()):
        raise ValueError(f'expected a duration like "5s", "1h30m" or "21d", got {text!r}')
    seconds = sum(int(n) * _UNITS[u] for n, u in _PART_RE.findall(text.strip()))
    return timedelta(seconds=seconds)


_LISTEN_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def parse_listen_address(text: str) -> tuple[str, int]:
    """``host:port``, ``[ipv6]:port`` or ``:port`` into (host, port): where a daemon listens, the one rule
    for both daemons' ``--web.listen-address`` and the renewer's ``listen``.

    ``:port`` means every interface (``0.0.0.0``), as Prometheus reads it; port 0 picks a free one. Raises
    ValueError with a readable message, never a traceback later at start.
    """
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f'expected "host:port", got {text!r}')
    if not host:
        return "0.0.0.0", int(port)  # noqa: S104 - ":PORT" means every interface, by the user's choice
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"expected an IPv6 address in brackets, got {text!r}") from None
        return host[1:-1], int(port)
    if ":" in host:
        raise ValueError(f"an IPv6 address goes in brackets ([::1]:port), got {text!r}")
    if not _LISTEN_HOST.fullmatch(host):
        raise ValueError(f"invalid host {host!r} in {text!r}")
    return host, int(port)


def format_duration(value: timedelta) -> str:
    """Render a timedelta in the notation :func:`parse_duration` reads (largest units first)."""
    ms = round(value.total_seconds() * 1000)
    if ms == 0:
        return "0s"
    out = []
    for unit in ("y", "w", "d", "h", "m", "s"):
        size = int(_UNITS[unit] * 1000)
        if ms >= size:
            out.append(f"{ms // size}{unit}")
            ms %= size
    if ms:
        out.append(f"{ms}ms")
    return "".join(out)


def _coerce_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f'expected a duration like "5s", got {value!r}')
    return parse_duration(value)


Duration = Annotated[
    timedelta,
    BeforeValidator(_coerce_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]


class StrictModel(BaseModel):
    """Base for config models: unknown keys rejected, values immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


M = TypeVar("M", bound=BaseModel)


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            # pydantic inserts discriminator tags / function names into locs; skip those.
            if part.startswith("function-") or "[" in part:
                continue
            path += f".{part}" if path else part
    return path


def _friendly(err: Any) -> str:
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid value"))
    if kind == "extra_forbidden":
        return "unknown key (not part of the configuration schema)"
    if kind == "missing":
        return "required key is missing"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return msg


def validate_model(model: type[M], data: Any, *, source: str | None = None) -> M:
    """Validate ``data`` into ``model``; the first error becomes a ConfigError naming its path.

    All errors are listed in the message when there are several, first one leading.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        path = _loc_to_path(tuple(first["loc"]))
        message = _friendly(first)
        if len(errors) > 1:
            rest = "; ".join(f"{_loc_to_path(tuple(e['loc']))}: {_friendly(e)}" for e in errors[1:5])
            more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
            message = f"{message} [also: {rest}{more}]"
        raise ConfigError(path, message, source=source) from exc


EMPTY_CONFIG = (
    "the file is empty (or a YAML null document); refusing it, as a truncated file would stop all "
    "monitoring: write {} to run with nothing configured on purpose"
)


class EnvUse(Enum):
    """How a field treats ``${...}`` when the config is loaded without ``--config.expand-env``."""

    SECRET = "secret"  # noqa: S105 - a marker's name, not a password; kept as written; resolve_secret reads the variable when the secret is used
    VERBATIM = "verbatim"  # kept as written: an argv handed to a program (``sh -c '... ${X}'``)


SECRET = EnvUse.SECRET  # Annotated[str | None, SECRET]
VERBATIM = EnvUse.VERBATIM  # Annotated[list[str], VERBATIM]

_EXPANSION = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\})?")
_REFERENCE = re.compile(r"\$\{[^}]*\}?")


def _join(path: str, key: object) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))


def expand_env(data: Any, environ: Mapping[str, str] | None = None, path: str = "") -> Any:
    """``data`` (loaded YAML) with ``${VAR}`` / ``${VAR:-default}`` replaced in every string value.

    ``$$`` stands for one ``$``. ConfigError names the key path of an unset variable without a default,
    or of a ``$`` that starts neither form (``${1X}``, an unclosed ``${X``).
    """
    env = os.environ if environ is None else environ
    if isinstance(data, dict):
        return {k: expand_env(v, env, _join(path, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, env, _join(path, i)) for i, v in enumerate(data)]
    if not isinstance(data, str) or "$" not in data:
        return data

    def one(m: re.Match[str]) -> str:
        text = m.group(0)
        if text == "$$":
            return "$"
        if text == "$":
            nxt = data[m.end():m.end() + 1]
            if nxt != "{":
                return "$"  # a lone $ (a password, a regex): not a reference
            ref = _REFERENCE.match(data, m.start())
            shown = ref.group(0) if ref else "${"
            raise ConfigError(path, f"malformed environment reference {shown!r} (expected ${{VAR}} or "
                                    "${VAR:-default}; $$ writes a $)")
        name, default = m.group(1), m.group(2)
        value = env.get(name)
        if value is None:
            if default is None:
                raise ConfigError(path, f"environment variable {name} is not set (and ${{{name}}} has no "
                                        f":-default)")
            return default
        return value

    return _EXPANSION.sub(one, data)


def _unexpanded(obj: Any, path: str) -> Iterator[tuple[str, str]]:
    """(key path, reference) of every ``${...}`` left in a validated model outside SECRET/VERBATIM fields."""
    if isinstance(obj, BaseModel):
        for name, field in type(obj).model_fields.items():
            if any(isinstance(meta, EnvUse) for meta in field.metadata):
                continue
            yield from _unexpanded(getattr(obj, name), _join(path, field.alias or name))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _unexpanded(value, _join(path, i))
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _unexpanded(value, _join(path, key))
    elif isinstance(obj, (str, PurePath)):
        m = _REFERENCE.search(str(obj))
        if m:
            yield path, m.group(0)


def load_model(
    model: type[M], path: str | os.PathLike[str], *, allow_empty: bool = True, expand: bool = False,
) -> M:
    """Read a YAML file and validate it into ``model``.

    ``allow_empty=False``: an empty file or a YAML null document is a ConfigError (a truncated
    file must not validate as "every default, nothing configured"); ``{}`` still says "empty" on purpose.
    ``expand``: :func:`expand_env` first (the ``--config.expand-env`` flag), else a ``${...}`` outside
    SECRET/VERBATIM fields is an error.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read config file: {exc.strerror or exc}", source=str(p)) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError("", f"invalid YAML: {where}{problem}", source=str(p)) from exc
    if data is None:
        if not allow_empty:
            raise ConfigError("", EMPTY_CONFIG, source=str(p))
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("", "the top level must be a mapping of keys to values", source=str(p))
    if expand:
        try:
            data = expand_env(data)
        except ConfigError as exc:
            raise ConfigError(exc.path, exc.message, source=str(p)) from None
    try:
        loaded = validate_model(model, data, source=str(p))
    except ConfigError as exc:
        # A field that rejected "${X}" (a host name, a path) is best told why it saw one.
        reference = None if expand else _references(data).get(exc.path)
        if reference is None:
            raise
        raise ConfigError(exc.path, _not_expanded(reference), source=str(p)) from exc
    if not expand:
        for key, reference in _unexpanded(loaded, ""):
            raise ConfigError(key, _not_expanded(reference), source=str(p))
    return loaded


def _not_expanded(reference: str) -> str:
    return (f"{reference} is not expanded: environment variables are read only with --config.expand-env "
            "(or, for secrets, in the fields that say so)")


def _references(data: Any, path: str = "") -> dict[str, str]:
    """Key path -> first ``${...}`` of every string in loaded YAML."""
    if isinstance(data, dict):
        return {k: v for key, value in data.items() for k, v in _references(value, _join(path, key)).items()}
    if isinstance(data, list):
        return {k: v for i, value in enumerate(data) for k, v in _references(value, _join(path, i)).items()}
    m = _REFERENCE.search(data) if isinstance(data, str) else None
    return {path: m.group(0)} if m else {}


_ENV_RE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def resolve_secret(value: str | None = None, file: str | os.PathLike[str] | None = None, *, field: str) -> str:
    """Return a secret given inline as ``${ENV}`` (or literally) or by ``*_file``.

    ``field`` is the config path used in errors; the secret itself never appears in a message.
    """
    if value is not None and file is not None:
        raise ConfigError(field, "give either the value or the _file variant, not both")
    if file is not None:
        try:
            return Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{field}_file", f"cannot read secret file {file}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:  # a binary file: say which, never show its bytes
            raise ConfigError(f"{field}_file", f"secret file {file} is not UTF-8 text") from exc
    if value is None:
        raise ConfigError(field, "required secret is missing (set it or its _file variant)")
    m = _ENV_RE.match(value)
    if m:
        env = os.environ.get(m.group(1))
        if env is None:
            raise ConfigError(field, f"environment variable {m.group(1)} is not set")
        return env
    return value
