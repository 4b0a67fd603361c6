#!/usr/bin/env python3
"""Stand-in for httpsok.sh (it cannot be installed here: it needs the httpsok.com service).
Records its argv and follows the documented client behaviour for ``-m -r``: reads the token from
``$HOME/.httpsok/token`` (missing/wrong: "Invalid token", exit 4); takes the nginx config (here
from ``$CERTLOOP_STANDIN_NGINX_CONF`` instead of probing the running master with ps); for every
``ssl_certificate``/``ssl_certificate_key`` pair, re-issues a certificate for the names of the one
there (the service's job, minted from the test CA) and moves it over those paths. The real client
then runs ``nginx -t`` and ``nginx -s reload``; the stand-in does not reload."""

import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _mint import mint, names_in, record  # noqa: E402

record("httpsok.sh", sys.argv[1:], home=os.environ.get("HOME"))
if sys.argv[1:] != ["-m", "-r"]:
    print("Unknown parameter", file=sys.stderr)
    sys.exit(1)
token_file = Path(os.environ["HOME"]) / ".httpsok" / "token"
token = token_file.read_text().strip() if token_file.exists() else ""
if not token or token != os.environ.get("CERTLOOP_STANDIN_HTTPSOK_TOKEN"):
    print(f"Invalid token: {token}", file=sys.stderr)
    sys.exit(4)
conf = Path(os.environ["CERTLOOP_STANDIN_NGINX_CONF"]).read_text()
certs = re.findall(r'^\s*ssl_certificate\s+"?([^";]+)"?;', conf, re.MULTILINE)
keys = re.findall(r'^\s*ssl_certificate_key\s+"?([^";]+)"?;', conf, re.MULTILINE)
if not certs:
    print("No SSL certificate was detected.", file=sys.stderr)
    sys.exit(4)
wanted = os.environ.get("CERTLOOP_STANDIN_HTTPSOK_ONLY")  # renew only this cert path (test control)
for cert_path, key_path in zip(certs, keys, strict=True):
    if wanted and cert_path != wanted:
        continue
    leaf, key, issuer = mint(names_in(Path(cert_path)))
    tmp_cert, tmp_key = Path(cert_path + ".httpsok.tmp"), Path(key_path + ".httpsok.tmp")
    tmp_cert.write_bytes(leaf + issuer)
    tmp_key.write_bytes(key)
    os.replace(tmp_cert, cert_path)
    os.replace(tmp_key, key_path)
    print(f"{cert_path} New cert updated")
