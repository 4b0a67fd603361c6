"""pebble-challtestsrv as a scriptable DNS server on loopback (pebble's resolver in tests).

    dns = ChallTestSrv(free_port(), free_port(), workdir=tmp)
    dns.start()
    dns.add_a("shop.example", ["127.0.0.1"])
    dns.add_txt("_acme-challenge.shop.example", "token")

Only the DNS responder runs (``-dns01``); the HTTP-01/HTTPS-01/TLS-ALPN-01 responders are disabled,
because certloop's real webroot (nginx) and DNS hooks answer challenges. The installed version has
no DoH listener flag. Unknown names resolve to ``-defaultIPv4`` (127.0.0.1 by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from stack.process import LOOPBACK, Peer, PeerApiError, Process, port_open, require_binary

START_TIMEOUT = 10.0


class ChallTestSrvError(PeerApiError):
    """The management API refused a request."""

    peer = "challtestsrv"


def _fqdn(host: str) -> str:
    return host if host.endswith(".") else host + "."


class ChallTestSrv(Peer):
    """DNS on ``127.0.0.1:dns_port`` (UDP and TCP), management HTTP on ``127.0.0.1:management_port``."""

    def __init__(
        self, dns_port: int, management_port: int, *, workdir: Path, default_ipv4: str = LOOPBACK
    ) -> None:
        self.binary = require_binary("pebble-challtestsrv", "pebble")
        self.dns_port = dns_port
        self.management_port = management_port
        self.workdir = workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.default_ipv4 = default_ipv4

    @property
    def dns_address(self) -> str:
        """``127.0.0.1:PORT``, the form pebble's ``-dnsserver`` and certloop's resolver take."""
        return f"{LOOPBACK}:{self.dns_port}"

    @property
    def management_url(self) -> str:
        return f"http://{LOOPBACK}:{self.management_port}"

    def argv(self) -> list[str]:
        return [
            self.binary,
            "-dns01", self.dns_address,
            "-management", f"{LOOPBACK}:{self.management_port}",
            "-http01", "",
            "-https01", "",
            "-tlsalpn01", "",
            "-defaultIPv4", self.default_ipv4,
            "-defaultIPv6", "",
        ]

    def start(self, timeout: float = START_TIMEOUT) -> None:
        self.process = Process(self.argv(), name="challtestsrv", log_path=self.workdir / "challtestsrv.log").start()
        self.process.wait_until(
            lambda: port_open(LOOPBACK, self.management_port) and port_open(LOOPBACK, self.dns_port),
            timeout,
            f"management {self.management_url} and DNS {self.dns_address} (tcp)",
        )

    def _post(self, endpoint: str, payload: dict[str, Any]) -> None:
        try:
            response = requests.post(f"{self.management_url}{endpoint}", json=payload, timeout=5)
        except requests.RequestException as exc:
            raise ChallTestSrvError(endpoint, None, str(exc)) from exc
        if response.status_code != 200:
            raise ChallTestSrvError(endpoint, response.status_code, response.text)

    def add_a(self, host: str, addresses: Sequence[str]) -> None:
        """Answer A queries for ``host`` with ``addresses`` (replacing earlier ones)."""
        self._post("/add-a", {"host": _fqdn(host), "addresses": list(addresses)})

    def clear_a(self, host: str) -> None:
        self._post("/clear-a", {"host": _fqdn(host)})

    def add_aaaa(self, host: str, addresses: Sequence[str]) -> None:
        self._post("/add-aaaa", {"host": _fqdn(host), "addresses": list(addresses)})

    def set_default_ipv4(self, ip: str) -> None:
        """The A answer for names without an explicit record (empty string: no answer)."""
        self._post("/set-default-ipv4", {"ip": ip})

    def set_default_ipv6(self, ip: str) -> None:
        self._post("/set-default-ipv6", {"ip": ip})

    def add_txt(self, host: str, value: str) -> None:
        """Answer TXT queries for ``host`` (e.g. ``_acme-challenge.shop.example``) with ``value``."""
        self._post("/set-txt", {"host": _fqdn(host), "value": value})

    def clear_txt(self, host: str) -> None:
        self._post("/clear-txt", {"host": _fqdn(host)})
