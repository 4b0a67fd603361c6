"""House style for certloop dashboards: one place for the defaults every dashboard shares.

A dashboard module describes *what* it shows with the factories below (`stat`, `timeseries`, `table`,
`timeline`, `bargauge`, `row`) and `dashboard(...)` lays the panels out, adds the datasource variable,
tags, refresh and a stable uid derived from the module's file name, and returns a plain JSON-ready dict
that contains only fields Grafana's current dashboard schema knows (grafanalib 0.7 still emits legacy
keys such as `rows`, `span` or `height`; `to_grafana_json` drops them).

Grafana's time-unit ids used here: `dateTimeFromNow` and `dateTimeAsIso` expect **milliseconds** since
the epoch, so expressions feeding them multiply `*_timestamp_seconds` by 1000 (see `MS`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import attr
from grafanalib import core as g

# -- the provisioned datasource and the variable that selects it ------------------------------------
DATASOURCE_VARIABLE = "datasource"
PROVISIONED_DATASOURCE_UID = "certloop-prometheus"
PROVISIONED_DATASOURCE_NAME = "certloop Prometheus"
DATASOURCE: Mapping[str, str] = {"type": "prometheus", "uid": "${" + DATASOURCE_VARIABLE + "}"}

# -- dashboard-wide defaults ------------------------------------------------------------------------
TAGS: tuple[str, ...] = ("certloop", "tls", "certificates")
REFRESH = "1m"  # certificates change slowly; the exporter sweeps every few minutes
TIME_FROM = "now-6h"
SCHEMA_VERSION = 39  # Grafana 10.4/11.x; newer Grafana migrates forward on load
UID_PREFIX = "certloop-"
GRID_WIDTH = 24

# -- units (Grafana unit ids) -----------------------------------------------------------------------
UNIT_DATE_FROM_NOW = "dateTimeFromNow"  # value in ms since epoch
UNIT_DATE_ISO = "dateTimeAsIso"  # value in ms since epoch
UNIT_SECONDS = "s"
UNIT_DAYS = "d"  # a plain number of days shown as a duration ("12.5 day")
UNIT_PERCENT = "percentunit"  # 0..1
UNIT_PER_SECOND = "ops"
UNIT_COUNT = "short"
UNIT_NONE = "none"
MS = "* 1000"  # append to a seconds-timestamp expression feeding a date unit

# -- colours ----------------------------------------------------------------------------------------
GREEN, YELLOW, ORANGE, RED, BLUE = "green", "yellow", "orange", "red", "blue"

RATE_INTERVAL = "$__rate_interval"
RANGE = "$__range"


def uid_for(module_file: str) -> str:
    """Stable dashboard uid from a module's file name: `.../exporter_health.py` -> `certloop-exporter-health`.

    Grafana uids are at most 40 characters of `[A-Za-z0-9_-]`; links between dashboards rely on them.
    """
    stem = Path(module_file).stem.replace("_", "-")
    uid = f"{UID_PREFIX}{stem}"
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid):
        raise ValueError(f"dashboard uid {uid!r} is not a valid Grafana uid")
    return uid


@dataclass(frozen=True)
class Query:
    """One Prometheus query of a panel, serialised as Grafana's Prometheus query model."""

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False  # format=table: one row per series with its labels as columns
    ref_id: str = "A"

    def to_json_data(self) -> dict[str, Any]:
        return {
            "datasource": dict(DATASOURCE),
            "editorMode": "code",
            "expr": self.expr,
            "format": "table" if self.table else "time_series",
            "instant": self.instant,
            "legendFormat": self.legend or "__auto",
            "range": not self.instant,
            "refId": self.ref_id,
        }


def thresholds(base: str, *steps: tuple[float, str]) -> dict[str, Any]:
    """Absolute thresholds: `base` colour below the first step, then each (value, colour) upwards."""
    values = [v for v, _ in steps]
    if values != sorted(values):
        raise ValueError(f"threshold steps must increase: {values}")
    return {
        "mode": "absolute",
        "steps": [{"color": base, "value": None}] + [{"color": c, "value": v} for v, c in steps],
    }


