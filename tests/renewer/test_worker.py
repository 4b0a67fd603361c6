"""The worker driving the real pipeline with the `command` issuer (tests/renewer/mint.py mints with the
test PKI and counts its invocations): success, issuance retries with backoff, the rate-limit ledger,
deployment retried from saved material without re-issuing, rollback, and kill -9 of a real renewer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certloop.logs import JsonFormatter, LogfmtFormatter
from certloop.renewer import pipeline
from certloop.renewer.config import RenewerConfig, load_config
from certloop.renewer.context import RenewalContext
from certloop.renewer.daemon import open_keystore
from certloop.renewer.metrics import RenewerMetrics
from certloop.renewer.records import Job, LedgerEvent, State
from certloop.renewer.scheduler import SafetyNet
from certloop.renewer.store import Store
from certloop.renewer.worker import Worker
from stack.process import wait_until
from tests.renewer.conftest import RenewerProcess, Setup
from tests.support.pki import Pki

# A deploy step that fails while the live certificate is valid for more than 10 days (the new one).
REJECT_LONG_LIVED = (
    "import sys, datetime; from cryptography import x509; "
    "c = x509.load_pem_x509_certificate(open(sys.argv[1], 'rb').read()); "
    "sys.exit(1 if c.not_valid_after_utc - datetime.datetime.now(datetime.UTC) > datetime.timedelta(days=10) else 0)"
)
AM_FIRING = (Path(__file__).parent / "fixtures" / "firing.json").read_bytes()


class Clock:
    """A settable clock, at whole milliseconds (the store's resolution)."""

    def __init__(self) -> None:
        now = datetime.now(UTC)
        self.now = now.replace(microsecond=now.microsecond // 1000 * 1000)

    def __call__(self) -> datetime:
        return self.now


def make_worker(cfg: RenewerConfig, store: Store, clock: Clock, owner: str = "test") -> Worker:
    ctx = RenewalContext(data_dir=cfg.data_dir, clock=clock, keystore=open_keystore(cfg))
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    return Worker(store=store, config=lambda: cfg, ctx=ctx, metrics=RenewerMetrics(), owner=owner, rand=lambda: 0.0)


def run_once(worker: Worker, store: Store, clock: Clock) -> Job:
    """Claim the next due job and work it to its next resting point; return the job afterwards."""
    job = store.claim(worker.owner, clock(), timedelta(minutes=1))
    assert job is not None, "no job was due"
    asyncio.run(worker.work(job))
    after = store.get_job(job.id)
    assert after is not None
    return after


def live_leaf(cfg: RenewerConfig) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(cfg.certificates[0].outputs.fullchain or "").read_bytes())


def states(store: Store, job_id: int) -> list[str]:
    return [e.to_state for e in store.events(job_id)]


def test_alert_to_verified_install_in_one_pass(make_setup: Callable[..., Setup], sqlite_store: Store) -> None:
    """A queued job is issued once, installed, verified and recorded, with every state in the trail."""
    setup = make_setup(["shop"])
    cfg, clock = load_config(setup.path), Clock()
    worker = make_worker(cfg, sqlite_store, clock)
    sqlite_store.enqueue("shop", trigger="alert", reason="test", now=clock())
    job = run_once(worker, sqlite_store, clock)
    assert job.state is State.SUCCEEDED and job.attempt == 1 and job.deploy_attempt == 1
    assert states(sqlite_store, job.id) == ["queued", "issuing", "installing", "verifying", "succeeded"]
    assert setup.issued() == ["shop"]
    leaf = live_leaf(cfg)
    assert leaf.subject.rfc4514_string() == "CN=shop.example"
    key = serialization.load_pem_private_key(Path(cfg.certificates[0].outputs.key).read_bytes(), None)
    assert key.public_key() == leaf.public_key()
    assert oct(Path(cfg.certificates[0].outputs.key).stat().st_mode & 0o777) == "0o600"
    state = sqlite_store.certificate_states()["shop"]
    assert state.last_result == "succeeded" and state.not_after == leaf.not_valid_after_utc
    assert state.next_due == leaf.not_valid_after_utc - (leaf.not_valid_after_utc - leaf.not_valid_before_utc) / 3
    assert worker.metrics.renewals.labels("shop", "command", "succeeded")._value.get() == 1
    assert pipeline.load_material(worker.ctx, job.id) is None  # saved material is discarded once done


def test_failed_issuance_backs_off_then_fails(make_setup: Callable[..., Setup], sqlite_store: Store,
                                             tmp_path: Path) -> None:
    """An issuer failure requeues with exponential backoff and the error; max_attempts ends in failed."""
    fail = tmp_path / "fail"
    fail.touch()
    setup = make_setup(["shop"], fail_file=fail)
    cfg, clock = load_config(setup.path), Clock()
    worker = make_worker(cfg, sqlite_store, clock)
    sqlite_store.enqueue("shop", trigger="alert", reason="test", now=clock())
    job = run_once(worker, sqlite_store, clock)
    assert job.state is State.QUEUED and job.attempt == 1
    assert job.not_before == clock() + timedelta(milliseconds=500)  # base 1s, attempt 1, jitter 0
    assert "BackendFailed" in (job.last_error or "") or "IssuanceError" in (job.last_error or "")
    assert sqlite_store.claim("x", clock(), timedelta(seconds=5)) is None  # not before the backoff
    clock.now += timedelta(seconds=1)
    job = run_once(worker, sqlite_store, clock)
    assert job.state is State.QUEUED and job.attempt == 2
    assert job.not_before == clock() + timedelta(seconds=1)
    clock.now += timedelta(seconds=2)
    job = run_once(worker, sqlite_store, clock)
    assert job.state is State.FAILED and "after 3 attempt(s)" in (job.last_error or "")
    assert sqlite_store.certificate_states()["shop"].last_result == "failed"
    assert setup.issued() == []


def test_failed_reload_rolls_back_and_retries_deployment_without_reissuing(
    make_setup: Callable[..., Setup], sqlite_store: Store, pki: Pki, tmp_path: Path,
) -> None:
    """A deploy step that rejects the new material (like `nginx -t`) restores the previous files; retries
    reuse the saved material (one issuance); after max_attempts the job ends rolled_back, old cert live."""
    fullchain = tmp_path / "live" / "shop" / "fullchain.pem"
    setup = make_setup(["shop"], deploy=[["true"], [sys.executable, "-c", REJECT_LONG_LIVED, str(fullchain)]])
    cfg, clock = load_config(setup.path), Clock()
    old = pki.leaf(["shop.example"], days=3)
    outputs = cfg.certificates[0].outputs
    Path(outputs.fullchain or "").write_bytes(old.fullchain_pem)
    Path(outputs.key).write_bytes(old.key_pem)
    worker = make_worker(cfg, sqlite_store, clock)
    sqlite_store.enqueue("shop", trigger="alert", reason="test", now=clock())
    job = run_once(worker, sqlite_store, clock)
    assert job.state is State.QUEUED and job.deploy_attempt == 1
    assert "rolled back" in (job.last_error or "") and "no re-issue" in states_reasons(sqlite_store, job.id)[-1]
    assert live_leaf(cfg) == old.cert
    assert pipeline.load_material(worker.ctx, job.id) is not None
    for _ in range(2):
        clock.now += timedelta(seconds=3)
        job = run_once(worker, sqlite_store, clock)
    assert job.state is State.ROLLED_BACK and job.deploy_attempt == 3 and job.attempt == 1
    assert setup.issued() == ["shop"]
    assert live_leaf(cfg) == old.cert
    assert states(sqlite_store, job.id).count("issuing") == 1
    assert worker.metrics.renewals.labels("shop", "command", "rolled_back")._value.get() == 1


def states_reasons(store: Store, job_id: int) -> list[str]:
    return [e.reason for e in store.events(job_id)]


def test_rate_limit_ledger_makes_a_flood_wait(make_setup: Callable[..., Setup], sqlite_store: Store) -> None:
    """With 1 certificate per name set per week, a second renewal waits a week with the reason; nothing issued."""
    setup = make_setup(["shop"], top={"rate_limits": [
        {"name": "orders_per_name_set", "scope": "name_set", "limit": 1, "window": "7d"}]})
    cfg, clock = load_config(setup.path), Clock()
    worker = make_worker(cfg, sqlite_store, clock)
    sqlite_store.enqueue("shop", trigger="alert", reason="first", now=clock())
    assert run_once(worker, sqlite_store, clock).state is State.SUCCEEDED
    start = clock()
    sqlite_store.enqueue("shop", trigger="manual", reason="again", now=clock(), force=True)
    job = run_once(worker, sqlite_store, clock)
    assert job.state is State.QUEUED and job.attempt == 0
    assert job.not_before == start + timedelta(days=7)
    assert "rate limit orders_per_name_set" in states_reasons(sqlite_store, job.id)[-1]
    assert "1/1 per 1w; next try" in states_reasons(sqlite_store, job.id)[-1]  # not "7 days, 0:00:00"
    assert setup.issued() == ["shop"]


def test_failed_attempts_do_not_use_up_the_certificates_per_name_set_limit(
    make_setup: Callable[..., Setup], sqlite_store: Store, tmp_path: Path,
) -> None:
    """Three failed attempts and two issued certificates for the same names, with Let's Encrypt's 5 per
    week: a third renewal is still allowed (2 certificates count, as Let's Encrypt counts them; the
    ledger used to count 5 orders and park the job for a week)."""
    fail = tmp_path / "fail"
    fail.touch()
    setup = make_setup(["shop"], fail_file=fail, top={"rate_limits": [
        {"name": "certificates_per_name_set", "scope": "name_set", "limit": 5, "window": "7d"}]})
    setup.data["worker"]["max_attempts"] = 5
    cfg, clock = load_config(setup.write()), Clock()
    worker = make_worker(cfg, sqlite_store, clock)
    sqlite_store.enqueue("shop", trigger="alert", reason="first", now=clock())
    for _ in range(3):
        assert run_once(worker, sqlite_store, clock).state is State.QUEUED
        clock.now += timedelta(seconds=3)
    fail.unlink()
    assert run_once(worker, sqlite_store, clock).state is State.SUCCEEDED
    for reason in ("second", "third"):
        clock.now += timedelta(minutes=1)
        sqlite_store.enqueue("shop", trigger="manual", reason=reason, now=clock(), force=True)
        job = run_once(worker, sqlite_store, clock)
        assert job.state is State.SUCCEEDED, states_reasons(sqlite_store, job.id)
    assert setup.issued() == ["shop", "shop", "shop"]


def test_the_reason_a_job_waits_shows_in_the_certificates_api(
    make_setup: Callable[..., Setup], start_renewer: Callable[..., RenewerProcess],
) -> None:
    """A real renewer: after one issued certificate with a limit of 1 per week, a forced renewal waits;
    GET /api/v1/certificates says why and until when, not only the job's event trail."""
    setup = make_setup(["shop"], top={"rate_limits": [
        {"name": "certificates_per_name_set", "scope": "name_set", "limit": 1, "window": "7d"}]})
    proc = start_renewer(setup.path)
    assert proc.post("/api/v1/alertmanager", AM_FIRING).status_code == 202
    wait_until(lambda: _job_state(proc) == "succeeded", 20, "the first renewal")
    assert proc.post("/api/v1/certificates/shop/renew?force=true").status_code == 202

    def waiting() -> dict[str, object] | None:
        cert = proc.get("/api/v1/certificates").json()["certificates"][0]
        job = cert["open_job"]
        return job if job and job["waiting"] else None

    job = wait_until(waiting, 20, "the job to wait")
    assert str(job["waiting"]).startswith("waiting: rate limit certificates_per_name_set for shop.example: 1/1 per 1w")
    assert datetime.fromisoformat(str(job["not_before"])) > datetime.now(UTC) + timedelta(days=6)
    assert setup.issued() == ["shop"]


def _job_state(proc: RenewerProcess, cert: str = "shop") -> str | None:
    jobs = proc.get(f"/api/v1/jobs?certificate={cert}").json()["jobs"]
    return jobs[0]["state"] if jobs else None


# A step still running when the test kills it: its sleep is the behaviour under test, not a wait.
_SLOW_STEP = ("import os, sys, time; p = sys.argv[1]; open(p + '.tmp', 'w').write(str(os.getpid())); "
              "os.replace(p + '.tmp', p); time.sleep(60)")  # the PID file appears whole


def _kill_pid_file(path: Path) -> None:
    if path.exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(path.read_text()), signal.SIGKILL)


