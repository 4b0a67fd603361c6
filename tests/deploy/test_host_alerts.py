"""The mixin's `certloop-host` group on a real node_exporter (Debian's prometheus-node-exporter) scraped by a
real Prometheus: the metrics it uses exist with the labels it selects on, every rule evaluates without
error, and with thresholds lowered to "always" each alert fires on this machine's real series, which
proves the expressions' joins and selectors match what node_exporter actually exports. The promtool tests
(alerting/tests/host_test.yml) prove the thresholds themselves.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from certloop.alerting.build import RULES_FILE, render
from stack.process import Process, free_port
from stack.prometheus import Prometheus
from tests.alerting.node_exporter import NODE_EXPORTER
from tests.alerting.rules import selectors
from tests.dashboards import model, promql
from tests.support.fixtures import PrometheusFactory

GROUP = "certloop-host"
HOST_KEYS = ("hostDown", "hostFilesystemAlmostFull", "hostCertloopFilesystemAlmostFull", "hostMemoryLow",
             "hostLoadHigh", "hostClockSkew", "hostClockNotSynchronising")
# Thresholds every real host crosses, and no waiting: each alert fires on the first evaluation.
ALWAYS: dict[str, Any] = {
    "host": {"filesystemFreeRatio": 1.01, "memoryAvailableRatio": 1.01, "loadPerCpu": -1, "clockOffsetSeconds": -1},
    "for": dict.fromkeys(HOST_KEYS, "0s"),
}


@pytest.fixture
def node_exporter(tmp_path: Path) -> Iterator[tuple[Process, int]]:
    binary = shutil.which("prometheus-node-exporter")
    assert binary, "prometheus-node-exporter (Debian package prometheus-node-exporter) is required"
    port = free_port()
    # Only the collectors the host group and the Host dashboard read: the others cost CPU on a shared machine.
    process = Process([binary, f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults",
                       "--collector.cpu", "--collector.filesystem", "--collector.loadavg", "--collector.meminfo",
                       "--collector.timex", "--collector.uname"], name="node-exporter",
                      log_path=tmp_path / "node-exporter.log").start()
    yield process, port
    process.stop()


def rules_file(directory: Path, patch: dict[str, Any] | None) -> Path:
    render(directory, patch)
    return directory / RULES_FILE


def host_rules(prometheus: Prometheus) -> list[dict[str, Any]]:
    groups = prometheus.rules()
    [group] = [g for g in groups if g["name"] == GROUP]
    rules: list[dict[str, Any]] = group["rules"]
    return rules


def firing(prometheus: Prometheus, name: str) -> list[dict[str, Any]]:
    return [a for a in prometheus.alerts() if a["labels"]["alertname"] == name and a["state"] == "firing"]


def wait_firing(prometheus: Prometheus, name: str, timeout: float = 30) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def check(_: object) -> bool:
        found[:] = firing(prometheus, name)
        return bool(found)

    prometheus.wait_for("vector(1)", check, timeout)
    return found


def scrape(port: int) -> list[dict[str, Any]]:
    return [{"job_name": "node", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}]


def test_node_exporter_serves_every_metric_the_host_group_uses(
    node_exporter: tuple[Process, int], prometheus_factory: PrometheusFactory, tmp_path: Path
) -> None:
    """Each node_exporter metric the rules use (tests/alerting/node_exporter.py, the contract test's source)
    is scraped from the real exporter, with no label beyond the ones the contract allows, and every
    metric a host rule selects is in that list."""
    _, port = node_exporter
    prometheus = prometheus_factory(scrape(port), rule_files=[rules_file(tmp_path / "rules", None)])
    prometheus.wait_for('up{job="node"}', lambda r: bool(r) and r[0]["value"][1] == "1", 30)
    for name, allowed in NODE_EXPORTER.items():
        series = prometheus.wait_for(f'{name}{{job="node"}}', bool, 30)
        for one in series:
            assert set(one["metric"]) - {"__name__"} <= allowed, (name, one["metric"])
    used = {sel.metric for rule in host_rules(prometheus) for sel in selectors(rule["query"])}
    assert used - {"up"} <= set(NODE_EXPORTER)


def test_host_rules_evaluate_without_error_on_real_series(
    node_exporter: tuple[Process, int], prometheus_factory: PrometheusFactory, tmp_path: Path
) -> None:
    """With the default knobs every host rule is evaluated by Prometheus with health "ok", every selector
    of every rule except the general file system one matches real series here, and the host is not down."""
    _, port = node_exporter
    prometheus = prometheus_factory(scrape(port), rule_files=[rules_file(tmp_path / "rules", None)])
    prometheus.wait_for('up{job="node"}', lambda r: bool(r) and r[0]["value"][1] == "1", 30)

    def all_evaluated(_: object) -> bool:
        rules = host_rules(prometheus)
        return len(rules) == len(HOST_KEYS) and all(r.get("lastEvaluation", "").startswith("20") for r in rules)

    prometheus.wait_for("vector(1)", all_evaluated, 30)
    prometheus.wait_for('node_cpu_seconds_total{job="node"}', bool, 30)
    for rule in host_rules(prometheus):
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
        if rule["name"] == "CertloopHostFilesystemAlmostFull":
            continue  # the mount points it covers depend on the machine; proven below with its own knob
        for sel in selectors(rule["query"]):
            matchers = ",".join(f'{k}{op}"{v}"' for k, op, v in sel.matchers)
            assert prometheus.query(f"{sel.metric}{{{matchers}}}"), f"{rule['name']}: no series for {sel}"
    assert not firing(prometheus, "CertloopHostDown")


def test_each_host_alert_fires_on_real_series_when_its_threshold_is_crossed(
    node_exporter: tuple[Process, int], prometheus_factory: PrometheusFactory, tmp_path: Path
) -> None:
    """Thresholds lowered to "always": the file system, memory, load and clock alerts fire with this host's
    real labels; the file system alert that covers a mount point is the one its knob assigns it to; and
    when node_exporter is killed, CertloopHostDown fires."""
    process, port = node_exporter
    rules = rules_file(tmp_path / "rules", ALWAYS)
    prometheus = prometheus_factory(scrape(port), rule_files=[rules])
    instance = f"127.0.0.1:{port}"
    for name in ("CertloopHostMemoryLow", "CertloopHostLoadHigh", "CertloopHostClockSkew"):
        [alert] = wait_firing(prometheus, name)
        assert alert["labels"]["instance"] == instance and alert["labels"]["job"] == "node"
    # "/" is one of certloop's mount points by default: the certloop alert names it, the general one not.
    certloop_alerts = wait_firing(prometheus, "CertloopHostCertloopFilesystemAlmostFull")
    certloop_fs = {a["labels"]["mountpoint"] for a in certloop_alerts}
    assert "/" in certloop_fs
    assert "/" not in {a["labels"]["mountpoint"] for a in firing(prometheus, "CertloopHostFilesystemAlmostFull")}

    # The knob moves "/" out of certloop's mount points: now the general alert covers it.
    moved = {**ALWAYS, "host": {**ALWAYS["host"], "certloopMountpoints": 'mountpoint=~"/var/lib/certloop.*"'}}
    shutil.copy(rules_file(tmp_path / "moved", moved), rules)
    prometheus.reload()
    general = wait_firing(prometheus, "CertloopHostFilesystemAlmostFull")
    assert "/" in {a["labels"]["mountpoint"] for a in general}
    assert all(a["labels"]["device"] and a["labels"]["fstype"] for a in general)

    assert not firing(prometheus, "CertloopHostDown")
    process.stop()
    [down] = wait_firing(prometheus, "CertloopHostDown")
    assert down["labels"]["instance"] == instance


def test_host_dashboard_panels_return_data_from_the_real_node_exporter(
    node_exporter: tuple[Process, int], prometheus_factory: PrometheusFactory
) -> None:
    """Every query of dashboards/generated/host.json parses against a real node_exporter's series, with the
    host variable at All and at its first value, and returns data; the one exception is the time-until-full
    panel, which shows only shrinking file systems (none need shrink here)."""
    _, port = node_exporter
    prometheus = prometheus_factory(scrape(port))
    prometheus.wait_for('count_over_time(node_cpu_seconds_total{job="node",mode="idle"}[1m])',
                        lambda r: bool(r) and float(r[0]["value"][1]) >= 4, 30)
    dashboards = {"host": model.load()["host"]}
    outcomes = promql.run_dashboards(prometheus.url, dashboards)
    assert len(outcomes) == len(model.queries("host", dashboards["host"])) > 10
    may_be_empty = [o for o in outcomes if "deriv(" in o.expr]
    assert len(may_be_empty) == 1
    failures = promql.report([o for o in outcomes if o not in may_be_empty], need_data=True)
    failures += promql.report(may_be_empty + promql.run_dashboards(prometheus.url, dashboards, first=True),
                              need_data=False)
    assert not failures, "\n".join(failures)
