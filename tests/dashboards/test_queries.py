"""Every panel query parses and returns data in a real Prometheus.

Two producers feed that Prometheus:
- a FAKE producer (tests/dashboards/fake_producer.py): hand-written exposition text covering every
  catalogue metric and every state a panel shows. It proves the PromQL parses, joins and filters as
  intended on the documented label shapes, but not that the real components emit those shapes;
- the real `certloop exporter` and `certloop renewer` (test at the bottom), which is the proof.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from stack.prometheus import Prometheus
from tests.dashboards import fake_producer, model, promql
from tests.dashboards.catalogue import python_catalogue

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


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return model.load()


def test_every_panel_returns_data_from_the_fake_producer(fake_prometheus: Prometheus,
                                                         dashboards: dict[str, dict[str, Any]]) -> None:
    """With variables at All, each query of each panel parses and returns at least one non-NaN series."""
    outcomes = promql.run_dashboards(fake_prometheus.url, dashboards)
    assert len(outcomes) == len(model.all_queries()) > 80
    failures = promql.report(outcomes, need_data=True)
    assert not failures, "\n".join(failures)


def test_every_panel_parses_with_concrete_variable_values(fake_prometheus: Prometheus,
                                                          dashboards: dict[str, dict[str, Any]]) -> None:
    """With each variable set to the first value it offers (regex-escaped as Grafana does), queries parse."""
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
