"""Every panel query parses and returns data in a real Prometheus.

Two producers feed that Prometheus:
- a FAKE producer (tests/dashboards/fake_producer.py): hand-written exposition text covering every
  catalogue metric and every state a panel shows. It proves the PromQL parses, joins and filters as
  intended on the documented label shapes, but not that the real components emit those shapes;
- the real closed loop, `certloop exporter` -> Prometheus -> Alertmanager -> `certloop renewer` (test at
  the bottom), which is the proof.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stack.challtestsrv import ChallTestSrv
from stack.nginx import Nginx
from stack.pebble import Pebble
from stack.process import LOOPBACK, NotReady, Process, free_port, wait_until
from stack.prometheus import Prometheus
from tests.dashboards import fake_producer, model, promql, scenario
from tests.dashboards.catalogue import python_catalogue
from tests.support.fixtures import AlertmanagerFactory, PrometheusFactory
from tests.support.pki import Pki

SCRAPES_NEEDED = 4  # rate() over 1m needs two samples; a few more make increase() and quantiles stable


def _types() -> dict[str, str]:
    return {m.name: m.type for m in python_catalogue().values()}


def test_fake_producer_covers_every_catalogue_metric() -> None:
    """The fake exposition has a series for each metric of exporter/ and renewer/metrics.py, and no other."""
    types = _types()
    now = 1_800_000_000.0
    served = fake_producer.family_names(fake_producer.exporter_samples(now, 1) +
                                        fake_producer.renewer_samples(now, 1), types)
    assert served == set(types)


@pytest.fixture(scope="module")
def fake_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A real Prometheus scraping the fake producer's /exporter and /renewer every second."""
    with fake_producer.serve(_types()) as producer:
        prom = Prometheus(tmp_path_factory.mktemp("prometheus"), [
            {"job_name": "certloop-exporter", "metrics_path": "/exporter",
             "static_configs": [{"targets": [producer.address]}]},
            {"job_name": "certloop-renewer", "metrics_path": "/renewer",
             "static_configs": [{"targets": [producer.address]}]},
        ])
        prom.start()
        try:
            for metric in ("certloop_build_info", "certloop_renewer_build_info"):
                prom.wait_for(f"count_over_time({metric}[1m])",
                              lambda r: bool(r) and float(r[0]["value"][1]) >= SCRAPES_NEEDED, timeout=30)
            yield prom
        finally:
            prom.stop()


# The Host dashboard reads node_exporter, which neither producer here serves: its panels are run against a
# real node_exporter in tests/deploy/test_host_alerts.py.
NOT_CERTLOOP = {"host"}


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return {name: dash for name, dash in model.load().items() if name not in NOT_CERTLOOP}


def test_every_panel_returns_data_from_the_fake_producer(fake_prometheus: Prometheus,
                                                         dashboards: dict[str, dict[str, Any]]) -> None:
    """With variables at All, each query of each panel parses and returns at least one non-NaN series.

    The data comes from a FAKE producer (hand-written exposition); the real-component test below proves
    the same against `certloop exporter` and `certloop renewer`.
    """
    outcomes = promql.run_dashboards(fake_prometheus.url, dashboards)
    assert len(outcomes) == sum(len(model.queries(n, d)) for n, d in dashboards.items()) > 80
    failures = promql.report(outcomes, need_data=True)
    assert not failures, "\n".join(failures)


def test_every_panel_parses_with_concrete_variable_values(fake_prometheus: Prometheus,
                                                          dashboards: dict[str, dict[str, Any]]) -> None:
    """With each variable set to the first value it offers (regex-escaped as Grafana does), queries parse.

    FAKE producer data, as above.
    """
    outcomes = promql.run_dashboards(fake_prometheus.url, dashboards, first=True)
    assert any("\\\\." in o.expr for o in outcomes), "expected an escaped dot from a target value"
    failures = promql.report(outcomes, need_data=False)
    assert not failures, "\n".join(failures)


