"""A real Prometheus (Debian's ``/usr/bin/prometheus``) on a free loopback port.

    prom = Prometheus(workdir, [{"job_name": "exporter", "static_configs": [{"targets": [addr]}]}],
                      rule_files=[rules], alertmanager_url=am.url)
    prom.start()
    prom.wait_for('up{job="exporter"}', lambda r: bool(r) and r[0]["value"][1] == "1", timeout=10)
    prom.alerts()

Short intervals (1s) and ``--rules.alert.resend-delay=1s`` make alerts reach Alertmanager within
seconds. Storage lives in ``workdir/data``. ``--web.enable-lifecycle`` allows :meth:`reload`.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests
import yaml

from stack.process import LOOPBACK, HttpPeer, NotReady, PeerApiError, require_binary

START_TIMEOUT = 20.0
HTTP_TIMEOUT = 5.0

Result = list[dict[str, Any]]


class PrometheusError(PeerApiError):
    """Prometheus answered an API call with an error."""

    peer = "prometheus"


def promtool(*args: str, check: bool = False, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``promtool`` with ``args``; with ``check=True`` a non-zero exit raises ``CalledProcessError``."""
    binary = require_binary("promtool", "prometheus")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout, check=check)


class Prometheus(HttpPeer):
    """One Prometheus server; configuration is regenerated on :meth:`start` and :meth:`reload`."""

    def __init__(
        self,
        workdir: Path,
        scrape_configs: Sequence[Mapping[str, Any]],
        rule_files: Sequence[Path] = (),
        alertmanager_url: str | None = None,
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        *,
        name: str = "prometheus",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.binary = require_binary("prometheus", "prometheus")
        self.workdir = workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.scrape_configs = [dict(c) for c in scrape_configs]
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.alertmanager_url = alertmanager_url
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.extra_args = list(extra_args)
        self.config_path = self.workdir / "prometheus.yml"
        super().__init__(name, self.workdir / "prometheus.log")

    def config(self) -> dict[str, Any]:
        """The prometheus.yml content as a dict."""
        conf: dict[str, Any] = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": self.scrape_configs,
        }
        if self.alertmanager_url:
            scheme, _, rest = self.alertmanager_url.partition("://")
            host, _, path = rest.partition("/")
            target: dict[str, Any] = {"scheme": scheme, "static_configs": [{"targets": [host]}]}
            if path.strip("/"):
                target["path_prefix"] = "/" + path.strip("/")
            conf["alerting"] = {"alertmanagers": [target]}
        return conf

    def write_config(self) -> Path:
        tmp = self.config_path.with_suffix(".yml.tmp")
        tmp.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        os.replace(tmp, self.config_path)
        return self.config_path

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start on a free port and wait for ``/-/ready``."""
        self.write_config()
        self.serve(lambda port: [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--web.enable-lifecycle",
            "--rules.alert.resend-delay=1s",
            "--log.level=info",
            *self.extra_args,
        ], "/-/ready", timeout)

    def reload(self) -> None:
        """Rewrite the config and ``POST /-/reload`` (synchronous: returns once applied)."""
        self.write_config()
        try:
            response = requests.post(f"{self.url}/-/reload", timeout=30)
        except requests.RequestException as exc:
            raise PrometheusError("reload", None, str(exc)) from exc
        if response.status_code != 200:
            raise PrometheusError("reload", response.status_code, response.text)

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        try:
            response = requests.get(f"{self.url}{path}", params=params, timeout=HTTP_TIMEOUT)
        except requests.RequestException as exc:
            raise PrometheusError(path, None, str(exc)) from exc
        if response.status_code != 200:
            raise PrometheusError(path, response.status_code, response.text)
        return response.json()["data"]

    def query(self, expr: str) -> Result:
        """Instant query; the ``result`` list (each item has ``metric`` and ``value``)."""
        data = self._get("/api/v1/query", {"query": expr})
        result: Result = data["result"]
        return result

    def wait_for(self, expr: str, predicate: Callable[[Result], bool], timeout: float) -> Result:
        """Re-run ``expr`` until ``predicate(result)`` holds; return that result."""
        deadline = time.monotonic() + timeout
        last: Result = []
        while True:
            last = self.query(expr)
            if predicate(last):
                return last
            if self.process is not None and not self.process.running:
                raise NotReady(self.name, f"query {expr!r}", timeout, self.process.log_tail(), self.process.returncode)
            if time.monotonic() >= deadline:
                raise NotReady(self.name, f"query {expr!r} to satisfy the predicate (last: {last})", timeout, "", None)
            time.sleep(0.1)

    def alerts(self) -> Result:
        """Active alerts (pending and firing) from ``/api/v1/alerts``."""
        alerts: Result = self._get("/api/v1/alerts")["alerts"]
        return alerts

    def targets(self) -> Result:
        """Active scrape targets from ``/api/v1/targets``."""
        targets: Result = self._get("/api/v1/targets")["activeTargets"]
        return targets

    def rules(self) -> Result:
        """Rule groups from ``/api/v1/rules``."""
        groups: Result = self._get("/api/v1/rules")["groups"]
        return groups
