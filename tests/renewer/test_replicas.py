"""Two real `certloop renewer` processes sharing the running PostgreSQL receive the same 1,000 webhooks
(each delivered to both, as HA Alertmanagers do): exactly one issuance per certificate."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import yaml

from certloop.renewer.store import Store
from stack.process import wait_until
from tests.renewer.conftest import TOKEN, RenewerProcess, Setup, clean
from tests.renewer.loadgen import alert_payload, post_all

CERTIFICATES = 20
WEBHOOKS = 1000


def _all_succeeded(proc: RenewerProcess) -> bool:
    certs = proc.get("/api/v1/certificates").json()["certificates"]
    return all(c["last_result"] == "succeeded" and c["open_job"] is None for c in certs)


def _counter(proc: RenewerProcess, name: str) -> dict[str, float]:
    out = {}
    for line in proc.get("/metrics", token=None).text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line.rsplit(" ", 1)
            out[labels[len(name):]] = float(value)
    return out


def test_two_replicas_same_webhooks_one_issuance_per_certificate(
    make_setup: Callable[..., Setup], start_renewer: Callable[..., RenewerProcess], pg_url: str,
) -> None:
    """1,000 webhooks x 2 replicas -> every certificate issued exactly once, no job left open, and every
    delivery accounted for as queued or duplicate."""
    ids = [f"cert{i}" for i in range(CERTIFICATES)]
    setup = make_setup(ids, database=pg_url, top={"worker": {"concurrency": 2, "lease": "10s",
                                                            "poll_interval": "200ms"}})
    clean(Store(pg_url)).close()
    second = setup.tmp / "replica-b.yml"
    data = yaml.safe_load(setup.path.read_text())
    data["data_dir"] = str(setup.tmp / "data-b")
    second.write_text(yaml.safe_dump(data))
    a = start_renewer(setup.path, log_name="replica-a.log")
    b = start_renewer(second, log_name="replica-b.log")
    starts = datetime.now(UTC) - timedelta(minutes=1)
    bodies = [alert_payload(ids[i % CERTIFICATES], starts, i) for i in range(WEBHOOKS)]
    result = asyncio.run(post_all([f"{a.url}/api/v1/alertmanager", f"{b.url}/api/v1/alertmanager"], TOKEN,
                                  bodies, connections=8))
    print(f"\nwebhook intake, 2 replicas on PostgreSQL: {result.summary()}")
    assert result.statuses.count(202) == 2 * WEBHOOKS
    wait_until(lambda: _all_succeeded(a), 90, "every certificate to be renewed", interval=0.5)
    assert sorted(setup.issued()) == sorted(ids)
    jobs = a.get("/api/v1/jobs?limit=1000").json()["jobs"]
    assert len(jobs) == CERTIFICATES and {j["state"] for j in jobs} == {"succeeded"}
    owners = {e["actor"] for j in jobs for e in a.get(f"/api/v1/jobs/{j['id']}").json()["events"]
              if e["to_state"] == "succeeded"}
    assert len(owners) == 2, f"both replicas should have worked: {owners}"
    outcomes = [_counter(p, "certloop_renewer_alerts_total") for p in (a, b)]
    queued = sum(o.get('{outcome="queued"}', 0) for o in outcomes)
    duplicate = sum(o.get('{outcome="duplicate"}', 0) for o in outcomes)
    assert queued == CERTIFICATES and queued + duplicate == 2 * WEBHOOKS
