"""Renewals: what the renewer did with the alerts it received, how long it took, and what is next."""

from __future__ import annotations

from typing import Any

from certloop.dashboards import style as s
from certloop.dashboards.style import Query, Size
from certloop.dashboards.thresholds import Thresholds

C = 'certificate=~"$certificate"'
RENEWALS = f"certloop_renewer_renewals_total{{{C}}}"
BUCKETS = "certloop_renewer_renewal_duration_seconds_bucket"
OLDEST = "max(certloop_renewer_oldest_queued_job_timestamp_seconds)"
OLDEST_AGE = f"(time() - {OLDEST}) * ({OLDEST} > bool 0)"  # the gauge is 0 when nothing is queued
HEADROOM_TH = s.thresholds(s.RED, (1, s.ORANGE), (5, s.GREEN))
RESULT_COLOURS = [
    {"matcher": {"id": "byName", "options": name},
     "properties": [{"id": "color", "value": {"fixedColor": colour, "mode": "fixed"}}]}
    for name, colour in (("succeeded", s.GREEN), ("failed", s.RED), ("rolled_back", s.ORANGE))
]


def _outcomes(t: Thresholds) -> list[Any]:
    def total(result: str) -> Query:
        return Query(f'sum(increase(certloop_renewer_renewals_total{{result="{result}", {C}}}[{s.RANGE}]))',
                     instant=True)

    small = Size(4, 4)
    return [
        s.row("Outcomes"),
        s.stat("Succeeded", "Renewals that were issued, installed and verified in the selected time range.",
               total("succeeded"), size=small, decimals=0, th=s.thresholds(s.GREEN)),
        s.stat("Failed", "Renewals that failed (issuance, installation or verification) in the time range.",
               total("failed"), size=small, decimals=0, th=s.thresholds(s.GREEN, (1, s.RED)),
               color_mode="background"),
        s.stat("Rolled back", "Renewals whose new certificate did not verify after install and were "
               "rolled back to the previous one.", total("rolled_back"), size=small, decimals=0,
               th=s.thresholds(s.GREEN, (1, s.ORANGE)), color_mode="background"),
        s.stat("Queue depth", "Renewal jobs waiting for a worker now.",
               Query("sum(certloop_renewer_queue_depth)", instant=True), size=small,
               th=s.thresholds(s.GREEN, (5, s.ORANGE))),
        s.stat("In progress", "Renewal jobs being worked on now.",
               Query("sum(certloop_renewer_jobs_in_progress)", instant=True), size=small,
               th=s.thresholds(s.BLUE)),
        s.stat("Oldest queued job", "Age of the oldest job still queued; a growing age means the queue is "
               "stuck; 0 when nothing is queued. Red from the mixin's renewerQueueStuckAfter, when "
               "CertloopRenewerQueueStuck's condition holds.", Query(OLDEST_AGE, instant=True),
               unit=s.UNIT_SECONDS, size=small, th=s.thresholds(s.GREEN, (t.renewerQueueStuckSeconds, s.RED))),
        s.timeseries("Renewals by outcome", "Finished renewals per outcome over time.",
                     Query(f"sum by (result) (increase({RENEWALS}[{s.RATE_INTERVAL}]))", legend="{{result}}"),
                     bars=True, stacked=True, minimum=0, legend_calcs=("sum",)),
        s.timeseries("Renewals by certificate", "Finished renewals per certificate and outcome over time.",
                     Query(f"sum by (certificate, result) (increase({RENEWALS}[{s.RATE_INTERVAL}]))",
                           legend="{{certificate}} {{result}}"),
                     bars=True, stacked=True, minimum=0, legend_calcs=("sum",)),
    ]


def _durations() -> list[Any]:
    def quantile(q: str, by: str = "") -> Query:
        group = f"{by}, le" if by else "le"
        name = f"p{round(float(q) * 100)}"
        legend = f"{name} {{{{{by}}}}}" if by else name
        return Query(f"histogram_quantile({q}, sum by ({group}) (rate({BUCKETS}[{s.RATE_INTERVAL}])))",
                     legend=legend)

    return [
        s.row("Durations"),
        s.timeseries("Renewal duration quantiles", "Time from the job being queued (alert) to a verified installed "
                     "certificate: median, 90th and 99th percentile of successful renewals in each interval.",
                     quantile("0.5"), quantile("0.9"), quantile("0.99"), unit=s.UNIT_SECONDS, minimum=0),
        s.timeseries("p90 duration by issuer", "90th percentile duration of successful renewals per issuer backend.",
                     quantile("0.9", "issuer"), unit=s.UNIT_SECONDS, minimum=0),
        s.stat("Mean duration", "Mean alert-to-verified time of successful renewals in the time range.",
               Query("sum(increase(certloop_renewer_renewal_duration_seconds_sum[$__range])) / "
                     "sum(increase(certloop_renewer_renewal_duration_seconds_count[$__range]))", instant=True),
               unit=s.UNIT_SECONDS, size=Size(6, 4), th=s.thresholds(s.GREEN, (300, s.ORANGE)),
               no_value="no renewals"),
        s.stat("Successful renewals", "Successful renewals recorded by the duration histogram in the range "
               "(the histogram observes successes only).",
               Query("sum(increase(certloop_renewer_renewal_duration_seconds_count[$__range]))", instant=True),
               size=Size(6, 4), decimals=0, th=s.thresholds(s.BLUE)),
        s.bargauge("Rate-limit headroom", "Remaining issuance budget per issuer and limit in the renewer's "
                   "rate-limit ledger; red means the next renewal would be refused.",
                   Query("certloop_renewer_ratelimit_remaining", legend="{{issuer}} {{limit}}", instant=True),
                   th=HEADROOM_TH, size=Size(12, 4)),
    ]


