"""Certificate detail: one certificate (or target) at a time: its chain, verdict, probe history, renewal.

Pick the `certificate` label (set on renewable endpoints and file groups) and/or the `target`; both
default to All so certificates without a `certificate` label are reachable by target alone.
"""

from __future__ import annotations

from typing import Any

from certloop.dashboards import style as s
from certloop.dashboards.overview import days_left_thresholds
from certloop.dashboards.style import Query, Size
from certloop.dashboards.thresholds import Thresholds

D = 'certificate=~"$certificate", target=~"$target"'
C = 'certificate=~"$certificate"'
KEY = "source, target, address"
IDENTITY = "subject, issuer, serial, key_type, key_bits, signature_algorithm"

OK_FAIL = s.value_text({"0": ("failing", s.RED), "1": ("ok", s.GREEN)})
MATCH = s.value_text({"0": ("differs", s.ORANGE), "1": ("same", s.GREEN)})


def _now(t: Thresholds) -> list[Any]:
    small = Size(4, 4)
    return [
        s.row("Now"),
        s.stat("Chain expires", "When the first certificate of the presented chain (leaf or intermediate) "
               "expires: the earliest notAfter over every selected target.",
               Query(f"min(certloop_chain_expiry_timestamp_seconds{{{D}}}) {s.MS}", instant=True),
               unit=s.UNIT_DATE_FROM_NOW, size=small, th=s.thresholds(s.BLUE), no_value="no data"),
        s.stat("Days left", "Days until the earliest chain expiry; negative when already expired.",
               Query(f"(min(certloop_chain_expiry_timestamp_seconds{{{D}}}) - time()) / 86400", instant=True),
               decimals=1, size=small, th=days_left_thresholds(t), color_mode="background", no_value="no data"),
        s.stat("Verdict", "Current verification verdict of each selected chain (ok, expired, "
               "unknown_authority, incomplete_chain, self_signed, hostname_mismatch, ...).",
               Query(f"count by (verdict) (certloop_verify_verdict{{{D}}})", legend="{{verdict}}",
                     instant=True),
               size=small, text_mode="name", color_mode="none", no_value="no data"),
        s.stat("Probe", "Whether the last probe of every selected endpoint or file succeeded.",
               Query(f"min(certloop_probe_success{{{D}}})", instant=True), size=small, mappings=OK_FAIL,
               color_mode="background", no_value="no data"),
        s.stat("Hostname", "Whether the leaf covers the server name used for each selected endpoint.",
               Query(f"min(certloop_hostname_match{{{D}}})", instant=True), size=small,
               mappings=s.value_text({"0": ("mismatch", s.RED), "1": ("covered", s.GREEN)}),
               color_mode="background", no_value="n/a"),
        s.stat("TLS version", "Negotiated TLS protocol versions across the selected endpoints.",
               Query(f"count by (version) (certloop_tls_version_info{{{D}}})", legend="{{version}}",
                     instant=True),
               size=small, text_mode="name", color_mode="none", no_value="n/a"),
    ]


def _chain(t: Thresholds) -> list[Any]:
    def joined(expr: str) -> str:
        return f"{expr} * on({KEY}, position) group_left({IDENTITY}) certloop_cert_info{{{D}}}"

    date_th = s.thresholds(s.BLUE)
    return [
        s.row("Chain"),
        s.table("Chain", "Each certificate of the presented chain or file by position (0 = leaf) with its "
                "identity and validity; days left turn red once a position has expired.",
                Query(joined(f"(certloop_cert_not_after_timestamp_seconds{{{D}}} - time()) / 86400"),
                      instant=True, table=True),
                Query(joined(f"certloop_cert_not_after_timestamp_seconds{{{D}}} {s.MS}"),
                      instant=True, table=True),
                Query(joined(f"certloop_cert_not_before_timestamp_seconds{{{D}}} {s.MS}"),
                      instant=True, table=True),
                merge=True, size=Size(24, 9), sort_by="Position",
                columns={"target": "Target", "address": "Address", "position": "Position", "role": "Role",
                         "subject": "Subject", "issuer": "Issuer", "Value #A": "Days left",
                         "Value #B": "Not after", "Value #C": "Not before", "serial": "Serial",
                         "key_type": "Key", "key_bits": "Bits", "signature_algorithm": "Signature"},
                hide=("certificate", "team", "source"),
                overrides=[s.column_unit("Days left", s.UNIT_NONE, days_left_thresholds(t), cell="color-background"),
                           s.column_unit("Not after", s.UNIT_DATE_ISO, date_th),
                           s.column_unit("Not before", s.UNIT_DATE_ISO, date_th)]),
        s.table("TLS", "Negotiated TLS version and cipher per address.",
                Query(f"certloop_tls_version_info{{{D}}}", instant=True, table=True),
                size=Size(12, 6), hide=("Value", "certificate", "team", "source"),
                columns={"target": "Target", "address": "Address", "version": "Version", "cipher": "Cipher"}),
        s.table("Weak crypto", "Positions with a weak key or signature algorithm (1 = weak).",
                Query(f"certloop_cert_weak_crypto{{{D}}}", instant=True, table=True),
                size=Size(12, 6), hide=("certificate", "team", "source"),
                columns={"target": "Target", "address": "Address", "position": "Position", "role": "Role",
                         "Value": "Weak"},
                overrides=[s.column_unit("Weak", s.UNIT_NONE, s.thresholds(s.GREEN, (1, s.RED)),
                                         cell="color-text")]),
    ]


