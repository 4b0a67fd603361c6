"""The job store's connection to its database: a pool of threads, a deadline on every call, one error seam.

    store = Store(url, timeout=timedelta(seconds=1.5))   # renewer.store composes the tables' operations on this
    job = await store.call(store.claim, owner, now, lease)
    with store.transaction("shared_secret") as conn: ...  # for the small modules beside the store

SQLAlchemy Core over SQLite (default, WAL, one writer at a time via ``BEGIN IMMEDIATE``), PostgreSQL or
MariaDB/MySQL. The tables and the engine set-up (with SQLite's durability trade-off) are in
:mod:`renewer.database`. Database driver errors become :class:`StoreUnavailable` here and nowhere else.

Outages: with a ``timeout``, every :meth:`StoreBase.call` has a deadline counted from the moment it is
asked (queueing for a store thread included). Past it the caller gets :class:`StoreUnavailable` at once,
a call still queued is dropped, and the watchdog (:mod:`renewer.deadline`) aborts the database I/O of a
call already running, so a database that stops answering costs each caller at most ``timeout`` and
never more than the pool's few threads, which come back by themselves; when the database answers
again the next call simply succeeds.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from typing import ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from certloop.renewer import migrations
from certloop.renewer.database import READ_ONLY, abort_connection, create_engine, redact_url
from certloop.renewer.deadline import Watchdog
from certloop.renewer.errors import DeadlinePassed, StoreUnavailable
from certloop.renewer.records import PoolStats

__all__ = ["StoreBase"]

P = ParamSpec("P")
T = TypeVar("T")


class StoreBase:
    """The connection half of :class:`renewer.store.Store`: blocking methods run in a bounded thread pool
    through :meth:`call`, each in a :meth:`transaction`.

    ``timeout``: the deadline of one :meth:`call` (None: no deadline, for the CLI's long operations;
    connecting stays bounded).
    """

    def __init__(
        self, url: str, *, busy_timeout: timedelta = timedelta(seconds=10), timeout: timedelta | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._watchdog = Watchdog(abort_connection)
        self.engine = create_engine(url, busy_timeout, timeout=timeout, watchdog=self._watchdog)
        # SQLite has one writer: more threads would only queue on its lock (and its busy handler sleeps in
        # growing steps, which is what a p99 feels). Servers get a small pool. The pool is the bound on
        # store threads: an outage parks at most these, each until its deadline.
        workers = 1 if self.engine.dialect.name == "sqlite" else 8
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="store")
        # Called with the seconds each operation waited for its connection (a free pool slot, connecting,
        # the checkout ping): the daemon's metrics; runs in the store's threads.
        self.on_connection_wait: Callable[[float], None] | None = None

    def pool_stats(self) -> PoolStats:
        """The pool's counters (SQLAlchemy's ``QueuePool``, SQLite's file databases included); a pool
        without them (SQLite in memory, tests) reports what it can: its checked-out connections or 0."""
        pool = self.engine.pool
        if isinstance(pool, sa.QueuePool):
            # overflow() starts at -size and counts every connection opened: beyond the size is max(0, .)
            return PoolStats(pool.size(), pool.checkedout(), max(0, pool.overflow()))
        checked_out = getattr(pool, "checkedout", None)
        return PoolStats(0, int(checked_out()) if callable(checked_out) else 0, 0)

    @property
    def database(self) -> str:
        """The database URL with its password hidden: for messages."""
        return redact_url(self.url)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._watchdog.close()
        self.engine.dispose()

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking store method in the store's thread pool: ``await store.call(store.claim, ...)``.

        Raises :class:`StoreUnavailable` when the answer is not there within ``timeout``.
        """
        loop = asyncio.get_running_loop()
        if self.timeout is None:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
        seconds = self.timeout.total_seconds()
        work = functools.partial(self._until, time.monotonic() + seconds, fn, *args, **kwargs)
        try:
            # On timeout wait_for cancels the future: a call still queued never runs.
            return await asyncio.wait_for(loop.run_in_executor(self._executor, work), seconds)
        except TimeoutError:
            raise self._timed_out(getattr(fn, "__name__", "call")) from None

    def _until(self, deadline: float, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if time.monotonic() >= deadline:  # waited its whole time in the queue: do not touch the database
            raise self._timed_out(getattr(fn, "__name__", "call"))
        with self._watchdog.deadline(deadline):
            return fn(*args, **kwargs)

    def _timed_out(self, operation: str) -> StoreUnavailable:
        seconds = self.timeout.total_seconds() if self.timeout is not None else 0.0
        return StoreUnavailable(operation, f"no answer from the database within {seconds:g}s", self.database)

    @contextmanager
    def transaction(self, operation: str, *, read_only: bool = False) -> Iterator[Connection]:
        """One transaction on a pooled connection, named ``operation`` in errors: every store method runs in
        one, and so may the small modules beside the store (:mod:`renewer.sharedsecret`). Driver errors
        become :class:`StoreUnavailable`; IntegrityError passes through (the caller's race to handle).
        ``read_only``: SQLite reads a snapshot without the write lock."""
        with self._errors(operation):
            start = time.perf_counter()
            with self.engine.connect() as conn:  # checks a connection out of the pool (SQLAlchemy 2)
                if self.on_connection_wait is not None:
                    self.on_connection_wait(time.perf_counter() - start)
                with conn.execution_options(**{READ_ONLY: read_only}).begin():
                    yield conn

    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        """The one seam: driver errors (and a passed deadline) become :class:`StoreUnavailable`."""
        try:
            yield
        except IntegrityError:
            raise
        except (SQLAlchemyError, DeadlinePassed) as exc:
            arm = self._watchdog.current()
            if isinstance(exc, DeadlinePassed) or (arm is not None and arm.fired):
                raise self._timed_out(operation) from exc
            detail = str(exc.__cause__ or exc).splitlines()[0][:300]
            raise StoreUnavailable(operation, detail, self.database) from exc

    # -- schema (Alembic), with driver errors translated like every other operation ----------------

    def migrate(self, revision: str = "head") -> None:
        with self._errors("migrate"):
            migrations.upgrade(self.engine, revision)

    def downgrade(self, revision: str) -> None:
        with self._errors("downgrade"):
            migrations.downgrade(self.engine, revision)

    def revision(self) -> str | None:
        with self._errors("revision"):
            return migrations.current(self.engine)

    def ping(self) -> None:
        with self.transaction("ping") as conn:
            conn.execute(sa.select(1))
