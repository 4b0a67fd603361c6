"""The audit trail: every state-changing call and every 401/403 is recorded (who by name, what, when, from
where, the answer), served at /api/v1/audit, migrated on all three engines, and bounded under a 401 flood.
Also "retry": an operator queues again the certificate of a failed job."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bcrypt
import pytest
import sqlalchemy as sa
import yaml
from prometheus_client.parser import text_string_to_metric_families

from certloop.renewer import migrations
from certloop.renewer.audit import AuditTrail
from certloop.renewer.metrics import RenewerMetrics
from certloop.renewer.records import AuditEvent, State
from certloop.renewer.store import Store
from stack.process import wait_until
from tests.renewer.conftest import TOKEN, RenewerProcess, Setup

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"


def basic(user: str, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# -- store and schema -----------------------------------------------------------------------------


def test_audit_rows_round_trip_newest_first_and_cut_to_size(any_store: Store) -> None:
    """Rows come back newest first, pageable with ``before``; over-long values are cut, not refused."""
    any_store.record_audit([
        AuditEvent(NOW, "otto", "operator", "renew", "shop", "127.0.0.1", 202, "job 1"),
        AuditEvent(NOW + timedelta(seconds=1), None, None, "refused", "GET /" + "x" * 400, "::1", 401, "e" * 900),
    ])
    newest, oldest = any_store.audit()
    assert (newest.actor, newest.status, len(newest.target or ""), len(newest.detail or "")) == (None, 401, 255, 512)
    assert (oldest.actor, oldest.role, oldest.action, oldest.at) == ("otto", "operator", "renew", NOW)
    assert newest.id is not None and [e.actor for e in any_store.audit(before=newest.id)] == ["otto"]


def test_migration_0002_upgrades_and_downgrades(any_store: Store) -> None:
    """0002 adds audit_events on top of 0001 and its downgrade removes only that table (and what came
    after it)."""
    assert migrations.current(any_store.engine) == migrations.HEAD
    any_store.enqueue("shop", trigger="alert", reason="kept", now=NOW)
    migrations.downgrade(any_store.engine, "0001")
    tables = set(sa.inspect(any_store.engine).get_table_names())
    assert "audit_events" not in tables and "jobs" in tables
    assert len(any_store.list_jobs()) == 1
    migrations.upgrade(any_store.engine)
    assert "audit_events" in sa.inspect(any_store.engine).get_table_names()
    any_store.record_audit([AuditEvent(NOW, "ada", "admin", "reload", None, "127.0.0.1", 200)])
    assert [e.action for e in any_store.audit()] == ["reload"]


def test_retry_queues_a_failed_jobs_certificate_once(any_store: Store) -> None:
    """Only a failed or rolled-back job can be retried; an open job of its certificate is not doubled."""
    first = any_store.enqueue("shop", trigger="alert", reason="r", now=NOW).job_id
    assert first is not None
    job, res = any_store.retry(first, now=NOW, actor="api:otto")
    assert job is not None and job.state is State.QUEUED and res is None
    any_store.transition(first, None, State.FAILED, "boom", NOW)
    job, res = any_store.retry(first, now=NOW, actor="api:otto")
    assert res is not None and res.created and res.job_id != first
    assert any_store.events(res.job_id or 0)[0].actor == "api:otto"
    again = any_store.retry(first, now=NOW, actor="api:otto")[1]
    assert again is not None and (again.created, again.job_id) == (False, res.job_id)
    assert any_store.retry(999_999, now=NOW, actor=None) == (None, None)


# -- a real renewer with users --------------------------------------------------------------------


@pytest.fixture
def renewer(make_setup: Callable[..., Setup], start_renewer: Callable[..., RenewerProcess],
            tmp_path: Path) -> RenewerProcess:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({"basic_auth_users": {u: hashed for u in ("vera", "otto", "ada")}}))
    fail = tmp_path / "fail"
    setup = make_setup(["shop", "blog"], fail_file=fail,
                       top={"worker": {"backoff_base": "1s", "backoff_max": "1s", "max_attempts": 1,
                                       "concurrency": 1, "lease": "5s", "poll_interval": "200ms"}})
    setup.data["auth"] = {"token": TOKEN, "users": {"vera": "viewer", "otto": "operator", "ada": "admin"},
                          "tokens": [{"name": "alertmanager", "token": "am-token-0123456789abcdef",
                                      "role": "alertmanager"}]}
    setup.write()
    return start_renewer(setup.path, extra=[f"--web.config.file={web}", "--web.enable-lifecycle"])


def _audit(r: RenewerProcess) -> list[dict[str, object]]:
    resp = r.session.get(r.url + "/api/v1/audit?limit=1000", headers=basic("vera"), timeout=10)
    assert resp.status_code == 200, resp.text
    events: list[dict[str, object]] = resp.json()["events"]
    return events


def test_renewals_refusals_and_webhooks_are_audited_by_name(renewer: RenewerProcess) -> None:
    """Manual renewal (otto), a viewer's refused POST (vera, 403), a wrong password (401, no name), a reload
    (ada) and a webhook that queued a job: each one line with who, what, where and the status; no secret."""
    s, url = renewer.session, renewer.url
    body = (Path(__file__).parent / "fixtures" / "firing.json").read_text().replace('"shop"', '"blog"')
    hook = s.post(url + "/api/v1/alertmanager", data=body, timeout=30,
                  headers={"Authorization": "Bearer am-token-0123456789abcdef"})
    assert hook.status_code == 202 and hook.json()["certificates"][0]["outcome"] == "queued", hook.text
    ok = s.post(url + "/api/v1/certificates/shop/renew?force=true", headers=basic("otto"), timeout=30)
    assert ok.status_code == 202, ok.text
    assert s.post(url + "/api/v1/certificates/shop/renew", headers=basic("vera"), timeout=30).status_code == 403
    assert s.get(url + "/api/v1/jobs", headers=basic("vera", "guess-1234"), timeout=30).status_code == 401
    assert s.post(url + "/-/reload", headers=basic("ada"), timeout=30).status_code == 200
    def five() -> list[dict[str, object]] | None:
        got = _audit(renewer)
        return got if len(got) >= 5 else None

    events = wait_until(five, 10, "5 audit events")
    seen = {(e["actor"], e["action"], e["target"], e["status"]) for e in events}
    assert ("otto", "renew", "shop", 202) in seen
    assert ("vera", "refused", "POST /api/v1/certificates/shop/renew", 403) in seen
    assert (None, "refused", "GET /api/v1/jobs", 401) in seen
    assert ("ada", "reload", None, 200) in seen
    assert ("alertmanager", "webhook", "blog", 202) in seen, seen
    assert all(e["address"] == "127.0.0.1" for e in events)
    renew = next(e for e in events if e["action"] == "renew")
    assert renew["detail"] == f"job {ok.json()['job_id']}" and renew["role"] == "operator"
    text = str(events) + renewer.log.read_text()
    assert PASSWORD not in text and "guess-1234" not in text and "am-token" not in text


def test_retry_through_the_api_needs_the_renew_permission(renewer: RenewerProcess) -> None:
    """A job that failed is retried by an operator (202, a new job, audited); a viewer gets 403; an open or
    unknown job is 409/404."""
    s, url = renewer.session, renewer.url
    (Path(renewer.log).parent / "fail").write_text("fail")
    job_id = s.post(url + "/api/v1/certificates/shop/renew?force=true", headers=basic("otto"),
                    timeout=30).json()["job_id"]
    wait_until(lambda: s.get(url + f"/api/v1/jobs/{job_id}", headers=basic("vera"), timeout=10).json()["state"]
               == "failed", 60, "the job to fail")
    assert s.post(url + f"/api/v1/jobs/{job_id}/retry", headers=basic("vera"), timeout=10).status_code == 403
    (Path(renewer.log).parent / "fail").unlink()
    retried = s.post(url + f"/api/v1/jobs/{job_id}/retry", headers=basic("otto"), timeout=10)
    assert retried.status_code == 202, retried.text
    new = retried.json()
    assert new["retry_of"] == job_id and new["created"] and new["job_id"] != job_id
    assert s.post(url + f"/api/v1/jobs/{new['job_id']}/retry", headers=basic("otto"), timeout=10).status_code == 409
    assert s.post(url + "/api/v1/jobs/424242/retry", headers=basic("otto"), timeout=10).status_code == 404
    wait_until(lambda: s.get(url + f"/api/v1/jobs/{new['job_id']}", headers=basic("vera"), timeout=10).json()["state"]
               == "succeeded", 60, "the retried job to succeed")
    seen = {(e["actor"], e["action"], e["target"], e["status"]) for e in _audit(renewer)}
    assert ("otto", "retry", f"job {job_id}", 202) in seen and ("vera", "refused", f"POST /api/v1/jobs/{job_id}/retry",
                                                               403) in seen


def test_a_401_flood_writes_a_bounded_number_of_rows(renewer: RenewerProcess) -> None:
    """300 requests with wrong tokens: at most 60 audit rows a minute, the rest counted as dropped."""
    s, url = renewer.session, renewer.url
    for i in range(300):
        bad = {"Authorization": f"Bearer guessed-{i:04d}"}
        assert s.get(url + "/api/v1/certificates", headers=bad, timeout=10).status_code == 401

    def settled() -> tuple[int, float] | None:
        rows = sum(1 for e in _audit(renewer) if e["action"] == "refused")
        families = text_string_to_metric_families(s.get(url + "/metrics", headers=basic("vera"), timeout=10).text)
        dropped = sum(x.value for f in families if f.name == "certloop_renewer_audit_events_dropped"
                      for x in f.samples if x.labels.get("reason") == "rate_limited" and x.name.endswith("_total"))
        return (rows, dropped) if rows + dropped >= 300 else None

    rows, dropped = wait_until(settled, 20, "every refusal written or counted")
    assert rows + dropped == 300 and 60 <= rows <= 120, (rows, dropped)


# -- the writer's bounds, in-process with a clock we move ------------------------------------------


def test_refusal_quota_resets_each_minute_and_an_outage_is_counted(sqlite_store: Store) -> None:
    """60 refusals a minute are written, the 61st only counted; a minute later the quota is back. With the
    database gone, a state-changing call's line is counted as lost and the call is not failed."""
    now = [NOW]
    metrics = RenewerMetrics()
    trail = AuditTrail(sqlite_store, metrics, lambda: now[0])

    def line(i: int) -> AuditEvent:
        return AuditEvent(now[0], None, None, "refused", f"GET /{i}", "127.0.0.1", 401)

    async def run() -> None:
        for i in range(61):
            trail.refused(line(i))
        await trail.flush()
        now[0] = NOW + timedelta(seconds=61)
        trail.refused(line(61))
        await trail.flush()
        assert len(sqlite_store.audit(limit=1000)) == 61
        with sqlite_store.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE audit_events")
        await trail.record(AuditEvent(now[0], "otto", "operator", "renew", "shop", "127.0.0.1", 202))

    asyncio.run(run())
    dropped = {s.labels["reason"]: s.value for f in metrics.registry.collect()
               if f.name == "certloop_renewer_audit_events_dropped" for s in f.samples if s.name.endswith("_total")}
    assert dropped == {"rate_limited": 1.0, "overflow": 0.0, "store_unavailable": 1.0}
