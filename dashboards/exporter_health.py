"""Exporter health: is the exporter itself probing on time, how fast, and failing how; both daemons'
HTTP requests (rate, errors, latency per handler); the renewer's job store (up, pool, connection wait)
and queue."""

from __future__ import annotations

from typing import Any

from certloop.dashboards import style as s
from certloop.dashboards.style import Query, Size
from certloop.dashboards.thresholds import Thresholds

I = 'instance=~"$instance"'  # noqa: E741 - the selector reads like the variable it filters on
PROBES = f"certloop_probes_total{{{I}}}"
LAG_TH = s.thresholds(s.GREEN, (900, s.ORANGE), (3600, s.RED))
R = 'instance=~"$renewer"'  # the renewer's instances (its own variable: the daemons run on other ports)
INTAKE = 'handler="/api/v1/alertmanager"'
OLDEST = f"certloop_renewer_oldest_queued_job_timestamp_seconds{{{R}}}"  # 0 when nothing is queued


def _summary() -> list[Any]:
    small = Size(4, 4)
    return [
        s.row("Summary"),
        s.stat("Exporters", "Running exporter processes reporting build info.",
               Query(f"count(certloop_build_info{{{I}}})", instant=True), size=small,
               th=s.thresholds(s.RED, (1, s.GREEN)), color_mode="background"),
        s.stat("Config reload", "Whether every selected exporter's last configuration (re)load succeeded; "
               "a failed reload keeps the previous configuration running.",
               Query(f"min(certloop_config_last_reload_successful{{{I}}})", instant=True), size=small,
               mappings=s.value_text({"0": ("failed", s.RED), "1": ("ok", s.GREEN)}),
               color_mode="background", no_value="no data"),
        s.stat("Last good reload", "When the configuration was last loaded successfully.",
               Query(f"max(certloop_config_last_reload_success_timestamp_seconds{{{I}}}) {s.MS}", instant=True),
               unit=s.UNIT_DATE_FROM_NOW, size=small, th=s.thresholds(s.BLUE), no_value="never"),
        s.stat("Probe failure ratio", "Share of probes that failed over the selected time range.",
               Query(f'sum(increase(certloop_probes_total{{result="failure", {I}}}[{s.RANGE}])) / '
                     f"sum(increase({PROBES}[{s.RANGE}]))", instant=True),
               unit=s.UNIT_PERCENT, decimals=1, size=small,
               th=s.thresholds(s.GREEN, (0.05, s.ORANGE), (0.25, s.RED)), no_value="no probes"),
        s.stat("Worst sweep lag", "Seconds since the oldest last completed inventory sweep; grows when the "
               "exporter stops sweeping.",
               Query(f"max(time() - certloop_last_sweep_timestamp_seconds{{{I}}})", instant=True),
               unit=s.UNIT_SECONDS, size=small, th=LAG_TH, color_mode="background", no_value="no sweeps"),
        s.stat("Reloads", "Successful configuration reloads in the selected time range.",
               Query(f"sum(changes(certloop_config_last_reload_success_timestamp_seconds{{{I}}}[{s.RANGE}]))",
                     instant=True), size=small, decimals=0, th=s.thresholds(s.BLUE)),
    ]


def _probes() -> list[Any]:
    return [
        s.row("Probes"),
        s.timeseries("Probe rate by result", "Probes run per second by source and result.",
                     Query(f"sum by (source, result) (rate({PROBES}[{s.RATE_INTERVAL}]))",
                           legend="{{source}} {{result}}"), unit=s.UNIT_PER_SECOND, stacked=True, minimum=0),
        s.timeseries("Probe failure ratio", "Share of probes that failed per source.",
                     Query(f'sum by (source) (rate(certloop_probes_total{{result="failure", {I}}}'
                           f"[{s.RATE_INTERVAL}])) / sum by (source) (rate({PROBES}[{s.RATE_INTERVAL}]))",
                           legend="{{source}}"),
                     unit=s.UNIT_PERCENT, minimum=0, maximum=1,
                     th=s.thresholds(s.GREEN, (0.05, s.ORANGE), (0.25, s.RED)), threshold_style="line"),
        s.timeseries("Probe duration", "Slowest and 90th-percentile duration of the last probe per source.",
                     Query(f"max by (source) (certloop_probe_duration_seconds{{{I}}})", legend="max {{source}}"),
                     Query(f"quantile by (source) (0.9, certloop_probe_duration_seconds{{{I}}})",
                           legend="p90 {{source}}"),
                     unit=s.UNIT_SECONDS, minimum=0, th=s.thresholds(s.GREEN, (5, s.ORANGE)),
                     threshold_style="line"),
        s.timeseries("Failures by reason", "Currently failing probes per reason (dns, connect, refused, "
                     "timeout, handshake, starttls, no_certificate, chain_too_large, bad_server_name, file reasons).",
                     Query(f"count by (reason) (certloop_probe_failure_reason{{{I}}})", legend="{{reason}}"),
                     bars=True, stacked=True, minimum=0),
        s.table("Slowest probes", "The ten endpoints or files whose last probe took longest.",
                Query(f"topk(10, certloop_probe_duration_seconds{{{I}}})", instant=True, table=True),
                size=Size(24, 8), sort_by="Duration", descending=True,
                columns={"source": "Source", "target": "Target", "address": "Address",
                         "certificate": "Certificate", "Value": "Duration"},
                overrides=[s.column_unit("Duration", s.UNIT_SECONDS, s.thresholds(s.GREEN, (5, s.ORANGE)),
                                         cell="color-text")]),
    ]


