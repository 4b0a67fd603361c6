"""Prometheus from stack/: starts, scrapes a static target, answers queries, reloads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stack.prometheus import Prometheus, promtool
from stack.receiver import Receiver


def test_scrapes_a_static_target(prometheus_factory: Callable[..., Prometheus]) -> None:
    """A static scrape config pointing at Prometheus itself yields up == 1 within seconds."""
    prom = prometheus_factory([])
    prom.scrape_configs = [{"job_name": "self", "static_configs": [{"targets": [prom.url.split("//")[1]]}]}]
    prom.reload()

    result = prom.wait_for('up{job="self"}', lambda r: bool(r) and r[0]["value"][1] == "1", timeout=15)
    assert result[0]["metric"]["instance"] == prom.url.split("//")[1]
    assert prom.targets()[0]["health"] == "up"


def test_down_target_reports_up_zero(prometheus_factory: Callable[..., Prometheus], webhook_receiver: Receiver) -> None:
    """A target answering 500 is scraped as up == 0 (the query helper sees real scrape results)."""
    webhook_receiver.status = 500
    target = webhook_receiver.url.split("//")[1]
    prom = prometheus_factory([{"job_name": "broken", "static_configs": [{"targets": [target]}]}])

    def down(result: list[dict[str, Any]]) -> bool:
        return bool(result) and result[0]["value"][1] == "0"

    prom.wait_for('up{job="broken"}', down, timeout=15)
    assert webhook_receiver.wait_for(1, timeout=5, path="/metrics")


def test_promtool_checks_the_generated_config(prometheus_factory: Callable[..., Prometheus]) -> None:
    """The config stack/ writes passes `promtool check config`."""
    prom = prometheus_factory([{"job_name": "x", "static_configs": [{"targets": ["127.0.0.1:1"]}]}])
    done = promtool("check", "config", str(prom.config_path))
    assert done.returncode == 0, done.stdout + done.stderr
