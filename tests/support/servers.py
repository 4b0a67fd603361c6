"""Peers for the TLS fetch tests: hostile TCP/TLS servers and real STARTTLS servers on loopback.

Hostile peers (written here, they *are* the behaviour under test):

    with ThreadedServer(silent) as srv:          # accepts TCP and never speaks
        await fetch(srv.host, srv.port)          # -> ProbeError(timeout)

Real STARTTLS servers, each started in its own temp dir on free ports and stopped by PID:
dovecot (IMAP + POP3), OpenLDAP slapd, vsftpd, a throwaway PostgreSQL cluster with ssl=on.
aiosmtpd runs in-process (its own thread) and needs no launcher here.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Self

from stack.process import LOOPBACK, Process, free_port, port_open, require_binary
from tests.support.pki import Issued

Handler = Callable[[socket.socket], None]


class ThreadedServer:
    """A loopback TCP listener; each accepted connection is given to ``handler`` in a thread.

    ``stop()`` closes the listener and every connection still open, so handlers that block on
    ``recv`` return. ``host`` may be ``::1`` for IPv6.
    """

    def __init__(self, handler: Handler, host: str = LOOPBACK) -> None:
        self.handler = handler
        self.host = host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, name=f"server-{self.port}", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
                self.accepted += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with suppress(OSError, ssl.SSLError):
            self.handler(conn)

    def stop(self) -> None:
        self._stopped.set()
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for conn in self._conns:
                with suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
        self._thread.join(timeout=5)


# -- hostile handlers ---------------------------------------------------------------------------


def silent(conn: socket.socket) -> None:
    """Accept and never speak: read whatever comes until the peer or the test closes."""
    while conn.recv(65536):
        pass


def garbage(conn: socket.socket) -> None:
    """Answer the ClientHello with bytes that are not TLS, then close."""
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" + b"\x00\xff" * 512)
    conn.close()


def reset_mid_handshake(conn: socket.socket) -> None:
    """Read the start of the ClientHello, then abort with a TCP reset (SO_LINGER 0)."""
    conn.recv(16)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def endless_banner(conn: socket.socket) -> None:
    """A plaintext server that streams an endless banner line (10 MB would fill memory)."""
    chunk = b"220-" + b"x" * 4000 + b"\r\n"
    for _ in range(2500):
        conn.sendall(chunk)


def scripted(*steps: bytes | None) -> Handler:
    """A protocol-faithful scripted peer: ``bytes`` are sent, ``None`` reads one request."""

    def handler(conn: socket.socket) -> None:
        for step in steps:
            if step is None:
                conn.recv(65536)
            else:
                conn.sendall(step)
        while conn.recv(65536):
            pass

    return handler


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def tls_after(
    context: ssl.SSLContext, *plain_steps: bytes | int | None, expect: bytes | None = None
) -> Handler:
    """Play ``plain_steps`` (``bytes`` sent, ``None`` reads one request, an ``int`` reads exactly
    that many bytes, so a ClientHello sent right behind a binary request is left for TLS),
    optionally check the client's last request starts with ``expect``, then run a TLS server
    handshake with ``context`` on the same socket."""

    def handler(conn: socket.socket) -> None:
        last = b""
        for step in plain_steps:
            if step is None:
                last = conn.recv(65536)
            elif isinstance(step, int):
                last = _recv_exact(conn, step)
            else:
                conn.sendall(step)
        if expect is not None and not last.startswith(expect):
            conn.close()
            return
        tls = context.wrap_socket(conn, server_side=True)
        with suppress(OSError):
            while tls.recv(65536):
                pass

    return handler


def server_context(issued: Issued, directory: Path, name: str) -> ssl.SSLContext:
    """A TLS server context presenting ``issued`` with its chain."""
    paths = issued.write(directory, name)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(paths["fullchain"], paths["key"])
    return ctx


def ipv6_loopback_available() -> bool:
    """Whether ``::1`` can be bound on this machine."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


