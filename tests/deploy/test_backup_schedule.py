"""The scheduled backups shipped as files: the compose `backup` service's loop, run for real, and the
Kubernetes CronJob (schema-checked in test_kubernetes.py; here: what it runs).

Docker cannot run here, so the compose loop runs as the shell script it is, with the real `certloop`
on PATH and the paths moved into a temporary directory; only the interval is shortened.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from certloop.renewer.backupsite import ARCHIVE_NAME
from stack.process import wait_until

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose" / "docker-compose.yml"
DEV_OVERLAY = REPO / "deploy" / "kubernetes" / "overlays" / "dev"


def _script() -> tuple[list[str], str, dict[str, str]]:
    service = yaml.safe_load(COMPOSE.read_text())["services"]["backup"]
    [script] = service["command"]
    defaults = {}
    for key, value in service["environment"].items():
        # ${VAR:-default} and ${VAR:?message}: the compose defaults, as `docker compose` would fill them in
        if value.startswith("${") and ":-" in value:
            defaults[key] = value[value.index(":-") + 2:-1]
    return service["entrypoint"], script.replace("$$", "$"), defaults


def _run_loop(tmp_path: Path, out: str, until: Callable[[str], bool], *, migrated: bool = True,
              **env: str) -> tuple[str, list[str]]:
    """Run the loop until ``until(log)`` holds (at most a minute: each run starts a Python), then stop it."""
    entrypoint, script, defaults = _script()
    assert entrypoint == ["/bin/sh", "-c"]
    config = tmp_path / "renewer.yml"
    config.write_text(yaml.safe_dump({"listen": "127.0.0.1:0", "auth": {"token": "${CERTLOOP_RENEWER_TOKEN}"},
                                      "data_dir": str(tmp_path / "data"),
                                      "keystore": {"key": "${CERTLOOP_KEYSTORE_KEY}"}}))
    script = script.replace("/etc/certloop/renewer.yml", str(config))
    log = tmp_path / "backup.log"
    environment = {**os.environ, **defaults, "CERTLOOP_BACKUP_OUT": out,
                   "CERTLOOP_KEYSTORE_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                   "CERTLOOP_RENEWER_TOKEN": "0123456789abcdef0123456789",
                   "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **env}
    if migrated:  # as the renewer service does at its start
        subprocess.run([sys.executable, "-m", "certloop.cli", "renewer", f"--config.file={config}", "db", "upgrade"],
                       env=environment, check=True, capture_output=True, timeout=120, cwd=REPO)
    with log.open("wb") as fh:
        proc = subprocess.Popen(["/bin/sh", "-c", script], stdout=fh, stderr=subprocess.STDOUT, env=environment,
                                start_new_session=True)
    def there() -> bool:
        text = log.read_text()
        assert proc.poll() is None, f"the loop exited: {text}"
        return until(text)

    try:
        wait_until(there, 60, "the backup loop to get there", interval=0.2, log_tail=log.read_text)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the loop's own session: the shell and its sleep
        proc.wait(10)
    return log.read_text(), sorted(os.listdir(out)) if os.path.isdir(out) else []


def test_compose_backup_loop_writes_and_prunes(tmp_path: Path) -> None:
    """Every interval a new timestamped archive; retention (here 1 daily, 0 weekly) leaves the newest."""
    out = tmp_path / "backups"
    out.mkdir()
    log, names = _run_loop(tmp_path, f"{out}/", lambda text: "deleted " in text and "kept 1 archive" in text,
                           CERTLOOP_BACKUP_INTERVAL="1",
                           CERTLOOP_BACKUP_KEEP_DAILY="1", CERTLOOP_BACKUP_KEEP_WEEKLY="0")
    assert log.count("wrote ") >= 2, log
    assert log.count("deleted ") >= 1, log
    assert len(names) == 1 and ARCHIVE_NAME.match(names[0]), names


def test_compose_backup_loop_retries_after_a_failure(tmp_path: Path) -> None:
    """A failed run (here: a database without its schema) is logged and retried after CERTLOOP_BACKUP_RETRY
    seconds, not after the interval."""
    log, _ = _run_loop(tmp_path, f"{tmp_path}/backups/", lambda text: text.count("retrying in 1 s") >= 2,
                       migrated=False, CERTLOOP_BACKUP_INTERVAL="86400", CERTLOOP_BACKUP_RETRY="1")
    assert "no such table" in log
    assert log.count("certloop backup failed; retrying in 1 s") >= 2, log


def test_kubernetes_cronjob_backs_up_off_site_with_retention() -> None:
    """The CronJob runs `certloop renewer backup` to an s3:// prefix with retention, once at a time, on the
    renewer's node (its data volume is ReadWriteOnce), with the renewer's config, secrets and volume."""
    rendered = subprocess.run(["kubectl", "kustomize", str(DEV_OVERLAY)], capture_output=True, text=True,
                              timeout=120, check=True).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    [cron] = [d for d in docs if d["kind"] == "CronJob"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = container["args"]
    assert args[:3] == ["renewer", "--config.file=/etc/certloop/config/renewer.yml", "backup"]
    assert cron["metadata"]["namespace"] == "certloop"
    out = args[args.index("--out") + 1]
    assert out.startswith("s3://") and out.endswith("/")
    assert "--keep-daily" in args and "--keep-weekly" in args
    affinity = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert affinity["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "renewer"
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"certloop-renewer-data"}
