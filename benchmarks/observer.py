"""What the HTTP server's request observer costs per request: ``python -m benchmarks.observer``.

Times :class:`certloop.httpmetrics.RequestObserver` as the exporter wires it (a counter per route and
status, a histogram per route) for a label pair already seen, i.e. every request after the first, and the
``perf_counter`` pair the server adds around each request. ``/probe``'s guard budget is 0.5 ms of CPU per
probe; this is what the metrics take of it.
"""

from __future__ import annotations

import sys
import time
import timeit

from prometheus_client import CollectorRegistry

from certloop.exporter.metrics import http_observer

CALLS = 200_000


def main() -> None:
    observer = http_observer(CollectorRegistry(), ("/probe", "/metrics"))
    observer("/probe", "GET", 200, 0.003)  # the first request of a pair creates its children
    per_call = min(timeit.repeat(lambda: observer("/probe", "GET", 200, 0.003), number=CALLS, repeat=5)) / CALLS
    empty = min(timeit.repeat(lambda: None, number=CALLS, repeat=5)) / CALLS
    clock = min(timeit.repeat(time.perf_counter, number=CALLS, repeat=5)) / CALLS
    print(f"observer: {(per_call - empty) * 1e6:.2f} us per request; "
          f"timing: {2 * clock * 1e6:.2f} us (two perf_counter calls); Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
