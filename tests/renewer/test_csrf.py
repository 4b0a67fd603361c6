"""The status page's CSRF tokens: bound to the principal, expiring, signed with a secret every replica on
one database shares (created once, race-safe, on SQLite, PostgreSQL and MariaDB), so a form loaded from
one renewer process is accepted by another, and after a restart; a tampered or expired one is refused
403 and audited."""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bcrypt
import pytest
import sqlalchemy as sa
import yaml

from certloop.renewer import migrations
from certloop.renewer.access import Principal
from certloop.renewer.csrf import EXPIRED, WRONG, Csrf
from certloop.renewer.sharedsecret import shared_secret, shared_secrets
from certloop.renewer.store import Store
from stack.process import wait_until
from tests.renewer.conftest import TOKEN, RenewerProcess, Setup, clean

NOW = datetime(2026, 1, 1, tzinfo=UTC)
OTTO = Principal("otto", "operator", "password")
PASSWORD = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def test_rekey_switches_to_the_shared_key() -> None:
    """A renewer that started while its database did not answer signs forms with its own key; once it
    reads the shared key, tokens of every replica pass and its own earlier ones are refused."""
    clock = Clock()
    own = Csrf(b"o" * 32, clock)
    early = own.token(OTTO)
    replica = Csrf(b"s" * 32, clock).token(OTTO)
    assert own.check(OTTO, replica) == WRONG
    own.rekey(b"s" * 32)
    assert own.check(OTTO, replica) is None
    assert own.check(OTTO, early) == WRONG
    with pytest.raises(ValueError):
        own.rekey(b"short")


def test_a_token_is_bound_to_its_principal_and_expires() -> None:
    clock = Clock()
    csrf = Csrf(b"k" * 32, clock)
    token = csrf.token(OTTO)
    assert re.fullmatch(r"[0-9]+\.[0-9a-f]{64}", token)
    assert csrf.check(OTTO, token) is None
    assert Csrf(b"k" * 32, clock).check(OTTO, token) is None  # another process with the same secret
    assert Csrf(b"x" * 32, clock).check(OTTO, token) == WRONG  # another secret
    for other in (Principal("otto", "viewer", "password"), Principal("vera", "operator", "password"),
                  Principal("otto", "operator", "token")):
        assert csrf.check(other, token) == WRONG
    issued, mac = token.split(".")
    for tampered in (f"{int(issued) + 1}.{mac}", f"{issued}.{mac[:-1]}{'0' if mac[-1] != '0' else '1'}",
                     mac, "", ".", f"{issued}.", f"+{issued}.{mac}", f"{issued}.{mac}x", "١٢٣." + mac):
        assert csrf.check(OTTO, tampered) == WRONG, tampered
    assert csrf.check(OTTO, None) == WRONG
    clock.now = NOW + timedelta(hours=12)
    assert csrf.check(OTTO, token) is None
    clock.now = NOW + timedelta(hours=12, seconds=1)
    assert csrf.check(OTTO, token) == EXPIRED
    clock.now = NOW - timedelta(minutes=6)  # issued "in the future" beyond the clock skew allowed
    assert csrf.check(OTTO, token) == EXPIRED
    clock.now = NOW - timedelta(minutes=4)
    assert csrf.check(OTTO, token) is None


def test_the_shared_secret_is_created_once_and_read_by_every_store(any_store: Store) -> None:
    """Eight threads, each with its own engine (as replicas have), ask for a secret that does not exist
    yet at the same moment: one row is created and every one of them gets its value."""
    with any_store.engine.begin() as conn:
        conn.execute(shared_secrets.delete())
    stores = [Store(any_store.url) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    got: list[bytes] = []
    errors: list[BaseException] = []

    def ask(store: Store) -> None:
        try:
            barrier.wait(10)
            got.append(shared_secret(store, "csrf", NOW))
        except BaseException as exc:  # reported below, with the engine's name
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for s in stores:
        s.close()
    assert not errors, errors
    assert len(got) == 8 and len(set(got)) == 1 and len(got[0]) == 32
    assert shared_secret(any_store, "csrf", NOW) == got[0]
    assert shared_secret(any_store, "other", NOW) != got[0]
    with any_store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(shared_secrets)).scalar() == 2


def test_migration_0003_upgrades_and_downgrades(any_store: Store) -> None:
    """0003 adds shared_secrets on top of 0002; its downgrade removes only that table."""
    assert migrations.current(any_store.engine) == "0003"
    shared_secret(any_store, "csrf", NOW)
    migrations.downgrade(any_store.engine, "0002")
    tables = set(sa.inspect(any_store.engine).get_table_names())
    assert "shared_secrets" not in tables and {"jobs", "audit_events"} <= tables
    migrations.upgrade(any_store.engine)
    assert len(shared_secret(any_store, "csrf", NOW)) == 32


