"""The node_exporter metrics the mixin's host group uses, with the labels it may select on.

Not certloop's catalogue: these come from Prometheus' node_exporter. tests/deploy/test_host_alerts.py
scrapes Debian's real prometheus-node-exporter and checks that each of them is exported with these labels,
so a name here cannot drift from what node_exporter serves.
"""

from __future__ import annotations

SCRAPE = {"job", "instance"}
FILESYSTEM = SCRAPE | {"device", "fstype", "mountpoint"}

NODE_EXPORTER: dict[str, set[str]] = {
    "node_filesystem_avail_bytes": FILESYSTEM,
    "node_filesystem_size_bytes": FILESYSTEM,
    "node_filesystem_readonly": FILESYSTEM,
    "node_memory_MemAvailable_bytes": SCRAPE,
    "node_memory_MemTotal_bytes": SCRAPE,
    "node_load15": SCRAPE,
    "node_cpu_seconds_total": SCRAPE | {"cpu", "mode"},
    "node_timex_offset_seconds": SCRAPE,
    "node_timex_sync_status": SCRAPE,
}
