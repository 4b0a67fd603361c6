"""Alertmanager webhook (payload version 4) -> renewal requests. Pure: no I/O, no clock.

Alertmanager posts::

    {"version": "4", "groupKey": "...", "truncatedAlerts": 0, "status": "firing", "receiver": "renewer",
     "groupLabels": {...}, "commonLabels": {...}, "commonAnnotations": {...}, "externalURL": "...",
     "alerts": [{"status": "firing", "labels": {"alertname": "...", "certificate": "shop"},
                 "annotations": {...}, "startsAt": "...", "endsAt": "...", "generatorURL": "...",
                 "fingerprint": "..."}]}

Each alert becomes either a :class:`RenewalRequest` (firing, on the renew list, naming a configured
certificate) or an :class:`Ignored` with an outcome from the fixed set of the
``certloop_renewer_alerts_total`` metric. Label values are only ever compared with configured ids
after a charset check; nothing from the payload reaches a shell, a path or an argv.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from certloop.renewer.errors import PayloadError

__all__ = [
    "OUTCOMES",
    "Ignored",
    "RenewalRequest",
    "Triage",
    "parse_payload",
    "triage",
]

# Fixed label values of certloop_renewer_alerts_total{outcome}.
OUTCOMES = ("queued", "duplicate", "unknown_certificate", "resolved_ignored", "not_renewable")
# Matched with fullmatch: ``$`` alone would let a trailing newline through.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")  # renewer.spec.CERTIFICATE_ID_PATTERN
_FINGERPRINT = re.compile(r"[0-9a-fA-F]{1,32}")


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class _Alert(_Loose):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str
    endsAt: str = ""
    generatorURL: str = ""
    fingerprint: str = ""


class _Payload(_Loose):
    version: Literal["4"]
    groupKey: str
    truncatedAlerts: int = Field(default=0, ge=0)
    status: Literal["firing", "resolved"]
    receiver: str
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[_Alert]


@dataclass(frozen=True)
class RenewalRequest:
    """A firing alert asking to renew configured certificate ``certificate``."""

    certificate: str
    alertname: str
    starts_at: datetime | None
    fingerprint: str


@dataclass(frozen=True)
class Ignored:
    """An alert that causes nothing; ``outcome`` is a metric label value, ``detail`` is for the response."""

    outcome: str
    detail: str
    fingerprint: str


@dataclass(frozen=True)
class Triage:
    group_key: str
    truncated: int
    requests: tuple[RenewalRequest, ...]
    ignored: tuple[Ignored, ...]


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "payload"


def parse_payload(body: bytes) -> _Payload:
    """Decode and check the v4 shape; :class:`PayloadError` names the first wrong field."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"body is not valid JSON: {exc}") from None
    except RecursionError:  # a hostile body nested deeper than the parser's stack: input, not a bug
        raise PayloadError("body is nested too deeply to be an Alertmanager payload") from None
    if not isinstance(data, dict):
        raise PayloadError("payload: expected a JSON object (Alertmanager webhook payload version 4)")
    if "version" in data and data["version"] != "4":
        raise PayloadError(f"version: expected \"4\" (Alertmanager webhook payload), got {data['version']!r:.40}")
    try:
        return _Payload.model_validate(data)
    except RecursionError:
        raise PayloadError("payload: nested too deeply to be an Alertmanager payload") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        kind = err.get("type", "")
        msg = "required field is missing" if kind == "missing" else str(err.get("msg", "invalid"))
        return_path = _path(tuple(err["loc"]))
        raise PayloadError(f"{return_path}: {msg}") from None


def parse_time(text: str) -> datetime | None:
    """RFC 3339 as Alertmanager writes it (nanoseconds, ``Z``); None when unparsable or the zero time."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text.strip())
    if not m:
        return None
    frac = (m.group(2) or "")[:6].ljust(6, "0")
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    try:
        when = datetime.fromisoformat(f"{m.group(1)}.{frac}{tz}").astimezone(UTC)
    except ValueError:
        return None
    return None if when.year <= 1 else when


def triage(
    body: bytes, *, configured: Collection[str], renew_on: Collection[str], label: str = "certificate",
) -> Triage:
    """Sort every alert of ``body`` into renewal requests (one per certificate) and ignored alerts."""
    payload = parse_payload(body)
    requests: dict[str, RenewalRequest] = {}
    ignored: list[Ignored] = []
    for alert in payload.alerts:
        fp = alert.fingerprint if _FINGERPRINT.fullmatch(alert.fingerprint) else ""
        alertname = alert.labels.get("alertname", "")
        raw = alert.labels.get(label)
        if alert.status != "firing":
            ignored.append(Ignored("resolved_ignored", "alert is resolved", fp))
        elif alertname not in renew_on:
            ignored.append(Ignored("not_renewable", "alertname is not configured to trigger renewals", fp))
        elif raw is None or not _ID.fullmatch(raw):
            ignored.append(Ignored("unknown_certificate", f"no valid {label!r} label", fp))
        elif raw not in configured:
            ignored.append(Ignored("unknown_certificate", f"certificate {raw!r} is not configured", fp))
        elif raw in requests:
            ignored.append(Ignored("duplicate", f"certificate {raw!r} already requested in this payload", fp))
        else:
            requests[raw] = RenewalRequest(raw, alertname, parse_time(alert.startsAt), fp)
    return Triage(payload.groupKey, payload.truncatedAlerts, tuple(requests.values()), tuple(ignored))


def summary(tri: Triage, outcomes: Mapping[str, str]) -> dict[str, Any]:
    """The 202 body: what happened to each certificate and each ignored alert."""
    return {
        "groupKey": tri.group_key,
        "truncatedAlerts": tri.truncated,
        "certificates": [{"certificate": r.certificate, "outcome": outcomes[r.certificate],
                          "alertname": r.alertname, "fingerprint": r.fingerprint} for r in tri.requests],
        "ignored": [{"outcome": i.outcome, "detail": i.detail, "fingerprint": i.fingerprint} for i in tri.ignored],
    }
