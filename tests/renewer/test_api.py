"""The renewer HTTP API served in-process on loopback by certloop.httpserver, with a real SQLite store
(and an unreachable PostgreSQL for the 503 case). The worker is not running here: jobs stay queued,
so what the API stored can be asserted exactly."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import ssl
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certloop.httpserver import HttpServer
from certloop.renewer.access import Access
from certloop.renewer.api import ROUTES, Api
from certloop.renewer.config import RenewerConfig, load_config
from certloop.renewer.csrf import Csrf
from certloop.renewer.daemon import tls_context
from certloop.renewer.install import verify_resolver
from certloop.renewer.metrics import CATALOGUE, RenewerMetrics
from certloop.renewer.openapi import OPENAPI
from certloop.renewer.routes import build_router
from certloop.renewer.served import ServedLeaves
from certloop.renewer.store import Store
from stack.alertmanager import Alertmanager
from stack.process import wait_until
from tests.renewer.conftest import TOKEN, Setup
from tests.support.exposition import check_against_catalogue
from tests.support.pki import Pki

FIXTURES = Path(__file__).parent / "fixtures"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Harness:
    """An Api + HttpServer on an event loop in a background thread."""

    def __init__(self, config: RenewerConfig, store: Store, ssl_context: ssl.SSLContext | None = None) -> None:
        self.config = config
        self.store = store
        self.metrics = RenewerMetrics()
        self.wakes = 0
        self.reloads: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def reload() -> None:
            self.reloads.append("called")

        access = Access.build(config.auth, None)
        self.api = Api(store=store, config=lambda: self.config, access=lambda: access,
                       metrics=self.metrics, clock=lambda: datetime.now(UTC), wake=self._wake, reload=reload,
                       served=ServedLeaves(lambda: self.config.status_page, verify_resolver(None),
                                           lambda: datetime.now(UTC)),
                       lifecycle=True)
        store.on_connection_wait = self.metrics.connection_wait.observe  # as renewer.daemon wires them
        # a secret of this harness alone (the daemon reads the replicas' shared one: tests/renewer/test_csrf.py)
        csrf = Csrf(secrets.token_bytes(32), lambda: datetime.now(UTC))
        self.server = HttpServer(build_router(self.api, csrf), max_body=4 * config.max_body, ssl_context=ssl_context,
                                 observer=self.metrics.http)
        asyncio.run_coroutine_threadsafe(self.server.start("127.0.0.1", 0), self.loop).result(10)
        self.url = f"http://127.0.0.1:{self.server.port}"
        self.http = requests.Session()

    def _wake(self) -> None:
        self.wakes += 1

    def post(self, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> requests.Response:
        return self.http.post(self.url + path, data=body, headers=AUTH if headers is None else headers, timeout=10)

    def get(self, path: str, headers: dict[str, str] | None = None) -> requests.Response:
        return self.http.get(self.url + path, headers=AUTH if headers is None else headers, timeout=10)

    def close(self) -> None:
        self.http.close()
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def setup(make_setup: Callable[..., Setup]) -> Setup:
    return make_setup(["shop", "blog", "api"], top={"max_body": 4096})


@pytest.fixture
def harness(setup: Setup, sqlite_store: Store) -> Iterator[Harness]:
    h = Harness(load_config(setup.path), sqlite_store)
    yield h
    h.close()


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def validate(doc: Any, schema_name: str) -> None:
    """Validate ``doc`` against ``#/components/schemas/<schema_name>`` of the served OpenAPI document."""
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": OPENAPI["components"]}
    jsonschema.Draft202012Validator(schema).validate(doc)


