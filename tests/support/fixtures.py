"""Real-peer pytest fixtures built on `stack/`. Every peer is stopped (by PID) at teardown.

- ``nginx``: an :class:`stack.nginx.Nginx` in a temp prefix, *not started*: add sites, then ``start()``.
- ``prometheus_factory(scrape_configs, rule_files=(), alertmanager_url=None, **kw)``: a started Prometheus.
- ``challtestsrv``: a started pebble-challtestsrv (DNS only) on free ports.
- ``pebble``: a started pebble using ``challtestsrv`` as its DNS server (validation on free ports).
- ``alertmanager_factory(config_yaml)``: a started Alertmanager.
- ``webhook_receiver``: a started loopback HTTP receiver recording every request.
- ``moto``: a started moto_server (S3 and SNS), one per test module.

A missing binary raises :class:`stack.process.ToolMissing` (the test fails, it is never skipped).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from stack.alertmanager import Alertmanager
from stack.challtestsrv import ChallTestSrv
from stack.moto import MotoServer
from stack.nginx import Nginx
from stack.pebble import Pebble
from stack.process import free_port
from stack.prometheus import Prometheus
from stack.receiver import Receiver

PrometheusFactory = Callable[..., Prometheus]
AlertmanagerFactory = Callable[[str], Alertmanager]


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    """An nginx with prefix ``tmp_path/nginx``, not yet started (add sites first)."""
    server = Nginx(tmp_path / "nginx")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[PrometheusFactory]:
    """Start Prometheus servers on demand: ``prometheus_factory(scrape_configs, rule_files=..., ...)``."""
    started: list[Prometheus] = []

    def make(
        scrape_configs: Sequence[Mapping[str, Any]],
        rule_files: Sequence[Path] = (),
        alertmanager_url: str | None = None,
        **kwargs: Any,
    ) -> Prometheus:
        prom = Prometheus(
            tmp_path / f"prometheus-{len(started)}", scrape_configs, rule_files, alertmanager_url, **kwargs
        )
        started.append(prom)
        prom.start()
        return prom

    try:
        yield make
    finally:
        for prom in reversed(started):
            prom.stop()


@pytest.fixture
def challtestsrv(tmp_path: Path) -> Iterator[ChallTestSrv]:
    """pebble-challtestsrv answering DNS on a free UDP/TCP port, managed over HTTP."""
    server = ChallTestSrv(free_port(), free_port(), workdir=tmp_path / "challtestsrv")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pebble(tmp_path: Path, challtestsrv: ChallTestSrv) -> Iterator[Pebble]:
    """A started pebble (ACME over HTTPS, ``ca_bundle_path`` trusts it) resolving names via challtestsrv.

    Validation ports are free ports: serve http-01 on ``pebble.http_port`` (e.g. an nginx http site),
    tls-alpn-01 on ``pebble.tls_port``.
    """
    server = Pebble(tmp_path / "pebble", dns_server=challtestsrv.dns_address, http_port=free_port(),
                    tls_port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def alertmanager_factory(tmp_path: Path) -> Iterator[AlertmanagerFactory]:
    """Start Alertmanagers on demand from a YAML config string."""
    started: list[Alertmanager] = []

    def make(config_yaml: str) -> Alertmanager:
        am = Alertmanager(tmp_path / f"alertmanager-{len(started)}", config_yaml)
        started.append(am)
        am.start()
        return am

    try:
        yield make
    finally:
        for am in reversed(started):
            am.stop()


@pytest.fixture
def webhook_receiver() -> Iterator[Receiver]:
    """A loopback HTTP server recording requests (``.requests``, ``.wait_for(n)``)."""
    receiver = Receiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A started moto_server on a free loopback port: S3 and SNS for boto3 and Alertmanager."""
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
