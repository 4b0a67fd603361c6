"""The processes a benchmark runs: nginx sized for thousands of targets, blackbox_exporter, certloop.

    web = BenchNginx(workdir / "nginx", targets=5000)      # stack.nginx.Nginx with room for N listeners
    box = Blackbox.start(workdir / "blackbox", modules)     # Debian's prometheus-blackbox-exporter
    exp = start_exporter(workdir / "certloop", config)      # `certloop exporter` (stack.daemons)
    ns = MountNamespace.create(workdir / "ns")              # a private mount namespace (needs root)
    ns.bind(hosts_file, "/etc/hosts")                       # seen only by processes started with ns.prefix
    box = Blackbox.start(workdir / "blackbox", modules, prefix=ns.prefix)

Everything listens on 127.0.0.1 on free ports and is stopped by PID.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import requests
import yaml

from stack.daemons import CertloopDaemon
from stack.nginx import Nginx
from stack.process import LOOPBACK, Process, free_port, require_binary

START_TIMEOUT = 60.0
SERVER_WORKERS = 2  # nginx workers: one per core, as a production box would run


class BenchNginx(Nginx):
    """nginx whose event limits fit ``targets`` listening sockets (each costs a connection slot per worker)."""

    def __init__(self, workdir: Path, *, targets: int) -> None:
        super().__init__(workdir, name="bench-nginx")
        self.worker_connections = targets + 2048
        self.rlimit = 2 * self.worker_connections + 64

    def render(self) -> str:
        base = super().render()
        sized = base.replace("worker_processes 1;", f"worker_processes {SERVER_WORKERS};\n"
                             f"worker_rlimit_nofile {self.rlimit};")
        sized = sized.replace("events { worker_connections 128; }",
                              f"events {{ worker_connections {self.worker_connections}; }}")
        sized = sized.replace("http {\n", "http {\n    server_names_hash_max_size 65536;\n"
                              "    server_names_hash_bucket_size 128;\n", 1)
        wanted = (f"worker_processes {SERVER_WORKERS};", f"worker_connections {self.worker_connections};",
                  "server_names_hash_max_size")
        if not all(w in sized for w in wanted):
            raise RuntimeError("stack/nginx.py's config template changed; update BenchNginx.render")
        return sized


class Blackbox:
    """Debian's prometheus-blackbox-exporter with the given modules (``/probe?target=..&module=..``)."""

    def __init__(self, process: Process, port: int) -> None:
        self.process = process
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @classmethod
    def start(cls, workdir: Path, modules: Mapping[str, Any], *, prefix: Sequence[str] = ()) -> Self:
        """Started (``prefix``: e.g. :attr:`MountNamespace.prefix`) and answering ``/-/healthy``."""
        binary = require_binary("prometheus-blackbox-exporter", "prometheus-blackbox-exporter")
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "blackbox.yml"
        config.write_text(yaml.safe_dump({"modules": dict(modules)}, sort_keys=False))
        port = free_port()
        argv = [*prefix, binary, f"--config.file={config}", f"--web.listen-address={LOOPBACK}:{port}",
                "--log.level=warn"]
        process = Process(argv, name="blackbox_exporter", log_path=workdir / "blackbox.log").start()
        box = cls(process, port)
        process.wait_until(lambda: _http_ok(f"{box.url}/-/healthy"), START_TIMEOUT, "/-/healthy")
        return box

    def stop(self) -> None:
        self.process.stop()


def tls_module(server_name: str | None = None) -> dict[str, Any]:
    """blackbox's usual certificate-expiry module: TCP + TLS, no verification (certloop reports the verdict)."""
    tls: dict[str, Any] = {"insecure_skip_verify": True}
    if server_name is not None:
        tls["server_name"] = server_name
    return {"prober": "tcp", "timeout": "5s", "tcp": {"tls": True, "tls_config": tls}}


class PrefixedDaemon(CertloopDaemon):
    """A certloop daemon whose command line starts with ``prefix`` (e.g. ``nsenter --mount=...``)."""

    def __init__(self, component: str, workdir: Path, config: Mapping[str, Any], *,
                 prefix: Sequence[str] = (), extra_args: tuple[str, ...] = ()) -> None:
        super().__init__(component, workdir, config, extra_args=extra_args)
        self.prefix = tuple(prefix)

    def argv(self) -> list[str]:
        return [*self.prefix, *super().argv()]


def start_exporter(workdir: Path, config: Mapping[str, Any], timeout: float = START_TIMEOUT, *,
                   prefix: Sequence[str] = (), extra_args: tuple[str, ...] = ()) -> CertloopDaemon:
    """``certloop exporter`` on a free port, started and ready (first sweep done)."""
    daemon = PrefixedDaemon("exporter", workdir, config, prefix=prefix, extra_args=extra_args)
    daemon.start(timeout)
    return daemon


class MountNamespace:
    """A private mount namespace held open by a sleeping ``unshare``; files are bind-mounted into it.

    Processes started with :attr:`prefix` (``nsenter --mount=/proc/PID/ns/mnt --``) run in it:
    nsenter enters the namespace and execs the program (no fork, so the PID stays the program's,
    which the CPU accounting relies on). Both exporters of a variant run in the same namespace and
    see the same /etc files; nothing outside it does. Needs root (CAP_SYS_ADMIN).
    """

    def __init__(self, holder: Process) -> None:
        self.holder = holder

    @classmethod
    def create(cls, workdir: Path) -> Self:
        unshare = require_binary("unshare", "util-linux")
        holder = Process([unshare, "--mount", "--propagation", "private", "sleep", "86400"],
                         name="mount-namespace", log_path=workdir / "namespace.log").start()
        ours = os.readlink("/proc/self/ns/mnt")

        def entered() -> bool:
            try:
                return os.readlink(f"/proc/{holder.pid}/ns/mnt") != ours
            except OSError:
                return False

        holder.wait_until(entered, 10, "unshare to create the mount namespace")
        return cls(holder)

    @property
    def prefix(self) -> list[str]:
        return [require_binary("nsenter", "util-linux"), f"--mount=/proc/{self.holder.pid}/ns/mnt", "--"]

    def bind(self, source: Path, target: str) -> None:
        """``mount --bind source target`` inside the namespace only."""
        subprocess.run([*self.prefix, "mount", "--bind", str(source), target], check=True, timeout=10,
                       capture_output=True)

    def stop(self) -> None:
        self.holder.stop()  # the namespace and its mounts go with its last process


def daemon_pid(daemon: CertloopDaemon) -> int:
    if daemon.process is None:
        raise RuntimeError("certloop daemon not started")
    return daemon.process.pid


def _http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False
