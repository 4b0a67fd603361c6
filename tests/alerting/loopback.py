"""Loopback peers for the Alertmanager tests: an SMTP server (aiosmtpd) and a WeCom API stand-in,
plus the rewrite of the example alertmanager.yml onto them."""

from __future__ import annotations

import copy
import email
import email.policy
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiosmtpd.controller import Controller

from stack.process import LOOPBACK, free_port


@dataclass(frozen=True)
class Mail:
    to: tuple[str, ...]
    subject: str
    text: str
    html: str


class _Collect:
    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        parts = {part.get_content_type(): part.get_content() for part in message.walk()
                 if part.get_content_type() in ("text/plain", "text/html")}
        mail = Mail(tuple(envelope.rcpt_tos), str(message["Subject"]), parts.get("text/plain", ""),
                    parts.get("text/html", ""))
        with self.lock:
            self.mails.append(mail)
        return "250 OK"


class SmtpSink:
    """A real SMTP server (aiosmtpd) on a free loopback port that keeps every message."""

    def __init__(self) -> None:
        self._handler = _Collect()
        self.port = free_port()
        self._controller = Controller(self._handler, hostname=LOOPBACK, port=self.port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    @property
    def mails(self) -> list[Mail]:
        with self._handler.lock:
            return list(self._handler.mails)


class FakeWeCom:
    """A stand-in for WeCom's API (qyapi.weixin.qq.com), which cannot run here: `gettoken` hands out a
    token, `message/send` records the message Alertmanager's wechat notifier sends."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def api_url(self) -> str:
        assert self._server is not None
        return f"http://{LOOPBACK}:{self._server.server_address[1]}/cgi-bin/"

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if urlsplit(self.path).path.endswith("/gettoken"):
                    self._reply({"errcode": 0, "errmsg": "ok", "access_token": "wecom-token", "expires_in": 7200})
                else:
                    self._reply({"errcode": 404, "errmsg": "unknown path"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fake.messages.append({"path": self.path, **body})
                self._reply({"errcode": 0, "errmsg": "ok"})

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-wecom", daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def sent(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.messages)


RENEWER_PATH = "/api/v1/alertmanager"


def _routes(route: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield route
    for child in route.get("routes", []):
        yield from _routes(child)


def loopback_config(example: dict[str, Any], *, receiver_url: str, smtp_port: int, wecom_api_url: str,
                    token_file: Path, templates_dir: Path, sns_api_url: str) -> dict[str, Any]:
    """The example config with every endpoint moved to loopback and timers shortened.

    Routing tree, matchers, grouping, inhibition, receivers and templates are kept as they are. Webhooks
    post to `receiver_url/<receiver>/webhook` (the renewer's to `receiver_url/api/v1/alertmanager`),
    Slack to `receiver_url/<receiver>/slack`, email to the SMTP sink without TLS or auth, SNS to
    `sns_api_url` (moto's server) with its throw-away credentials.
    """
    config = copy.deepcopy(example)
    glob = config["global"]
    for key in ("smtp_auth_username", "smtp_auth_password_file", "slack_api_url_file"):
        glob.pop(key, None)
    glob.update(smtp_smarthost=f"{LOOPBACK}:{smtp_port}", smtp_require_tls=False, wechat_api_url=wecom_api_url)
    config["templates"] = [str(templates_dir / "*.tmpl")]
    for route in _routes(config["route"]):
        if "group_wait" in route or route is config["route"]:
            route["group_wait"] = "1s"
        if "group_interval" in route or route is config["route"]:
            route["group_interval"] = "1s"
    for receiver in config["receivers"]:
        name = receiver["name"]
        for hook in receiver.get("webhook_configs", []):
            if hook["url"].endswith(RENEWER_PATH):
                hook["url"] = receiver_url + RENEWER_PATH
                hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
            else:
                hook["url"] = f"{receiver_url}/{name}/webhook"
        for slack in receiver.get("slack_configs", []):
            slack["api_url"] = f"{receiver_url}/{name}/slack"
        for sns in receiver.get("sns_configs", []):
            sns["api_url"] = sns_api_url
            sns["sigv4"].update(access_key="testing", secret_key="testing")  # moto accepts any
    return config
