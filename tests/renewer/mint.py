"""A `command` issuer stand-in for tests: mints a leaf with tests/support/pki.py and counts invocations.

    mint.py COUNT_FILE DAYS [FAIL_FILE]

Writes the key and full chain to the paths the renewer's command issuer passes in its environment
(CERTLOOP_KEY_PATH, CERTLOOP_FULLCHAIN_PATH, CERTLOOP_CERT_PATH), for the names in CERTLOOP_DOMAINS,
and appends "<certificate id>\\n" to COUNT_FILE (one line per issuance, O_APPEND). If FAIL_FILE exists
it exits 1 instead (an issuance failure the test can switch on and off). With CERTLOOP_TEST_MINT_SLEEP
set it first writes a key file, then its pid to that file, and sleeps (a slow CA, for kill -9 tests).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.pki import Pki


def main() -> int:
    count_file, days = Path(sys.argv[1]), float(sys.argv[2])
    if len(sys.argv) > 3 and Path(sys.argv[3]).exists():
        print("mint: told to fail", file=sys.stderr)
        return 1
    sleep_file = os.environ.get("CERTLOOP_TEST_MINT_SLEEP")
    if sleep_file:
        # like a real client, the key exists (in plaintext, in staging) before the CA answers
        fd = os.open(os.environ["CERTLOOP_KEY_PATH"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"-----BEGIN PRIVATE KEY-----\n(written before the order completes)\n")
        Path(sleep_file + ".tmp").write_text(str(os.getpid()))
        os.replace(sleep_file + ".tmp", sleep_file)  # the PID file appears whole
        time.sleep(60)  # an order the CA has not answered yet: the test kills us here (the behaviour)
    names = os.environ["CERTLOOP_DOMAINS"].split(",")
    leaf = Pki().leaf(names, days=days)
    key_path = Path(os.environ["CERTLOOP_KEY_PATH"])
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(leaf.key_pem)
    if os.environ.get("CERTLOOP_FULLCHAIN_PATH"):
        Path(os.environ["CERTLOOP_FULLCHAIN_PATH"]).write_bytes(leaf.fullchain_pem)
    if os.environ.get("CERTLOOP_CERT_PATH"):
        Path(os.environ["CERTLOOP_CERT_PATH"]).write_bytes(leaf.pem)
    fd = os.open(count_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    with os.fdopen(fd, "w") as fh:
        fh.write(os.environ.get("CERTLOOP_CERTIFICATE_ID", "?") + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
