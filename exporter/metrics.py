"""The exporter's metric catalogue (the single source of metric names) and exposition text primitives.

Every series the exporter emits is declared here once, as a :class:`certloop.metricspec.MetricSpec` (the
renewer's catalogue is made of the same type). ``alerting/`` and ``dashboards/`` check the names they use
against :data:`CATALOGUE` (contract tests), and :func:`render_families` writes ``# HELP``/``# TYPE`` from
it, so a name cannot be emitted undeclared.

Per-certificate series (:data:`PER_TARGET`) carry the common labels :data:`COMMON_LABELS` (``source``,
``target``, ``address``) plus the configured static labels of their group, then the labels listed in their
spec; the process's own series (:data:`PER_PROCESS`) carry only their spec's labels.

Sample lines are rendered straight to text (:func:`sample`): building prometheus_client objects per
series costs more CPU than a whole probe, and the inventory pre-renders text once per change. The few
request-metric series (:func:`http_observer`) are the exception: prometheus_client children, created once
per label pair and updated in place by the HTTP server's observer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

from certloop.httpmetrics import DURATION_BUCKETS, RequestObserver
from certloop.metricspec import MetricSpec

__all__ = [
    "CATALOGUE",
    "COMMON_LABELS",
    "CONTENT_TYPE",
    "PER_PROCESS",
    "PER_TARGET",
    "Fragments",
    "by_name",
    "escape",
    "format_value",
    "http_observer",
    "merge",
    "render_families",
    "sample",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
COMMON_LABELS = ("source", "target", "address")

_P = ("position", "role")
CERT_NOT_BEFORE = MetricSpec("certloop_cert_not_before_timestamp_seconds", "gauge",
                             "Start of the certificate's validity (Unix time).", _P, unit="seconds")
CERT_NOT_AFTER = MetricSpec("certloop_cert_not_after_timestamp_seconds", "gauge",
                            "End of the certificate's validity (Unix time), exported whatever the verdict.", _P,
                            unit="seconds")
CERT_INFO = MetricSpec("certloop_cert_info", "gauge", "Identity of a certificate; the value is always 1.",
                       (*_P, "subject", "issuer", "serial", "dns_names", "fingerprint_sha256", "key_type",
                        "key_bits", "signature_algorithm"))
CERT_WEAK = MetricSpec("certloop_cert_weak_crypto", "gauge",
                       "1 if the certificate uses RSA < 2048 bits, EC < 256 bits or a SHA-1/MD5 signature.", _P)
CHAIN_EXPIRY = MetricSpec("certloop_chain_expiry_timestamp_seconds", "gauge",
                          "Earliest end of validity over the leaf and the presented intermediates (Unix time).",
                          unit="seconds")
VERIFY_OK = MetricSpec("certloop_verify_ok", "gauge", "1 if the chain verifies against the trust store now.")
VERIFY_VERDICT = MetricSpec("certloop_verify_verdict", "gauge",
                            "The current verification verdict; the value is always 1.", ("verdict",))
HOSTNAME_MATCH = MetricSpec("certloop_hostname_match", "gauge", "1 if the leaf covers the server name (RFC 6125).")
PROBE_SUCCESS = MetricSpec("certloop_probe_success", "gauge",
                           "1 if the endpoint presented a certificate or the file was read and parsed.")
PROBE_DURATION = MetricSpec("certloop_probe_duration_seconds", "gauge", "Wall time of the last probe.",
                            unit="seconds")
PROBE_FAILURE = MetricSpec("certloop_probe_failure_reason", "gauge",
                           "Why the last probe failed, present only while failing; the value is always 1.",
                           ("reason",))
TLS_VERSION = MetricSpec("certloop_tls_version_info", "gauge",
                         "Negotiated TLS version and cipher; the value is always 1.", ("version", "cipher"))
MATCHES_FILE = MetricSpec("certloop_endpoint_matches_file", "gauge",
                          "1 if the served leaf equals the leaf of expect_file (0: renewed but not reloaded).",
                          ("expect_file",))
CONSISTENT = MetricSpec("certloop_endpoint_addresses_consistent", "gauge",
                        "1 if every address of the name serves the same leaf.")
PROBES_TOTAL = MetricSpec("certloop_probes_total", "counter", "Probes run, by source and result.",
                          ("source", "result"))
LAST_SWEEP = MetricSpec("certloop_last_sweep_timestamp_seconds", "gauge",
                        "End of the last completed inventory sweep (Unix time).", ("kind",), unit="seconds")
SWEEP_DURATION = MetricSpec("certloop_sweep_duration_seconds", "gauge", "Duration of the last inventory sweep.",
                            ("kind",), unit="seconds")
BUILD_INFO = MetricSpec("certloop_build_info", "gauge", "Build information; the value is always 1.",
                        ("version", "python_version"))
RELOAD_OK = MetricSpec("certloop_config_last_reload_successful", "gauge",
                       "1 if the last configuration (re)load succeeded.")
RELOAD_TIME = MetricSpec("certloop_config_last_reload_success_timestamp_seconds", "gauge",
                         "Time of the last successful configuration (re)load (Unix time).", unit="seconds")
HTTP_REQUESTS = MetricSpec("certloop_http_requests_total", "counter",
                           "HTTP requests answered, by handler (route pattern, other when none matched) and status.",
                           ("handler", "code"))
HTTP_DURATION = MetricSpec("certloop_http_request_duration_seconds", "histogram",
                           "Time from a request's arrival to its answer, by handler.", ("handler",), unit="seconds")

# Families emitted per observed certificate source (with the common labels), in exposition order.
PER_TARGET: tuple[MetricSpec, ...] = (
    CERT_NOT_BEFORE, CERT_NOT_AFTER, CERT_INFO, CERT_WEAK, CHAIN_EXPIRY, VERIFY_OK, VERIFY_VERDICT,
    HOSTNAME_MATCH, PROBE_SUCCESS, PROBE_DURATION, PROBE_FAILURE, TLS_VERSION, MATCHES_FILE, CONSISTENT,
)
# Families of the exporter process itself (no common labels), in exposition order.
PER_PROCESS: tuple[MetricSpec, ...] = (
    PROBES_TOTAL, LAST_SWEEP, SWEEP_DURATION, BUILD_INFO, RELOAD_OK, RELOAD_TIME, HTTP_REQUESTS, HTTP_DURATION,
)
CATALOGUE: tuple[MetricSpec, ...] = (*PER_TARGET, *PER_PROCESS)

_BY_NAME = {m.name: m for m in CATALOGUE}


def by_name(name: str) -> MetricSpec:
    """The spec of ``name``; KeyError for a name outside the catalogue."""
    return _BY_NAME[name]


def escape(value: str) -> str:
    """Escape a label value for the text exposition format."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def format_value(value: float) -> str:
    """Integral values without a fraction (exact timestamps), others as Python's shortest repr."""
    if value != value:  # NaN
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def label_text(labels: Iterable[tuple[str, str]]) -> str:
    """``name="value",...`` (no braces) with values escaped."""
    return ",".join(f'{k}="{escape(v)}"' for k, v in labels)


