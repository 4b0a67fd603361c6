"""Alertmanager webhook payloads (v4) -> renewal requests: the pure triage, on committed fixtures."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from certloop.renewer.config import DEFAULT_ALERTNAMES
from certloop.renewer.errors import PayloadError
from certloop.renewer.intake import parse_time, triage

FIXTURES = Path(__file__).parent / "fixtures"
CONFIGURED = {"shop", "blog", "api"}


def _triage(name: str):
    return triage((FIXTURES / name).read_bytes(), configured=CONFIGURED, renew_on=DEFAULT_ALERTNAMES)


def test_firing_alert_for_a_configured_certificate_becomes_one_request() -> None:
    """A firing renewable alert naming a configured id yields a request with the alert's start time."""
    tri = _triage("firing.json")
    assert [r.certificate for r in tri.requests] == ["shop"]
    assert tri.requests[0].alertname == "CertloopCertificateExpiringSoon"
    assert tri.requests[0].starts_at == datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC)
    assert tri.ignored == ()


def test_resolved_alert_is_ignored_with_its_outcome() -> None:
    """Resolved alerts never trigger a renewal; they are reported as resolved_ignored."""
    tri = _triage("resolved.json")
    assert tri.requests == ()
    assert [i.outcome for i in tri.ignored] == ["resolved_ignored"]


def test_grouped_payload_gives_one_request_per_certificate() -> None:
    """Two alerts for one certificate give one request; other alertnames and resolved ones are ignored."""
    tri = _triage("grouped.json")
    assert sorted(r.certificate for r in tri.requests) == ["blog", "shop"]
    assert sorted(i.outcome for i in tri.ignored) == ["duplicate", "not_renewable", "resolved_ignored"]


def test_unknown_or_missing_certificate_label_is_ignored() -> None:
    """An id that is not configured, or no certificate label at all, is unknown_certificate."""
    tri = _triage("unknown_certificate.json")
    assert tri.requests == ()
    assert [i.outcome for i in tri.ignored] == ["unknown_certificate", "unknown_certificate"]


def test_hostile_label_values_never_become_requests_nor_echo() -> None:
    """Shell metacharacters, ../ and newlines fail the id charset check and are not echoed back."""
    tri = _triage("hostile_labels.json")
    assert tri.requests == ()
    assert {i.outcome for i in tri.ignored} == {"unknown_certificate"}
    for ignored in tri.ignored:
        assert "rm -rf" not in ignored.detail and ".." not in ignored.detail and "$(" not in ignored.detail


def test_truncated_payload_still_acts_on_the_alerts_it_carries() -> None:
    """truncatedAlerts is reported; the alerts present are still acted on (the safety net covers the rest)."""
    tri = _triage("truncated.json")
    assert tri.truncated == 7
    assert [r.certificate for r in tri.requests] == ["shop"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("malformed.json", "body is not valid JSON"),
        ("wrong_schema.json", 'version: expected "4"'),
        ("missing_alerts.json", "alerts: required field is missing"),
        ("bad_alert_status.json", "alerts[0].status:"),
    ],
)
def test_malformed_payloads_raise_a_message_naming_the_problem(name: str, message: str) -> None:
    """Each malformed fixture is rejected with a message that names what is wrong."""
    with pytest.raises(PayloadError) as err:
        _triage(name)
    assert message in err.value.message


def test_non_object_and_non_string_labels_are_rejected() -> None:
    """A JSON array body and a numeric label value are schema errors, not crashes."""
    with pytest.raises(PayloadError, match="expected a JSON object"):
        triage(b"[]", configured=CONFIGURED, renew_on=DEFAULT_ALERTNAMES)
    body = (FIXTURES / "firing.json").read_text().replace('"severity": "critical"', '"severity": 3')
    with pytest.raises(PayloadError, match=r"alerts\[0\]\.labels\.severity"):
        triage(body.encode(), configured=CONFIGURED, renew_on=DEFAULT_ALERTNAMES)


def test_custom_label_name_and_alert_list_are_honoured() -> None:
    """The label carrying the id and the renewable alertnames come from config."""
    body = (FIXTURES / "firing.json").read_text().replace('"certificate"', '"cert_id"').encode()
    tri = triage(body, configured=CONFIGURED, renew_on=["CertloopCertificateExpiringSoon"], label="cert_id")
    assert [r.certificate for r in tri.requests] == ["shop"]
    tri = triage(body, configured=CONFIGURED, renew_on=["SomethingElse"], label="cert_id")
    assert [i.outcome for i in tri.ignored] == ["not_renewable"]


def test_parse_time_handles_nanoseconds_offsets_and_the_zero_time() -> None:
    """Alertmanager's RFC 3339 with nanoseconds parses to aware UTC; Go's zero time is None."""
    assert parse_time("2026-01-02T03:04:05.999999999+02:00") == datetime(2026, 1, 2, 1, 4, 5, 999999, tzinfo=UTC)
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_time("yesterday") is None


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_a_body_nested_100000_deep_is_a_payload_error_not_a_recursion_error(opener: str) -> None:
    """json.loads overflows the stack on such a body: that is bad input (400), never a 500 traceback."""
    closer = "]" if opener == "[" else "}"
    body = (opener * 100_000 + "1" + closer * 100_000).encode()
    with pytest.raises(PayloadError, match="nested too deeply"):
        triage(body, configured=CONFIGURED, renew_on=DEFAULT_ALERTNAMES)


def test_a_certificate_label_with_a_trailing_newline_fails_the_charset_check() -> None:
    """``$`` matches before a final newline; the whole label must match the id charset."""
    body = (FIXTURES / "firing.json").read_text().replace('"certificate": "shop"', '"certificate": "shop\\n"')
    tri = triage(body.encode(), configured={*CONFIGURED, "shop\n"}, renew_on=DEFAULT_ALERTNAMES)
    assert tri.requests == ()
    assert [i.detail for i in tri.ignored] == ["no valid 'certificate' label"]
