"""The built-in ACME issuer (RFC 8555) on certbot's ``acme`` library.

Settings (``issuer: {type: acme, ...}``):

    directory: https://acme-v02.api.letsencrypt.org/directory
    ca_bundle: /etc/ssl/pebble.pem     # trust for the ACME server's own HTTPS (pebble, step-ca)
    email: ops@example.com
    eab: {kid: ..., hmac_key: ${EAB_HMAC}}   # External Account Binding (ZeroSSL, Google)
    http01: {webroot: /var/www/acme}  # or {listen: "0.0.0.0:80"} for a standalone listener
    dns01: {hook: [...], cleanup: [...]}     # exactly one of http01 / dns01
    poll_timeout: 90s

The account (key sealed by the keystore, and its URL) is kept per directory URL and email and reused.
When the CA no longer knows it (``accountDoesNotExist``: a CA reset, a deactivated account, a data dir
restored against another CA), the account is forgotten, a new one registered with a new key, and the
order retried once in the same attempt; a WARNING says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from datetime import UTC, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.errors import DeserializationError
from josepy.jwa import ES256
from josepy.jwk import JWK, JWKEC
from pydantic import Field, model_validator

from certloop.config import SECRET, VERBATIM, Duration, StrictModel, resolve_secret
from certloop.renewer.errors import (
    ChallengeFailed,
    ConnectionFailed,
    DnsError,
    IssuanceError,
    RateLimited,
    Unauthorized,
)
from certloop.renewer.issuance import IssueRequest
from certloop.renewer.issuers.base import IssueContext, IssuerSettingsBase
from certloop.renewer.issuers.challenges import DnsHookSolver, Solver, StandaloneSolver, WebrootSolver
from certloop.renewer.material import IssuedMaterial

__all__ = ["AcmeSettings", "Dns01Hook", "Eab", "Http01", "issue"]

log = logging.getLogger(__name__)

T = TypeVar("T")
USER_AGENT = "certloop-renewer"
POLL_INTERVAL = 0.2  # seconds between polls of an authorization or order (bounded by the deadline)


class Eab(StrictModel):
    """External Account Binding: key id and the base64url HMAC key (``${ENV}`` or ``hmac_key_file``)."""

    kid: str
    hmac_key: Annotated[str | None, SECRET] = None
    hmac_key_file: Path | None = None


class Http01(StrictModel):
    """http-01: write tokens under ``<webroot>/.well-known/acme-challenge/`` or answer on ``listen``."""

    webroot: Path | None = None
    listen: str | None = Field(default=None, description='standalone listener "host:port"')

    @model_validator(mode="after")
    def _one(self) -> Http01:
        if (self.webroot is None) == (self.listen is None):
            raise ValueError("set exactly one of webroot or listen")
        return self


class Dns01Hook(StrictModel):
    """dns-01 through commands (argv, no shell). The record is passed in the environment:
    ``CERTLOOP_DNS_RECORD_NAME`` (``_acme-challenge.<domain>``, no trailing dot), ``CERTLOOP_DNS_RECORD_VALUE``,
    ``CERTLOOP_DOMAIN``. ``hook`` publishes, ``cleanup`` removes."""

    hook: Annotated[list[str], VERBATIM] = Field(min_length=1)
    cleanup: Annotated[list[str] | None, VERBATIM] = None
    timeout: Duration = timedelta(seconds=60)


class AcmeSettings(IssuerSettingsBase):
    type: Literal["acme"]
    directory: str = Field(description="ACME directory URL")
    ca_bundle: Path | None = None
    email: str | None = None
    eab: Eab | None = None
    http01: Http01 | None = None
    dns01: Dns01Hook | None = None
    poll_timeout: Duration = timedelta(seconds=90)

    @model_validator(mode="after")
    def _one_challenge(self) -> AcmeSettings:
        if (self.http01 is None) == (self.dns01 is None):
            raise ValueError("set exactly one of http01 or dns01")
        return self

    def ca_directory(self) -> str:
        return self.directory



# --- keys ------------------------------------------------------------------------------------------


def new_private_key_pem(key_type: str) -> bytes:
    """A fresh certificate key for ``key_type`` (``ec256`` ... ``rsa4096``), PKCS#8 PEM."""
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if key_type == "ec256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif key_type == "ec384":
        key = ec.generate_private_key(ec.SECP384R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# --- the one seam where acme / requests errors become ours ---------------------------------------


class _Network(client.ClientNetwork):
    """Remembers the last response so a rateLimited problem can be paired with its Retry-After."""

    last_response: requests.Response | None = None

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        response: requests.Response = super()._send_request(method, url, *args, **kwargs)
        self.last_response = response
        return response


def _retry_after(net: _Network, now: dt.datetime) -> dt.datetime | None:
    value = net.last_response.headers.get("Retry-After") if net.last_response is not None else None
    if not value:
        return None
    if value.strip().isdigit():
        return now + timedelta(seconds=int(value.strip()))
    with contextlib.suppress(TypeError, ValueError):
        when = parsedate_to_datetime(value)
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    return None


def _problem(err: messages.Error, net: _Network, now: dt.datetime) -> IssuanceError:
    code = err.code or str(err.typ).rsplit(":", 1)[-1]
    detail = f"{code}: {err.detail or err.title or err.description or 'no detail'}"
    if code == "rateLimited":
        return RateLimited(detail, _retry_after(net, now))
    if code in ("unauthorized", "externalAccountRequired", "accountDoesNotExist", "badPublicKey"):
        return Unauthorized(detail)
    if code == "dns":
        return DnsError(detail)
    if code == "connection":
        return ConnectionFailed(detail)
    return IssuanceError(detail)


def _translate(exc: BaseException, net: _Network, now: dt.datetime) -> IssuanceError:
    if isinstance(exc, IssuanceError):
        return exc
    if isinstance(exc, messages.Error):
        return _problem(exc, net, now)
    if isinstance(exc, errors.ValidationError):
        for authzr in exc.failed_authzrs:
            for challb in authzr.body.challenges:
                if challb.error is not None:
                    err = challb.error
                    code = err.code or str(err.typ)
                    return ChallengeFailed(authzr.body.identifier.value, f"{code}: {err.detail}")
        return ChallengeFailed("?", str(exc))
    if isinstance(exc, errors.IssuanceError):
        return _problem(exc.error, net, now)
    if isinstance(exc, errors.TimeoutError):
        return IssuanceError("the ACME server did not finish the order before the deadline")
    if isinstance(exc, requests.exceptions.SSLError):
        return ConnectionFailed(f"TLS to the ACME server failed (check ca_bundle): {exc}")
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return ConnectionFailed(f"cannot reach the ACME server: {exc}")
    if isinstance(exc, errors.Error | requests.RequestException | DeserializationError):
        return IssuanceError(f"ACME client error: {type(exc).__name__}: {exc}")
    raise exc


# --- the flow --------------------------------------------------------------------------------------


class _Flow:
    """One issuance: account, order, challenges, finalization. Blocking acme calls run in a thread."""

    def __init__(self, settings: AcmeSettings, request: IssueRequest, ctx: IssueContext) -> None:
        self.settings = settings
        self.request = request
        self.ctx = ctx
        verify: bool | str = str(settings.ca_bundle) if settings.ca_bundle else True
        self.account_key = self._account_key()
        self.net = _Network(
            self.account_key,
            alg=ES256,
            verify_ssl=verify,  # type: ignore[arg-type]  # passed to requests, which takes a CA bundle path
            user_agent=USER_AGENT,
            timeout=30,
        )
        self.acme: client.ClientV2 | None = None

    # account material lives next to every certificate's home, keyed by directory URL and email
    @property
    def _account_dir(self) -> Path:
        tag = hashlib.sha256(f"{self.settings.directory}\0{self.settings.email or ''}".encode()).hexdigest()
        return self.ctx.home.parent.parent / "acme-accounts" / tag[:24]  # beside every issuer home, not in one

    def _account_key(self) -> JWK:
        path = self._account_dir / "account-key.sealed"
        aad = f"acme-account:{self._account_dir.name}"
        if path.exists():
            pem = self.ctx.keystore.read(path, certificate_id=aad, purpose="acme-account-key")
            return JWKEC.load(pem)
        pem = new_private_key_pem("ec256")
        self.ctx.keystore.write(path, pem, certificate_id=aad, purpose="acme-account-key")
        return JWKEC.load(pem)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    async def connect(self) -> client.ClientV2:
        directory = await self.call(client.ClientV2.get_directory, self.settings.directory, self.net)
        self.acme = client.ClientV2(directory, self.net)
        regr_path = self._account_dir / "registration.json"
        if regr_path.exists():
            uri = json.loads(regr_path.read_text())["uri"]
            self.net.account = messages.RegistrationResource(uri=uri, body=messages.Registration())
            return self.acme
        eab = None
        if self.settings.eab is not None:
            eab_cfg = self.settings.eab
            hmac = resolve_secret(eab_cfg.hmac_key, eab_cfg.hmac_key_file, field="issuer.eab.hmac_key")
            eab = messages.ExternalAccountBinding.from_data(
                account_public_key=self.account_key.public_key(),
                kid=self.settings.eab.kid,
                hmac_key=hmac,
                directory=directory,
            )
        reg = messages.NewRegistration.from_data(
            email=self.settings.email, terms_of_service_agreed=True, external_account_binding=eab
        )
        try:
            regr = await self.call(self.acme.new_account, reg)
        except errors.ConflictError as exc:
            # The key is registered already: another renewal of this account registered it a moment ago, or
            # registration.json was lost. The server's answer names the account (Location); asking again with
            # onlyReturnExisting would only raise the same conflict.
            regr = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
            self.net.account = regr
        regr_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # only the account URL is needed to sign as this account (the body may echo EAB, unserialisable)
        regr_path.write_text(json.dumps({"uri": regr.uri, "directory": self.settings.directory}))
        return self.acme

    def forget_account(self) -> str:
        """Delete the stored account (key and URL); returns the account URL that was forgotten."""
        uri = self.net.account.uri if self.net.account is not None else "?"
        shutil.rmtree(self._account_dir, ignore_errors=True)
        return str(uri)

    def solver(self) -> Solver:
        s = self.settings
        if s.dns01 is not None:
            return DnsHookSolver(s.dns01.hook, s.dns01.cleanup, s.dns01.timeout.total_seconds())
        assert s.http01 is not None
        if s.http01.webroot is not None:
            return WebrootSolver(s.http01.webroot)
        assert s.http01.listen is not None
        return StandaloneSolver(s.http01.listen)

    async def run(self) -> IssuedMaterial:
        acme = await self.connect()
        key_pem = new_private_key_pem(self.request.key_type)
        csr = crypto_util.make_csr(key_pem, list(self.request.domains))
        order = await self.call(acme.new_order, csr)
        solver = self.solver()
        wanted = challenges.DNS01 if solver.kind == "dns-01" else challenges.HTTP01
        async with contextlib.AsyncExitStack() as stack:
            for authzr in order.authorizations:
                if authzr.body.status == messages.STATUS_VALID:
                    continue  # reused authorization
                domain = authzr.body.identifier.value
                if authzr.body.wildcard:
                    domain = f"*.{domain}"
                challb = next((c for c in authzr.body.challenges if isinstance(c.chall, wanted)), None)
                if challb is None:
                    raise ChallengeFailed(domain, f"the CA offers no {solver.kind} challenge")
                response, validation = challb.response_and_validation(self.account_key)
                token = challb.chall.encode("token")
                await stack.enter_async_context(solver.present(domain, token, validation))
                await self.call(acme.answer_challenge, challb, response)
            budget = min(self.settings.poll_timeout.total_seconds(), self.ctx.timeout)
            deadline = time.monotonic() + budget
            order = await self.wait_authorizations(acme, order, deadline)
        pem = await self.finalize(acme, order, deadline)
        return IssuedMaterial.from_fullchain(pem.encode(), key_pem)

    def _post_as_get(self, acme: client.ClientV2, url: str) -> requests.Response:
        response: requests.Response = self.net.post(url, None, new_nonce_url=acme.directory["newNonce"])
        return response

    async def wait_authorizations(
        self, acme: client.ClientV2, order: messages.OrderResource, deadline: float
    ) -> messages.OrderResource:
        """Poll each authorization every POLL_INTERVAL until it leaves ``pending`` (bounded by deadline)."""
        done = []
        for authzr in order.authorizations:
            while authzr.body.status in (messages.STATUS_PENDING, messages.STATUS_PROCESSING):
                if time.monotonic() >= deadline:
                    raise IssuanceError("the ACME server did not validate the challenges before the deadline")
                authzr, _ = await self.call(acme.poll, authzr)
                if authzr.body.status == messages.STATUS_PENDING:
                    await asyncio.sleep(POLL_INTERVAL)
            done.append(authzr)
        failed = [a for a in done if a.body.status != messages.STATUS_VALID]
        if failed:
            raise errors.ValidationError(failed)
        updated: messages.OrderResource = order.update(authorizations=done)
        return updated

    async def finalize(self, acme: client.ClientV2, order: messages.OrderResource, deadline: float) -> str:
        """Send the CSR, poll the order until ``valid``, download the full chain."""
        await self.call(acme.begin_finalization, order)
        while True:
            response = await self.call(self._post_as_get, acme, order.uri)
            body = messages.Order.from_json(response.json())
            if body.status == messages.STATUS_INVALID:
                if body.error is not None:
                    raise errors.IssuanceError(body.error)
                raise IssuanceError("the ACME server marked the order invalid without a reason")
            if body.status == messages.STATUS_VALID and body.certificate is not None:
                chain: requests.Response = await self.call(self._post_as_get, acme, body.certificate)
                return chain.text
            if time.monotonic() >= deadline:
                raise IssuanceError("the ACME server did not issue the certificate before the deadline")
            await asyncio.sleep(POLL_INTERVAL)

def _account_unknown(exc: BaseException) -> bool:
    return isinstance(exc, messages.Error) and (exc.code == "accountDoesNotExist")


async def issue(settings: AcmeSettings, request: IssueRequest, ctx: IssueContext) -> IssuedMaterial:
    """Issue a certificate for ``request.domains`` from ``settings.directory`` (see the module doc)."""
    flow = _Flow(settings, request, ctx)

    async def run() -> IssuedMaterial:
        nonlocal flow
        try:
            return await flow.run()
        except Exception as exc:
            if not _account_unknown(exc):
                raise
            forgotten = flow.forget_account()
            log.warning("ACME account %s is unknown to %s (accountDoesNotExist): registering a new account "
                        "and retrying the order once", forgotten, settings.directory)
            flow = _Flow(settings, request, ctx)
            return await flow.run()

    try:
        return await asyncio.wait_for(run(), ctx.timeout)
    except TimeoutError as exc:
        raise IssuanceError(f"issuance did not finish within {ctx.timeout:g}s") from exc
    except Exception as exc:
        raise _translate(exc, flow.net, ctx.clock()) from exc
