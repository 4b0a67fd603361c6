"""Read the committed dashboards the way Grafana would: panels, queries, variables, interpolation."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "dashboards" / "generated"

# Values for Grafana's built-in interval variables when a query is run outside Grafana. The test
# Prometheus scrapes every second, so a 1m rate window always holds several samples.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h", "__range_s": "3600",
            "__range_ms": "3600000", "__interval_ms": "15000"}

METRIC_RE = re.compile(r"\b(certloop_[a-z0-9_]+)\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
_VAR_RE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_REGEX_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|]")


@dataclass(frozen=True)
class PanelQuery:
    """One query of one panel: where it lives and how Grafana sends it."""

    dashboard: str
    panel: str
    ref_id: str
    expr: str
    instant: bool

    @property
    def id(self) -> str:
        return f"{self.dashboard}/{self.panel}/{self.ref_id}"


@dataclass(frozen=True)
class Variable:
    name: str
    type: str
    query: str
    include_all: bool
    multi: bool
    all_value: str | None


def load(directory: Path = GENERATED) -> dict[str, dict[str, Any]]:
    """Every dashboard JSON in `directory`, keyed by file stem."""
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))}


def panels(dash: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dash.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries(name: str, dash: Mapping[str, Any]) -> list[PanelQuery]:
    return [PanelQuery(name, p["title"], t["refId"], t["expr"], bool(t.get("instant")))
            for p in panels(dash) for t in p.get("targets", [])]


def all_queries(directory: Path = GENERATED) -> list[PanelQuery]:
    return [q for name, dash in load(directory).items() for q in queries(name, dash)]


def variables(dash: Mapping[str, Any]) -> list[Variable]:
    out = []
    for v in dash.get("templating", {}).get("list", []):
        query = v.get("query", "")
        if isinstance(query, dict):
            query = query.get("query", "")
        out.append(Variable(v["name"], v["type"], str(query), bool(v.get("includeAll")), bool(v.get("multi")),
                            v.get("allValue")))
    return out


def label_values_query(var: Variable) -> tuple[str, str]:
    """(selector, label) of a `label_values(selector, label)` variable query."""
    m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", var.query.strip())
    if m is None:
        raise ValueError(f"variable {var.name}: unsupported query {var.query!r}")
    return m.group(1).strip(), m.group(2)


def regex_escape(value: str) -> str:
    """Grafana's escaping of a multi-value/include-all variable value inside a PromQL regex string."""
    return _REGEX_SPECIAL.sub(lambda m: "\\\\" + m.group(0), value.replace("\\", "\\\\\\\\"))


def interpolate(expr: str, values: Mapping[str, str], builtins: Mapping[str, str] = BUILTINS) -> str:
    """Replace `$name` / `${name}` with (already escaped) values; an unknown variable is an error."""
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name in builtins:
            return builtins[name]
        if name in values:
            return values[name]
        raise KeyError(f"unknown variable ${name} in {expr!r}")

    return _VAR_RE.sub(sub, expr)


def metric_names(expr: str) -> set[str]:
    """The certloop metric names an expression reads (histogram series names as written)."""
    return set(METRIC_RE.findall(expr))


def base_name(name: str, histograms: set[str]) -> str:
    """`x_bucket`/`x_sum`/`x_count` -> `x` when `x` is a histogram; otherwise `name` itself."""
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in histograms:
            return name[: -len(suffix)]
    return name
