"""A managed certificate: what to request, from whom, where to put it, how to prove it is served.

    certificates:
      - id: shop                       # the `certificate` label value alerts carry
        domains: [shop.example, www.shop.example]
        key_type: ec256                # ec256 | ec384 | rsa2048 | rsa3072 | rsa4096
        issuer: {type: acme, directory: https://..., http01: {webroot: /var/www/acme}}
        outputs: {fullchain: /etc/nginx/tls/shop.pem, key: /etc/nginx/tls/shop.key}
        deploy: [["nginx", "-t"], ["nginx", "-s", "reload"]]
        verify: {endpoints: [{endpoint: "127.0.0.1:443", server_name: shop.example}], timeout: 30s}
        renew_before: 1/3              # or a duration such as 30d
        min_lifetime: 1d

The pure helpers :func:`renewal_due_at` and :func:`should_renew` decide when to renew.

The spec sits above the issuers: ``issuer:`` is their settings union, and what an issuer is given is
:attr:`CertificateSpec.issue_request`, never the spec. A rule that only one issuer has is that
issuer's (its settings' ``check_request``), run here when the config loads; this module names no issuer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Protocol

from pydantic import BeforeValidator, Field, field_validator, model_validator

from certloop.config import VERBATIM, Duration, StrictModel, parse_duration
from certloop.renewer.issuance import IssueRequest, KeyType
from certloop.renewer.issuers import IssuerSettings

__all__ = [
    "CERTIFICATE_ID_PATTERN",
    "CertificateSpec",
    "DeployStep",
    "Outputs",
    "RenewBefore",
    "VerifyEndpoint",
    "VerifySettings",
    "parse_renew_before",
    "renewal_due_at",
    "should_renew",
]

CERTIFICATE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")  # fullmatch: `$` would pass a trailing newline
_ENDPOINT = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})")


def _check_domain(name: str) -> str:
    name = name.strip().lower().rstrip(".")
    labels = name.split(".")
    if labels and labels[0] == "*":
        labels = labels[1:]
    if len(name) > 253 or len(labels) < 1 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{name!r} is not a DNS name (a wildcard may only be the whole leftmost label)")
    return name


def _mode(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a file mode like 0644")
    if isinstance(value, int):
        mode = value
    elif isinstance(value, str) and re.fullmatch(r"0?o?[0-7]{3,4}", value.strip()):
        mode = int(value.strip().replace("o", ""), 8)
    else:
        raise ValueError(f"expected a file mode like 0644, got {value!r}")
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"file mode out of range: {value!r}")
    return mode


FileMode = Annotated[int, BeforeValidator(_mode)]


@dataclass(frozen=True)
class RenewBefore:
    """Either a fixed window before expiry (``window``) or a fraction of the lifetime (``fraction``)."""

    window: timedelta | None = None
    fraction: Fraction | None = None

    def before_expiry(self, lifetime: timedelta) -> timedelta:
        if self.window is not None:
            return self.window
        assert self.fraction is not None
        return lifetime * float(self.fraction)


def parse_renew_before(text: str) -> RenewBefore:
    """``"1/3"`` (fraction of the lifetime, 0 < f < 1) or a duration such as ``"30d"``."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if m:
        num, den = int(m.group(1)), int(m.group(2))
        if den == 0 or not 0 < num < den:
            raise ValueError(f"renew_before fraction must be between 0 and 1 exclusive, got {text!r}")
        return RenewBefore(fraction=Fraction(num, den))
    try:
        window = parse_duration(text)
    except ValueError:
        raise ValueError(f'expected a duration like "30d" or a fraction like "1/3", got {text!r}') from None
    if window <= timedelta(0):
        raise ValueError("renew_before must be positive")
    return RenewBefore(window=window)


def _renew_before(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f'expected a duration like "30d" or a fraction like "1/3", got {value!r}')
    parse_renew_before(value)
    return value.strip()


