"""The renewer when its database stops answering: a private PostgreSQL frozen with SIGSTOP (postmaster and
backends, as a partitioned network looks), TCP listeners that accept and never speak (PostgreSQL and MySQL
URLs), SQLite write-locked by another connection. Real `certloop renewer` processes, real databases.

What must hold: the webhook answers 503 within the store's deadline (1.5 s) and half a second, `/-/ready` 503,
`/metrics` 200 from its last snapshot, the store threads stay bounded, the claim loop says so once (not per
poll), and everything recovers by itself when the database answers again. The half second is what a quiet
machine needs; on a loaded one the budget also grants what the load adds to a request that waits on nothing,
measured the same way just before (see :func:`budget`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from certloop.renewer.errors import StoreUnavailable
from certloop.renewer.store import Store
from certloop.renewer.worker import OutageLog
from stack.process import wait_until
from tests.renewer.conftest import TOKEN, RenewerProcess, Setup, clean
from tests.support.servers import PrivatePostgres, ThreadedServer, private_postgres, silent

FIXTURES = Path(__file__).parent / "fixtures"
FIRING = (FIXTURES / "firing.json").read_bytes()
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STORE_DEADLINE = 1.5  # seconds: database.timeout's default, which these renewers run with
MARGIN = 0.5  # seconds past it for the answer to reach Alertmanager on a quiet machine (2 s in all)


@pytest.fixture(scope="module")
def pg() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL cluster this module may freeze."""
    with private_postgres() as cluster:
        yield cluster


@pytest.fixture
def pg_db(pg: PrivatePostgres) -> Iterator[str]:
    """A fresh database on the private cluster."""
    name = f"outage_{secrets.token_hex(4)}"
    admin = sa.create_engine(pg.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield pg.url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        if pg.frozen:
            pg.thaw()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def timed(fn: Callable[[], requests.Response]) -> tuple[int, float, str]:
    start = time.monotonic()
    resp = fn()
    return resp.status_code, time.monotonic() - start, resp.text


def gauge(r: RenewerProcess, name: str) -> float:
    """One unlabelled sample of the renewer's /metrics."""
    for line in r.get("/metrics", token=None).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def threads_of(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def hammer(r: RenewerProcess, requests_: int = 40, *, healthy_only: bool = False) -> list[tuple[str, int, float, str]]:
    """Webhooks, readiness and metrics at once, each on its own connection: (what, status, seconds, body).
    ``healthy_only``: as many /-/healthy requests, sent the same way (they wait on nothing)."""

    def one(i: int) -> tuple[str, int, float, str]:
        with requests.Session() as s:
            if healthy_only:
                return ("healthy", *timed(lambda: s.get(r.url + "/-/healthy", timeout=30)))
            if i % 4 == 1:
                return ("ready", *timed(lambda: s.get(r.url + "/-/ready", timeout=30)))
            if i % 4 == 2:
                return ("metrics", *timed(lambda: s.get(r.url + "/metrics", timeout=30)))
            return ("webhook", *timed(lambda: s.post(r.url + "/api/v1/alertmanager", data=FIRING, headers=AUTH,
                                                     timeout=30)))

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(requests_)))


def budget(r: RenewerProcess, requests_: int) -> float:
    """Seconds an outage answer may take: the store's deadline, the margin, and the slowest of a burst of
    /-/healthy requests sent the same way just before, which is what this machine's load adds to any
    answer now (nearly nothing when it is quiet). Load slows every kind alike; an answer that waited on
    the database past its deadline (a driver's timeout, a blocked event loop) does not fit."""
    healthy = hammer(r, requests_, healthy_only=True)
    assert all(status == 200 for _, status, _, _ in healthy), healthy
    return STORE_DEADLINE + MARGIN + max(seconds for _, _, seconds, _ in healthy)


def assert_outage_answers(results: list[tuple[str, int, float, str]], within: float) -> None:
    for what, status, seconds, body in results:
        assert seconds < within, f"{what} took {seconds:.2f}s (budget {within:.2f}s)"
        if what == "metrics":
            assert status == 200 and "certloop_renewer_" in body, body[:300]
        else:
            assert status == 503, f"{what}: {status} {body[:200]}"


