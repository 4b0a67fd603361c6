"""benchmarks.lookup runs end to end: a private mount namespace with a generated /etc/hosts, dnsmasq, one
row per lookup path. The numbers are not judged (the box is shared); every path must have answered,
since a lookup that failed would raise inside the namespace and the command would exit non-zero."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_lookup_prints_a_cost_for_every_path() -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.lookup", "--n", "200", "--every", "2"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = re.findall(r"^\| (.+) \| (\d+\.\d{3}) ms \|$", done.stdout, re.MULTILINE)
    prefixes = ("glibc getaddrinfo", "certloop system path, first lookup", "certloop system path, cached",
                "certloop resolver: [127.0.0.1:", "the same, 64 lookups in flight", "dnspython asyncio resolver")
    assert len(rows) == len(prefixes), done.stdout
    assert all(label.startswith(prefix) for (label, _), prefix in zip(rows, prefixes, strict=True)), done.stdout
    assert "100 lookups of distinct names, 200-line /etc/hosts" in done.stdout
