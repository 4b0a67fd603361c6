"""THE renewer metric catalogue (docs/architecture.md, "Renewer"): names, types, labels in one table.

:data:`CATALOGUE` is the machine-readable list, of :class:`certloop.metricspec.MetricSpec` as the
exporter's (alerting/ and dashboards/ check their queries against it); every prometheus_client object
below is built from its spec, so what is served cannot drift from what is declared.

:class:`RenewerMetrics` owns a private registry: counters and the histograms are updated by the intake
and the worker of this process; state read from the shared database (queue, per-certificate timestamps,
rate-limit headroom) is a snapshot set by :meth:`RenewerMetrics.set_snapshot` just before each scrape,
so ``collect()`` does no I/O and a removed certificate's series vanish.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from certloop import __version__
from certloop.httpmetrics import DURATION_BUCKETS, RequestObserver
from certloop.metricspec import MetricSpec
from certloop.renewer.intake import OUTCOMES
from certloop.renewer.records import PoolStats

__all__ = ["CATALOGUE", "RESULTS", "RenewerMetrics", "Snapshot"]

RESULTS = ("succeeded", "failed", "rolled_back")


CATALOGUE: tuple[MetricSpec, ...] = (
    MetricSpec("certloop_renewer_webhook_requests_total", "counter", "Webhook requests by HTTP status.", ("code",)),
    MetricSpec("certloop_renewer_alerts_total", "counter",
               "Alerts received, by outcome (queued, duplicate, unknown_certificate, resolved_ignored, not_renewable).",
               ("outcome",)),
    MetricSpec("certloop_renewer_renewals_total", "counter",
               "Finished renewals by result (succeeded, failed, rolled_back).", ("certificate", "issuer", "result")),
    MetricSpec("certloop_renewer_renewal_duration_seconds", "histogram",
               "Time from the job being queued (alert) to the new certificate verified as served.", ("issuer",),
               unit="seconds"),
    MetricSpec("certloop_renewer_last_success_timestamp_seconds", "gauge",
               "When the certificate was last renewed successfully.", ("certificate",), unit="seconds"),
    MetricSpec("certloop_renewer_last_attempt_timestamp_seconds", "gauge",
               "When the last renewal attempt of the certificate finished.", ("certificate",), unit="seconds"),
    MetricSpec("certloop_renewer_last_result", "gauge",
               "Result of the last finished attempt (1 for the current result).", ("certificate", "result")),
    MetricSpec("certloop_renewer_next_due_timestamp_seconds", "gauge",
               "When the safety net will renew the certificate.", ("certificate",), unit="seconds"),
    MetricSpec("certloop_renewer_certificate_not_after_timestamp_seconds", "gauge",
               "Expiry of the installed certificate.", ("certificate",), unit="seconds"),
    MetricSpec("certloop_renewer_queue_depth", "gauge", "Jobs queued (open and not being worked)."),
    MetricSpec("certloop_renewer_jobs_in_progress", "gauge", "Jobs being worked (leased) by any replica."),
    MetricSpec("certloop_renewer_oldest_queued_job_timestamp_seconds", "gauge",
               "Creation time of the oldest queued job (0 if none).", unit="seconds"),
    MetricSpec("certloop_renewer_ratelimit_remaining", "gauge", "Headroom left in the rate-limit ledger.",
               ("issuer", "limit")),
    MetricSpec("certloop_renewer_build_info", "gauge", "Build information (always 1).", ("version",)),
    MetricSpec("certloop_renewer_audit_events_dropped_total", "counter",
               "Audit events not written (rate_limited: refusals past the per-minute bound; overflow; "
               "store_unavailable).", ("reason",)),
    MetricSpec("certloop_renewer_config_last_reload_successful", "gauge",
               "Whether the last configuration (re)load succeeded."),
    MetricSpec("certloop_renewer_http_requests_total", "counter",
               "HTTP requests answered, by handler (route pattern, other when none matched) and status.",
               ("handler", "code")),
    MetricSpec("certloop_renewer_http_request_duration_seconds", "histogram",
               "Time from a request's arrival to its answer, by handler.", ("handler",), unit="seconds"),
    MetricSpec("certloop_renewer_database_up", "gauge",
               "1 if the job store answered the queries of the last scrape within the store timeout."),
    MetricSpec("certloop_renewer_database_pool_size", "gauge",
               "Connections the database pool keeps (its configured size; 0 for SQLite in memory)."),
    MetricSpec("certloop_renewer_database_pool_checked_out_connections", "gauge",
               "Database connections lent out to store operations now."),
    MetricSpec("certloop_renewer_database_pool_overflow_connections", "gauge",
               "Database connections open beyond the pool size now (max_overflow bounds them)."),
    MetricSpec("certloop_renewer_database_connection_wait_seconds", "histogram",
               "Time a store operation waited for its database connection (free slot, connect, ping).", unit="seconds"),
)
_DEF = {m.name: m for m in CATALOGUE}


def _counter(name: str, registry: CollectorRegistry) -> Counter:
    spec = _DEF[name]
    return Counter(spec.name.removesuffix("_total"), spec.help, spec.labels, registry=registry)


def _gauge(name: str, registry: CollectorRegistry) -> Gauge:
    spec = _DEF[name]
    return Gauge(spec.name, spec.help, spec.labels, registry=registry)


def _histogram(name: str, registry: CollectorRegistry, buckets: tuple[float, ...]) -> Histogram:
    spec = _DEF[name]
    return Histogram(spec.name, spec.help, spec.labels, registry=registry, buckets=buckets)


def _ts(when: datetime | None) -> float | None:
    return None if when is None else when.timestamp()


@dataclass(frozen=True)
class CertificateSnapshot:
    not_after: datetime | None = None
    next_due: datetime | None = None
    last_attempt: datetime | None = None
    last_success: datetime | None = None
    last_result: str | None = None


@dataclass(frozen=True)
class Snapshot:
    queued: int = 0
    in_progress: int = 0
    oldest_queued: datetime | None = None
    certificates: Mapping[str, CertificateSnapshot] = field(default_factory=dict)
    ratelimit_remaining: Mapping[tuple[str, str], int] = field(default_factory=dict)


class _SnapshotCollector(Collector):
    def __init__(self, owner: RenewerMetrics) -> None:
        self.owner = owner

    def describe(self) -> list[Metric]:
        return []  # collect() is cheap and I/O-free, but describing lazily keeps registration trivial

    def _family(self, name: str) -> GaugeMetricFamily:
        d = _DEF[name]
        return GaugeMetricFamily(name, d.help, labels=list(d.labels))

    def collect(self) -> Iterator[Metric]:
        snap = self.owner.snapshot
        for name, value in (
            ("certloop_renewer_queue_depth", snap.queued),
            ("certloop_renewer_jobs_in_progress", snap.in_progress),
            ("certloop_renewer_oldest_queued_job_timestamp_seconds", _ts(snap.oldest_queued) or 0.0),
        ):
            fam = self._family(name)
            fam.add_metric([], float(value))
            yield fam
        per_cert = {
            "certloop_renewer_last_success_timestamp_seconds": "last_success",
            "certloop_renewer_last_attempt_timestamp_seconds": "last_attempt",
            "certloop_renewer_next_due_timestamp_seconds": "next_due",
            "certloop_renewer_certificate_not_after_timestamp_seconds": "not_after",
        }
        for name, attr in per_cert.items():
            fam = self._family(name)
            for cert_id, cert in sorted(snap.certificates.items()):
                when = getattr(cert, attr)
                if when is not None:
                    fam.add_metric([cert_id], when.timestamp())
            yield fam
        fam = self._family("certloop_renewer_last_result")
        for cert_id, cert in sorted(snap.certificates.items()):
            if cert.last_result in RESULTS:
                fam.add_metric([cert_id, cert.last_result], 1.0)
        yield fam
        fam = self._family("certloop_renewer_ratelimit_remaining")
        for (issuer, limit), left in sorted(snap.ratelimit_remaining.items()):
            fam.add_metric([issuer, limit], float(left))
        yield fam


class RenewerMetrics:
    """The renewer's metrics in their own registry (a fresh one per daemon and per test)."""

    def __init__(self) -> None:
        # `_created` series are not in the catalogue (process-wide switch; the function lacks annotations).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.webhook_requests = _counter("certloop_renewer_webhook_requests_total", r)
        self.alerts = _counter("certloop_renewer_alerts_total", r)
        for outcome in OUTCOMES:
            self.alerts.labels(outcome)
        self.renewals = _counter("certloop_renewer_renewals_total", r)
        self.renewal_duration = _histogram("certloop_renewer_renewal_duration_seconds", r,
                                           (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600))
        self.build_info = _gauge("certloop_renewer_build_info", r)
        self.build_info.labels(__version__).set(1)
        self.config_reload_ok = _gauge("certloop_renewer_config_last_reload_successful", r)
        self.audit_dropped = _counter("certloop_renewer_audit_events_dropped_total", r)
        for reason in ("rate_limited", "overflow", "store_unavailable"):
            self.audit_dropped.labels(reason)
        self.http = RequestObserver(
            _counter("certloop_renewer_http_requests_total", r),
            _histogram("certloop_renewer_http_request_duration_seconds", r, DURATION_BUCKETS),
            (),
        )  # the HTTP server's observer; renewer.routes.build_router declares the routes
        self.database_up = _gauge("certloop_renewer_database_up", r)
        self.database_up.set(1)  # until a scrape finds otherwise: the daemon started on a reachable store
        self.pool_size = _gauge("certloop_renewer_database_pool_size", r)
        self.pool_checked_out = _gauge("certloop_renewer_database_pool_checked_out_connections", r)
        self.pool_overflow = _gauge("certloop_renewer_database_pool_overflow_connections", r)
        self.connection_wait = _histogram(
            "certloop_renewer_database_connection_wait_seconds", r,
            (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
        )
        self._declared: set[tuple[str, str]] = set()
        self.snapshot = Snapshot()
        r.register(_SnapshotCollector(self))

    def declare(self, certificates: Mapping[str, str]) -> None:
        """Start ``renewals_total`` at 0 for every configured certificate (id -> issuer type) and result, and
        the duration histogram at 0 for every configured issuer type.

        Why: ``increase()`` over a series that first appears at 1 sees no increase, so a certificate's first
        failure would be invisible to the alerts and the dashboards' "Failed" and "Rolled back" panels, and an
        issuer's first renewal to the duration quantiles. Series of certificates (and issuer types) no longer
        configured are removed, as their snapshot series are."""
        wanted = set(certificates.items())
        for cert_id, issuer in sorted(wanted - self._declared):
            for result in RESULTS:
                self.renewals.labels(cert_id, issuer, result)
        for cert_id, issuer in sorted(self._declared - wanted):
            for result in RESULTS:
                self.renewals.remove(cert_id, issuer, result)
        issuers, before = {i for _, i in wanted}, {i for _, i in self._declared}
        for issuer in sorted(issuers - before):
            self.renewal_duration.labels(issuer)
        for issuer in sorted(before - issuers):
            self.renewal_duration.remove(issuer)
        self._declared = wanted

    def set_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def set_pool(self, pool: PoolStats) -> None:
        self.pool_size.set(pool.size)
        self.pool_checked_out.set(pool.checked_out)
        self.pool_overflow.set(pool.overflow)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
