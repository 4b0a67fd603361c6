"""examples/{dev,test,prod}/: every template passes the daemons' own --config.check.

The templates name absolute paths (/etc, /var, /srv) and secrets from the environment, as a real install does.
The test lays them out under a temporary root: it rewrites those prefixes, creates each file a key points at
(tokens, keystore keys, CA bundles, the listener's certificate and key, minted here) and runs the real CLI.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.pki import Pki

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
ENVIRONMENTS = ("dev", "test", "prod")
PREFIXES = ("/etc/", "/var/", "/srv/")
SECRETS_ENV = {
    "CERTLOOP_RENEWER_TOKEN": secrets.token_urlsafe(24),
    "CERTLOOP_DATABASE_URL": "postgresql+psycopg://certloop@127.0.0.1:5432/certloop",
    "CERTLOOP_KEYSTORE_KEY": secrets.token_hex(32),
}


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def _materialise(config: dict[str, Any], pki: Pki) -> None:
    """Create every file the config needs to exist, by what its key says it is (outputs, webroots and data_dir
    are the renewer's to create; it must not need them beforehand)."""
    leaf = pki.leaf(["renewer.example"], days=90)
    for key, value in _walk(config):
        name = key.rsplit(".", 1)[-1]
        path = Path(value)
        if name == "token_file":
            content: bytes = secrets.token_urlsafe(24).encode()
        elif name == "key_file" and key.startswith("keystore"):
            content = secrets.token_hex(32).encode()
        elif name in {"ca_file", "ca_bundle", "client_ca_file"}:
            content = pki.root_pem
        elif name == "tls_cert_file":
            content = leaf.fullchain_pem
        elif name == "tls_key_file":
            content = leaf.key_pem
        elif key.endswith(".argv[0]") and value.startswith("/"):
            content = b"#!/bin/sh\nexit 0\n"
        else:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(0o755 if key.endswith("argv[0]") else 0o600)


def _laid_out(env: str, root: Path, pki: Pki) -> dict[str, Path]:
    out = {}
    for daemon in ("exporter", "renewer"):
        text = (EXAMPLES / env / f"{daemon}.yml").read_text()
        for prefix in PREFIXES:
            text = text.replace(f" {prefix}", f" {root}{prefix}").replace(f'"{prefix}', f'"{root}{prefix}')
            text = text.replace(f"[{prefix}", f"[{root}{prefix}")
        _materialise(yaml.safe_load(text), pki)
        path = root / env / f"{daemon}.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        out[daemon] = path
    return out


def _check(daemon: str, path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "certloop.cli", daemon, "--config.file", str(path), "--config.check"],
        capture_output=True, text=True, timeout=60, env={**os.environ, **env}, check=False,
    )


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_template_passes_config_check(env: str, tmp_path: Path, pki: Pki) -> None:
    paths = _laid_out(env, tmp_path, pki)
    for daemon, path in paths.items():
        res = _check(daemon, path, SECRETS_ENV)
        assert res.returncode == 0, f"examples/{env}/{daemon}.yml: {res.stdout}{res.stderr}"
        assert "ok" in res.stdout.lower()


def test_the_templates_differ_where_the_environments_do() -> None:
    """dev and test keep SQLite on loopback; prod uses PostgreSQL, TLS with client certificates and Let's Encrypt."""
    cfg = {env: yaml.safe_load((EXAMPLES / env / "renewer.yml").read_text()) for env in ENVIRONMENTS}
    for env in ("dev", "test"):
        assert cfg[env]["listen"].startswith("127.0.0.1:") and "database" not in cfg[env]
    assert cfg["test"]["certificates"][0]["issuer"]["directory"].startswith("https://pebble")
    prod = cfg["prod"]
    assert prod["database"]["url"] == "${CERTLOOP_DATABASE_URL}"
    assert {"tls_cert_file", "tls_key_file", "client_ca_file"} <= set(prod["auth"])
    assert prod["certificates"][0]["issuer"]["directory"] == "https://acme-v02.api.letsencrypt.org/directory"


def test_a_template_without_its_secrets_fails_the_check(tmp_path: Path, pki: Pki) -> None:
    """The check is real: the prod renewer without its token variable is rejected, naming the key."""
    paths = _laid_out("prod", tmp_path, pki)
    env = {k: v for k, v in SECRETS_ENV.items() if k != "CERTLOOP_RENEWER_TOKEN"}
    os.environ.pop("CERTLOOP_RENEWER_TOKEN", None)
    res = _check("renewer", paths["renewer"], env)
    assert res.returncode != 0 and "auth.token" in res.stderr, res.stderr


def test_no_example_is_left_untested() -> None:
    assert sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()) == sorted(ENVIRONMENTS)
    for env in ENVIRONMENTS:
        assert sorted(p.name for p in (EXAMPLES / env).iterdir()) == ["exporter.yml", "renewer.yml"]
