"""stack.process: children are started in their own session, stopped by PID, and fail loudly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stack.process import NotReady, Process, ProcessGroup, ToolMissing, free_port, require_binary, wait_for_port

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