class Outputs(StrictModel):
    """Where the certificate goes. ``key`` and at least one of ``cert`` / ``fullchain`` are required."""

    cert: Path | None = None
    key: Path
    fullchain: Path | None = None
    chain: Path | None = None
    owner: str | None = None
    group: str | None = None
    mode: FileMode = 0o644
    key_mode: FileMode = 0o600

    @model_validator(mode="after")
    def _paths(self) -> Outputs:
        if self.cert is None and self.fullchain is None:
            raise ValueError("set cert or fullchain (or both)")
        paths = [p for p in (self.cert, self.key, self.fullchain, self.chain) if p is not None]
        if len({str(p) for p in paths}) != len(paths):
            raise ValueError("output paths must be distinct")
        for p in paths:
            if not p.is_absolute():
                raise ValueError(f"output path {str(p)!r} must be absolute")
        if self.key_mode & 0o007:
            raise ValueError("key_mode must not make the private key world-readable")
        return self

    def files(self) -> dict[str, Path]:
        """Role -> live path, for the roles configured (key first)."""
        out: dict[str, Path] = {"key": self.key}
        for role in ("cert", "fullchain", "chain"):
            p = getattr(self, role)
            if p is not None:
                out[role] = p
        return out


def _deploy_step(value: Any) -> Any:
    if isinstance(value, list):
        return {"argv": value}
    return value


class DeployStep(StrictModel):
    """One command, as an argv list (never a shell string). Written ``["nginx", "-t"]`` or
    ``{argv: [...], timeout: 30s}``."""

    argv: Annotated[list[str], VERBATIM] = Field(min_length=1)
    timeout: Duration = timedelta(seconds=60)


class VerifyEndpoint(StrictModel):
    endpoint: str = Field(description='"host:port" to probe')
    server_name: str | None = None

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        m = _ENDPOINT.fullmatch(v)
        if not m or not 0 < int(m.group("port")) < 65536:
            raise ValueError(f'expected "host:port", got {v!r}')
        return v

    @property
    def host(self) -> str:
        return self.endpoint.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])


def _verify(value: Any) -> Any:
    if isinstance(value, list):
        return {"endpoints": value}
    return value


class VerifySettings(StrictModel):
    """Endpoints that must serve the new leaf (by SHA-256 fingerprint) within ``timeout``."""

    endpoints: list[VerifyEndpoint] = Field(default_factory=list)
    timeout: Duration = timedelta(seconds=30)


class CertificateSpec(StrictModel):
    id: str = Field(pattern=CERTIFICATE_ID_PATTERN, description="the `certificate` label value")
    domains: list[str] = Field(min_length=1)
    key_type: KeyType = "ec256"
    issuer: IssuerSettings
    outputs: Outputs
    deploy: list[Annotated[DeployStep, BeforeValidator(_deploy_step)]] = Field(default_factory=list)
    verify: Annotated[VerifySettings, BeforeValidator(_verify)] = Field(default_factory=VerifySettings)
    renew_before: Annotated[str, BeforeValidator(_renew_before)] = Field(
        default="1/3", description='a duration like "30d" or a fraction of the lifetime like "1/3"'
    )
    min_lifetime: Duration = timedelta(days=1)
    trust_bundle: Path | None = None

    @field_validator("domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        names = [_check_domain(d) for d in v]
        if len(set(names)) != len(names):
            raise ValueError("domains must be distinct")
        return names

    @model_validator(mode="after")
    def _issuer_fits(self) -> CertificateSpec:
        self.issuer.check_request(self.issue_request)  # the issuer's own rules (lego: no rsa3072)
        return self

    @property
    def issue_request(self) -> IssueRequest:
        """What the issuer is asked for (it never sees the spec itself)."""
        return IssueRequest(
            certificate_id=self.id,
            domains=tuple(self.domains),
            key_type=self.key_type,
            outputs=tuple(self.outputs.files().values()),
        )

    @property
    def renew_policy(self) -> RenewBefore:
        return parse_renew_before(self.renew_before)


class _Validity(Protocol):
    @property
    def not_before(self) -> datetime: ...
    @property
    def not_after(self) -> datetime: ...


def renewal_due_at(spec: CertificateSpec, not_before: datetime, not_after: datetime) -> datetime:
    """The instant the certificate enters its renewal window (aware UTC in, aware UTC out)."""
    lifetime = max(not_after - not_before, timedelta(0))
    return not_after - spec.renew_policy.before_expiry(lifetime)


def should_renew(spec: CertificateSpec, facts: _Validity | None, now: datetime) -> bool:
    """True when there is no installed certificate (``facts`` None) or ``now`` is inside the window.

    ``facts`` is anything with ``not_before``/``not_after`` (``certloop.facts.CertFacts``).
    """
    if facts is None:
        return True
    return now >= renewal_due_at(spec, facts.not_before, facts.not_after)
