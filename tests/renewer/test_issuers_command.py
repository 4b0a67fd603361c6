"""The command issuer: any program writing a certificate and key where its environment says."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from certloop.config import validate_model
from certloop.renewer import pipeline
from certloop.renewer.context import RenewalContext
from certloop.renewer.errors import BackendFailed, IssuanceError
from certloop.renewer.keystore import Keystore
from certloop.renewer.spec import CertificateSpec
from tests.renewer.standins.peers import STANDINS, standin_env
from tests.support.pki import Pki

MINT = STANDINS / "mint_command.py"


def _spec(tmp_path: Path, argv: list[str]) -> CertificateSpec:
    return validate_model(CertificateSpec, {
        "id": "shop", "domains": ["shop.example", "*.shop.example"],
        "issuer": {"type": "command", "argv": argv},
        "outputs": {"fullchain": str(tmp_path / "live" / "f.pem"), "key": str(tmp_path / "live" / "k.pem")},
    })


def _ctx(tmp_path: Path) -> RenewalContext:
    return RenewalContext(tmp_path / "data", lambda: datetime.now(UTC), Keystore(b"c" * 32))


def test_program_gets_paths_and_names_in_its_environment(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The program sees CERTLOOP_* paths inside staging, the domains and id; its output is read back."""
    standin_env(monkeypatch, tmp_path, pki)
    seen = tmp_path / "env.json"
    spec = _spec(tmp_path, [sys.executable, str(MINT), str(seen)])
    material = asyncio.run(pipeline.issue(spec, _ctx(tmp_path)))
    pipeline.validate(material, spec, now=datetime.now(UTC))
    env = json.loads(seen.read_text())
    assert env["CERTLOOP_DOMAINS"] == "shop.example,*.shop.example"
    assert env["CERTLOOP_CERTIFICATE_ID"] == "shop"
    staging = tmp_path / "data" / "staging" / "shop"
    for key in ("CERTLOOP_CERT_PATH", "CERTLOOP_KEY_PATH", "CERTLOOP_FULLCHAIN_PATH"):
        assert Path(env[key]).is_relative_to(staging)


def test_failing_program_keeps_its_stderr(tmp_path: Path) -> None:
    """A non-zero exit is BackendFailed with the return code and the end of stderr."""
    argv = [sys.executable, "-c", "import sys; sys.stderr.write('quota exceeded\\n'); sys.exit(7)"]
    with pytest.raises(BackendFailed) as info:
        asyncio.run(pipeline.issue(_spec(tmp_path, argv), _ctx(tmp_path)))
    assert info.value.returncode == 7 and "quota exceeded" in info.value.stderr_tail


def test_program_that_writes_nothing_fails(tmp_path: Path) -> None:
    """Exit 0 without output files is an issuance failure, not a crash."""
    with pytest.raises(IssuanceError):
        asyncio.run(pipeline.issue(_spec(tmp_path, ["true"]), _ctx(tmp_path)))


def test_missing_program_fails_cleanly(tmp_path: Path) -> None:
    """A program that cannot start is BackendFailed without a return code."""
    with pytest.raises(BackendFailed) as info:
        asyncio.run(pipeline.issue(_spec(tmp_path, [str(tmp_path / "nope")]), _ctx(tmp_path)))
    assert info.value.returncode is None
