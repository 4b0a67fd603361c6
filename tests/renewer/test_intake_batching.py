"""Webhook enqueues in one transaction per batch (``Store.enqueue_many``, ``EnqueueBatcher``) on SQLite,
the running PostgreSQL and MariaDB: the same outcomes as one enqueue after another, the unique
``active_key`` still the arbiter across stores (replicas), and every waiting request gets its own slice."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from certloop.renewer import migrations
from certloop.renewer.api import EnqueueBatcher
from certloop.renewer.errors import StoreUnavailable
from certloop.renewer.records import Enqueued, EnqueueItem, State
from certloop.renewer.store import Store

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def item(cert: str, started: datetime | None = None, reason: str = "alert X firing") -> EnqueueItem:
    return EnqueueItem(cert, "alert", reason, NOW, started, "alertmanager")


def test_batch_equals_sequential_enqueues(any_store: Store) -> None:
    """Open job -> duplicate; a certificate named twice opens one job; a repeat of an alert older than the
    last success opens nothing; the rest open jobs with their audit event."""
    open_id = any_store.enqueue("open", trigger="alert", reason="r", now=NOW).job_id
    any_store.update_certificate_state("renewed", NOW, last_success_at=NOW)
    got = any_store.enqueue_many([
        item("open"), item("new"), item("new"), item("renewed", NOW - timedelta(hours=1)),
        item("fresh", NOW + timedelta(seconds=1)), item("renewed", NOW + timedelta(seconds=1)),
    ])
    assert [(r.created, r.job_id is not None) for r in got] == [
        (False, True), (True, True), (False, True), (False, False), (True, True), (True, True),
    ]
    assert got[0].job_id == open_id and got[2].job_id == got[1].job_id
    jobs = {j.certificate: j for j in any_store.list_jobs()}
    assert sorted(jobs) == ["fresh", "new", "open", "renewed"]
    assert all(j.state is State.QUEUED and j.trigger == "alert" for j in jobs.values())
    new_id = got[1].job_id
    assert new_id is not None
    events = any_store.events(new_id)
    assert [(e.from_state, e.to_state, e.actor, e.reason) for e in events] == [
        (None, "queued", "alertmanager", "alert X firing"),
    ]
    assert any_store.enqueue_many([]) == []


def test_batch_after_the_job_closed_opens_a_new_one(any_store: Store) -> None:
    """A finished job frees its certificate: the next batch opens a new job, not a duplicate."""
    first = any_store.enqueue_many([item("shop")])[0]
    assert first.created and first.job_id is not None
    assert any_store.transition(first.job_id, None, State.FAILED, "gave up", NOW)
    again = any_store.enqueue_many([item("shop")])[0]
    assert again.created and again.job_id != first.job_id


def test_racing_batches_of_two_stores_open_one_job_per_certificate(any_store: Store) -> None:
    """Two replicas (two Store objects, own pools) batch the same 20 certificates at once, 5 rounds:
    each certificate gets exactly one job, whoever wins the unique constraint."""
    other = Store(any_store.url)
    certs = [f"c{i:02d}" for i in range(20)]
    results: list[list[bool]] = []
    errors: list[Exception] = []
    barrier = threading.Barrier(4)

    def go(store: Store, order: list[str]) -> None:
        barrier.wait()
        for _ in range(5):
            try:
                results.append([r.created for r in store.enqueue_many([item(c) for c in order])])
            except Exception as exc:  # a deadlock or a lost race surfacing as StoreUnavailable fails the test
                errors.append(exc)

    try:
        threads = [threading.Thread(target=go, args=(s, o)) for s in (any_store, other)
                   for o in (certs, certs[::-1])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        other.close()
    assert errors == []
    assert sum(sum(r) for r in results) == 20
    assert sorted(j.certificate for j in any_store.list_jobs()) == certs


def test_batcher_groups_concurrent_requests_and_slices_outcomes(sqlite_store: Store) -> None:
    """Fifty concurrent webhook requests share a few transactions; each gets the outcomes of its own items."""
    batcher = EnqueueBatcher(sqlite_store)

    async def main() -> list[list[bool]]:
        reqs = [[item(f"c{i % 10}"), item(f"d{i}")] for i in range(50)]
        got = await asyncio.gather(*(batcher.enqueue(r) for r in reqs))
        return [[x.created for x in g] for g in got]

    got = asyncio.run(main())
    assert len(got) == 50 and all(len(g) == 2 for g in got)
    assert all(g[1] for g in got)  # every d<i> is new
    assert sum(g[0] for g in got) == 10  # c0..c9: one job each, the rest duplicates
    assert 1 <= batcher.batches < 50
    assert len(sqlite_store.list_jobs(limit=1000)) == 60


def test_batcher_respects_max_items(sqlite_store: Store) -> None:
    """No transaction carries more than max_items alerts (a lone larger request still goes alone)."""
    batcher = EnqueueBatcher(sqlite_store, max_items=4)
    sizes: list[int] = []
    real = sqlite_store.enqueue_many

    def spy(items: Sequence[EnqueueItem]) -> list[Enqueued]:
        sizes.append(len(items))
        return real(items)

    sqlite_store.enqueue_many = spy  # type: ignore[method-assign]

    async def main() -> None:
        await asyncio.gather(*(batcher.enqueue([item(f"c{i}"), item(f"d{i}"), item(f"e{i}")]) for i in range(6)),
                             batcher.enqueue([item(f"big{i}") for i in range(7)]))

    asyncio.run(main())
    assert sum(sizes) == 25
    assert all(s <= 4 for s in sizes if s != 7) and 7 in sizes


def test_store_failure_fails_only_that_batch(tmp_path: Path) -> None:
    """A database that cannot be opened: every waiting request gets StoreUnavailable (the API's 503);
    once the database is there, the same batcher serves again."""
    where = tmp_path / "later"
    store = Store(f"sqlite:///{where / 'db.sqlite'}")
    batcher = EnqueueBatcher(store)

    async def main() -> list[BaseException | list[Enqueued]]:
        return await asyncio.gather(*(batcher.enqueue([item("shop")]) for _ in range(3)), return_exceptions=True)

    try:
        got = asyncio.run(main())
        assert len(got) == 3 and all(isinstance(g, StoreUnavailable) for g in got)
        where.mkdir()
        migrations.upgrade(store.engine)
        got = asyncio.run(main())
        assert [[r.created for r in g] for g in got if isinstance(g, list)] == [[True], [False], [False]]
    finally:
        store.close()


def test_sqlite_duplicates_are_answered_while_another_writer_holds_the_lock(tmp_path: Path) -> None:
    """SQLite: a batch of duplicates reads a snapshot without the write lock, so it is answered while another
    process holds that lock; a batch that must open a job waits for the lock (here: times out -> 503)."""
    url = f"sqlite:///{tmp_path / 'renewer.db'}"
    store = Store(url, busy_timeout=timedelta(milliseconds=300))
    try:
        migrations.upgrade(store.engine)
        assert store.enqueue_many([item("shop")])[0].created
        other = sqlite3.connect(tmp_path / "renewer.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        try:
            got = store.enqueue_many([item("shop"), item("shop")])
            assert [r.created for r in got] == [False, False] and got[0].job_id is not None
            with pytest.raises(StoreUnavailable):
                store.enqueue_many([item("shop"), item("blog")])
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert [r.created for r in store.enqueue_many([item("shop"), item("blog")])] == [False, True]
    finally:
        store.close()
