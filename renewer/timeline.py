"""The status page's timeline picture: when each certificate expires and when it renews, as SVG geometry.

    rows = timeline(entries, now)    # entries: (certificate id, not_after or None, next_due or None)

Pure: the template draws the bars from these numbers (the text in it is escaped by the template engine,
so nothing here builds markup). What must stay true: every coordinate is inside the picture, whatever the
dates (expired certificates, a renewal due in the past, a year-long certificate beside a 6-day one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["Bar", "Tick", "Timeline", "timeline"]

WIDTH = 760  # picture width in px
LABEL = 140  # room for the certificate names on the left
ROW = 26
TOP = 22


@dataclass(frozen=True)
class Bar:
    certificate: str
    y: int
    x_end: float  # where the certificate expires (the bar runs from now to it); LABEL when expired or unknown
    x_due: float | None  # the renewal marker
    expired: bool
    days_left: float | None


@dataclass(frozen=True)
class Tick:
    x: float
    label: str
    days: int  # from now: the page words the label in its language


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    x_now: float
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]


def timeline(entries: Sequence[tuple[str, datetime | None, datetime | None]], now: datetime) -> Timeline:
    """Bars from now to each expiry, a marker at each next renewal, ticks every week or month."""
    horizon = max([e[1] for e in entries if e[1] is not None and e[1] > now] +
                  [e[2] for e in entries if e[2] is not None and e[2] > now] + [now + timedelta(days=30)])
    span = (horizon - now).total_seconds() * 1.05
    plot = WIDTH - LABEL - 10

    def x(when: datetime) -> float:
        offset = min(max((when - now).total_seconds(), 0.0), span)
        return round(LABEL + plot * offset / span, 1)

    bars = []
    for i, (cert, not_after, due) in enumerate(entries):
        days = None if not_after is None else (not_after - now).total_seconds() / 86400
        bars.append(Bar(cert, TOP + i * ROW, x(not_after) if not_after else LABEL, x(due) if due else None,
                        days is not None and days <= 0, None if days is None else round(days, 1)))
    span_days = span / 86400
    step = next(s for s in (1, 7, 30, 90, 365, 3650) if span_days / s <= 10)  # at most ~10 ticks
    ticks = tuple(Tick(x(now + timedelta(days=d)), f"+{d}d", d) for d in range(step, int(span_days) + 1, step))
    return Timeline(WIDTH, TOP + len(entries) * ROW + 10, LABEL, tuple(bars), ticks)
