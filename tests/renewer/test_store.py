"""The job store on SQLite, the running PostgreSQL and MariaDB: one open job per certificate,
claiming with leases, the audit trail, the ledger, dump/restore and the Alembic migrations."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from certloop.renewer import migrations
from certloop.renewer.errors import StoreUnavailable
from certloop.renewer.records import LedgerEvent, State
from certloop.renewer.store import Store

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


def test_enqueue_is_idempotent_per_certificate(any_store: Store) -> None:
    """A second enqueue while a job is open returns that job; after it finishes a new one opens."""
    first = any_store.enqueue("shop", trigger="alert", reason="r", now=NOW)
    again = any_store.enqueue("shop", trigger="alert", reason="r", now=NOW)
    assert first.created and not again.created and again.job_id == first.job_id
    assert first.job_id is not None
    assert any_store.enqueue("blog", trigger="alert", reason="r", now=NOW).created
    assert any_store.transition(first.job_id, None, State.FAILED, "gave up", NOW)
    assert any_store.enqueue("shop", trigger="alert", reason="r", now=NOW).created


def test_concurrent_enqueues_open_exactly_one_job(any_store: Store) -> None:
    """16 threads enqueueing the same certificate at once: the unique constraint admits one job."""
    results = []
    barrier = threading.Barrier(16)

    def go() -> None:
        barrier.wait()
        results.append(any_store.enqueue("shop", trigger="alert", reason="race", now=NOW))

    threads = [threading.Thread(target=go) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.created for r in results) == 1
    assert len({r.job_id for r in results}) == 1
    assert len(any_store.list_jobs()) == 1


def test_repeat_alert_after_a_success_opens_nothing(any_store: Store) -> None:
    """An alert that started before the last successful renewal is a repeat notification."""
    any_store.update_certificate_state("shop", NOW, last_success_at=NOW)
    stale = any_store.enqueue("shop", trigger="alert", reason="r", now=NOW, alert_started=NOW - timedelta(hours=1))
    assert (stale.created, stale.job_id) == (False, None)
    fresh = any_store.enqueue("shop", trigger="alert", reason="r", now=NOW, alert_started=NOW + timedelta(seconds=1))
    assert fresh.created


def test_claim_leases_and_a_dead_owner_lease_expires(any_store: Store) -> None:
    """A claimed job is invisible to others until its lease expires; then another owner resumes it
    and the first owner's writes are refused."""
    job_id = any_store.enqueue("shop", trigger="alert", reason="r", now=NOW).job_id
    job = any_store.claim("a", NOW, LEASE)
    assert job is not None and job.id == job_id and job.lease_owner == "a"
    assert any_store.transition(job.id, "a", State.ISSUING, "issuing", NOW)
    assert any_store.claim("b", NOW + timedelta(seconds=10), LEASE) is None
    assert any_store.extend_lease(job.id, "a", NOW + timedelta(seconds=40))
    assert any_store.claim("b", NOW + timedelta(seconds=35), LEASE) is None
    resumed = any_store.claim("b", NOW + timedelta(seconds=41), LEASE)
    assert resumed is not None and resumed.state is State.ISSUING and resumed.lease_owner == "b"
    assert not any_store.transition(job.id, "a", State.SUCCEEDED, "late", NOW)
    assert not any_store.extend_lease(job.id, "a", NOW + timedelta(minutes=5))
    assert any_store.transition(job.id, "b", State.SUCCEEDED, "done", NOW + timedelta(seconds=42))


def test_backoff_not_before_is_respected(any_store: Store) -> None:
    """A job requeued with not_before in the future is not claimable before then."""
    job_id = any_store.enqueue("shop", trigger="alert", reason="r", now=NOW).job_id
    job = any_store.claim("a", NOW, LEASE)
    assert job is not None
    any_store.transition(job.id, "a", State.QUEUED, "retry later", NOW, not_before=NOW + timedelta(minutes=1),
                         lease_owner=None, lease_expires=None)
    assert any_store.claim("a", NOW + timedelta(seconds=59), LEASE) is None
    again = any_store.claim("a", NOW + timedelta(minutes=1), LEASE)
    assert again is not None and again.id == job_id


