"""Challenge solvers for the built-in ACME issuer: http-01 (webroot or standalone) and dns-01 (hook).

A solver is an async context manager: ``async with solver.present(domain, token_path, key_auth)``
publishes the answer, and removing it happens on exit whatever the outcome.

dns-01 hooks are argv lists run without a shell. The record travels in the environment only:

    CERTLOOP_DNS_RECORD_NAME   _acme-challenge.shop.example   (no trailing dot)
    CERTLOOP_DNS_RECORD_VALUE  the TXT value (base64url SHA-256 of the key authorization)
    CERTLOOP_DOMAIN            shop.example (a wildcard's base name for *.shop.example)
"""

from __future__ import annotations

import contextlib
import http.server
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from certloop.renewer.errors import DnsError, IssuanceError
from certloop.renewer.programs import run_program

__all__ = ["DnsHookSolver", "Solver", "StandaloneSolver", "WebrootSolver", "dns_record_name"]


def dns_record_name(domain: str) -> str:
    """``_acme-challenge.<domain>`` for a name or the base name of a wildcard."""
    base = domain[2:] if domain.startswith("*.") else domain
    return f"_acme-challenge.{base}"


class Solver(Protocol):
    """Publish one challenge answer for the lifetime of the context."""

    kind: str  # "http-01" or "dns-01"

    def present(self, domain: str, token: str, answer: str) -> contextlib.AbstractAsyncContextManager[None]: ...


class WebrootSolver:
    """Write ``<webroot>/.well-known/acme-challenge/<token>`` (0644) for the web server to serve."""

    kind = "http-01"

    def __init__(self, webroot: Path) -> None:
        self.directory = webroot / ".well-known" / "acme-challenge"

    @contextlib.asynccontextmanager
    async def present(self, domain: str, token: str, answer: str) -> AsyncIterator[None]:
        if "/" in token or token in ("", ".", ".."):
            raise IssuanceError(f"refusing an unsafe http-01 token for {domain}")
        _make_world_readable_dirs(self.directory)
        path = self.directory / token
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "w") as fh:
            fh.write(answer)
        os.chmod(path, 0o644)  # a restrictive umask must not hide the token from the web server
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


def _make_world_readable_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents 0755 whatever the umask (the shipped systemd unit
    sets 0027, and the web server that serves the tokens runs as another user). Existing directories
    (the webroot itself) are left as they are."""
    missing = []
    for path in (directory, *directory.parents):
        if path.is_dir():
            break
        missing.append(path)
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another challenge of the same order made it
            path.mkdir()
            os.chmod(path, 0o755)  # noqa: S103 - the web server (another user) must traverse it


class _Handler(http.server.BaseHTTPRequestHandler):
    answers: dict[str, str]

    def do_GET(self) -> None:
        prefix = "/.well-known/acme-challenge/"
        answer = self.answers.get(self.path[len(prefix) :]) if self.path.startswith(prefix) else None
        body = (answer or "not found").encode()
        self.send_response(200 if answer is not None else 404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # stdlib signature
        return


class StandaloneSolver:
    """Answer http-01 from our own listener on ``host:port`` while challenges are pending."""

    kind = "http-01"

    def __init__(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        self.address = (host.strip("[]") or "0.0.0.0", int(port))  # noqa: S104  # the configured listener
        self.answers: dict[str, str] = {}
        self._server: http.server.ThreadingHTTPServer | None = None
        self._users = 0
        self._lock = threading.Lock()

    def _start(self) -> None:
        with self._lock:
            self._users += 1
            if self._server is None:
                handler = type("Handler", (_Handler,), {"answers": self.answers})
                self._server = http.server.ThreadingHTTPServer(self.address, handler)
                threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _stop(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._server is not None:
                self._server.shutdown()
                self._server.server_close()
                self._server = None

    @contextlib.asynccontextmanager
    async def present(self, domain: str, token: str, answer: str) -> AsyncIterator[None]:
        try:
            self._start()
        except OSError as exc:
            raise IssuanceError(f"cannot listen on {self.address[0]}:{self.address[1]}: {exc.strerror}") from exc
        self.answers[token] = answer
        try:
            yield
        finally:
            self.answers.pop(token, None)
            self._stop()


class DnsHookSolver:
    """dns-01: run ``hook`` to publish the TXT record and ``cleanup`` to remove it."""

    kind = "dns-01"

    def __init__(self, hook: list[str], cleanup: list[str] | None, time_limit: float) -> None:
        self.hook = hook
        self.cleanup = cleanup
        self.time_limit = time_limit

    def _env(self, domain: str, answer: str) -> dict[str, str]:
        return {
            "CERTLOOP_DNS_RECORD_NAME": dns_record_name(domain),
            "CERTLOOP_DNS_RECORD_VALUE": answer,
            "CERTLOOP_DOMAIN": domain[2:] if domain.startswith("*.") else domain,
        }

    @contextlib.asynccontextmanager
    async def present(self, domain: str, token: str, answer: str) -> AsyncIterator[None]:
        env = self._env(domain, answer)
        done = await run_program(self.hook, time_limit=self.time_limit, env=env, what="dns-01 hook")
        if done.returncode != 0:
            raise DnsError(f"dns-01 hook for {domain} exited {done.returncode}: {done.stderr_tail.strip()}")
        try:
            yield
        finally:
            if self.cleanup:
                with contextlib.suppress(Exception):  # a failed cleanup must not mask the issuance outcome
                    await run_program(self.cleanup, time_limit=self.time_limit, env=env, what="dns-01 cleanup")