def sample(name: str, prefix: str, extra: Sequence[tuple[str, str]], value: float) -> str:
    """One sample line. ``prefix`` is pre-rendered label text (see :func:`label_text`), may be empty."""
    parts = prefix
    if extra:
        more = label_text(extra)
        parts = f"{parts},{more}" if parts else more
    return f"{name}{{{parts}}} {format_value(value)}\n" if parts else f"{name} {format_value(value)}\n"


Fragments = Mapping[str, bytes]
"""One target's sample lines per metric name, as encoded exposition text."""

_HEADERS = {spec.name: spec.header().encode() for spec in CATALOGUE}


def merge(fragment_sets: Iterable[Fragments], specs: Iterable[MetricSpec] = PER_TARGET) -> bytes:
    """Exposition bytes of many targets' fragments: each family's header once, then all its lines."""
    per_family: dict[str, list[bytes]] = {}
    for fragments in fragment_sets:
        for name, chunk in fragments.items():
            per_family.setdefault(name, []).append(chunk)
    parts: list[bytes] = []
    for spec in specs:
        chunks = per_family.get(spec.name)
        if chunks:
            parts.append(_HEADERS[spec.name])
            parts.extend(chunks)
    return b"".join(parts)


def render_families(families: Mapping[str, Sequence[str]], specs: Iterable[MetricSpec] = CATALOGUE) -> str:
    """Exposition text: for each spec (in order) with samples, its HELP/TYPE then its sample text chunks."""
    out: list[str] = []
    for spec in specs:
        chunks = families.get(spec.name)
        if chunks:
            out.append(spec.header())
            out.extend(chunks)
    return "".join(out)


def http_observer(registry: CollectorRegistry, routes: Iterable[str]) -> RequestObserver:
    """The HTTP server's observer, its two families (:data:`HTTP_REQUESTS`, :data:`HTTP_DURATION`) in
    ``registry``; ``routes`` are the router's patterns (their histograms exist from the start)."""
    disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` series are not in the catalogue
    requests = Counter(HTTP_REQUESTS.name.removesuffix("_total"), HTTP_REQUESTS.help, HTTP_REQUESTS.labels,
                       registry=registry)
    duration = Histogram(HTTP_DURATION.name, HTTP_DURATION.help, HTTP_DURATION.labels, registry=registry,
                         buckets=DURATION_BUCKETS)
    return RequestObserver(requests, duration, routes)
