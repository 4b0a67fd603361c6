#!/usr/bin/env python3
"""Stand-in for acme.sh (it cannot be installed here). Records its argv, then behaves per acme.sh's
documented contract for ``--issue``: copies the certificate to --cert-file, the key to --key-file,
the issuer to --ca-file and leaf+issuer to --fullchain-file, exit 0. ``$CERTLOOP_STANDIN_EXIT``
forces another exit code (2: skipped/not due, 3: DNS manual mode pending, 1: failure)."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _mint import mint, record  # noqa: E402

args = sys.argv[1:]
record("acme.sh", args, home=os.environ.get("HOME"))


def values(flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == flag]


def value(flag: str) -> str:
    found = values(flag)
    if len(found) != 1:
        print(f"[standin] {flag} must be given exactly once", file=sys.stderr)
        sys.exit(64)
    return found[0]


if "--issue" not in args:
    print("[standin] only --issue is implemented", file=sys.stderr)
    sys.exit(64)
for required in ("--home", "--config-home", "--server"):
    value(required)
forced = os.environ.get("CERTLOOP_STANDIN_EXIT")
if forced == "2":
    print("Domains not changed.\nSkip, Next renewal time is: ...", file=sys.stderr)
    sys.exit(2)
if forced == "3":
    print("Add the following TXT record:\nDomain: '_acme-challenge.x'\nTXT value: 'abc'", file=sys.stderr)
    sys.exit(3)
if forced:
    print("Create new order error. Le_OrderFinalize not found.", file=sys.stderr)
    sys.exit(int(forced))
kind = {"ec-256": "ec256", "ec-384": "ec384"}.get(value("--keylength"), "rsa" + value("--keylength"))
leaf, key, issuer = mint(values("-d"), kind)
Path(value("--cert-file")).write_bytes(leaf)
fd = os.open(value("--key-file"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, key)
os.close(fd)
Path(value("--ca-file")).write_bytes(issuer)
Path(value("--fullchain-file")).write_bytes(leaf + issuer)
print("Cert success.")
