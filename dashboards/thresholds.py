"""The dashboards' thresholds, read from the alerting mixin's `_config` so alerts and dashboards agree.

alerting/lib/dashboard_thresholds.libsonnet derives every number a dashboard colours or counts by from
`_config` (expiry lead times, how long a queued job may wait); `load()` evaluates it through the jsonnet
binding, with an optional patch merged into `_config` the way `alerting.build.evaluate` merges it, so a
user's override reaches both the rules and the dashboards.

`sentinels()` stands in for `load()` when dashboards/build.py renders the jsonnet template behind the
mixin's `grafanaDashboards`: each value is a number that appears nowhere else, so the rendered JSON can be
turned back into jsonnet that takes the thresholds as a parameter. That is why dashboard code must use
these values only as they are (formatted into PromQL or placed in threshold steps), never compute with them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import _jsonnet

from certloop.alerting.build import ALERTING_DIR
from certloop.alerting.errors import BuildError

THRESHOLDS_LIB = "lib/dashboard_thresholds.libsonnet"
# Sentinels are SENTINEL_BASE + field index: in declaration order, so ordered steps stay ordered.
SENTINEL_BASE = 987_650_000


@dataclass(frozen=True)
class Thresholds:
    """Field names are the jsonnet object's keys (camelCase), so the two cannot drift apart silently.

    Declared so that values that must increase within one set of threshold steps do here too
    (critical ceiling before warning ceiling).
    """

    expiryWarningDivisor: float
    expiryWarningFloorSeconds: float
    expiryWarningCeilingSeconds: float
    expiryCriticalCeilingDays: float
    expiryWarningCeilingDays: float
    renewerQueueStuckSeconds: float
    renewerWebhookErrorRatio: float
    renewerWebhookP99Seconds: float


def names() -> list[str]:
    return [f.name for f in fields(Thresholds)]


def load(config_patch: Mapping[str, Any] | None = None) -> Thresholds:
    """Evaluate the thresholds from alerting/config.libsonnet with `config_patch` merged into `_config`."""
    snippet = (
        "local base = import 'mixin.libsonnet';\n"
        "local m = base + { _config:: std.mergePatch(super._config, std.parseJson(std.extVar('patch'))) };\n"
        f"(import '{THRESHOLDS_LIB}')(m._config)\n"
    )
    try:
        rendered = _jsonnet.evaluate_snippet("certloop-dashboard-thresholds", snippet,
                                             jpathdir=[str(ALERTING_DIR)],
                                             ext_vars={"patch": json.dumps(dict(config_patch or {}))})
    except RuntimeError as exc:  # _jsonnet reports every evaluation error as RuntimeError
        raise BuildError(f"jsonnet evaluation failed: {exc}") from exc
    data = json.loads(rendered)
    if set(data) != set(names()):
        raise BuildError(f"{THRESHOLDS_LIB} yields {sorted(data)}, the dashboards expect {names()}")
    return Thresholds(**data)


def sentinels() -> Thresholds:
    """Stand-in values, each unique and in declaration order (see the module docstring)."""
    return Thresholds(**{name: SENTINEL_BASE + i for i, name in enumerate(names())})
