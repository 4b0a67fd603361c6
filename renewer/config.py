"""The renewer's config file: listen address, auth, storage, worker, scheduler, limits, certificates.

    listen: 127.0.0.1:10794
    auth: {token_file: /etc/certloop/renewer.token}
    data_dir: /var/lib/certloop-renewer
    certificates:
      - id: shop
        domains: [shop.example]
        issuer: {type: acme, directory: https://acme-v02.api.letsencrypt.org/directory, ...}
        outputs: {fullchain: /etc/nginx/tls/shop.pem, key: /etc/nginx/tls/shop.key}
        deploy: [["nginx", "-t"], ["nginx", "-s", "reload"]]

Every knob has a default except ``auth`` and ``certificates``. :func:`load_config` raises
:class:`certloop.errors.ConfigError` naming the bad path; :func:`json_schema` documents the file.
"""

from __future__ import annotations

import hmac
import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from certloop.config import SECRET, Duration, StrictModel, load_model, parse_listen_address, resolve_secret
from certloop.errors import ConfigError
from certloop.renewer.spec import CertificateSpec

__all__ = [
    "DEFAULT_ALERTNAMES",
    "DEFAULT_RATE_LIMITS",
    "LETSENCRYPT_DIRECTORIES",
    "ROLES",
    "AlertsConfig",
    "AuthConfig",
    "DatabaseConfig",
    "KeystoreConfig",
    "RateLimitRule",
    "RenewerConfig",
    "Role",
    "SchedulerConfig",
    "StatusPageConfig",
    "TokenConfig",
    "WorkerConfig",
    "json_schema",
    "load_config",
]

# Alert names (from alerting/) that mean "renew this certificate now". Other alerts are counted and ignored.
DEFAULT_ALERTNAMES = (
    "CertloopCertificateExpiring",
    "CertloopCertificateExpiringSoon",
    "CertloopCertificateExpired",
    "CertloopRenewalOverdue",
)


Role = Literal["viewer", "operator", "admin", "alertmanager"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin", "alertmanager")


class TokenConfig(StrictModel):
    """A named bearer token for a machine (Alertmanager, CI, a script), with one role."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="shown in the audit trail")
    token: str | None = Field(default=None, description="the token, literally or as ${ENV}")
    token_file: Path | None = None
    role: Role

    @model_validator(mode="after")
    def _one_source(self) -> TokenConfig:
        if (self.token is None) == (self.token_file is None):
            raise ValueError("give token or token_file (one of them)")
        return self

    def secret(self, field: str) -> str:
        value = resolve_secret(self.token, self.token_file, field=field)
        if len(value) < 16:
            raise ConfigError(field, "the token must be at least 16 characters")
        return value


class AuthConfig(StrictModel):
    """Who may call the API, and with which role (``viewer`` reads, ``operator`` also renews and retries,
    ``admin`` also reloads, ``alertmanager`` only delivers webhooks).

    Machines use bearer tokens: ``token``/``token_file`` (one token, role ``token_role``, default admin) and/or
    ``tokens`` (named, one role each). People sign in with the users and bcrypt hashes of ``--web.config.file``
    (``basic_auth_users``); ``users`` gives each of them a role. A verified client certificate (mTLS,
    ``client_ca_file`` with ``tls_cert_file``/``tls_key_file``) without a token has ``client_certificate_role``."""

    token: Annotated[str | None, SECRET] = Field(default=None, description="bearer token, literally or as ${ENV}")
    token_file: Path | None = None
    token_role: Role = Field(default="admin", description="role of token/token_file")
    tokens: list[TokenConfig] = Field(default_factory=list, description="named bearer tokens, one role each")
    users: dict[str, Role] = Field(default_factory=dict,
                                   description="role of each person in --web.config.file's basic_auth_users")
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    client_ca_file: Path | None = Field(default=None, description="require client certificates signed by this CA")
    client_certificate_role: Role = Field(default="admin", description="role of a client certificate without token")

    @model_validator(mode="after")
    def _some_auth(self) -> AuthConfig:
        if (self.token is None and self.token_file is None and self.client_ca_file is None and not self.tokens
                and not self.users):
            raise ValueError("set token, token_file, tokens, users or client_ca_file: "
                             "the API never runs unauthenticated")
        if self.token is not None and self.token_file is not None:
            raise ValueError("give token or token_file, not both")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("client_ca_file (mTLS) needs tls_cert_file and tls_key_file")
        names = [t.name for t in self.tokens]
        if len(set(names)) != len(names):
            raise ValueError("token names must be unique")
        return self

    def bearer_token(self) -> str | None:
        """The token, resolved from ``${ENV}`` or its file; ``None`` when only mTLS is configured."""
        if self.token is None and self.token_file is None:
            return None
        secret = resolve_secret(self.token, self.token_file, field="auth.token")
        if len(secret) < 16:
            raise ConfigError("auth.token", "the token must be at least 16 characters")
        return secret

    def bearer_tokens(self) -> list[tuple[str, str, Role]]:
        """Every bearer token as (name, secret, role), secrets resolved now (ConfigError names the field)."""
        out: list[tuple[str, str, Role]] = []
        single = self.bearer_token()
        if single is not None:
            out.append(("token", single, self.token_role))
        out.extend((t.name, t.secret(f"auth.tokens[{i}]"), t.role) for i, t in enumerate(self.tokens))
        return out


def token_matches(expected: str, header: str | None) -> bool:
    """Constant-time check of an ``Authorization: Bearer ...`` header against ``expected``."""
    if not header or header[:7].lower() != "bearer ":
        return False
    return hmac.compare_digest(header[7:].strip().encode(), expected.encode())


class DatabaseConfig(StrictModel):
    """Where jobs live. Default: SQLite in ``data_dir`` (one renewer). PostgreSQL
    (``postgresql+psycopg://...``) or MariaDB/MySQL (``mysql+pymysql://...``) for replicas."""

    url: Annotated[str | None, SECRET] = Field(
        default=None, description="SQLAlchemy URL; ${ENV} allowed; default sqlite in data_dir")
    busy_timeout: Duration = timedelta(seconds=10)
    timeout: Duration = Field(
        default=timedelta(milliseconds=1500),
        description="how long one job-store operation may take, waiting for a store thread included; past it "
        "the database counts as unavailable (webhook 503, /-/ready 503) and the call is aborted",
    )
    auto_migrate: bool = Field(default=True, description="run pending migrations at start-up")

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str | None) -> str | None:
        if v is None or v.startswith("${"):
            return v
        if not v.startswith(("sqlite", "postgresql", "mysql", "mariadb")):
            raise ValueError("expected a sqlite://, postgresql+psycopg:// or mysql+pymysql:// URL")
        return v

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, v: timedelta) -> timedelta:
        if not timedelta(milliseconds=100) <= v <= timedelta(minutes=5):
            raise ValueError("expected a duration between 100ms and 5m")
        return v

    def resolved_url(self, data_dir: Path) -> str:
        if self.url is None:
            return f"sqlite:///{data_dir / 'renewer.db'}"
        return resolve_secret(self.url, None, field="database.url")


