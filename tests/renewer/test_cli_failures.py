"""`certloop renewer` failing at start for what a user meets: an unreachable database and a keystore key
file that is not a key. One line naming what failed (never a password), the documented exit code, no
traceback. Real processes, as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from stack.process import free_port
from tests.renewer.conftest import REPO, Setup
from tests.support.servers import ThreadedServer, silent


def run(setup: Setup, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "certloop.cli", "renewer", "--config.file", str(setup.path), *args],
        capture_output=True, text=True, timeout=timeout, cwd=str(REPO), env=dict(os.environ, PYTHONPATH=str(REPO)),
    )


@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "mysql+pymysql"])
@pytest.mark.parametrize("command", [["db", "current"], ["db", "upgrade"], []])
def test_unreachable_database_is_one_line_and_exit_69(
    scheme: str, command: list[str], make_setup: Callable[..., Setup],
) -> None:
    """Nothing listens on the port: `db current`, `db upgrade` and the daemon itself exit 69 with one line
    naming the database, its password hidden."""
    port = free_port()
    setup = make_setup(["shop"], database=f"{scheme}://certloop:hunter2secret@127.0.0.1:{port}/jobs")
    proc = run(setup, *command)
    assert proc.returncode == 69, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "unavailable" in line]
    assert errors == [line for line in proc.stderr.splitlines() if line.startswith("certloop renewer:")]
    assert len(errors) == 1, proc.stderr
    assert f"database {scheme}://certloop:***@127.0.0.1:{port}/jobs unavailable" in errors[0]
    assert "hunter2secret" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_a_database_that_never_answers_is_one_line_within_the_connect_timeout(
    make_setup: Callable[..., Setup],
) -> None:
    """A listener that accepts and never speaks: `db current` gives up after its connect timeout (10 s)."""
    with ThreadedServer(silent) as srv:
        setup = make_setup(["shop"], database=f"postgresql+psycopg://postgres@127.0.0.1:{srv.port}/jobs")
        proc = run(setup, "db", "current", timeout=30)
    assert proc.returncode == 69, proc.stderr
    assert proc.stderr.count("\n") == 1 and "unavailable" in proc.stderr, proc.stderr


def test_keystore_key_file_that_is_not_text_is_one_line_naming_it(make_setup: Callable[..., Setup]) -> None:
    """Random bytes in the key file (someone wrote the raw key): config error naming the file, exit 78."""
    setup = make_setup(["shop"])
    key_file = setup.tmp / "keystore.key"
    key_file.write_bytes(b"\xff\xfe" + os.urandom(30))
    setup.data["keystore"] = {"key_file": str(key_file)}
    setup.write()
    proc = run(setup)
    assert proc.returncode == 78, proc.stderr
    assert proc.stderr.strip() == (
        f"certloop renewer: config error: keystore.key_file: secret file {key_file} is not UTF-8 text"
    )


def test_keystore_key_file_that_is_not_a_key_is_one_line_naming_it(make_setup: Callable[..., Setup]) -> None:
    """Text that is neither 64 hex digits nor base64 of 32 bytes: one line naming the file, exit 1."""
    setup = make_setup(["shop"])
    key_file = setup.tmp / "keystore.key"
    key_file.write_text("this is not a key\n")
    setup.data["keystore"] = {"key_file": str(key_file)}
    setup.write()
    proc = run(setup)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == (
        f"certloop renewer: keystore key file {key_file}: the keystore key must be 32 bytes as 64 hex digits "
        "or base64"
    )
