"""Hostile HTTP clients against both real daemons (``certloop exporter`` and ``certloop renewer`` as
processes, debug logging on), over raw sockets: every input RFC 9112 says to reject gets its status as an
answer (never a dropped connection), the process keeps serving, and its log holds no traceback.

Also on the real daemons: HEAD, gzip, the renewer refusing an unauthenticated body before reading it,
and the connection cap keeping /-/healthy and /metrics up under a crowd of idle connections.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from stack.process import LOOPBACK, Process, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
TOKEN = "hostile-test-token-0123456789"

# (name, bytes sent, expected status). Each line is a rule of RFC 9112 (or a size limit) the old
# hand-written parser broke: it crashed on some, and honoured or ignored the others.
CASES: list[tuple[str, bytes, int]] = [
    ("space before colon", b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length : 0\r\n\r\n", 400),
    ("space in header name", b"GET /metrics HTTP/1.1\r\nHost: x\r\nX Forwarded: 1\r\n\r\n", 400),
    ("Content-Length +5", b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", 400),
    ("Content-Length 1_0", b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 1_0\r\n\r\nhellohello", 400),
    ("chunk size 0x5", b"POST /-/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"0x5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size -1", b"POST /-/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"-1\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk data without CRLF", b"POST /-/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                b"5\r\nhelloXX0\r\n\r\n", 400),
    ("Transfer-Encoding xchunked", b"POST /-/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n"
                                   b"5\r\nhello\r\n0\r\n\r\n", 400),
    # RFC 9112 6.3: chunked not last -> 400; 6.1: a coding the server does not know -> 501
    ("Transfer-Encoding gzip", b"POST /-/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nhello", 400),
    ("Transfer-Encoding gzip, chunked", b"POST /-/reload HTTP/1.1\r\nHost: x\r\n"
                                        b"Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 501),
    ("NUL in a header value", b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    ("HTTP/1.1 without Host", b"GET /metrics HTTP/1.1\r\n\r\n", 400),
    ("two Host headers", b"GET /metrics HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    ("invalid Host", b"GET /metrics HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("HTTP/1.9", b"GET /metrics HTTP/1.9\r\nHost: x\r\n\r\n", 400),
    ("HTTP/2.0 in an HTTP/1 request line", b"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    ("header line over 16 KiB", b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 17000 + b"\r\n\r\n", 431),
    ("200 header fields", b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
                          + b"".join(b"X-%d: a\r\n" % i for i in range(200)) + b"\r\n", 431),
    ("request line of 20 KB", b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ("not HTTP at all", b"HELLO\r\n\r\n", 400),
    ("TLS ClientHello on the HTTP port", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32, 400),
    ("compressed request body", b"POST /api/v1/alertmanager HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                                + TOKEN.encode() + b"\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n"
                                  b"Connection: close\r\n\r\nabc", 415),
]
# Only the renewer has the webhook route: the exporter answers the last case 404.
_EXPORTER_ONLY_STATUS = {"compressed request body": 404}
# Answered by a route, not refused by the parser: no "rejected a request" line is logged for it.
_ANSWERED_BY_A_HANDLER = {"compressed request body"}


@dataclass
class Daemon:
    name: str
    process: Process
    port: int

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def log_size(self) -> int:
        return self.process.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.process.log_path.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")


def _start(name: str, argv: list[str], workdir: Path, port: int) -> Daemon:
    env = {"PYTHONPATH": str(REPO)}
    process = Process([sys.executable, "-m", "certloop.cli", *argv], name=name, log_path=workdir / f"{name}.log",
                      env=env).start()
    daemon = Daemon(name, process, port)

    def healthy() -> bool:
        try:
            return requests.get(f"{daemon.url}/-/healthy", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    process.wait_until(healthy, 30, f"{name} /-/healthy")
    return daemon


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Daemon]]:
    """One exporter and one renewer, both with ``--web.max-connections 40`` (the cap test needs a small one)."""
    work = tmp_path_factory.mktemp("hostile")
    exporter_cfg = work / "exporter.yml"
    exporter_cfg.write_text("{}\n")  # monitors nothing: /metrics still serves the exporter's own series
    renewer_cfg = work / "renewer.yml"
    renewer_cfg.write_text(yaml.safe_dump({
        "listen": "127.0.0.1:0", "auth": {"token": TOKEN}, "data_dir": str(work / "renewer-data"),
        "keystore": {"key": secrets.token_bytes(32).hex()}, "scheduler": {"enabled": False}, "certificates": [],
    }))
    started: list[Daemon] = []
    try:
        port = free_port()
        started.append(_start("exporter", ["exporter", f"--config.file={exporter_cfg}",
                                           f"--web.listen-address={LOOPBACK}:{port}", "--log.level=debug",
                                           "--web.max-connections=40"], work, port))
        port = free_port()
        started.append(_start("renewer", ["renewer", "--config.file", str(renewer_cfg),
                                          f"--web.listen-address={LOOPBACK}:{port}", "--log.level", "debug",
                                          "--web.max-connections=40"], work, port))
        yield {d.name: d for d in started}
    finally:
        for daemon in started:
            daemon.process.stop()


def _exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data``, then read until the server closes; a socket.timeout fails the test (it kept the
    connection open without answering)."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # it answered, closed before taking all
            s.sendall(data)
        received = b""
        try:
            while chunk := s.recv(65536):
                received += chunk
        except ConnectionResetError:  # closed with our unread bytes pending: what it sent first still counts
            pass
    return received


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1."), f"not an HTTP answer: {answer[:80]!r}"
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize("name", ["exporter", "renewer"])
@pytest.mark.parametrize(("case", "data", "status"), CASES, ids=[c[0] for c in CASES])
def test_hostile_input_gets_its_status_and_no_traceback(daemons: dict[str, Daemon], name: str, case: str,
                                                       data: bytes, status: int) -> None:
    """Each rejected input is answered with its status (then the connection closes); the daemon keeps
    serving and logs no traceback for it."""
    daemon = daemons[name]
    offset = daemon.log_size()
    answer = _exchange(daemon.port, data)
    expected = _EXPORTER_ONLY_STATUS.get(case, status) if name == "exporter" else status
    assert _status(answer) == expected, answer[:300]
    assert requests.get(f"{daemon.url}/-/healthy", timeout=5).status_code == 200
    if case not in _ANSWERED_BY_A_HANDLER:  # the parser logs each rejection (debug) before it answers
        wait_until(lambda: "rejected a request" in daemon.log_since(offset), 10, "the rejection's log line")
    log = daemon.log_since(offset)
    assert "Traceback" not in log and "level=error" not in log, log[-3000:]


@pytest.mark.parametrize("name", ["exporter", "renewer"])
def test_head_metrics_has_the_get_length_and_no_body(daemons: dict[str, Daemon], name: str) -> None:
    """HEAD /metrics: the Content-Length a GET would carry, and no body (the old server said 0).

    The exposition changes between two scrapes (the exporter's own counters), so the lengths are
    compared on a HEAD and GET pipelined back to back, both answered before anything else runs."""
    daemon = daemons[name]
    head = b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    get = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = _exchange(daemon.port, head + get)
    first, _, rest = answer.partition(b"\r\n\r\n")
    assert _status(first) == 200 and rest.startswith(b"HTTP/1.1 200"), answer[:400]  # HEAD sent no body
    head_length = int(next(line.split(b":", 1)[1] for line in first.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")))
    _, _, get_body = rest.partition(b"\r\n\r\n")
    assert head_length > 1000 and abs(head_length - len(get_body)) < 200, (head_length, len(get_body))


@pytest.mark.parametrize("name", ["exporter", "renewer"])
def test_metrics_are_gzipped_when_asked(daemons: dict[str, Daemon], name: str) -> None:
    """Accept-Encoding: gzip (what Prometheus sends) gets a gzip body that decodes to the exposition."""
    daemon = daemons[name]
    raw = requests.get(f"{daemon.url}/metrics", headers={"Accept-Encoding": "gzip"}, timeout=10, stream=True)
    assert raw.headers["Content-Encoding"] == "gzip"
    body = gzip.decompress(raw.raw.read())
    assert b"# TYPE " in body and b"certloop_" in body
    plain = requests.get(f"{daemon.url}/metrics", headers={"Accept-Encoding": "identity"}, timeout=10)
    assert "Content-Encoding" not in plain.headers and plain.text.startswith("#")


def test_renewer_refuses_an_unauthenticated_body_before_reading_it(daemons: dict[str, Daemon]) -> None:
    """A webhook without the token announcing 3 MB (under the server's 4 MiB bound) gets 401 after
    only 64 KiB were sent: the token is checked before the body is read, and the connection closes
    without draining the rest. (The old server read the whole body first, then said 401.)"""
    daemon = daemons["renewer"]
    with socket.create_connection((LOOPBACK, daemon.port), timeout=5) as s:
        s.sendall(b"POST /api/v1/alertmanager HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 3000000\r\n\r\n" + b"[" * 65536)
        answer = s.recv(4096)  # socket.timeout (5 s) here: it waited for the body
        assert _status(answer) == 401, answer
        assert b"Connection: close" in answer
        s.settimeout(5)
        with pytest.raises((BrokenPipeError, ConnectionResetError)):  # closed: the rest of the body has nowhere to go
            s.sendall(b"[" * 4_000_000)


def test_renewer_answers_413_from_content_length_before_reading(daemons: dict[str, Daemon]) -> None:
    """An authenticated webhook announcing more than ``max_body`` gets 413 at once, body unread."""
    daemon = daemons["renewer"]
    with socket.create_connection((LOOPBACK, daemon.port), timeout=5) as s:
        s.sendall(b"POST /api/v1/alertmanager HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                  + b"\r\nContent-Length: 3000000\r\n\r\n")
        assert _status(s.recv(4096)) == 413


def _still_open(crowd: list[socket.socket]) -> int:
    """How many of the (non-blocking) sockets the server has not closed: b"" or a reset means closed."""
    still_open = 0
    for s in crowd:
        try:
            still_open += s.recv(1) != b""
        except BlockingIOError:
            still_open += 1
        except ConnectionResetError:
            pass
    return still_open


@pytest.mark.parametrize("name", ["exporter", "renewer"])
def test_a_crowd_of_idle_connections_does_not_lock_out_health_and_metrics(daemons: dict[str, Daemon],
                                                                          name: str) -> None:
    """300 idle connections against a cap of 40: the oldest idle ones are closed to make room, so
    /-/healthy and /metrics keep answering at once, and no more than the cap stay open."""
    daemon = daemons[name]
    offset = daemon.log_size()
    crowd = []
    try:
        for _ in range(300):
            crowd.append(socket.create_connection((LOOPBACK, daemon.port), timeout=5))
        for path in ("/-/healthy", "/metrics"):
            started = time.monotonic()
            assert requests.get(daemon.url + path, timeout=5).status_code == 200
            assert time.monotonic() - started < 2
        for s in crowd:
            s.setblocking(False)
        # The evictions happened as the crowd connected; the closes reach our sockets a moment later.
        wait_until(lambda: _still_open(crowd) <= 40, 10, "at most 40 of the 300 idle connections left open")
    finally:
        for s in crowd:
            s.close()
    log = daemon.log_since(offset)
    assert "connection cap of 40 reached" in log and "Traceback" not in log


def test_the_daemons_refuse_to_run_on_the_pure_python_parser(tmp_path: Path) -> None:
    """AIOHTTP_NO_EXTENSIONS would swap llhttp's strict parser for a laxer one: the exporter refuses to
    start (exit 1 with the reason) rather than serve with other rules than the ones tested here."""
    cfg = tmp_path / "exporter.yml"
    cfg.write_text("{}\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "AIOHTTP_NO_EXTENSIONS": "1"}
    done = subprocess.run([sys.executable, "-m", "certloop.cli", "exporter", f"--config.file={cfg}",
                           f"--web.listen-address={LOOPBACK}:{free_port()}"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode != 0 and "C HTTP parser" in done.stderr, done.stderr[-2000:]


@pytest.mark.parametrize("name", ["exporter", "renewer"])
def test_landing_page_names_the_daemon_its_version_and_links(daemons: dict[str, Daemon], name: str) -> None:
    """``/`` on both daemons: an HTML page with the program's name, certloop's version and links to its
    endpoints, without a token (exporter-toolkit's landing page); HEAD works on it too."""
    from certloop import __version__

    daemon = daemons[name]
    page = requests.get(daemon.url + "/", timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert f"certloop {name}" in page.text and f"version {__version__}" in page.text
    for path in ("/metrics", "/-/healthy", "/-/ready"):
        assert f'href="{path}"' in page.text
        assert requests.get(daemon.url + path, timeout=5).status_code == 200  # every link answers
    assert ('href="/probe?target=' in page.text) if name == "exporter" else ('href="/api/v1/openapi.json"' in page.text)
    assert requests.head(daemon.url + "/", timeout=5).headers["Content-Length"] == str(len(page.content))


@pytest.mark.parametrize("name", ["exporter", "renewer"])
def test_reload_over_http_is_off_unless_the_lifecycle_api_is_enabled(daemons: dict[str, Daemon], name: str) -> None:
    """Without --web.enable-lifecycle (as in Prometheus) /-/reload answers 403 naming the flag and SIGHUP,
    even to the renewer's admin token. (With the flag: tests/exporter/test_server.py,
    test_probe_workers.py, tests/renewer/test_cli.py and the config-reloader tests reload over HTTP.)"""
    daemon = daemons[name]
    headers = {"Authorization": f"Bearer {TOKEN}"} if name == "renewer" else {}
    for method in ("POST", "PUT") if name == "exporter" else ("POST",):
        answer = requests.request(method, daemon.url + "/-/reload", headers=headers, timeout=10)
        assert answer.status_code == 403 and "--web.enable-lifecycle" in answer.text and "SIGHUP" in answer.text
    metrics = requests.get(daemon.url + "/metrics", timeout=10).text
    assert "config_last_reload_successful 1" in metrics
