"""The store's watchdog (renewer/deadline.py) and the abort it calls (renewer.database.abort_connection).

Real connections (SQLite, the running PostgreSQL) where the abort meets a driver; the one injected abort that
raises stands in for a bug, which no real driver can be made to produce on purpose.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

import psycopg
import pytest

from certloop.renewer.database import abort_connection
from certloop.renewer.deadline import Watchdog
from stack.process import wait_until

PG = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def test_aborting_a_connection_closed_meanwhile_is_quiet() -> None:
    """The pool may close a connection between the deadline passing and the abort: nothing is left to
    abort, and the driver's "connection is closed" is not an error of the watchdog's."""
    lite = sqlite3.connect(":memory:")
    lite.close()
    abort_connection(lite)
    pg = psycopg.connect(PG)
    pg.close()
    abort_connection(pg)


def test_aborting_a_live_postgresql_connection_breaks_its_pending_query() -> None:
    """The abort a deadline triggers: the socket is shut down, the query waiting on it fails at once."""
    with psycopg.connect(PG) as pg:
        timer = threading.Timer(0.2, abort_connection, [pg])
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            pg.execute("SELECT pg_sleep(30)")
        timer.join()
        assert time.monotonic() - started < 20  # not the 30 s the query asked for
        assert pg.broken


def test_a_failing_abort_is_logged_once_with_its_traceback_and_the_watchdog_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An abort that raises (a bug) does not end the watchdog: later deadlines are still enforced. The
    first failure is logged with its traceback, the later ones with a count."""
    aborted: list[object] = []

    def abort(conn: object) -> None:
        aborted.append(conn)
        raise RuntimeError(f"bug aborting {conn}")

    caplog.set_level(logging.ERROR, logger="certloop.renewer.deadline")
    watchdog = Watchdog(abort)
    try:
        for n in range(3):
            with watchdog.deadline(time.monotonic() + 0.05) as arm:
                watchdog.watch(f"conn-{n}")
                wait_until(lambda: arm is not None and arm.fired, 10, f"deadline {n} to fire")
        assert aborted == ["conn-0", "conn-1", "conn-2"] and watchdog.abort_failures == 3
    finally:
        watchdog.close()
    records = [r for r in caplog.records if r.name == "certloop.renewer.deadline"]
    assert [r.exc_info is not None for r in records] == [True, False, False]
    assert "3 failures so far" in records[-1].getMessage()
