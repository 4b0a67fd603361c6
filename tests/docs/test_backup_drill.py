"""The restore drill of docs/operations/backup.md works as written: a real renewer with a finished job is
backed up with the page's backup command, then the page's drill block is run step by step (with its paths
moved into a temporary directory). The drill's pass criteria hold: the same row and file counts, a schema
revision, and the job visible in the restored database."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import requests

from stack.daemons import CertloopDaemon
from stack.process import wait_until

REPO = Path(__file__).resolve().parents[2]
BACKUP_PAGE = REPO / "docs" / "operations" / "backup.md"
CERTLOOP = Path(sys.executable).with_name("certloop")
TOKEN = "drill-test-token-0123456789"


def _blocks() -> list[str]:
    text = BACKUP_PAGE.read_text(encoding="utf-8")
    return [b.replace("\\\n", " ") for b in re.findall(r"^[ \t]*```sh\n(.*?)^[ \t]*```", text, re.S | re.M)]


def _run_certloop(argv: list[str]) -> str:
    done = subprocess.run([str(CERTLOOP), *argv], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"certloop {' '.join(argv)}: {done.stdout}{done.stderr}"
    return done.stdout


def _run_drill(block: str, paths: dict[str, str]) -> list[str]:
    """Run the drill's lines with ``paths`` substituted; return the output of each command, in order.

    Only the steps the drill uses are understood (mkdir, cat/python3 heredocs, certloop, find, rm), so a
    changed drill fails here until this test learns the new step.
    """
    for old, new in paths.items():
        block = block.replace(old, new)
    lines = block.splitlines()
    outputs = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line:
            continue
        heredoc = re.fullmatch(r"(.*?)<<'EOF'", line)
        body = ""
        if heredoc:
            end = lines.index("EOF", i)
            body, i = "\n".join(lines[i:end]) + "\n", end + 1
            line = heredoc.group(1).strip()
        argv = shlex.split(line)
        if argv[:2] == ["mkdir", "-p"]:
            Path(argv[2]).mkdir(parents=True, exist_ok=True)
        elif argv[0] == "cat" and argv[1] == ">":
            Path(argv[2]).write_text(body)
        elif argv == ["python3", "-"]:
            done = subprocess.run([sys.executable, "-"], input=body, capture_output=True, text=True, timeout=60,
                                  check=False)
            assert done.returncode == 0, done.stderr
            outputs.append(done.stdout)
        elif argv[0] == "certloop":
            outputs.append(_run_certloop(argv[1:]))
        elif argv[0] == "find":
            root = Path(argv[1])
            outputs.append("\n".join(sorted(str(p) for p in root.rglob("*") if p.is_file())))
        elif argv[:2] == ["rm", "-rf"]:
            shutil.rmtree(argv[2])
        else:
            raise AssertionError(f"the drill has a step this test does not know: {line!r}")
    return outputs


def test_restore_drill_as_documented(tmp_path: Path) -> None:
    """Backup (page's command) then drill (page's block): counts match, a revision is set, the job is there."""
    renewer = CertloopDaemon.renewer(tmp_path / "renewer", {
        "auth": {"token": TOKEN},
        "scheduler": {"enabled": False},
        "worker": {"max_attempts": 1},
        "certificates": [{
            "id": "shop", "domains": ["shop.example"],
            "issuer": {"type": "command", "argv": ["false"]},  # fails at once: a finished job with events
            "outputs": {"fullchain": str(tmp_path / "out" / "shop.pem"), "key": str(tmp_path / "out" / "shop.key")},
        }],
    })
    renewer.start()
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        renew = requests.post(f"{renewer.url}/api/v1/certificates/shop/renew", headers=auth, timeout=10)
        assert renew.status_code == 202, renew.text

        def failed() -> bool:
            jobs = requests.get(f"{renewer.url}/api/v1/jobs", headers=auth, timeout=10).json()["jobs"]
            return bool(jobs) and jobs[0]["state"] == "failed"

        wait_until(failed, 30, "the job to end failed")
    finally:
        renewer.stop()

    archive = tmp_path / "renewer.clb"
    passphrase = tmp_path / "backup.passphrase"
    passphrase.write_text("a drill passphrase of some length\n")
    paths = {
        "/var/backups/certloop/renewer.clb": str(archive),
        "/etc/certloop/backup.passphrase": str(passphrase),
        "/etc/certloop/renewer.yml": str(renewer.config_path),
        "/tmp/certloop-drill": str(tmp_path / "drill"),
    }
    [make] = [b for b in _blocks() if "backup" in b and "--out /var/backups/certloop/renewer.clb" in b]
    command = next(line for line in make.splitlines() if " backup " in line)
    for old, new in paths.items():
        command = command.replace(old, new)
    argv = shlex.split(command)
    wrote = _run_certloop(argv[argv.index("certloop", 3) + 1:])  # after `sudo -u certloop`
    counts = re.search(r": (\d+) database rows, (\d+) files", wrote)
    assert counts, wrote
    rows, files = counts.groups()
    assert int(rows) >= 4

    [drill] = [b for b in _blocks() if "certloop-drill" in b]
    restored, revision, tables, listing = _run_drill(drill, paths)
    assert re.search(rf"restored {rows} database rows and {files} files into ", restored), restored
    assert revision.strip() not in {"", "base (empty)"}
    assert "jobs 1" in tables and "'shop', 'failed'" in tables
    assert "keystore.key" in listing  # the default key lives in data_dir, so it is in the archive
    assert not (tmp_path / "drill").exists()  # the drill cleans up after itself
