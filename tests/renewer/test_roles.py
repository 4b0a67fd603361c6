"""Who may do what on the renewer: roles for tokens, signed-in people and client certificates, checked on a real
renewer process before any handler runs. The table below is the contract; each row is one real request."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest
import yaml

from tests.renewer.conftest import TOKEN, RenewerProcess, Setup

FIXTURES = Path(__file__).parent / "fixtures"
PASSWORD = "correct horse battery"
TOKENS = {"am": "alertmanager-token-0123456789", "ci": "operator-token-0123456789ab",
          "ro": "viewer-token-0123456789abcd"}


def _basic(user: str, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


CALLERS: dict[str, str | None] = {
    "nobody": None,
    "legacy-admin-token": f"Bearer {TOKEN}",
    "alertmanager-token": f"Bearer {TOKENS['am']}",
    "operator-token": f"Bearer {TOKENS['ci']}",
    "viewer-token": f"Bearer {TOKENS['ro']}",
    "wrong-token": "Bearer not-a-token-of-ours-at-all",
    "vera (viewer)": _basic("vera"),
    "otto (operator)": _basic("otto"),
    "ada (admin)": _basic("ada"),
    "nora (no role)": _basic("nora"),
    "vera, wrong password": _basic("vera", "wrong"),
}
# expected status per (route, caller); 2xx means allowed
ROUTES = {
    "webhook": ("POST", "/api/v1/alertmanager"),
    "read": ("GET", "/api/v1/certificates"),
    "renew": ("POST", "/api/v1/certificates/shop/renew?force=true"),
    "reload": ("POST", "/-/reload"),
    "metrics": ("GET", "/metrics"),
    "healthy": ("GET", "/-/healthy"),
}
ALLOWED = {
    "legacy-admin-token": {"webhook", "read", "renew", "reload", "metrics", "healthy"},
    "ada (admin)": {"webhook", "read", "renew", "reload", "metrics", "healthy"},
    "alertmanager-token": {"webhook", "metrics", "healthy"},
    "operator-token": {"read", "renew", "metrics", "healthy"},
    "otto (operator)": {"read", "renew", "metrics", "healthy"},
    "viewer-token": {"read", "metrics", "healthy"},
    "vera (viewer)": {"read", "metrics", "healthy"},
    "nora (no role)": {"metrics", "healthy"},  # signed in, so /metrics; no role, so nothing else
}
UNAUTHENTICATED = {"nobody", "wrong-token", "vera, wrong password"}


@pytest.fixture
def renewer(make_setup: Callable[..., Setup], start_renewer: Callable[..., RenewerProcess],
            tmp_path: Path) -> RenewerProcess:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({"basic_auth_users": {u: hashed for u in ("vera", "otto", "ada", "nora")}}))
    setup = make_setup(["shop"], top={"worker": {"backoff_base": "1h", "backoff_max": "2h"}})
    setup.data["auth"] = {
        "token": TOKEN,
        "tokens": [{"name": "alertmanager", "token": TOKENS["am"], "role": "alertmanager"},
                   {"name": "ci", "token": TOKENS["ci"], "role": "operator"},
                   {"name": "dashboard", "token": TOKENS["ro"], "role": "viewer"}],
        "users": {"vera": "viewer", "otto": "operator", "ada": "admin"},
    }
    setup.write()
    return start_renewer(setup.path, extra=[f"--web.config.file={web}", "--web.enable-lifecycle"])


def test_every_caller_gets_exactly_what_its_role_allows(renewer: RenewerProcess) -> None:
    body = (FIXTURES / "firing.json").read_bytes()
    failures = []
    for caller, header in CALLERS.items():
        for route, (method, path) in ROUTES.items():
            headers = {"Authorization": header} if header else {}
            resp = renewer.session.request(method, renewer.url + path, headers=headers,
                                           data=body if route == "webhook" else None, timeout=30)
            if route == "healthy" or (caller in ALLOWED and route in ALLOWED[caller]):
                ok = resp.status_code < 300
            elif caller in UNAUTHENTICATED:
                ok = resp.status_code == 401 and "WWW-Authenticate" in resp.headers
            else:
                ok = resp.status_code == 403
            if not ok:
                failures.append(f"{caller} {method} {path}: {resp.status_code} {resp.text[:120]}")
    assert not failures, "\n".join(failures)


def test_a_403_names_the_caller_and_role_and_never_a_secret(renewer: RenewerProcess) -> None:
    resp = renewer.session.post(renewer.url + "/-/reload", headers={"Authorization": f"Bearer {TOKENS['ci']}"},
                                timeout=10)
    assert resp.status_code == 403 and resp.json()["error"] == "ci (role operator) may not do this"
    assert TOKENS["ci"] not in renewer.log.read_text()


def test_a_manual_renewal_records_who_asked(renewer: RenewerProcess) -> None:
    resp = renewer.session.post(renewer.url + "/api/v1/certificates/shop/renew?force=true",
                                headers={"Authorization": _basic("otto")}, timeout=30)
    assert resp.status_code == 202, resp.text
    job = renewer.session.get(renewer.url + f"/api/v1/jobs/{resp.json()['job_id']}",
                              headers={"Authorization": _basic("vera")}, timeout=10).json()
    assert "otto" in json.dumps(job), job


def test_users_without_a_password_are_refused_at_start(
    make_setup: Callable[..., Setup], tmp_path: Path,
) -> None:
    from certloop.cli import main

    setup = make_setup(["shop"])
    setup.data["auth"] = {"token": TOKEN, "users": {"vera": "viewer"}}
    setup.write()
    assert main(["renewer", "--config.file", str(setup.path), "--config.check"]) == 78
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users: {}\n")
    assert main(["renewer", "--config.file", str(setup.path), f"--web.config.file={web}", "--config.check"]) == 78
