"""Environment variables in both config files: ``--config.expand-env`` as Loki does it, and a clear error
instead of a literal ``${X}`` without it.

One bad-config file per error in ``env_configs/``: its first line is ``# error: <exact message>``, its
second ``# expand-env: yes|no``; ``exporter_*`` files are read by the exporter, ``renewer_*`` by the renewer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from certloop.config import expand_env
from certloop.errors import ConfigError
from certloop.exporter.config import load_config as load_exporter
from certloop.renewer.config import load_config as load_renewer
from stack.process import wait_until

REPO = Path(__file__).resolve().parents[2]
BAD = Path(__file__).parent / "env_configs"
BAD_FILES = sorted(BAD.glob("*.yml"))
TOKEN = "test-token-0123456789abcdef"
LOADERS: dict[str, Callable[..., Any]] = {"exporter": load_exporter, "renewer": load_renewer}


def _header(path: Path) -> tuple[str, bool]:
    first, second = path.read_text().splitlines()[:2]
    assert first.startswith("# error: ") and second in {"# expand-env: yes", "# expand-env: no"}, path.name
    return first.removeprefix("# error: "), second.endswith("yes")


def test_there_is_a_bad_config_per_error() -> None:
    assert len(BAD_FILES) >= 10


@pytest.mark.parametrize("path", BAD_FILES, ids=lambda p: p.stem)
def test_bad_config_is_rejected_with_its_message(path: Path) -> None:
    """Each file fails with exactly its message, prefixed by the file name: the variable and the key path."""
    message, expand = _header(path)
    with pytest.raises(ConfigError) as info:
        LOADERS[path.name.split("_")[0]](path, expand_env=expand)
    assert str(info.value) == f"{path}: {message}"


def test_expansion_rules() -> None:
    """``${VAR}``, ``${VAR:-default}`` (an empty default too), ``$$`` for a ``$``; a lone ``$`` stays; only
    string values change, at any depth."""
    env = {"HOST": "db.example", "EMPTY": ""}
    data = {"a": "${HOST}:5432", "b": ["${PORT:-5432}", "${NONE:-}", "p$ss", "$${HOST}", "${EMPTY:-x}"],
            "c": {"d": 3, "e": None, "f": "${HOST}${HOST}"}}
    assert expand_env(data, env) == {"a": "db.example:5432", "b": ["5432", "", "p$ss", "${HOST}", ""],
                                     "c": {"d": 3, "e": None, "f": "db.exampledb.example"}}


def _renewer_config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    live = tmp_path / "live"
    return {
        "listen": "127.0.0.1:0", "auth": {"token": "${CERTLOOP_TEST_TOKEN}"}, "data_dir": str(tmp_path / "data"),
        "keystore": {"key": "${CERTLOOP_TEST_KEYSTORE}"}, "scheduler": {"enabled": False},
        "certificates": [{
            "id": "shop", "domains": ["shop.example"],
            "issuer": {"type": "command", "argv": ["sh", "-c", "echo ${CERTLOOP_DOMAINS} > /dev/null"]},
            "outputs": {"fullchain": str(live / "fullchain.pem"), "key": str(live / "key.pem")},
            "deploy": [["sh", "-c", "test -n \"${HOME}\""]],
        }],
        **extra,
    }


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTLOOP_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("CERTLOOP_TEST_KEYSTORE", "ab" * 32)


def test_without_the_flag_secrets_and_argv_keep_their_references(tmp_path: Path, env: None) -> None:
    """No flag: secret fields keep ``${ENV}`` (read when used) and argv keeps it (a shell may expand it)."""
    path = tmp_path / "renewer.yml"
    path.write_text(yaml.safe_dump(_renewer_config(tmp_path)))
    cfg = load_renewer(path)
    assert cfg.auth.token == "${CERTLOOP_TEST_TOKEN}" and cfg.auth.bearer_token() == TOKEN
    spec = cfg.certificates[0]
    assert spec.issuer.argv[-1] == "echo ${CERTLOOP_DOMAINS} > /dev/null"  # type: ignore[union-attr]
    assert spec.deploy[0].argv[-1] == 'test -n "${HOME}"'


def test_with_the_flag_every_string_is_expanded(tmp_path: Path, env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The flag: data_dir and paths from the environment or their defaults; argv too (``$$`` keeps a ``$``)."""
    monkeypatch.setenv("CERTLOOP_TEST_DATA", str(tmp_path / "from-env"))
    data = _renewer_config(tmp_path, data_dir="${CERTLOOP_TEST_DATA}", listen="${CERTLOOP_TEST_LISTEN:-127.0.0.1:0}")
    data["certificates"][0]["issuer"]["argv"][-1] = "echo $${CERTLOOP_DOMAINS} > /dev/null"
    path = tmp_path / "renewer.yml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_renewer(path, expand_env=True)
    assert cfg.data_dir == tmp_path / "from-env" and cfg.listen == "127.0.0.1:0"
    assert cfg.auth.token == TOKEN
    assert cfg.certificates[0].issuer.argv[-1] == "echo ${CERTLOOP_DOMAINS} > /dev/null"  # type: ignore[union-attr]
    assert cfg.certificates[0].deploy[0].argv[-1] == f'test -n "{os.environ["HOME"]}"'


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "certloop.cli", *args], capture_output=True, text=True, timeout=60,
                          cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def test_both_daemons_take_the_flag_and_say_which_variable_is_missing(tmp_path: Path) -> None:
    """``--config.check --config.expand-env`` on both daemons: ok with the variable, the exact error without."""
    exporter = tmp_path / "exporter.yml"
    exporter.write_text("endpoints:\n  - targets: ['${CERTLOOP_TEST_HOST}:443']\n")
    ok = _cli("exporter", f"--config.file={exporter}", "--config.check", "--config.expand-env",
              env={"CERTLOOP_TEST_HOST": "shop.example"})
    assert ok.returncode == 0, ok.stderr
    bad = _cli("exporter", f"--config.file={exporter}", "--config.check", "--config.expand-env")
    assert bad.returncode == 78
    assert bad.stderr.strip() == (
        f"certloop exporter: invalid config: {exporter}: endpoints[0].targets[0]: environment variable "
        "CERTLOOP_TEST_HOST is not set (and ${CERTLOOP_TEST_HOST} has no :-default)")
    literal = _cli("exporter", f"--config.file={exporter}", "--config.check",
                   env={"CERTLOOP_TEST_HOST": "shop.example"})
    assert literal.returncode == 78
    assert literal.stderr.strip().endswith(
        "endpoints[0].targets[0]: ${CERTLOOP_TEST_HOST} is not expanded: environment variables are read only "
        "with --config.expand-env (or, for secrets, in the fields that say so)")
    renewer = tmp_path / "renewer.yml"
    renewer.write_text(f"auth: {{token: {TOKEN}}}\ndata_dir: ${{CERTLOOP_TEST_DATA}}\n")
    ok = _cli("renewer", f"--config.file={renewer}", "--config.check", "--config.expand-env",
              env={"CERTLOOP_TEST_DATA": str(tmp_path / "d")})
    assert ok.returncode == 0, ok.stderr
    bad = _cli("renewer", f"--config.file={renewer}", "--config.check")
    assert bad.returncode == 78
    assert "data_dir: ${CERTLOOP_TEST_DATA} is not expanded" in bad.stderr
    assert not (Path.cwd() / "${CERTLOOP_TEST_DATA}").exists() and not (REPO / "${CERTLOOP_TEST_DATA}").exists()


