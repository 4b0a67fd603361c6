"""Bad client input to the renewer's API is the client's fault (400 or 404), never an outage (500/503),
on every engine: ids and query values are checked at the API boundary before any database sees them.
Real `certloop renewer` processes on SQLite, the running PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from certloop.renewer.store import Store
from tests.renewer.conftest import RenewerProcess, Setup, clean

CASES = [
    ("/api/v1/jobs/12345678901234567890123", 404),  # 23 digits: overflowed SQLite (500), PostgreSQL (503)
    ("/api/v1/jobs/2147483648", 404),  # one past a 32-bit INTEGER: no such job can exist
    ("/api/v1/jobs/0", 404),
    ("/api/v1/jobs/abc", 400),
    ("/api/v1/jobs/-1", 400),
    ("/api/v1/jobs/+5", 400),  # int() would take these three
    ("/api/v1/jobs/1_0", 400),
    ("/api/v1/jobs/%D9%A3", 400),  # ARABIC-INDIC DIGIT THREE
    ("/api/v1/jobs?certificate=%00", 400),  # NUL: PostgreSQL refused it (503)
    ("/api/v1/jobs?certificate=shop%0A", 400),
    ("/api/v1/jobs?certificate=" + "a" * 300, 400),
    ("/api/v1/jobs?state=%00", 400),
    ("/api/v1/jobs?state=bogus", 400),
    ("/api/v1/jobs?certificate=shop&state=queued", 200),
    ("/api/v1/jobs/1", 404),
]


@pytest.mark.parametrize("engine", ["sqlite", "postgresql", "mariadb"])
def test_bad_ids_and_query_values_are_400_or_404_on_every_engine(
    engine: str, request: pytest.FixtureRequest, make_setup: Callable[..., Setup],
    start_renewer: Callable[..., RenewerProcess],
) -> None:
    database = {"sqlite": None, "postgresql": "pg_url", "mariadb": "mariadb_url"}[engine]
    setup = make_setup(["shop"], database=None if database is None else request.getfixturevalue(database))
    r = start_renewer(setup.path)
    if engine != "sqlite":  # the session database is shared: start from no jobs
        clean(Store(setup.data["database"]["url"])).close()
    got = [(path, r.get(path).status_code) for path, _ in CASES]
    assert got == CASES
    for path, _ in CASES[:5]:
        body = r.get(path).json()
        assert "unavailable" not in body.get("error", "") and "internal" not in body.get("error", "")
    assert "Traceback" not in r.log.read_text()