@pytest.mark.parametrize("stage", ["issuing", "installing"])
def test_kill_9_mid_job_then_restart_finishes_the_job(
    make_setup: Callable[..., Setup], start_renewer: Callable[..., RenewerProcess], pki: Pki, tmp_path: Path,
    stage: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kill -9 of a real renewer while issuing (slow CA) or deploying (slow reload): the live files stay a
    consistent pair; after a restart the lease expires, the job resumes - from the saved material when it
    was deploying (no second issuance) - and succeeds."""
    # The slow step announces itself (its PID in pid_file) once it runs: for "installing" that is the
    # deploy step, after the files were written, as in a reload that hangs.
    pid_file = tmp_path / "slow.pid"
    slow = [[sys.executable, "-c", _SLOW_STEP, str(pid_file)]] if stage == "installing" else [["true"]]
    setup = make_setup(["shop"], deploy=slow, top={"worker": {"lease": "3s", "poll_interval": "200ms"}})
    old = pki.leaf(["shop.example"], days=2)
    outputs = setup.data["certificates"][0]["outputs"]
    Path(outputs["fullchain"]).write_bytes(old.fullchain_pem)
    Path(outputs["key"]).write_bytes(old.key_pem)
    if stage == "issuing":
        monkeypatch.setenv("CERTLOOP_TEST_MINT_SLEEP", str(pid_file))
    proc = start_renewer(setup.path)
    assert proc.post("/api/v1/alertmanager", AM_FIRING).status_code == 202
    wait_until(lambda: _job_state(proc) == stage and pid_file.exists(), 20, f"the job to reach {stage}")
    proc.kill(signal.SIGKILL)
    _kill_pid_file(pid_file)  # the slow child dies with the renewer (its leash); in case it lingers
    cert_pem = Path(outputs["fullchain"]).read_bytes()
    key = serialization.load_pem_private_key(Path(outputs["key"]).read_bytes(), None)
    assert key.public_key() == x509.load_pem_x509_certificate(cert_pem).public_key()
    # Restart with a fast deploy and a fast CA.
    monkeypatch.delenv("CERTLOOP_TEST_MINT_SLEEP", raising=False)
    data = yaml.safe_load(setup.path.read_text())
    data["certificates"][0]["deploy"] = [["true"]]
    setup.path.write_text(yaml.safe_dump(data))
    again = start_renewer(setup.path, log_name="renewer2.log")
    wait_until(lambda: _job_state(again) == "succeeded", 30, "the resumed job to succeed")
    job = again.get("/api/v1/jobs?certificate=shop").json()["jobs"][0]
    trail = [e["to_state"] for e in again.get(f"/api/v1/jobs/{job['id']}").json()["events"]]
    live = x509.load_pem_x509_certificate(Path(outputs["fullchain"]).read_bytes())
    assert live != old.cert
    if stage == "installing":
        assert setup.issued() == ["shop"]  # the saved material was deployed, not re-issued
        assert trail.count("issuing") == 1 and trail.count("installing") == 2
    else:
        assert setup.issued() == ["shop"]  # the killed attempt never finished; one clean re-issue
        assert trail.count("issuing") == 2
    assert trail[-1] == "succeeded"


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as dead)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_kill_9_during_issuance_kills_the_issuer_and_start_up_removes_its_staging_key(
    make_setup: Callable[..., Setup], start_renewer: Callable[..., RenewerProcess], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kill -9 of a real renewer while a slow issuer runs: the issuer dies with it (no second order
    running behind the next renewer's back), and the next start removes the staging directory with the
    plaintext key the issuer had written; the job then succeeds."""
    pid_file = tmp_path / "slow.pid"
    setup = make_setup(["shop"], top={"worker": {"lease": "3s", "poll_interval": "200ms"}})
    monkeypatch.setenv("CERTLOOP_TEST_MINT_SLEEP", str(pid_file))
    proc = start_renewer(setup.path)
    assert proc.post("/api/v1/alertmanager", AM_FIRING).status_code == 202
    wait_until(pid_file.exists, 20, "the slow issuer to start")
    issuer_pid = int(pid_file.read_text())
    staging = Path(setup.data["data_dir"]) / "staging" / "shop"
    keys = list(staging.glob("*/key.pem"))
    assert len(keys) == 1
    try:
        proc.kill(signal.SIGKILL)
        wait_until(lambda: not _alive(issuer_pid), 10, "the issuer to die with the renewer")
    finally:
        _kill_pid_file(pid_file)
    assert keys[0].exists()  # nobody cleaned up after the killed renewer
    monkeypatch.delenv("CERTLOOP_TEST_MINT_SLEEP")
    again = start_renewer(setup.path, log_name="renewer2.log")
    wait_until(lambda: _job_state(again) == "succeeded", 30, "the resumed job to succeed")
    assert list(staging.iterdir()) == []
    assert "removed 1 staging directory left by an interrupted issuance" in again.log.read_text()
    assert setup.issued() == ["shop"]


def test_safety_net_queues_only_certificates_inside_renew_before(
    make_setup: Callable[..., Setup], sqlite_store: Store, pki: Pki,
) -> None:
    """The scheduler tick queues a certificate inside renew_before or missing, not a fresh one, records
    each installed certificate's expiry and next due time, and prunes ledger events older than any window."""
    setup = make_setup(["fresh", "old", "missing"], renew_before="10d")
    cfg, clock = load_config(setup.path), Clock()
    fresh = pki.leaf(["fresh.example"], days=60)
    Path(cfg.certificates[0].outputs.fullchain or "").write_bytes(fresh.fullchain_pem)
    Path(cfg.certificates[1].outputs.fullchain or "").write_bytes(pki.leaf(["old.example"], days=5).fullchain_pem)
    sqlite_store.record_ledger([LedgerEvent("command", "account", "", clock() - timedelta(days=8)),
                                LedgerEvent("command", "account", "", clock() - timedelta(days=6))])
    woken: list[int] = []
    net = SafetyNet(sqlite_store, lambda: cfg, clock, lambda: woken.append(1))
    assert sorted(asyncio.run(net.tick())) == ["missing", "old"]
    assert woken == [1]
    jobs = {j.certificate: j for j in sqlite_store.list_jobs()}
    assert set(jobs) == {"missing", "old"} and jobs["old"].trigger == "schedule"
    state = sqlite_store.certificate_states()["fresh"]
    assert state.not_after == fresh.cert.not_valid_after_utc
    assert state.next_due == fresh.cert.not_valid_after_utc - timedelta(days=10)
    assert asyncio.run(net.tick()) == []  # already queued: nothing new
    assert [e.at for e in sqlite_store.ledger(clock() - timedelta(days=30))] == [clock() - timedelta(days=6)]


def test_daemon_safety_net_renews_without_any_alert(
    make_setup: Callable[..., Setup], start_renewer: Callable[..., RenewerProcess], pki: Pki,
) -> None:
    """A real renewer with the scheduler on renews a certificate that is inside its window, no webhook."""
    setup = make_setup(["shop"], renew_before="10d", top={"scheduler": {"enabled": True, "interval": "1h"}})
    outputs = setup.data["certificates"][0]["outputs"]
    Path(outputs["fullchain"]).write_bytes(pki.leaf(["shop.example"], days=2).fullchain_pem)
    proc = start_renewer(setup.path)
    wait_until(lambda: _job_state(proc) == "succeeded", 20, "the safety net's renewal")
    assert setup.issued() == ["shop"]
    assert proc.get("/api/v1/jobs").json()["jobs"][0]["trigger"] == "schedule"


SHOUT = "import sys; sys.stderr.write('first line of trouble\\nsecond line: \\x1b[31mred\\x1b[0m\\n'); sys.exit(1)"


def _job_records(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """(level, the record as the daemon writes it in logfmt) for the worker's warnings and errors; the
    JSON rendering of each is checked to be one line too."""
    out = []
    for record in caplog.records:
        if record.name == "certloop.renewer.worker" and record.levelno >= logging.WARNING:
            assert "\n" not in JsonFormatter().format(record)
            out.append((record.levelname, LogfmtFormatter().format(record)))
    return out


@pytest.mark.parametrize(("lane", "outcome", "first", "last"), [
    ("issuance", State.FAILED, "attempt 1 of 3 failed", "failed: issuance failed after 3"),
    ("deploy", State.ROLLED_BACK, "deploy attempt 1 of 3 rolled back", "(after 3 deploy attempts)"),
])
def test_every_failed_attempt_warns_once_and_the_outcome_errors_once(
    lane: str, outcome: State, first: str, last: str,
    make_setup: Callable[..., Setup], sqlite_store: Store, caplog: pytest.LogCaptureFixture,
) -> None:
    """Three failed attempts of a program that prints two stderr lines (the issuer's command, or a deploy
    step): two WARNING lines, one ERROR line, each one record on one line with the stderr tail escaped into
    it; last_error keeps the tail too."""
    if lane == "issuance":
        setup = make_setup(["shop"])
        setup.data["certificates"][0]["issuer"] = {"type": "command", "argv": [sys.executable, "-c", SHOUT]}
        setup.write()
    else:
        setup = make_setup(["shop"], deploy=[[sys.executable, "-c", SHOUT]])
    cfg, clock = load_config(setup.path), Clock()
    worker = make_worker(cfg, sqlite_store, clock)
    sqlite_store.enqueue("shop", trigger="alert", reason="test", now=clock())
    caplog.set_level("INFO", logger="certloop.renewer.worker")
    for _ in range(3):
        job = run_once(worker, sqlite_store, clock)
        clock.now += timedelta(seconds=3)
    assert job.state is outcome
    records = _job_records(caplog)
    assert [level for level, _ in records] == ["WARNING", "WARNING", "ERROR"], records
    for _, line in records:
        assert "\n" not in line and "\x1b" not in line
        assert "first line of trouble\\nsecond line: \\u001b[31mred" in line, line
    assert first in records[0][1] and last in records[2][1]
    assert "second line" in (job.last_error or "")
