"""Run every dashboard query through a real Prometheus' HTTP API, as Grafana would send it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from tests.dashboards import model

RANGE_SECONDS = 60
STEP_SECONDS = 5


@dataclass(frozen=True)
class Outcome:
    query: model.PanelQuery
    expr: str  # as sent, variables substituted
    error: str | None  # Prometheus' error (does not parse / evaluate)
    series: int  # series returned


def _api(url: str, path: str, params: Mapping[str, Any]) -> tuple[Any, str | None]:
    response = requests.get(f"{url}{path}", params=dict(params), timeout=10)
    body = response.json()
    if response.status_code != 200 or body.get("status") != "success":
        return None, f"HTTP {response.status_code}: {body.get('errorType')}: {body.get('error')}"
    return body["data"], None


def run(url: str, query: model.PanelQuery, values: Mapping[str, str]) -> Outcome:
    """One query: instant at now, or a range over the last minute; NaN-only series count as no data."""
    expr = model.interpolate(query.expr, values)
    now = time.time()
    if query.instant:
        data, error = _api(url, "/api/v1/query", {"query": expr, "time": now})
    else:
        data, error = _api(url, "/api/v1/query_range", {"query": expr, "start": now - RANGE_SECONDS, "end": now,
                                                         "step": STEP_SECONDS})
    if error is not None:
        return Outcome(query, expr, error, 0)
    if data["resultType"] == "scalar":
        return Outcome(query, expr, None, 1)
    series = [s for s in data["result"]
              if any(v[1] != "NaN" for v in s.get("values", [s.get("value", [0, "NaN"])]))]
    return Outcome(query, expr, None, len(series))


def all_values(dash: Mapping[str, Any]) -> dict[str, str]:
    """Every variable at "All" (Grafana's default for these dashboards)."""
    out = {}
    for var in model.variables(dash):
        if var.type == "query":
            if not var.include_all or var.all_value is None:
                raise ValueError(f"variable {var.name} has no All value")
            out[var.name] = var.all_value
    return out


def first_values(url: str, dash: Mapping[str, Any]) -> dict[str, str]:
    """Each variable set to the first value its own query offers (after the variables before it)."""
    out: dict[str, str] = {}
    now = time.time()
    for var in model.variables(dash):
        if var.type != "query":
            continue
        selector, label = model.label_values_query(var)
        data, error = _api(url, f"/api/v1/label/{label}/values",
                           {"match[]": model.interpolate(selector, out), "start": now - 600, "end": now})
        if error is not None or not data:
            raise AssertionError(f"variable ${var.name}: {var.query} offers no value ({error or 'empty'})")
        value = sorted(data)[0]
        out[var.name] = model.regex_escape(value) if (var.multi or var.include_all) else value
    return out


def run_dashboards(url: str, dashboards: Mapping[str, Mapping[str, Any]], *,
                   first: bool = False) -> list[Outcome]:
    outcomes = []
    for name, dash in dashboards.items():
        values = first_values(url, dash) if first else all_values(dash)
        outcomes += [run(url, q, values) for q in model.queries(name, dash)]
    return outcomes


def report(outcomes: list[Outcome], *, need_data: bool) -> list[str]:
    """Human-readable failures: errors always, empty results when data is required."""
    return [f"{o.query.id}: {o.error or 'no data'}\n    {o.expr}" for o in outcomes
            if o.error is not None or (need_data and o.series == 0)]
