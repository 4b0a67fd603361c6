"""The status page over plain HTTP against a real renewer with users: what each role sees, the CSRF check,
the buttons answering with the job they queued, and escaping of what clients can write into the page.
(The same flows in a real browser: test_status_browser.py.)"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest
import yaml

from stack.process import wait_until
from tests.renewer.conftest import TOKEN, RenewerProcess, Setup

PASSWORD = "correct horse battery"


def basic(user: str, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def renewer(make_setup: Callable[..., Setup], start_renewer: Callable[..., RenewerProcess],
            tmp_path: Path) -> RenewerProcess:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({"basic_auth_users": {u: hashed for u in ("vera", "otto")}}))
    setup = make_setup(["shop", "blog"], days=30, fail_file=tmp_path / "fail",
                       top={"worker": {"backoff_base": "1s", "backoff_max": "1s", "max_attempts": 1,
                                       "concurrency": 1, "lease": "5s", "poll_interval": "200ms"}})
    setup.data["auth"] = {"token": TOKEN, "users": {"vera": "viewer", "otto": "operator"}}
    setup.write()
    r = start_renewer(setup.path, extra=[f"--web.config.file={web}"])
    job = r.post("/api/v1/certificates/blog/renew?force=true").json()["job_id"]  # blog gets a leaf; shop has none
    wait_until(lambda: r.get(f"/api/v1/jobs/{job}").json()["state"] == "succeeded", 60, "blog's first leaf")
    return r


def page_with(r: RenewerProcess, path: str, user: str, text: str, timeout: float) -> str:
    """The page at ``path`` as ``user`` once it contains ``text``."""

    def get() -> str | None:
        html = r.session.get(r.url + path, headers=basic(user), timeout=10).text
        return html if text in html else None

    page: str = wait_until(get, timeout, f"{path} to show {text!r}")
    return page


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9]+\.[0-9a-f]{64})"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


def test_landing_page_links_everything_without_sign_in(renewer: RenewerProcess) -> None:
    resp = renewer.session.get(renewer.url + "/", timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    for link in ('href="/status"', 'href="/metrics"', 'href="/-/healthy"', 'href="/api/v1/openapi.json"'):
        assert link in resp.text
    status = renewer.session.get(renewer.url + "/status", headers=basic("vera"), timeout=10)
    assert "default-src 'none'" in status.headers["Content-Security-Policy"]


def test_a_viewer_sees_every_certificate_and_no_buttons(renewer: RenewerProcess) -> None:
    """Both certificates with domains, issuer, days left (blog: ~30, shop: nothing installed), the
    timeline SVG, the recent renewal; no form at all for a viewer. Without credentials: 401 Basic."""
    s = renewer.session
    assert s.get(renewer.url + "/status", timeout=10).headers["WWW-Authenticate"].startswith("Basic")
    html = s.get(renewer.url + "/status", headers=basic("vera"), timeout=10).text
    assert 'id="cert-shop"' in html and 'id="cert-blog"' in html and "blog.example" in html
    blog_row = html.split('id="cert-blog"')[1].split("</tr>")[0]
    days = float(re.search(r'class="days-left [a-z]+">([0-9.]+)<', blog_row).group(1))  # type: ignore[union-attr]
    assert 29 < days <= 30
    assert "nothing installed" in html.split('id="cert-shop"')[1].split("</tr>")[0]
    assert "<svg" in html and html.count("<rect") >= 3  # two bars, a renewal mark
    assert "Renew now" not in html and "<form" not in html and 'name="csrf"' not in html
    assert "<script" not in html


def test_an_operator_renews_from_the_page_and_gets_the_job(renewer: RenewerProcess) -> None:
    """Renew now: 303 to the job it queued, whose page shows it succeed and the new leaf's days left;
    the audit trail (API and page) names otto and the job."""
    s = renewer.session
    html = s.get(renewer.url + "/status", headers=basic("otto"), timeout=10).text
    assert 'id="renew-shop"' in html
    resp = s.post(renewer.url + "/status/certificates/shop/renew", data={"csrf": _csrf(html)},
                  headers=basic("otto"), timeout=10, allow_redirects=False)
    assert resp.status_code == 303, resp.text
    job_path = resp.headers["Location"]
    assert re.fullmatch(r"/status/jobs/[0-9]+", job_path)
    page = page_with(renewer, job_path, "vera", ">succeeded<", 60)
    assert re.search(r"\(([0-9.]+) days left\)", page)
    audit = s.get(renewer.url + "/api/v1/audit", headers=basic("vera"), timeout=10).json()["events"]
    assert any(e["actor"] == "otto" and e["action"] == "renew" and e["status"] == 303
               and e["detail"].startswith(f"job {job_path.rsplit('/', 1)[1]}") for e in audit), audit


def test_posts_without_a_valid_csrf_token_or_role_are_refused_and_audited(renewer: RenewerProcess) -> None:
    """No token, a forged token, another user's token: 403 and nothing queued; a viewer's POST: 403 by
    role. Each is in the audit trail."""
    s, url = renewer.session, renewer.url
    vera_token = _csrf(s.get(url + "/status", headers=basic("otto"), timeout=10).text)  # otto's, used below by vera
    before = len(s.get(url + "/api/v1/jobs", headers=basic("vera"), timeout=10).json()["jobs"])
    for data in ({}, {"csrf": "0" * 64}):
        resp = s.post(url + "/status/certificates/shop/renew", data=data, headers=basic("otto"), timeout=10)
        assert resp.status_code == 403 and "CSRF" in resp.text
    viewer = s.post(url + "/status/certificates/shop/renew", data={"csrf": vera_token}, headers=basic("vera"),
                    timeout=10)
    assert viewer.status_code == 403
    assert len(s.get(url + "/api/v1/jobs", headers=basic("vera"), timeout=10).json()["jobs"]) == before
    audit = s.get(url + "/api/v1/audit", headers=basic("vera"), timeout=10).json()["events"]
    csrf_refusals = [e for e in audit if e["actor"] == "otto" and e["status"] == 403
                     and e["detail"] == "CSRF token missing or wrong"]
    assert len(csrf_refusals) == 2
    assert any(e["actor"] == "vera" and e["action"] == "refused" and e["status"] == 403 for e in audit)


def test_retry_button_appears_for_a_failed_job_and_requeues_it(renewer: RenewerProcess, tmp_path: Path) -> None:
    s, url = renewer.session, renewer.url
    (tmp_path / "fail").write_text("fail")
    job = renewer.post("/api/v1/certificates/shop/renew?force=true").json()["job_id"]
    wait_until(lambda: renewer.get(f"/api/v1/jobs/{job}").json()["state"] == "failed", 60, "failure")
    (tmp_path / "fail").unlink()
    html = s.get(url + "/status", headers=basic("otto"), timeout=10).text
    assert 'id="retry-shop"' in html and "told to fail" in html.split('id="cert-shop"')[1].split("</tr>")[0]
    assert 'id="retry-shop"' not in s.get(url + "/status", headers=basic("vera"), timeout=10).text
    resp = s.post(url + f"/status/jobs/{job}/retry", data={"csrf": _csrf(html)}, headers=basic("otto"),
                  timeout=10, allow_redirects=False)
    assert resp.status_code == 303 and resp.headers["Location"] != f"/status/jobs/{job}"


def test_what_clients_write_into_the_page_is_escaped(renewer: RenewerProcess) -> None:
    """A refused request's path is shown in the audit trail as text, never as markup."""
    s, url = renewer.session, renewer.url
    assert s.get(url + "/api/v1/jobs/<script>alert(1)<", timeout=10).status_code == 401
    html = page_with(renewer, "/status", "vera", "alert(1)", 10)
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