def _queue_and_intake() -> list[Any]:
    return [
        s.row("Queue and intake"),
        s.timeseries("Queue", "Jobs queued and in progress over time.",
                     Query("sum(certloop_renewer_queue_depth)", legend="queued"),
                     Query("sum(certloop_renewer_jobs_in_progress)", legend="in progress"), minimum=0, step=True),
        s.timeseries("Alerts received by outcome", "Alertmanager notifications handled by the webhook: "
                     "queued, duplicate (HA delivery), unknown certificate, resolved, not renewable.",
                     Query(f"sum by (outcome) (rate(certloop_renewer_alerts_total[{s.RATE_INTERVAL}]))",
                           legend="{{outcome}}"), unit=s.UNIT_PER_SECOND, stacked=True, minimum=0),
        s.timeseries("Webhook requests by status", "HTTP responses of the webhook; 4xx are never retried by "
                     "Alertmanager, 503 asks for a retry. Audit dropped: refused requests past the audit "
                     "trail's per-minute bound (a flood of bad credentials), or lost to a store outage.",
                     Query(f"sum by (code) (rate(certloop_renewer_webhook_requests_total[{s.RATE_INTERVAL}]))",
                           legend="{{code}}"),
                     Query(f"sum by (reason) (rate(certloop_renewer_audit_events_dropped_total[{s.RATE_INTERVAL}]))",
                           legend="audit dropped: {{reason}}"), unit=s.UNIT_PER_SECOND, minimum=0),
        s.timeseries("Rate-limit headroom over time", "Remaining issuance budget per issuer and limit.",
                     Query("certloop_renewer_ratelimit_remaining", legend="{{issuer}} {{limit}}"),
                     th=HEADROOM_TH, threshold_style="line", minimum=0, step=True),
    ]


def _per_certificate() -> list[Any]:
    def at(metric: str) -> Query:
        return Query(f"max by (certificate) ({metric}{{{C}}}) {s.MS}", instant=True, table=True)

    date_th = s.thresholds(s.BLUE)
    return [
        s.row("Per certificate"),
        s.table("Renewal state", "Per managed certificate: last success, last attempt, when the safety net "
                "renews next, and when the installed certificate expires.",
                at("certloop_renewer_last_success_timestamp_seconds"),
                at("certloop_renewer_last_attempt_timestamp_seconds"),
                at("certloop_renewer_next_due_timestamp_seconds"),
                at("certloop_renewer_certificate_not_after_timestamp_seconds"),
                merge=True, size=Size(16, 9), sort_by="Next due",
                columns={"certificate": "Certificate", "Value #A": "Last success", "Value #B": "Last attempt",
                         "Value #C": "Next due", "Value #D": "Installed expires"},
                overrides=[s.column_unit(name, s.UNIT_DATE_FROM_NOW, date_th)
                           for name in ("Last success", "Last attempt", "Next due", "Installed expires")]),
        s.table("Last result", "Result of the last finished attempt per certificate.",
                Query(f"certloop_renewer_last_result{{{C}}} == 1", instant=True, table=True),
                size=Size(8, 9), hide=("Value",), sort_by="Result",
                columns={"certificate": "Certificate", "result": "Result"},
                overrides=[{"matcher": {"id": "byName", "options": "Result"},
                            "properties": [{"id": "mappings", "value": s.value_text({
                                "succeeded": ("succeeded", s.GREEN), "failed": ("failed", s.RED),
                                "rolled_back": ("rolled back", s.ORANGE)})},
                                {"id": "custom.cellOptions", "value": {"type": "color-text"}}]}]),
    ]


def _renewer_health() -> list[Any]:
    return [
        s.row("Renewer"),
        s.stat("Renewer version", "Version of each running renewer (certloop_renewer_build_info).",
               Query("count by (version) (certloop_renewer_build_info)", legend="{{version}}", instant=True),
               size=Size(12, 4), text_mode="name", color_mode="none", no_value="renewer not scraped"),
        s.stat("Config reload", "Whether the renewer's last configuration (re)load succeeded.",
               Query("min(certloop_renewer_config_last_reload_successful)", instant=True), size=Size(12, 4),
               mappings=s.value_text({"0": ("failed", s.RED), "1": ("ok", s.GREEN)}),
               color_mode="background", no_value="renewer not scraped"),
    ]


def spec(t: Thresholds) -> s.Spec:
    return s.Spec(
        module_file=__file__,
        title="certloop / Renewals",
        description="Renewer activity: outcomes, durations, queue, intake, rate-limit headroom and per-certificate "
                    "state.",
        variables=[s.label_variable("certificate", "Certificate", "certloop_renewer_next_due_timestamp_seconds")],
        links=[s.Link("Certificates overview", s.uid_for("overview.py"), vars=False),
               s.Link("Certificate detail", s.uid_for("detail.py"))],
        panels=[*_outcomes(t), *_durations(), *_queue_and_intake(), *_per_certificate(), *_renewer_health()],
        time_from="now-7d",
        extra_tags=("renewal",),
    )


def build(t: Thresholds) -> dict[str, Any]:
    """The Grafana JSON model of this dashboard with the mixin's thresholds `t`."""
    return s.dashboard(spec(t))
