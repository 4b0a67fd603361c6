"""The daemon runs the worker on its own loop in its own thread (renewer.daemon.WorkerThread).

These tests use a stand-in worker object (recover_all/run/wake, as renewer.worker.Worker has them) because
the point is the threading seam, not renewals: a worker that blocks its loop (as an fsync or a fork does)
must not stall the API's loop, wake/stop must cross threads, and a crash must surface without hanging.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, cast

import pytest

from renewer.daemon import WorkerThread
from renewer.worker import Worker


class StandIn:
    """Blocks its own loop for ``block`` seconds on every wake (synchronously, like a blocking syscall)."""

    def __init__(self, block: float = 0.0, crash: bool = False) -> None:
        self.block = block
        self.crash = crash
        self.wakes = 0
        self.thread: str | None = None
        self.recovered = False
        self._wake: asyncio.Event | None = None

    async def recover_all(self) -> None:
        self.recovered = True

    def wake(self) -> None:
        assert self._wake is not None
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        self.thread = threading.current_thread().name
        self._wake = asyncio.Event()
        if self.crash:
            raise RuntimeError("worker bug")
        while not stop.is_set():
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
            if self._wake.is_set():
                self._wake.clear()
                self.wakes += 1
                time.sleep(self.block)  # noqa: ASYNC251 - the blocking step this seam exists for


def thread_of(stand_in: StandIn) -> WorkerThread:
    return WorkerThread(cast(Worker, stand_in))


async def until(predicate: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def test_a_blocked_worker_loop_does_not_stall_the_api_loop() -> None:
    """While the worker's loop is blocked for 0.5 s, the API loop keeps ticking every few milliseconds."""
    stand_in = StandIn(block=0.5)

    async def main() -> float:
        worker = thread_of(stand_in)
        await worker.start()
        assert stand_in.recovered
        await until(lambda: stand_in._wake is not None)
        worker.wake()
        await until(lambda: stand_in.wakes == 1)  # the worker is now inside its blocking step
        worst = 0.0
        for _ in range(20):
            t = time.monotonic()
            await asyncio.sleep(0.005)
            worst = max(worst, time.monotonic() - t)
        await worker.stop()
        return worst

    worst = asyncio.run(main())
    assert stand_in.thread == "renewer-worker"
    assert worst < 0.25  # on the same loop it would have waited for the whole 0.5 s block


def test_wake_crosses_threads_and_stop_ends_the_thread() -> None:
    """Each wake from the API loop reaches the worker's loop; stop returns once the thread has ended."""
    stand_in = StandIn()

    async def main() -> WorkerThread:
        worker = thread_of(stand_in)
        await worker.start()
        await until(lambda: stand_in._wake is not None)
        for n in range(1, 4):
            worker.wake()
            await until(lambda n=n: stand_in.wakes == n)
        await worker.stop()
        return worker

    worker = asyncio.run(main())
    assert not worker._thread.is_alive()


def test_a_crashed_worker_surfaces_through_wait_and_stop_still_returns() -> None:
    """A worker that raises: wait() re-raises it (the daemon stops), stop() does not hang nor raise."""
    stand_in = StandIn(crash=True)

    async def main() -> None:
        worker = thread_of(stand_in)
        await worker.start()
        with pytest.raises(RuntimeError, match="worker bug"):
            await asyncio.wait_for(worker.wait(), 5)
        await asyncio.wait_for(worker.stop(), 5)

    asyncio.run(main())
