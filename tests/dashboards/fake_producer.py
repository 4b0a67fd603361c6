"""A FAKE metrics producer: a loopback HTTP server serving hand-written exposition text.

It stands in for the exporter and renewer so dashboard queries can be run against a real Prometheus
before (and independently of) the real components. It is not evidence that the real exporter and
renewer emit these series: `test_queries.py::test_panels_return_data_from_the_real_exporter_and_renewer`
is. Its series cover every metric of both Python catalogues (checked by the test) and one example of
every state a dashboard shows (expiring, expired, invalid, unreachable, drift, inconsistent, weak crypto,
failed and rolled-back renewals, a queued job); counters and the histogram grow on every scrape.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DAY = 86400.0
Labels = dict[str, str]
Sample = tuple[str, Labels, float]

API = {"certificate": "api", "team": "payments"}
WEB = {"certificate": "web", "team": "storefront"}


def _ep(target: str, address: str, static: Labels) -> Labels:
    return {"source": "endpoint", "target": target, "address": address, **static}


def _chain(base: Labels, leaf_nb: float, leaf_na: float, *, weak_intermediate: bool = False) -> list[Sample]:
    """Leaf + intermediate position series for one probed chain."""
    out: list[Sample] = []
    for pos, role, nb, na, weak in (("0", "leaf", leaf_nb, leaf_na, False),
                                    ("1", "intermediate", leaf_nb - 300 * DAY, leaf_na + 900 * DAY,
                                     weak_intermediate)):
        labels = {**base, "position": pos, "role": role}
        out += [
            ("certloop_cert_not_before_timestamp_seconds", labels, nb),
            ("certloop_cert_not_after_timestamp_seconds", labels, na),
            ("certloop_cert_weak_crypto", labels, 1.0 if weak else 0.0),
            ("certloop_cert_info", {**labels, "subject": f"CN={base['target']}" if pos == "0" else "CN=Test CA 1",
                                    "issuer": "CN=Test CA 1" if pos == "0" else "CN=Test Root",
                                    "serial": f"{zlib.crc32((base['target'] + base['address'] + pos).encode()):x}",
                                    "dns_names": "api.example.test", "fingerprint_sha256": "ab" * 32,
                                    "key_type": "rsa", "key_bits": "1024" if weak else "2048",
                                    "signature_algorithm": "sha256WithRSAEncryption"}, 1.0),
        ]
    out.append(("certloop_chain_expiry_timestamp_seconds", base, leaf_na))
    return out


def exporter_samples(now: float, scrapes: int, started: float | None = None) -> list[Sample]:
    loaded = (now if started is None else started) - 3600  # one config load, an hour before start
    samples: list[Sample] = []
    ok_api = _ep("api.example.test:443", "127.0.0.1", API)  # expiring: 5 of 90 days left, drift
    old_api = _ep("api.example.test:443", "127.0.0.2", API)  # expired, inconsistent with .1
    down_api = _ep("api.example.test:443", "127.0.0.3", API)  # refused
    web = _ep("web.example.test:443", "127.0.0.1", WEB)  # healthy, weak intermediate
    file_api = {"source": "file", "target": "/etc/ssl/api.pem", "address": "", **API}  # unknown authority
    samples += _chain(ok_api, now - 85 * DAY, now + 5 * DAY)
    samples += _chain(old_api, now - 91 * DAY, now - 1 * DAY)
    samples += _chain(web, now - 30 * DAY, now + 60 * DAY, weak_intermediate=True)
    samples += _chain(file_api, now - 10 * DAY, now + 80 * DAY)
    for base, verdict, ok in ((ok_api, "ok", 1.0), (old_api, "expired", 0.0), (web, "ok", 1.0),
                              (file_api, "unknown_authority", 0.0)):
        samples += [("certloop_verify_ok", base, ok), ("certloop_verify_verdict", {**base, "verdict": verdict}, 1.0),
                    ("certloop_probe_success", base, 1.0), ("certloop_probe_duration_seconds", base, 0.05)]
    for base in (ok_api, old_api, web):
        samples += [("certloop_hostname_match", base, 1.0),
                    ("certloop_tls_version_info", {**base, "version": "TLSv1.3", "cipher": "TLS_AES_128_GCM_SHA256"},
                     1.0)]
    samples += [
        ("certloop_probe_success", down_api, 0.0), ("certloop_probe_duration_seconds", down_api, 0.002),
        ("certloop_probe_failure_reason", {**down_api, "reason": "refused"}, 1.0),
        ("certloop_endpoint_matches_file", {**ok_api, "expect_file": "/etc/ssl/api.pem"}, 0.0),
        ("certloop_endpoint_addresses_consistent", {k: v for k, v in ok_api.items() if k != "address"}, 0.0),
        ("certloop_endpoint_addresses_consistent", {k: v for k, v in web.items() if k != "address"}, 1.0),
    ]
    for source, ok, bad in (("endpoint", 3, 1), ("file", 1, 0)):
        samples += [("certloop_probes_total", {"source": source, "result": "success"}, float(ok * scrapes)),
                    ("certloop_probes_total", {"source": source, "result": "failure"}, float(bad * scrapes))]
    for kind in ("endpoints", "files"):
        samples += [("certloop_last_sweep_timestamp_seconds", {"kind": kind}, now - 20),
                    ("certloop_sweep_duration_seconds", {"kind": kind}, 0.4)]
    samples += [("certloop_build_info", {"version": "0.1.0", "python_version": "3.11.2"}, 1.0),
                ("certloop_config_last_reload_successful", {}, 1.0),
                ("certloop_config_last_reload_success_timestamp_seconds", {}, loaded)]
    samples += http_samples("certloop", float(scrapes), ("/probe", "/metrics"))
    return samples


BUCKETS = (1.0, 5.0, 30.0, 60.0, 300.0, 900.0, float("inf"))


def http_samples(prefix: str, n: float, handlers: tuple[str, ...]) -> list[Sample]:
    """One daemon's request metrics: per handler 10 answers 200 and 1 answer 503 per scrape, each 20 ms."""
    samples: list[Sample] = []
    for handler in (*handlers, "other"):
        samples += [(f"{prefix}_http_requests_total", {"handler": handler, "code": "200"}, 10 * n),
                    (f"{prefix}_http_requests_total", {"handler": handler, "code": "503"}, n)]
        for le in (0.01, 0.025, 0.1, float("inf")):
            samples.append((f"{prefix}_http_request_duration_seconds_bucket",
                            {"handler": handler, "le": "+Inf" if le == float("inf") else repr(le)},
                            11 * n if le >= 0.025 else 0.0))
        samples += [(f"{prefix}_http_request_duration_seconds_sum", {"handler": handler}, 0.02 * 11 * n),
                    (f"{prefix}_http_request_duration_seconds_count", {"handler": handler}, 11 * n)]
    return samples


