"""The file inventory's snapshot (``--storage.path``): a restart serves every file without reading it,
and a snapshot that does not fit (other config, changed files, corruption) never shows wrong data."""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from certloop.exporter.sources.filestate import FileState
from stack.process import wait_until
from tests.exporter.support import ExporterProcess, exporter, run_cli, samples, value, write_config
from tests.support.pki import Pki

_CERT_SERIES = ("certloop_cert_not_after_timestamp_seconds", "certloop_cert_info", "certloop_verify_verdict",
                "certloop_probe_success", "certloop_chain_expiry_timestamp_seconds")


def _reads(text: str) -> float:
    return sum(s[1] for s in samples(text, "certloop_probes_total", source="file"))


def _cert_lines(text: str) -> list[str]:
    """The per-file series, duration excluded (it is the measured read time, kept as read)."""
    return sorted(line for line in text.splitlines() if line.startswith(_CERT_SERIES))


def _config(tmp_path: Path, pki: Pki, certs: Path, **group: Any) -> dict[str, Any]:
    return {"global": {"files_interval": "1h", "jitter": "0s", "ca_file": str(pki.write_root(tmp_path / "r.pem"))},
            "files": [{"paths": [str(certs)], "labels": {"team": "web"}, **group}]}


def _fleet(pki: Pki, certs: Path, n: int = 12) -> None:
    for i in range(n):
        pki.leaf([f"host{i}.example"], days=30 + i).write(certs, f"host{i}")


def test_a_restart_serves_every_file_from_the_snapshot_without_reading(pki: Pki, tmp_path: Path) -> None:
    """Same series after a restart, zero reads; files changed, added or removed while down are noticed."""
    certs, state = tmp_path / "certs", tmp_path / "state"
    _fleet(pki, certs)
    config = _config(tmp_path, pki, certs, include=["*.fullchain.pem"])
    with exporter(config, state_dir=state) as exp:
        first = exp.metrics()
    assert _reads(first) == 12
    snapshot = state / "files.state"
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    with exporter(config, state_dir=state) as exp:
        again = exp.metrics()
    assert _reads(again) == 0  # nothing read, nothing verified: served as stored
    assert _cert_lines(again) == _cert_lines(first)
    assert len(samples(again, "certloop_probe_success", source="file")) == 12

    renewed = pki.leaf(["host3.example"], days=200)
    (certs / "host3.fullchain.pem").write_bytes(renewed.fullchain_pem)  # rewritten in place: same inode
    (certs / "host4.fullchain.pem").unlink()
    pki.leaf(["new.example"]).write(certs, "new")
    with exporter(config, state_dir=state) as exp:
        text = exp.metrics()
    assert _reads(text) == 2  # the changed file and the new one
    assert value(text, "certloop_cert_info", target=str(certs / "host3.fullchain.pem"), position="0",
                 fingerprint_sha256=renewed.fingerprint) == 1
    assert not samples(text, "certloop_probe_success", target=str(certs / "host4.fullchain.pem"))
    assert value(text, "certloop_probe_success", target=str(certs / "new.fullchain.pem"), team="web") == 1


def test_a_snapshot_for_another_config_or_trust_store_is_ignored(pki: Pki, tmp_path: Path) -> None:
    """Changed labels, patterns or trust anchors: every file is read again (the stored series would lie)."""
    certs, state = tmp_path / "certs", tmp_path / "state"
    _fleet(pki, certs, 4)
    config = _config(tmp_path, pki, certs, include=["*.fullchain.pem"])
    with exporter(config, state_dir=state):
        pass
    relabelled = _config(tmp_path, pki, certs, include=["*.fullchain.pem"])
    relabelled["files"][0]["labels"] = {"team": "payments"}
    with exporter(relabelled, state_dir=state) as exp:
        text = exp.metrics()
    assert _reads(text) == 4
    assert len(samples(text, "certloop_probe_success", source="file", team="payments")) == 4
    other = Pki(name="another")
    retrusted = dict(relabelled, **{"global": {**relabelled["global"],
                                               "ca_file": str(other.write_root(tmp_path / "other.pem"))}})
    with exporter(retrusted, state_dir=state) as exp:
        text = exp.metrics()
    assert _reads(text) == 4
    assert value(text, "certloop_verify_verdict", target=str(certs / "host0.fullchain.pem"),
                 verdict="unknown_authority") == 1


def test_time_passing_while_down_is_judged_from_the_snapshot(pki: Pki, tmp_path: Path) -> None:
    """A leaf that expired while the exporter was stopped reads expired after the restart, still unread."""
    now = datetime.now(UTC)
    clock = [now]
    certs, state = tmp_path / "certs", tmp_path / "state"
    pki.leaf(["soon.example"], not_after=now + timedelta(hours=1)).write(certs, "soon")
    config = _config(tmp_path, pki, certs, include=["*.fullchain.pem"])
    target = str(certs / "soon.fullchain.pem")
    with exporter(config, state_dir=state, clock=lambda: clock[0]) as exp:
        assert value(exp.metrics(), "certloop_verify_verdict", target=target, verdict="ok") == 1
    clock[0] = now + timedelta(hours=2)
    with exporter(config, state_dir=state, clock=lambda: clock[0]) as exp:
        text = exp.metrics()
    assert value(text, "certloop_verify_verdict", target=target, verdict="expired") == 1
    assert _reads(text) == 0


