"""Dashboards and alerts share one set of thresholds: the alerting mixin's `_config`.

The numbers the dashboards colour and count by are read from alerting/config.libsonnet (dashboards.thresholds);
the mixin's template of the dashboards (alerting/generated/dashboards.libsonnet) is the same render with
those numbers as a parameter, and stays fresh.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from certloop.alerting.build import evaluate
from certloop.alerting.errors import BuildError
from certloop.dashboards import build, thresholds
from certloop.dashboards import style as s
from certloop.dashboards.style import Query
from certloop.dashboards.thresholds import Thresholds
from tests.dashboards.model import ROOT

TEMPLATE = ROOT / "alerting" / "generated" / "dashboards.libsonnet"


def _rule(rules: dict[str, Any], name: str) -> str:
    [expr] = [r["expr"] for g in rules["groups"] for r in g["rules"] if name in (r.get("record"), r.get("alert"))]
    return str(expr)


def test_committed_mixin_template_is_fresh() -> None:
    """alerting/generated/dashboards.libsonnet is what `make generate` renders from dashboards/*.py now."""
    assert TEMPLATE.read_text(encoding="utf-8") == build.mixin_template(), (
        "alerting/generated/dashboards.libsonnet is stale: run `make generate` and commit"
    )


@pytest.mark.parametrize("patch", [None, {"expiry": {"warningDivisor": 4, "warningFloor": "2d", "warningCeiling": "45d",
                                                     "criticalCeiling": "20d"},
                                          "renewerQueueStuckAfter": "90m"}], ids=["defaults", "override"])
def test_dashboard_thresholds_are_the_rules_thresholds(patch: dict[str, Any] | None) -> None:
    """The thresholds the dashboards get are the numbers the rendered rules compare with, for the
    defaults and for an override."""
    t, rules = thresholds.load(patch), evaluate(patch)
    warning = re.search(r"/ (\S+), (\d+), (\d+)\)$", _rule(rules, "certloop:cert_expiry_warning_threshold_seconds"))
    critical = re.search(r", (\d+)\)$", _rule(rules, "certloop:cert_expiry_critical_threshold_seconds"))
    stuck = re.search(r"> (\d+)\n", _rule(rules, "CertloopRenewerQueueStuck"))
    assert warning and critical and stuck
    assert (t.expiryWarningDivisor, t.expiryWarningFloorSeconds, t.expiryWarningCeilingSeconds) == (
        float(warning[1]), int(warning[2]), int(warning[3]))
    assert t.expiryWarningCeilingDays * 86400 == int(warning[3])
    assert t.expiryCriticalCeilingDays * 86400 == int(critical[1])
    assert t.renewerQueueStuckSeconds == int(stuck[1])


def test_an_override_reaches_the_rendered_dashboards() -> None:
    """`render_all(patch)` colours days left by the overridden ceilings and counts "Expiring" with them."""
    files = build.render_all({"expiry": {"warningCeiling": "45d", "criticalCeiling": "20d"},
                              "renewerQueueStuckAfter": "2h"})
    overview = json.loads(files["overview.json"])
    [expiring] = [p for p in overview["panels"] if p.get("title") == "Expiring"]
    assert ", 3888000), 86400)" in expiring["targets"][0]["expr"]
    [table] = [p for p in overview["panels"] if p.get("title") == "Certificates by days left"]
    steps = table["fieldConfig"]["overrides"][0]["properties"][1]["value"]["steps"]
    assert [step["value"] for step in steps] == [None, 0, 20, 45]
    renewals = json.loads(files["renewals.json"])
    [oldest] = [p for p in renewals["panels"] if p.get("title") == "Oldest queued job"]
    assert [step["value"] for step in oldest["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [None, 7200]


def test_template_refuses_a_dashboard_that_computes_with_a_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """A threshold used in arithmetic (here: seconds turned into days in Python) cannot be made a jsonnet
    parameter; the build says so instead of writing a template that drifts from the Python render."""
    def computing(t: Thresholds) -> dict[str, Any]:
        panel = s.stat("Days", "Computed in Python.", Query("vector(1)"),
                       th=s.thresholds(s.GREEN, (t.expiryWarningCeilingSeconds / 86400, s.RED)))
        return s.dashboard(s.Spec(module_file="computing.py", title="t", description="d", panels=[panel]))

    monkeypatch.setattr(build, "DASHBOARDS", {"computing": computing})
    with pytest.raises(BuildError, match="computes with a threshold"):
        build.mixin_template()


def test_template_refuses_an_unused_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """A threshold no dashboard uses is reported, so the jsonnet side and the dashboards stay in step."""
    monkeypatch.setattr(build, "DASHBOARDS", {"overview": build.DASHBOARDS["overview"]})
    with pytest.raises(BuildError, match="renewerQueueStuckSeconds"):
        build.mixin_template()


def test_cli_takes_a_jsonnet_config_patch(tmp_path: Path) -> None:
    """`python -m dashboards.build --config-patch FILE` applies a jsonnet patch; a bad one is one clear error."""
    patch = tmp_path / "site.jsonnet"
    patch.write_text("{ renewerQueueStuckAfter: '%dm' % (3 * 10) }\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "certloop.dashboards.build", "--out", str(tmp_path / "out"),
                           "--config-patch", str(patch)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    renewals = (tmp_path / "out" / "renewals.json").read_text(encoding="utf-8")
    assert '"value": 1800' in renewals
    assert not (tmp_path / "out" / "dashboards.libsonnet").exists()
    patch.write_text("{ renewerQueueStuckAfter: '30 minutes' }\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "certloop.dashboards.build", "--out", str(tmp_path / "bad"),
                           "--config-patch", str(patch)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert 'expected a duration like "30d", got "30 minutes"' in done.stderr
    assert "Traceback" not in done.stderr
