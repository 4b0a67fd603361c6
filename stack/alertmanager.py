"""A real Alertmanager (Debian's ``prometheus-alertmanager``) on a free loopback port, no clustering.

    am = Alertmanager(workdir, config_yaml)
    am.start()
    am.post_alerts([{"labels": {"alertname": "X", "certificate": "shop"}}])
    am.alerts()
    amtool("check-config", str(path))
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

from stack.process import LOOPBACK, HttpPeer, NotReady, PeerApiError, require_binary

START_TIMEOUT = 15.0
HTTP_TIMEOUT = 5.0


class AlertmanagerError(PeerApiError):
    """Alertmanager answered an API call with an error."""

    peer = "alertmanager"


def amtool(*args: str, check: bool = False, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``amtool`` with ``args`` (add ``--alertmanager.url=...`` yourself for API commands)."""
    binary = require_binary("amtool", "prometheus-alertmanager")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout, check=check)


class Alertmanager(HttpPeer):
    """One Alertmanager with ``config_yaml`` written to ``workdir/alertmanager.yml``."""

    def __init__(self, workdir: Path, config_yaml: str, *, name: str = "alertmanager") -> None:
        self.binary = require_binary("prometheus-alertmanager", "prometheus-alertmanager")
        self.workdir = workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_yaml = config_yaml
        self.config_path = self.workdir / "alertmanager.yml"
        super().__init__(name, self.workdir / "alertmanager.log")

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start on a free port (``--cluster.listen-address=`` disables gossip) and wait for ``/-/ready``."""
        self.config_path.write_text(self.config_yaml)
        self.serve(lambda port: [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--cluster.listen-address=",
        ], "/-/ready", timeout)

    def reload(self, config_yaml: str | None = None) -> None:
        """Optionally replace the config, then ``POST /-/reload``."""
        if config_yaml is not None:
            self.config_yaml = config_yaml
        self.config_path.write_text(self.config_yaml)
        response = self._call("POST", "/-/reload")
        if response.status_code != 200:
            raise AlertmanagerError("reload", response.status_code, response.text)

    def _call(self, method: str, path: str, payload: Any = None) -> requests.Response:
        try:
            return requests.request(method, f"{self.url}{path}", json=payload, timeout=HTTP_TIMEOUT)
        except requests.RequestException as exc:
            raise AlertmanagerError(path, None, str(exc)) from exc

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """Alerts from ``/api/v2/alerts``; ``filters`` become label matchers (``alertname="X"``)."""
        params = [("filter", f'{k}="{v}"') for k, v in filters.items()]
        try:
            response = requests.get(f"{self.url}/api/v2/alerts", params=params, timeout=HTTP_TIMEOUT)
        except requests.RequestException as exc:
            raise AlertmanagerError("/api/v2/alerts", None, str(exc)) from exc
        if response.status_code != 200:
            raise AlertmanagerError("/api/v2/alerts", response.status_code, response.text)
        alerts: list[dict[str, Any]] = response.json()
        return alerts

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """POST alerts (each with ``labels``, optional ``annotations``/``startsAt``/``endsAt``)."""
        response = self._call("POST", "/api/v2/alerts", [dict(a) for a in alerts])
        if response.status_code != 200:
            raise AlertmanagerError("post alerts", response.status_code, response.text)

    def wait_for_alerts(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float, **filters: str
    ) -> list[dict[str, Any]]:
        """Poll :meth:`alerts` until ``predicate`` holds; return them."""
        deadline = time.monotonic() + timeout
        while True:
            alerts = self.alerts(**filters)
            if predicate(alerts):
                return alerts
            if time.monotonic() >= deadline:
                raise NotReady(self.name, f"alerts to satisfy the predicate (last: {alerts})", timeout,
                               self.process.log_tail() if self.process else "", None)
            time.sleep(0.1)

    def amtool(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """``amtool --alertmanager.url=<this> args...``."""
        return amtool(f"--alertmanager.url={self.url}", *args, check=check)
