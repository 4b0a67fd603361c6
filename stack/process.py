"""Supervise real peer processes on loopback: start, wait for readiness, stop by PID.

    with ProcessGroup() as group:
        port = free_port()
        proc = group.start(["prometheus", ...], name="prometheus", log_path=workdir / "prometheus.log")
        wait_for_port("127.0.0.1", port, timeout=10)
    # everything the group started is stopped here (SIGTERM, then SIGKILL after a bound)

Every started process is also registered module-wide, so it is stopped at interpreter exit
(`atexit`) and when the interpreter is asked to terminate (SIGTERM is turned into `SystemExit`
by :func:`install_signal_handlers`; SIGINT already raises `KeyboardInterrupt`). Children run in
their own session, so a Ctrl-C on the terminal reaches only us and we stop them by PID.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Protocol, Self, TypeVar

import requests

from certloop.errors import CertloopError

R = TypeVar("R")
LOOPBACK = "127.0.0.1"
POLL_INTERVAL = 0.05
STOP_TIMEOUT = 5.0


class StackError(CertloopError):
    """Root of the errors raised while running real peers."""


class PeerApiError(StackError):
    """A peer's HTTP API answered with an error (``status`` None: no answer at all)."""

    peer = "peer"

    def __init__(self, what: str, status: int | None, detail: str) -> None:
        self.what = what
        self.status = status
        self.detail = detail
        super().__init__(f"{self.peer} {what}: HTTP {status}: {detail}")


def answers_ok(url: str, verify: bool | str = True) -> bool:
    """True when ``GET url`` answers 200 within a second (a readiness probe)."""
    try:
        return requests.get(url, timeout=1, verify=verify).status_code == 200
    except requests.RequestException:
        return False


class ToolMissing(StackError):
    """A peer binary is not installed. ``tool`` is the executable, ``package`` the Debian package."""

    def __init__(self, tool: str, package: str) -> None:
        self.tool = tool
        self.package = package
        super().__init__(
            f"{tool} not found on PATH: install the Debian package {package!r} (scripts/bootstrap.sh)"
        )


class NotReady(StackError):
    """A peer did not reach a condition in time, or exited. Carries the log tail for diagnosis."""

    def __init__(self, name: str, what: str, timeout: float, log_tail: str, returncode: int | None) -> None:
        self.name = name
        self.what = what
        self.timeout = timeout
        self.log_tail = log_tail
        self.returncode = returncode
        state = f"exited with {returncode}" if returncode is not None else f"not within {timeout:g}s"
        super().__init__(f"{name}: {what}: {state}\n--- log tail ---\n{log_tail}")


def require_binary(tool: str, package: str) -> str:
    """Return the absolute path of ``tool`` or raise :class:`ToolMissing` (a failure, never a skip)."""
    found = shutil.which(tool)
    if found is not None:
        return found
    for directory in ("/usr/sbin", "/usr/bin", "/sbin"):  # sbin is not on a non-root PATH
        candidate = Path(directory) / tool
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise ToolMissing(tool, package)


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out for outgoing connections and ``bind(0)``."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_HANDED_OUT: set[int] = set()


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that is free now and that nothing else is likely to take before our child binds it.

    Ports come from *below* the kernel's ephemeral range: a port from ``bind(0)`` can be taken by any
    outgoing connection (a probe, a scrape) in the moment between our check and the child's bind, which
    made peers fail with "address already in use" under load. Ports handed out once in this process are
    not handed out again.
    """
    low = max(1024, _ephemeral_low() - 12000)
    high = _ephemeral_low() - 1
    for _ in range(500):
        port = random.randint(low, high)  # noqa: S311 - spreading ports, not a secret
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # range exhausted: let the OS choose
        sock.bind((host, 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def children_of(parent: int) -> frozenset[int]:
    """PIDs of the live (not zombie) processes whose parent is ``parent``, read from /proc."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces, so split after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent and fields[0] != "Z":
            pids.add(int(entry.name))
    return frozenset(pids)


