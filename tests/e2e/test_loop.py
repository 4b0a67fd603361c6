"""The closed loop, end to end, on real peers: nginx, pebble (+ challtestsrv DNS), Prometheus with certloop's
rules, Alertmanager with the renewal route, and the certloop exporter and renewer as real processes.

The same `stack.loop.ClosedLoop` runs `make demo`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from stack.loop import CERT_ID, ClosedLoop, Event, reload_exporter
from tests.support.logfmt import parse_daemon_log


@pytest.fixture
def make_loop(tmp_path: Path) -> Iterator[type[ClosedLoop]]:
    loops: list[ClosedLoop] = []

    def factory(**kwargs: object) -> ClosedLoop:
        loop = ClosedLoop(tmp_path / f"loop{len(loops)}", say=print, **kwargs)  # type: ignore[arg-type]
        loops.append(loop)
        loop.start()
        return loop

    yield factory  # type: ignore[misc]
    for loop in loops:
        loop.stop()


def _daemon_records(loop: ClosedLoop) -> dict[str, list[dict[str, str]]]:
    """Every line both daemons wrote, parsed in the loop's --log.format (one record per line, or it fails)."""
    return {
        name: parse_daemon_log((loop.workdir / f"{name}.log").read_text(), loop.log_format)
        for name in ("exporter", "renewer")
    }


def _kinds(events: list[Event], kind: str) -> list[str]:
    return [e.text for e in events if e.kind == kind]


def test_expiring_certificate_is_renewed_served_and_its_alert_resolves_within_60s(make_loop) -> None:
    """nginx serves a certificate with 2 of 30 days left; with nobody touching anything, the expiry alert
    fires, Alertmanager calls the renewer, pebble issues, nginx serves the new leaf, and the alert resolves."""
    loop = make_loop()
    events = loop.watch_until_closed(timeout=60)

    alerts = _kinds(events, "alert")
    assert any(a.startswith("CertloopCertificateExpiringSoon firing (severity=critical") for a in alerts)
    renewal = _kinds(events, "renewal")
    assert any(": succeeded" in r for r in renewal), renewal
    # order: alert -> renewal -> new leaf served -> resolved
    order = [e.kind for e in events if e.kind in ("alert", "renewal", "served", "resolved")]
    assert order.index("alert") < order.index("renewal") < order.index("resolved")
    assert loop.served_fingerprint() != loop.initial_fingerprint

    # The renewer's state and metrics say so too.
    state = {c["id"]: c for c in loop.renewer_api("/api/v1/certificates")["certificates"]}[CERT_ID]
    assert state["last_success"] is not None
    metrics = requests.get(f"http://127.0.0.1:{loop.renewer_port}/metrics", timeout=5).text
    assert f'certloop_renewer_renewals_total{{certificate="{CERT_ID}",issuer="acme",result="succeeded"}} 1.0' in metrics
    # and the exporter now sees the file on disk and the served leaf agree
    loop.prometheus.wait_for(
        f'certloop_endpoint_matches_file{{certificate="{CERT_ID}"}}', lambda r: bool(r) and r[0]["value"][1] == "1", 20
    )
    # Every line both daemons wrote during the loop is one logfmt record.
    records = _daemon_records(loop)
    assert records["exporter"] and records["renewer"]


def test_failed_renewal_alerts_then_recovers_when_the_ca_returns(make_loop) -> None:
    """pebble is down when the alert arrives: the renewal fails, CertloopRenewalFailed fires; pebble comes
    back and the next attempt (Alertmanager's repeat notification) renews and resolves everything."""
    loop = make_loop(max_attempts=1, repeat_interval="5s", log_format="json")
    loop.pebble.stop()

    def failed_alert(lp: ClosedLoop, events: list[Event]) -> str | None:
        return "renewal failure alerted" if "CertloopRenewalFailed" in lp.firing() else None

    events = loop.watch(failed_alert, timeout=60, waiting_for="CertloopRenewalFailed")
    assert loop.served_fingerprint() == loop.initial_fingerprint, "a failed renewal must not touch the site"
    jobs = loop.renewer_api("/api/v1/jobs")["jobs"]
    assert any(j["state"] == "failed" for j in jobs), jobs

    loop.pebble.start()
    loop.write_trust()
    reload_exporter(loop)

    def recovered(lp: ClosedLoop, evs: list[Event]) -> str | None:
        renewed = lp.served_fingerprint() != lp.initial_fingerprint
        firing = lp.firing()
        if renewed and "CertloopRenewalFailed" not in firing and not any("Expir" in n for n in firing):
            return "recovered: renewed after the CA came back, failure alert resolved"
        return None

    loop.watch(recovered, timeout=90, waiting_for="recovery", events=events)
    assert any(j["state"] == "succeeded" for j in loop.renewer_api("/api/v1/jobs")["jobs"])
    # Failures included, every line both daemons wrote is one JSON record, and the failure is in the log.
    records = _daemon_records(loop)
    assert records["exporter"] and records["renewer"]
    failures = [r for r in records["renewer"] if r["level"] in {"warn", "error"}]
    assert any("job 1" in r["msg"] for r in failures), records["renewer"]