def _sweeps() -> list[Any]:
    return [
        s.row("Sweeps and reloads"),
        s.timeseries("Sweep lag", "Seconds since the last completed sweep of endpoints and of files "
                     "(time() - certloop_last_sweep_timestamp_seconds).",
                     Query(f"time() - certloop_last_sweep_timestamp_seconds{{{I}}}", legend="{{instance}} {{kind}}"),
                     unit=s.UNIT_SECONDS, minimum=0, th=LAG_TH, threshold_style="line"),
        s.timeseries("Sweep duration", "How long the last inventory sweep took, per kind.",
                     Query(f"certloop_sweep_duration_seconds{{{I}}}", legend="{{instance}} {{kind}}"),
                     unit=s.UNIT_SECONDS, minimum=0),
        s.timeline("Config reload status", "Whether the last configuration (re)load succeeded, over time.",
                   Query(f"certloop_config_last_reload_successful{{{I}}}", legend="{{instance}}"),
                   mappings=s.value_text({"0": ("failed", s.RED), "1": ("ok", s.GREEN)}), size=Size(12, 6)),
        s.table("Build", "Version and Python of each exporter.",
                Query(f"certloop_build_info{{{I}}}", instant=True, table=True), size=Size(12, 6),
                hide=("Value", "__name__"),
                columns={"instance": "Instance", "version": "Version", "python_version": "Python"}),
    ]


def _requests(prefix: str, sel: str, who: str) -> list[Any]:
    """Rate by handler and status, 5xx ratio and p99 latency per handler of one daemon's HTTP server."""
    total = f"{prefix}_http_requests_total"
    buckets = f"{prefix}_http_request_duration_seconds_bucket"
    return [
        s.timeseries(f"{who} requests", "Requests answered per second by handler (route pattern; other: "
                     "no route matched) and status code.",
                     Query(f"sum by (handler, code) (rate({total}{{{sel}}}[{s.RATE_INTERVAL}]))",
                           legend="{{handler}} {{code}}"),
                     unit=s.UNIT_PER_SECOND, stacked=True, minimum=0, size=Size(8, 8)),
        s.timeseries(f"{who} errors", "Share of answers with a 5xx status, per handler.",
                     # `or 0 * ...`: a handler with traffic and no 5xx series shows 0, not a gap
                     Query(f'(sum by (handler) (rate({total}{{code=~"5..", {sel}}}[{s.RATE_INTERVAL}])) '
                           f"or 0 * sum by (handler) (rate({total}{{{sel}}}[{s.RATE_INTERVAL}]))) / "
                           f"sum by (handler) (rate({total}{{{sel}}}[{s.RATE_INTERVAL}]))", legend="{{handler}}"),
                     unit=s.UNIT_PERCENT, minimum=0, size=Size(8, 8)),
        s.timeseries(f"{who} latency p99", "99th percentile of the time from a request's arrival to its "
                     "answer, per handler.",
                     Query(f"histogram_quantile(0.99, sum by (handler, le) (rate({buckets}{{{sel}}}"
                           f"[{s.RATE_INTERVAL}])))", legend="{{handler}}"),
                     unit=s.UNIT_SECONDS, minimum=0, size=Size(8, 8)),
    ]


