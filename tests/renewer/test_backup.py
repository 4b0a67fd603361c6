"""`certloop renewer backup` / `restore`: an encrypted archive of the database rows and the data dir,
restored into a fresh data directory and a fresh database (SQLite -> PostgreSQL)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from certloop.renewer.backup import FORMAT, read_backup
from certloop.renewer.cli import main
from certloop.renewer.config import load_config
from certloop.renewer.daemon import open_keystore, open_store
from certloop.renewer.errors import BackupError
from certloop.renewer.records import AuditEvent, State
from tests.renewer.conftest import Setup, clean

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _seed(setup: Setup) -> tuple[int, bytes]:
    """A job with an audit trail, certificate state and a sealed file in the data dir."""
    cfg = load_config(setup.path)
    store = open_store(cfg)
    job_id = store.enqueue("shop", trigger="alert", reason="seed", now=NOW).job_id
    assert job_id is not None
    store.claim("w", NOW, cfg.worker.lease)
    store.transition(job_id, "w", State.ISSUING, "issuing", NOW)
    store.update_certificate_state("shop", NOW, last_result="failed", last_error="seeded")
    store.record_audit([AuditEvent(NOW, "otto", "operator", "renew", "shop", "127.0.0.1", 202, f"job {job_id}")])
    store.close()
    secret = open_keystore(cfg).seal(b"private key", certificate_id="shop", purpose="test")
    (cfg.data_dir / "material").mkdir(exist_ok=True)
    (cfg.data_dir / "material" / "shop.sealed").write_bytes(secret)
    return job_id, secret


def _fresh(setup: Setup, database: str | None, tmp_path: Path) -> Path:
    data = dict(setup.data, data_dir=str(tmp_path / "restored"))
    if database is not None:
        data["database"] = {"url": database}
    path = tmp_path / "restored.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_backup_restores_into_a_fresh_data_dir_and_postgresql(
    make_setup: Callable[..., Setup], tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    """Rows and files come back byte for byte in another data dir on another database engine."""
    setup = make_setup(["shop"])
    job_id, secret = _seed(setup)
    archive = tmp_path / "certloop.renewer.backup"
    assert main(["--config.file", str(setup.path), "backup", "--out", str(archive)]) == 0
    assert oct(archive.stat().st_mode & 0o777) == "0o600"
    assert b"seed" not in archive.read_bytes() and b"private key" not in archive.read_bytes()
    target = _fresh(setup, pg_url, tmp_path)
    clean(open_store(load_config(target))).close()
    assert main(["--config.file", str(target), "restore", "--in", str(archive)]) == 0
    assert "restored" in capsys.readouterr().out
    cfg = load_config(target)
    assert (cfg.data_dir / "material" / "shop.sealed").read_bytes() == secret
    store = open_store(cfg)
    job = store.get_job(job_id)
    assert job is not None and job.state is State.ISSUING and job.certificate == "shop"
    assert [e.to_state for e in store.events(job_id)] == ["queued", "issuing"]
    assert store.certificate_states()["shop"].last_error == "seeded"
    assert [(e.actor, e.action, e.target, e.status) for e in store.audit()] == [("otto", "renew", "shop", 202)]
    store.close()
    # A second restore into the now non-empty database is refused without --force.
    assert main(["--config.file", str(target), "restore", "--in", str(archive)]) == 1
    assert "already holds jobs" in capsys.readouterr().err


def test_passphrase_archive_needs_the_passphrase(make_setup: Callable[..., Setup], tmp_path: Path) -> None:
    """A passphrase-encrypted archive opens with the passphrase only; tampering is detected."""
    setup = make_setup(["shop"])
    _seed(setup)
    phrase = tmp_path / "phrase"
    phrase.write_text("correct horse battery staple\n")
    archive = tmp_path / "certloop.renewer.backup"
    assert main(["--config.file", str(setup.path), "backup", "--out", str(archive),
                 "--passphrase-file", str(phrase)]) == 0
    doc = read_backup(archive, passphrase=b"correct horse battery staple")
    assert doc["format"] == FORMAT and "keystore.key" not in doc["files"]
    assert any(name.startswith("material/") for name in doc["files"])
    with pytest.raises(BackupError, match="wrong key or passphrase"):
        read_backup(archive, passphrase=b"wrong horse battery staple")
    with pytest.raises(BackupError, match="passphrase-file"):
        read_backup(archive, key=os.urandom(32))
    blob = bytearray(archive.read_bytes())
    blob[-1] ^= 1
    archive.write_bytes(bytes(blob))
    with pytest.raises(BackupError, match="altered"):
        read_backup(archive, passphrase=b"correct horse battery staple")
    target = _fresh(setup, None, tmp_path)
    assert main(["--config.file", str(target), "restore", "--in", str(archive),
                 "--passphrase-file", str(phrase)]) == 1


def test_install_journals_are_neither_archived_nor_restored(make_setup: Callable[..., Setup], tmp_path: Path) -> None:
    """A journal left by an install in flight would, replayed after a restore, copy old certificates over newer
    ones: backup leaves `journal/` out, and restore ignores journal entries of older archives."""
    from certloop.renewer.backup import make_backup, restore_backup

    setup = make_setup(["shop"])
    cfg = load_config(setup.path)
    store = open_store(cfg)
    journal = cfg.data_dir / "journal" / "shop.json"
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.write_text('{"files": []}')
    (cfg.data_dir / "material").mkdir(exist_ok=True)
    (cfg.data_dir / "material" / "1.sealed").write_bytes(b"sealed")
    try:
        doc = make_backup(store, cfg.data_dir, datetime.now(UTC))
    finally:
        store.close()
    assert "material/1.sealed" in doc["files"]
    assert not any(name.startswith("journal/") for name in doc["files"])

    doc["files"]["journal/shop.json"] = {"mode": 0o600, "data": "e30="}  # as an older archive would hold
    fresh = tmp_path / "fresh"
    target = open_store(load_config(setup.path))
    try:
        restored = restore_backup(doc, target, fresh, overwrite=True)
    finally:
        target.close()
    assert (fresh / "material" / "1.sealed").read_bytes() == b"sealed"
    assert not (fresh / "journal").exists()
    assert restored.files == len(doc["files"]) - 1
