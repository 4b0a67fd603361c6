"""Alerts exactly as the generated rules produce them (labels and annotations of promtool expectations),
for the Alertmanager and template tests."""

from __future__ import annotations

from typing import Any

import yaml

from tests.alerting.rules import PROMTOOL_TESTS


def promtool_alert(test_file: str, alertname: str, **labels: str) -> dict[str, Any]:
    """Labels and annotations of an alert exactly as the generated rules produce it (from a promtool case)."""
    cases = yaml.safe_load((PROMTOOL_TESTS / test_file).read_text(encoding="utf-8"))["tests"]
    for case in cases:
        for check in case.get("alert_rule_test", []):
            for alert in check["exp_alerts"] if check["alertname"] == alertname else []:
                if all(alert["exp_labels"].get(k) == v for k, v in labels.items()):
                    return {"labels": {"alertname": alertname, **alert["exp_labels"]},
                            "annotations": dict(alert["exp_annotations"])}
    raise LookupError(f"{test_file}: no {alertname} with {labels}")


def with_labels(alert: dict[str, Any], drop: tuple[str, ...] = (), **labels: str) -> dict[str, Any]:
    merged = {k: v for k, v in alert["labels"].items() if k not in drop} | labels
    return {"labels": merged, "annotations": alert["annotations"]}


SHOP_SOON = promtool_alert("certificates_test.yml", "CertloopCertificateExpiringSoon", certificate="shop")
SHOP_EXPIRING = promtool_alert("certificates_test.yml", "CertloopCertificateExpiring", certificate="shop")
SHOP_UNTRUSTED = promtool_alert("serving_test.yml", "CertloopCertificateVerificationFailing")
SHOP_RENEWAL_FAILED = promtool_alert("renewals_test.yml", "CertloopRenewalFailed")
API_EXPIRING = promtool_alert("certificates_test.yml", "CertloopCertificateExpiring", certificate="api")
API_EXPIRING = with_labels(API_EXPIRING, team="web")
LEGACY_EXPIRING = with_labels(API_EXPIRING, drop=("certificate",), target="legacy.example:443")
CN_SOON = with_labels(SHOP_SOON, certificate="cn-shop", team="platform-cn", target="cn.example:443")
