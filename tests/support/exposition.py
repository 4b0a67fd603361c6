"""A scrape checked against its daemon's catalogue: what promtool and the contract tests rely on."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable

from certloop.metricspec import MetricSpec
from stack.process import require_binary

_META = re.compile(r"^# (HELP|TYPE) (\S+) ?(.*)$", re.M)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def check_against_catalogue(text: str, catalogue: Iterable[MetricSpec], *, standard: tuple[str, ...] = ()) -> set[str]:
    """``promtool check metrics`` finds nothing in ``text``, and every family ``text`` exposes is declared
    in ``catalogue`` with the type and the help text it is served with, but for names starting with one of
    ``standard`` (prometheus_client's process and platform collectors, which certloop does not declare).
    Returns the certloop families exposed."""
    promtool = require_binary("promtool", "prometheus")
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60,
                          check=False)
    assert (lint.returncode, lint.stdout.strip(), lint.stderr.strip()) == (0, "", ""), lint.stdout + lint.stderr
    declared = {spec.name: spec for spec in catalogue}
    served: dict[str, dict[str, str]] = {}
    for kind, name, rest in _META.findall(text):
        if name.startswith(standard) and standard:
            continue
        served.setdefault(name, {})[kind] = rest
    undeclared = sorted(set(served) - set(declared))
    assert not undeclared, f"served but not in the catalogue: {undeclared}"
    for name, meta in served.items():
        spec = declared[name]
        assert meta.get("TYPE") == spec.type, (name, meta.get("TYPE"), spec.type)
        assert _unescape(meta.get("HELP", "")) == spec.help, (name, meta.get("HELP"), spec.help)
    return set(served)
