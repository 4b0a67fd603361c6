"""The one load generator every scenario uses: wrk (C, epoll) with benchmarks/wrk.lua.

    result = run_wrk("http://127.0.0.1:9115", paths, seconds=5, connections=64, success="probe_success 1")

wrk keeps HTTP/1.1 connections alive and cycles through the given request paths (or POST bodies)
for a fixed time (wrk cannot stop after a request count: its main thread sleeps the whole duration).
An answer counts as a failure when its status
is not 2xx or its body does not match ``success`` (a Lua pattern). wrk's own CPU time is measured
too, because it shares the cores with what it loads.
"""

from __future__ import annotations

import json
import resource
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stack.process import require_binary

LUA_SCRIPT = Path(__file__).with_name("wrk.lua")


class LoadError(RuntimeError):
    """wrk failed or printed no summary; ``output`` is what it printed."""

    def __init__(self, message: str, output: str) -> None:
        self.output = output
        super().__init__(f"{message}\n--- wrk output ---\n{output[-3000:]}")


@dataclass(frozen=True)
class LoadResult:
    """One wrk run: counts, wall time, latency quantiles (seconds) and wrk's own CPU seconds."""

    requests: int
    seconds: float
    p50: float
    p90: float
    p99: float
    max: float
    failures: int
    socket_errors: int
    client_cpu: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(
    base_url: str,
    lines: Sequence[str],
    *,
    seconds: int,
    workdir: Path,
    connections: int = 64,
    threads: int = 2,
    success: str = "",
    post_path: str | None = None,
    token: str = "",
) -> LoadResult:
    """Load for ``seconds`` (GET each path in ``lines`` in turn, or POST each body to ``post_path``)."""
    binary = require_binary("wrk", "wrk")
    threads = max(1, min(threads, connections))
    workdir.mkdir(parents=True, exist_ok=True)
    requests_file = workdir / "wrk-requests.txt"
    requests_file.write_text("\n".join(lines) + "\n")
    argv = [
        binary, "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
        "-s", str(LUA_SCRIPT), base_url, "--",
        str(requests_file), success, "POST" if post_path else "GET", post_path or "", token,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise LoadError(f"wrk exited with {done.returncode}", output)
    summary = next((line[8:] for line in done.stdout.splitlines() if line.startswith("WRKJSON ")), None)
    if summary is None:
        raise LoadError("wrk printed no summary", output)
    data = json.loads(summary)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return LoadResult(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        p50=data["p50_us"] / 1e6,
        p90=data["p90_us"] / 1e6,
        p99=data["p99_us"] / 1e6,
        max=data["max_us"] / 1e6,
        failures=int(data["failures"]),
        socket_errors=int(data["socket_errors"]),
        client_cpu=cpu,
    )
