"""MetricSpec, the one declaration type of both daemons' catalogues, refuses what Prometheus would."""

from __future__ import annotations

import pytest

from certloop.exporter import metrics as exporter_metrics
from certloop.metricspec import MetricSpec, MetricType
from certloop.renewer import metrics as renewer_metrics


@pytest.mark.parametrize(("name", "type_", "labels", "unit", "message"), [
    ("certloop-bad", "gauge", (), "", "not a metric name"),
    ("certloop_jobs", "counter", (), "", "ends in _total"),
    ("certloop_jobs_total", "gauge", (), "", "ends in _total"),
    ("certloop_wait_seconds", "histogram", (), "", "the name says 'seconds'"),
    ("certloop_wait", "histogram", (), "seconds", "unit 'seconds'"),
    ("certloop_size_bytes", "gauge", (), "seconds", "the name says 'bytes'"),
    ("certloop_up", "gauge", ("a", "a"), "", "a label repeats"),
    ("certloop_up", "gauge", ("__name__",), "", "cannot be a label"),
    ("certloop_wait_seconds", "histogram", ("le",), "seconds", "cannot be a label"),
    ("certloop_up", "gauge", ("bad-label",), "", "cannot be a label"),
])
def test_a_wrong_spec_is_refused_when_made(
    name: str, type_: MetricType, labels: tuple[str, ...], unit: str, message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        MetricSpec(name, type_, "help", labels, unit=unit)


def test_a_right_spec_renders_its_header() -> None:
    spec = MetricSpec("certloop_renewals_total", "counter", "Renewals.", ("result",))
    assert spec.header() == "# HELP certloop_renewals_total Renewals.\n# TYPE certloop_renewals_total counter\n"
    assert MetricSpec("certloop_wait_seconds_total", "counter", "Waited.", unit="seconds").unit == "seconds"


def test_both_catalogues_are_made_of_it_and_share_no_name() -> None:
    exporter, renewer = exporter_metrics.CATALOGUE, renewer_metrics.CATALOGUE
    assert all(type(spec) is MetricSpec for spec in (*exporter, *renewer))
    names = [spec.name for spec in (*exporter, *renewer)]
    assert len(names) == len(set(names))
    assert set(exporter) == set(exporter_metrics.PER_TARGET) | set(exporter_metrics.PER_PROCESS)
    assert not set(exporter_metrics.PER_TARGET) & set(exporter_metrics.PER_PROCESS)
