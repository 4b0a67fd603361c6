"""What every issuer shares: the material it returns, the context it runs in, the subprocess seam.

An issuer is one function, ``async issue(settings, request, ctx) -> IssuedMaterial``, plus its settings
model (an :class:`IssuerSettingsBase`); ``renewer.issuers.ISSUERS`` maps the ``type`` key to both. The
request (:class:`certloop.renewer.issuance.IssueRequest`) says what to issue: an issuer never sees the
certificate's whole spec (the spec sits above the issuers), and a rule only one issuer has (lego has no
rsa3072) lives in its settings' :meth:`IssuerSettingsBase.check_request`, which the spec calls when the
config loads. Issuers write only below ``ctx.staging`` (fresh per attempt) and ``ctx.home`` (their own
persistent state: accounts, tool config) - never onto live files; installing is the pipeline's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certloop.config import StrictModel
from certloop.renewer.errors import BackendFailed, ChallengeFailed, ConnectionFailed, IssuanceError, RateLimited
from certloop.renewer.issuance import IssueRequest
from certloop.renewer.issuers import leash

if TYPE_CHECKING:
    from certloop.renewer.keystore import Keystore

__all__ = [
    "STDERR_TAIL",
    "Completed",
    "IssueContext",
    "IssuedMaterial",
    "IssuerEntry",
    "IssuerSettingsBase",
    "classify_failure",
    "run_program",
    "split_pem",
]

STDERR_TAIL = 2000  # characters of a failed program's stderr kept in the error
CHALLENGE_TAIL = 1000  # of those, in a ChallengeFailed's detail (the job's last_error holds 2000 in all)


def split_pem(data: bytes) -> list[bytes]:
    """Split concatenated PEM certificates into one PEM block each (other blocks are dropped)."""
    out: list[bytes] = []
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    pos = 0
    while True:
        start = data.find(begin, pos)
        if start < 0:
            return out
        stop = data.find(end, start)
        if stop < 0:
            return out
        out.append(data[start : stop + len(end)] + b"\n")
        pos = stop + len(end)


@dataclass(frozen=True)
class IssuedMaterial:
    """A freshly issued certificate: leaf PEM, intermediates PEM (issuer first) and private key PEM."""

    cert_pem: bytes
    chain_pem: bytes
    key_pem: bytes

    @property
    def fullchain_pem(self) -> bytes:
        return self.cert_pem + self.chain_pem

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the leaf's DER, lowercase hex (what verify compares with the served leaf)."""
        der = x509.load_pem_x509_certificate(self.cert_pem).public_bytes(serialization.Encoding.DER)
        return hashlib.sha256(der).hexdigest()

    @classmethod
    def from_fullchain(cls, fullchain_pem: bytes, key_pem: bytes) -> IssuedMaterial:
        """Split a leaf-first full chain into leaf and intermediates."""
        blocks = split_pem(fullchain_pem)
        if not blocks:
            raise IssuanceError("the issuer produced no certificate")
        return cls(cert_pem=blocks[0], chain_pem=b"".join(blocks[1:]), key_pem=key_pem)

    @classmethod
    def from_files(
        cls, *, key: Path, cert: Path | None = None, chain: Path | None = None, fullchain: Path | None = None
    ) -> IssuedMaterial:
        """Read what a backend wrote; prefers ``fullchain``, else ``cert`` plus optional ``chain``."""
        try:
            key_pem = key.read_bytes()
            if fullchain is not None and fullchain.exists():
                return cls.from_fullchain(fullchain.read_bytes(), key_pem)
            if cert is None:
                raise IssuanceError("the issuer wrote neither a certificate nor a full chain")
            blocks = split_pem(cert.read_bytes())
            chain_blocks = split_pem(chain.read_bytes()) if chain is not None and chain.exists() else []
        except OSError as exc:
            raise IssuanceError(f"cannot read the issued material: {exc.strerror} ({exc.filename})") from exc
        if not blocks:
            raise IssuanceError(f"{cert} holds no certificate")
        # Some tools put the chain into the cert file too; anything after the leaf counts as chain.
        rest = chain_blocks or blocks[1:]
        return cls(cert_pem=blocks[0], chain_pem=b"".join(rest), key_pem=key_pem)


