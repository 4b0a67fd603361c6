"""Inventory of certificate files: formats, per-file errors, change detection, labels."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stack.process import wait_until
from tests.exporter.support import exporter, samples, value
from tests.support.pki import Pki


def _probes(text: str) -> float:
    return value(text, "certloop_probes_total", source="file", result="success") + value(
        text, "certloop_probes_total", source="file", result="failure")


def test_formats_and_per_file_errors(pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bundles, DER and PKCS#12 are read; each broken file reports its own reason and nothing else is lost."""
    certs = tmp_path / "certs"
    good = pki.leaf(["shop.example"], days=30)
    good.write(certs, "shop")
    (certs / "shop.der").write_bytes(good.der)
    (certs / "shop.p12").write_bytes(good.pkcs12(b"s3cret"))
    (certs / "wrong.pfx").write_bytes(good.pkcs12(b"other"))
    (certs / "garbage.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    (certs / "empty.crt").write_bytes(b"")
    os.mkfifo(certs / "fifo.pem")  # root reads any mode bits, so "unreadable" is shown with a FIFO
    (certs / "loop-a.pem").symlink_to(certs / "loop-b.pem")
    (certs / "loop-b.pem").symlink_to(certs / "loop-a.pem")
    (certs / "dangling.pem").symlink_to(certs / "archive" / "gone.pem")  # a live/ link whose target went
    with (certs / "huge.pem").open("wb") as fh:  # 50 MB: refused by size, never read into memory
        fh.truncate(50 * 1024 * 1024)
    (certs / "notes.txt").write_text("not matched by the include patterns")
    password_file = tmp_path / "p12-password"
    password_file.write_text("s3cret\n")
    monkeypatch.setenv("P12_PASSWORD", "s3cret")
    config = {"global": {"ca_file": str(pki.write_root(tmp_path / "root.pem"))},
              "files": [
                  {"paths": [str(certs / "shop.p12")], "password_file": str(password_file),
                   "labels": {"certificate": "shop-p12"}},
                  {"paths": [str(certs / "wrong.pfx")], "password": "${P12_PASSWORD}"},
                  {"paths": [str(certs)], "labels": {"certificate": "shop"}},
                  {"paths": [str(tmp_path / "missing.pem"), str(tmp_path / "links" / "*.pem")]},
              ]}
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "site.pem").symlink_to(tmp_path / "nowhere.pem")
    with exporter(config) as exp:
        text = exp.metrics()
    ok = {"shop.crt", "shop.fullchain.pem", "shop.der", "shop.p12", "shop.chain.pem"}
    failing = {"wrong.pfx": "wrong_password", "garbage.pem": "parse_error", "empty.crt": "empty",
               "fifo.pem": "not_a_file", "loop-a.pem": "symlink_loop", "loop-b.pem": "symlink_loop",
               "huge.pem": "too_large", "dangling.pem": "not_found"}
    for name in ok:
        assert value(text, "certloop_probe_success", target=str(certs / name)) == 1, name
    for name, reason in failing.items():
        assert value(text, "certloop_probe_success", target=str(certs / name)) == 0, name
        assert value(text, "certloop_probe_failure_reason", target=str(certs / name), reason=reason) == 1, name
    assert value(text, "certloop_probe_failure_reason", target=str(tmp_path / "missing.pem"),
                 reason="not_found") == 1
    assert value(text, "certloop_probe_failure_reason", target=str(tmp_path / "links" / "site.pem"),
                 reason="not_found") == 1
    assert not samples(text, "certloop_probe_success", target=str(certs / "notes.txt"))
    # the first group naming a file wins: shop.p12 carries its own label, read with its password
    assert value(text, "certloop_probe_success", target=str(certs / "shop.p12"), certificate="shop-p12") == 1
    fullchain = str(certs / "shop.fullchain.pem")
    assert value(text, "certloop_verify_verdict", target=fullchain, verdict="ok") == 1
    not_after = int(good.cert.not_valid_after_utc.timestamp())
    assert value(text, "certloop_cert_not_after_timestamp_seconds", target=fullchain, position="0",
                 role="leaf", certificate="shop", source="file", address="") == not_after
    assert value(text, "certloop_cert_info", target=fullchain, position="1", role="intermediate",
                 fingerprint_sha256=pki.intermediate.fingerprint) == 1
    # a leaf alone does not reach the trust anchor: its dates are exported all the same
    assert value(text, "certloop_verify_verdict", target=str(certs / "shop.crt"), verdict="incomplete_chain") == 1
    assert value(text, "certloop_chain_expiry_timestamp_seconds", target=str(certs / "shop.der")) == int(
        good.cert.not_valid_after_utc.timestamp())


