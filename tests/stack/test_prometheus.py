"""Prometheus from stack/: starts, scrapes static targets, answers queries, reloads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stack.prometheus import Prometheus, promtool
from stack.receiver import Receiver

Result = list[dict[str, Any]]


def up_is(value: str) -> Callable[[Result], bool]:
    return lambda result: bool(result) and result[0]["value"][1] == value


def test_scrapes_static_targets_after_reload(
    prometheus_factory: Callable[..., Prometheus], webhook_receiver: Receiver
) -> None:
    """Targets added by reload() are scraped: Prometheus itself is up == 1, a target answering 500 is 0."""
    prom = prometheus_factory([])
    webhook_receiver.status = 500
    itself = prom.url.split("//")[1]
    prom.scrape_configs = [
        {"job_name": "self", "static_configs": [{"targets": [itself]}]},
        {"job_name": "broken", "static_configs": [{"targets": [webhook_receiver.url.split("//")[1]]}]},
    ]
    prom.reload()

    result = prom.wait_for('up{job="self"}', up_is("1"), timeout=15)
    assert result[0]["metric"]["instance"] == itself
    prom.wait_for('up{job="broken"}', up_is("0"), timeout=15)
    assert webhook_receiver.wait_for(1, timeout=5, path="/metrics")
    assert {t["labels"]["job"]: t["health"] for t in prom.targets()} == {"self": "up", "broken": "down"}


def test_promtool_checks_the_generated_config(prometheus_factory: Callable[..., Prometheus]) -> None:
    """The config stack/ writes passes `promtool check config`."""
    prom = prometheus_factory([{"job_name": "x", "static_configs": [{"targets": ["127.0.0.1:1"]}]}])
    done = promtool("check", "config", str(prom.config_path))
    assert done.returncode == 0, done.stdout + done.stderr
