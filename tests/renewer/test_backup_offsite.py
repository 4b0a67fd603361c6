"""Off-site backups, retention and ``backup verify``.

S3 is moto's server (a real process on loopback, from PyPI: nothing AWS runs here), reached through boto3
configured only by the standard AWS environment variables, as an operator would configure it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa
import yaml

from certloop.renewer import migrations
from certloop.renewer.backup import make_backup, restore_backup
from certloop.renewer.backupsite import archive_name, expired
from certloop.renewer.backupverify import check_restored
from certloop.renewer.cli import main
from certloop.renewer.config import load_config
from certloop.renewer.daemon import open_keystore, open_store
from certloop.renewer.errors import Mismatch
from certloop.renewer.records import State
from certloop.renewer.store import Store
from stack.moto import MotoServer
from tests.renewer.conftest import Setup
from tests.support.servers import private_postgres

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PHRASE = "an off-site passphrase, long enough"


def _seed(setup: Setup) -> None:
    cfg = load_config(setup.path)
    store = open_store(cfg)
    for cert in ("shop", "blog"):
        job_id = store.enqueue(cert, trigger="alert", reason="seed", now=NOW).job_id
        assert job_id is not None
        store.claim("w", NOW, cfg.worker.lease)
        store.transition(job_id, "w", State.ISSUING, "issuing", NOW)
    store.update_certificate_state("shop", NOW, last_result="failed", last_error="seeded")
    store.close()
    (cfg.data_dir / "material").mkdir(exist_ok=True)
    (cfg.data_dir / "material" / "shop.sealed").write_bytes(open_keystore(cfg).seal(b"k", certificate_id="shop",
                                                                                    purpose="test"))


@pytest.fixture
def s3(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on moto; the AWS variables point boto3 at it for this test."""
    for key, value in moto.aws_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")  # the host's ~/.aws must not leak in
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    bucket = f"certloop-{datetime.now(UTC):%H%M%S%f}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture
def seeded(make_setup: Callable[..., Setup], tmp_path: Path) -> tuple[Setup, Path]:
    setup = make_setup(["shop", "blog"])
    _seed(setup)
    phrase = tmp_path / "phrase"
    phrase.write_text(PHRASE + "\n")
    return setup, phrase


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _keys(bucket: str, prefix: str) -> list[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


# -- retention: a pure function of the names ---------------------------------------------------------


def test_retention_keeps_newest_per_day_and_per_week() -> None:
    """Two archives a day for 30 days, keep 7 daily and 4 weekly: the newest of each of the last 7 days
    and of each of the last 4 ISO weeks stay, everything else goes, and foreign names are never touched."""
    start = datetime(2026, 11, 1, 3, 30, tzinfo=UTC)  # a Sunday
    names = [archive_name(start + timedelta(days=d, hours=h)) for d in range(30) for h in (0, 12)]
    names += ["notes.txt", "renewer.clb", "renewer-2026.clb"]
    doomed = expired(names, keep_daily=7, keep_weekly=4)
    kept = sorted(set(names) - set(doomed))
    assert {"notes.txt", "renewer.clb", "renewer-2026.clb"} <= set(kept)
    kept_archives = sorted(n for n in kept if n.startswith("renewer-2026") and n != "renewer-2026.clb")
    daily = [archive_name(start + timedelta(days=d, hours=12)) for d in range(23, 30)]
    # The last 4 ISO weeks with archives: W49 (Nov 30), W48 (Nov 29 = Sunday ends it), W47, W46.
    weekly = [archive_name(datetime(2026, 11, d, 15, 30, tzinfo=UTC)) for d in (15, 22, 29)]
    assert kept_archives == sorted(set(daily) | set(weekly))
    assert len(doomed) == 60 - len(kept_archives)


def test_retention_always_keeps_the_newest_and_rejects_negative_counts() -> None:
    names = [archive_name(NOW), archive_name(NOW - timedelta(days=1))]
    assert expired(names, keep_daily=0, keep_weekly=0) == [archive_name(NOW - timedelta(days=1))]
    with pytest.raises(ValueError, match="negative"):
        expired(names, keep_daily=-1, keep_weekly=1)


def test_prune_on_a_local_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`backup prune DIR/` deletes what retention expires (dry run first), needs no renewer config."""
    backups = tmp_path / "backups"
    backups.mkdir()
    names = [archive_name(NOW - timedelta(days=d)) for d in range(10)]
    for name in [*names, "keep-me.txt"]:
        (backups / name).write_bytes(b"x")
    code, out, _ = _run(capsys, "--config.file", str(tmp_path / "absent.yml"), "backup", "prune",
                        f"{backups}/", "--keep-daily", "3", "--keep-weekly", "0", "--dry-run")
    assert code == 0 and out.count("would delete") == 7 and len(list(backups.iterdir())) == 11
    code, out, _ = _run(capsys, "--config.file", str(tmp_path / "absent.yml"), "backup", "prune",
                        f"{backups}/", "--keep-daily", "3", "--keep-weekly", "0")
    assert code == 0 and "kept 3 archive(s)" in out
    assert sorted(p.name for p in backups.iterdir()) == sorted([*names[:3], "keep-me.txt"])
    code, _, err = _run(capsys, "backup", "prune", f"{backups}/", "--keep-daily", "0", "--keep-weekly", "0")
    assert code == 64 and "not both 0" in err


# -- off-site: s3:// through boto3 against moto ------------------------------------------------------


def test_backup_to_s3_prunes_there_and_restores_from_it(
    seeded: tuple[Setup, Path], s3: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """`backup --out s3://b/p/` writes a timestamped object and applies retention to the prefix;
    `restore --in s3://b/p/` takes the newest archive there into a fresh data dir and database."""
    setup, phrase = seeded
    old = [f"nightly/{archive_name(NOW - timedelta(days=d))}" for d in range(1, 6)]
    for key in [*old, "nightly/unrelated.txt", "other/" + archive_name(NOW - timedelta(days=9))]:
        boto3.client("s3").put_object(Bucket=s3, Key=key, Body=b"old")
    code, out, err = _run(capsys, "--config.file", str(setup.path), "backup", "--out", f"s3://{s3}/nightly/",
                          "--passphrase-file", str(phrase), "--keep-daily", "2", "--keep-weekly", "0")
    assert code == 0, err
    assert f"wrote s3://{s3}/nightly/renewer-" in out and "database rows" in out
    keys = _keys(s3, "nightly/")
    fresh = [k for k in keys if k not in old and k.endswith(".clb")]
    assert len(fresh) == 1
    # Kept: the new archive and yesterday's (2 days), the foreign name; the other prefix is untouched.
    assert keys == sorted([fresh[0], old[0], "nightly/unrelated.txt"])
    assert _keys(s3, "other/") == ["other/" + archive_name(NOW - timedelta(days=9))]

    target = dict(setup.data, data_dir=str(tmp_path / "restored"))
    target_path = tmp_path / "restored.yml"
    target_path.write_text(yaml.safe_dump(target))
    code, out, err = _run(capsys, "--config.file", str(target_path), "restore", "--in", f"s3://{s3}/nightly/",
                          "--passphrase-file", str(phrase))
    assert code == 0, err
    assert f"from s3://{s3}/{fresh[0]}" in out
    store = open_store(load_config(target_path))
    try:
        assert sorted(j.certificate for j in store.list_jobs()) == ["blog", "shop"]
    finally:
        store.close()
    assert (tmp_path / "restored" / "material" / "shop.sealed").is_file()


def test_s3_errors_name_the_url(seeded: tuple[Setup, Path], s3: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing bucket, a missing object and an empty prefix are one-line errors (exit 1), no traceback."""
    setup, phrase = seeded
    code, _, err = _run(capsys, "--config.file", str(setup.path), "backup", "--out", "s3://no-such-bucket/x/",
                        "--passphrase-file", str(phrase))
    assert code == 1 and "s3://no-such-bucket/x/renewer-" in err and "NoSuchBucket" in err
    code, _, err = _run(capsys, "--config.file", str(setup.path), "restore", "--in", f"s3://{s3}/none.clb",
                        "--passphrase-file", str(phrase))
    assert code == 1 and f"s3://{s3}/none.clb: cannot download: NoSuchKey" in err
    code, _, err = _run(capsys, "backup", "verify", f"s3://{s3}/empty/", "--passphrase-file", str(phrase))
    assert code == 1 and "no renewer-*.clb archive here" in err
    code, _, err = _run(capsys, "--config.file", str(setup.path), "backup", "--out", "s3://b/../x",
                        "--passphrase-file", str(phrase))
    assert code == 1 and "must not contain `..`" in err
    assert "Traceback" not in err


# -- verify ------------------------------------------------------------------------------------------


def test_verify_a_good_archive_on_s3_and_locally(
    seeded: tuple[Setup, Path], s3: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A good archive verifies (exit 0) from S3 and from a file, with the counts it holds; verify needs
    no renewer config when the passphrase is given, and never touches the live data_dir."""
    setup, phrase = seeded
    data_dir = Path(setup.data["data_dir"])
    before = sorted((p.relative_to(data_dir), p.stat().st_mtime_ns) for p in data_dir.rglob("*"))
    url = f"s3://{s3}/verify/good.clb"
    assert _run(capsys, "--config.file", str(setup.path), "backup", "--out", url,
                "--passphrase-file", str(phrase))[0] == 0
    code, out, err = _run(capsys, "--config.file", str(tmp_path / "none.yml"), "backup", "verify", url,
                          "--passphrase-file", str(phrase))
    assert code == 0, err
    assert f"verified {url}" in out and "scratch sqlite" in out and "jobs 2, job_events 4" in out, out
    assert "certificate_state 1" in out and "all equal" in out
    archive = tmp_path / "good.clb"
    assert _run(capsys, "--config.file", str(setup.path), "backup", "--out", str(archive))[0] == 0
    code, out, err = _run(capsys, "--config.file", str(setup.path), "backup", "verify", str(archive))
    assert code == 0 and "all equal" in out, err  # keystore-key archive: the config gives the key
    assert sorted((p.relative_to(data_dir), p.stat().st_mtime_ns) for p in data_dir.rglob("*")) == before


def test_verify_into_a_scratch_postgresql_database(
    seeded: tuple[Setup, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """`--scratch-database` restores into a new database on that server and drops it afterwards: the
    server's log shows one database created and that same one dropped, and none is left.

    A private cluster, so no other run's scratch databases come and go on the server meanwhile."""
    setup, phrase = seeded
    archive = tmp_path / "good.clb"
    assert _run(capsys, "--config.file", str(setup.path), "backup", "--out", str(archive),
                "--passphrase-file", str(phrase))[0] == 0
    with private_postgres("log_statement=ddl") as cluster:

        def databases() -> set[str]:
            admin = sa.create_engine(cluster.url)
            try:
                with admin.connect() as conn:
                    return {r[0] for r in conn.execute(sa.text("SELECT datname FROM pg_database"))}
            finally:
                admin.dispose()

        before = databases()
        code, out, err = _run(capsys, "backup", "verify", str(archive), "--passphrase-file", str(phrase),
                              "--scratch-database", cluster.url)
        assert code == 0, err
        assert "scratch postgresql" in out and "jobs 2" in out
        assert databases() == before
        log = cluster.process.log_path.read_text()
        created = re.findall(r'CREATE DATABASE "(certloop_verify_[0-9a-f]+)"', log)
        dropped = re.findall(r'DROP DATABASE IF EXISTS "(certloop_verify_[0-9a-f]+)"', log)
        assert len(created) == 1 and dropped == created, log[-2000:]


def test_verify_a_corrupted_archive_exits_4(
    seeded: tuple[Setup, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """One flipped byte in the body, a truncated file, a file that is no archive: exit 4, 'damaged'."""
    setup, phrase = seeded
    archive = tmp_path / "a.clb"
    assert _run(capsys, "--config.file", str(setup.path), "backup", "--out", str(archive),
                "--passphrase-file", str(phrase))[0] == 0
    blob = archive.read_bytes()
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x40
    cases = {"flipped.clb": bytes(flipped), "truncated.clb": blob[:30], "foreign.clb": b"PK\x03\x04" + blob[4:]}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        code, _, err = _run(capsys, "backup", "verify", str(tmp_path / name), "--passphrase-file", str(phrase))
        assert code == 4, (name, err)
        assert str(tmp_path / name) in err and ("altered or damaged" in err or "not a certloop" in err), err


def test_verify_with_the_wrong_key_exits_3(
    seeded: tuple[Setup, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A wrong passphrase, or another keystore key, is told apart from damage: exit 3."""
    setup, phrase = seeded
    archive = tmp_path / "a.clb"
    assert _run(capsys, "--config.file", str(setup.path), "backup", "--out", str(archive),
                "--passphrase-file", str(phrase))[0] == 0
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase at all\n")
    code, _, err = _run(capsys, "backup", "verify", str(archive), "--passphrase-file", str(wrong))
    assert code == 3 and "wrong key or passphrase" in err
    keyed = tmp_path / "k.clb"
    assert _run(capsys, "--config.file", str(setup.path), "backup", "--out", str(keyed))[0] == 0
    monkeypatch.setenv("CERTLOOP_TEST_KEYSTORE", "11" * 32)
    code, _, err = _run(capsys, "--config.file", str(setup.path), "backup", "verify", str(keyed))
    assert code == 3 and "wrong key or passphrase" in err


def test_verify_reports_restored_content_that_differs(seeded: tuple[Setup, Path], tmp_path: Path) -> None:
    """The comparison step itself, on a real restore then tampered with: a missing row, a changed file and
    an extra file each name what differs (the CLI maps this to exit 5)."""
    setup, _ = seeded
    cfg = load_config(setup.path)
    live = open_store(cfg)
    try:
        doc = make_backup(live, cfg.data_dir, NOW)
    finally:
        live.close()
    scratch_dir = tmp_path / "scratch"
    store = Store(f"sqlite:///{tmp_path / 'scratch.db'}")
    try:
        migrations.upgrade(store.engine)
        restore_backup(doc, store, scratch_dir)
        assert check_restored(doc, "a.clb", store, scratch_dir).rows["jobs"] == 2
        with store.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM job_events WHERE id = (SELECT MIN(id) FROM job_events)")
        (scratch_dir / "material" / "shop.sealed").write_bytes(b"changed")
        (scratch_dir / "material" / "extra").write_bytes(b"x")
        with pytest.raises(Mismatch) as caught:
            check_restored(doc, "a.clb", store, scratch_dir)
    finally:
        store.close()
    message = str(caught.value)
    assert "table job_events: archive has 4 rows, scratch database has 3" in message
    assert "file material/shop.sealed: restored content differs" in message
    assert "file material/extra: restored but not in the archive" in message