def test_unchanged_files_are_not_reread_and_changes_are_seen(pki: Pki, tmp_path: Path) -> None:
    """A sweep re-reads only files whose stat changed; a replaced file and a removed file show at once."""
    certs = tmp_path / "certs"
    for i in range(20):
        pki.leaf([f"host{i}.example"]).write(certs, f"host{i}")
    config = {"global": {"files_interval": "50ms", "jitter": "0s", "ca_file": str(pki.write_root(tmp_path / "r.pem"))},
              "files": [{"paths": [str(certs / "*.fullchain.pem")], "labels": {"team": "web"}}]}
    with exporter(config) as exp:
        assert exp.engine is not None
        first = exp.metrics()
        assert _probes(first) == 20
        sweep = value(first, "certloop_last_sweep_timestamp_seconds", kind="files")
        wait_until(lambda: value(exp.metrics(), "certloop_last_sweep_timestamp_seconds", kind="files") > sweep + 0.1,
                   10, "two more file sweeps")
        assert _probes(exp.metrics()) == 20  # nothing changed: nothing read
        renewed = pki.leaf(["host3.example"], days=200)
        target = certs / "host3.fullchain.pem"
        tmp = certs / "host3.tmp"
        tmp.write_bytes(renewed.fullchain_pem)
        os.replace(tmp, target)
        (certs / "host4.fullchain.pem").unlink()

        def renewed_seen() -> bool:
            text = exp.metrics()
            return bool(samples(text, "certloop_cert_info", target=str(target), fingerprint_sha256=renewed.fingerprint))

        wait_until(renewed_seen, 10, "the renewed file to be re-read")
        text = exp.metrics()
        assert _probes(text) == 21
        assert not samples(text, "certloop_probe_success", target=str(certs / "host4.fullchain.pem"))
        assert value(text, "certloop_probe_success", target=str(target), team="web") == 1


def test_recursive_directories(pki: Pki, tmp_path: Path) -> None:
    """``recursive: true`` descends into subdirectories; without it only the top level is listed."""
    root = tmp_path / "tree"
    pki.leaf(["top.example"]).write(root, "top")
    pki.leaf(["deep.example"]).write(root / "a" / "b", "deep")
    config = {"files": [{"paths": [str(root)], "recursive": True, "include": ["*.crt"]},
                        {"paths": [str(tmp_path / "tree" / "a")], "include": ["*.crt"]}]}
    with exporter(config) as exp:
        text = exp.metrics()
    assert value(text, "certloop_probe_success", target=str(root / "a" / "b" / "deep.crt")) == 1
    assert value(text, "certloop_probe_success", target=str(root / "top.crt")) == 1
    assert len(samples(text, "certloop_probe_success", source="file")) == 2


def test_verdict_follows_the_clock_without_rereading(pki: Pki, tmp_path: Path) -> None:
    """An unchanged file is re-judged when time crosses its not_after, from memory: no read is counted."""
    now = datetime.now(UTC)
    clock = [now]
    leaf = pki.leaf(["soon.example"], not_after=now + timedelta(hours=1))
    paths = leaf.write(tmp_path, "soon")
    config = {"global": {"files_interval": "50ms", "jitter": "0s", "ca_file": str(pki.write_root(tmp_path / "r.pem"))},
              "files": [{"paths": [str(paths["fullchain"])]}]}
    target = str(paths["fullchain"])
    with exporter(config, clock=lambda: clock[0]) as exp:
        text = exp.metrics()
        assert value(text, "certloop_verify_verdict", target=target, verdict="ok") == 1
        clock[0] = now + timedelta(hours=2)
        wait_until(lambda: bool(samples(exp.metrics(), "certloop_verify_verdict", target=target, verdict="expired")),
                   10, "the verdict to become expired")
        text = exp.metrics()
    assert value(text, "certloop_verify_ok", target=target) == 0
    assert _probes(text) == 1  # judged again from memory, not read again
