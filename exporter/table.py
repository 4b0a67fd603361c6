"""What ``certloop check`` reports: one row per certificate seen, its status, and two renderings.

Pure: the status of a row is :func:`decide` over the verdict, the earliest expiry, the thresholds
and an injected clock; rendering is text in, text out (colour only when asked for).

    status, reason = decide(Verdict.OK, expiry, now=now, thresholds=Thresholds(warn, crit))
    print(render_table(rows, now=now, colour=False))
    print(render_json(rows, now=now))
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from certloop.exitcodes import CheckExit
from certloop.verify import Verdict

__all__ = ["EXIT_CODES", "Row", "Status", "Thresholds", "decide", "exit_code", "render_json", "render_table"]


class Status(StrEnum):
    """A row's status, worst last."""

    OK = "OK"
    WARN = "WARN"
    CRIT = "CRIT"
    EXPIRED = "EXPIRED"
    INVALID = "INVALID"
    UNREACHABLE = "UNREACHABLE"


EXIT_CODES: dict[Status, CheckExit] = {
    Status.OK: CheckExit.OK,
    Status.WARN: CheckExit.WARN,
    Status.CRIT: CheckExit.CRIT,
    Status.EXPIRED: CheckExit.CRIT,
    Status.INVALID: CheckExit.CRIT,
    Status.UNREACHABLE: CheckExit.CRIT,
}


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Time left at or below which a certificate is WARN / CRIT."""

    warn: timedelta
    crit: timedelta


@dataclass(frozen=True, slots=True)
class Row:
    """One certificate (or one failure) as reported. ``not_after`` is the earliest expiry the client
    depends on (leaf and intermediates); ``leaf_not_after`` the leaf's own."""

    target: str
    kind: str  # endpoint | file
    status: Status
    reason: str | None = None
    address: str | None = None
    server_name: str | None = None
    position: int = 0
    subject: str | None = None
    issuer: str | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None
    leaf_not_after: datetime | None = None
    verdict: Verdict | None = None
    fingerprint_sha256: str | None = None
    tls_version: str | None = None


def decide(
    verdict: Verdict | None,
    expiry: datetime | None,
    *,
    now: datetime,
    thresholds: Thresholds,
    failure: str | None = None,
    unreachable: bool = True,
    kind: str = "endpoint",
    weak: bool = False,
) -> tuple[Status, str | None]:
    """The status and its reason: the alert rules' policy (alerting/), per ``kind`` of target.

    A failure (``failure`` set) is UNREACHABLE (or INVALID when ``unreachable`` is false, e.g. a file
    that holds no certificate). An expired leaf or intermediate is EXPIRED; not_yet_valid is INVALID.
    An endpoint's other verdicts but ok are INVALID with the verdict as reason, as
    CertloopCertificateVerificationFailing and CertloopCertificateHostnameMismatch alert on them. A
    file's are not alerted on (a leaf-only ``cert.pem``, a self-signed or internal-CA file is judged
    by its dates), so a ``kind="file"`` row with such a verdict takes its status from the time left
    and keeps the verdict as its reason, so the user still sees it. An ok chain is CRIT / WARN / OK
    by the time left until ``expiry``, inclusive thresholds (exactly 7 days left with ``--crit 7d``
    is CRIT). A chain with weak crypto (``weak``: a certificate of it is, per
    CertloopCertificateWeakCrypto, whose severity is warning) is at least WARN, reason ``weak_crypto``.
    """
    if failure is not None:
        return (Status.UNREACHABLE if unreachable else Status.INVALID), failure
    if verdict in {Verdict.EXPIRED, Verdict.INTERMEDIATE_EXPIRED}:
        return Status.EXPIRED, str(verdict)
    note = None if verdict is Verdict.OK else str(verdict or Verdict.INVALID)
    by_dates = verdict is Verdict.OK or (kind == "file" and verdict not in {None, Verdict.NOT_YET_VALID})
    if not by_dates or expiry is None:
        return Status.INVALID, note or str(Verdict.INVALID)
    left = expiry - now
    if left <= timedelta(0):
        return Status.EXPIRED, str(Verdict.EXPIRED)
    if left <= thresholds.crit:
        return Status.CRIT, note
    if left <= thresholds.warn or weak:
        return Status.WARN, note or ("weak_crypto" if weak else None)
    return Status.OK, note


