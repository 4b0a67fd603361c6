"""deploy/kubernetes/base/config_reloader.py against the real daemons: a ConfigMap change reaches a running
exporter and renewer without a restart.

The kubelet is not here, so the test lays out the directory exactly as the kubelet's atomic writer does
(the visible names are symlinks into `..data`, which points at a timestamped directory; an update writes a
new directory and renames a new `..data` symlink over the old one) and performs that swap itself.
Everything else is real: the daemons, the sidecar script as the pod runs it, HTTP on loopback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.process import Process, free_port, wait_for_port, wait_until
from tests.support.pki import Pki

REPO = Path(__file__).resolve().parents[2]
RELOADER = REPO / "deploy" / "kubernetes" / "base" / "config_reloader.py"
CERTLOOP = REPO / ".venv" / "bin" / "certloop"
TOKEN = "0123456789abcdef0123456789"
KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


class ConfigMapVolume:
    """A directory laid out and updated the way the kubelet updates a mounted ConfigMap."""

    def __init__(self, root: Path, files: dict[str, str]) -> None:
        self.root = root
        root.mkdir()
        self.version = 0
        self.update(files)
        for name in files:
            (root / name).symlink_to(Path("..data") / name)

    def update(self, files: dict[str, str]) -> None:
        self.version += 1
        payload = self.root / f"..2026_12_07_00_00_0{self.version}.000000000"
        payload.mkdir()
        for name, text in files.items():
            (payload / name).write_text(text)
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(payload.name)
        os.replace(tmp, self.root / "..data")  # the atomic swap: readers see the old or the new set


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in reversed(started):
        process.stop()


def reloader(tmp_path: Path, watch: Path, url: str, *extra: str) -> Process:
    return Process([sys.executable, str(RELOADER), f"--watch-dir={watch}", f"--reload-url={url}",
                    "--interval=200ms", *extra], name="config-reloader", log_path=tmp_path / "reloader.log")


def events(log: Path) -> list[dict[str, object]]:
    """The sidecar's JSON log lines, oldest first (the supervisor's own ``--- start`` line skipped)."""
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def test_exporter_picks_up_a_changed_configmap(tmp_path: Path, pki: Pki, processes: list[Process]) -> None:
    """The exporter serves the new label of a file group after the ConfigMap swap, with the same PID."""
    certs = tmp_path / "certs"
    certs.mkdir()
    pki.leaf(["shop.example"]).write(certs, "shop")

    def config(team: str) -> str:
        return (f"files:\n  - paths: [{certs}/]\n    exclude: ['*.key']\n"
                f"    labels: {{certificate: shop, team: {team}}}\n")

    volume = ConfigMapVolume(tmp_path / "config", {"exporter.yml": config("before")})
    port = free_port()
    exporter = Process([str(CERTLOOP), "exporter", f"--config.file={volume.root / 'exporter.yml'}",
                        f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"], name="exporter",
                       log_path=tmp_path / "exporter.log").start()
    processes.append(exporter)
    wait_for_port("127.0.0.1", port, timeout=30)
    wait_until(lambda: 'team="before"' in metrics(port), 30, "the exporter to read the first config")
    processes.append(reloader(tmp_path, volume.root, f"http://127.0.0.1:{port}/-/reload").start())
    log = tmp_path / "reloader.log"
    wait_until(lambda: '"event": "reloaded"' in log.read_text(), 30, "the sidecar's first (catch-up) reload")
    pid = exporter.pid

    volume.update({"exporter.yml": config("after")})
    wait_until(lambda: 'team="after"' in metrics(port), 30, "the changed ConfigMap to reach the exporter")
    assert 'team="before"' not in metrics(port)
    assert exporter.running and exporter.pid == pid, "reloaded in place, not restarted"
    assert log.read_text().count('"event": "reloaded"') == 2


def test_renewer_reload_uses_the_token_and_a_bad_config_is_rejected_not_retried(
    tmp_path: Path, processes: list[Process]
) -> None:
    """The renewer's /-/reload needs the bearer token: the sidecar sends it from the mounted Secret. A
    broken ConfigMap is rejected by the renewer (which keeps running on the old config, reload metric 0)
    and the sidecar does not hammer it; the next good ConfigMap is applied (metric back to 1)."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "token").write_text(TOKEN + "\n")
    (secrets / "keystore-key").write_text(KEY)
    port = free_port()
    good = (f"listen: 127.0.0.1:{port}\nauth: {{token_file: {secrets / 'token'}}}\n"
            f"data_dir: {tmp_path / 'data'}\nkeystore: {{key_file: {secrets / 'keystore-key'}}}\ncertificates: []\n")
    volume = ConfigMapVolume(tmp_path / "config", {"renewer.yml": good})
    renewer = Process([str(CERTLOOP), "renewer", f"--config.file={volume.root / 'renewer.yml'}",
                       "--web.enable-lifecycle"], name="renewer",
                      log_path=tmp_path / "renewer.log").start()
    processes.append(renewer)
    wait_for_port("127.0.0.1", port, timeout=60)
    gauge = re.compile(r"^certloop_renewer_config_last_reload_successful (\S+)$", re.MULTILINE)

    def reload_ok() -> str:
        found = gauge.search(metrics(port))
        return found.group(1) if found else "missing"

    assert reload_ok() == "1.0"
    log = tmp_path / "reloader.log"
    processes.append(reloader(tmp_path, volume.root, f"http://127.0.0.1:{port}/-/reload",
                              f"--token-file={secrets / 'token'}").start())
    wait_until(lambda: '"event": "reloaded"' in log.read_text(), 30, "the sidecar's first (catch-up) reload")
    pid = renewer.pid

    volume.update({"renewer.yml": good + "no_such_key: 1\n"})
    wait_until(lambda: reload_ok() == "0.0", 30, "the broken ConfigMap to be rejected by the renewer")
    wait_until(lambda: '"event": "reload_rejected", "status": 500' in log.read_text(), 10, "the rejection logged")
    attempts = log.read_text().count("reload_")
    volume.update({"renewer.yml": good.replace("certificates: []", "worker: {concurrency: 2}\ncertificates: []")})
    wait_until(lambda: reload_ok() == "1.0", 30, "the repaired ConfigMap to be applied")
    assert log.read_text().count("reload_rejected") == 1, "a rejected config is not retried"
    assert log.read_text().count("reload_") == attempts
    assert renewer.running and renewer.pid == pid


