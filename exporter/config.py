"""The exporter's configuration file: YAML validated into frozen models.

    global:                       # sweep and probe defaults
      interval: 5m                # how often the endpoint inventory is swept
      files_interval: 1m          # how often file paths are re-listed (unchanged files are not re-read)
      jitter: 30s                 # each sweep starts up to this much later, at random
      concurrency: 64             # TLS probes in flight at once (inventory sweeps)
      connect_timeout: 5s
      handshake_timeout: 5s
      ca_file: /etc/ssl/certs/ca-certificates.crt   # trust bundle; default: the system store
      resolver: [127.0.0.1:53]    # DNS servers (host:port); default: the system resolver
      max_file_bytes: 16777216    # certificate files larger than this are reported as too_large
      files_watch: true           # Linux: skip a file sweep when inotify saw no change (full sweep every 5m)
    modules:                      # named probe settings for /probe?module=NAME (like blackbox modules)
      smtp: {starttls: smtp, ip_protocol: ip4}
    endpoints:
      - targets: [shop.example:443]
        server_name: shop.example # SNI and the name verified; default: the target's host
        module: smtp              # or starttls: smtp
        expect_file: /etc/nginx/certs/shop.pem
        labels: {certificate: shop-prod, team: web}
    files:
      - paths: [/etc/nginx/certs/, "/etc/ssl/private/*.pem"]
        recursive: true
        exclude: ["*.key"]        # include defaults to *.pem *.crt *.cer *.cert *.der *.p12 *.pfx
        password_file: /etc/certloop/p12-password   # or password: ${P12_PASSWORD}
        labels: {team: platform}

:func:`load_config` raises :class:`certloop.errors.ConfigError` naming the bad path, e.g.
``endpoints[0].targets[1]: expected host:port, got 'shop.example'``.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from certloop.config import EMPTY_CONFIG, SECRET, Duration, StrictModel, load_model, resolve_secret, validate_model
from certloop.errors import ConfigError
from certloop.hostnames import server_name
from certloop.resolve import parse_nameserver

__all__ = [
    "DEFAULT_MODULE",
    "RESERVED_LABELS",
    "EndpointGroup",
    "ExporterConfig",
    "FileGroup",
    "GlobalConfig",
    "ModuleConfig",
    "json_schema",
    "load_config",
    "parse_config",
    "split_target",
]

DEFAULT_MODULE = "default"
DEFAULT_INCLUDE = ("*.pem", "*.crt", "*.cer", "*.cert", "*.der", "*.p12", "*.pfx")

# Labels the exporter sets itself (plus Prometheus' target labels): a static label must not shadow them.
RESERVED_LABELS = frozenset({
    "source", "target", "address", "position", "role", "subject", "issuer", "serial", "dns_names",
    "fingerprint_sha256", "key_type", "key_bits", "signature_algorithm", "verdict", "reason", "version",
    "cipher", "expect_file", "kind", "result", "python_version", "job", "instance", "le", "quantile",
})
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_HOST_RE = re.compile(r"^[A-Za-z0-9_*]([A-Za-z0-9_.*-]{0,252})?\.?$")


def split_target(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` into (host, port); raises ValueError with a readable message."""
    value = text.strip()
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"expected host:port or [ipv6]:port, got {text!r}")
        port_text = rest[1:]
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not host or ":" in host:
            raise ValueError(f"expected host:port, got {text!r}")
        if not _HOST_RE.match(host):
            raise ValueError(f"invalid host name {host!r} in {text!r}")
        _check_server_name(host)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"expected a port between 1 and 65535 in {text!r}")
    return host, int(port_text)


def _check_server_name(name: str | None) -> str | None:
    """A name that cannot be sent in TLS (``a..b``, a label over 63 characters) is a config error
    here, not a probe failing with ``bad_server_name`` forever."""
    if name is not None:
        try:
            server_name(name)
        except ValueError as exc:
            raise ValueError(f"not a host name that can be sent in TLS: {exc}") from None
    return name


