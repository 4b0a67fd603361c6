"""The plaintext side of a connection before a STARTTLS upgrade, and the negotiator signature.

    async def negotiate(conn: Plaintext, server_name: str | None) -> None:   # a Negotiator
        greeting = await conn.read_line()             # one line without CRLF, bounded in size
        await conn.send(b"STARTTLS\r\n")

:func:`certloop.tls.fetch` hands a :class:`Plaintext` over its raw socket to the negotiator
(`certloop.starttls.STARTTLS`), then checks it was drained before the ClientHello goes out.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from certloop.errors import FailureReason, ProbeError

__all__ = ["Negotiator", "Plaintext"]

_PLAINTEXT_BUDGET = 64 * 1024
"""Bytes a STARTTLS peer may send before the upgrade (banners, capability lists). A hostile
server streaming megabytes of banner is cut off here instead of filling memory."""

_PLAINTEXT_MAX_LINE = 16 * 1024


class Plaintext:
    """The plaintext side of a connection before a STARTTLS upgrade: bounded reads and writes.

    Reads draw from a budget of bytes for the whole negotiation (:data:`_PLAINTEXT_BUDGET`) and
    lines are capped, so a peer can neither exhaust memory nor stall a probe past its deadline
    (the caller bounds time). Running out of budget or an early close raises
    ``ProbeError(starttls)``.
    """

    __slots__ = ("_budget", "_buffer", "_loop", "_sock")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self._loop = loop
        self._sock = sock
        self._buffer = bytearray()
        self._budget = _PLAINTEXT_BUDGET

    async def send(self, data: bytes) -> None:
        await self._loop.sock_sendall(self._sock, data)

    async def _fill(self) -> None:
        if self._budget <= 0:
            raise ProbeError(
                FailureReason.STARTTLS, f"server sent more than {_PLAINTEXT_BUDGET} bytes before TLS"
            )
        chunk = await self._loop.sock_recv(self._sock, min(4096, self._budget))
        if not chunk:
            raise ProbeError(FailureReason.STARTTLS, "server closed the connection before TLS")
        self._budget -= len(chunk)
        self._buffer += chunk

    async def read_line(self) -> bytes:
        """One line without its CRLF/LF terminator."""
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line[:-1] if line.endswith(b"\r") else line
            if len(self._buffer) > _PLAINTEXT_MAX_LINE:
                raise ProbeError(
                    FailureReason.STARTTLS, f"server sent a line longer than {_PLAINTEXT_MAX_LINE} bytes"
                )
            start = len(self._buffer)
            await self._fill()

    async def read_exact(self, size: int) -> bytes:
        """Exactly ``size`` bytes (bounded by the budget)."""
        if size > _PLAINTEXT_BUDGET:
            raise ProbeError(FailureReason.STARTTLS, f"server announced a {size}-byte message before TLS")
        while len(self._buffer) < size:
            await self._fill()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def check_drained(self) -> None:
        """Bytes left over after the server said "go ahead" would be read as TLS: refuse them."""
        if self._buffer:
            raise ProbeError(FailureReason.STARTTLS, "server sent unexpected data after accepting STARTTLS")


Negotiator = Callable[[Plaintext, "str | None"], Awaitable[None]]
"""A STARTTLS negotiator: speaks the protocol's plaintext preamble (given the SNI name, for
protocols that greet by name) and returns when the server is ready for the TLS ClientHello, or
raises ``ProbeError(starttls)``. See `certloop.starttls.STARTTLS`."""
