"""The files scenario's lower bound really does the work it claims (a bound that skipped the signature
check or the reading would make the "no Python exporter can" note in RESULTS.md a false claim)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from benchmarks import filefloor
from benchmarks.pki import Minter

REPO = Path(__file__).resolve().parents[2]


def _verify_ok(text: bytes) -> str:
    found = re.search(rb"^certloop_verify_ok\{[^}]*\} (\d)$", text, re.MULTILINE)
    assert found is not None, text
    return found.group(1).decode()


def test_a_leaf_signed_by_the_presented_issuer_checks_and_a_forged_one_does_not(tmp_path: Path) -> None:
    """The signature is checked with the next block's key: the right CA gives 1, another CA's leaf
    presented with it gives 0; dates, names and the fingerprint come from the leaf itself."""
    good, other = Minter(tmp_path / "a"), Minter(tmp_path / "b")
    signed = tmp_path / "signed.pem"
    signed.write_bytes(good.leaf_pem("one.bench", "ecdsa") + good.ca_pem)
    forged = tmp_path / "forged.pem"
    forged.write_bytes(other.leaf_pem("two.bench", "rsa") + good.ca_pem)
    text = filefloor._file(str(signed))
    assert _verify_ok(text) == "1"
    assert b'dns_names="one.bench"' in text and b'issuer="CN=certloop benchmark CA"' in text
    assert _verify_ok(filefloor._file(str(forged))) == "0"


def test_the_command_reads_every_file_under_the_directory_on_every_core(tmp_path: Path) -> None:
    """``python -m benchmarks.filefloor DIR`` lists recursively, reads each ``.pem`` and says how many."""
    minter = Minter(tmp_path / "pki")
    for i in range(5):
        sub = tmp_path / "certs" / f"d{i % 2}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"site{i}.pem").write_bytes(minter.leaf_pem(f"site{i}.bench", "ecdsa") + minter.ca_pem)
    (tmp_path / "certs" / "notes.txt").write_text("not a certificate file")
    done = subprocess.run([sys.executable, "-m", "benchmarks.filefloor", str(tmp_path / "certs")], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["files"] == 5 and got["workers"] >= 1 and got["seconds"] > 0 and got["bytes"] > 5 * 500