def value_text(mapping: Mapping[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """Value mappings: raw value -> (display text, colour)."""
    options = {k: {"text": text, "color": colour, "index": i} for i, (k, (text, colour)) in
               enumerate(mapping.items())}
    return [{"type": "value", "options": options}]


def _field_config(unit: str, th: Mapping[str, Any] | None, *, decimals: int | None = None,
                  mappings: list[dict[str, Any]] | None = None, no_value: str | None = None,
                  minimum: float | None = None, maximum: float | None = None,
                  overrides: list[dict[str, Any]] | None = None,
                  custom: Mapping[str, Any] | None = None,
                  color_mode: str = "thresholds") -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "color": {"mode": color_mode},
        "custom": dict(custom or {}),
        "mappings": mappings or [],
        "thresholds": dict(th or thresholds(GREEN)),
        "unit": unit,
    }
    for key, value in (("decimals", decimals), ("noValue", no_value), ("min", minimum), ("max", maximum)):
        if value is not None:
            defaults[key] = value
    return {"defaults": defaults, "overrides": overrides or []}


@dataclass(frozen=True)
class Size:
    w: int
    h: int


def _panel(kind: type[Any], title: str, description: str, targets: Sequence[Query], size: Size,
           extra: dict[str, Any], **kwargs: Any) -> Any:
    if not description.strip():
        raise ValueError(f"panel {title!r} needs a description")
    # refIds A, B, C... in declaration order (Grafana's merge transformation names columns after them)
    numbered = [replace(q, ref_id=chr(ord("A") + i)) for i, q in enumerate(targets)]
    return kind(title=title, description=description, targets=numbered, dataSource=dict(DATASOURCE),
                gridPos=g.GridPos(h=size.h, w=size.w, x=0, y=0), extraJson=extra, **kwargs)


def stat(title: str, description: str, *targets: Query, unit: str = UNIT_COUNT,
         th: Mapping[str, Any] | None = None, size: Size = Size(4, 4), text_mode: str = "auto",
         color_mode: str = "value", graph: bool = False, decimals: int | None = None,
         mappings: list[dict[str, Any]] | None = None, no_value: str = "0", reduce: str = "lastNotNull",
         links: Sequence[Mapping[str, Any]] = ()) -> Any:
    """A single-number panel (one value per series)."""
    extra = {
        "fieldConfig": _field_config(unit, th, decimals=decimals, mappings=mappings, no_value=no_value),
        "options": {
            "colorMode": color_mode,
            "graphMode": "area" if graph else "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": [reduce], "fields": "", "values": False},
            "textMode": text_mode,
        },
        "links": [dict(link) for link in links],
    }
    return _panel(g.Stat, title, description, targets, size, extra)