def test_a_broken_query_is_reported(fake_prometheus: Prometheus) -> None:
    """The runner is not vacuous: a syntax error and a query without data are both failures."""
    bad = [model.PanelQuery("t", "syntax", "A", "sum(certloop_probe_success", True),
           model.PanelQuery("t", "empty", "A", 'certloop_probe_success{target="nowhere"}', False)]
    failures = promql.report([promql.run(fake_prometheus.url, q, {}) for q in bad], need_data=True)
    assert len(failures) == 2
    assert "bad_data" in failures[0] and "no data" in failures[1]


@pytest.fixture
def always_valid_pebble(tmp_path: Path, challtestsrv: ChallTestSrv) -> Iterator[Pebble]:
    """pebble on free ports that skips challenge validation (the renewer's ACME flow still runs in full)."""
    server = Pebble(tmp_path / "pebble", dns_server=challtestsrv.dns_address, http_port=free_port(),
                    tls_port=free_port(), always_valid=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _certloop() -> str:
    binary = Path(sys.executable).with_name("certloop")
    assert binary.exists(), f"{binary} missing: install the project into the venv (scripts/bootstrap.sh)"
    return str(binary)


def _count(prom: Prometheus, expr: str, at_least: float, timeout: float, log: Process) -> None:
    try:
        prom.wait_for(expr, lambda r: bool(r) and float(r[0]["value"][1]) >= at_least, timeout=timeout)
    except NotReady as exc:
        raise AssertionError(f"{exc}\n--- {log.name} log ---\n{log.log_tail(30)}") from exc


# What the overview's status row must count for scenario.py's estate once the loop has run: `renewed` is
# fresh (OK); the three other renewer outputs stay expiring (failed or rolled back to the seeded leaf).
EXPECTED_STATUS = {"Watched": 11, "OK": 3, "Expiring": 4, "Expired": 1, "Invalid": 2, "Unreachable": 1,
                   "Drift": 2, "Inconsistent": 1}
# Renewal panels that must count the events of this run, not merely answer 0: each certificate's counter
# starts at 0 (renewer/metrics.py declare), so increase() sees even its first result.
EXPECTED_AT_LEAST = {("renewals", "Succeeded"): 1, ("renewals", "Failed"): 1, ("renewals", "Rolled back"): 2,
                     ("renewals", "Successful renewals"): 1}
# Panels whose query may legitimately return nothing in this estate, and why. Keep it short: every entry
# must still be empty (a stale exemption fails the test).
EXEMPT: dict[str, str] = {}


def _panel_values(prom: Prometheus, dashboards: dict[str, dict[str, Any]],
                  panels: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The single value of each named instant stat panel (variables at All); 0 when it returns nothing."""
    counts = {}
    for name, dash in dashboards.items():
        values = promql.all_values(dash)
        for query in model.queries(name, dash):
            if (name, query.panel) in panels:
                result = prom.query(model.interpolate(query.expr, values))
                counts[(name, query.panel)] = round(float(result[0]["value"][1])) if result else 0
    return counts


def _status_counts(prom: Prometheus, dashboards: dict[str, dict[str, Any]]) -> dict[str, int]:
    counts = _panel_values(prom, dashboards, {("overview", panel) for panel in EXPECTED_STATUS})
    return {panel: value for (_, panel), value in counts.items()}


def _renewal_results(prom: Prometheus) -> dict[str, str]:
    """certificate -> the result its renewals_total counted (series above 0)."""
    return {r["metric"]["certificate"]: r["metric"]["result"]
            for r in prom.query("certloop_renewer_renewals_total > 0")}


def _wait_for_status(prom: Prometheus, dashboards: dict[str, dict[str, Any]], timeout: float) -> None:
    """Wait until the overview's status counts equal EXPECTED_STATUS (the exporter re-reads the renewed file
    within a sweep); at the deadline the counts last seen are in the error."""
    wait_until(lambda: _status_counts(prom, dashboards) == EXPECTED_STATUS, timeout,
               f"the overview's status counts to be {EXPECTED_STATUS}", interval=0.5,  # a look is several queries
               log_tail=lambda: f"now: {_status_counts(prom, dashboards)}")


def test_panels_return_data_from_the_real_closed_loop(
        tmp_path: Path, pki: Pki, nginx: Nginx, challtestsrv: ChallTestSrv, always_valid_pebble: Pebble,
        prometheus_factory: PrometheusFactory, alertmanager_factory: AlertmanagerFactory,
        dashboards: dict[str, dict[str, Any]]) -> None:
    """The closed loop with failures injected for real: `certloop exporter` -> Prometheus (the mixin's
    rules) -> Alertmanager -> `certloop renewer`, all real processes. Every panel's every query of every
    certloop dashboard has data, the overview's status counts match the estate, and the renewal panels
    count each certificate's first result.

    Injected (scenario.py): an expired and an expiring leaf on two addresses of one name (inconsistent),
    drift against expect_file, a self-signed server, a leaf for the wrong host, a refused port, an
    RSA-1024 key on disk; expiry alerts the renewer answers with a renewal that succeeds, one that fails
    (ACME directory on a closed port) and two that roll back (new leaf not served; a deploy step exiting 3
    after install).
    """
    estate = scenario.build_estate(tmp_path, pki, nginx, challtestsrv, always_valid_pebble.root_pem())
    exporter, exporter_address = scenario.start_component(
        [_certloop(), "exporter", "--config.file", str(estate.exporter_config)], "exporter", tmp_path)
    renewer_config, token = scenario.renewer_config(tmp_path, always_valid_pebble, f"{LOOPBACK}:{estate.tls_port}")
    renewer, renewer_address = scenario.start_component(
        [_certloop(), "renewer", "--config.file", str(renewer_config)], "renewer", tmp_path)
    token_file = tmp_path / "renewer.token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    try:
        alertmanager = alertmanager_factory(scenario.alertmanager_config(renewer_address, token_file))
        prom = prometheus_factory([
            {"job_name": "certloop-exporter", "static_configs": [{"targets": [exporter_address]}]},
            {"job_name": "certloop-renewer", "static_configs": [{"targets": [renewer_address]}]},
        ], [scenario.rule_file(tmp_path)], alertmanager.url)
        _count(prom, "count(certloop_renewer_renewals_total > 0)", len(scenario.RENEWALS), 60, renewer)
        # The zeros were scraped before the first result (no scheduler; Alertmanager's group_wait), which is
        # what lets increase() see a certificate's first failure.
        first = prom.query("count(min_over_time(certloop_renewer_renewals_total[5m]) == 0)")
        assert first and int(float(first[0]["value"][1])) == 3 * len(scenario.RENEWALS), first
        _count(prom, "count_over_time(certloop_renewer_build_info[1m])", SCRAPES_NEEDED, 30, renewer)
        _count(prom, "count_over_time(certloop_build_info[1m])", SCRAPES_NEEDED, 30, exporter)
        _count(prom, 'count(certloop_verify_verdict{verdict="hostname_mismatch"})', 1, 30, exporter)
        _wait_for_status(prom, dashboards, 15)

        outcomes = promql.run_dashboards(prom.url, dashboards)
        empty = {o.query.id for o in outcomes if o.error is None and o.series == 0}
        assert set(EXEMPT) <= {o.query.id for o in outcomes}, "an exemption names no panel query"
        assert not set(EXEMPT) - empty, f"exempted queries that now return data: {sorted(set(EXEMPT) - empty)}"
        failures = promql.report([o for o in outcomes if o.query.id not in EXEMPT], need_data=True)
        failures += promql.report(promql.run_dashboards(prom.url, dashboards, first=True), need_data=False)
        assert not failures, "\n".join(failures) + f"\n--- renewer log ---\n{renewer.log_tail(30)}"
        assert _renewal_results(prom) == scenario.RENEWALS
        counted = _panel_values(prom, dashboards, set(EXPECTED_AT_LEAST))
        assert all(counted[k] >= n for k, n in EXPECTED_AT_LEAST.items()), counted
        verdicts = {r["metric"]["verdict"] for r in prom.query("certloop_verify_verdict")}
        assert {"ok", "expired", "self_signed", "hostname_mismatch"} <= verdicts, verdicts
        reasons = {r["metric"]["reason"] for r in prom.query("certloop_probe_failure_reason")}
        assert reasons == {"refused"}, reasons
        weak = {r["metric"]["target"] for r in prom.query("certloop_cert_weak_crypto == 1")}
        assert any(t.endswith("legacy.fullchain.pem") for t in weak), weak
    finally:
        exporter.stop()
        renewer.stop()
