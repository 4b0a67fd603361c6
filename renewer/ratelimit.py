"""The per-issuer rate-limit ledger, as pure functions over recorded events and an injected ``now``.

What is counted follows what Let's Encrypt counts: every new order records an ``account`` event (key:
the issuer account) - LE's new-orders limit counts orders, failed or not; every *issued* certificate
records a ``name_set`` event (key: the sorted names) - LE's duplicate-certificate limit counts
certificates, so failed attempts never use it up; every failed challenge records a ``name_failures``
event per name (LE's failed-validation limit). Before issuing, :func:`check` counts the events inside
each applicable rule's window: at the limit, the job waits until the oldest counted event leaves the
window. A flood of alerts therefore never burns a week's quota.

A rule applies to a request when its ``issuer`` is ``*`` or the request's issuer type, and - when the
rule names ``directories`` - the request's CA directory starts with one of them: Let's Encrypt's
limits are Let's Encrypt's, not a private CA's, pebble's or a ``command``'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from certloop.config import format_duration
from certloop.renewer.records import LedgerEvent
from certloop.renewer.spec import CertificateSpec

__all__ = [
    "Decision",
    "LedgerRequest",
    "Rule",
    "check",
    "failure_events",
    "headroom",
    "issued_events",
    "ledger_request",
    "order_events",
]


class Rule(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def issuer(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def limit(self) -> int: ...
    @property
    def window(self) -> timedelta: ...
    @property
    def directories(self) -> Sequence[str] | None: ...


@dataclass(frozen=True)
class LedgerRequest:
    """What is about to be ordered: ``issuer_type`` (matches rules), ``account`` (ledger key), ``names``,
    and ``directory``: the CA's directory URL (or acme.sh server name), "" when the issuer has none."""

    issuer_type: str
    account: str
    names: tuple[str, ...]
    directory: str = ""

    def keys(self, scope: str) -> list[str]:
        if scope == "account":
            return [""]
        if scope == "name_set":
            return [",".join(sorted(self.names))]
        return list(self.names)


def ledger_request(spec: CertificateSpec) -> LedgerRequest:
    """The rate-limit ledger identity of ``spec``'s issuer: its type plus the CA its settings name
    (``ca_directory()``, which every issuer's settings must say). The worker checks and records with it,
    the API reports headroom with it: one identity for both."""
    directory = spec.issuer.ca_directory()
    return LedgerRequest(spec.issuer.type, f"{spec.issuer.type} {directory}".strip(), tuple(spec.domains),
                         directory=directory)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str | None = None
    retry_at: datetime | None = None
    detail: str = ""


def _applies(rule: Rule, request: LedgerRequest) -> bool:
    if rule.issuer not in ("*", request.issuer_type):
        return False
    return rule.directories is None or any(request.directory.startswith(d) for d in rule.directories)


def _window_events(
    events: Iterable[LedgerEvent], account: str, scope: str, key: str, since: datetime,
) -> list[datetime]:
    return sorted(e.at for e in events if e.issuer == account and e.scope == scope and e.key == key and e.at > since)


def check(rules: Sequence[Rule], events: Sequence[LedgerEvent], request: LedgerRequest, now: datetime) -> Decision:
    """Allow the order, or deny with the rule that blocks it and when it frees up."""
    worst: Decision | None = None
    for rule in rules:
        if not _applies(rule, request):
            continue
        for key in request.keys(rule.scope):
            seen = _window_events(events, request.account, rule.scope, key, now - rule.window)
            if len(seen) >= rule.limit:
                retry_at = seen[len(seen) - rule.limit] + rule.window
                if worst is None or (worst.retry_at is not None and retry_at > worst.retry_at):
                    what = f" for {key}" if key else ""
                    worst = Decision(False, rule.name, retry_at,
                                     f"rate limit {rule.name}{what}: {len(seen)}/{rule.limit} per "
                                     f"{format_duration(rule.window)}")
    return worst or Decision(True)


def order_events(request: LedgerRequest, now: datetime, job_id: int | None) -> list[LedgerEvent]:
    """Ledger events for one new order (whatever its outcome)."""
    return [LedgerEvent(request.account, "account", "", now, job_id)]


def issued_events(request: LedgerRequest, now: datetime, job_id: int | None) -> list[LedgerEvent]:
    """Ledger events for one issued certificate."""
    return [LedgerEvent(request.account, "name_set", request.keys("name_set")[0], now, job_id)]


def failure_events(
    request: LedgerRequest, names: Iterable[str], now: datetime, job_id: int | None,
) -> list[LedgerEvent]:
    """Ledger events for failed authorizations of ``names``."""
    return [LedgerEvent(request.account, "name_failures", n, now, job_id) for n in names]


def headroom(
    rules: Sequence[Rule], events: Sequence[LedgerEvent], requests: Iterable[LedgerRequest], now: datetime,
) -> dict[tuple[str, str], int]:
    """(issuer_type, rule name) -> the smallest remaining count over the given requests' keys."""
    out: dict[tuple[str, str], int] = {}
    for request in requests:
        for rule in rules:
            if not _applies(rule, request):
                continue
            for key in request.keys(rule.scope):
                seen = _window_events(events, request.account, rule.scope, key, now - rule.window)
                left = max(rule.limit - len(seen), 0)
                slot = (request.issuer_type, rule.name)
                out[slot] = min(out.get(slot, left), left)
    return out
