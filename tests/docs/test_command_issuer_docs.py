"""docs/renewer.md's `command` issuer section says exactly what the issuer does.

The documented variables are the ones the program really receives (run through the real issuer, not
read from its source), `CERTLOOP_DOMAINS` looks as documented, and the documented example script,
run as the issuer, produces material that passes the renewer's validation.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from certloop.config import validate_model
from certloop.renewer import pipeline
from certloop.renewer.context import RenewalContext
from certloop.renewer.keystore import Keystore
from certloop.renewer.spec import CertificateSpec
from tests.docs.markdown import ROOT, fenced_blocks
from tests.support.pki import Pki

DOC = ROOT / "docs" / "renewer.md"
DOCUMENTED_CA_DIR = "/etc/certloop/internal-ca"


def _section() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("### `command`")
    end = text.index("\n### ", start + 1)
    return text[start:end]


def documented_variables() -> dict[str, str]:
    """variable -> example cell, from the table in the command section."""
    rows = re.findall(r"^\| `(CERTLOOP_[A-Z_]+)` \|.*\| `([^`]*)` \|$", _section(), re.MULTILINE)
    return dict(rows)


def documented_script() -> str:
    [script] = [text for line, text in fenced_blocks(DOC, "sh") if text.startswith("#!/bin/sh")
                and "CERTLOOP_KEY_PATH" in text]
    return script


def _spec(tmp_path: Path, argv: list[str], domains: list[str], key_type: str = "ec256") -> CertificateSpec:
    return validate_model(CertificateSpec, {
        "id": "shop", "domains": domains, "key_type": key_type,
        "issuer": {"type": "command", "argv": argv},
        "outputs": {"fullchain": str(tmp_path / "live" / "f.pem"), "key": str(tmp_path / "live" / "k.pem")},
    })


def _ctx(tmp_path: Path) -> RenewalContext:
    return RenewalContext(tmp_path / "data", lambda: datetime.now(UTC), Keystore(b"c" * 32))


def _install_script(tmp_path: Path, pki: Pki) -> Path:
    """The documented script with its CA directory pointed at a test CA (the only line changed)."""
    ca = tmp_path / "internal-ca"
    paths = pki.intermediate.write(ca, "ca")
    paths["cert"].rename(ca / "ca.pem")
    paths["key"].rename(ca / "ca.key")
    shutil.copy(ca / "ca.pem", ca / "chain.pem")
    script = documented_script()
    assert f"ca={DOCUMENTED_CA_DIR}\n" in script
    path = tmp_path / "certloop-mint"
    path.write_text(script.replace(f"ca={DOCUMENTED_CA_DIR}\n", f"ca={ca}\n"), encoding="utf-8")
    path.chmod(0o755)
    return path


def test_documented_variables_are_the_ones_the_program_gets(tmp_path: Path, pki: Pki) -> None:
    """The table lists every CERTLOOP_* variable the program receives and no other; values as documented."""
    dump = tmp_path / "env.txt"
    # `env` runs as the program (argv, no shell) and records what it was given; then the script mints.
    script = _install_script(tmp_path, pki)
    argv = ["/bin/sh", "-c", 'env > "$0"; exec "$1"', str(dump), str(script)]
    spec = _spec(tmp_path, argv, ["Shop.Example.com.", "*.shop.example.com", "www.shop.example.com"])
    asyncio.run(pipeline.issue(spec, _ctx(tmp_path)))
    received = dict(line.split("=", 1) for line in dump.read_text().splitlines()
                    if line.startswith("CERTLOOP_"))
    documented = documented_variables()
    assert set(documented) == set(received), "docs/renewer.md's table differs from what the issuer sets"
    assert received["CERTLOOP_DOMAINS"] == "shop.example.com,*.shop.example.com,www.shop.example.com"
    assert re.fullmatch(r"[^ ,]+(,[^ ,]+)*", documented["CERTLOOP_DOMAINS"])
    assert received["CERTLOOP_CERTIFICATE_ID"] == documented["CERTLOOP_CERTIFICATE_ID"] == "shop"
    assert received["CERTLOOP_KEY_TYPE"] == documented["CERTLOOP_KEY_TYPE"] == "ec256"
    staging = tmp_path / "data" / "staging" / "shop"
    for name in ("CERTLOOP_KEY_PATH", "CERTLOOP_FULLCHAIN_PATH", "CERTLOOP_CERT_PATH"):
        path = Path(received[name])
        assert path.parent.parent == staging
        assert documented[name] == f"<staging>/{path.name}"


@pytest.mark.parametrize("key_type", ["ec256", "ec384", "rsa2048"])
def test_documented_script_mints_valid_material(tmp_path: Path, pki: Pki, key_type: str) -> None:
    """The example script, run by the real issuer, yields a key and chain the renewer accepts."""
    script = _install_script(tmp_path, pki)
    spec = _spec(tmp_path, [str(script)], ["shop.example.com", "*.shop.example.com"], key_type)
    material = asyncio.run(pipeline.issue(spec, _ctx(tmp_path)))
    pipeline.validate(material, spec, now=datetime.now(UTC))
    assert material.chain_pem == pki.intermediate.pem
    assert not any((tmp_path / "data" / "staging" / "shop").iterdir()), "staging is removed afterwards"


def test_the_table_reader_can_fail() -> None:
    """The reader finds the whole table (six variables), so a missing row would show as a difference."""
    assert len(documented_variables()) == 6
