"""deploy/install.sh into a throwaway root (--prefix), run twice: the second run changes nothing an operator
owns (configs, generated secrets), every installed unit passes `systemd-analyze verify` against the binary
the installer put there, and the environment checks refuse what they must (a taken port, bad arguments).

Real: the wheel is built from this checkout and installed with its dependencies into the prefix's own
virtualenv; the user comes from systemd-sysusers --root. Only systemctl is not run (no systemd here).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "deploy" / "install.sh"
UNITS = ("certloop-exporter.service", "certloop-renewer.service", "certloop-backup.service",
         "certloop-backup.timer")
SECRETS = ("renewer.token", "keystore.key", "backup.passphrase")


def install(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": str(shutil.which("python3"))}
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=timeout,
                          check=False, env=env)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Installed:
    root: Path
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    before: dict[str, str]
    edited: str


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("root")
    first = install("--prefix", str(root))
    assert first.returncode == 0, first.stdout + first.stderr
    before = {name: digest(root / "etc" / "certloop" / name) for name in (*SECRETS, "renewer.yml")}
    exporter = root / "etc" / "certloop" / "exporter.yml"
    edited = exporter.read_text() + "# edited by the operator\n"
    exporter.write_text(edited)
    second = install("--prefix", str(root))
    assert second.returncode == 0, second.stdout + second.stderr
    return Installed(root, first, second, before, edited)


def test_second_run_keeps_configs_and_secrets(installed: Installed) -> None:
    """Run twice: generated secrets and configs are the same files, an operator's edit survives, and the
    second run says it kept them instead of generating anything."""
    etc = installed.root / "etc" / "certloop"
    assert {name: digest(etc / name) for name in installed.before} == installed.before
    assert (etc / "exporter.yml").read_text() == installed.edited
    assert "generated" in installed.first.stdout and "generated" not in installed.second.stdout
    assert "kept /etc/certloop/exporter.yml" in installed.second.stdout


def test_user_directories_and_secret_modes(installed: Installed) -> None:
    """The user certloop exists in the root's passwd; data and backup directories are 0700 certloop;
    secrets are 0640 root:certloop and non-empty."""
    root = installed.root
    [entry] = [line.split(":") for line in (root / "etc" / "passwd").read_text().splitlines()
               if line.startswith("certloop:")]
    uid, gid = int(entry[2]), int(entry[3])
    for directory in ("var/lib/certloop-renewer", "var/backups/certloop"):
        info = (root / directory).stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (uid, gid, 0o700), directory
    for name in SECRETS:
        info = (root / "etc" / "certloop" / name).stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, gid, 0o640), name
        assert info.st_size > 30


def test_the_installed_binary_runs_and_accepts_the_installed_configs(installed: Installed) -> None:
    """/usr/local/bin/certloop in the root is the venv's; with the root's paths, both templates pass
    --config.check (the installer generated every secret the renewer's config names)."""
    root = installed.root
    binary = root / "usr" / "local" / "bin" / "certloop"
    assert binary.resolve() == (root / "opt" / "certloop" / "bin" / "certloop").resolve()
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert version.stdout.startswith("certloop ")
    for name in ("exporter", "renewer"):
        text = (root / "etc" / "certloop" / f"{name}.yml").read_text()
        text = text.replace("/etc/certloop/", f"{root}/etc/certloop/").replace(
            "/var/lib/certloop-renewer", f"{root}/var/lib/certloop-renewer")
        config = root / f"check-{name}.yml"
        config.write_text(text)
        done = subprocess.run([str(binary), name, f"--config.file={config}", "--config.check"], capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    assert "does not pass --config.check" not in installed.first.stdout + installed.second.stdout


@pytest.mark.parametrize("unit", UNITS)
def test_installed_unit_passes_systemd_analyze_verify(installed: Installed, unit: str, tmp_path: Path) -> None:
    """Each installed unit verifies, with /usr/local/bin/certloop pointed at the root's (a unit names the
    real path; under --prefix that path lives in the root)."""
    binary = shutil.which("systemd-analyze")
    assert binary, "systemd-analyze (Debian package systemd) is required"
    installed_unit = installed.root / "etc" / "systemd" / "system" / unit
    text = installed_unit.read_text()
    assert text == (REPO / "deploy" / "systemd" / unit).read_text(), "default ports: the unit as shipped"
    (tmp_path / unit).write_text(text.replace("/usr/local/bin/certloop",
                                              str(installed.root / "usr" / "local" / "bin" / "certloop")))
    if unit.endswith(".timer"):  # a timer is verified with the service it starts
        service = unit.replace(".timer", ".service")
        (tmp_path / service).write_text((installed.root / "etc/systemd/system" / service).read_text().replace(
            "/usr/local/bin/certloop", str(installed.root / "usr" / "local" / "bin" / "certloop")))
    done = subprocess.run([binary, "verify", str(tmp_path / unit)], capture_output=True, text=True, timeout=60,
                          check=False, cwd=tmp_path)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_a_taken_port_is_refused_before_anything_is_installed(tmp_path: Path) -> None:
    """--check-ports: another program on the exporter's port stops the install at the check, naming the
    port and the flag to change it; nothing is written into the root."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        done = install("--prefix", str(tmp_path / "root"), "--check-ports", "--exporter-port", str(port),
                       timeout=120)
    assert done.returncode == 1
    assert f"port {port} (the exporter's) is in use" in done.stderr and "--exporter-port" in done.stderr
    assert not any((tmp_path / "root").iterdir())


@pytest.mark.parametrize(("args", "message"), [
    (["--bogus"], "unknown argument --bogus"),
    (["--extras", "postgres;rm"], "--extras: expected names like postgres,mysql,s3"),
    (["--renewer-port", "70000"], "ports must be 1-65535"),
    (["--python", "/nonexistent/python3.11"], "no /nonexistent/python3.11: install Python 3.11 or newer"),
])
def test_bad_arguments_are_refused_with_a_clear_message(tmp_path: Path, args: list[str], message: str) -> None:
    """Bad flags fail at once, naming the flag; a missing interpreter points at the container image."""
    done = install("--prefix", str(tmp_path / "root"), *args, timeout=60)
    assert done.returncode == 1
    assert message in done.stderr
    if "--python" in args:
        assert "compose/Dockerfile" in done.stderr