class KeystoreConfig(StrictModel):
    """The AES-256-GCM key for private keys at rest: ``key`` (``${ENV}``) or ``key_file``.
    Neither: ``<data_dir>/keystore.key`` is created on first start (back it up)."""

    key: Annotated[str | None, SECRET] = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _one(self) -> KeystoreConfig:
        if self.key is not None and self.key_file is not None:
            raise ValueError("give key or key_file, not both")
        return self


class WorkerConfig(StrictModel):
    concurrency: int = Field(default=2, ge=1, le=64, description="renewals run at the same time per replica")
    lease: Duration = Field(default=timedelta(minutes=2), description="a dead replica's job is resumed after this")
    max_attempts: int = Field(default=5, ge=1, le=100, description="per phase (issuance, deployment)")
    backoff_base: Duration = timedelta(seconds=30)
    backoff_max: Duration = timedelta(hours=1)
    poll_interval: Duration = Field(default=timedelta(seconds=2), description="how often idle workers look")
    issue_timeout: Duration = timedelta(minutes=10)

    @model_validator(mode="after")
    def _order(self) -> WorkerConfig:
        if self.lease < timedelta(seconds=3):
            raise ValueError("lease must be at least 3s")
        if self.backoff_max < self.backoff_base:
            raise ValueError("backoff_max must be at least backoff_base")
        return self


class SchedulerConfig(StrictModel):
    """The safety net: queue certificates inside renew_before even when no alert arrives."""

    enabled: bool = True
    interval: Duration = timedelta(hours=1)

    @field_validator("interval")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v < timedelta(seconds=1):
            raise ValueError("interval must be at least 1s")
        return v


