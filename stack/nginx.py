"""A real nginx on loopback with a generated, non-root-safe configuration.

    web = Nginx(workdir)
    web.add_site(["shop.example"], cert, key, listen=[("127.0.0.1", port)], default=True)
    web.add_http_site(["shop.example"], webroot, listen=[("127.0.0.1", http_port)])   # ACME http-01
    web.start()
    ...                                  # replace the certificate files
    web.reload()                         # real `nginx -s reload`, returns once new workers serve

The pid file, logs and temp paths live in ``workdir``; nginx runs with ``daemon off`` under our
supervision. As root, workers run as root too (``user root``) so they can read pytest's 0700 temp dirs.
:meth:`Nginx.argv_for` gives the exact argv a deployer (the renewer) should run for ``test``/``reload``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stack.process import (
    LOOPBACK,
    NotReady,
    Peer,
    Process,
    StackError,
    children_of,
    port_open,
    require_binary,
)

Listen = tuple[str, int]
START_TIMEOUT = 10.0
RELOAD_TIMEOUT = 10.0


class NginxError(StackError):
    """nginx refused a configuration or a signal. ``output`` is what nginx printed."""

    def __init__(self, action: str, returncode: int | None, output: str) -> None:
        self.action = action
        self.returncode = returncode
        self.output = output
        super().__init__(f"nginx {action} failed (exit {returncode}):\n{output}")


@dataclass(frozen=True)
class Site:
    """One ``server`` block. TLS when ``cert_path`` is set, else plain HTTP serving ``webroot``."""

    server_names: tuple[str, ...]
    listen: tuple[Listen, ...]
    cert_path: Path | None = None
    key_path: Path | None = None
    webroot: Path | None = None
    default: bool = False
    body: str = ""

    def render(self) -> str:
        tls = self.cert_path is not None
        lines = ["    server {"]
        for host, port in self.listen:
            flags = (" ssl" if tls else "") + (" default_server" if self.default else "")
            lines.append(f"        listen {host}:{port}{flags};")
        lines.append(f"        server_name {' '.join(self.server_names)};")
        if tls:
            lines.append(f'        ssl_certificate "{self.cert_path}";')
            lines.append(f'        ssl_certificate_key "{self.key_path}";')
        if self.webroot is not None:
            lines.append("        location /.well-known/acme-challenge/ {")
            lines.append(f'            root "{self.webroot}";')
            lines.append("            default_type text/plain;")
            lines.append("        }")
        body = self.body.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'        location / {{ return 200 "{body}\\n"; }}')
        lines.append("    }")
        return "\n".join(lines)


class Nginx(Peer):
    """nginx with prefix ``workdir``; add sites, then :meth:`start`; change them, then :meth:`reload`."""

    def __init__(self, workdir: Path, *, name: str = "nginx") -> None:
        self.binary = require_binary("nginx", "nginx")
        self.name = name
        # The workers' user when run as root (``user`` directive); None: root, so they read any path.
        # Set it (e.g. "nobody nogroup") to test file permissions the way a packaged nginx sees them.
        self.worker_user: str | None = None
        self.prefix = workdir.resolve()
        self.conf_path = self.prefix / "nginx.conf"
        self.error_log = self.prefix / "logs" / "error.log"
        self.pid_path = self.prefix / "nginx.pid"
        self.sites: list[Site] = []
        for sub in ("logs", "tmp"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)

    # -- configuration -------------------------------------------------------------------------

    def add_site(
        self,
        server_names: Sequence[str],
        cert_path: Path,
        key_path: Path,
        listen: Iterable[Listen],
        *,
        default: bool = False,
        body: str | None = None,
    ) -> Site:
        """A TLS site answering ``server_names`` (by SNI) on every ``listen`` address.

        ``cert_path`` may be a full chain (leaf first). The site answers ``GET /`` with ``body``
        (default: the first server name) so tests can tell sites apart. Call :meth:`reload` after
        adding a site to a running nginx.
        """
        site = Site(
            server_names=tuple(server_names),
            listen=tuple(listen),
            cert_path=Path(cert_path),
            key_path=Path(key_path),
            default=default,
            body=body if body is not None else server_names[0],
        )
        self.sites.append(site)
        return site

    def add_http_site(
        self,
        server_names: Sequence[str],
        webroot: Path,
        listen: Iterable[Listen],
        *,
        default: bool = False,
    ) -> Site:
        """A plain-HTTP site serving ``webroot/.well-known/acme-challenge/`` (ACME http-01)."""
        webroot.joinpath(".well-known", "acme-challenge").mkdir(parents=True, exist_ok=True)
        site = Site(
            server_names=tuple(server_names),
            listen=tuple(listen),
            webroot=webroot.resolve(),
            default=default,
            body=server_names[0],
        )
        self.sites.append(site)
        return site

    def remove_site(self, site: Site) -> None:
        self.sites.remove(site)

    def render(self) -> str:
        """The full nginx.conf for the current sites."""
        tmp = self.prefix / "tmp"
        user = f"user {self.worker_user or 'root root'};\n" if os.geteuid() == 0 else ""
        temp_paths = "\n".join(
            f'    {kind}_temp_path "{tmp / kind}";' for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        sites = "\n".join(site.render() for site in self.sites)
        return (
            "# generated by stack/nginx.py\n"
            "daemon off;\n"
            "master_process on;\n"
            "worker_processes 1;\n"
            f"{user}"
            f'pid "{self.pid_path}";\n'
            f'error_log "{self.error_log}" notice;\n'
            "events { worker_connections 128; }\n"
            "http {\n"
            f'    access_log "{self.prefix / "logs" / "access.log"}";\n'
            "    default_type text/plain;\n"
            "    keepalive_timeout 0;\n"
            f"{temp_paths}\n"
            f"{sites}\n"
            "}\n"
        )

    def write_config(self) -> Path:
        tmp = self.conf_path.with_suffix(".conf.tmp")
        tmp.write_text(self.render())
        os.replace(tmp, self.conf_path)
        return self.conf_path

    def argv_for(self, action: str) -> list[str]:
        """Exact argv for ``run`` (foreground master), ``test`` (``nginx -t``) or ``reload``/``quit``."""
        base = [self.binary, "-p", f"{self.prefix}/", "-c", str(self.conf_path), "-e", str(self.error_log)]
        if action == "run":
            return base
        if action == "test":
            return [*base, "-t"]
        if action in ("reload", "quit", "stop", "reopen"):
            return [*base, "-s", action]
        raise ValueError(f"unknown nginx action {action!r}")

    # -- lifecycle -----------------------------------------------------------------------------

    def _run(self, action: str) -> str:
        try:
            done = subprocess.run(
                self.argv_for(action), capture_output=True, text=True, timeout=30, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise NginxError(action, None, str(exc)) from exc
        output = done.stdout + done.stderr
        if done.returncode != 0:
            raise NginxError(action, done.returncode, output)
        return output

    def test_config(self) -> str:
        """Write the config and run ``nginx -t``; raise :class:`NginxError` if nginx rejects it."""
        self.write_config()
        return self._run("test")

    @property
    def listen_addresses(self) -> list[Listen]:
        return sorted({address for site in self.sites for address in site.listen})

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Write the config, start the master in the foreground, wait until every address listens."""
        self.write_config()
        self.process = Process(
            self.argv_for("run"), name=self.name, log_path=self.prefix / "logs" / "stdout.log"
        ).start()
        addresses = self.listen_addresses
        self.process.wait_until(
            lambda: bool(self.worker_pids()) and all(port_open(h, p) for h, p in addresses),
            timeout,
            f"listening on {addresses}",
        )

    @property
    def master_pid(self) -> int:
        if self.process is None:
            raise StackError(f"{self.name}: not started")
        return self.process.pid

    def worker_pids(self) -> frozenset[int]:
        """PIDs of the master's current worker processes (read from /proc)."""
        if not self.running:
            return frozenset()
        return children_of(self.master_pid)

    def reload(self, timeout: float = RELOAD_TIMEOUT) -> None:
        """Write the config and run the real ``nginx -s reload``; return once new workers serve it."""
        before = self.worker_pids()
        self.write_config()
        offset = self.error_log.stat().st_size if self.error_log.exists() else 0
        self._run("reload")
        self.wait_reloaded(before, timeout, log_offset=offset)

    def wait_reloaded(self, before: frozenset[int], timeout: float = RELOAD_TIMEOUT, *, log_offset: int = 0) -> None:
        """Wait until none of the workers in ``before`` remain and new ones run (someone reloaded).

        Use after a reload triggered elsewhere (e.g. by the renewer): take ``before = worker_pids()``
        first. A reload nginx rejected (``[emerg]`` in the error log) raises :class:`NginxError`.
        """
        if self.process is None:
            raise StackError(f"{self.name}: not started")

        def reloaded() -> bool:
            text = self._error_log_since(log_offset)
            if "[emerg]" in text:
                raise NginxError("reload", None, text)
            now = self.worker_pids()
            return bool(now) and not (now & before)

        try:
            self.process.wait_until(reloaded, timeout, "new workers after reload")
        except NotReady as exc:
            raise NotReady(
                self.name, exc.what, timeout, self._error_log_since(log_offset) or exc.log_tail, exc.returncode
            ) from exc

    def _error_log_since(self, offset: int) -> str:
        try:
            with self.error_log.open("rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def url(self, port: int, host: str = LOOPBACK, scheme: str = "https") -> str:
        return f"{scheme}://{host}:{port}/"
