"""How both daemons write their log: one record per line, logfmt or JSON, the same flags.

    configure(level="info", fmt="logfmt")   # from --log.level and --log.format

Why this module: log shippers (Filebeat, Fluent Bit, Promtail) split a stream on newlines and parse each
line as one record. A record that spans lines (a traceback, a deploy step's multi-line stderr) becomes
several broken records, and a ``key=value``-looking line whose values are not quoted does not parse as
logfmt. So what must stay true, whatever a message or an exception contains:

- every record is exactly one line: newlines and control characters inside values are escaped;
- logfmt values are quoted and escaped whenever they hold a space, ``=``, ``"`` or a control character
  (go-kit's logfmt rules, which Prometheus and Loki use), so ``key=value`` pairs parse unambiguously;
- JSON records are one object per line with ``ts``, ``level``, ``logger``, ``msg`` and, for an
  exception, ``error`` (the traceback as one string);
- levels are spelled as Prometheus spells them: ``debug``, ``info``, ``warn``, ``error``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

__all__ = [
    "FORMATS", "LEVELS", "JsonFormatter", "LogfmtFormatter", "add_flags", "child_flags", "configure", "logfmt_value",
]

LEVELS = ("debug", "info", "warn", "error")
FORMATS = ("logfmt", "json")
_LEVEL_NAMES = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error", "CRITICAL": "error"}
_PY_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
              "error": logging.ERROR}
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# The standard LogRecord attributes; anything else on a record came from ``extra=`` and is logged as a field.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def logfmt_value(value: object) -> str:
    """``value`` as one logfmt value: bare when that is unambiguous, else quoted with escapes."""
    text = value if isinstance(value, str) else str(value)
    if text and not any(c in ' ="\\' or c < " " or c == "\x7f" for c in text):
        return text
    out = []
    for c in text:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif c < " " or c == "\x7f":
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": _LEVEL_NAMES.get(record.levelname, record.levelname.lower()),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_") and key not in fields:
            fields[key] = value
    if record.exc_info:
        fields["error"] = logging.Formatter().formatException(record.exc_info)
    elif record.exc_text:
        fields["error"] = record.exc_text
    if record.stack_info:
        fields["stack"] = record.stack_info
    return fields


class LogfmtFormatter(logging.Formatter):
    """One ``key=value`` line per record (see the module docstring for the quoting rule)."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={logfmt_value(value)}" for key, value in _fields(record).items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line; non-JSON values are rendered with ``str``."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), ensure_ascii=False, default=str)


def add_flags(parser: Any) -> None:
    """Add ``--log.level`` and ``--log.format`` to an argparse parser, spelled as Prometheus spells them.

    ``warning`` is still accepted as a spelling of ``warn`` so existing unit files keep working."""
    parser.add_argument("--log.level", dest="log_level", default="info", choices=[*LEVELS, "warning"],
                        help="only log records at this level or above (default info)")
    parser.add_argument("--log.format", dest="log_format", default="logfmt", choices=list(FORMATS),
                        help="logfmt or json, one record per line (default logfmt)")


def configure(level: str = "info", fmt: str = "logfmt", stream: IO[str] | None = None) -> None:
    """Route every logger's records to ``stream`` (stderr) in ``fmt``, replacing earlier handlers."""
    if fmt not in FORMATS:
        raise ValueError(f"--log.format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_PY_LEVELS[level.lower()])


def child_flags() -> list[str]:
    """The ``--log.*`` flags that make a child process (a probe worker) log as this process does."""
    root = logging.getLogger()
    fmt = "logfmt"
    for handler in root.handlers:
        if isinstance(handler.formatter, JsonFormatter):
            fmt = "json"
    level = _LEVEL_NAMES.get(logging.getLevelName(root.level), "info")
    return [f"--log.level={level}", f"--log.format={fmt}"]
