"""The worked hashmod sharding configuration of docs/operations/scaling.md holds: it is taken from the page,
rendered as the page's shell loop does, checked with promtool, and run on three real Prometheus servers
against a real `certloop exporter`. Each target is probed by exactly one shard, and its series carry the
`job` the alert rules select and the `certificate` label of its target group."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack.daemons import CertloopDaemon
from stack.process import wait_until
from stack.prometheus import Prometheus, promtool

REPO = Path(__file__).resolve().parents[2]
SCALING = REPO / "docs" / "operations" / "scaling.md"
RULES = REPO / "alerting" / "generated" / "certloop.rules.yml"
SHARDS = 3
# Loopback targets with fixed names, so the hash distribution (and this test) is deterministic. Whether
# anything listens there does not matter: a failed probe is still a series.
GROUPS = [
    {"targets": [f"127.0.0.1:{port}" for port in range(1, 7)], "labels": {"certificate": "shop", "team": "web"}},
    {"targets": [f"127.0.0.1:{port}" for port in range(7, 13)], "labels": {"certificate": "api", "team": "web"}},
]
TARGETS = {t for group in GROUPS for t in group["targets"]}

PrometheusFactory = Callable[..., Prometheus]


def _template() -> str:
    blocks = re.findall(r"^```yaml\n(.*?)^```", SCALING.read_text(encoding="utf-8"), re.S | re.M)
    [template] = [b for b in blocks if "@SHARD@" in b]
    return template


def _render(shard: int) -> str:
    """What the page's loop does: sed -e "s/@SHARD@/$i/g" -e "s/@SHARDS@/$N/g"."""
    return _template().replace("@SHARD@", str(shard)).replace("@SHARDS@", str(SHARDS))


def _localise(config: Mapping[str, Any], targets_dir: Path, exporter: str, closed: str) -> list[dict[str, Any]]:
    """The page's scrape configs with example.com hosts and file paths replaced by loopback and tmp paths."""
    text = yaml.safe_dump(config["scrape_configs"], sort_keys=False)
    text = text.replace("certloop-exporter.example.com:10793", exporter)
    text = re.sub(r"[\w.-]+\.example\.com:\d+", closed, text)
    text = text.replace("/etc/prometheus/certloop-targets", str(targets_dir))
    configs: list[dict[str, Any]] = yaml.safe_load(text)
    return configs


def test_shard_template_renders_to_configs_promtool_accepts(tmp_path: Path) -> None:
    """Every rendered shard config (only its rule and target file paths moved to tmp) passes promtool."""
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "web.yml").write_text(yaml.safe_dump(GROUPS))
    for shard in range(SHARDS):
        text = _render(shard)
        assert f'regex: "{shard}"' in text and f"modulus: {SHARDS}" in text
        text = text.replace("/etc/prometheus/rules/certloop.rules.yml", str(RULES))
        text = text.replace("/etc/prometheus/certloop-targets", str(tmp_path / "targets"))
        path = tmp_path / f"prometheus-{shard}.yml"
        path.write_text(text)
        done = promtool("check", "config", str(path))
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.timeout(120)
def test_each_target_is_probed_by_exactly_one_shard(tmp_path: Path, prometheus_factory: PrometheusFactory) -> None:
    """Three real Prometheus servers with the page's relabeling split 12 /probe targets with no overlap and no
    gap; the series are under job="certloop-exporter" with the group's `certificate` label. Intervals are cut
    to 1s (the page uses 1m) so the test waits seconds, not minutes."""
    targets_dir = tmp_path / "targets"
    targets_dir.mkdir()
    (targets_dir / "web.yml").write_text(yaml.safe_dump(GROUPS))
    exporter = CertloopDaemon.exporter(tmp_path / "exporter", {})
    exporter.start()
    try:
        servers = []
        for shard in range(SHARDS):
            config = yaml.safe_load(_render(shard))
            scrape_configs = _localise(config, targets_dir, exporter.address, "127.0.0.1:9")
            for job in scrape_configs:
                job.pop("scrape_timeout", None)  # the page's 20s exceeds the test's 1s interval
                for sd in job.get("file_sd_configs", []):
                    sd["refresh_interval"] = "1s"
            servers.append(prometheus_factory(scrape_configs, rule_files=[RULES], scrape_interval="1s"))
        seen = _wait_for_all_targets(servers)
    finally:
        exporter.stop()
    shares = [set(instances) for instances in seen]
    assert set().union(*shares) == TARGETS
    assert sum(len(s) for s in shares) == len(TARGETS), f"a target is probed by two shards: {shares}"
    assert all(shares), f"a shard got no target: {shares}"
    for instances in seen:
        for instance, labels in instances.items():
            port = int(instance.rsplit(":", 1)[1])
            assert labels["certificate"] == ("shop" if port <= 6 else "api")
            assert labels["job"] == "certloop-exporter"


def _wait_for_all_targets(servers: Sequence[Prometheus]) -> list[dict[str, dict[str, str]]]:
    """Per server: instance -> labels of its certloop_probe_success series, once all targets are seen."""
    seen: list[dict[str, dict[str, str]]] = [{} for _ in servers]

    def complete() -> bool:
        for i, server in enumerate(servers):
            result = server.query('certloop_probe_success{job="certloop-exporter"}')
            seen[i] = {r["metric"]["instance"]: r["metric"] for r in result}
        return sum(len(s) for s in seen) >= len(TARGETS)

    wait_until(complete, 60, "every /probe target scraped by some shard")
    return seen