def test_frozen_postgres_gives_fast_503s_bounded_threads_and_recovers(
    pg: PrivatePostgres, pg_db: str, make_setup: Callable[..., Setup],
    start_renewer: Callable[..., RenewerProcess],
) -> None:
    """SIGSTOP on the postmaster and its backends: webhook and /-/ready 503 in time, /metrics 200 from
    the last snapshot, at most the pool's threads waiting, one claim-loop warning for the whole outage;
    after SIGCONT the webhook queues again and the log says the store answers again, without a restart."""
    setup = make_setup(["shop"], database=pg_db)
    r = start_renewer(setup.path, extra=["--log.level", "debug"])  # debug: each failed claim is logged
    assert r.get("/-/ready").status_code == 200
    assert "certloop_renewer_" in r.get("/metrics", token=None).text  # the snapshot served later
    assert gauge(r, "certloop_renewer_database_up") == 1
    assert gauge(r, "certloop_renewer_database_pool_size") == 8
    baseline = threads_of(r.proc.pid)

    pg.freeze()
    try:
        assert_outage_answers(hammer(r, 40), budget(r, 40))
        # again, with the first round's threads possibly still parked
        assert_outage_answers(hammer(r, 40), budget(r, 40))
        assert gauge(r, "certloop_renewer_database_up") == 0  # what CertloopRenewerDatabaseUnavailable reads
        # The store has 8 threads; the default executor and the watchdog a few more: no pile-up.
        assert threads_of(r.proc.pid) <= baseline + 8 + 2, (baseline, threads_of(r.proc.pid))
        # The outage lasts until several claim polls failed (each logged at debug, the first one warned of).
        wait_until(lambda: r.log.read_text().count("claim attempt ") >= 3, 30, "three more failed claims")
    finally:
        pg.thaw()

    def recovered() -> bool:
        resp = r.post("/api/v1/alertmanager", FIRING)
        return resp.status_code == 202 and r.get("/-/ready").status_code == 200

    wait_until(recovered, 15, "the renewer to use the thawed database")
    wait_until(lambda: "job store answers again" in r.log.read_text(), 10, "the recovery line")
    wait_until(lambda: gauge(r, "certloop_renewer_database_up") == 1, 15, "database_up back to 1")
    log = r.log.read_text()
    assert log.count("cannot claim jobs") == 1, log
    assert "Traceback" not in log


@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "mysql+pymysql"])
def test_a_listener_that_never_speaks_gives_fast_503s(
    scheme: str, make_setup: Callable[..., Setup], start_renewer: Callable[..., RenewerProcess],
) -> None:
    """A database address that accepts TCP and never answers (a half-dead proxy): the renewer starts
    (no migration asked), and every request answers in time: 503, and /metrics 200."""
    with ThreadedServer(silent) as srv:
        setup = make_setup(["shop"], top={"database": {"url": f"{scheme}://u:secret@127.0.0.1:{srv.port}/db",
                                             "auto_migrate": False}})
        r = start_renewer(setup.path)
        within = budget(r, 24)
        start = time.monotonic()
        results = hammer(r, 24)
        assert_outage_answers(results, within)
        assert time.monotonic() - start < 3 * within  # 24 requests on 16 connections: two rounds
        assert srv.accepted >= 1  # the renewer did try the listener
        assert gauge(r, "certloop_renewer_database_up") == 0
        assert threads_of(r.proc.pid) < 32
        assert "secret" not in r.log.read_text()


