"""Helpers for exporter tests: run the real exporter (in a thread or as the CLI), read its exposition."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from certloop.exporter.config import ExporterConfig, parse_config
from certloop.exporter.engine import Engine
from certloop.exporter.server import build_server
from stack.process import Process, free_port, wait_until

T = TypeVar("T")
Sample = tuple[dict[str, str], float]


class ExporterThread:
    """The exporter (engine + HTTP server) on its own event loop in a background thread."""

    def __init__(self, config: ExporterConfig | None = None, config_path: Path | None = None,
                 clock: Callable[[], datetime] | None = None, state_dir: Path | None = None) -> None:
        self.clock = clock
        self.state_dir = str(state_dir) if state_dir is not None else None
        self.config = config
        self.config_path = config_path
        self.url = ""
        self.engine: Engine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced to the test by start()
            self._error = exc
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self.clock is not None:
            self.engine = Engine(self.config_path, config=self.config, clock=self.clock, state_dir=self.state_dir)
        else:
            self.engine = Engine(self.config_path, config=self.config, state_dir=self.state_dir)
        server = build_server(self.engine, enable_lifecycle=True)  # tests reload over HTTP
        await server.start("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.port}"
        await self.engine.start()
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            await server.close()
            await self.engine.stop()

    def start(self) -> ExporterThread:
        self._thread.start()
        self._started.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run a coroutine on the exporter's loop (e.g. ``engine.reload()``)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def wait_ready(self, timeout: float = 20) -> None:
        wait_until(lambda: requests.get(f"{self.url}/-/ready", timeout=5).status_code == 200, timeout,
                   "exporter ready")

    def metrics(self) -> str:
        response = requests.get(f"{self.url}/metrics", timeout=10)
        response.raise_for_status()
        return response.text

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)


@contextmanager
def exporter(config: Mapping[str, Any] | None = None, *, config_path: Path | None = None,
             ready: bool = True, clock: Callable[[], datetime] | None = None,
             state_dir: Path | None = None) -> Iterator[ExporterThread]:
    """Run an exporter for ``config`` (a dict) or ``config_path``; waits for /-/ready unless told not to."""
    parsed = parse_config(dict(config)) if config is not None else None
    thread = ExporterThread(parsed, config_path, clock, state_dir).start()
    try:
        if ready:
            thread.wait_ready()
        yield thread
    finally:
        thread.stop()


def samples(text: str, name: str, **labels: str) -> list[Sample]:
    """Samples of metric ``name`` whose labels include ``labels``."""
    found: list[Sample] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                found.append((dict(s.labels), s.value))
    return found


def value(text: str, name: str, **labels: str) -> float:
    """The value of the one sample matching; fails when there is not exactly one."""
    found = samples(text, name, **labels)
    assert len(found) == 1, f"expected one {name}{labels}, found {found}"
    return found[0][1]


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    return path


class ExporterProcess:
    """``certloop exporter`` as a real child process (the CLI, uvloop, signals)."""

    def __init__(self, config_path: Path, workdir: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "certloop.cli", "exporter", f"--config.file={config_path}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=debug", *extra]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        self.process = Process(argv, name="certloop-exporter", log_path=workdir / "exporter.log", env=env)

    def start(self) -> ExporterProcess:
        self.process.start()
        self.process.wait_until(self._ready, 30, f"{self.url}/-/ready")
        return self

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def metrics(self) -> str:
        response = requests.get(f"{self.url}/metrics", timeout=10)
        response.raise_for_status()
        return response.text

    def stop(self) -> int | None:
        return self.process.stop()


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``certloop exporter ARGS`` to completion (e.g. ``--config.check``)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run([sys.executable, "-m", "certloop.cli", "exporter", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, check=False)
