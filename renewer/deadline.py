"""Deadlines for the job store's database I/O, enforced from outside the thread that waits.

    watchdog = Watchdog(abort=abort_connection)
    with watchdog.deadline(time.monotonic() + 1.5):   # in the store thread, around one store operation
        ...                                           # the engine's checkout event calls watchdog.watch(conn)

Why a watchdog: a database server that stops answering (a SIGSTOPped postmaster, a partitioned network)
leaves a driver waiting on its socket for ever; psycopg has no client-side statement timeout and the
kernel keeps acknowledging, so neither TCP keepalives nor ``tcp_user_timeout`` end the wait. A store
thread stuck so is lost to every later call. The watchdog thread keeps the deadline of each armed store
thread and, once it passes, aborts that thread's connection (``abort``: shut the socket down, interrupt
SQLite); the driver then fails at once, the pool discards the connection, the thread is free again.

What must stay true: an abort only ever hits the connection checked out by the thread whose deadline
passed, and never after that thread disarmed (arming, watching, disarming and aborting share one lock).
The connect phase is not covered (no connection exists yet): drivers bound it with their own connect
timeout (:func:`renewer.database.create_engine`).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from certloop.renewer.errors import DeadlinePassed

__all__ = ["Arm", "Watchdog"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Arm:
    """One armed deadline: a monotonic time, the connection in use, whether the watchdog fired."""

    at: float
    conn: Any = None
    fired: bool = False
    seq: int = field(default=0)

    def remaining(self) -> float:
        return self.at - time.monotonic()


class Watchdog:
    """Aborts the connection of a thread that outlives its deadline; one daemon thread per store."""

    def __init__(self, abort: Callable[[Any], None]) -> None:
        self._abort = abort
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Arm]] = []
        self._local = threading.local()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.fired = 0  # connections aborted (tests look at it)
        self.abort_failures = 0  # aborts that raised (a bug in ``abort``)

    def current(self) -> Arm | None:
        """The calling thread's armed deadline, if any."""
        arm: Arm | None = getattr(self._local, "arm", None)
        return arm

    @contextmanager
    def deadline(self, at: float | None) -> Iterator[Arm | None]:
        """Arm ``at`` (monotonic seconds) for the calling thread; ``None`` arms nothing."""
        if at is None:
            yield None
            return
        arm = Arm(at, seq=next(self._seq))
        with self._cond:
            if self._closed:
                raise DeadlinePassed("the store is closed")
            heapq.heappush(self._heap, (at, arm.seq, arm))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="store-watchdog", daemon=True)
                self._thread.start()
            if self._heap[0][2] is arm:  # the new earliest deadline: the watchdog must wake earlier
                self._cond.notify()
        self._local.arm = arm
        try:
            yield arm
        finally:
            self._local.arm = None
            with self._cond:
                arm.conn = None  # disarmed: the watchdog forgets it (its heap entry is skipped)
                arm.at = float("-inf")

    def watch(self, conn: Any) -> None:
        """From now on the calling thread's deadline aborts ``conn``; raise when it already passed."""
        arm = self.current()
        if arm is None:
            return
        with self._cond:
            if arm.fired or arm.remaining() <= 0:
                arm.fired = True
                raise DeadlinePassed("deadline passed before the database was used")
            arm.conn = conn

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(5)

    def _abort_failed(self) -> None:
        """Called in an ``except`` block: the first failure with its traceback, later ones with the count."""
        self.abort_failures += 1
        if self.abort_failures == 1:
            log.exception("cannot abort a database connection past its deadline (the watchdog goes on)")
        else:
            log.error("cannot abort a database connection past its deadline: %d failures so far (the first "
                      "one's traceback was logged)", self.abort_failures)

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].at == float("-inf") or self._heap[0][0] <= now):
                    _, _, arm = heapq.heappop(self._heap)
                    if arm.at == float("-inf"):
                        continue  # disarmed in time
                    arm.fired = True
                    if arm.conn is not None:
                        self.fired += 1
                        try:
                            self._abort(arm.conn)
                        except Exception:
                            # The one last-resort catch, on purpose: ``abort`` already ends quietly on what it
                            # expects (renewer.database.abort_connection), so this is a bug; but a dead
                            # watchdog would leave every later deadline unenforced and the store's threads
                            # stuck on a silent database for ever. The traceback is logged once, then counted.
                            self._abort_failed()
                timeout = self._heap[0][0] - now if self._heap else None
                self._cond.wait(timeout)
