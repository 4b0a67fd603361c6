"""Certificates overview: how many certificates are fine, which expire first, and what is wrong.

"Expiring" uses the warning threshold of alerting/config.libsonnet's `_config.expiry` (by default: less
than a third of the leaf's validity period remains, clamped to [1d, 30d], so 6-day and 90-day
certificates both behave), read through dashboards.thresholds, so an override of those knobs changes
the dashboard with the alerts. Per-label `expiry.overrides` are not reflected here. Counts are per
probed series (source, target, address).
"""

from __future__ import annotations

from typing import Any

from certloop.dashboards import style as s
from certloop.dashboards.style import Query, Size
from certloop.dashboards.thresholds import Thresholds

F = 'source=~"$source", team=~"$team"'
LEAF = f'position="0", {F}'
NOT_AFTER = f"certloop_cert_not_after_timestamp_seconds{{{LEAF}}}"
NOT_BEFORE = f"certloop_cert_not_before_timestamp_seconds{{{LEAF}}}"
LEFT = f"({NOT_AFTER} - time())"
LIFETIME = f"({NOT_AFTER} - {NOT_BEFORE})"
KEY = "source, target, address"

ANY_BAD_TH = s.thresholds(s.GREEN, (1, s.RED))
ANY_WARN_TH = s.thresholds(s.GREEN, (1, s.ORANGE))

DETAIL_UID = s.uid_for("detail.py")
# Every table row opens the Certificate detail dashboard on that row: the Certificate column selects the
# certificate (all its targets), the Target column the target whatever its certificate label (endpoints
# without one are reachable too).
TO_DETAIL = [
    s.column_link("Certificate", "Certificate detail", DETAIL_UID,
                  {"certificate": "${__value.raw}", "target": "$__all"}),
    s.column_link("Target", "Certificate detail", DETAIL_UID,
                  {"certificate": "$__all", "target": "${__value.raw}"}),
]


def expiring(t: Thresholds) -> str:
    """Leaves past the warning threshold and not expired, as certloop:cert_expiry_warning_threshold_seconds
    computes it without per-label overrides."""
    warning_at = (f"clamp_min(clamp_max({LIFETIME} / {t.expiryWarningDivisor}, {t.expiryWarningCeilingSeconds}),"
                  f" {t.expiryWarningFloorSeconds})")
    return f"(({LEFT} < {warning_at}) > 0)"


def days_left_thresholds(t: Thresholds) -> dict[str, Any]:
    """Red once expired, orange within the critical ceiling, yellow within the warning ceiling, else green."""
    return s.thresholds(s.RED, (0, s.ORANGE), (t.expiryCriticalCeilingDays, s.YELLOW),
                        (t.expiryWarningCeilingDays, s.GREEN))


def _status_row(t: Thresholds) -> list[Any]:
    small = Size(3, 4)
    expiring_now = expiring(t)
    return [
        s.row("Status"),
        s.stat("Watched", "Certificate endpoints and files the exporter probes (one per source, target and "
               "address).", Query(f"count(certloop_probe_success{{{F}}})", instant=True),
               size=small, th=s.thresholds(s.BLUE), color_mode="background"),
        s.stat("OK", "Chains that verify and are not expiring (see Expiring).",
               Query(f"count(certloop_verify_ok{{{F}}} == 1 unless on({KEY}) {expiring_now})", instant=True),
               size=small, th=s.thresholds(s.GREEN), color_mode="background"),
        s.stat("Expiring", "Leaf certificates past the warning threshold that have not expired yet: less "
               "than 1/expiry.warningDivisor of the validity period left, clamped to [warningFloor, "
               "warningCeiling] of the alerting mixin's config (per-label overrides are not applied here).",
               Query(f"count({expiring_now})", instant=True), size=small, th=ANY_WARN_TH,
               color_mode="background"),
        s.stat("Expired", "Leaf certificates whose notAfter is in the past. They are still exported so "
               "the date stays visible.", Query(f"count({LEFT} <= 0)", instant=True), size=small,
               th=ANY_BAD_TH, color_mode="background"),
        s.stat("Invalid", "Chains whose verdict is neither ok nor expired: unknown authority, incomplete "
               "chain, self-signed, hostname mismatch, expired intermediate, not yet valid, invalid.",
               Query(f'count(certloop_verify_verdict{{verdict!~"ok|expired", {F}}})', instant=True),
               size=small, th=ANY_BAD_TH, color_mode="background"),
        s.stat("Unreachable", "Endpoints that did not answer with a certificate and files that could not "
               "be read or parsed (probe_success = 0).",
               Query(f"count(certloop_probe_success{{{F}}} == 0)", instant=True), size=small,
               th=ANY_BAD_TH, color_mode="background"),
        s.stat("Drift", "Endpoints serving a different leaf than the file they are expected to serve "
               "(renewed on disk but not reloaded).",
               Query(f"count(certloop_endpoint_matches_file{{{F}}} == 0)", instant=True), size=small,
               th=ANY_WARN_TH, color_mode="background"),
        s.stat("Inconsistent", "Names whose addresses do not all serve the same leaf certificate.",
               Query(f"count(certloop_endpoint_addresses_consistent{{{F}}} == 0)", instant=True),
               size=small, th=ANY_WARN_TH, color_mode="background"),
    ]


