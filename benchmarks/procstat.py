"""CPU time and memory of running processes, read from /proc (Linux).

    before = cpu_seconds(pid)            # utime + stime of pid and its live descendants
    ...
    used = cpu_seconds(pid) - before
    peak_rss_mb(pid)                     # VmHWM: the high-water mark of resident memory

A descendant that exits between two readings loses its CPU time from the second one; the exporters
under test never fork per probe (certloop's probe workers, when asked for, live as long as the
exporter) and nginx workers live as long as the master, so this is exact for what we measure.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rsplit(")", 1)[1].split()  # comm may hold spaces and ')': split after the last one


def _children(pid: int) -> list[int]:
    found: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        tasks = list(task_dir.iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def family(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += _children(current)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants."""
    total = 0
    for member in family(pid):
        try:
            fields = _stat_fields(member)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / _TICKS


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def peak_rss_mb(pid: int) -> float:
    """VmHWM of ``pid`` (not its children) in MiB."""
    return _status_kb(pid, "VmHWM") / 1024


def family_peak_rss_mb(pid: int) -> float:
    """Summed VmHWM of ``pid`` and its live descendants in MiB (an exporter with probe workers)."""
    total = 0
    for member in family(pid):
        try:
            total += _status_kb(member, "VmHWM")
        except OSError:
            continue
    return total / 1024


def rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmRSS") / 1024
