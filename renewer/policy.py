"""Pure retry policy: exponential backoff with jitter that honours a CA's Retry-After.

    next_attempt_at(attempt=3, now=now, base=30s, maximum=1h, rand=random())   # between 60s and 120s
"""

from __future__ import annotations

from datetime import datetime, timedelta

__all__ = ["backoff_delay", "next_attempt_at"]


def backoff_delay(attempt: int, base: timedelta, maximum: timedelta, rand: float) -> timedelta:
    """Delay before attempt ``attempt + 1`` (attempt counts from 1): the exponential step, capped at
    ``maximum``, of which the upper half is jittered by ``rand`` in [0, 1) so replicas spread out."""
    step: timedelta = min(maximum, base * (1 << min(max(attempt - 1, 0), 40)))
    return step / 2 + (step / 2) * min(max(rand, 0.0), 1.0)


def next_attempt_at(
    attempt: int, now: datetime, base: timedelta, maximum: timedelta, rand: float,
    retry_after: datetime | None = None,
) -> datetime:
    """When to try again: the backoff, but never before the CA's ``retry_after``."""
    when = now + backoff_delay(attempt, base, maximum, rand)
    if retry_after is not None and retry_after > when:
        return retry_after
    return when
