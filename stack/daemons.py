"""certloop's own daemons as supervised processes, configured from dicts (for the loop and e2e tests).

    exporter = CertloopDaemon.exporter(workdir, {"endpoints": [...]})
    exporter.start()                     # `certloop exporter` on a free port, waits for /-/ready
    renewer = CertloopDaemon.renewer(workdir, {"auth": {...}, "certificates": [...]})
    renewer.start()
    renewer.url                          # http://127.0.0.1:PORT (webhook: url + /api/v1/alertmanager)
    exporter.reload(new_config)          # rewrite the file and send SIGHUP, as an operator would

They run the installed ``certloop`` entry point (this interpreter's ``-m certloop.cli``), so the
processes are exactly what users run.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import requests
import yaml

from stack.process import LOOPBACK, Peer, Process, StackError, answers_ok, free_port

START_TIMEOUT = 30.0


class CertloopDaemon(Peer):
    """``certloop exporter`` or ``certloop renewer`` with its YAML written from ``config``."""

    def __init__(self, component: str, workdir: Path, config: Mapping[str, Any], *,
                 env: Mapping[str, str] | None = None, extra_args: tuple[str, ...] = ()) -> None:
        if component not in ("exporter", "renewer"):
            raise ValueError(f"unknown certloop component {component!r}")
        self.component = component
        self.workdir = workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = dict(config)
        self.env = dict(env or {})
        self.extra_args = extra_args
        self.config_path = self.workdir / f"{component}.yml"
        self.port = free_port()

    @classmethod
    def exporter(cls, workdir: Path, config: Mapping[str, Any], **kwargs: Any) -> Self:
        return cls("exporter", workdir, config, **kwargs)

    @classmethod
    def renewer(cls, workdir: Path, config: Mapping[str, Any], **kwargs: Any) -> Self:
        """The renewer; ``data_dir`` defaults to ``workdir/data`` and ``listen`` to this daemon's port."""
        merged = {"data_dir": str(workdir.resolve() / "data"), **config}
        return cls("renewer", workdir, merged, **kwargs)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, for Prometheus static_configs."""
        return f"{LOOPBACK}:{self.port}"

    def write_config(self) -> Path:
        config = dict(self.config)
        if self.component == "renewer":
            config["listen"] = self.address
        tmp = self.config_path.with_suffix(".yml.tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        os.replace(tmp, self.config_path)
        return self.config_path

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "certloop.cli", self.component,
            f"--config.file={self.config_path}",
            f"--web.listen-address={self.address}",
            *self.extra_args,
        ]

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start and wait until ``/-/ready`` answers 200 (the exporter: after its first sweep)."""
        self.write_config()
        self.process = Process(
            self.argv(), name=f"certloop-{self.component}", log_path=self.workdir / f"{self.component}.log",
            env={"PYTHONUNBUFFERED": "1", **self.env},
        ).start()
        self.process.wait_until(self._ready, timeout, f"{self.url}/-/ready")

    def _ready(self) -> bool:
        return answers_ok(f"{self.url}/-/ready")

    def reload(self, config: Mapping[str, Any] | None = None) -> None:
        """Optionally replace the config, rewrite the file and send SIGHUP (the daemon reloads async)."""
        if self.process is None:
            raise StackError(f"certloop-{self.component}: not started")
        if config is not None:
            self.config = dict(config)
        self.write_config()
        self.process.signal(signal.SIGHUP)

    def metrics(self) -> str:
        """The current ``/metrics`` exposition text."""
        response = requests.get(f"{self.url}/metrics", timeout=10)
        response.raise_for_status()
        return response.text
