"""Who is calling, and may they: the renewer's roles, resolved at one seam before any handler runs.

    access = Access.build(config.auth, web)          # at start and on every reload
    principal = await access.identify(request)     # None: no valid credentials (401)
    access.allows(principal, "renew")               # False: authenticated, wrong role (403)

Roles and what they may do are one table (:data:`PERMISSIONS`); routes name a permission
(``renewer/api.py`` ROUTES). What must stay true:

- every credential is checked before a request body is read, and a secret is never logged or kept
  beyond the comparison (tokens are compared in constant time, all of them, whatever matches first);
- a bearer token, a signed-in person (``--web.config.file`` ``basic_auth_users`` with a role in
  ``auth.users``) and a verified client certificate are the only ways in; a person without a role has none;
- ``admin`` may do everything, including delivering webhooks, so a single legacy token keeps working.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from certloop.httpserver import Request
from certloop.renewer.config import AuthConfig, Role
from certloop.webconfig import WebConfigFile

__all__ = ["PERMISSIONS", "Access", "Permission", "Principal"]

Permission = Literal["read", "renew", "reload", "webhook"]

PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    "viewer": frozenset({"read"}),
    "operator": frozenset({"read", "renew"}),
    "admin": frozenset({"read", "renew", "reload", "webhook"}),
    "alertmanager": frozenset({"webhook"}),
}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: ``name`` is safe to show and record (never a secret)."""

    name: str
    role: Role | None  # None: a person who signed in but has no role in auth.users
    via: Literal["token", "password", "client_certificate"]

    def may(self, permission: Permission) -> bool:
        return self.role is not None and permission in PERMISSIONS[self.role]


class Access:
    """The credentials of one configuration (rebuilt on reload)."""

    def __init__(self, tokens: list[tuple[str, str, Role]], users: Mapping[str, Role], web: WebConfigFile | None,
                 client_certificate_role: Role) -> None:
        self._tokens = [(name, secret.encode(), role) for name, secret, role in tokens]
        self._users = dict(users)
        self._web = web
        self._client_certificate_role = client_certificate_role

    @classmethod
    def build(cls, auth: AuthConfig, web: WebConfigFile | None) -> Access:
        return cls(auth.bearer_tokens(), auth.users, web, auth.client_certificate_role)

    @property
    def signs_in_people(self) -> bool:
        return self._web is not None and self._web.auth_required

    async def identify(self, req: Request) -> Principal | None:
        header = req.headers.get("authorization")
        if header:
            scheme = header[:7].lower()
            if scheme == "bearer ":
                return self._token(header[7:].strip().encode())
            if scheme[:6] == "basic " and self._web is not None:
                user = await self._web.users.user_of(header)
                return None if user is None else Principal(user, self._users.get(user), "password")
            return None
        if req.peer_cert:  # verified by the TLS layer against client_ca_file
            return Principal(_subject(req.peer_cert), self._client_certificate_role, "client_certificate")
        return None

    def _token(self, presented: bytes) -> Principal | None:
        found: Principal | None = None
        for name, secret, role in self._tokens:  # every one compared: timing says nothing about which matched
            if hmac.compare_digest(presented, secret) and found is None:
                found = Principal(name, role, "token")
        return found

    def challenge(self) -> str:
        """The WWW-Authenticate value of a 401."""
        return 'Basic realm="certloop-renewer"' if self.signs_in_people else 'Bearer realm="certloop-renewer"'


def _subject(peer_cert: Mapping[str, Any]) -> str:
    for rdn in peer_cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return f"cn={value}"
    return "client certificate"
