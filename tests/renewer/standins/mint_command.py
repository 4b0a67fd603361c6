#!/usr/bin/env python3
"""A `command` issuer program for tests: mints from the test CA into the paths in its environment.

argv: mint_command.py ENV_DUMP. Writes every CERTLOOP_* variable it received to ENV_DUMP (JSON).
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _mint import mint

env = {k: v for k, v in os.environ.items() if k.startswith("CERTLOOP_") and "STANDIN" not in k}
Path(sys.argv[1]).write_text(json.dumps(env))
leaf, key, issuer = mint(env["CERTLOOP_DOMAINS"].split(","), env.get("CERTLOOP_KEY_TYPE", "ec256"))
Path(env["CERTLOOP_FULLCHAIN_PATH"]).write_bytes(leaf + issuer)
fd = os.open(env["CERTLOOP_KEY_PATH"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, key)
os.close(fd)
