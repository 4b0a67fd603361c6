"""The status page's form tokens: what tells a form of ours from one another site makes a browser post.

    csrf = Csrf(shared_secret(store, "csrf", now), clock)     # the key every replica shares
    field = csrf.token(principal)                           # "1767225600.<64 hex>"
    csrf.check(principal, field)                            # None: accepted; else why it is refused

Basic-auth browsers resend credentials on every request, whichever site made it, so a signed-in user is
no proof that a POST came from our page. A token is the time it was issued (epoch seconds) and
HMAC-SHA256 over that time and the principal (how they signed in, their name, their role) under a key
derived from the renewer's shared secret (:mod:`renewer.sharedsecret`). What must stay true:

- every replica on one database and every restart accepts the others' tokens (one shared key);
- a token is worth nothing to another user or role, and nothing after ``max_age`` (12 hours by default:
  a page left open overnight asks for a reload, a leaked token does not last);
- comparison is constant-time, and a refusal says only "missing or wrong" or "expired", never which part
  of a token was wrong.

Clocks of replicas may differ a little: a token issued up to ``skew`` in the future is accepted.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime, timedelta

from certloop.renewer.access import Principal

__all__ = ["EXPIRED", "MAX_AGE", "WRONG", "Csrf"]

MAX_AGE = timedelta(hours=12)
SKEW = timedelta(minutes=5)
WRONG = "CSRF token missing or wrong"
EXPIRED = "CSRF token expired"
_PURPOSE = b"certloop status page csrf v1"  # the shared secret may serve other purposes: derive ours


class Csrf:
    """Per-user, time-limited form tokens under the replicas' shared secret (see the module docstring)."""

    def __init__(self, secret: bytes, clock: Callable[[], datetime], *, max_age: timedelta = MAX_AGE,
                 skew: timedelta = SKEW) -> None:
        if len(secret) < 16:
            raise ValueError("the CSRF secret must be at least 16 bytes")
        self._key = hmac.new(secret, _PURPOSE, hashlib.sha256).digest()
        self._clock = clock
        self.max_age = max_age
        self.skew = skew

    def rekey(self, secret: bytes) -> None:
        """Use ``secret`` from now on (the shared one, once the database answers: see renewer.daemon).
        Tokens issued under the previous key are refused from then on, as after a restart."""
        if len(secret) < 16:
            raise ValueError("the CSRF secret must be at least 16 bytes")
        self._key = hmac.new(secret, _PURPOSE, hashlib.sha256).digest()

    def _mac(self, principal: Principal, issued: int) -> str:
        msg = f"{issued}\x00{principal.via}\x00{principal.name}\x00{principal.role or ''}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def token(self, principal: Principal) -> str:
        issued = int(self._clock().timestamp())
        return f"{issued}.{self._mac(principal, issued)}"

    def check(self, principal: Principal, presented: str | None) -> str | None:
        """None when ``presented`` is a token of ``principal`` still valid now; else the refusal's reason
        (:data:`WRONG` or :data:`EXPIRED`, for the audit trail)."""
        if presented is None:
            return WRONG
        issued_text, dot, mac = presented.partition(".")
        if not dot or not issued_text.isascii() or not issued_text.isdigit() or len(issued_text) > 12:
            return WRONG
        issued = int(issued_text)
        if not hmac.compare_digest(self._mac(principal, issued).encode(), mac.encode(errors="replace")):
            return WRONG
        age = self._clock().timestamp() - issued
        if age > self.max_age.total_seconds() or age < -self.skew.total_seconds():
            return EXPIRED
        return None
