"""The exporter's HTTP surface: /probe (golden text, errors), reloads, promtool, a real Prometheus scraping it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import requests
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink

from certloop.exporter import metrics as m
from stack.nginx import Nginx
from stack.process import free_port, wait_until
from stack.prometheus import Prometheus
from tests.exporter.support import ExporterProcess, exporter, samples, value, write_config
from tests.support.exposition import check_against_catalogue
from tests.support.pki import Pki
from tests.support.servers import server_context

GOLDEN = Path(__file__).parent / "golden" / "probe_ok.txt"
FIXED = datetime(2026, 1, 1, tzinfo=UTC)
STANDARD = ("process_", "python_")  # prometheus_client's process and GC collectors on /metrics


def _serve(nginx: Nginx, tmp_path: Path, pki: Pki, names: list[str]) -> int:
    leaf = pki.leaf(names, days=3000)
    paths = leaf.write(tmp_path / "certs", names[0])
    port = free_port()
    nginx.add_site(names, paths["fullchain"], paths["key"], [("127.0.0.1", port)], default=True)
    nginx.start()
    return port


def _normalise(text: str, port: int) -> str:
    text = re.sub(r'fingerprint_sha256="[0-9a-f]{64}"', 'fingerprint_sha256="<sha256>"', text)
    text = re.sub(r'serial="[0-9a-f]+"', 'serial="<serial>"', text)
    text = re.sub(r"^(certloop_probe_duration_seconds\{.*\}) .*$", r"\1 <seconds>", text, flags=re.M)
    return text.replace(f":{port}", ":<port>")


def test_probe_golden_text(nginx: Nginx, tmp_path: Path) -> None:
    """/probe of a healthy endpoint renders exactly the golden exposition (timestamps fixed, durations masked)."""
    pki = Pki(now=FIXED, intermediate_days=3650, name="golden")
    port = _serve(nginx, tmp_path, pki, ["golden.test"])
    config = {"global": {"ca_file": str(pki.write_root(tmp_path / "root.pem"))}}
    with exporter(config) as exp:
        response = requests.get(f"{exp.url}/probe",
                                params={"target": f"127.0.0.1:{port}", "server_name": "golden.test"}, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    got = _normalise(response.text, port)
    if os.environ.get("CERTLOOP_UPDATE_GOLDEN"):
        GOLDEN.write_text(got)
    assert got == GOLDEN.read_text()


def test_probe_rejects_bad_requests_and_reports_failures_as_data(tmp_path: Path) -> None:
    """Missing/garbled targets and unknown modules are 400; an unreachable target is a 200 with success 0."""
    with exporter({}) as exp:
        def probe(**params: str) -> requests.Response:
            return requests.get(f"{exp.url}/probe", params=params, timeout=10)

        assert probe().status_code == 400
        assert probe(target="no-port").status_code == 400
        assert probe(target="127.0.0.1:1", module="nope").status_code == 400
        closed = free_port()
        refused = probe(target=f"127.0.0.1:{closed}")
        assert refused.status_code == 200
        assert value(refused.text, "certloop_probe_success", target=f"127.0.0.1:{closed}", source="endpoint") == 0
        assert value(refused.text, "certloop_probe_failure_reason", reason="refused") == 1
        assert not samples(refused.text, "certloop_build_info")  # /probe carries only the probe's series


def test_promtool_accepts_metrics_and_probe_output(nginx: Nginx, tmp_path: Path, pki: Pki) -> None:
    """``promtool check metrics`` passes on real /metrics (files + endpoints) and /probe output, and every
    family served is in the catalogue with the type and help it is served with."""
    port = _serve(nginx, tmp_path, pki, ["lint.test"])
    config = {"global": {"ca_file": str(pki.write_root(tmp_path / "root.pem"))},
              "endpoints": [{"targets": [f"127.0.0.1:{port}"], "server_name": "lint.test",
                             "labels": {"certificate": "lint"}}],
              "files": [{"paths": [str(tmp_path / "certs")], "labels": {"team": "platform"}}]}
    with exporter(config) as exp:
        metrics = exp.metrics()
        probe = requests.get(f"{exp.url}/probe", params={"target": f"127.0.0.1:{port}", "server_name": "lint.test"},
                             timeout=10).text
    assert samples(metrics, "certloop_verify_ok", certificate="lint")
    served = check_against_catalogue(metrics, m.CATALOGUE, standard=STANDARD)
    assert {spec.name for spec in m.PER_PROCESS} - {m.HTTP_REQUESTS.name} <= served  # sweeps ran, a scrape is timed
    assert check_against_catalogue(probe, m.PER_TARGET) >= {m.PROBE_SUCCESS.name, m.CERT_INFO.name}


def _wait_metric(read: Callable[[], str], name: str, expected: float, **labels: str) -> None:
    wait_until(lambda: [v for _, v in samples(read(), name, **labels)] == [expected], 15,
               f"{name}{labels} == {expected}")


def test_post_reload_good_and_bad(tmp_path: Path, pki: Pki) -> None:
    """POST /-/reload applies a good config (new series) and rejects a bad one (500, old series kept, metric 0)."""
    certs = tmp_path / "certs"
    pki.leaf(["one.example"]).write(certs, "one")
    pki.leaf(["two.example"]).write(certs, "two")
    path = write_config(tmp_path / "exporter.yml", {"files": [{"paths": [str(certs / "one.crt")]}]})
    with exporter(config_path=path) as exp:
        assert value(exp.metrics(), "certloop_config_last_reload_successful") == 1
        write_config(path, {"files": [{"paths": [str(certs / "one.crt"), str(certs / "two.crt")]}]})
        assert requests.post(f"{exp.url}/-/reload", timeout=10).status_code == 200
        _wait_metric(exp.metrics, "certloop_probe_success", 1, target=str(certs / "two.crt"))
        path.write_text("files: [{paths: [], bogus: 1}]\n")
        bad = requests.post(f"{exp.url}/-/reload", timeout=10)
        assert bad.status_code == 500 and "bogus" in bad.text
        text = exp.metrics()
        assert value(text, "certloop_config_last_reload_successful") == 0
        assert value(text, "certloop_probe_success", target=str(certs / "two.crt")) == 1


def test_reload_of_an_emptied_config_is_refused(tmp_path: Path, pki: Pki) -> None:
    """``: > exporter.yml`` then POST /-/reload: 500 naming the file, every series kept, the reload
    metric 0. ``{}`` (nothing monitored on purpose) reloads and the series go. Before: "reloaded",
    every series gone, the reload metric 1."""
    certs = tmp_path / "certs"
    pki.leaf(["one.example"]).write(certs, "one")
    path = write_config(tmp_path / "exporter.yml", {"files": [{"paths": [str(certs / "one.crt")]}]})
    with exporter(config_path=path) as exp:
        _wait_metric(exp.metrics, "certloop_probe_success", 1, target=str(certs / "one.crt"))
        path.write_bytes(b"")
        refused = requests.post(f"{exp.url}/-/reload", timeout=10)
        assert refused.status_code == 500 and "the file is empty" in refused.text and str(path) in refused.text
        text = exp.metrics()
        assert value(text, "certloop_config_last_reload_successful") == 0
        assert value(text, "certloop_probe_success", target=str(certs / "one.crt")) == 1
        path.write_text("{}\n")
        assert requests.post(f"{exp.url}/-/reload", timeout=10).status_code == 200
        wait_until(lambda: not samples(exp.metrics(), "certloop_probe_success", target=str(certs / "one.crt")),
                   15, "the series of a config that monitors nothing on purpose are gone")
        assert value(exp.metrics(), "certloop_config_last_reload_successful") == 1


async def _sweep_tasks() -> int:
    return len([t for t in asyncio.all_tasks() if t.get_name().startswith("sweep-") and not t.done()])


def test_concurrent_reloads_leave_one_sweep_per_source(tmp_path: Path, pki: Pki) -> None:
    """Eight reloads at once apply one after another: exactly one sweep loop per source keeps running."""
    pki.leaf(["one.example"]).write(tmp_path / "certs", "one")
    path = write_config(tmp_path / "exporter.yml", {"files": [{"paths": [str(tmp_path / "certs" / "one.crt")]}]})
    with exporter(config_path=path) as exp:
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: requests.post(f"{exp.url}/-/reload", timeout=30).status_code, range(8)))
        assert codes == [200] * 8
        assert exp.call(_sweep_tasks()) == 2


def test_sighup_reload_of_the_cli_process(tmp_path: Path, pki: Pki) -> None:
    """The real ``certloop exporter`` process reloads on SIGHUP; a bad file leaves it serving the old config."""
    certs = tmp_path / "certs"
    pki.leaf(["one.example"]).write(certs, "one")
    pki.leaf(["two.example"]).write(certs, "two")
    path = write_config(tmp_path / "exporter.yml", {"files": [{"paths": [str(certs / "one.crt")]}]})
    proc = ExporterProcess(path, tmp_path).start()
    try:
        assert value(proc.metrics(), "certloop_probe_success", target=str(certs / "one.crt")) == 1
        write_config(path, {"files": [{"paths": [str(certs / "two.crt")]}]})
        proc.process.signal(signal.SIGHUP)
        _wait_metric(proc.metrics, "certloop_probe_success", 1, target=str(certs / "two.crt"))
        path.write_text("global: {interval: soon}\n")
        proc.process.signal(signal.SIGHUP)
        _wait_metric(proc.metrics, "certloop_config_last_reload_successful", 0)
        assert value(proc.metrics(), "certloop_probe_success", target=str(certs / "two.crt")) == 1
    finally:
        assert proc.stop() == 0


def test_real_prometheus_scrapes_inventory_and_probe(nginx: Nginx, tmp_path: Path, pki: Pki,
                                                     prometheus_factory: Callable[..., Prometheus]) -> None:
    """Prometheus scrapes /metrics and /probe (blackbox-style relabeling); the series are queryable by label."""
    port = _serve(nginx, tmp_path, pki, ["shop.test"])
    config = {"global": {"ca_file": str(pki.write_root(tmp_path / "root.pem"))},
              "endpoints": [{"targets": [f"127.0.0.1:{port}"], "server_name": "shop.test",
                             "labels": {"certificate": "shop-prod"}}]}
    with exporter(config) as exp:
        address = exp.url.removeprefix("http://")
        prom = prometheus_factory([
            {"job_name": "certloop", "static_configs": [{"targets": [address]}]},
            {"job_name": "certloop-probe", "metrics_path": "/probe",
             "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
             "relabel_configs": [
                 {"source_labels": ["__address__"], "target_label": "__param_target"},
                 {"target_label": "__param_server_name", "replacement": "shop.test"},
                 {"source_labels": ["__param_target"], "target_label": "instance"},
                 {"target_label": "__address__", "replacement": address},
             ]},
        ])
        inventory = prom.wait_for('certloop_verify_ok{job="certloop",certificate="shop-prod"}',
                                  lambda r: bool(r), timeout=20)
        assert inventory[0]["value"][1] == "1"
        probed = prom.wait_for('certloop_verify_verdict{job="certloop-probe",verdict="ok"}',
                               lambda r: bool(r), timeout=20)
        assert probed[0]["metric"]["instance"] == f"127.0.0.1:{port}"
        assert probed[0]["metric"]["source"] == "endpoint"
        expiry = prom.query('certloop_chain_expiry_timestamp_seconds{job="certloop"} - time()')
        assert expiry and float(expiry[0]["value"][1]) > 80 * 86400


def test_probe_with_an_unsendable_server_name_is_bad_server_name() -> None:
    """``/probe?server_name=a..b`` (or a label over 63 characters, or a NUL) answers 200 with
    probe_success 0 and reason bad_server_name, decided before connecting (the port is closed, yet
    the reason is not ``refused``); a target host with an empty label is a 400 naming it. Before:
    a UnicodeError or ValueError escaped the probe."""
    closed = free_port()
    with exporter({}) as exp:
        for name in ("a..b", "x" * 64 + ".example", "a\x00b"):
            answer = requests.get(f"{exp.url}/probe", params={"target": f"127.0.0.1:{closed}", "server_name": name},
                                  timeout=10)
            assert answer.status_code == 200, name
            assert value(answer.text, "certloop_probe_success", target=f"127.0.0.1:{closed}") == 0, name
            assert value(answer.text, "certloop_probe_failure_reason", reason="bad_server_name") == 1, name
        bad_host = requests.get(f"{exp.url}/probe", params={"target": f"a..b:{closed}"}, timeout=10)
        assert bad_host.status_code == 400 and "a..b" in bad_host.text


def test_probe_module_with_starttls_against_aiosmtpd(tmp_path: Path, pki: Pki) -> None:
    """``/probe?module=smtp`` negotiates STARTTLS with a real aiosmtpd and reports its certificate by the module."""
    leaf = pki.leaf(["mail.test"])
    smtp = Controller(Sink(), hostname="127.0.0.1", port=free_port(), require_starttls=True,
                      tls_context=server_context(leaf, tmp_path, "smtp"))
    smtp.start()
    try:
        config = {"global": {"ca_file": str(pki.write_root(tmp_path / "root.pem"))},
                  "modules": {"smtp": {"starttls": "smtp", "server_name": "mail.test"}}}
        with exporter(config) as exp:
            target = f"127.0.0.1:{smtp.port}"
            with_starttls = requests.get(f"{exp.url}/probe", params={"target": target, "module": "smtp"}, timeout=10)
            plain = requests.get(f"{exp.url}/probe", params={"target": target}, timeout=10)
    finally:
        smtp.stop()
    assert value(with_starttls.text, "certloop_verify_verdict", target=target, verdict="ok") == 1
    assert value(with_starttls.text, "certloop_cert_info", position="0", fingerprint_sha256=leaf.fingerprint) == 1
    assert value(plain.text, "certloop_probe_success", target=target) == 0  # SMTP spoken where TLS was expected


def test_requests_are_counted_per_route_pattern_and_status(tmp_path: Path, pki: Pki) -> None:
    """Every answer counts under its route pattern (unknown paths as one ``other``) and status, with a
    latency histogram per route; the families are the catalogue's and promtool accepts them."""
    pki.leaf(["one.example"]).write(tmp_path / "certs", "one")
    with exporter({"files": [{"paths": [str(tmp_path / "certs")]}]}) as exp:
        assert requests.get(f"{exp.url}/probe", timeout=10).status_code == 400  # no target
        for path in ("/nope", "/a/b/c", "/secret-1234"):
            assert requests.get(f"{exp.url}{path}", timeout=10).status_code == 404
        assert requests.delete(f"{exp.url}/metrics", timeout=10).status_code == 405
        exp.metrics()
        text = exp.metrics()
    assert value(text, "certloop_http_requests_total", handler="/probe", code="400") == 1
    assert value(text, "certloop_http_requests_total", handler="other", code="404") == 3
    assert value(text, "certloop_http_requests_total", handler="other", code="405") == 1
    assert value(text, "certloop_http_requests_total", handler="/metrics", code="200") >= 1
    assert value(text, "certloop_http_request_duration_seconds_count", handler="/probe") == 1
    assert value(text, "certloop_http_request_duration_seconds_count", handler="/-/reload") == 0  # exists at 0
    assert "secret-1234" not in text and "/a/b/c" not in text
    handlers = {labels["handler"] for _, labels in _label_sets(text, "certloop_http_request_duration_seconds_count")}
    assert handlers == {"/", "/metrics", "/probe", "/-/healthy", "/-/ready", "/-/reload", "other"}
    check_against_catalogue(text, m.CATALOGUE, standard=STANDARD)


def _label_sets(text: str, name: str) -> list[tuple[str, dict[str, str]]]:
    return [(name, dict(re.findall(r'(\w+)="([^"]*)"', line))) for line in text.splitlines()
            if line.startswith(name + "{")]
