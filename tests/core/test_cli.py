"""The `certloop` dispatcher: help, version, unknown commands, `config schema`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from certloop import __version__
from certloop.cli import COMMANDS, main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "certloop.cli", *args], capture_output=True, text=True, timeout=60)


def test_help_lists_every_command_and_exits_0() -> None:
    """`certloop --help` names each subcommand."""
    out = _run("--help")
    assert out.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in out.stdout


def test_version_and_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version; an unknown command is a usage error (64) on stderr."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"certloop {__version__}"
    assert main(["frobnicate"]) == 64
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


@pytest.mark.parametrize("component", ["exporter", "renewer"])
def test_config_schema_prints_each_components_json_schema(component: str) -> None:
    """`certloop config schema COMPONENT` prints a JSON Schema object describing that config file."""
    out = _run("config", "schema", component)
    assert out.returncode == 0, out.stderr
    schema = json.loads(out.stdout)
    assert schema["type"] == "object"
    expected_key = "endpoints" if component == "exporter" else "certificates"
    assert expected_key in schema["properties"]


def test_config_help_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """`certloop config --help` explains the command; a wrong form is a usage error (64)."""
    assert main(["config", "--help"]) == 0
    assert "certloop config schema" in capsys.readouterr().out
    assert main(["config", "schema", "nope"]) == 64
    assert main(["config"]) == 64
