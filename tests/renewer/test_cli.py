"""`certloop renewer`: config check with path-naming errors, JSON Schema, db migrations, and reload
(SIGHUP and POST /-/reload) of a real renewer process keeping the old config when the new one is bad."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from certloop.cli import main as certloop_main
from certloop.renewer import migrations
from certloop.renewer.cli import main
from stack.process import wait_until
from tests.renewer.conftest import RenewerProcess, Setup


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(["--config.file", str(path), "--config.check"])
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_valid_config_checks_ok(make_setup: Callable[..., Setup], capsys: pytest.CaptureFixture[str]) -> None:
    """A valid file exits 0 and says how many certificates it manages."""
    setup = make_setup(["shop", "blog"])
    rc, text = check(setup.path, capsys)
    assert rc == 0 and "ok (2 certificate(s))" in text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(surprise=1), "surprise: unknown key (not part of the configuration schema)"),
        (lambda d: d["certificates"].append(dict(d["certificates"][0])),
         "certificates: certificate id 'shop' is used twice"),
        (lambda d: d.update(auth={}), "auth: set token, token_file, tokens, users or client_ca_file"),
        (lambda d: d["worker"].update(lease="soon"), 'worker.lease: expected a duration like "5s"'),
        (lambda d: d.update(auth={"token": "short"}), "auth.token: the token must be at least 16 characters"),
        (lambda d: d.update(listen="nowhere"), 'listen: expected "host:port"'),
        (lambda d: d["certificates"][0].update(id="../x"), "certificates[0].id: String should match pattern"),
        (lambda d: d.update(rate_limits=[{"name": "x", "scope": "forever", "limit": 1, "window": "1h"}]),
         "rate_limits[0].scope: Input should be 'account', 'name_set' or 'name_failures'"),
        (lambda d: d.update(database={"url": "oracle://x"}), "database.url: expected a sqlite://"),
    ],
)
def test_bad_config_names_the_path(
    make_setup: Callable[..., Setup], capsys: pytest.CaptureFixture[str], change: Callable[[dict], None], message: str,
) -> None:
    """Each broken config exits 78 (config error) with an error naming the bad key."""
    setup = make_setup(["shop"])
    change(setup.data)
    setup.write()
    rc, text = check(setup.path, capsys)
    assert rc == 78
    assert message in text, text


def test_json_schema_is_printed_by_certloop_config(capsys: pytest.CaptureFixture[str]) -> None:
    """`certloop config schema renewer` prints the renewer config schema with its top-level keys."""
    assert certloop_main(["config", "schema", "renewer"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert {"listen", "auth", "database", "worker", "scheduler", "rate_limits", "alerts", "certificates"} <= set(
        schema["properties"])
    assert schema["additionalProperties"] is False


def test_db_upgrade_current_downgrade(make_setup: Callable[..., Setup], capsys: pytest.CaptureFixture[str],
                                      pg_url: str) -> None:
    """`db upgrade` migrates to head, `db current` reports it, `db downgrade base` empties the schema."""
    setup = make_setup(["shop"], database=pg_url, top={"database": {"url": pg_url, "auto_migrate": False}})
    args = ["--config.file", str(setup.path), "db"]
    assert main([*args, "downgrade", "base"]) == 0
    assert capsys.readouterr().out.strip() == "base (empty)"
    assert main([*args, "upgrade"]) == 0
    assert capsys.readouterr().out.strip() == migrations.HEAD
    assert main([*args, "current"]) == 0
    assert capsys.readouterr().out.strip() == migrations.HEAD
    assert main([*args, "downgrade"]) == 64


def _cert_ids(proc: RenewerProcess) -> list[str]:
    return [c["id"] for c in proc.get("/api/v1/certificates").json()["certificates"]]


def _reload_ok(proc: RenewerProcess) -> float:
    for line in proc.get("/metrics", token=None).text.splitlines():
        if line.startswith("certloop_renewer_config_last_reload_successful "):
            return float(line.split()[1])
    raise AssertionError("reload metric missing")


def _renewals(proc: RenewerProcess) -> dict[tuple[str, str], float]:
    """certloop_renewer_renewals_total by (certificate, result)."""
    out = {}
    for family in text_string_to_metric_families(proc.get("/metrics", token=None).text):
        if family.name == "certloop_renewer_renewals":
            for sample in family.samples:
                if sample.name == "certloop_renewer_renewals_total":
                    out[(sample.labels["certificate"], sample.labels["result"])] = sample.value
    return out


def _durations(proc: RenewerProcess) -> dict[str, float]:
    """certloop_renewer_renewal_duration_seconds_count by issuer."""
    return {s.labels["issuer"]: s.value
            for family in text_string_to_metric_families(proc.get("/metrics", token=None).text)
            if family.name == "certloop_renewer_renewal_duration_seconds"
            for s in family.samples if s.name == "certloop_renewer_renewal_duration_seconds_count"}


def test_reload_keeps_the_old_config_when_the_new_one_is_bad(
    make_setup: Callable[..., Setup], start_renewer: Callable[..., RenewerProcess],
) -> None:
    """SIGHUP with a broken file keeps serving the old config (metric 0); POST /-/reload of a fixed file
    applies it (metric 1) and a bad one answers 500 with the error."""
    setup = make_setup(["shop"], top={"worker": {"backoff_base": "1h", "backoff_max": "2h"}})
    proc = start_renewer(setup.path, extra=["--web.enable-lifecycle"])
    assert _cert_ids(proc) == ["shop"] and _reload_ok(proc) == 1
    # Every configured certificate's renewal counters exist at 0 before any job, so increase() sees a first failure.
    assert _renewals(proc) == {("shop", r): 0.0 for r in ("succeeded", "failed", "rolled_back")}
    # ... and the duration histogram of its issuer type, so rate() sees that issuer's first renewal.
    assert _durations(proc) == {setup.data["certificates"][0]["issuer"]["type"]: 0.0}
    setup.path.write_text(setup.path.read_text() + "\nsurprise: 1\n")
    proc.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: _reload_ok(proc) == 0, 10, "the failed reload to show")
    assert _cert_ids(proc) == ["shop"]
    bad = proc.post("/-/reload")
    assert bad.status_code == 500 and "surprise: unknown key" in bad.json()["error"]
    data = yaml.safe_load(setup.path.read_text())
    del data["surprise"]
    data["certificates"].append({**data["certificates"][0], "id": "blog", "domains": ["blog.example"]})
    setup.path.write_text(yaml.safe_dump(data))
    assert proc.post("/-/reload").status_code == 200
    assert _cert_ids(proc) == ["shop", "blog"] and _reload_ok(proc) == 1
    assert _renewals(proc) == {(c, r): 0.0 for c in ("shop", "blog") for r in ("succeeded", "failed", "rolled_back")}
    data["certificates"] = data["certificates"][1:]  # shop removed: its series go with it
    setup.path.write_text(yaml.safe_dump(data))
    assert proc.post("/-/reload").status_code == 200
    assert set(_renewals(proc)) == {("blog", r) for r in ("succeeded", "failed", "rolled_back")}
    proc.kill(signal.SIGTERM)
    assert proc.proc.returncode == 0


def test_database_from_a_newer_certloop_is_a_clear_error(
    make_setup: Callable[..., Setup], capsys: pytest.CaptureFixture[str]
) -> None:
    """A database migrated by a newer certloop (an unknown revision) stops `db upgrade` and the daemon with a
    message saying what happened and what to do, not an Alembic traceback."""
    import sqlalchemy as sa

    setup = make_setup(["shop"])
    args = ["--config.file", str(setup.path), "db"]
    assert main([*args, "upgrade"]) == 0
    capsys.readouterr()
    url = f"sqlite:///{Path(setup.data['data_dir']) / 'renewer.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    assert main([*args, "upgrade"]) == 1
    err = capsys.readouterr().err
    assert "schema revision '0099', which this certloop does not know" in err
    assert f"db downgrade {migrations.HEAD}" in err
    assert "Traceback" not in err
