"""docs/exit-codes.md is the one table of certloop's exit codes: it lists exactly the codes that
certloop/exitcodes.py defines, each with its name, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

from certloop.exitcodes import CheckExit, ExitCode, VerifyExit

PAGE = Path(__file__).resolve().parents[2] / "docs" / "exit-codes.md"
_ROW = re.compile(r"^\| (\d+) \| `([^`]+)` \|", re.M)


def test_the_table_lists_every_code_and_only_those() -> None:
    documented = {(int(code), name) for code, name in _ROW.findall(PAGE.read_text())}
    defined = {(int(c), c.name) for c in ExitCode}
    defined |= {(int(c), f"check: {c.name}") for c in CheckExit if c is not CheckExit.OK}  # OK is ExitCode.OK
    defined |= {(int(c), f"verify: {c.name}") for c in VerifyExit}
    assert documented == defined
