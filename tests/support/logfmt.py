"""A strict logfmt reader for tests: the daemons' log lines must parse as logfmt, one record per line.

Written for the tests (not imported by certloop) so that the daemons' writer is checked against an
independent reading of the format: ``key=value`` pairs separated by single spaces, keys without spaces,
``=`` or quotes, values bare (no space, ``=`` or ``"``) or double-quoted with backslash escapes.
"""

from __future__ import annotations

import json
import re

__all__ = ["DaemonLogError", "parse_daemon_log", "parse_line"]

_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_.\-]*)=("(?:[^"\\]|\\.)*"|[^\s="]*)(?: |$)')


class DaemonLogError(AssertionError):
    pass


def parse_line(line: str) -> dict[str, str]:
    """One logfmt line as a dict; raises DaemonLogError naming the line when it is not logfmt."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(line):
        m = _PAIR.match(line, pos)
        if m is None:
            raise DaemonLogError(f"not logfmt at column {pos}: {line!r}")
        key, value = m.group(1), m.group(2)
        if key in out:
            raise DaemonLogError(f"duplicate key {key!r}: {line!r}")
        out[key] = json.loads(value) if value.startswith('"') else value
        pos = m.end()
    if not out:
        raise DaemonLogError(f"empty record: {line!r}")
    return out


def parse_daemon_log(text: str, fmt: str) -> list[dict[str, str]]:
    """Every record a daemon wrote (supervisor ``--- start`` markers skipped), each with ts, level, msg."""
    records = []
    for line in text.splitlines():
        if line.startswith("--- start "):
            continue
        if fmt == "json":
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise DaemonLogError(f"not one JSON object: {line!r}") from exc
            if not isinstance(record, dict):
                raise DaemonLogError(f"not one JSON object: {line!r}")
        else:
            record = parse_line(line)
        missing = {"ts", "level", "logger", "msg"} - set(record)
        if missing:
            raise DaemonLogError(f"record without {sorted(missing)}: {line!r}")
        if record["level"] not in {"debug", "info", "warn", "error"}:
            raise DaemonLogError(f"unknown level {record['level']!r}: {line!r}")
        records.append(record)
    return records
