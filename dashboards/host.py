"""Host: the machines certloop runs on, from node_exporter: disk (the mount points holding data_dir and
certificate outputs first), memory, load and the clock, beside the mixin's `certloop-host` alerts.

The queries read node_exporter's series (job="node", the mixin's default nodeExporterSelector), not a
certloop catalogue: tests/deploy/test_host_alerts.py runs every panel against a real node_exporter. The
colour steps mirror the host alerts' default thresholds (alerting/alerts/host.libsonnet); they are fixed
here because the dashboard thresholds taken from the mixin cover certificates only.
"""

from __future__ import annotations

from typing import Any

from certloop.dashboards import style as s
from certloop.dashboards.style import Query, Size
from certloop.dashboards.thresholds import Thresholds

NODE = 'job="node", instance=~"$instance"'
FS = f'{NODE}, fstype!~"tmpfs|ramfs|overlay|squashfs|nsfs|fuse.lxcfs|autofs"'
FREE = f"node_filesystem_avail_bytes{{{FS}}} / node_filesystem_size_bytes{{{FS}}}"
MEMORY = f"node_memory_MemAvailable_bytes{{{NODE}}} / node_memory_MemTotal_bytes{{{NODE}}}"
CPUS = f'count by (instance) (node_cpu_seconds_total{{{NODE}, mode="idle"}})'
LOAD = f"node_load15{{{NODE}}} / on (instance) {CPUS}"
OFFSET = f"node_timex_offset_seconds{{{NODE}}}"
FREE_TH = s.thresholds(s.RED, (0.10, s.ORANGE), (0.40, s.GREEN))
LOAD_TH = s.thresholds(s.GREEN, (1, s.ORANGE), (2, s.RED))
OFFSET_TH = s.thresholds(s.GREEN, (0.05, s.RED))


def _summary() -> list[Any]:
    small = Size(4, 4)
    return [
        s.row("Summary"),
        s.stat("Hosts up", "node_exporters Prometheus scrapes successfully, of those it knows (CertloopHostDown).",
               Query(f"sum(up{{{NODE}}})", instant=True), size=small, th=s.thresholds(s.RED, (1, s.GREEN)),
               color_mode="background", no_value="none"),
        s.stat("Least free file system", "The fullest real file system's free share "
               "(CertloopHostFilesystemAlmostFull and CertloopHostCertloopFilesystemAlmostFull below 10%).",
               Query(f"min({FREE})", instant=True), unit=s.UNIT_PERCENT, decimals=1, size=small, th=FREE_TH,
               color_mode="background", no_value="no data"),
        s.stat("Least memory available", "The lowest available share of memory (CertloopHostMemoryLow below "
               "10%).", Query(f"min({MEMORY})", instant=True), unit=s.UNIT_PERCENT, decimals=1, size=small,
               th=FREE_TH, color_mode="background", no_value="no data"),
        s.stat("Highest load per CPU", "The highest 15-minute load average per CPU (CertloopHostLoadHigh "
               "above 2).", Query(f"max({LOAD})", instant=True), decimals=2, size=small, th=LOAD_TH,
               color_mode="background", no_value="no data"),
        s.stat("Largest clock offset", "The largest distance of a host clock from its time source "
               "(CertloopHostClockSkew above 50ms).", Query(f"max(abs({OFFSET}))", instant=True),
               unit=s.UNIT_SECONDS, size=small, th=OFFSET_TH, color_mode="background", no_value="no data"),
        s.stat("Unsynchronised clocks", "Hosts whose kernel reports the clock not synchronised "
               "(CertloopHostClockNotSynchronising).",
               Query(f"count(node_timex_sync_status{{{NODE}}} == 0) or vector(0)", instant=True), size=small,
               th=s.thresholds(s.GREEN, (1, s.ORANGE)), color_mode="background"),
    ]


def _disks() -> list[Any]:
    return [
        s.row("File systems"),
        s.timeseries("Free space", "Free share of each real file system; the alerts fire below 10%, or below "
                     "40% when the last 6h's trend empties it within 24h.",
                     Query(FREE, legend="{{instance}} {{mountpoint}}"), unit=s.UNIT_PERCENT, minimum=0,
                     maximum=1, th=FREE_TH, threshold_style="line"),
        s.timeseries("Hours until full at the last 6h's rate", "predict_linear over 6h: when each shrinking "
                     "file system would be empty; only file systems that shrink are shown.",
                     Query(f"(node_filesystem_avail_bytes{{{FS}}} / -deriv(node_filesystem_avail_bytes{{{FS}}}[6h]))"
                           f" / 3600 > 0", legend="{{instance}} {{mountpoint}}"),
                     unit="h", minimum=0, th=s.thresholds(s.RED, (24, s.ORANGE), (168, s.GREEN)),
                     threshold_style="line"),
        s.table("File systems", "Every real file system: size, free share and whether it is mounted read-only.",
                Query(f"node_filesystem_size_bytes{{{FS}}}", instant=True, table=True),
                Query(FREE, instant=True, table=True),
                Query(f"node_filesystem_readonly{{{FS}}}", instant=True, table=True),
                size=Size(24, 8), merge=True, sort_by="Free", hide=("fstype",),
                columns={"instance": "Host", "mountpoint": "Mount point", "device": "Device",
                         "Value #A": "Size", "Value #B": "Free", "Value #C": "Read-only"},
                overrides=[s.column_unit("Size", "bytes"),
                           s.column_unit("Free", s.UNIT_PERCENT, FREE_TH, cell="color-text")]),
    ]


def _machine() -> list[Any]:
    return [
        s.row("Memory, load and clock"),
        s.timeseries("Memory available", "Available share of memory per host.",
                     Query(MEMORY, legend="{{instance}}"), unit=s.UNIT_PERCENT, minimum=0, maximum=1, th=FREE_TH,
                     threshold_style="line"),
        s.timeseries("Load per CPU", "15-minute load average divided by the number of CPUs.",
                     Query(LOAD, legend="{{instance}}"), minimum=0, th=LOAD_TH, threshold_style="line"),
        s.timeseries("Clock offset", "Distance of each host's clock from its time source, as the kernel reports "
                     "it; certificate validity is judged against this clock.",
                     Query(OFFSET, legend="{{instance}}"), unit=s.UNIT_SECONDS, th=OFFSET_TH,
                     threshold_style="line"),
        s.timeline("Clock synchronised", "Whether the kernel reports each host's clock synchronised.",
                   Query(f"node_timex_sync_status{{{NODE}}}", legend="{{instance}}"),
                   mappings=s.value_text({"0": ("not synchronised", s.ORANGE), "1": ("synchronised", s.GREEN)}),
                   size=Size(12, 8)),
    ]


def spec(t: Thresholds) -> s.Spec:
    return s.Spec(
        module_file=__file__,
        title="certloop / Host",
        description="The hosts certloop runs on (node_exporter): file systems, memory, load and the clock, "
                    "as the certloop-host alerts judge them.",
        variables=[s.label_variable("instance", "Host", 'node_uname_info{job="node"}')],
        links=[s.Link("Exporter health", s.uid_for("exporter_health.py"), vars=False)],
        panels=[*_summary(), *_disks(), *_machine()],
        extra_tags=("host",),
    )


def build(t: Thresholds) -> dict[str, Any]:
    """The Grafana JSON model of this dashboard (`t` is unused: its thresholds are the host alerts')."""
    return s.dashboard(spec(t))
