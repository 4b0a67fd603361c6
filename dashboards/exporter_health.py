"""Exporter health: is the exporter itself probing on time, how fast, and failing how."""

from __future__ import annotations

from typing import Any

from certloop.dashboards import style as s
from certloop.dashboards.style import Query, Size
from certloop.dashboards.thresholds import Thresholds

I = 'instance=~"$instance"'  # noqa: E741 - the selector reads like the variable it filters on
PROBES = f"certloop_probes_total{{{I}}}"
LAG_TH = s.thresholds(s.GREEN, (900, s.ORANGE), (3600, s.RED))


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


def spec(t: Thresholds) -> s.Spec:
    return s.Spec(
        module_file=__file__,
        title="certloop / Exporter health",
        description="The exporter itself: probe rates and durations, failures by reason, sweep lag, reloads, "
                    "build.",
        variables=[s.label_variable("instance", "Instance", "certloop_build_info")],
        links=[s.Link("Certificates overview", s.uid_for("overview.py"), vars=False)],
        panels=[*_summary(), *_probes(), *_sweeps()],
        extra_tags=("exporter",),
    )


def build(t: Thresholds) -> dict[str, Any]:
    """The Grafana JSON model of this dashboard with the mixin's thresholds `t`."""
    return s.dashboard(spec(t))