def timeseries(title: str, description: str, *targets: Query, unit: str = UNIT_COUNT,
               th: Mapping[str, Any] | None = None, size: Size = Size(12, 8), bars: bool = False,
               stacked: bool = False, minimum: float | None = None, maximum: float | None = None,
               threshold_style: str = "off", legend_calcs: Sequence[str] = ("lastNotNull", "max"),
               step: bool = False) -> Any:
    """A graph over time."""
    custom = {
        "drawStyle": "bars" if bars else "line",
        "fillOpacity": 60 if bars else 10,
        "lineInterpolation": "stepAfter" if step else "linear",
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stacked else "none"},
        "thresholdsStyle": {"mode": threshold_style},
    }
    extra = {
        "fieldConfig": _field_config(unit, th, minimum=minimum, maximum=maximum, custom=custom,
                                     color_mode="palette-classic"),
        "options": {
            "legend": {"calcs": list(legend_calcs), "displayMode": "table", "placement": "right",
                       "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }
    return _panel(g.TimeSeries, title, description, targets, size, extra)


def timeline(title: str, description: str, *targets: Query, mappings: list[dict[str, Any]],
             size: Size = Size(24, 8)) -> Any:
    """A state timeline: one lane per series, coloured by value mapping (0/1 gauges, verdicts)."""
    extra = {
        "fieldConfig": _field_config(UNIT_NONE, None, mappings=mappings,
                                     custom={"fillOpacity": 80, "lineWidth": 0}),
        "options": {
            "alignValue": "left", "mergeValues": True, "rowHeight": 0.9, "showValue": "auto",
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "single", "sort": "none"},
        },
    }
    return _panel(g.StateTimeline, title, description, targets, size, extra)


def bargauge(title: str, description: str, *targets: Query, unit: str = UNIT_COUNT,
             th: Mapping[str, Any] | None = None, size: Size = Size(12, 8),
             minimum: float | None = 0, maximum: float | None = None) -> Any:
    """Horizontal bars, one per series (current value)."""
    extra = {
        "fieldConfig": _field_config(unit, th, minimum=minimum, maximum=maximum),
        "options": {
            "displayMode": "gradient",
            "orientation": "horizontal",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showUnfilled": True,
            "valueMode": "color",
        },
    }
    return _panel(g.BarGauge, title, description, targets, size, extra)


def table(title: str, description: str, *targets: Query, unit: str = UNIT_NONE,
          th: Mapping[str, Any] | None = None, size: Size = Size(24, 8),
          columns: Mapping[str, str] | None = None, hide: Iterable[str] = (),
          sort_by: str | None = None, descending: bool = False,
          overrides: list[dict[str, Any]] | None = None, merge: bool = False) -> Any:
    """A table of instant results, one row per series; `columns` renames and orders label columns.

    Columns not named in `columns` keep their label name; `hide` removes columns. `merge` joins several
    queries whose rows share the same labels into one row (Grafana's `merge` transformation).
    """
    order = {name: i for i, name in enumerate(columns or {})}
    named = set(columns or {})
    exclude = {name: True for name in ("Time", "__name__", "job", "instance", *hide) if name not in named}
    transformations: list[dict[str, Any]] = []
    if merge:
        transformations.append({"id": "merge", "options": {}})
    transformations.append({"id": "organize", "options": {
        "excludeByName": exclude, "indexByName": order, "renameByName": dict(columns or {})}})
    extra = {
        "fieldConfig": _field_config(unit, th, overrides=overrides,
                                     custom={"align": "auto", "cellOptions": {"type": "auto"},
                                             "filterable": True}),
        "options": {
            "cellHeight": "sm",
            "showHeader": True,
            "sortBy": ([{"desc": descending, "displayName": sort_by}] if sort_by else []),
        },
        "transformations": transformations,
    }
    for q in targets:
        if not (q.instant and q.table):
            raise ValueError(f"table {title!r}: query {q.expr!r} must be instant and table-formatted")
    return _panel(g.Table, title, description, targets, size, extra)


def column_unit(display_name: str, unit: str, th: Mapping[str, Any] | None = None,
                cell: str | None = None) -> dict[str, Any]:
    """A table override: give one column its own unit (and optionally thresholds and cell colouring)."""
    props: list[dict[str, Any]] = [{"id": "unit", "value": unit}]
    if th is not None:
        props.append({"id": "thresholds", "value": dict(th)})
    if cell is not None:
        props.append({"id": "custom.cellOptions", "value": {"type": cell}})
    return {"matcher": {"id": "byName", "options": display_name}, "properties": props}


def column_link(display_name: str, title: str, uid: str, variables: Mapping[str, str]) -> dict[str, Any]:
    """A table override: every cell of one column links to dashboard `uid` with `variables` set.

    Values are Grafana data-link expressions (`${__value.raw}` is the cell's own value, `$__all` is
    "All"); the dashboard's time range is kept. tests/dashboards/test_generated.py checks that `uid` and
    every variable exist.
    """
    query = "&".join([*(f"var-{name}={value}" for name, value in variables.items()), "${__url_time_range}"])
    return {"matcher": {"id": "byName", "options": display_name},
            "properties": [{"id": "links", "value": [{"title": title, "url": f"/d/{uid}?{query}"}]}]}


def row(title: str) -> Any:
    """A section header spanning the full width."""
    return g.RowPanel(title=title, gridPos=g.GridPos(h=1, w=GRID_WIDTH, x=0, y=0))


# -- template variables -----------------------------------------------------------------------------
def datasource_variable() -> Any:
    return g.Template(name=DATASOURCE_VARIABLE, label="Data source", query="prometheus", type="datasource",
                      default=PROVISIONED_DATASOURCE_UID, includeAll=False)


def label_variable(name: str, label: str, metric_selector: str, *, include_all: bool = True,
                   multi: bool = True, of: str | None = None) -> Any:
    """A variable listing the values of one label: `label_values(<selector>, <name>)`, or of the label
    `of` when the variable is named otherwise (two `instance` variables, one per daemon).

    With "All" selected the value is `.*`, so selectors use `=~"$name"` and also match series that do
    not carry the label at all.
    """
    return g.Template(name=name, label=label, query=f"label_values({metric_selector}, {of or name})",
                      dataSource=dict(DATASOURCE), includeAll=include_all, multi=multi, allValue=".*",
                      default="$__all" if include_all else None, refresh=2, sort=1)


@dataclass(frozen=True)
class Link:
    """A link to another certloop dashboard by its uid, keeping the time range and variables."""

    title: str
    uid: str
    vars: bool = True

    def to_json_data(self) -> dict[str, Any]:
        return {"asDropdown": False, "icon": "dashboard", "includeVars": self.vars, "keepTime": True,
                "tags": [], "targetBlank": False, "title": self.title, "tooltip": "", "type": "link",
                "url": f"/d/{self.uid}"}


# -- layout and output ------------------------------------------------------------------------------
def layout(panels: Sequence[Any]) -> list[Any]:
    """Flow panels left to right in their declared sizes, wrapping at the grid width; rows start a line."""
    placed: list[Any] = []
    x = y = line_h = 0
    for p in panels:
        w, h = p.gridPos.w, p.gridPos.h
        if p.to_json_data().get("type") == "row" or x + w > GRID_WIDTH:
            y, x, line_h = y + line_h, 0, 0
        placed.append(attr.evolve(p, gridPos=g.GridPos(h=h, w=w, x=x, y=y)))
        x, line_h = x + w, max(line_h, h)
        if x >= GRID_WIDTH:
            y, x, line_h = y + line_h, 0, 0
    return placed


@dataclass(frozen=True)
class Spec:
    """What a dashboard module declares; `dashboard()` turns it into Grafana JSON."""

    module_file: str
    title: str
    description: str
    panels: Sequence[Any]
    variables: Sequence[Any] = ()
    links: Sequence[Link] = ()
    extra_tags: Sequence[str] = ()
    time_from: str = TIME_FROM


def dashboard(spec: Spec) -> dict[str, Any]:
    """Build the Grafana JSON model of a dashboard in house style."""
    dash = g.Dashboard(
        title=spec.title,
        description=spec.description,
        uid=uid_for(spec.module_file),
        tags=[*TAGS, *spec.extra_tags],
        refresh=REFRESH,
        schemaVersion=SCHEMA_VERSION,
        timezone="utc",
        graphTooltip=g.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
        time=g.Time(spec.time_from, "now"),
        editable=False,
        templating=g.Templating(list=[datasource_variable(), *spec.variables]),
        links=list(spec.links),
        panels=layout(spec.panels),
    ).auto_panel_ids()
    raw = json.loads(json.dumps(dash.to_json_data(), default=_to_json_data))
    return to_grafana_json(raw)


def _to_json_data(obj: Any) -> Any:
    """JSON encoding hook: grafanalib objects (and ours) serialise through `to_json_data()`."""
    to_json_data = getattr(obj, "to_json_data", None)
    if to_json_data is None:
        raise TypeError(f"cannot encode {type(obj).__name__} in a dashboard")
    return to_json_data()


# Keys grafanalib 0.7 emits that Grafana's current dashboard schema does not define (legacy rows layout,
# Angular-era panel options).
_LEGACY_DASHBOARD_KEYS = {"__inputs", "rows", "hideControls", "sharedCrosshair", "style", "gnetId", "id"}
_LEGACY_PANEL_KEYS = {"height", "span", "minSpan", "error", "editable", "columns", "fontSize", "color",
                      "mappings", "thresholds", "thresholdType", "styles"}
_LEGACY_TEMPLATE_KEYS = {"useTags", "tagsQuery", "tagValuesQuery", "auto", "auto_min", "auto_count"}


def _prune_nulls(value: Any) -> Any:
    """Drop null-valued keys, except in threshold steps (the base step's `value` is null by design)."""
    if isinstance(value, dict):
        return {k: (v if k == "steps" else _prune_nulls(v)) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune_nulls(v) for v in value]
    return value


def _clean_panel(panel: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in panel.items() if k not in _LEGACY_PANEL_KEYS}
    if out.get("type") == "row":
        for key in ("datasource", "targets", "fieldConfig", "description", "transformations", "links",
                    "maxDataPoints", "transparent", "hideTimeOverride", "repeatDirection", "maxPerRow"):
            out.pop(key, None)
    if out.get("type") == "bargauge" and isinstance(out.get("options"), dict):
        # grafanalib's Grafana-6 `fieldOptions` would be migrated over our fieldConfig on load.
        # Its gauge-only showThreshold* options are not bar gauge options in Grafana's panel schema.
        out["options"] = {k: v for k, v in out["options"].items()
                          if k not in {"fieldOptions", "showThresholdLabels", "showThresholdMarkers"}}
    if "panels" in out:
        out["panels"] = [_clean_panel(p) for p in out["panels"]]
    return out


def _clean_variable(variable: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in variable.items() if k not in _LEGACY_TEMPLATE_KEYS}
    out["current"] = {k: v for k, v in out.get("current", {}).items() if k != "tags"}
    if out["current"].get("value") == "$__all":  # what Grafana itself stores for "All"
        multi = bool(out.get("multi"))
        out["current"] = {"selected": True, "text": ["All"] if multi else "All",
                          "value": ["$__all"] if multi else "$__all"}
    return out


def to_grafana_json(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Drop legacy grafanalib keys and nulls (null threshold base steps stay: Grafana needs them)."""
    dash = {k: v for k, v in raw.items() if k not in _LEGACY_DASHBOARD_KEYS}
    dash["panels"] = [_clean_panel(p) for p in dash["panels"]]
    dash["templating"] = {"list": [_clean_variable(t) for t in dash["templating"]["list"]]}
    dash.pop("timepicker", None)
    result: dict[str, Any] = _prune_nulls(dash)
    return result


def render(dash: Mapping[str, Any]) -> str:
    """Canonical text of a dashboard: sorted keys, two-space indent, trailing newline."""
    return json.dumps(dash, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
