"""The disaster-recovery drill of docs/operations/backup.md, end to end and timed.

A real renewer on the running PostgreSQL renews a certificate through pebble (nginx serves it), is backed
up off-site to S3 (moto's server: nothing AWS runs here) and verified there; then the disaster: its
database is dropped and its data_dir deleted. Recovery restores from the off-site copy only, starts the
renewer, and renews through pebble again, reusing the restored ACME account. The time from the start of
recovery to a ready renewer, and to the first renewal proven served, is the drill's RTO; the test prints
both (recorded in benchmarks/RESULTS.md and docs/operations/backup.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
import sqlalchemy as sa
import yaml

from certloop.renewer import install
from stack.moto import MotoServer
from stack.process import wait_until
from tests.renewer.conftest import PG_ADMIN, TOKEN, RenewerProcess
from tests.renewer.standins.peers import DOMAIN, AcmeStack, acme_stack_fixture  # noqa: F401  # fixture

CERTLOOP = [sys.executable, "-m", "certloop.cli"]
PASSPHRASE = "drill passphrase, kept with the keystore key"


@pytest.fixture
def drill_db() -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """(url, create, drop) for a database of this test's own on the running PostgreSQL."""
    name = f"certloop_drill_{secrets.token_hex(4)}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")

    def create() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    create()
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", create, drop
    finally:
        drop()
        admin.dispose()


def _served(stack: AcmeStack) -> str:
    return asyncio.run(install.served_fingerprint("127.0.0.1", stack.tls_port, DOMAIN, 5))


def _certloop(*argv: str) -> str:
    done = subprocess.run([*CERTLOOP, *argv], capture_output=True, text=True, timeout=180, check=False,
                          env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])))
    assert done.returncode == 0, f"certloop {' '.join(argv)} exited {done.returncode}: {done.stdout}{done.stderr}"
    return done.stdout


def _renew(proc: RenewerProcess) -> dict[str, Any]:
    """Force a renewal of `shop` through the API and wait for its job to succeed."""
    accepted = proc.post("/api/v1/certificates/shop/renew?force=true")
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]

    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = proc.get(f"/api/v1/jobs/{job_id}").json()
        assert job["state"] not in {"failed", "rolled_back"}, job
        return job if job["state"] == "succeeded" else None

    result: dict[str, Any] = wait_until(done, 120, "the renewal job to succeed", interval=0.2)
    return result


def _account_files(data_dir: Path) -> dict[str, str]:
    root = data_dir / "issuers" / "acme-accounts"
    return {p.relative_to(data_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_restore_drill_postgresql_from_s3_then_renew_through_pebble(
    acme_stack: AcmeStack, moto: MotoServer, start_renewer: Callable[..., RenewerProcess],
    drill_db: tuple[str, Callable[[], None], Callable[[], None]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Backed up to S3, database dropped, data_dir removed, restored from S3 alone: the renewer keeps its
    history and its ACME account and renews again through pebble; the recovery is timed."""
    db_url, create_db, drop_db = drill_db
    for key, value in moto.aws_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    bucket = f"drill-{secrets.token_hex(4)}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    offsite = f"s3://{bucket}/renewer/"
    passphrase = tmp_path / "backup.passphrase"
    passphrase.write_text(PASSPHRASE + "\n")
    data_dir = tmp_path / "data"
    pebble = {"directory": acme_stack.pebble.directory_url, "ca_bundle": str(acme_stack.pebble.ca_bundle_path)}
    config = tmp_path / "renewer.yml"
    config.write_text(yaml.safe_dump({
        "listen": "127.0.0.1:0",
        "auth": {"token": TOKEN},
        "data_dir": str(data_dir),
        "database": {"url": db_url},
        "keystore": {"key": "${CERTLOOP_TEST_KEYSTORE}"},
        "worker": {"concurrency": 1, "lease": "60s", "poll_interval": "200ms", "max_attempts": 1},
        "scheduler": {"enabled": False},
        "certificates": [acme_stack.spec_data(
            {"type": "acme", **pebble, "http01": {"webroot": str(acme_stack.webroot)}})],
    }))

    # Before the disaster: a renewal through pebble, then an off-site backup, verified where it lies.
    renewer = start_renewer(config)
    first = _renew(renewer)
    served_before = _served(acme_stack)
    assert served_before != acme_stack.old.fingerprint
    renewer.kill(15)
    accounts = _account_files(data_dir)
    assert accounts, "the ACME account is in data_dir"
    started = time.monotonic()
    wrote = _certloop("renewer", "--config.file", str(config), "backup", "--out", offsite,
                      "--passphrase-file", str(passphrase), "--keep-daily", "7", "--keep-weekly", "4")
    backup_seconds = time.monotonic() - started
    assert f"wrote {offsite}renewer-" in wrote
    verified = _certloop("renewer", "backup", "verify", offsite, "--passphrase-file", str(passphrase),
                         "--scratch-database", PG_ADMIN)
    assert "restored into scratch postgresql" in verified and "all equal" in verified

    # The disaster: the database and the data directory are gone; only the S3 copy is left.
    drop_db()
    shutil.rmtree(data_dir)

    # Recovery, timed: an empty database, restore from S3, start, ready; then a renewal proven served.
    t0 = time.monotonic()
    create_db()
    restored = _certloop("renewer", "--config.file", str(config), "restore", "--in", offsite,
                         "--passphrase-file", str(passphrase))
    assert f"from {offsite}renewer-" in restored
    renewer = start_renewer(config, log_name="renewer-restored.log")
    wait_until(lambda: requests.get(f"{renewer.url}/-/ready", timeout=5).status_code == 200, 30,
               "the restored renewer to be ready")
    ready_seconds = time.monotonic() - t0
    history = renewer.get("/api/v1/jobs").json()["jobs"]
    assert [(j["id"], j["state"]) for j in history] == [(first["id"], "succeeded")]
    assert _account_files(data_dir) == accounts
    second = _renew(renewer)
    renewed_seconds = time.monotonic() - t0
    assert second["id"] > first["id"]
    served_after = _served(acme_stack)
    assert served_after not in {served_before, acme_stack.old.fingerprint}
    assert _account_files(data_dir) == accounts  # the restored account signed the order: none was registered
    print(f"\nrestore drill (PostgreSQL, S3 on moto, pebble): backup to S3 {backup_seconds:.2f}s; "
          f"RTO to a ready renewer {ready_seconds:.2f}s, to the first renewal served {renewed_seconds:.2f}s")