def test_password_protected_files_are_never_stored(pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing derived from a PKCS#12 password reaches the disk: such files are read again after a restart."""
    certs, state = tmp_path / "certs", tmp_path / "state"
    leaf = pki.leaf(["vault.example"])
    certs.mkdir()
    (certs / "vault.p12").write_bytes(leaf.pkcs12(b"s3cret"))
    leaf.write(certs, "plain")
    monkeypatch.setenv("P12_PASSWORD", "s3cret")
    config = {"global": {"ca_file": str(pki.write_root(tmp_path / "r.pem"))},
              "files": [{"paths": [str(certs / "vault.p12")], "password": "${P12_PASSWORD}"},
                        {"paths": [str(certs / "plain.fullchain.pem")]}]}
    with exporter(config, state_dir=state):
        pass
    stored = FileState(state).path.read_bytes()
    assert b"vault.p12" not in stored and b"s3cret" not in stored
    assert str(certs / "plain.fullchain.pem").encode() in stored
    with exporter(config, state_dir=state) as exp:
        text = exp.metrics()
    assert _reads(text) == 1  # the .p12, read again with its password
    assert value(text, "certloop_probe_success", target=str(certs / "vault.p12")) == 1


class _Boom:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "foreign class", "wrong types"])
def test_a_damaged_snapshot_is_reported_and_ignored(pki: Pki, tmp_path: Path, damage: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Corruption costs a full read with a warning; it never stops the exporter, never runs code."""
    certs, state = tmp_path / "certs", tmp_path / "state"
    _fleet(pki, certs, 3)
    config = _config(tmp_path, pki, certs, include=["*.fullchain.pem"])
    with exporter(config, state_dir=state):
        pass
    path = FileState(state).path
    data = path.read_bytes()
    header = data[: data.index(b"\n") + 1]
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 64)
    else:
        fingerprint = pickle.loads(data[len(header) + 32 :])[0]  # noqa: S301 - the file the exporter above wrote
        body: object = _Boom() if damage == "foreign class" else {str(certs / "x.pem"): ("not", "a", "row")}
        payload = pickle.dumps((fingerprint, body))
        path.write_bytes(header + hashlib.sha256(payload).digest() + payload)
    os.chdir(tmp_path)
    with (caplog.at_level("WARNING", logger="certloop.exporter.sources.filestate"),
          exporter(config, state_dir=state) as exp):
        text = exp.metrics()
    assert _reads(text) == 3
    assert len(samples(text, "certloop_probe_success", source="file", team="web")) == 3
    assert any("file state" in r.getMessage() and "ignored" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "pwned").exists()


def test_the_cli_keeps_the_snapshot_across_sigterm(pki: Pki, tmp_path: Path) -> None:
    """``certloop exporter --storage.path``: SIGTERM writes the snapshot, the next process reads nothing."""
    certs, state = tmp_path / "certs", tmp_path / "state"
    _fleet(pki, certs, 5)
    config = write_config(tmp_path / "exporter.yml", _config(tmp_path, pki, certs, include=["*.fullchain.pem"]))
    first = ExporterProcess(config, tmp_path, f"--storage.path={state}").start()
    try:
        wait_until(lambda: _reads(first.metrics()) == 5, 20, "the first sweep")
    finally:
        assert first.stop() == 0
    second = ExporterProcess(config, tmp_path, f"--storage.path={state}").start()
    try:
        text = second.metrics()
    finally:
        second.stop()
    assert _reads(text) == 0
    assert len(samples(text, "certloop_probe_success", source="file", team="web")) == 5


def test_an_unusable_storage_path_is_refused_at_start(tmp_path: Path) -> None:
    """A storage path that cannot be a directory is an error at start, naming the flag."""
    config = write_config(tmp_path / "exporter.yml", {"files": [{"paths": [str(tmp_path)]}]})
    (tmp_path / "plain-file").write_text("")
    result = run_cli(f"--config.file={config}", f"--storage.path={tmp_path / 'plain-file'}")
    assert result.returncode == 64
    assert f"--storage.path {tmp_path / 'plain-file'}: " in result.stderr


def test_a_reload_hands_the_inventory_over_instead_of_reading_it_again(pki: Pki, tmp_path: Path) -> None:
    """A reload (SIGHUP, ``/-/reload``) with the files config unchanged reads no file again."""
    certs, state = tmp_path / "certs", tmp_path / "state"
    _fleet(pki, certs, 6)
    config = _config(tmp_path, pki, certs, include=["*.fullchain.pem"])
    path = write_config(tmp_path / "exporter.yml", config)
    with exporter(config_path=path, state_dir=state) as exp:
        assert exp.engine is not None
        first = exp.metrics()
        assert _reads(first) == 6
        swept = value(first, "certloop_last_sweep_timestamp_seconds", kind="files")
        config["global"]["interval"] = "2h"  # an unrelated change
        write_config(path, config)
        assert exp.call(exp.engine.reload()) == (True, "reloaded")
        wait_until(lambda: value(exp.metrics(), "certloop_last_sweep_timestamp_seconds", kind="files") > swept,
                   10, "the new config's first files sweep")
        text = exp.metrics()
    assert _reads(text) == 6  # not 12
    assert len(samples(text, "certloop_probe_success", source="file", team="web")) == 6
