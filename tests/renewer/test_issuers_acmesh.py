"""The acme.sh issuer adapter.

acme.sh cannot be installed here, so these tests run the adapter against an argv-recording
stand-in on PATH (tests/renewer/standins/acme.sh) that behaves per acme.sh's documented contract:
``--issue`` copies the result to --cert-file/--key-file/--ca-file/--fullchain-file and exits 0;
exit 2 means skipped (not due), 3 DNS manual mode pending, anything else failed. The stand-in
mints from the test CA instead of talking to an ACME server.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from certloop.caches import Caches
from certloop.config import validate_model
from certloop.renewer import pipeline
from certloop.renewer.context import RenewalContext
from certloop.renewer.errors import BackendFailed, NotDue, PendingManual
from certloop.renewer.keystore import Keystore
from certloop.renewer.spec import CertificateSpec
from certloop.truststore import TrustStore
from stack.process import wait_until
from tests.renewer.standins.peers import recorded, standin_env
from tests.support.pki import Pki


def _spec(tmp_path: Path, **issuer: object) -> CertificateSpec:
    return validate_model(CertificateSpec, {
        "id": "shop",
        "domains": ["shop.example", "www.shop.example"],
        "key_type": "ec384",
        "issuer": {"type": "acme.sh", "server": "https://127.0.0.1:14000/dir",
                   "webroot": str(tmp_path / "webroot"), **issuer},
        "outputs": {"fullchain": str(tmp_path / "live" / "f.pem"), "key": str(tmp_path / "live" / "k.pem")},
    })


def _ctx(tmp_path: Path) -> RenewalContext:
    return RenewalContext(tmp_path / "data", lambda: datetime.now(UTC), Keystore(b"a" * 32))


def test_issue_passes_the_documented_flags_and_reads_staging(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--issue with our homes, server, key length, -d per name, -w, and copies into staging only."""
    record = standin_env(monkeypatch, tmp_path, pki)
    spec, ctx = _spec(tmp_path, ca_bundle="/etc/pebble.pem"), _ctx(tmp_path)
    material = asyncio.run(pipeline.issue(spec, ctx))
    pipeline.validate(material, spec, now=datetime.now(UTC), trust=TrustStore.from_pem(pki.root_pem, Caches()))
    (call,) = recorded(record)
    argv = call["argv"]
    assert isinstance(argv, list)
    flag = {a: argv[i + 1] for i, a in enumerate(argv[:-1]) if a.startswith("-")}
    home = ctx.data_dir / "issuers" / "acme_sh" / "shop"
    assert argv[0] == "--issue"
    assert flag["--home"] == str(home) and flag["--config-home"] == str(home / "config")
    assert flag["--server"] == "https://127.0.0.1:14000/dir"
    assert flag["--keylength"] == "ec-384"
    assert flag["-w"] == str(tmp_path / "webroot")
    assert flag["--ca-bundle"] == "/etc/pebble.pem"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "-d"] == ["shop.example", "www.shop.example"]
    staging = ctx.data_dir / "staging" / "shop"
    for out in ("--cert-file", "--key-file", "--ca-file", "--fullchain-file", "--cert-home"):
        assert Path(flag[out]).is_relative_to(staging)
    assert not any(staging.iterdir())  # staging (with the plaintext key) removed afterwards
    assert not (tmp_path / "live").exists()  # never the live files


@pytest.mark.parametrize(
    ("code", "error"), [("2", NotDue), ("3", PendingManual), ("1", BackendFailed)]
)
def test_exit_codes_are_the_contract(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch, code: str, error: type[Exception]
) -> None:
    """0 issued, 2 skipped -> NotDue, 3 manual DNS -> PendingManual, other -> BackendFailed with stderr."""
    standin_env(monkeypatch, tmp_path, pki)
    monkeypatch.setenv("CERTLOOP_STANDIN_EXIT", code)
    with pytest.raises(error) as info:
        asyncio.run(pipeline.issue(_spec(tmp_path), _ctx(tmp_path)))
    if isinstance(info.value, BackendFailed):
        assert info.value.returncode == 1
        assert "Le_OrderFinalize" in info.value.stderr_tail


def test_dns_and_standalone_modes(tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    """--dns <api> and --standalone --httpport <port> replace -w."""
    record = standin_env(monkeypatch, tmp_path, pki)
    asyncio.run(pipeline.issue(_spec(tmp_path, webroot=None, dns="dns_cf"), _ctx(tmp_path)))
    asyncio.run(pipeline.issue(_spec(tmp_path, webroot=None, standalone_port=8080), _ctx(tmp_path)))
    dns, standalone = (c["argv"] for c in recorded(record))
    assert isinstance(dns, list) and isinstance(standalone, list)
    assert dns[dns.index("--dns") + 1] == "dns_cf" and "-w" not in dns
    assert standalone[standalone.index("--httpport") + 1] == "8080" and "--standalone" in standalone


def test_timeout_kills_the_process_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An issuer that hangs is killed at the issuance timeout (with its children): BackendFailed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pidfile = tmp_path / "child.pid"
    hang = bin_dir / "acme.sh"
    hang.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {pidfile}\nwait\n")
    hang.chmod(0o755)
    ctx = RenewalContext(tmp_path / "data", lambda: datetime.now(UTC), Keystore(b"a" * 32), 1.0)
    spec = _spec(tmp_path, executable=str(hang))
    with pytest.raises(BackendFailed, match="timed out") as info:
        asyncio.run(pipeline.issue(spec, ctx))
    assert info.value.returncode is None
    child = int(pidfile.read_text())
    # the grandchild dies with the group (a zombie counts as dead)
    wait_until(lambda: not _alive(child), 5, "the hung issuer's child to die with the timeout")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