def test_renewer_reload_without_the_token_is_refused(tmp_path: Path, processes: list[Process]) -> None:
    """The sidecar is not a way around the renewer's auth: with a wrong token the reload is refused (401)
    and the running config stays."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "token").write_text(TOKEN)
    (secrets / "wrong").write_text("not-the-token-at-all-000000")
    port = free_port()
    config = (f"listen: 127.0.0.1:{port}\nauth: {{token_file: {secrets / 'token'}}}\n"
              f"data_dir: {tmp_path / 'data'}\nkeystore: {{key: {KEY}}}\ncertificates: []\n")
    volume = ConfigMapVolume(tmp_path / "config", {"renewer.yml": config})
    renewer = Process([str(CERTLOOP), "renewer", f"--config.file={volume.root / 'renewer.yml'}",
                       "--web.enable-lifecycle"], name="renewer", log_path=tmp_path / "renewer.log").start()
    processes.append(renewer)
    wait_for_port("127.0.0.1", port, timeout=60)
    processes.append(reloader(tmp_path, volume.root, f"http://127.0.0.1:{port}/-/reload",
                              f"--token-file={secrets / 'wrong'}").start())
    log = tmp_path / "reloader.log"
    wait_until(lambda: '"status": 401' in log.read_text(), 30, "the catch-up reload to be refused")
    volume.update({"renewer.yml": config + "no_such_key: 1\n"})
    wait_until(lambda: log.read_text().count('"status": 401') == 2, 30, "the change's reload to be refused")
    assert "config_last_reload_successful 1.0" in metrics(port)


def test_an_unreadable_token_file_is_logged_and_retried_not_fatal(
    tmp_path: Path, processes: list[Process]
) -> None:
    """The Secret is not mounted yet when the sidecar starts, then a directory stands where the token should
    be: the sidecar keeps running, logs each distinct error once (the path and the OS error, never the
    token) and sends nothing; once the token reads, it says so and the waiting reload reaches the renewer."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "token").write_text(TOKEN + "\n")
    (secrets / "keystore-key").write_text(KEY)
    mounted = tmp_path / "sidecar-secrets"  # the sidecar's own mount of the Secret: empty at first
    mounted.mkdir()
    token_file = mounted / "token"
    port = free_port()
    good = (f"listen: 127.0.0.1:{port}\nauth: {{token_file: {secrets / 'token'}}}\n"
            f"data_dir: {tmp_path / 'data'}\nkeystore: {{key_file: {secrets / 'keystore-key'}}}\ncertificates: []\n")
    volume = ConfigMapVolume(tmp_path / "config", {"renewer.yml": good})
    processes.append(Process([str(CERTLOOP), "renewer", f"--config.file={volume.root / 'renewer.yml'}",
                              "--web.enable-lifecycle"], name="renewer", log_path=tmp_path / "renewer.log").start())
    wait_for_port("127.0.0.1", port, timeout=60)

    def reload_ok() -> str:
        found = re.search(r"^certloop_renewer_config_last_reload_successful (\S+)$", metrics(port), re.MULTILINE)
        return found.group(1) if found else "missing"

    log = tmp_path / "reloader.log"
    sidecar = reloader(tmp_path, volume.root, f"http://127.0.0.1:{port}/-/reload", f"--token-file={token_file}")
    processes.append(sidecar.start())

    def unreadable() -> list[dict[str, object]]:
        return [e for e in events(log) if e["event"] == "token_unreadable"]

    sidecar.wait_until(lambda: len(unreadable()) == 1, 30, "the missing token file to be logged")
    assert unreadable()[0]["file"] == str(token_file)
    assert unreadable()[0]["error"] == "No such file or directory"
    volume.update({"renewer.yml": good + "no_such_key: 1\n"})  # waits for a token; the renewer will refuse it
    time.sleep(1.0)  # five ticks on the same error: one line, and still running
    assert len(unreadable()) == 1 and sidecar.running

    (mounted / "..wrong").mkdir()
    token_file.symlink_to("..wrong")  # a directory in the token's place: another error, logged once more
    sidecar.wait_until(lambda: len(unreadable()) == 2, 30, "the changed error to be logged")
    assert unreadable()[1]["error"] == "Is a directory"
    assert reload_ok() == "1.0", "nothing reached the renewer while the token was unreadable"

    (mounted / "..right").write_text(TOKEN + "\n")
    (mounted / "token_tmp").symlink_to("..right")
    os.replace(mounted / "token_tmp", token_file)  # swapped in atomically, as the kubelet does
    wait_until(lambda: reload_ok() == "0.0", 30, "the waiting reload to reach the renewer (which refuses it)")
    sidecar.wait_until(lambda: any(e["event"] == "reload_rejected" for e in events(log)), 10, "the refusal logged")
    assert [e["event"] for e in events(log)] == [
        "watching", "token_unreadable", "token_unreadable", "token_readable", "reload_rejected"]
    assert events(log)[-1]["status"] == 500, "the config refused, the token accepted (a wrong one is 401)"
    assert TOKEN not in log.read_text()
    assert sidecar.running


def test_reloader_refuses_a_missing_directory(tmp_path: Path) -> None:
    """A wrong --watch-dir is an error naming the flag, not a loop watching nothing."""
    done = subprocess.run([sys.executable, str(RELOADER), f"--watch-dir={tmp_path / 'nope'}",
                           "--reload-url=http://127.0.0.1:1/-/reload"], capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 2
    assert "--watch-dir" in done.stderr and "not a directory" in done.stderr
