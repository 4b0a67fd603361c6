"""``--web.config.file``: TLS and basic authentication for both daemons, in exporter-toolkit's format.

    tls_server_config:
      cert_file: server.pem            # relative paths are relative to this file's directory
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: clients-ca.pem
      min_version: TLS12
    http_server_config:
      headers: {X-Frame-Options: deny}
    basic_auth_users:
      prometheus: $2y$10$...          # bcrypt hashes (htpasswd -nBC 10 "" | tr -d ':\\n')

Why this format: operators already write it for node_exporter, blackbox_exporter and Prometheus itself, and
Prometheus' own ``basic_auth``/``tls_config`` scrape settings are made to talk to it. What must stay true:

- the file is re-read when it changes (checked at most once a second, as exporter-toolkit re-reads it per
  connection), so a rotated certificate or a new user takes effect without a restart; a change that does
  not validate is logged and the last good settings stay in force;
- a request without valid credentials never reaches a handler (401 with ``WWW-Authenticate: Basic``);
- bcrypt is slow on purpose (tens of ms): a successful check is remembered by a keyed hash of the header
  for the life of that hash table entry, so a scraper pays it once, and a wrong password never short-cuts;
- Python's ``ssl`` cannot request a client certificate without verifying it, so ``RequestClientCert``
  and ``VerifyClientCertIfGiven`` both verify a certificate when one is sent, and ``RequireAnyClientCert``
  is refused at load: say ``RequireAndVerifyClientCert``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import ssl
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import bcrypt
import yaml
from pydantic import Field, field_validator

from certloop.config import StrictModel, validate_model
from certloop.errors import ConfigError
from certloop.httpserver import Handler, Request, Response

__all__ = [
    "BasicAuthUsers", "HttpServerConfig", "TlsServerConfig", "WebConfig", "WebConfigFile", "guard", "load_web_config",
]

log = logging.getLogger(__name__)

ClientAuthType = Literal[
    "NoClientCert", "RequestClientCert", "RequireAnyClientCert", "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
TlsVersion = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1, "TLS12": ssl.TLSVersion.TLSv1_2,
             "TLS13": ssl.TLSVersion.TLSv1_3}
_CHECK_EVERY = 1.0  # seconds between stat() calls on the file


class TlsServerConfig(StrictModel):
    cert_file: str = Field(description="server certificate (and chain), PEM")
    key_file: str = Field(description="its private key, PEM")
    client_auth_type: ClientAuthType = "NoClientCert"
    client_ca_file: str | None = Field(default=None, description="CAs that sign client certificates")
    client_allowed_sans: list[str] = Field(default_factory=list,
                                           description="accept only client certificates with one of these SANs")
    min_version: TlsVersion = "TLS12"
    max_version: TlsVersion = "TLS13"
    cipher_suites: list[str] = Field(default_factory=list, description="accepted for compatibility; see the docs")
    prefer_server_cipher_suites: bool = True
    curve_preferences: list[str] = Field(default_factory=list, description="accepted for compatibility")

    @field_validator("client_auth_type")
    @classmethod
    def _supported(cls, v: str) -> str:
        if v == "RequireAnyClientCert":
            raise ValueError("RequireAnyClientCert (a client certificate that is not verified) is not supported: "
                             "use RequireAndVerifyClientCert with client_ca_file")
        return v


class HttpServerConfig(StrictModel):
    http2: bool = Field(default=True, description="accepted for compatibility; certloop serves HTTP/1.1")
    headers: dict[str, str] = Field(default_factory=dict, description="added to every response")


class WebConfig(StrictModel):
    tls_server_config: TlsServerConfig | None = None
    http_server_config: HttpServerConfig = Field(default_factory=HttpServerConfig)
    basic_auth_users: dict[str, str] = Field(default_factory=dict, description="user -> bcrypt hash")

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt(cls, v: dict[str, str]) -> dict[str, str]:
        for user, hashed in v.items():
            if not user or ":" in user:
                raise ValueError(f"user {user!r}: a user name is not empty and has no ':'")
            if not hashed.startswith(("$2a$", "$2b$", "$2y$")) or len(hashed) != 60:
                raise ValueError(f"user {user!r}: expected a bcrypt hash ($2y$..., 60 characters)")
        return v


def load_web_config(path: Path) -> WebConfig:
    """Read and validate ``path``; relative file names inside are resolved against its directory and must be
    readable. Raises ConfigError naming the key."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the web config: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    config = validate_model(WebConfig, data, source=str(path))
    tls = config.tls_server_config
    if tls is not None:
        base = path.parent
        resolved = {key: str(base / value) for key in ("cert_file", "key_file", "client_ca_file")
                    if (value := getattr(tls, key)) is not None}
        tls = tls.model_copy(update=resolved)
        for key, value in resolved.items():
            if not os.access(value, os.R_OK):
                raise ConfigError(f"tls_server_config.{key}", f"{value} is not a readable file")
        if tls.client_auth_type in {"RequestClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"} \
                and tls.client_ca_file is None:
            raise ConfigError("tls_server_config.client_ca_file", f"{tls.client_auth_type} needs client_ca_file")
        config = config.model_copy(update={"tls_server_config": tls})
        _build_context(tls)  # a key that does not match or a bad PEM is an error now, not at the first client
    return config