# -- real STARTTLS servers ----------------------------------------------------------------------


def _wait_port(process: Process, port: int, what: str, timeout: float = 20.0) -> None:
    process.wait_until(lambda: port_open(LOOPBACK, port), timeout, f"{what} on {LOOPBACK}:{port}")


@contextmanager
def dovecot(workdir: Path, cert: Path, key: Path) -> Iterator[tuple[int, int]]:
    """A real dovecot with IMAP and POP3 (STARTTLS/STLS) on free loopback ports: ``(imap, pop3)``."""
    binary = require_binary("dovecot", "dovecot-imapd")
    require_binary("/usr/lib/dovecot/pop3-login", "dovecot-pop3d")
    workdir.mkdir(parents=True, exist_ok=True)
    imap_port, pop3_port = free_port(), free_port()
    conf = workdir / "dovecot.conf"
    conf.write_text(
        f"""
base_dir = {workdir}/run
state_dir = {workdir}/state
log_path = {workdir}/dovecot.log
protocols = imap pop3
listen = {LOOPBACK}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
auth_mechanisms = plain
passdb {{
  driver = static
  args = nopassword=y
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={workdir}/home
}}
service imap-login {{
  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
service pop3-login {{
  chroot =
}}
"""
    )
    process = Process([binary, "-F", "-c", str(conf)], name="dovecot", log_path=workdir / "stdout.log").start()
    try:
        _wait_port(process, imap_port, "dovecot imap")
        _wait_port(process, pop3_port, "dovecot pop3")
        yield imap_port, pop3_port
    finally:
        process.stop()


@contextmanager
def slapd(workdir: Path, cert: Path, key: Path) -> Iterator[int]:
    """A real OpenLDAP slapd answering the StartTLS extended operation on a free port."""
    binary = require_binary("/usr/sbin/slapd", "slapd")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "slapd.conf"
    conf.write_text(
        f"pidfile {workdir}/slapd.pid\n"
        f"argsfile {workdir}/slapd.args\n"
        f"TLSCertificateFile {cert}\n"
        f"TLSCertificateKeyFile {key}\n"
    )
    argv = [binary, "-d", "0", "-h", f"ldap://{LOOPBACK}:{port}/", "-f", str(conf)]
    process = Process(argv, name="slapd", log_path=workdir / "slapd.log").start()
    try:
        _wait_port(process, port, "slapd")
        yield port
    finally:
        process.stop()


@contextmanager
def vsftpd(workdir: Path, cert: Path, key: Path) -> Iterator[int]:
    """A real vsftpd answering ``AUTH TLS`` on a free port (nobody logs in)."""
    binary = require_binary("/usr/sbin/vsftpd", "vsftpd")
    workdir.mkdir(parents=True, exist_ok=True)
    empty = workdir / "empty"
    empty.mkdir(mode=0o755, exist_ok=True)
    port = free_port()
    conf = workdir / "vsftpd.conf"
    conf.write_text(
        "listen=YES\nlisten_ipv6=NO\nbackground=NO\n"
        f"listen_address={LOOPBACK}\nlisten_port={port}\n"
        "anonymous_enable=NO\nlocal_enable=YES\nseccomp_sandbox=NO\n"
        f"secure_chroot_dir={empty}\n"
        f"xferlog_enable=NO\nvsftpd_log_file={workdir}/vsftpd.log\n"
        f"ssl_enable=YES\nrsa_cert_file={cert}\nrsa_private_key_file={key}\n"
        "require_ssl_reuse=NO\nssl_ciphers=HIGH\n"
    )
    process = Process([binary, str(conf)], name="vsftpd", log_path=workdir / "stdout.log").start()
    try:
        _wait_port(process, port, "vsftpd")
        yield port
    finally:
        process.stop()


def _postgres_bin(tool: str) -> str:
    root = Path("/usr/lib/postgresql")
    versions = sorted(root.glob("*/bin/" + tool)) if root.is_dir() else []
    if not versions:
        return require_binary(tool, "postgresql")
    return str(versions[-1])


