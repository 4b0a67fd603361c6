"""The same failure gives the same exit code in every certloop command (certloop/exitcodes.py).

Each case runs the real ``certloop`` entry as a separate process, as a user or a systemd unit does: a bad
flag, a broken config file, a taken listen address and an unreachable database, met by the exporter, the
renewer (daemon, ``--config.check``, ``db``) and ``certloop check``. Within a failure every command must
exit with one code, that code must be the one :class:`ExitCode` names, and none may print a traceback.
"""

from __future__ import annotations

import ast
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from certloop.exitcodes import CheckExit, ExitCode, VerifyExit
from stack.process import free_port

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-token-0123456789abcdef"


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "certloop.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)


def _renewer_config(path: Path, *, extra: str = "", database: str | None = None) -> Path:
    lines = [f"auth: {{token: {TOKEN}}}", f"data_dir: {path.parent / 'data'}"]
    if database is not None:
        lines.append(f"database: {{url: '{database}'}}")
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something already listens on (the daemons bind with SO_REUSEADDR, never SO_REUSEPORT here)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        yield busy.getsockname()[1]


def _cases(tmp_path: Path, taken: int) -> dict[ExitCode, dict[str, list[str]]]:
    exporter_ok = tmp_path / "exporter.yml"
    exporter_ok.write_text("global: {interval: 1h}\n")
    exporter_bad = tmp_path / "exporter-bad.yml"
    exporter_bad.write_text("global: {interval: 1h}\nno_such_key: 1\n")
    renewer_ok = _renewer_config(tmp_path / "renewer.yml")
    renewer_bad = _renewer_config(tmp_path / "renewer-bad.yml", extra="no_such_key: 1\n")
    unreachable = f"postgresql+psycopg://certloop:secret@127.0.0.1:{free_port()}/jobs"
    renewer_no_db = _renewer_config(tmp_path / "renewer-nodb.yml", database=unreachable)
    listen = f"--web.listen-address=127.0.0.1:{taken}"
    return {
        ExitCode.USAGE: {
            "certloop (unknown command)": ["frobnicate"],
            "exporter": ["exporter", f"--config.file={exporter_ok}", "--no-such-flag"],
            "renewer": ["renewer", f"--config.file={renewer_ok}", "--no-such-flag"],
            "renewer db": ["renewer", f"--config.file={renewer_ok}", "db", "sideways"],
            "exporter --web.listen-address": ["exporter", f"--config.file={exporter_ok}", "--web.listen-address=x"],
            "renewer --web.listen-address": ["renewer", f"--config.file={renewer_ok}", "--web.listen-address=x"],
            "renewer --web.listen-address port": ["renewer", f"--config.file={renewer_ok}",
                                                  "--web.listen-address=127.0.0.1:99999"],
            "check": ["check", "--no-such-flag"],
            "config": ["config", "schema", "nothing"],
            "assets": ["assets", "no-such-asset"],
        },
        ExitCode.CONFIG: {
            "exporter": ["exporter", f"--config.file={exporter_bad}", "--web.listen-address=127.0.0.1:0"],
            "exporter --config.check": ["exporter", f"--config.file={exporter_bad}", "--config.check"],
            "renewer": ["renewer", f"--config.file={renewer_bad}", "--web.listen-address=127.0.0.1:0"],
            "renewer --config.check": ["renewer", f"--config.file={renewer_bad}", "--config.check"],
            "renewer db current": ["renewer", f"--config.file={renewer_bad}", "db", "current"],
            "check --config": ["check", "--config", str(exporter_bad)],
        },
        ExitCode.CANNOT_LISTEN: {
            "exporter": ["exporter", f"--config.file={exporter_ok}", listen],
            "renewer": ["renewer", f"--config.file={renewer_ok}", listen],
        },
        ExitCode.UNAVAILABLE: {
            "renewer": ["renewer", f"--config.file={renewer_no_db}", "--web.listen-address=127.0.0.1:0"],
            "renewer db current": ["renewer", f"--config.file={renewer_no_db}", "db", "current"],
        },
    }


def test_the_same_failure_exits_with_the_same_code_in_every_command(tmp_path: Path, taken_port: int) -> None:
    """A bad flag 64, a broken config 78, a taken port 71, an unreachable database 69: whichever command."""
    cases = _cases(tmp_path, taken_port)
    flat = [(expected, who, args) for expected, by in cases.items() for who, args in by.items()]
    with ThreadPoolExecutor(max_workers=2) as pool:  # two cores: the runs are mostly interpreter start-up
        done = list(pool.map(lambda case: _run(case[2]), flat))
    got: dict[ExitCode, dict[str, int]] = {}
    for (expected, who, _), proc in zip(flat, done, strict=True):
        got.setdefault(expected, {})[who] = proc.returncode
        assert "Traceback" not in proc.stderr, f"{who}: {proc.stderr}"
        assert proc.stderr.strip(), f"{who} exited {proc.returncode} without saying why"
    assert got == {expected: dict.fromkeys(by, int(expected)) for expected, by in cases.items()}


def test_the_codes_do_not_collide() -> None:
    """Process failures and verify's verdicts are distinct numbers; only check's WARN shares 1 with FAILURE
    (its documented contract) and 0 means success everywhere."""
    failures = [int(c) for c in ExitCode]
    assert len(set(failures)) == len(failures)
    assert not {int(c) for c in VerifyExit} & set(failures)
    assert {int(c) for c in CheckExit} & set(failures) == {ExitCode.OK, ExitCode.FAILURE}
    assert CheckExit.CRIT not in failures  # so "a certificate is bad" never reads as "check did not run"
    assert all(64 <= c <= 78 for c in ExitCode if c not in {ExitCode.OK, ExitCode.FAILURE, ExitCode.INTERRUPTED})


# The modules whose functions return a process's exit code; every code there is a named member.
CLI_MODULES = [
    "certloop/cli.py", "certloop/assets/__init__.py", "exporter/cli.py", "exporter/check.py", "renewer/cli.py",
    "alerting/build.py", "dashboards/build.py", "stack/demo.py",
]


def _literal_exits(source: str) -> list[int]:
    """Line numbers of ``return N``, ``SystemExit(N)`` and ``sys.exit(N)`` with N an integer literal."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        value = None
        if isinstance(node, ast.Return):
            value = node.value
        elif isinstance(node, ast.Call) and node.args and (
            (isinstance(node.func, ast.Name) and node.func.id == "SystemExit")
            or (isinstance(node.func, ast.Attribute) and node.func.attr == "exit")
        ):
            value = node.args[0]
        if isinstance(value, ast.Constant) and type(value.value) is int:
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("module", CLI_MODULES)
def test_commands_name_their_exit_codes(module: str) -> None:
    """No bare number as an exit code: each comes from certloop.exitcodes, so one failure has one code."""
    assert _literal_exits((REPO / module).read_text()) == [], f"{module}: use certloop.exitcodes"


def test_the_literal_finder_finds_literals() -> None:
    source = "def f():\n    return 2\nraise SystemExit(64)\nsys.exit(1)\nreturn ExitCode.OK\n"
    assert _literal_exits(source) == [2, 3, 4]
