"""Fixtures for the renewer tests: databases (SQLite, the running PostgreSQL and MariaDB), configs
with a `command` issuer that mints test certificates, and a renewer process runner."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
import yaml

from certloop.renewer import migrations
from certloop.renewer.database import TABLES
from certloop.renewer.store import Store
from stack.process import wait_until

REPO = Path(__file__).resolve().parents[2]
MINT = Path(__file__).with_name("mint.py")
TOKEN = "test-token-0123456789abcdef"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
MARIADB_ADMIN = "mysql+pymysql://root@127.0.0.1:3306/"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A uniquely named database on the running PostgreSQL, dropped at the end of the session."""
    name = f"certloop_renewer_test_{secrets.token_hex(4)}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    """A uniquely named database on the running MariaDB, dropped at the end of the session."""
    name = f"certloop_renewer_test_{secrets.token_hex(4)}"
    admin = sa.create_engine(MARIADB_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
    try:
        yield f"mysql+pymysql://root@127.0.0.1:3306/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        admin.dispose()


def clean(store: Store) -> Store:
    """Migrate to head and empty every table."""
    migrations.upgrade(store.engine)
    with store.engine.begin() as conn:
        for table in reversed(TABLES):
            conn.execute(table.delete())
    return store


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty, migrated store on each supported engine."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'renewer.db'}"
    elif request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
    else:
        url = request.getfixturevalue("mariadb_url")
    store = clean(Store(url))
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = clean(Store(f"sqlite:///{tmp_path / 'renewer.db'}"))
    try:
        yield store
    finally:
        store.close()


def certificate(
    tmp_path: Path, cert_id: str, *, count_file: Path, days: float = 30, fail_file: Path | None = None,
    deploy: list[list[str]] | None = None, renew_before: str = "1/3",
) -> dict[str, Any]:
    """A certificate entry using the `command` issuer (tests/renewer/mint.py) and live files in tmp_path."""
    live = tmp_path / "live" / cert_id
    live.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, str(MINT), str(count_file), str(days)]
    if fail_file is not None:
        argv.append(str(fail_file))
    return {
        "id": cert_id,
        "domains": [f"{cert_id}.example"],
        "issuer": {"type": "command", "argv": argv},
        "outputs": {"fullchain": str(live / "fullchain.pem"), "key": str(live / "key.pem")},
        "deploy": deploy if deploy is not None else [["true"]],
        "verify": {"endpoints": []},
        "renew_before": renew_before,
        "min_lifetime": "1h",
    }


@dataclass
class Setup:
    """A written renewer config and where things are."""

    path: Path
    data: dict[str, Any]
    count_file: Path
    tmp: Path

    def issued(self) -> list[str]:
        return self.count_file.read_text().split() if self.count_file.exists() else []

    def write(self) -> Path:
        self.path.write_text(yaml.safe_dump(self.data))
        return self.path


@pytest.fixture
def make_setup(tmp_path: Path) -> Callable[..., Setup]:
    """Build a config: ``make_setup(["shop", "blog"], database=url, worker={...}, **cert_options)``."""

    def build(ids: list[str], *, database: str | None = None, top: dict[str, Any] | None = None,
              **cert_options: Any) -> Setup:
        count_file = tmp_path / "issued.txt"
        data: dict[str, Any] = {
            "listen": "127.0.0.1:0",
            "auth": {"token": TOKEN},
            "data_dir": str(tmp_path / "data"),
            "keystore": {"key": "${CERTLOOP_TEST_KEYSTORE}"},
            "worker": {"concurrency": 2, "lease": "5s", "poll_interval": "200ms", "backoff_base": "1s",
                       "backoff_max": "2s", "max_attempts": 3},
            "scheduler": {"enabled": False},
            "certificates": [certificate(tmp_path, i, count_file=count_file, **cert_options) for i in ids],
        }
        if database is not None:
            data["database"] = {"url": database}
        data.update(top or {})
        setup = Setup(tmp_path / "renewer.yml", data, count_file, tmp_path)
        setup.write()
        return setup

    return build


@pytest.fixture(autouse=True)
def keystore_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """A keystore key in the environment (the config reads it as ${CERTLOOP_TEST_KEYSTORE})."""
    key = secrets.token_bytes(32).hex()
    monkeypatch.setenv("CERTLOOP_TEST_KEYSTORE", key)
    return key


@dataclass
class RenewerProcess:
    """A real `certloop renewer` process; its log goes to a file, its port is read from the log."""

    proc: subprocess.Popen[bytes]
    log: Path
    port: int = 0
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def post(self, path: str, body: bytes | None = None, token: str | None = TOKEN, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.session.post(self.url + path, data=body, headers=headers, timeout=10, **kw)

    def get(self, path: str, token: str | None = TOKEN) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.session.get(self.url + path, headers=headers, timeout=10)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)


@pytest.fixture
def start_renewer() -> Iterator[Callable[..., RenewerProcess]]:
    """Start `python -m certloop.cli renewer --config.file ...`; every process started is killed at the end."""
    started: list[RenewerProcess] = []

    def start(config: Path, *, log_name: str = "renewer.log", extra: list[str] | None = None) -> RenewerProcess:
        log = config.parent / log_name
        fh = log.open("ab")
        offset = log.stat().st_size
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.Popen(
            [sys.executable, "-m", "certloop.cli", "renewer", "--config.file", str(config), *(extra or [])],
            stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(REPO),
        )
        fh.close()
        rp = RenewerProcess(proc, log)
        started.append(rp)

        def port() -> int:
            if proc.poll() is not None:
                raise AssertionError(f"renewer exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            text = log.read_bytes()[offset:].decode(errors="replace")
            for line in text.splitlines():
                if "listening on http" in line:
                    return int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
            return 0

        rp.port = wait_until(port, 30, "the renewer to listen")
        return rp

    yield start
    for rp in started:
        rp.kill()
        rp.session.close()
