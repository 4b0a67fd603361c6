"""deploy/systemd and deploy/logrotate: the units pass `systemd-analyze verify`, are hardened,
reload with SIGHUP, and logrotate accepts its config."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "deploy" / "systemd"
CERTLOOP = REPO / ".venv" / "bin" / "certloop"


def unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser


@pytest.mark.parametrize("name", ["certloop-exporter.service", "certloop-renewer.service"])
def test_unit_passes_systemd_analyze_verify(name: str, tmp_path: Path) -> None:
    """systemd-analyze verify finds nothing wrong (certloop's path rewritten to this checkout's binary)."""
    binary = shutil.which("systemd-analyze")
    assert binary, "systemd-analyze (Debian package systemd) is required"
    text = (UNITS / name).read_text().replace("/usr/local/bin/certloop", str(CERTLOOP))
    (tmp_path / name).write_text(text)
    done = subprocess.run([binary, "verify", str(tmp_path / name)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


@pytest.mark.parametrize("name", ["certloop-exporter.service", "certloop-renewer.service"])
def test_unit_is_hardened_and_reloads_with_sighup(name: str) -> None:
    """Not root, read-only system, no new privileges, config check before start, SIGHUP on reload."""
    service = unit(name)["Service"]
    assert service.get("DynamicUser") == "yes" or service.get("User") == "certloop"
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert "--config.check" in service["ExecStartPre"]


def test_renewer_may_write_only_its_outputs_and_signal_nginx() -> None:
    """The renewer gets write access to listed output directories and CAP_KILL only (for nginx -s reload)."""
    service = unit("certloop-renewer.service")["Service"]
    assert service["ReadWritePaths"].split()
    assert service["CapabilityBoundingSet"] == "CAP_KILL" == service["AmbientCapabilities"]
    assert service["StateDirectory"] == "certloop-renewer"


def test_logrotate_accepts_the_config(tmp_path: Path) -> None:
    """logrotate -d parses deploy/logrotate/certloop without errors."""
    binary = shutil.which("logrotate") or "/usr/sbin/logrotate"
    config = tmp_path / "certloop"
    config.write_text((REPO / "deploy" / "logrotate" / "certloop").read_text())
    done = subprocess.run([binary, "-d", "-s", str(tmp_path / "state"), str(config)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "error" not in done.stderr.lower(), done.stderr
