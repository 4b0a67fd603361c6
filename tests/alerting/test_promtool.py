"""`promtool test rules`: every alert is proven silent before its condition and firing after it.

The unit tests live in alerting/tests/*_test.yml and run against the committed generated rules;
the files in RENDERED run against the mixin rendered with their config patch (here, into a temp dir):
overrides_test.yml with per-label expiry overrides, severity_levels_test.yml with severityLevels 'three'.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from certloop.alerting.build import RULES_FILE, render
from tests.alerting import severity_levels
from tests.alerting.rules import PROMTOOL_TESTS, ROOT, RUNBOOKS, alerts

OVERRIDES = {"expiry": {"overrides": [
    {"selector": 'certificate="vpn"', "warning": "45d", "critical": "20d"},
    {"selector": 'team="payments"', "warning": "21d", "critical": "7d"},
]}}
THREE_LEVELS = {"severityLevels": "three"}
# test file -> (the rules file it names, the config patch that file is rendered with)
RENDERED = {
    "overrides_test.yml": ("certloop-overrides.rules.yml", OVERRIDES),
    "severity_levels_test.yml": (severity_levels.RULES_FILE, THREE_LEVELS),
}
TEST_FILES = sorted(p.name for p in PROMTOOL_TESTS.glob("*_test.yml"))


def _promtool_test(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", "test", "rules", path.name], capture_output=True, text=True,
                          cwd=path.parent, timeout=120)


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((PROMTOOL_TESTS / name).read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize("name", [n for n in TEST_FILES if n not in RENDERED])
def test_promtool_unit_tests_pass(name: str) -> None:
    """Each promtool unit test file passes against the committed generated rules."""
    result = _promtool_test(PROMTOOL_TESTS / name)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_promtool_tests_of_a_rendered_config_pass(tmp_path: Path, name: str) -> None:
    """Overrides (per-label lead times, three severity levels) rendered into the rules change what fires."""
    rules_name, patch = RENDERED[name]
    render(tmp_path, patch)
    (tmp_path / RULES_FILE).rename(tmp_path / rules_name)
    shutil.copy(PROMTOOL_TESTS / name, tmp_path / name)
    assert _load(name)["rule_files"] == [rules_name]
    result = _promtool_test(tmp_path / name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_three_level_cases_are_derived_from_the_four_level_ones() -> None:
    """severity_levels_test.yml is what tests.alerting.severity_levels derives from the current sources."""
    assert severity_levels.PATH.read_text(encoding="utf-8") == severity_levels.derive(), (
        "alerting/tests/severity_levels_test.yml is stale: run `.venv/bin/python -m tests.alerting.severity_levels`"
    )


def test_three_levels_fail_against_the_four_level_rules(tmp_path: Path) -> None:
    """The switch is what makes severity_levels_test.yml pass: against the default rules it fails."""
    shutil.copy(ROOT / "alerting" / "generated" / RULES_FILE, tmp_path / RENDERED["severity_levels_test.yml"][0])
    shutil.copy(PROMTOOL_TESTS / "severity_levels_test.yml", tmp_path / "severity_levels_test.yml")
    result = _promtool_test(tmp_path / "severity_levels_test.yml")
    assert result.returncode != 0
    assert "CertloopExporterDown" in result.stdout + result.stderr


def test_promtool_catches_a_wrong_expectation(tmp_path: Path) -> None:
    """The harness can fail: the same tests with one expected severity changed are rejected by promtool."""
    text = (PROMTOOL_TESTS / "health_test.yml").read_text(encoding="utf-8")
    broken = text.replace("{severity: major, job: certloop-exporter", "{severity: critical, job: certloop-exporter", 1)
    assert broken != text
    (tmp_path / "generated").mkdir()
    shutil.copy(ROOT / "alerting" / "generated" / RULES_FILE, tmp_path / "generated" / RULES_FILE)
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "health_test.yml").write_text(broken, encoding="utf-8")
    result = _promtool_test(tmp_path / "t" / "health_test.yml")
    assert result.returncode != 0
    assert "CertloopExporterDown" in result.stdout + result.stderr


def test_every_alert_has_a_silent_and_a_firing_case() -> None:
    """For every generated alert some promtool case expects it silent and some expects it firing
    with its severity label asserted."""
    silent: set[str] = set()
    firing: set[str] = set()
    for name in TEST_FILES:
        for case in _load(name)["tests"]:
            for check in case.get("alert_rule_test", []):
                if check["exp_alerts"]:
                    for expected in check["exp_alerts"]:
                        assert "severity" in expected["exp_labels"], (name, check["alertname"])
                    firing.add(check["alertname"])
                else:
                    silent.add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - firing == set(), "alerts without a firing promtool case"
    assert names - silent == set(), "alerts without a silent promtool case"


def test_every_alert_has_a_runbook_and_a_docs_entry() -> None:
    """docs/runbooks/<alert>.md exists with what to check and do, and docs/alerts.md lists the alert."""
    index = (ROOT / "docs" / "alerts.md").read_text(encoding="utf-8")
    for rule in alerts():
        name = rule["alert"]
        runbook = RUNBOOKS / f"{name}.md"
        assert runbook.is_file(), f"missing runbook {runbook}"
        text = runbook.read_text(encoding="utf-8")
        for section in ("## Meaning", "## Diagnosis", "## Mitigation"):
            assert section in text, f"{runbook}: no {section}"
        assert "```" in text, f"{runbook}: no concrete commands"
        assert f"[{name}](runbooks/{name}.md)" in index, f"docs/alerts.md does not list {name}"
        assert f"| {rule['labels']['severity']} |" in index.split(f"[{name}]", 1)[1].split("\n", 1)[0]
    documented = {p.stem for p in RUNBOOKS.glob("*.md")}
    assert documented == {rule["alert"] for rule in alerts()}, "runbooks for alerts that do not exist"