def _renewer(t: Thresholds) -> list[Any]:
    small = Size(4, 4)
    return [
        s.row("Renewer: webhook, job store and queue"),
        s.stat("Job store", "Whether each selected renewer's job store answered at its last scrape "
               "(certloop_renewer_database_up); CertloopRenewerDatabaseUnavailable fires after 5 minutes of 0.",
               Query(f"min(certloop_renewer_database_up{{{R}}})", instant=True), size=small,
               mappings=s.value_text({"0": ("unavailable", s.RED), "1": ("up", s.GREEN)}),
               color_mode="background", no_value="no data"),
        s.stat("Webhook errors", "Share of Alertmanager webhooks answered 5xx over the selected range (0 "
               "when none arrived); red "
               "from the mixin's renewerWebhook.errorRatio (CertloopRenewerWebhookErrors).",
               # clamp_min: no webhook in the range (or only before the first scrape) reads 0, not a gap
               Query(f'(sum(increase(certloop_renewer_http_requests_total{{{INTAKE}, code=~"5..", {R}}}[{s.RANGE}])) '
                     f"or 0 * sum(certloop_renewer_http_requests_total{{{INTAKE}, {R}}})) / "
                     f"clamp_min(sum(increase(certloop_renewer_http_requests_total{{{INTAKE}, {R}}}[{s.RANGE}])), 1)",
                     instant=True),
               unit=s.UNIT_PERCENT, decimals=1, size=small,
               th=s.thresholds(s.GREEN, (t.renewerWebhookErrorRatio, s.RED)), no_value="no webhooks"),
        s.stat("Webhook p99", "99th percentile webhook answer time over the selected range; red from the "
               "mixin's renewerWebhook.p99Latency (CertloopRenewerWebhookSlow).",
               Query("histogram_quantile(0.99, sum by (le) (increase("
                     f"certloop_renewer_http_request_duration_seconds_bucket{{{INTAKE}, {R}}}[{s.RANGE}])))",
                     instant=True),
               unit=s.UNIT_SECONDS, size=small,
               th=s.thresholds(s.GREEN, (t.renewerWebhookP99Seconds, s.RED)), no_value="no webhooks"),
        s.stat("Queue depth", "Renewal jobs waiting for a worker now.",
               Query(f"max(certloop_renewer_queue_depth{{{R}}})", instant=True), size=small,
               th=s.thresholds(s.GREEN, (5, s.ORANGE))),
        s.stat("Oldest queued job", "Age of the oldest queued job (time() minus its creation timestamp; 0 "
               "when nothing is queued); red from the mixin's renewerQueueStuckAfter (CertloopRenewerQueueStuck).",
               Query(f"max((time() - {OLDEST}) * ({OLDEST} > bool 0))", instant=True),
               unit=s.UNIT_SECONDS, size=small, th=s.thresholds(s.GREEN, (t.renewerQueueStuckSeconds, s.RED))),
        s.stat("Jobs in progress", "Jobs being worked by any replica now.",
               Query(f"max(certloop_renewer_jobs_in_progress{{{R}}})", instant=True), size=small,
               th=s.thresholds(s.BLUE)),
        *_requests("certloop_renewer", R, "Renewer"),
        s.timeseries("Database pool", "Connections of each renewer's pool: its configured size, lent out, "
                     "and opened beyond the size (overflow).",
                     Query(f"certloop_renewer_database_pool_size{{{R}}}", legend="{{instance}} size"),
                     Query(f"certloop_renewer_database_pool_checked_out_connections{{{R}}}",
                           legend="{{instance}} checked out"),
                     Query(f"certloop_renewer_database_pool_overflow_connections{{{R}}}",
                           legend="{{instance}} overflow"),
                     minimum=0, size=Size(8, 8)),
        s.timeseries("Connection wait", "Time a store operation waited for its connection (a free slot, "
                     "connecting, the checkout ping): p50 and p99.",
                     Query("histogram_quantile(0.5, sum by (instance, le) (rate("
                           f"certloop_renewer_database_connection_wait_seconds_bucket{{{R}}}[{s.RATE_INTERVAL}])))",
                           legend="{{instance}} p50"),
                     Query("histogram_quantile(0.99, sum by (instance, le) (rate("
                           f"certloop_renewer_database_connection_wait_seconds_bucket{{{R}}}[{s.RATE_INTERVAL}])))",
                           legend="{{instance}} p99"),
                     unit=s.UNIT_SECONDS, minimum=0, size=Size(8, 8)),
        s.timeseries("Queue", "Jobs queued and in progress, and the oldest queued job's age (right axis "
                     "values in seconds).",
                     Query(f"max(certloop_renewer_queue_depth{{{R}}})", legend="queued"),
                     Query(f"max(certloop_renewer_jobs_in_progress{{{R}}})", legend="in progress"),
                     minimum=0, size=Size(8, 8)),
    ]


def spec(t: Thresholds) -> s.Spec:
    return s.Spec(
        module_file=__file__,
        title="certloop / Exporter health",
        description="certloop itself: the exporter's probe rates and durations, failures by reason, sweep lag, "
                    "reloads, build; both daemons' requests per handler; the renewer's job store and queue.",
        variables=[s.label_variable("instance", "Instance", "certloop_build_info"),
                   s.label_variable("renewer", "Renewer", "certloop_renewer_build_info", of="instance")],
        links=[s.Link("Certificates overview", s.uid_for("overview.py"), vars=False)],
        panels=[*_summary(), *_probes(), *_sweeps(), s.row("Exporter requests"),
                *_requests("certloop", I, "Exporter"), *_renewer(t)],
        extra_tags=("exporter",),
    )


def build(t: Thresholds) -> dict[str, Any]:
    """The Grafana JSON model of this dashboard with the mixin's thresholds `t`."""
    return s.dashboard(spec(t))