def exit_code(rows: Sequence[Row]) -> CheckExit:
    """0 when every row is OK, 1 when the worst is WARN, 2 for anything worse (:class:`CheckExit`)."""
    return max((EXIT_CODES[r.status] for r in rows), default=CheckExit.OK)


def days_left(row: Row, now: datetime) -> float | None:
    if row.not_after is None:
        return None
    return round((row.not_after - now).total_seconds() / 86400, 2)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def render_json(rows: Sequence[Row], *, now: datetime) -> str:
    """A stable JSON document: ``checked_at``, ``exit_code``, ``summary`` (counts) and ``results``."""
    results = [
        {
            "target": r.target,
            "kind": r.kind,
            "address": r.address,
            "server_name": r.server_name,
            "position": r.position,
            "subject": r.subject,
            "issuer": r.issuer,
            "not_before": _iso(r.not_before),
            "not_after": _iso(r.not_after),
            "leaf_not_after": _iso(r.leaf_not_after),
            "days_left": days_left(r, now),
            "status": str(r.status),
            "reason": r.reason,
            "verdict": str(r.verdict) if r.verdict is not None else None,
            "fingerprint_sha256": r.fingerprint_sha256,
            "tls_version": r.tls_version,
        }
        for r in rows
    ]
    summary = {str(s): sum(1 for r in rows if r.status is s) for s in Status}
    doc = {"checked_at": _iso(now), "exit_code": exit_code(rows), "summary": summary, "results": results}
    return json.dumps(doc, indent=2, sort_keys=True)


_COLOURS = {
    Status.OK: "\x1b[32m",
    Status.WARN: "\x1b[33m",
    Status.CRIT: "\x1b[1;31m",
    Status.EXPIRED: "\x1b[1;31m",
    Status.INVALID: "\x1b[31m",
    Status.UNREACHABLE: "\x1b[35m",
}
_RESET = "\x1b[0m"
_CN_RE = re.compile(r"(?:^|,)CN=((?:\\.|[^,])*)")
_HEADERS = ("TARGET", "ADDRESS", "SUBJECT", "ISSUER", "NOT AFTER", "DAYS", "STATUS")


def _short_name(rfc4514: str | None, width: int = 40) -> str:
    if not rfc4514:
        return "-"
    m = _CN_RE.search(rfc4514)
    text = m.group(1).replace("\\", "") if m else rfc4514
    return text if len(text) <= width else text[: width - 1] + "…"


def _status_text(row: Row) -> str:
    return f"{row.status} ({row.reason})" if row.reason else str(row.status)  # a file's OK (self_signed) too


def render_table(rows: Sequence[Row], *, now: datetime, colour: bool = False) -> str:
    """An aligned text table, one line per row; the status is coloured when ``colour`` is true."""
    lines: list[tuple[str, ...]] = []
    for r in rows:
        left = days_left(r, now)
        target = r.target if r.position == 0 else f"{r.target} [{r.position}]"
        lines.append((
            target,
            r.address or "-",
            _short_name(r.subject),
            _short_name(r.issuer),
            r.not_after.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if r.not_after else "-",
            str(int(left // 1)) if left is not None else "-",
            _status_text(r),
        ))
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(_HEADERS)]
    out = ["  ".join(h.ljust(w) for h, w in zip(_HEADERS, widths, strict=True)).rstrip()]
    for r, line in zip(rows, lines, strict=True):
        cells = [c.rjust(w) if i == 5 else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        cells[-1] = line[-1]
        if colour:
            cells[-1] = f"{_COLOURS[r.status]}{line[-1]}{_RESET}"
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)
