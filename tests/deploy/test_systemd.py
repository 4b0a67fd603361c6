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


@pytest.mark.parametrize("name", ["certloop-exporter.service", "certloop-renewer.service", "certloop-backup.service",
                                  "certloop-backup.timer"])
def test_unit_passes_systemd_analyze_verify(name: str, tmp_path: Path) -> None:
    """systemd-analyze verify finds nothing wrong (certloop's path rewritten to this checkout's binary; a
    timer is verified beside the service it starts)."""
    binary = shutil.which("systemd-analyze")
    assert binary, "systemd-analyze (Debian package systemd) is required"
    for unit in {name, name.replace(".timer", ".service")}:
        text = (UNITS / unit).read_text().replace("/usr/local/bin/certloop", str(CERTLOOP))
        (tmp_path / unit).write_text(text)
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


def test_backup_runs_nightly_as_the_renewer_user_writing_only_the_backup_directory() -> None:
    """The backup service runs `certloop renewer ... backup` (the CLI's real syntax: --out a directory,
    encrypted with the passphrase file, retention) as certloop, read-only but for its output; the timer
    fires nightly and catches up a missed run."""
    service = unit("certloop-backup.service")["Service"]
    assert service["Type"] == "oneshot" and service["User"] == "certloop"
    argv = service["ExecStart"].split()
    assert argv[:3] == ["/usr/local/bin/certloop", "renewer", "--config.file=/etc/certloop/renewer.yml"]
    assert argv[3] == "backup" and argv[argv.index("--out") + 1] == "/var/backups/certloop/"
    assert {"--passphrase-file", "--keep-daily", "--keep-weekly"} <= set(argv)
    assert service["ProtectSystem"] == "strict" and service["ReadWritePaths"] == "/var/backups/certloop"
    assert service["NoNewPrivileges"] == "yes"
    help_text = subprocess.run([str(CERTLOOP), "renewer", "backup", "--help"], capture_output=True, text=True,
                               timeout=60, check=True).stdout
    for flag in ("--out", "--passphrase-file", "--keep-daily", "--keep-weekly"):
        assert flag in help_text, f"the CLI has no {flag}"
    timer = unit("certloop-backup.timer")["Timer"]
    assert timer["OnCalendar"] == "*-*-* 03:30:00" and timer["Persistent"] == "true"


def test_logrotate_accepts_the_config(tmp_path: Path) -> None:
    """logrotate -d parses deploy/logrotate/certloop without errors."""
    binary = shutil.which("logrotate") or "/usr/sbin/logrotate"
    config = tmp_path / "certloop"
    config.write_text((REPO / "deploy" / "logrotate" / "certloop").read_text())
    done = subprocess.run([binary, "-d", "-s", str(tmp_path / "state"), str(config)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "error" not in done.stderr.lower(), done.stderr