def port_open(host: str, port: int) -> bool:
    """True when a TCP connect to ``host:port`` succeeds right now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(
    predicate: Callable[[], R | None], timeout: float, what: str, *, interval: float = POLL_INTERVAL,
    log_tail: Callable[[], str] = str,
) -> R:
    """Poll ``predicate`` every ``interval`` seconds until it returns something truthy, and return that
    (never None, so a predicate answering ``X | None`` gives an ``X``); raise :class:`NotReady` (with
    ``log_tail()``, for diagnosis) at the deadline. What tests wait on instead of sleeping: an exception
    from ``predicate`` (an assertion that the peer is still alive) ends the wait at once."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() >= deadline:
            raise NotReady("condition", what, timeout, log_tail(), None)
        time.sleep(interval)
    return value


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts TCP connections on ``host:port``."""
    wait_until(lambda: port_open(host, port), timeout, f"port {host}:{port} accepting connections")


class Process:
    """One supervised child: argv list, its own session, stdout+stderr appended to ``log_path``."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        log_path: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.name = name
        self.log_path = log_path
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise StackError(f"{self.name}: not started")
        return self._popen.pid

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def start(self) -> Self:
        """Start the child (environment = ours updated with ``env``). Registered for cleanup at exit."""
        if self.running:
            raise StackError(f"{self.name}: already running as PID {self.pid}")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._log.write(f"--- start {' '.join(self.argv)}\n".encode())
        self._log.flush()
        env = {**os.environ, **self.env} if self.env is not None else None
        try:
            self._popen = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            self._log.close()
            raise StackError(f"{self.name}: cannot start {self.argv[0]}: {exc}") from exc
        _LIVE.add(self)
        return self

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log (for error messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``predicate`` until true; fail fast if the process exits, with the log tail either way."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return
            code = self.returncode
            if code is not None:
                raise NotReady(self.name, what, timeout, self.log_tail(), code)
            if time.monotonic() >= deadline:
                raise NotReady(self.name, what, timeout, self.log_tail(), None)
            time.sleep(POLL_INTERVAL)

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the child's PID (if it still runs)."""
        if self.running:
            os.kill(self.pid, signum)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Returns the exit code (None if never started)."""
        popen = self._popen
        if popen is None:
            return None
        if popen.poll() is None:
            try:
                os.kill(popen.pid, signal.SIGTERM)
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(popen.pid, signal.SIGKILL)
                popen.wait(timeout)
            except ProcessLookupError:
                pass
        _LIVE.discard(self)
        if self._log is not None:
            self._log.close()
            self._log = None
        return popen.returncode

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        pid = self._popen.pid if self._popen is not None else None
        return f"Process(name={self.name!r}, pid={pid}, running={self.running})"


class Peer:
    """A peer run as one supervised :class:`Process` (None until started): whether it runs, and stop()."""

    process: Process | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after a bound; its children with it); nothing if never started."""
        if self.process is not None:
            self.process.stop()


class HttpPeer(Peer):
    """A peer binary serving HTTP on a free loopback port (moto, Alertmanager, Prometheus): a subclass gives
    the argv for a port and the path that answers 200 once the peer is ready.

        self.serve(lambda port: [binary, f"--web.listen-address={LOOPBACK}:{port}"], "/-/ready", timeout)
    """

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.port = 0  # chosen by serve()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{LOOPBACK}:{self.port}"

    def serve(self, argv: Callable[[int], Sequence[str]], ready_path: str, timeout: float) -> None:
        """Start ``argv(port)`` on a free port and wait until ``GET url + ready_path`` answers 200 (the
        process exiting first ends the wait at once, with its log tail)."""
        self.port = free_port()
        self.process = Process(argv(self.port), name=self.name, log_path=self.log_path).start()
        ready = f"{self.url}{ready_path}"
        self.process.wait_until(lambda: answers_ok(ready), timeout, ready)


class Stoppable(Protocol):
    """Anything with ``stop()``: a :class:`Process` or a peer wrapper (Nginx, Prometheus, Pebble, ...)."""

    def stop(self) -> object: ...


S = TypeVar("S", bound=Stoppable)


class ProcessGroup:
    """Everything started through or added to the group is stopped by :meth:`stop_all`, newest first.

        with ProcessGroup() as group:
            dns = group.add(ChallTestSrv(...)); dns.start()
            web = group.add(Nginx(...)); web.start()
    """

    def __init__(self) -> None:
        self.members: list[Stoppable] = []

    def add(self, member: S) -> S:
        self.members.append(member)
        return member

    def start(
        self,
        argv: Sequence[str],
        *,
        name: str,
        log_path: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Process:
        """Start a child and keep it in the group."""
        return self.add(Process(argv, name=name, log_path=log_path, cwd=cwd, env=env).start())

    def stop_all(self) -> None:
        """Stop every member, newest first; one failing stop does not keep the others running."""
        errors: list[BaseException] = []
        for member in reversed(self.members):
            try:
                member.stop()
            except Exception as exc:  # collected, re-raised once the others have stopped
                errors.append(exc)
        self.members.clear()
        if errors:
            raise StackError(f"stopping failed: {errors}") from errors[0]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()


_LIVE: set[Process] = set()


def stop_everything() -> None:
    """Stop every process started in this interpreter that still runs (registered with atexit)."""
    for process in list(_LIVE):
        process.stop()


atexit.register(stop_everything)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def install_signal_handlers() -> None:
    """Turn SIGTERM (and SIGHUP) into ``SystemExit`` so ``finally`` blocks and atexit stop children.

    Only replaces default handlers and only from the main thread; SIGINT already raises
    ``KeyboardInterrupt``. Call it from long-running entry points such as ``make demo``.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) == signal.SIG_DFL:
            signal.signal(signum, _terminate)
