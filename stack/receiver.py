"""A tiny loopback HTTP receiver that records every request (for webhook, template and routing tests).

    receiver = Receiver(status=200)
    receiver.start()
    ... point Alertmanager's webhook_configs at receiver.url + "/hook" ...
    [request] = receiver.wait_for(1, timeout=10)
    request.json()["alerts"][0]["labels"]["alertname"]
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from stack.process import LOOPBACK, NotReady, StackError


@dataclass(frozen=True)
class Request:
    """One recorded request."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_monotonic: float

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Records requests to any path; answers ``status`` (changeable while running) with an empty body."""

    def __init__(self, status: int = 200, host: str = LOOPBACK) -> None:
        self.status = status
        self.host = host
        self._requests: list[Request] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise StackError("receiver: not started")
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:40111``."""
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(self.command, self.path, dict(self.headers.items()), body, time.monotonic())
                with receiver._lock:
                    receiver._requests.append(request)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = do_DELETE = _record

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="receiver", daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout: float, path: str | None = None) -> list[Request]:
        """Wait until at least ``count`` requests (to ``path``, if given) arrived; return them."""
        deadline = time.monotonic() + timeout
        while True:
            matching = [r for r in self.requests if path is None or r.path == path]
            if len(matching) >= count:
                return matching
            if time.monotonic() >= deadline:
                raise NotReady("receiver", f"{count} requests to {path or 'any path'} (got {len(matching)})",
                               timeout, "", None)
            time.sleep(0.05)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
