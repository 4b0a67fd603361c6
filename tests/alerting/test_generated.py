"""The committed rule files are what the mixin renders, and Prometheus accepts them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from certloop.alerting.build import GENERATED_DIR, PROMETHEUS_RULE_FILE, RULES_FILE, evaluate, render
from certloop.alerting.errors import BuildError
from tests.alerting.rules import ROOT, SEVERITIES, alerts, load_rules


@pytest.mark.parametrize("name", [RULES_FILE, PROMETHEUS_RULE_FILE])
def test_committed_files_match_a_fresh_render(tmp_path: Path, name: str) -> None:
    """Regenerating from alerting/*.libsonnet reproduces the committed file byte for byte."""
    render(tmp_path)
    fresh = (tmp_path / name).read_text(encoding="utf-8")
    committed = (GENERATED_DIR / name).read_text(encoding="utf-8")
    assert fresh == committed, f"alerting/generated/{name} is stale: run `make generate` and commit the result"


def test_render_is_deterministic(tmp_path: Path) -> None:
    """Two renders give identical bytes (no dict-order or timestamp noise)."""
    first = [p.read_bytes() for p in render(tmp_path / "a")]
    second = [p.read_bytes() for p in render(tmp_path / "b")]
    assert first == second


def test_promtool_accepts_the_rules_file() -> None:
    """`promtool check rules` passes on the generated rules file (syntax, PromQL, templates, no duplicates)."""
    result = subprocess.run(["promtool", "check", "rules", str(GENERATED_DIR / RULES_FILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_prometheusrule_manifest_carries_the_same_groups() -> None:
    """The PrometheusRule manifest wraps exactly the plain file's groups for prometheus-operator."""
    manifest = yaml.safe_load((GENERATED_DIR / PROMETHEUS_RULE_FILE).read_text(encoding="utf-8"))
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["kind"] == "PrometheusRule"
    assert manifest["metadata"]["name"] == "certloop"
    assert manifest["spec"]["groups"] == load_rules()["groups"]


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    """Each alert has one of the four severities, a summary and description in words and its runbook link."""
    found = alerts()
    assert len(found) >= 20
    for rule in found:
        name = rule["alert"]
        assert name.startswith("Certloop"), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        assert annotations["runbook_url"] == (
            f"https://github.com/certloop/certloop/blob/main/docs/runbooks/{name}.md"
        )
    assert {r["labels"]["severity"] for r in found} == set(SEVERITIES)


def test_build_cli_writes_both_files(tmp_path: Path) -> None:
    """`python -m alerting.build --out DIR` (what `make generate` runs) writes both files and exits 0."""
    result = subprocess.run([sys.executable, "-m", "certloop.alerting.build", "--out", str(tmp_path)],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([RULES_FILE, PROMETHEUS_RULE_FILE])


def test_a_bad_duration_knob_is_a_build_error_naming_it() -> None:
    """A malformed duration in the config fails the build with the offending value, not with bad PromQL."""
    with pytest.raises(BuildError, match=r'expected a duration like "30d", got "30 days"'):
        evaluate({"expiry": {"warningCeiling": "30 days"}})


def test_overrides_render_in_priority_order() -> None:
    """Per-label overrides come before the relative default in the threshold rule, in the order given."""
    rules = evaluate({"expiry": {"overrides": [
        {"selector": 'certificate="vpn"', "warning": "45d", "critical": "20d"},
        {"selector": 'team="payments"', "warning": "21d", "critical": "7d"},
    ]}})
    [warning] = [r for g in rules["groups"] for r in g["rules"]
                 if r.get("record") == "certloop:cert_expiry_warning_threshold_seconds"]
    lines = warning["expr"].splitlines()
    assert lines[0] == '0 * certloop:cert_lifetime_seconds{role="leaf",certificate="vpn"} + 3888000'
    assert lines[1] == 'or 0 * certloop:cert_lifetime_seconds{role="leaf",team="payments"} + 1814400'
    assert lines[2].startswith("or clamp(certloop:cert_lifetime_seconds")
