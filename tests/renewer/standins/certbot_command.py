#!/usr/bin/env python3
"""A `command` issuer program for the end-to-end test: runs the real certbot against pebble and
copies the result to CERTLOOP_FULLCHAIN_PATH / CERTLOOP_KEY_PATH (what a site-specific script does).

argv: certbot_command.py DIRECTORY_URL CA_BUNDLE WEBROOT
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

directory, ca_bundle, webroot = sys.argv[1:4]
work = Path.cwd() / "certbot"  # the staging dir certloop runs us in
argv = ["certbot", "certonly", "--non-interactive", "--agree-tos", "--register-unsafely-without-email",
        "--config-dir", str(work / "config"), "--work-dir", str(work / "work"), "--logs-dir", str(work / "logs"),
        "--server", directory, "--cert-name", "c", "--webroot", "--webroot-path", webroot,
        "--key-type", "ecdsa"]
for name in os.environ["CERTLOOP_DOMAINS"].split(","):
    argv += ["--domain", name]
subprocess.run(argv, check=True, env={**os.environ, "REQUESTS_CA_BUNDLE": ca_bundle})
live = work / "config" / "live" / "c"
shutil.copyfile(live / "fullchain.pem", os.environ["CERTLOOP_FULLCHAIN_PATH"])
shutil.copyfile(live / "privkey.pem", os.environ["CERTLOOP_KEY_PATH"])