def _check_target(text: str) -> str:
    split_target(text)
    return text.strip()


def _check_nameserver(text: str) -> str:
    parse_nameserver(text)
    return text.strip()


def _check_label_name(name: str) -> str:
    if not _LABEL_RE.match(name) or name.startswith("__"):
        raise ValueError(f"{name!r} is not a valid Prometheus label name")
    if name in RESERVED_LABELS:
        raise ValueError(f"label {name!r} is set by the exporter itself; choose another name")
    return name


def _check_starttls(name: str | None) -> str | None:
    if name is None:
        return None
    from certloop.starttls import STARTTLS  # the table of negotiators (one module per protocol)

    if name not in STARTTLS:
        raise ValueError(f"unknown STARTTLS protocol {name!r} (known: {', '.join(sorted(STARTTLS))})")
    return name


def _check_positive(value: timedelta) -> timedelta:
    if value.total_seconds() <= 0:
        raise ValueError("must be longer than 0s")
    return value


Target = Annotated[str, AfterValidator(_check_target)]
Nameserver = Annotated[str, AfterValidator(_check_nameserver)]
LabelName = Annotated[str, AfterValidator(_check_label_name)]
StartTLS = Annotated[str | None, AfterValidator(_check_starttls)]
ServerName = Annotated[str | None, AfterValidator(_check_server_name)]
PositiveDuration = Annotated[Duration, AfterValidator(_check_positive)]
Labels = dict[LabelName, str]


class GlobalConfig(StrictModel):
    """Defaults for the whole exporter."""

    interval: PositiveDuration = Field(default=timedelta(minutes=5), description="endpoint sweep interval")
    files_interval: PositiveDuration = Field(default=timedelta(minutes=1), description="file sweep interval")
    jitter: Duration = Field(default=timedelta(seconds=30), description="random delay before each sweep")
    concurrency: int = Field(default=64, ge=1, le=4096, description="TLS probes in flight during sweeps")
    connect_timeout: PositiveDuration = timedelta(seconds=5)
    handshake_timeout: PositiveDuration = timedelta(seconds=5)
    ca_file: str | None = Field(default=None, description="PEM trust bundle; default: the system store")
    resolver: list[Nameserver] = Field(default_factory=list, description="DNS servers host:port; default: system")
    max_file_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, description="larger files are too_large")
    files_watch: bool = Field(default=True, description="skip file sweeps inotify shows nothing could change")


class ModuleConfig(StrictModel):
    """Probe settings chosen by ``/probe?module=NAME`` or an endpoint group's ``module``."""

    starttls: StartTLS = None
    server_name: ServerName = None
    connect_timeout: PositiveDuration | None = None
    handshake_timeout: PositiveDuration | None = None
    ca_file: str | None = None
    ip_protocol: Literal["ip4", "ip6", "both"] = "both"


class EndpointGroup(StrictModel):
    """TLS endpoints probed by the inventory sweep, sharing settings and static labels."""

    targets: list[Target] = Field(min_length=1)
    server_name: ServerName = None
    module: str | None = None
    starttls: StartTLS = None
    expect_file: str | None = None
    labels: Labels = Field(default_factory=dict)


class FileGroup(StrictModel):
    """Certificate files: paths, shell globs or directories (``recursive`` descends into subdirectories)."""

    paths: list[str] = Field(min_length=1)
    recursive: bool = False
    include: list[str] = Field(
        default_factory=lambda: list(DEFAULT_INCLUDE),
        description="file name patterns taken from directories and globs (empty: every file)",
    )
    exclude: list[str] = Field(default_factory=list, description="file name patterns skipped, e.g. *.key")
    password: Annotated[str | None, SECRET] = None
    password_file: str | None = None
    labels: Labels = Field(default_factory=dict)