@dataclass(frozen=True)
class IssueContext:
    """Where and how one issuance attempt runs.

    ``staging``: an empty directory for this attempt's output. ``home``: the issuer's persistent
    state for this certificate (accounts, tool config) below the data directory. ``timeout``: the
    whole attempt's budget in seconds.
    """

    staging: Path
    home: Path
    keystore: Keystore
    clock: Callable[[], datetime]
    timeout: float


class IssuerSettingsBase(StrictModel):
    """What every issuer's settings model answers besides its own fields: the hooks through which the
    layers above learn issuer-specific rules without naming an issuer."""

    def check_request(self, request: IssueRequest) -> None:
        """Raise ``ValueError`` (its message names the problem) when this issuer cannot serve ``request``.
        Called while the certificate's config is validated, so a spec this issuer cannot issue is rejected
        when the config loads, not at renewal time. Any request by default."""


S = TypeVar("S", bound=IssuerSettingsBase)


@dataclass(frozen=True)
class IssuerEntry(Generic[S]):
    """One row of ``ISSUERS``: the settings model and the issue function."""

    settings: type[S]
    issue: Callable[[S, IssueRequest, IssueContext], Awaitable[IssuedMaterial]]


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str

    @property
    def stderr_tail(self) -> str:
        return self.stderr[-STDERR_TAIL:]


LEASH = Path(leash.__file__)
# http-01 challenge files must be readable by a web server running as another user, whatever umask the
# renewer runs under (the shipped systemd unit sets 0027): issuers that write them run with this one.
WORLD_READABLE_UMASK = 0o022


async def run_program(
    argv: Sequence[str],
    *,
    time_limit: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    what: str = "program",
    umask: int | None = None,
) -> Completed:
    """Run ``argv`` (no shell) on a leash (:mod:`renewer.issuers.leash`) in its own session and process
    group; kill the whole group on timeout, and the kernel kills it when the renewer dies (kill -9).

    ``umask``: the program's umask (None: the renewer's). The one seam where subprocess errors become
    ours: a program that cannot start or overruns ``time_limit`` raises :class:`BackendFailed` with
    ``returncode`` None.
    """
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    mask = "-" if umask is None else f"{umask:o}"
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", str(LEASH), str(os.getpid()), mask, *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=full_env,
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
        )
    except OSError as exc:
        why = f"cannot start: {exc.strerror}"
        raise BackendFailed(f"{what} {argv[0]!r} {why}", None, str(exc), outcome=why) from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(), time_limit)
    except (TimeoutError, asyncio.CancelledError) as exc:
        _kill_group(proc.pid)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5)
        if isinstance(exc, asyncio.CancelledError):
            raise
        why = f"timed out after {time_limit:g}s"
        raise BackendFailed(f"{what} {argv[0]!r} {why}", None, "", outcome=why) from exc
    assert proc.returncode is not None
    stderr = err.decode(errors="replace")
    if proc.returncode == leash.CANNOT_START and stderr.startswith(leash.CANNOT_START_MARK):
        why = "cannot start: " + stderr.strip().rsplit(": ", 1)[-1]
        raise BackendFailed(f"{what} {argv[0]!r} {why}", None, stderr, outcome=why)
    return Completed(proc.returncode, out.decode(errors="replace"), stderr)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)



_RATE_LIMITED = "urn:ietf:params:acme:error:rateLimited"
_CONNECT_HINTS = ("connection refused", "failed to establish a new connection", "no such host", "timed out")


def classify_failure(tool: str, done: Completed, *, failed_domain: str | None = None) -> IssuanceError:
    """Turn a failed ACME client run into our error tree from what it printed (its exit code is 1 for
    everything). ``failed_domain``: the domain the tool named in a challenge failure, if parsed."""
    text = f"{done.stdout}\n{done.stderr}"
    low = text.lower()
    if _RATE_LIMITED.lower() in low:
        return RateLimited(f"{tool}: the CA rate-limited the request")
    if failed_domain is not None:
        # the tool's own words (the CA's problem document) are what the operator needs: keep the tail
        tail = (done.stderr.strip() or done.stdout.strip())[-CHALLENGE_TAIL:]
        return ChallengeFailed(failed_domain, f"{tool} reported a failed challenge (exit {done.returncode}): {tail}")
    if any(hint in low for hint in _CONNECT_HINTS) and "challenge" not in low:
        return ConnectionFailed(f"{tool}: cannot reach the ACME server: {_last_line(text)}")
    return BackendFailed(f"{tool} exited {done.returncode}: {_last_line(text)}", done.returncode, done.stderr_tail)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"
