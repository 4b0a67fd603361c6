"""certloop.webconfig: exporter-toolkit's web config file, validated, kept current, enforced at one seam."""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import time
from pathlib import Path

import bcrypt
import pytest
import yaml

from certloop.errors import ConfigError
from certloop.httpserver import Request, Response
from certloop.webconfig import BasicAuthUsers, WebConfigFile, guard, load_web_config
from tests.support.pki import Pki

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def write(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


def tls_files(tmp_path: Path, pki: Pki) -> None:
    leaf = pki.leaf(["localhost"], days=30)
    (tmp_path / "server.pem").write_bytes(leaf.fullchain_pem)
    (tmp_path / "server.key").write_bytes(leaf.key_pem)
    (tmp_path / "ca.pem").write_bytes(pki.root_pem)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"basic_auth_users": {"alice": "plaintext"}}, "basic_auth_users: user 'alice': expected a bcrypt hash"),
        ({"basic_auth": {}}, "basic_auth: unknown key"),
        ({"tls_server_config": {"cert_file": "server.pem"}}, "tls_server_config.key_file"),
        ({"tls_server_config": {"cert_file": "server.pem", "key_file": "server.key", "min_version": "TLS14"}},
         "tls_server_config.min_version"),
        ({"tls_server_config": {"cert_file": "server.pem", "key_file": "server.key",
                                "client_auth_type": "RequireAnyClientCert"}}, "RequireAnyClientCert"),
        ({"tls_server_config": {"cert_file": "server.pem", "key_file": "server.key",
                                "client_auth_type": "RequireAndVerifyClientCert"}}, "needs client_ca_file"),
        ({"tls_server_config": {"cert_file": "missing.pem", "key_file": "server.key"}},
         "tls_server_config.cert_file: "),
    ],
)
def test_bad_web_configs_name_the_key(tmp_path: Path, pki: Pki, data: object, message: str) -> None:
    tls_files(tmp_path, pki)
    with pytest.raises(ConfigError) as err:
        load_web_config(write(tmp_path / "web.yml", data))
    assert message in str(err.value)


def test_a_key_that_does_not_match_the_certificate_is_refused_at_load(tmp_path: Path, pki: Pki) -> None:
    tls_files(tmp_path, pki)
    (tmp_path / "server.key").write_bytes(pki.leaf(["other"], days=1).key_pem)
    with pytest.raises(ConfigError, match=r"tls_server_config\.cert_file: cannot load"):
        load_web_config(write(tmp_path / "web.yml", {"tls_server_config": {"cert_file": "server.pem",
                                                                           "key_file": "server.key"}}))


def test_relative_files_resolve_against_the_config_directory(tmp_path: Path, pki: Pki) -> None:
    tls_files(tmp_path, pki)
    cfg = load_web_config(write(tmp_path / "web.yml", {"tls_server_config": {
        "cert_file": "server.pem", "key_file": "server.key", "client_auth_type": "RequireAndVerifyClientCert",
        "client_ca_file": "ca.pem", "min_version": "TLS13"}}))
    assert cfg.tls_server_config is not None and cfg.tls_server_config.cert_file == str(tmp_path / "server.pem")
    ctx = WebConfigFile(tmp_path / "web.yml").ssl_context
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.minimum_version == ssl.TLSVersion.TLSv1_3


def test_basic_auth_checks_bcrypt_and_refuses_everything_else() -> None:
    users = BasicAuthUsers({"alice": HASH})
    assert users.check(basic("alice", "s3cret")) == "alice"
    assert users.check(basic("alice", "s3cret")) == "alice"  # remembered
    for header in (basic("alice", "wrong"), basic("bob", "s3cret"), "Basic !!!", "Bearer x", None, "",
                   "Basic " + base64.b64encode(b"\xff\xfe").decode()):
        assert users.check(header) is None, header


def test_the_guard_answers_401_before_the_handler_and_adds_headers(tmp_path: Path) -> None:
    web = WebConfigFile(write(tmp_path / "web.yml", {"basic_auth_users": {"alice": HASH},
                                                     "http_server_config": {"headers": {"X-Frame-Options": "deny"}}}))
    calls = []

    async def handler(req: Request) -> Response:
        calls.append(req)
        return Response.text("ok")

    class Fake:  # a Request stand-in: the guard reads only headers and peer_cert
        def __init__(self, auth: str | None) -> None:
            self.headers = {"authorization": auth} if auth else {}
            self.peer_cert = None

    guarded = guard(handler, web)
    denied = asyncio.run(guarded(Fake(basic("alice", "no"))))  # type: ignore[arg-type]
    assert denied.status == 401 and ("WWW-Authenticate", 'Basic realm="certloop"') in denied.headers and not calls
    ok = asyncio.run(guarded(Fake(basic("alice", "s3cret"))))  # type: ignore[arg-type]
    assert ok.status == 200 and ("X-Frame-Options", "deny") in ok.headers and len(calls) == 1


def test_changes_to_the_file_apply_without_a_restart_and_bad_ones_are_ignored(tmp_path: Path, pki: Pki) -> None:
    path = write(tmp_path / "web.yml", {"basic_auth_users": {"alice": HASH}})
    web = WebConfigFile(path)
    assert web.users.check(basic("alice", "s3cret")) == "alice"
    write(path, {"basic_auth_users": {"bob": HASH}})
    os.utime(path, (time.time() + 5, time.time() + 5))
    web.refresh(force=True)
    assert web.users.check(basic("alice", "s3cret")) is None and web.users.check(basic("bob", "s3cret")) == "bob"
    path.write_text("basic_auth_users: [not, a, map]\n")
    web.refresh(force=True)  # logged, and the last good users stay
    assert web.users.check(basic("bob", "s3cret")) == "bob"
