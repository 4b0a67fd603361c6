"""Every program the renewer runs is on a leash (renewer/leash.py): it dies with the renewer,
grandchildren included, gets the umask it is given, and its exit status comes through unchanged."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from certloop.renewer.errors import BackendFailed
from certloop.renewer.programs import run_program
from stack.process import wait_until

REPO = Path(__file__).resolve().parents[2]

# A "renewer": runs one program through run_program and waits; the test kills it with SIGKILL.
_PARENT = """
import asyncio, sys
from certloop.renewer.programs import run_program
asyncio.run(run_program(sys.argv[1:], time_limit=120))
"""
# The program: starts a grandchild (a shell's background sleep), records both pids, waits.
_FAMILY = "sleep 120 & echo $$ $! > {pids}.tmp && mv {pids}.tmp {pids}; wait"


def _alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def test_kill_9_of_the_parent_kills_the_program_and_its_children(tmp_path: Path) -> None:
    """The kernel's parent-death signal reaches the leash, which kills the whole process group: the
    program and the grandchild it started both die within seconds of the parent's kill -9."""
    pids = tmp_path / "pids"
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, "sh", "-c", _FAMILY.format(pids=pids)],
                              cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    family: list[int] = []
    def started() -> bool:
        assert parent.poll() is None, "the parent exited before the program started"
        return pids.exists()

    try:
        wait_until(started, 20, "the program to start")
        family = [int(p) for p in pids.read_text().split()]
        assert all(_alive(p) for p in family)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        wait_until(lambda: not any(_alive(p) for p in family), 10, "the children to die with the parent")
    finally:
        for pid in family:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.kill()


def test_umask_exit_status_and_a_missing_program() -> None:
    """The given umask applies to the program (the renewer's own is kept otherwise); exit codes and
    signals come through; a program that does not exist "cannot start", as without the leash."""
    show = [sys.executable, "-c", "import os; m = os.umask(0); print(oct(m))"]
    old = os.umask(0o027)
    try:
        assert asyncio.run(run_program(show, time_limit=10, umask=0o022)).stdout.strip() == "0o22"
        assert asyncio.run(run_program(show, time_limit=10)).stdout.strip() == "0o27"
    finally:
        os.umask(old)
    assert asyncio.run(run_program(["sh", "-c", "exit 3"], time_limit=10)).returncode == 3
    assert asyncio.run(run_program(["sh", "-c", "kill -TERM $$"], time_limit=10)).returncode == 128 + 15
    with pytest.raises(BackendFailed, match="cannot start: No such file or directory") as info:
        asyncio.run(run_program(["/nonexistent/tool"], time_limit=10))
    assert info.value.returncode is None


def test_a_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    """On timeout the group is killed: the grandchild too."""
    pids = tmp_path / "pids"
    with pytest.raises(BackendFailed, match="timed out after 1s"):
        asyncio.run(run_program(["sh", "-c", _FAMILY.format(pids=pids)], time_limit=1))
    family = [int(p) for p in pids.read_text().split()]
    wait_until(lambda: not any(_alive(p) for p in family), 5, "the group to die with the timeout")
