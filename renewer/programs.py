"""Running an external program: argv (never a shell), a time limit, on a leash, its output kept.

Issuers run their ACME clients with it and install runs the deploy steps with it: one seam for every
program the renewer starts, so each dies with the renewer (:mod:`certloop.renewer.leash`) and a program
that cannot start or overruns its limit is the same error wherever it runs. Imports nothing from the
renewer but its errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from certloop.renewer import leash
from certloop.renewer.errors import BackendFailed

__all__ = ["STDERR_TAIL", "Completed", "run_program"]

STDERR_TAIL = 2000  # characters of a failed program's stderr kept in the error


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str

    @property
    def stderr_tail(self) -> str:
        return self.stderr[-STDERR_TAIL:]


LEASH = Path(leash.__file__)


async def run_program(
    argv: Sequence[str],
    *,
    time_limit: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    what: str = "program",
    umask: int | None = None,
) -> Completed:
    """Run ``argv`` (no shell) on a leash (:mod:`certloop.renewer.leash`) in its own session and process
    group; kill the whole group on timeout, and the kernel kills it when the renewer dies (kill -9).

    ``umask``: the program's umask (None: the renewer's). The one seam where subprocess errors become
    ours: a program that cannot start or overruns ``time_limit`` raises :class:`BackendFailed` with
    ``returncode`` None.
    """
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    mask = "-" if umask is None else f"{umask:o}"
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", str(LEASH), str(os.getpid()), mask, *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=full_env,
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
        )
    except OSError as exc:
        why = f"cannot start: {exc.strerror}"
        raise BackendFailed(f"{what} {argv[0]!r} {why}", None, str(exc), outcome=why) from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(), time_limit)
    except (TimeoutError, asyncio.CancelledError) as exc:
        _kill_group(proc.pid)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5)
        if isinstance(exc, asyncio.CancelledError):
            raise
        why = f"timed out after {time_limit:g}s"
        raise BackendFailed(f"{what} {argv[0]!r} {why}", None, "", outcome=why) from exc
    assert proc.returncode is not None
    stderr = err.decode(errors="replace")
    if proc.returncode == leash.CANNOT_START and stderr.startswith(leash.CANNOT_START_MARK):
        why = "cannot start: " + stderr.strip().rsplit(": ", 1)[-1]
        raise BackendFailed(f"{what} {argv[0]!r} {why}", None, stderr, outcome=why)
    return Completed(proc.returncode, out.decode(errors="replace"), stderr)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
