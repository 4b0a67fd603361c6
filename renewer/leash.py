"""A leash for every program the renewer runs: it dies with the renewer, its whole process group too.

Run as a script, not imported (``python -I -S leash.py PARENT_PID UMASK ARGV...``), as the leader of
a fresh session and process group (``start_new_session``). It:

1. asks the kernel for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``), then checks the
   parent is still the one that started it (a parent that died before the ``prctl`` sends nothing);
2. sets the umask it was given (``-`` keeps the inherited one): an issuer that writes http-01
   challenge files for a web server running as another user must not inherit a restrictive one;
3. starts the program in this process group and waits for it, passing its exit status on
   (128 + N when a signal N ended it);
4. on SIGTERM/SIGHUP (the renewer died, or someone stops it) kills the whole group - the program and
   anything it started - with SIGKILL, itself included.

Why a separate process and not ``preexec_fn``: the renewer has threads (the store, ``to_thread``), and
code run between ``fork`` and ``exec`` in a threaded process may deadlock on a lock another thread
held at fork time. This process has one thread, so ``prctl`` through ``ctypes`` and a plain
``fork``/``exec`` are safe here. It uses only a few standard modules and imports nothing from
certloop (it runs with ``-I -S``: no site-packages, whose ``.pth`` files cost more than the rest).

The parent-death signal follows the *thread* that forked the leash: the renewer starts programs from
its event loop, in the main thread, which lives as long as the process.

A program that cannot be started is reported on stderr as ``certloop-leash: cannot start ...`` with
exit status 127 (:data:`CANNOT_START`), which :func:`certloop.renewer.programs.run_program` turns back
into "cannot start".
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from types import FrameType

CANNOT_START = 127
CANNOT_START_MARK = "certloop-leash: cannot start "
_PR_SET_PDEATHSIG = 1


def _kill_group(signum: int, frame: FrameType | None) -> None:
    os.killpg(0, signal.SIGKILL)  # our group: the program, its children, and this process


def main(argv: list[str]) -> int:
    parent, umask, program = int(argv[1]), argv[2], argv[3:]
    signal.signal(signal.SIGTERM, _kill_group)
    signal.signal(signal.SIGHUP, _kill_group)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        print(f"certloop-leash: prctl failed: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return CANNOT_START
    if os.getppid() != parent:  # the renewer died before the kernel could be told
        return CANNOT_START
    if umask != "-":
        os.umask(int(umask, 8))
    pid = os.fork()
    if pid == 0:  # stdio, cwd, env and process group are ours; exec resets our signal handlers
        try:
            os.execvp(program[0], program)  # noqa: S606 - argv as configured, never a shell
        except OSError as exc:
            os.write(2, f"{CANNOT_START_MARK}{program[0]!r}: {exc.strerror}\n".encode())
        os._exit(CANNOT_START)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