def renewer_samples(now: float, scrapes: int) -> list[Sample]:
    n = float(scrapes)
    samples: list[Sample] = [
        ("certloop_renewer_webhook_requests_total", {"code": "202"}, 2 * n),
        ("certloop_renewer_webhook_requests_total", {"code": "401"}, n),
        ("certloop_renewer_audit_events_dropped_total", {"reason": "rate_limited"}, 5 * n),
        ("certloop_renewer_alerts_total", {"outcome": "queued"}, 2 * n),
        ("certloop_renewer_alerts_total", {"outcome": "duplicate"}, n),
        ("certloop_renewer_queue_depth", {}, 1.0),
        ("certloop_renewer_jobs_in_progress", {}, 1.0),
        ("certloop_renewer_oldest_queued_job_timestamp_seconds", {}, now - 120),
        ("certloop_renewer_ratelimit_remaining", {"issuer": "acme", "limit": "certificates_per_domain"}, 48.0),
        ("certloop_renewer_ratelimit_remaining", {"issuer": "acme", "limit": "orders_per_account"}, 2.0),
        ("certloop_renewer_build_info", {"version": "0.1.0"}, 1.0),
        ("certloop_renewer_config_last_reload_successful", {}, 1.0),
    ]
    for cert, result, renewals in (("api", "succeeded", n), ("web", "failed", n / 2)):
        samples += [
            ("certloop_renewer_renewals_total", {"certificate": cert, "issuer": "acme", "result": result}, renewals),
            ("certloop_renewer_last_success_timestamp_seconds", {"certificate": cert}, now - 2 * DAY),
            ("certloop_renewer_last_attempt_timestamp_seconds", {"certificate": cert}, now - 60),
            ("certloop_renewer_last_result", {"certificate": cert, "result": result}, 1.0),
            ("certloop_renewer_next_due_timestamp_seconds", {"certificate": cert}, now + 50 * DAY),
            ("certloop_renewer_certificate_not_after_timestamp_seconds", {"certificate": cert}, now + 88 * DAY),
        ]
    samples.append(("certloop_renewer_renewals_total",
                    {"certificate": "web", "issuer": "acme", "result": "rolled_back"}, n / 3))
    # every scrape observes one 20 s renewal: buckets >= 30 grow by one
    for le in BUCKETS:
        samples.append(("certloop_renewer_renewal_duration_seconds_bucket",
                        {"issuer": "acme", "le": "+Inf" if le == float("inf") else repr(le)}, n if le >= 30 else 0.0))
    samples += [("certloop_renewer_renewal_duration_seconds_sum", {"issuer": "acme"}, 20 * n),
                ("certloop_renewer_renewal_duration_seconds_count", {"issuer": "acme"}, n)]
    samples += http_samples("certloop_renewer", n, ("/api/v1/alertmanager", "/metrics"))
    samples += [("certloop_renewer_database_up", {}, 1.0),
                ("certloop_renewer_database_pool_size", {}, 8.0),
                ("certloop_renewer_database_pool_checked_out_connections", {}, 2.0),
                ("certloop_renewer_database_pool_overflow_connections", {}, 0.0)]
    # every scrape: three store operations, each waiting 2 ms for its connection
    for le in (0.001, 0.0025, 0.01, float("inf")):
        samples.append(("certloop_renewer_database_connection_wait_seconds_bucket",
                        {"le": "+Inf" if le == float("inf") else repr(le)}, 3 * n if le >= 0.0025 else 0.0))
    samples += [("certloop_renewer_database_connection_wait_seconds_sum", {}, 0.006 * n),
                ("certloop_renewer_database_connection_wait_seconds_count", {}, 3 * n)]
    return samples


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def exposition(samples: list[Sample], types: dict[str, str]) -> str:
    """Text exposition: samples grouped by family with `# TYPE` from `types` (family name -> type)."""
    families: dict[str, list[str]] = {}
    for name, labels, value in samples:
        family = next((f for f in types if name == f or (types[f] == "histogram" and name.startswith(f + "_"))), name)
        text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        families.setdefault(family, []).append(f"{name}{{{text}}} {value!r}\n" if text else f"{name} {value!r}\n")
    return "".join(f"# TYPE {family} {types.get(family, 'untyped')}\n" + "".join(lines)
                   for family, lines in families.items())


def family_names(samples: list[Sample], types: dict[str, str]) -> set[str]:
    return {next((f for f in types if n == f or (types[f] == "histogram" and n.startswith(f + "_"))), n)
            for n, _, _ in samples}


@dataclass
class FakeProducer:
    """Serves `/exporter` and `/renewer` on 127.0.0.1; `address` is `host:port` for a scrape config."""

    types: dict[str, str]
    address: str = ""
    scrapes: int = 0
    started: float = field(default_factory=time.time)

    def body(self, path: str) -> str | None:
        self.scrapes += 1
        now = time.time()
        if path == "/exporter":
            return exposition(exporter_samples(now, self.scrapes, self.started), self.types)
        if path == "/renewer":
            return exposition(renewer_samples(now, self.scrapes), self.types)
        return None


@contextmanager
def serve(types: dict[str, str]) -> Iterator[FakeProducer]:
    producer = FakeProducer(types)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = producer.body(self.path)
            data = (body or "not found\n").encode()
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    producer.address = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fake-producer", daemon=True)
    thread.start()
    try:
        yield producer
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
