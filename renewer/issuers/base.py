"""What every issuer shares: the context it runs in, its settings' base, how a failed ACME client reads.

An issuer is one function, ``async issue(settings, request, ctx) -> IssuedMaterial``, plus its settings
model (an :class:`IssuerSettingsBase`); ``renewer.issuers.ISSUERS`` maps the ``type`` key to both. The
request (:class:`certloop.renewer.issuance.IssueRequest`) says what to issue: an issuer never sees the
certificate's whole spec (the spec sits above the issuers), and a rule only one issuer has (lego has no
rsa3072) lives in its settings' :meth:`IssuerSettingsBase.check_request`, which the spec calls when the
config loads. Issuers write only below ``ctx.staging`` (fresh per attempt) and ``ctx.home`` (their own
persistent state: accounts, tool config) - never onto live files; installing is the pipeline's job.
What they return (:mod:`certloop.renewer.material`) and how they run a program
(:mod:`certloop.renewer.programs`) are the pipeline's vocabulary too, so they live below the issuers.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from certloop.config import StrictModel
from certloop.renewer.errors import BackendFailed, ChallengeFailed, ConnectionFailed, IssuanceError, RateLimited
from certloop.renewer.issuance import IssueRequest
from certloop.renewer.material import IssuedMaterial
from certloop.renewer.programs import Completed

if TYPE_CHECKING:
    from certloop.renewer.keystore import Keystore

__all__ = [
    "CHALLENGE_TAIL",
    "WORLD_READABLE_UMASK",
    "IssueContext",
    "IssuerEntry",
    "IssuerSettingsBase",
    "classify_failure",
]

# characters of a failed tool's output in a ChallengeFailed's detail (the job's last_error holds 2000 in all)
CHALLENGE_TAIL = 1000


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

    @abstractmethod
    def ca_directory(self) -> str:
        """The CA this issuer orders from, as its directory URL (or the tool's own name for a CA, such as
        acme.sh's ``letsencrypt``); "" when certloop cannot know it (the CA is another program's choice).
        The rate-limit ledger keys accounts by it and a rule's ``directories`` match it. Abstract: every
        issuer says it, so a new ACME issuer cannot fall outside the limits by omission."""

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


# http-01 challenge files must be readable by a web server running as another user, whatever umask the
# renewer runs under (the shipped systemd unit sets 0027): issuers that write them run with this one.
WORLD_READABLE_UMASK = 0o022


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