# -- two real renewer processes on one database ---------------------------------------------------------


def _basic(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()}


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9]+\.[0-9a-f]{64})"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


def _forge(secret: bytes, principal: Principal, issued: datetime) -> str:
    """A correctly signed token issued at ``issued``: only a holder of the secret (this test, reading the
    database) can make one; used to show that an old token is refused for its age alone."""
    return Csrf(secret, lambda: issued).token(principal)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_form_from_one_process_is_accepted_by_another_on_the_same_database(
    engine: str, make_setup: Callable[..., Setup], start_renewer: Callable[..., RenewerProcess],
    tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    """Replica A serves the page, replica B takes the POST (303 and a job); a token with one digit changed
    and a properly signed token 13 hours old are refused 403 by B and audited with their reason."""
    database = None
    if engine == "postgresql":
        database = request.getfixturevalue("pg_url")
        clean(Store(database)).close()
        with sa.create_engine(database).begin() as conn:  # a fresh secret: the first replica creates it
            conn.execute(shared_secrets.delete())
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({"basic_auth_users": {"otto": hashed, "vera": hashed}}))
    setup = make_setup(["shop"], database=database)
    setup.data["auth"] = {"token": TOKEN, "users": {"otto": "operator", "vera": "viewer"}}
    setup.write()
    a = start_renewer(setup.path, log_name="a.log", extra=[f"--web.config.file={web}"])
    b = start_renewer(setup.path, log_name="b.log", extra=[f"--web.config.file={web}"])
    token = _csrf(a.session.get(a.url + "/status", headers=_basic("otto"), timeout=10).text)

    url = database or f"sqlite:///{Path(setup.data['data_dir']) / 'renewer.db'}"
    store = Store(url)
    try:
        secret = shared_secret(store, "csrf", NOW)
    finally:
        store.close()
    issued, mac = token.split(".")
    tampered = f"{issued}.{mac[:10]}{'1' if mac[10] == '0' else '0'}{mac[11:]}"
    old = _forge(secret, OTTO, datetime.now(UTC) - timedelta(hours=13))
    for bad, reason in ((tampered, WRONG), (old, EXPIRED)):
        resp = b.session.post(b.url + "/status/certificates/shop/renew", data={"csrf": bad},
                              headers=_basic("otto"), timeout=10, allow_redirects=False)
        assert resp.status_code == 403 and reason in resp.text, (reason, resp.text)
    assert b.get("/api/v1/jobs").json()["jobs"] == []

    resp = b.session.post(b.url + "/status/certificates/shop/renew", data={"csrf": token},
                          headers=_basic("otto"), timeout=10, allow_redirects=False)
    assert resp.status_code == 303, resp.text
    job = int(resp.headers["Location"].rsplit("/", 1)[1])
    wait_until(lambda: a.get(f"/api/v1/jobs/{job}").json()["state"] == "succeeded", 60, "the queued job")
    audit = a.get("/api/v1/audit").json()["events"]
    refusals = sorted(e["detail"] for e in audit if e["actor"] == "otto" and e["status"] == 403)
    assert refusals == sorted([WRONG, EXPIRED]), audit
    assert any(e["actor"] == "otto" and e["status"] == 303 and e["detail"].startswith(f"job {job}") for e in audit)
    # The secret is not something the renewer shows or logs.
    hexed = secret.hex()
    assert hexed not in a.log.read_text() and hexed not in b.log.read_text()


def test_a_form_survives_a_restart(make_setup: Callable[..., Setup], start_renewer: Callable[..., RenewerProcess],
                                   tmp_path: Path) -> None:
    """The page is loaded, the renewer restarts (zero configuration: SQLite in data_dir), the form still works."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({"basic_auth_users": {"otto": hashed}}))
    setup = make_setup(["shop"])
    setup.data["auth"] = {"token": TOKEN, "users": {"otto": "operator"}}
    setup.write()
    first = start_renewer(setup.path, extra=[f"--web.config.file={web}"])
    token = _csrf(first.session.get(first.url + "/status", headers=_basic("otto"), timeout=10).text)
    first.kill()
    second = start_renewer(setup.path, extra=[f"--web.config.file={web}"])
    resp = second.session.post(second.url + "/status/certificates/shop/renew", data={"csrf": token},
                               headers=_basic("otto"), timeout=10, allow_redirects=False)
    assert resp.status_code == 303, resp.text