class ExporterConfig(StrictModel):
    """The whole exporter configuration file."""

    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    modules: dict[str, ModuleConfig] = Field(default_factory=dict)
    endpoints: list[EndpointGroup] = Field(default_factory=list)
    files: list[FileGroup] = Field(default_factory=list)

    def module(self, name: str | None) -> ModuleConfig:
        """The named module; ``None`` or ``default`` gives the configured default or the built-in one."""
        return self.modules.get(name or DEFAULT_MODULE) or _BUILTIN_MODULE

    def file_password(self, index: int) -> bytes | None:
        """The PKCS#12 password of ``files[index]`` (``${ENV}`` or ``password_file`` resolved)."""
        group = self.files[index]
        if group.password is None and group.password_file is None:
            return None
        return resolve_secret(group.password, group.password_file, field=f"files[{index}].password").encode()


_BUILTIN_MODULE = ModuleConfig()


def _check_references(config: ExporterConfig, source: str | None) -> None:
    for i, group in enumerate(config.endpoints):
        if group.module is not None and group.module != DEFAULT_MODULE and group.module not in config.modules:
            known = ", ".join(sorted({DEFAULT_MODULE, *config.modules}))
            raise ConfigError(f"endpoints[{i}].module", f"unknown module {group.module!r} (known: {known})",
                              source=source)
        if group.module is not None and group.starttls is not None:
            raise ConfigError(f"endpoints[{i}].starttls", "give either module or starttls, not both", source=source)
    # An endpoint's series are identified by its `target` label: the same host:port listed twice would
    # yield clashing series (or, with another server_name or labels, silently drop one of them).
    first_seen: dict[tuple[str, int], str] = {}
    for i, group in enumerate(config.endpoints):
        for j, target in enumerate(group.targets):
            host, port = split_target(target)
            key = (host.lower().rstrip("."), port)
            where = f"endpoints[{i}].targets[{j}]"
            if key in first_seen:
                raise ConfigError(
                    where,
                    f"{target} is already listed at {first_seen[key]}; each host:port is probed once, so merge "
                    "the entries (to check another SNI name on the same address, list that name as the target "
                    "host, e.g. other.example:443, and resolve it with global.resolver or DNS)",
                    source=source,
                )
            first_seen[key] = where
    for i in range(len(config.files)):
        config.file_password(i)  # a missing ${ENV} or unreadable password_file is a config error now
    paths = [("global.ca_file", config.global_.ca_file)]
    paths += [(f"modules.{n}.ca_file", m.ca_file) for n, m in config.modules.items()]
    for where, path in paths:
        if path is not None and not os.path.isfile(path):
            raise ConfigError(where, f"CA bundle {path} is not a readable file", source=source)


def _cross_checked(config: ExporterConfig, source: str | None) -> ExporterConfig:
    try:
        _check_references(config, source)
    except ConfigError as exc:
        if exc.source is None:
            raise ConfigError(exc.path, exc.message, source=source) from exc
        raise
    return config


def parse_config(data: Any, *, source: str | None = None) -> ExporterConfig:
    """Validate already-loaded YAML data (a mapping) into an :class:`ExporterConfig`.

    ``None`` (an empty document) is refused: see :func:`load_config`."""
    if data is None:
        raise ConfigError("", EMPTY_CONFIG, source=source)
    return _cross_checked(validate_model(ExporterConfig, data, source=source), source)


def load_config(path: str | os.PathLike[str], *, expand_env: bool = False) -> ExporterConfig:
    """Read, validate and cross-check a config file; raises ConfigError naming the bad path.

    An empty file (or a YAML null document) is an error, not "monitor nothing": ``: > exporter.yml``
    (a truncated deploy, a full disk) followed by a reload must keep the running config and say so.
    A config that monitors nothing on purpose (``/probe``-only use) is written ``{}``.
    ``expand_env``: ``--config.expand-env`` (see :mod:`certloop.config`)."""
    return _cross_checked(load_model(ExporterConfig, path, allow_empty=False, expand=expand_env), os.fspath(Path(path)))


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the config file (``certloop config schema exporter``)."""
    schema = ExporterConfig.model_json_schema(by_alias=True)
    schema["title"] = "certloop exporter configuration"
    return schema