def _build_context(tls: TlsServerConfig, into: ssl.SSLContext | None = None) -> ssl.SSLContext:
    ctx = into if into is not None else ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError("tls_server_config.cert_file", f"cannot load {tls.cert_file} with {tls.key_file}: "
                                                         f"{exc}") from exc
    if into is None:  # versions and verification are fixed once a context serves; a change needs a restart
        ctx.minimum_version = _VERSIONS[tls.min_version]
        ctx.maximum_version = _VERSIONS[tls.max_version]
        if tls.client_auth_type != "NoClientCert":
            ctx.verify_mode = ssl.CERT_REQUIRED if tls.client_auth_type == "RequireAndVerifyClientCert" \
                else ssl.CERT_OPTIONAL
            try:
                ctx.load_verify_locations(cafile=tls.client_ca_file)
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError("tls_server_config.client_ca_file",
                                  f"cannot load {tls.client_ca_file}: {exc}") from exc
    return ctx


class BasicAuthUsers:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes; remembers what passed."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self._key = secrets.token_bytes(32)  # the remembered headers are keyed hashes, never the headers
        self._passed: dict[bytes, str] = {}
        self._lock = threading.Lock()

    def check(self, header: str | None) -> str | None:
        """The user name when ``header`` carries a known user and the right password, else None."""
        if not header or header[:6].lower() != "basic ":
            return None
        digest = hmac.new(self._key, header.encode("utf-8", "replace"), hashlib.sha256).digest()
        if (user := self._passed.get(digest)) is not None:
            return user
        try:
            user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        hashed = self.users.get(user)
        if hashed is None:
            bcrypt.checkpw(b"timing", _DUMMY)  # the same cost for a wrong user as for a wrong password
            return None
        if not bcrypt.checkpw(password.encode(), hashed.encode()):
            return None
        self._remember(digest, user)
        return user

    async def user_of(self, header: str | None) -> str | None:
        """:meth:`check` without blocking the event loop on bcrypt (remembered headers answer at once)."""
        if header and header[:6].lower() == "basic ":
            known = self._passed.get(hmac.new(self._key, header.encode("utf-8", "replace"), hashlib.sha256).digest())
            if known is not None:
                return known
        return await asyncio.to_thread(self.check, header)

    def _remember(self, digest: bytes, user: str) -> None:
        with self._lock:
            if len(self._passed) > 1024:
                self._passed.clear()
            self._passed[digest] = user


_DUMMY = bcrypt.hashpw(b"not a password", bcrypt.gensalt(rounds=10))


class WebConfigFile:
    """The web config as a daemon serves it: the TLS context and the users, kept current with the file.

    Create it at start (``load_web_config`` errors stop the daemon there); :meth:`refresh` re-reads the file
    when its modification time or size changed, at most once a second."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.config = load_web_config(path)
        self._stamp = self._stat()
        self._checked = time.monotonic()
        self.users = BasicAuthUsers(dict(self.config.basic_auth_users))
        tls = self.config.tls_server_config
        self.ssl_context: ssl.SSLContext | None = _build_context(tls) if tls is not None else None

    def _stat(self) -> tuple[float, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    @property
    def headers(self) -> dict[str, str]:
        return self.config.http_server_config.headers

    @property
    def auth_required(self) -> bool:
        return bool(self.config.basic_auth_users)

    def refresh(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < _CHECK_EVERY:
            return
        self._checked = now
        stamp = self._stat()
        if not force and stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            new = load_web_config(self.path)
        except ConfigError as exc:
            log.error("web config %s not reloaded, the previous settings stay in force: %s", self.path, exc)
            return
        if (self.ssl_context is None) != (new.tls_server_config is None):
            log.warning("web config %s: turning TLS on or off takes effect after a restart", self.path)
        elif self.ssl_context is not None and new.tls_server_config is not None:
            _build_context(new.tls_server_config, into=self.ssl_context)  # new certificate for new connections
        if new.basic_auth_users != self.config.basic_auth_users:
            self.users = BasicAuthUsers(dict(new.basic_auth_users))
        self.config = new
        log.info("web config %s reloaded", self.path)

    def allowed_sans_ok(self, peer_cert: Mapping[str, Any] | None) -> bool:
        """``client_allowed_sans``: the verified client certificate names one of them (or none are set)."""
        tls = self.config.tls_server_config
        if tls is None or not tls.client_allowed_sans:
            return True
        if not peer_cert:
            return False
        names = {value for kind, value in peer_cert.get("subjectAltName", ()) if kind in {"DNS", "IP Address", "URI",
                                                                                            "email"}}
        return bool(names & set(tls.client_allowed_sans))


def guard(handler: Handler, web: WebConfigFile, *, basic_auth: bool = True) -> Handler:
    """``handler`` behind the web config: the file kept current, ``client_allowed_sans`` enforced, basic
    authentication required when users are configured (``basic_auth=False`` when the application resolves
    users itself, as the renewer does for roles), and ``http_server_config.headers`` on every answer."""

    async def guarded(req: Request) -> Response:
        web.refresh()
        if not web.allowed_sans_ok(req.peer_cert):
            response = Response.error(403, "client certificate not allowed (client_allowed_sans)")
        elif basic_auth and web.auth_required and await web.users.user_of(req.headers.get("authorization")) is None:
            response = Response.error(401, "authentication required")
            response.headers.append(("WWW-Authenticate", 'Basic realm="certloop"'))
        else:
            response = await handler(req)
        response.headers.extend(web.headers.items())
        return response

    return guarded