def _logged(proc: subprocess.Popen[str], log: Path, *markers: str) -> str:
    """The log once it holds one of ``markers`` (bounded); the daemon exiting first fails the test."""

    def seen() -> str | None:
        text = log.read_text()
        assert proc.poll() is None, text
        return text if any(marker in text for marker in markers) else None

    return wait_until(seen, 30, f"the daemon to log one of {markers}", log_tail=log.read_text)


@pytest.mark.parametrize("daemon", ["renewer", "exporter"])
def test_a_reload_reads_the_file_with_the_flag_too(daemon: str, tmp_path: Path, env: None) -> None:
    """A daemon started with the flag reloads a file that uses variables (it would refuse it without)."""
    path = tmp_path / f"{daemon}.yml"
    if daemon == "renewer":
        data: dict[str, Any] = _renewer_config(tmp_path)
        data["certificates"][0]["issuer"]["argv"][-1] = "echo $${CERTLOOP_DOMAINS}"  # a $ for the shell
    else:
        data = {"endpoints": [{"targets": ["127.0.0.1:9"]}]}
    path.write_text(yaml.safe_dump(data))
    log = tmp_path / "log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "certloop.cli", daemon, f"--config.file={path}", "--config.expand-env",
             "--web.listen-address=127.0.0.1:0", "--web.enable-lifecycle"],
            stdout=fh, stderr=subprocess.STDOUT, text=True, cwd=str(REPO),
            env={**os.environ, "PYTHONPATH": str(REPO), "CERTLOOP_TEST_PORT": "10"},
        )
    try:
        _logged(proc, log, "listening on http://")
        if daemon == "renewer":
            data["data_dir"] = "${CERTLOOP_TEST_UNSET_DATA:-" + str(tmp_path / "data") + "}"
        else:
            data["endpoints"][0]["targets"].append("127.0.0.1:${CERTLOOP_TEST_PORT}")
        path.write_text(yaml.safe_dump(data))
        proc.send_signal(signal.SIGHUP)
        text = _logged(proc, log, "config reloaded", "keeping the")
        assert "config reloaded" in text, text
    finally:
        proc.terminate()
        proc.wait(20)
