"""Alertmanager from stack/: accepts and lists alerts and delivers them to a webhook receiver."""

from __future__ import annotations

from collections.abc import Callable

from stack.alertmanager import Alertmanager, amtool
from stack.receiver import Receiver

CONFIG = """
route:
  receiver: hook
  group_by: [alertname, certificate]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {url}/hook
        send_resolved: true
"""


def test_accepts_lists_and_delivers_an_alert(
    alertmanager_factory: Callable[[str], Alertmanager], webhook_receiver: Receiver
) -> None:
    """A posted alert is listed by the API and reaches the webhook with its labels."""
    am = alertmanager_factory(CONFIG.format(url=webhook_receiver.url))
    am.post_alerts([{"labels": {"alertname": "CertificateExpiringSoon", "certificate": "shop"}}])

    listed = am.wait_for_alerts(lambda alerts: len(alerts) == 1, timeout=10, alertname="CertificateExpiringSoon")
    assert listed[0]["labels"]["certificate"] == "shop"

    [request] = webhook_receiver.wait_for(1, timeout=10, path="/hook")
    payload = request.json()
    assert payload["status"] == "firing"
    assert payload["alerts"][0]["labels"]["certificate"] == "shop"


def test_amtool_reads_the_running_config(alertmanager_factory: Callable[[str], Alertmanager]) -> None:
    """amtool check-config accepts the config; amtool against the API lists a posted alert."""
    am = alertmanager_factory(CONFIG.format(url="http://127.0.0.1:9"))
    assert amtool("check-config", str(am.config_path)).returncode == 0
    am.post_alerts([{"labels": {"alertname": "Probe", "certificate": "blog"}}])
    am.wait_for_alerts(lambda alerts: bool(alerts), timeout=10)
    done = am.amtool("alert", "query", "alertname=Probe")
    assert done.returncode == 0, done.stderr
    assert "Probe" in done.stdout