class RateLimitRule(StrictModel):
    """At most ``limit`` events of ``scope`` per ``window`` for issuers of type ``issuer`` (``*``: all)
    whose CA directory starts with one of ``directories`` (unset: every CA).

    Scopes: ``account`` (new orders per issuer account, failed or not), ``name_set`` (certificates
    issued for the exact same set of names), ``name_failures`` (failed authorizations per name)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    issuer: str = "*"
    scope: Literal["account", "name_set", "name_failures"]
    limit: int = Field(ge=1)
    window: Duration
    directories: list[str] | None = Field(
        default=None,
        description="CA directory URL prefixes (or acme.sh server names) the rule applies to; unset: every CA",
    )


# Let's Encrypt's directories, as URLs and as acme.sh's short server names.
LETSENCRYPT_DIRECTORIES = [
    "https://acme-v02.api.letsencrypt.org/",
    "https://acme-staging-v02.api.letsencrypt.org/",
    "letsencrypt",  # acme.sh: letsencrypt, letsencrypt_test
]

# Let's Encrypt's published limits, for Let's Encrypt only (a private CA, pebble or a `command` issuer
# has its own or none); a flood of alerts must never burn a week's quota.
DEFAULT_RATE_LIMITS = (
    RateLimitRule(name="new_orders_per_account", scope="account", limit=300, window=timedelta(hours=3),
                  directories=LETSENCRYPT_DIRECTORIES),
    RateLimitRule(name="certificates_per_name_set", scope="name_set", limit=5, window=timedelta(days=7),
                  directories=LETSENCRYPT_DIRECTORIES),
    RateLimitRule(name="failed_authorizations_per_name", scope="name_failures", limit=5, window=timedelta(hours=1),
                  directories=LETSENCRYPT_DIRECTORIES),
)


class AlertsConfig(StrictModel):
    renew_on: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALERTNAMES),
        description="alertnames that trigger a renewal of the certificate named by the `certificate` label",
    )
    label: str = Field(default="certificate", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class StatusPageConfig(StrictModel):
    """The status page's live look at what each certificate's verify endpoints serve (``renewer.served``).

    A served leaf probed less than ``probe_interval`` ago is shown from memory; older ones are probed
    again when a page or ``/api/v1/certificates`` asks, at most ``probe_concurrency`` endpoints at once,
    each connect and handshake bounded by ``probe_timeout``. A request waits at most ``probe_wait`` for
    those probes and then answers with what it knows (a probe still running says so)."""

    probe_interval: Duration = Field(default=timedelta(seconds=30),
                                     description="how long a probe's answer is shown before probing again")
    probe_timeout: Duration = Field(default=timedelta(seconds=3), description="connect and handshake, each")
    probe_concurrency: int = Field(default=8, ge=1, le=256, description="endpoints probed at the same time")
    probe_wait: Duration = Field(default=timedelta(seconds=2),
                                 description="how long a page waits for probes before showing what it knows")

    @model_validator(mode="after")
    def _bounds(self) -> StatusPageConfig:
        if self.probe_timeout <= timedelta(0) or self.probe_timeout > timedelta(seconds=60):
            raise ValueError("probe_timeout must be between 0s and 60s")
        if self.probe_wait < timedelta(0) or self.probe_wait > timedelta(seconds=30):
            raise ValueError("probe_wait must be between 0s and 30s")
        return self


class RenewerConfig(StrictModel):
    listen: str = Field(default="127.0.0.1:10794", description="host:port (flag --web.listen-address)")
    auth: AuthConfig
    data_dir: Path = Path("/var/lib/certloop-renewer")
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    keystore: KeystoreConfig = Field(default_factory=KeystoreConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    rate_limits: list[RateLimitRule] = Field(default_factory=lambda: list(DEFAULT_RATE_LIMITS))
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    max_body: int = Field(default=1 << 20, ge=1024, description="webhook body limit in bytes (413 beyond)")
    status_page: StatusPageConfig = Field(default_factory=StatusPageConfig)
    certificates: list[CertificateSpec] = Field(default_factory=list)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        parse_listen_address(v)  # its ValueError names what is wrong
        return v

    @field_validator("certificates")
    @classmethod
    def _unique(cls, v: list[CertificateSpec]) -> list[CertificateSpec]:
        seen: set[str] = set()
        for spec in v:
            if spec.id in seen:
                raise ValueError(f"certificate id {spec.id!r} is used twice")
            seen.add(spec.id)
        return v

    @field_validator("rate_limits")
    @classmethod
    def _unique_limits(cls, v: list[RateLimitRule]) -> list[RateLimitRule]:
        names = [(r.issuer, r.name) for r in v]
        if len(set(names)) != len(names):
            raise ValueError("rate limit names must be unique per issuer")
        return v

    @property
    def host(self) -> str:
        return parse_listen_address(self.listen)[0]

    @property
    def port(self) -> int:
        return parse_listen_address(self.listen)[1]

    def spec(self, certificate_id: str) -> CertificateSpec | None:
        for spec in self.certificates:
            if spec.id == certificate_id:
                return spec
        return None

    def database_url(self) -> str:
        return self.database.resolved_url(self.data_dir)


def load_config(path: str | os.PathLike[str], *, expand_env: bool = False) -> RenewerConfig:
    """Load and validate the YAML file at ``path`` (ConfigError names the bad key); ``expand_env``:
    ``--config.expand-env`` (see :mod:`certloop.config`)."""
    config = load_model(RenewerConfig, path, expand=expand_env)
    try:
        config.auth.bearer_tokens()
    except ConfigError as exc:
        raise ConfigError(exc.path, exc.message, source=os.fspath(path)) from exc
    return config


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the renewer config file (``certloop config schema renewer``)."""
    schema = RenewerConfig.model_json_schema(mode="validation")
    schema["title"] = "certloop renewer configuration"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