def test_every_transition_is_recorded_in_order(any_store: Store) -> None:
    """The audit trail lists each state change with its reason and actor; terminal closes the job."""
    job_id = any_store.enqueue("shop", trigger="manual", reason="asked", now=NOW, actor="api").job_id
    assert job_id is not None
    any_store.claim("w", NOW, LEASE)
    for state in (State.ISSUING, State.INSTALLING, State.VERIFYING, State.SUCCEEDED):
        assert any_store.transition(job_id, "w", state, f"to {state}", NOW)
    events = any_store.events(job_id)
    assert [(e.from_state, e.to_state) for e in events] == [
        (None, "queued"), ("queued", "issuing"), ("issuing", "installing"), ("installing", "verifying"),
        ("verifying", "succeeded"),
    ]
    assert events[0].actor == "api" and events[-1].reason == "to succeeded"
    job = any_store.get_job(job_id)
    assert job is not None and job.state is State.SUCCEEDED and job.lease_owner is None
    assert any_store.claim("w", NOW + timedelta(hours=1), LEASE) is None


def test_concurrent_claimers_never_share_a_job(any_store: Store) -> None:
    """Eight threads claiming 40 jobs: each job is claimed exactly once (SKIP LOCKED / single writer)."""
    for i in range(40):
        any_store.enqueue(f"c{i}", trigger="alert", reason="r", now=NOW)
    claimed: list[int] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while (job := any_store.claim(name, NOW, LEASE)) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted({*claimed}) and len(claimed) == 40


def test_queue_stats_ledger_and_certificate_state(any_store: Store) -> None:
    """Queue depth, in-progress and oldest queued come from open jobs; ledger and state round-trip."""
    any_store.enqueue("a", trigger="alert", reason="r", now=NOW)
    any_store.enqueue("b", trigger="alert", reason="r", now=NOW + timedelta(seconds=5))
    any_store.claim("w", NOW, LEASE)
    stats = any_store.queue_stats(NOW)
    assert (stats.queued, stats.in_progress, stats.oldest_queued) == (1, 1, NOW + timedelta(seconds=5))
    any_store.record_ledger([LedgerEvent("acme x", "account", "", NOW, 1), LedgerEvent("acme x", "name_set", "a", NOW)])
    assert len(any_store.ledger(NOW - timedelta(hours=1), "acme x")) == 2
    assert any_store.ledger(NOW + timedelta(seconds=1)) == []
    any_store.update_certificate_state("a", NOW, last_result="failed", last_error="boom")
    any_store.update_certificate_state("a", NOW, last_result="succeeded", last_error=None, last_success_at=NOW)
    state = any_store.certificate_states()["a"]
    assert (state.last_result, state.last_error, state.last_success_at) == ("succeeded", None, NOW)


def test_dump_and_restore_round_trip_across_engines(any_store: Store, tmp_path: Path) -> None:
    """Rows dumped from SQLite restore into every engine, and new jobs get fresh ids afterwards."""
    source = Store(f"sqlite:///{tmp_path / 'source.db'}")
    migrations.upgrade(source.engine)
    job_id = source.enqueue("shop", trigger="alert", reason="r", now=NOW).job_id
    source.update_certificate_state("shop", NOW, last_result="succeeded")
    dump = source.dump()
    source.close()
    counts = any_store.restore(dump)
    assert counts == {"jobs": 1, "job_events": 1, "ratelimit_events": 0, "certificate_state": 1, "audit_events": 0}
    assert any_store.enqueue("shop", trigger="alert", reason="r", now=NOW).job_id == job_id
    assert (new := any_store.enqueue("blog", trigger="alert", reason="r", now=NOW).job_id) is not None
    assert new > (job_id or 0)


def test_migrations_upgrade_downgrade_and_current(any_store: Store) -> None:
    """`current` reports head; downgrade to base drops the tables; upgrade recreates them."""
    assert migrations.current(any_store.engine) == migrations.HEAD
    migrations.downgrade(any_store.engine, "base")
    assert migrations.current(any_store.engine) is None
    assert "jobs" not in sa.inspect(any_store.engine).get_table_names()
    migrations.upgrade(any_store.engine)
    assert {"jobs", "job_events", "ratelimit_events", "certificate_state"} <= set(
        sa.inspect(any_store.engine).get_table_names())


def test_unreachable_database_raises_store_unavailable() -> None:
    """A refused connection becomes StoreUnavailable naming the operation (the webhook answers 503)."""
    store = Store("postgresql+psycopg://postgres@127.0.0.1:9/none?connect_timeout=2")
    with pytest.raises(StoreUnavailable) as err:
        store.enqueue("shop", trigger="alert", reason="r", now=NOW)
    assert err.value.operation == "enqueue"
    store.close()