def test_write_locked_sqlite_is_not_ready(
    make_setup: Callable[..., Setup], start_renewer: Callable[..., RenewerProcess],
) -> None:
    """Another connection holds SQLite's write lock: /-/ready and the webhook answer 503 in time (not
    200, not after the 10 s busy timeout); released, both recover."""
    setup = make_setup(["shop"])
    r = start_renewer(setup.path)
    assert r.get("/-/ready").status_code == 200
    locker = sqlite3.connect(setup.tmp / "data" / "renewer.db", isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")
        locker.execute("UPDATE jobs SET updated_at = updated_at")
        within = budget(r, 1)
        status, seconds, _ = timed(lambda: r.get("/-/ready"))
        assert (status, seconds < within) == (503, True), (seconds, within)
        status, seconds, _ = timed(lambda: r.post("/api/v1/alertmanager", FIRING))
        assert (status, seconds < within) == (503, True), (seconds, within)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    wait_until(lambda: r.get("/-/ready").status_code == 200, 10, "readiness after the lock is released")
    assert r.post("/api/v1/alertmanager", FIRING).status_code == 202


def test_store_calls_past_their_deadline_are_aborted_and_the_threads_come_back(pg: PrivatePostgres,
                                                                               pg_db: str) -> None:
    """At the store's seam: a call holding a pooled connection when the server freezes, and 30 more calls,
    all fail with the deadline's message; the watchdog aborts the connection in use (not left waiting for
    ever), every store thread comes back while the server is still frozen, and after the freeze the same
    store answers its first call."""
    deadline = 0.8
    store = clean(Store(pg_db, timeout=timedelta(seconds=deadline)))
    in_use, frozen = threading.Event(), threading.Event()

    def hold_until_frozen(_waited: float) -> None:  # a store thread, its connection checked out and watched
        store.on_connection_wait = None
        in_use.set()
        frozen.wait(10)

    try:
        async def frozen_calls() -> None:
            await store.call(store.ping)  # a connection in the pool
            store.on_connection_wait = hold_until_frozen
            caught = asyncio.ensure_future(store.call(store.ping))  # its query meets the frozen server
            assert await asyncio.to_thread(in_use.wait, 10)
            baseline = threading.active_count()
            pg.freeze()
            frozen.set()
            start = time.monotonic()
            outcomes = await asyncio.gather(caught, *(store.call(store.ping) for _ in range(30)),
                                            return_exceptions=True)
            # Each caller is answered at its own deadline; waiting on the threads would take rounds of it.
            assert time.monotonic() - start < 3 * deadline
            assert all(isinstance(o, StoreUnavailable) and "within 0.8s" in str(o) for o in outcomes), outcomes
            assert store._watchdog.fired >= 1  # the held connection's query was aborted
            assert threading.active_count() <= baseline + 8  # at most the pool's threads added

        asyncio.run(frozen_calls())
        # Connects begun during the freeze end at libpq's connect_timeout; aborted queries at once.
        wait_until(lambda: store.pool_stats().checked_out == 0, 30, "every store thread back, server frozen")
        pg.thaw()
        asyncio.run(store.call(store.ping))  # within its 0.8 s deadline, first try: nothing left stuck
    finally:
        store.close()


def test_outage_log_says_it_once_then_at_a_bounded_rate_then_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Claim loops fail many times a second during an outage: one line at the start, one per ``every``
    seconds while it lasts (with the count), one at the end; nothing while the store answers."""
    now = [1000.0]
    outage = OutageLog(every=60, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="certloop.renewer.worker")
    outage.succeeded()
    exc = StoreUnavailable("claim", "connection refused")
    for _ in range(4 * 150):  # 150 s of failures, four a second
        outage.failed(exc)
        now[0] += 0.25
    outage.succeeded()
    outage.succeeded()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "cannot claim jobs, the job store is unavailable: job store unavailable during claim: connection refused "
        "(next report in 60s)",
        "still cannot claim jobs after 60s (241 failed attempts): job store unavailable during claim: "
        "connection refused",
        "still cannot claim jobs after 120s (481 failed attempts): job store unavailable during claim: "
        "connection refused",
        "the job store answers again: claiming jobs after 150s (600 failed attempts)",
    ]
    caplog.clear()
    outage.failed(exc)  # a new outage is reported anew
    assert [r.getMessage()[:40] for r in caplog.records] == ["cannot claim jobs, the job store is unav"]