def _soonest_table(t: Thresholds) -> list[Any]:
    expr = (
        f"sort({LEFT} / 86400"
        f" * on({KEY}, position) group_left(issuer, subject) certloop_cert_info{{{LEAF}}}"
        f" * on({KEY}) group_left(verdict) certloop_verify_verdict{{{F}}})"
    )
    return [
        s.row("Soonest expiring"),
        s.table("Certificates by days left",
                "Every observed leaf certificate, soonest expiry first, with its issuer (from "
                "certloop_cert_info) and current verdict. Negative days mean already expired.",
                Query(expr, instant=True, table=True),
                size=Size(24, 10), sort_by="Days left",
                columns={"certificate": "Certificate", "team": "Team", "source": "Source",
                         "target": "Target", "address": "Address", "issuer": "Issuer",
                         "subject": "Subject", "verdict": "Verdict", "Value": "Days left"},
                hide=("position", "role"),
                overrides=[s.column_unit("Days left", s.UNIT_NONE, days_left_thresholds(t),
                                         cell="color-background"), *TO_DETAIL]),
        s.bargauge("Leaf certificates by issuer", "How many observed leaf certificates each issuer "
                   "signed; a renewal that silently switches CA shows up here.",
                   Query(f"count by (issuer) (certloop_cert_info{{{LEAF}}})", legend="{{issuer}}",
                         instant=True),
                   size=Size(12, 8), th=s.thresholds(s.BLUE)),
        s.table("Weak keys or signatures", "Certificates in a chain with an RSA key under 2048 bits, an "
                "EC key under 256 bits, or a SHA-1/MD5 signature.",
                Query(f"(certloop_cert_weak_crypto{{{F}}} == 1) * on({KEY}, position) "
                      f"group_left(key_type, key_bits, signature_algorithm, subject) "
                      f"certloop_cert_info{{{F}}}", instant=True, table=True),
                size=Size(12, 8), hide=("Value",), overrides=TO_DETAIL,
                columns={"certificate": "Certificate", "target": "Target", "address": "Address",
                         "role": "Role", "subject": "Subject", "key_type": "Key", "key_bits": "Bits",
                         "signature_algorithm": "Signature"}),
    ]


def _problems() -> list[Any]:
    return [
        s.row("Problems"),
        s.timeseries("Verification problems by verdict", "Number of chains per failing verdict over time.",
                     Query(f'count by (verdict) (certloop_verify_verdict{{verdict!="ok", {F}}})',
                           legend="{{verdict}}"), bars=True, stacked=True, minimum=0),
        s.timeseries("Probe failures by reason", "Number of failing probes per reason over time (network "
                     "reasons for endpoints, file reasons for files).",
                     Query(f"count by (reason) (certloop_probe_failure_reason{{{F}}})", legend="{{reason}}"),
                     bars=True, stacked=True, minimum=0),
        s.table("Failing verification", "Chains that do not verify right now and why.",
                Query(f'certloop_verify_verdict{{verdict!="ok", {F}}}', instant=True, table=True),
                size=Size(12, 8), hide=("Value",), overrides=TO_DETAIL,
                columns={"certificate": "Certificate", "source": "Source", "target": "Target",
                         "address": "Address", "verdict": "Verdict"}),
        s.table("Failing probes", "Endpoints and files that currently cannot be probed, with the reason.",
                Query(f"certloop_probe_failure_reason{{{F}}}", instant=True, table=True),
                size=Size(12, 8), hide=("Value",), overrides=TO_DETAIL,
                columns={"certificate": "Certificate", "source": "Source", "target": "Target",
                         "address": "Address", "reason": "Reason"}),
    ]


def _drift() -> list[Any]:
    return [
        s.row("Drift and consistency"),
        s.table("Served certificate differs from file", "Endpoints whose served leaf is not the leaf in "
                "expect_file: the certificate was renewed on disk but the server was not reloaded.",
                Query(f"certloop_endpoint_matches_file{{{F}}} == 0", instant=True, table=True),
                size=Size(12, 8), hide=("Value",), overrides=TO_DETAIL,
                columns={"certificate": "Certificate", "target": "Target", "address": "Address",
                         "expect_file": "Expected file"}),
        s.table("Addresses serving different certificates", "Names where not every resolved address serves "
                "the same leaf (a forgotten node or load-balancer member).",
                Query(f"certloop_endpoint_addresses_consistent{{{F}}} == 0", instant=True, table=True),
                size=Size(12, 8), hide=("Value",), overrides=TO_DETAIL,
                columns={"certificate": "Certificate", "source": "Source", "target": "Target"}),
    ]


def spec(t: Thresholds) -> s.Spec:
    return s.Spec(
        module_file=__file__,
        title="certloop / Certificates overview",
        description="Every certificate certloop watches: status counts, soonest expiry, problems, drift.",
        variables=[
            s.label_variable("source", "Source", "certloop_probe_success"),
            s.label_variable("team", "Team", "certloop_probe_success"),
        ],
        links=[s.Link("Certificate detail", DETAIL_UID),
               s.Link("Renewals", s.uid_for("renewals.py")),
               s.Link("Exporter health", s.uid_for("exporter_health.py"), vars=False)],
        panels=[*_status_row(t), *_soonest_table(t), *_problems(), *_drift()],
    )


def build(t: Thresholds) -> dict[str, Any]:
    """The Grafana JSON model of this dashboard with the mixin's thresholds `t`."""
    return s.dashboard(spec(t))