def _history() -> list[Any]:
    lane = "{{target}} {{address}}"
    return [
        s.row("Verification and probe history"),
        s.timeline("Verification", "Whether each selected chain verified against the trust store over time.",
                   Query(f"certloop_verify_ok{{{D}}}", legend=lane), mappings=OK_FAIL, size=Size(12, 7)),
        s.timeline("Probe", "Whether each probe of the selected endpoints and files succeeded over time.",
                   Query(f"certloop_probe_success{{{D}}}", legend=lane), mappings=OK_FAIL, size=Size(12, 7)),
        s.timeseries("Verdicts over time", "Which verdict each selected chain had, as a count per verdict.",
                     Query(f"count by (verdict) (certloop_verify_verdict{{{D}}})", legend="{{verdict}}"),
                     bars=True, stacked=True, minimum=0, size=Size(12, 8)),
        s.timeseries("Probe failures by reason", "Failing probes per reason; empty while everything answers.",
                     Query(f"count by (reason) (certloop_probe_failure_reason{{{D}}})", legend="{{reason}}"),
                     bars=True, stacked=True, minimum=0, size=Size(12, 8)),
        s.timeseries("Probe duration", "Wall time of the last probe of each endpoint or file.",
                     Query(f"certloop_probe_duration_seconds{{{D}}}", legend=lane), unit=s.UNIT_SECONDS,
                     th=s.thresholds(s.GREEN, (5, s.ORANGE)), threshold_style="line", size=Size(12, 8)),
        s.timeline("Served certificate equals file", "Drift: whether the served leaf equals the leaf of "
                   "expect_file (only for endpoints configured with expect_file).",
                   Query(f"certloop_endpoint_matches_file{{{D}}}", legend=lane), mappings=MATCH,
                   size=Size(12, 8)),
        s.timeline("Addresses consistent", "Whether every address of the name served the same leaf.",
                   Query(f"certloop_endpoint_addresses_consistent{{{D}}}", legend="{{target}}"),
                   mappings=MATCH, size=Size(24, 5)),
    ]


def _renewal() -> list[Any]:
    small = Size(6, 4)
    return [
        s.row("Renewal"),
        s.stat("Last renewal", "When the renewer last renewed and verified this certificate.",
               Query(f"max(certloop_renewer_last_success_timestamp_seconds{{{C}}}) {s.MS}", instant=True),
               unit=s.UNIT_DATE_FROM_NOW, size=small, th=s.thresholds(s.BLUE), no_value="never"),
        s.stat("Last result", "Result of the renewer's last finished attempt for this certificate.",
               Query(f"count by (result) (certloop_renewer_last_result{{{C}}} == 1)", legend="{{result}}",
                     instant=True),
               size=small, text_mode="name", color_mode="none", no_value="none"),
        s.stat("Next due", "When the renewer's safety net will renew even without an alert.",
               Query(f"min(certloop_renewer_next_due_timestamp_seconds{{{C}}}) {s.MS}", instant=True),
               unit=s.UNIT_DATE_FROM_NOW, size=small, th=s.thresholds(s.BLUE), no_value="not managed"),
        s.stat("Installed certificate expires", "notAfter of the certificate the renewer last installed; "
               "compare with the chain expiry above to spot a renewal that is not being served.",
               Query(f"min(certloop_renewer_certificate_not_after_timestamp_seconds{{{C}}}) {s.MS}",
                     instant=True),
               unit=s.UNIT_DATE_FROM_NOW, size=small, th=s.thresholds(s.BLUE), no_value="not managed"),
    ]


def spec(t: Thresholds) -> s.Spec:
    return s.Spec(
        module_file=__file__,
        title="certloop / Certificate detail",
        description="One certificate: chain with each position's expiry, verification and probe history, "
                    "TLS, drift and its renewal state.",
        variables=[
            s.label_variable("certificate", "Certificate", "certloop_probe_success"),
            s.label_variable("target", "Target", 'certloop_probe_success{certificate=~"$certificate"}'),
        ],
        links=[s.Link("Certificates overview", s.uid_for("overview.py"), vars=False),
               s.Link("Renewals", s.uid_for("renewals.py"))],
        panels=[*_now(t), *_chain(t), *_history(), *_renewal()],
        time_from="now-7d",
    )


def build(t: Thresholds) -> dict[str, Any]:
    """The Grafana JSON model of this dashboard with the mixin's thresholds `t`."""
    return s.dashboard(spec(t))
