"""stack.process: children are started in their own session, stopped by PID, and fail loudly."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from stack.process import (
    NotReady,
    Process,
    ProcessGroup,
    StackError,
    ToolMissing,
    free_port,
    require_binary,
    wait_for_port,
    wait_until,
)

# The children below sleep to stay alive until stopped: that is the behaviour under test, not a wait.
IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ign' + 'oring', flush=True); "
    "time.sleep(60)"
)


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    """A child ignoring SIGTERM is killed after the bound; stop() returns -SIGKILL."""
    proc = Process([sys.executable, "-c", IGNORES_SIGTERM], name="stubborn", log_path=tmp_path / "log").start()
    proc.wait_until(lambda: "ignoring" in proc.log_tail(), timeout=10, what="SIGTERM ignored")
    assert proc.stop(timeout=0.5) == -9
    assert not proc.running


def test_wait_until_fails_fast_with_the_log_tail_when_the_child_exits(tmp_path: Path) -> None:
    """A child that dies makes wait_until raise NotReady with its exit code and last output."""
    proc = Process(
        [sys.executable, "-c", "import sys; print('bad flag --x'); sys.exit(3)"], name="dies", log_path=tmp_path / "log"
    ).start()
    with pytest.raises(NotReady) as info:
        proc.wait_until(lambda: False, timeout=30, what="never")
    assert info.value.returncode == 3
    assert "bad flag --x" in info.value.log_tail
    proc.stop()


def test_group_stops_everything_it_started(tmp_path: Path) -> None:
    """Leaving a ProcessGroup stops its children; the port the child served is closed afterwards."""
    port = free_port()
    server = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    with ProcessGroup() as group:
        proc = group.start(server, name="http", log_path=tmp_path / "log", cwd=tmp_path)
        wait_for_port("127.0.0.1", port, timeout=10)
    assert not proc.running
    with pytest.raises(NotReady):
        wait_for_port("127.0.0.1", port, timeout=0.2)


def test_missing_tool_names_the_package() -> None:
    """A missing binary is a ToolMissing error naming the Debian package, not a skip."""
    with pytest.raises(ToolMissing, match="install the Debian package 'no-such-pkg'"):
        require_binary("certloop-no-such-tool", "no-such-pkg")


SUPERVISOR = """
import sys, time
from pathlib import Path
from stack.process import Process, install_signal_handlers
install_signal_handlers()
child = Process([sys.executable, "-c", "import time; time.sleep(120)"], name="child",
                log_path=Path(sys.argv[1])).start()
print(child.pid, flush=True)
time.sleep(120)
"""


def test_sigterm_to_the_supervisor_stops_its_children(tmp_path: Path) -> None:
    """SIGTERM to a process using stack/ (after install_signal_handlers) stops the children it started."""
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, str(tmp_path / "child.log")],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )
    assert supervisor.stdout is not None
    child_pid = int(supervisor.stdout.readline())
    assert pid_alive(child_pid)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(10) == 128 + signal.SIGTERM
    wait_until(lambda: not pid_alive(child_pid), timeout=10, what="child gone")


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_group_stops_added_peers_even_when_one_stop_fails(tmp_path: Path) -> None:
    """ProcessGroup stops any added member with stop(); a failing stop is reported after the others stop."""
    stopped: list[str] = []

    class Peer:
        def __init__(self, name: str, fail: bool = False) -> None:
            self.name, self.fail = name, fail

        def stop(self) -> None:
            stopped.append(self.name)
            if self.fail:
                raise OSError("boom")

    group = ProcessGroup()
    group.add(Peer("first"))
    group.add(Peer("broken", fail=True))
    group.add(Peer("last"))
    with pytest.raises(StackError, match="boom"):
        group.stop_all()
    assert stopped == ["last", "broken", "first"]
