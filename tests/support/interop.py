"""Real TLS servers from other TLS stacks, for the interoperability tests.

    with openssl_server(tmp, issued, require_client_cert=True, sni_name="other.example") as port: ...
    with gnutls_server(tmp, issued, protocol="1.3") as port: ...
    with java_server(tmp, java_classes, issued) as port: ...

OpenSSL's ``s_server``, GnuTLS's ``gnutls-serv`` (Debian ``gnutls-bin``) and a tiny JSSE server
(``InteropServer.java`` beside this file, compiled with the installed JDK by :func:`compile_java`):
three independent TLS implementations, each started on a free port and stopped by PID.
``require_client_cert`` makes the server refuse a client without a certificate (after it has
presented its own chain); ``sni_name`` makes it answer any other SNI with a *warning-level*
``unrecognized_name`` alert before its ServerHello, as Apache httpd and others do.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stack.process import LOOPBACK, Process, free_port, port_open, require_binary
from tests.support.pki import Issued

_JAVA_SOURCE = Path(__file__).with_name("InteropServer.java")
_START_TIMEOUT = 20.0


def _serve(argv: list[str], workdir: Path, name: str, port: int) -> Iterator[int]:
    process = Process(argv, name=name, log_path=workdir / f"{name}.log", cwd=workdir)
    with process:
        process.wait_until(lambda: port_open(LOOPBACK, port), _START_TIMEOUT, f"{name} on {LOOPBACK}:{port}")
        yield port


@contextmanager
def openssl_server(
    workdir: Path, issued: Issued, *, protocol: str = "1.2", require_client_cert: bool = False,
    sni_name: str | None = None,
) -> Iterator[int]:
    """``openssl s_server -www`` presenting ``issued`` and its chain; ``-Verify 1`` when a client
    certificate is required; ``-servername`` (with the same certificate as the second one) for
    the warning alert on another SNI."""
    binary = require_binary("openssl", "openssl")
    paths = issued.write(workdir, "openssl")
    port = free_port()
    argv = [binary, "s_server", "-accept", f"{LOOPBACK}:{port}", "-www", "-quiet",
            "-cert", str(paths["cert"]), "-key", str(paths["key"]), "-cert_chain", str(paths["chain"]),
            f"-tls{protocol.replace('.', '_')}"]
    if require_client_cert:
        argv += ["-Verify", "1"]
    if sni_name is not None:
        argv += ["-servername", sni_name, "-cert2", str(paths["cert"]), "-key2", str(paths["key"])]
    yield from _serve(argv, workdir, "s_server", port)


@contextmanager
def gnutls_server(
    workdir: Path, issued: Issued, *, protocol: str = "1.2", require_client_cert: bool = False,
    sni_name: str | None = None,
) -> Iterator[int]:
    """GnuTLS's ``gnutls-serv`` presenting ``issued`` and its chain, one protocol version only.

    It has no listen-address option and binds every interface; the tests connect to loopback only."""
    binary = require_binary("gnutls-serv", "gnutls-bin")
    paths = issued.write(workdir, "gnutls")
    port = free_port()
    argv = [binary, "--port", str(port), "--x509certfile", str(paths["fullchain"]),
            "--x509keyfile", str(paths["key"]), f"--priority=NORMAL:-VERS-ALL:+VERS-TLS{protocol}"]
    argv.append("--require-client-cert" if require_client_cert else "--disable-client-cert")
    if sni_name is not None:
        argv += ["--sni-hostname", sni_name]
    yield from _serve(argv, workdir, "gnutls-serv", port)


def compile_java(directory: Path) -> Path:
    """Compile ``InteropServer.java`` into ``directory`` with the installed JDK; the class path."""
    javac = require_binary("javac", "openjdk-17-jdk-headless")
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run([javac, "-d", str(directory), str(_JAVA_SOURCE)], check=True, capture_output=True, timeout=120)
    return directory


@contextmanager
def java_server(
    workdir: Path, classes: Path, issued: Issued, *, protocol: str = "1.2", require_client_cert: bool = False,
) -> Iterator[int]:
    """The JSSE server from :func:`compile_java`, with ``issued`` in a PKCS#12 keystore."""
    java = require_binary("java", "openjdk-17-jdk-headless")
    password = "interop"
    keystore = workdir / "server.p12"
    workdir.mkdir(parents=True, exist_ok=True)
    keystore.write_bytes(issued.pkcs12(password.encode()))
    port = free_port()
    argv = [java, "-Xshare:auto", "-XX:TieredStopAtLevel=1", "-cp", str(classes), "InteropServer",
            str(port), str(keystore), password, f"TLSv{protocol}", "true" if require_client_cert else "false"]
    yield from _serve(argv, workdir, "jsse", port)