class PrivatePostgres:
    """A throwaway PostgreSQL cluster (see :func:`private_postgres`): ``port``, and ``freeze()``/``thaw()``
    which SIGSTOP/SIGCONT the postmaster and every backend, as a partitioned network looks to a client
    (the kernel still accepts connections and acknowledges data; nobody answers)."""

    def __init__(self, process: Process, port: int) -> None:
        self.process = process
        self.port = port
        self.frozen = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@{LOOPBACK}:{self.port}/postgres"

    def _pids(self) -> list[int]:
        postmaster = self.process.pid
        pids = [postmaster]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with suppress(OSError, ValueError, IndexError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    pids.append(int(stat.parent.name))
        return pids

    def freeze(self) -> None:
        self.frozen = True
        for pid in self._pids():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._pids():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.frozen = False


@contextmanager
def private_postgres(*settings: str, files: Callable[[Path], list[str]] | None = None) -> Iterator[PrivatePostgres]:
    """A throwaway PostgreSQL cluster on a free loopback port, trust auth for ``postgres``.

    initdb refuses root, so the cluster is owned by and run as the ``postgres`` OS user, in a
    directory of its own (pytest's temp dirs are private to root). ``settings`` are extra
    ``-c name=value`` arguments; ``files(base)`` may write files (owned by ``postgres``) first and
    return more settings that name them. The cluster is thawed and stopped at the end.
    """
    owner = pwd.getpwnam("postgres")
    base = Path(tempfile.mkdtemp(prefix="certloop-pg-"))
    try:
        os.chown(base, owner.pw_uid, owner.pw_gid)
        more = files(base) if files is not None else []
        for path in base.rglob("*"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        data = base / "data"
        as_postgres = ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--init-groups", "--"]
        subprocess.run(
            [*as_postgres, _postgres_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
             "--no-sync", "--no-instructions"],
            check=True, capture_output=True, timeout=120,
        )
        port = free_port()
        argv = [
            *as_postgres, _postgres_bin("postgres"), "-D", str(data), "-p", str(port),
            "-c", f"listen_addresses={LOOPBACK}", "-c", f"unix_socket_directories={base}",
            "-c", "fsync=off", "-c", "shared_buffers=8MB", "-c", "max_connections=40",
        ]
        for setting in (*settings, *more):
            argv += ["-c", setting]
        process = Process(argv, name="postgres", log_path=base / "postgres.log").start()
        cluster = PrivatePostgres(process, port)
        try:
            _wait_port(process, port, "postgres", timeout=60)
            ready = [_postgres_bin("pg_isready"), "-q", "-h", LOOPBACK, "-p", str(port), "-U", "postgres"]
            process.wait_until(lambda: subprocess.run(ready, check=False, timeout=10).returncode == 0, 60,
                               "postgres to accept connections")  # the port opens before recovery ends
            yield cluster
        finally:
            if cluster.frozen:
                cluster.thaw()
            process.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def postgres_with_ssl(cert: Issued) -> Iterator[int]:
    """A throwaway PostgreSQL cluster with ``ssl = on`` presenting ``cert``, on a free port."""

    def tls_files(base: Path) -> list[str]:
        tls = base / "tls"
        tls.mkdir()
        paths = cert.write(tls, "server")
        return ["ssl=on", f"ssl_cert_file={paths['fullchain']}", f"ssl_key_file={paths['key']}"]

    with private_postgres(files=tls_files) as cluster:
        yield cluster.port


__all__ = [
    "Handler",
    "PrivatePostgres",
    "ThreadedServer",
    "dovecot",
    "endless_banner",
    "garbage",
    "ipv6_loopback_available",
    "postgres_with_ssl",
    "private_postgres",
    "reset_mid_handshake",
    "scripted",
    "server_context",
    "silent",
    "slapd",
    "tls_after",
    "vsftpd",
]
