"""The severity switch: certloop's four levels by default, kube-prometheus' three on request."""

from __future__ import annotations

import pytest

from certloop.alerting.build import evaluate
from certloop.alerting.errors import BuildError
from tests.alerting.rules import alerts

THREE = {"critical", "warning", "info"}


def _by_name(patch: dict[str, object] | None = None) -> dict[str, dict[str, str]]:
    return {rule["alert"]: rule["labels"] for rule in alerts(evaluate(patch))}


def test_default_is_four_levels_without_extra_labels() -> None:
    """By default severity is one of the four levels, major included, and no certloop_severity label."""
    labels = _by_name()
    assert {value["severity"] for value in labels.values()} == {"critical", "major", "warning", "info"}
    assert all(set(value) == {"severity"} for value in labels.values())


def test_three_levels_map_major_to_warning_and_keep_the_level() -> None:
    """severityLevels 'three': only critical/warning/info; certloop_severity is the level certloop meant."""
    four, three = _by_name(), _by_name({"severityLevels": "three"})
    assert set(four) == set(three)
    for name, labels in three.items():
        assert labels["severity"] in THREE, name
        assert labels["certloop_severity"] == four[name]["severity"], name
        expected = "warning" if four[name]["severity"] == "major" else four[name]["severity"]
        assert labels["severity"] == expected, name
    assert sum(1 for labels in three.values() if labels["certloop_severity"] == "major") >= 10


def test_severity_mapping_can_send_major_to_critical() -> None:
    """A site that pages on major maps it to critical instead."""
    labels = _by_name({"severityLevels": "three", "severityMapping": {"major": "critical"}})
    assert labels["CertloopExporterDown"] == {"severity": "critical", "certloop_severity": "major"}
    assert labels["CertloopCertificateExpiring"] == {"severity": "warning", "certloop_severity": "warning"}


@pytest.mark.parametrize(("patch", "message"), [
    ({"severities": {"exporterDown": "urgent"}},
     'severities.exporterDown: expected one of critical, major, warning, info, got "urgent"'),
    ({"severityLevels": "five"}, 'severityLevels: expected "four" or "three", got "five"'),
    ({"severityLevels": "three", "severityMapping": {"major": "major"}},
     'severityMapping.major: expected one of critical, warning, info, got "major"'),
])
def test_bad_severity_knobs_are_build_errors_naming_them(patch: dict[str, object], message: str) -> None:
    """A wrong level or switch value fails the render with the knob's name, not with odd rules."""
    with pytest.raises(BuildError, match=message.replace(".", r"\.")):
        evaluate(patch)