def test_webhook_needs_the_bearer_token_and_never_logs_it(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """No token or a wrong one: 401 with WWW-Authenticate, nothing queued, the token in no log line."""
    caplog.set_level(logging.DEBUG)
    assert harness.post("/api/v1/alertmanager", fixture("firing.json"), headers={}).status_code == 401
    wrong = harness.post("/api/v1/alertmanager", fixture("firing.json"), headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    basic = harness.post("/api/v1/alertmanager", fixture("firing.json"), headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 401
    assert harness.store.list_jobs() == []
    assert TOKEN not in caplog.text


def test_firing_alert_is_queued_once_and_repeats_are_duplicates(harness: Harness) -> None:
    """202 with per-alert outcomes; the same payload again (HA peer, repeat) is a duplicate, one job."""
    first = harness.post("/api/v1/alertmanager", fixture("firing.json"))
    assert first.status_code == 202
    validate(first.json(), "WebhookResult")
    assert [c["outcome"] for c in first.json()["certificates"]] == ["queued"]
    second = harness.post("/api/v1/alertmanager", fixture("firing.json"))
    assert [c["outcome"] for c in second.json()["certificates"]] == ["duplicate"]
    jobs = harness.store.list_jobs()
    assert [(j.certificate, j.trigger, j.state.value) for j in jobs] == [("shop", "alert", "queued")]
    assert harness.wakes == 1


def test_concurrent_duplicate_deliveries_give_one_job(harness: Harness) -> None:
    """Forty simultaneous deliveries of one grouped payload: one job per certificate."""
    body = fixture("grouped.json")
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: requests.post(harness.url + "/api/v1/alertmanager", data=body,
                                                      headers=AUTH, timeout=10).status_code, range(40)))
    assert set(codes) == {202}
    assert sorted(j.certificate for j in harness.store.list_jobs()) == ["blog", "shop"]


@pytest.mark.parametrize(
    ("name", "message"),
    [("malformed.json", "body is not valid JSON"), ("wrong_schema.json", 'version: expected "4"'),
     ("missing_alerts.json", "alerts: required field is missing")],
)
def test_malformed_payload_is_400_with_a_message(harness: Harness, name: str, message: str) -> None:
    """Malformed bodies are 400 (Alertmanager does not retry) and the message says what is wrong."""
    resp = harness.post("/api/v1/alertmanager", fixture(name))
    assert resp.status_code == 400
    assert message in resp.json()["error"]
    assert harness.store.list_jobs() == []


def test_a_deeply_nested_body_is_400_not_a_500_traceback(
    make_setup: Callable[..., Setup], sqlite_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A JSON body nested 100,000 deep (200 kB, under max_body) is bad input: 400, no traceback logged."""
    h = Harness(load_config(make_setup(["shop"]).path), sqlite_store)
    try:
        resp = h.post("/api/v1/alertmanager", b"[" * 100_000 + b"]" * 100_000)
    finally:
        h.close()
    assert resp.status_code == 400
    assert "nested too deeply" in resp.json()["error"]
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text


def test_oversized_payload_is_413(harness: Harness) -> None:
    """A body over max_body is refused with 413 and counted; nothing is queued."""
    doc = json.loads(fixture("firing.json"))
    doc["commonAnnotations"] = {"padding": "x" * 5000}
    resp = harness.post("/api/v1/alertmanager", json.dumps(doc).encode())
    assert resp.status_code == 413
    assert harness.metrics.webhook_requests.labels("413")._value.get() == 1
    assert harness.store.list_jobs() == []


def test_hostile_labels_resolved_and_unknown_are_counted_and_ignored(harness: Harness) -> None:
    """Shell metacharacters, ../, unknown ids and resolved alerts: 202, nothing queued, counted by outcome."""
    for name in ("hostile_labels.json", "unknown_certificate.json", "resolved.json"):
        resp = harness.post("/api/v1/alertmanager", fixture(name))
        assert resp.status_code == 202 and resp.json()["certificates"] == []
        assert "rm -rf" not in resp.text and "etc/passwd" not in resp.text
    assert harness.store.list_jobs() == []
    assert harness.metrics.alerts.labels("unknown_certificate")._value.get() == 7
    assert harness.metrics.alerts.labels("resolved_ignored")._value.get() == 1


def test_store_down_answers_503_so_alertmanager_retries(setup: Setup) -> None:
    """When the job store cannot be reached the webhook answers 503 and readiness fails."""
    store = Store("postgresql+psycopg://postgres@127.0.0.1:9/none?connect_timeout=2")
    h = Harness(load_config(setup.path), store)
    try:
        assert h.post("/api/v1/alertmanager", fixture("firing.json")).status_code == 503
        assert h.get("/-/ready", headers={}).status_code == 503
        assert h.get("/-/healthy", headers={}).status_code == 200
        assert h.get("/metrics", headers={}).status_code == 200
    finally:
        h.close()
        store.close()


def test_manual_renew_certificates_and_jobs(harness: Harness, setup: Setup, pki: Pki) -> None:
    """Manual renewal queues a job; the certificate list shows the installed expiry; jobs show the trail."""
    leaf = pki.leaf(["shop.example"], days=10)
    Path(setup.data["certificates"][0]["outputs"]["fullchain"]).write_bytes(leaf.fullchain_pem)
    assert harness.post("/api/v1/certificates/nope/renew").status_code == 404
    assert harness.post("/api/v1/certificates/shop/renew", headers={}).status_code == 401
    early = harness.post("/api/v1/certificates/shop/renew")  # 10 days left of 11: not inside 1/3
    assert early.status_code == 409 and "add ?force=true" in early.json()["error"]
    resp = harness.post("/api/v1/certificates/shop/renew?force=true")
    assert resp.status_code == 202 and resp.json()["created"] is True
    job_id = resp.json()["job_id"]
    certs = harness.get("/api/v1/certificates").json()["certificates"]
    for cert in certs:
        validate(cert, "Certificate")
    shop = next(c for c in certs if c["id"] == "shop")
    assert datetime.fromisoformat(shop["not_after"]) == leaf.cert.not_valid_after_utc
    assert shop["fingerprint_sha256"] == leaf.fingerprint
    assert shop["open_job"]["id"] == job_id and shop["open_job"]["state"] == "queued"
    assert shop["open_job"]["waiting"] is None  # due now: nothing holds it back
    assert next(c for c in certs if c["id"] == "blog")["not_after"] is None
    jobs = harness.get("/api/v1/jobs?certificate=shop").json()["jobs"]
    assert [j["id"] for j in jobs] == [job_id] and jobs[0]["force"] is True
    for job in jobs:
        validate(job, "Job")
    detail = harness.get(f"/api/v1/jobs/{job_id}").json()
    assert [e["to_state"] for e in detail["events"]] == ["queued"]
    assert detail["events"][0]["reason"] == "manual renewal (forced)"
    assert harness.get("/api/v1/jobs/999").status_code == 404
    assert harness.get("/api/v1/jobs/x").status_code == 400
    assert harness.get("/api/v1/jobs", headers={}).status_code == 401


def test_metrics_follow_the_catalogue_and_pass_promtool(harness: Harness, pki: Pki, setup: Setup) -> None:
    """/metrics exposes exactly the catalogue's families, each with its declared type and help, and
    `promtool check metrics` finds nothing."""
    Path(setup.data["certificates"][0]["outputs"]["fullchain"]).write_bytes(pki.leaf(["shop.example"]).fullchain_pem)
    harness.post("/api/v1/alertmanager", fixture("grouped.json"))
    harness.post("/api/v1/alertmanager", b"{")
    assert harness.get("/api/v1/jobs/777777").status_code == 404
    assert harness.get("/api/v1/jobs/999999").status_code == 404
    assert harness.get("/no/such/path-42").status_code == 404
    harness.get("/metrics", headers={})
    text = harness.get("/metrics", headers={}).text
    assert check_against_catalogue(text, CATALOGUE) == {m.name for m in CATALOGUE}
    assert 'certloop_renewer_http_requests_total{code="202",handler="/api/v1/alertmanager"} 1.0' in text
    assert 'certloop_renewer_http_requests_total{code="400",handler="/api/v1/alertmanager"} 1.0' in text
    assert 'certloop_renewer_http_requests_total{code="404",handler="/api/v1/jobs/{id}"} 2.0' in text
    assert 'certloop_renewer_http_requests_total{code="404",handler="other"} 1.0' in text
    assert 'certloop_renewer_http_request_duration_seconds_count{handler="/metrics"} 1.0' in text  # the first scrape
    assert 'certloop_renewer_http_request_duration_seconds_count{handler="/-/reload"} 0.0' in text  # from the start
    assert "path-42" not in text and "999999" not in text
    assert "certloop_renewer_database_up 1.0" in text
    assert "certloop_renewer_database_pool_size 5.0" in text  # SQLite file: SQLAlchemy's QueuePool
    assert "certloop_renewer_database_pool_checked_out_connections 0.0" in text
    assert "certloop_renewer_database_pool_overflow_connections 0.0" in text
    waits = [line for line in text.splitlines()
             if line.startswith("certloop_renewer_database_connection_wait_seconds_count")]
    assert waits and float(waits[0].split()[1]) >= 3  # every store operation so far
    assert 'certloop_renewer_webhook_requests_total{code="202"} 1.0' in text
    assert 'certloop_renewer_webhook_requests_total{code="400"} 1.0' in text
    assert 'certloop_renewer_alerts_total{outcome="queued"} 2.0' in text
    assert "certloop_renewer_queue_depth 2.0" in text
    assert 'certloop_renewer_certificate_not_after_timestamp_seconds{certificate="shop"}' in text
    # Let's Encrypt's default limits are Let's Encrypt's: a `command` issuer has none
    assert "certloop_renewer_ratelimit_remaining{" not in text


def test_openapi_document_lists_exactly_the_routes(harness: Harness) -> None:
    """The served OpenAPI 3.1 document has one operation per route, and nothing else."""
    doc = harness.get("/api/v1/openapi.json", headers={}).json()
    assert doc["openapi"] == "3.1.0"
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == {(m, p) for m, p, _, _ in ROUTES}
    jsonschema.Draft202012Validator.check_schema({"components": doc["components"]})


def test_health_ready_reload_and_unknown_paths(harness: Harness) -> None:
    """Health and readiness answer without auth; reload needs it; unknown paths are 404, wrong verbs 405."""
    assert harness.get("/-/healthy", headers={}).status_code == 200
    assert harness.get("/-/ready", headers={}).status_code == 200
    assert harness.post("/-/reload", headers={}).status_code == 401
    assert harness.post("/-/reload").status_code == 200 and harness.reloads == ["called"]
    assert harness.get("/nope").status_code == 404
    assert harness.get("/api/v1/alertmanager").status_code == 405


def _webhook_count(h: Harness, code: str = "202") -> float:
    return float(h.metrics.webhook_requests.labels(code)._value.get())


def test_two_real_alertmanagers_deliver_once_each_and_one_job_is_opened(harness: Harness, tmp_path: Path) -> None:
    """Two non-clustered Debian Alertmanagers (an HA pair) deliver the same alert with the bearer token
    from credentials_file; the renewer queues once and answers the second delivery as a duplicate."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    config = yaml.safe_dump({
        "route": {"receiver": "renewer", "group_by": ["certificate"], "group_wait": "0s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "renewer", "webhook_configs": [{
            "url": f"{harness.url}/api/v1/alertmanager", "send_resolved": True,
            "http_config": {"authorization": {"credentials_file": str(token_file)}}}]}],
    })
    managers = [Alertmanager(tmp_path / f"am{i}", config, name=f"am{i}") for i in range(2)]
    try:
        for am in managers:
            am.start()
        alert = {"labels": {"alertname": "CertloopCertificateExpiringSoon", "certificate": "shop",
                            "severity": "critical"},
                 "annotations": {"summary": "shop expires soon; $(rm -rf /)"}}
        for am in managers:
            am.post_alerts([alert])
        wait_until(lambda: _webhook_count(harness) >= 2, 20, "both Alertmanagers to deliver")
    finally:
        for am in managers:
            am.stop()
    jobs = harness.store.list_jobs()
    assert [(j.certificate, j.trigger) for j in jobs] == [("shop", "alert")]
    assert "CertloopCertificateExpiringSoon" in jobs[0].reason
    assert harness.metrics.alerts.labels("queued")._value.get() == 1
    assert harness.metrics.alerts.labels("duplicate")._value.get() == 1
    assert _webhook_count(harness, "401") == 0


