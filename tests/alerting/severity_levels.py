"""Derive alerting/tests/severity_levels_test.yml from the four-level promtool tests.

    .venv/bin/python -m tests.alerting.severity_levels      # rewrite the file after changing the sources

The three-level cases are copies of cases in health_test.yml and certificates_test.yml (one alert per
level) with only the severity labels changed: severity becomes THREE_LEVELS[level] and certloop_severity
keeps the level. test_promtool.py checks the committed file equals this derivation, so a changed
annotation in the sources cannot leave it stale.
"""

from __future__ import annotations

from typing import Any

import yaml

from tests.alerting.rules import PROMTOOL_TESTS

PATH = PROMTOOL_TESTS / "severity_levels_test.yml"
RULES_FILE = "certloop-three-levels.rules.yml"
THREE_LEVELS = {"critical": "critical", "major": "warning", "warning": "warning", "info": "info"}
# (source file, prefix of the case name, alert, case title): one alert of each level.
CASES = (
    ("health_test.yml", "exporter and renewer down", "CertloopExporterDown",
     "major becomes warning: CertloopExporterDown"),
    ("health_test.yml", "configuration reloads failing", "CertloopExporterConfigReloadFailing",
     "warning stays warning: CertloopExporterConfigReloadFailing"),
    ("certificates_test.yml", "expired:", "CertloopCertificateExpired",
     "critical stays critical: CertloopCertificateExpired"),
    ("certificates_test.yml", "disappeared: shop", "CertloopCertificateDisappeared",
     "info stays info: CertloopCertificateDisappeared"),
)
HEADER = (
    "# severityLevels: 'three' (kube-prometheus' critical/warning/info), run against certloop-three-levels.rules.yml\n"
    "# which tests/alerting/test_promtool.py renders with {severityLevels: 'three'}: major becomes warning, the\n"
    "# other levels keep their name, and certloop_severity carries the level certloop meant. Derived from\n"
    "# health_test.yml and certificates_test.yml by `python -m tests.alerting.severity_levels`: do not edit.\n"
)


def _case(source: str, prefix: str, alert: str, title: str) -> dict[str, Any]:
    doc = yaml.safe_load((PROMTOOL_TESTS / source).read_text(encoding="utf-8"))
    [case] = [c for c in doc["tests"] if c["name"].startswith(prefix)]
    checks = [check for check in case["alert_rule_test"] if check["alertname"] == alert]
    for check in checks:
        for expected in check["exp_alerts"]:
            labels = expected["exp_labels"]
            level = labels.pop("severity")
            expected["exp_labels"] = {"severity": THREE_LEVELS[level], "certloop_severity": level, **labels}
    return {"name": title, "interval": case["interval"], "input_series": case["input_series"],
            "alert_rule_test": checks}


def derive() -> str:
    document = {"rule_files": [RULES_FILE], "evaluation_interval": "1m",
                "tests": [_case(*spec) for spec in CASES]}
    return HEADER + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100000,
                                   default_flow_style=None)


if __name__ == "__main__":
    PATH.write_text(derive(), encoding="utf-8")
    print(PATH)
