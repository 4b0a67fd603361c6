"""benchmarks/corework.py runs end to end: under callgrind, for this tree, at its --quick size.

Not a measurement (the sizes are too small for the numbers to mean much): only that the harness mints
its certificates, runs both workloads at both sizes under valgrind, and prints one row per tree with a
positive instruction count for each workload. It takes about a minute: four runs under callgrind, each
mostly the interpreter's start-up. valgrind is a Debian package scripts/bootstrap.sh installs; missing, it
fails the test (as every tool the tests drive does), naming the package to install.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from stack.process import require_binary

REPO = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^(?P<tree>.+): (?P<probe>-?[\d,]+) instructions per probe's core work, "
                 r"(?P<file>-?[\d,]+) per file first read$")


def test_quick_run_prints_a_row_of_positive_counts_for_the_tree() -> None:
    """``python -m benchmarks.corework --quick --tree REPO`` exits 0 and prints one row for REPO whose
    per-probe and per-file instruction counts are positive."""
    require_binary("valgrind", "valgrind")
    done = subprocess.run([sys.executable, "-m", "benchmarks.corework", "--quick", "--tree", str(REPO)], cwd=REPO,
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    rows = [found.groupdict() for line in done.stdout.splitlines() if (found := ROW.match(line))]
    assert len(rows) == 1, done.stdout
    [row] = rows
    assert row["tree"] == str(REPO)
    assert int(row["probe"].replace(",", "")) > 0, row
    assert int(row["file"].replace(",", "")) > 0, row