def _client_cert(pki: Pki, tmp_path: Path) -> tuple[Path, Path]:
    """A client certificate (clientAuth EKU) issued by the test intermediate."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alertmanager")]))
        .issuer_name(pki.intermediate.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(pki.intermediate.key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "client.crt", tmp_path / "client.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + pki.intermediate.cert.public_bytes(
        serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_mtls_only_auth_accepts_a_client_certificate_and_refuses_none(
    make_setup: Callable[..., Setup], sqlite_store: Store, pki: Pki, tmp_path: Path,
) -> None:
    """With client_ca_file and no token, a client certificate from that CA is the credential; a client
    without one cannot complete the TLS handshake."""
    server = pki.leaf(["127.0.0.1", "localhost"]).write(tmp_path / "server", "server")
    ca = pki.write_root(tmp_path / "ca.pem")
    setup = make_setup(["shop"], top={"auth": {"tls_cert_file": str(server["fullchain"]),
                                               "tls_key_file": str(server["key"]), "client_ca_file": str(ca)}})
    cfg = load_config(setup.path)
    assert cfg.auth.bearer_token() is None
    h = Harness(cfg, sqlite_store, ssl_context=tls_context(cfg))
    url = h.url.replace("http://", "https://")
    try:
        client = _client_cert(pki, tmp_path)
        resp = requests.post(f"{url}/api/v1/alertmanager", data=fixture("firing.json"), cert=client, verify=str(ca),
                             timeout=10)
        assert resp.status_code == 202 and resp.json()["certificates"][0]["outcome"] == "queued"
        # TLS 1.3: the server checks the client certificate after the client already thinks the handshake
        # is done, so the refusal shows as an SSL alert or as the connection dropping, depending on timing.
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.post(f"{url}/api/v1/alertmanager", data=fixture("firing.json"), verify=str(ca), timeout=10)
    finally:
        h.close()
