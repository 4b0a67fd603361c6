"""Request metrics for the HTTP server's observer hook: a counter per (route, status) and a latency
histogram per route, with their prometheus_client children cached.

Each daemon names the two families in its own catalogue (``exporter/metrics.py``, ``renewer/metrics.py``)
and hands them to :class:`RequestObserver`; :class:`certloop.httpserver.HttpServer` calls it once per
answered request. What must stay true:

- labels are low cardinality by construction: ``handler`` is a route pattern of the daemon's router or
  :data:`certloop.httpserver.UNMATCHED` (never a client's path), ``code`` one of the few statuses the
  daemons answer;
- the observer sits on ``/probe``'s hot path: after a label pair's first request, recording is two dict
  look-ups and two prometheus_client child updates (``labels()`` validates and locks: it runs once per pair).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Histogram

from certloop.httpserver import UNMATCHED

__all__ = ["DURATION_BUCKETS", "RequestObserver"]

# seconds: a /metrics or webhook answer in ms, a /probe handshake up to its timeout (tens of seconds)
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RequestObserver:
    """``observer(route, method, status, seconds)`` for :class:`certloop.httpserver.HttpServer`.

    ``requests`` must have the labels (handler, code), ``duration`` (handler). Every route in ``routes``
    (and the unmatched one) gets its histogram at once, so rates and quantiles exist from the first scrape.
    """

    __slots__ = ("_counts", "_duration", "_requests", "_timings")

    def __init__(self, requests: Counter, duration: Histogram, routes: Iterable[str]) -> None:
        self._requests = requests
        self._duration = duration
        self._counts: dict[tuple[str, int], Counter] = {}
        self._timings: dict[str, Histogram] = {}
        self.expect((*routes, UNMATCHED))

    def expect(self, routes: Iterable[str]) -> None:
        """Create the histograms of ``routes`` now (a router built after this observer)."""
        for route in routes:
            if route not in self._timings:
                self._timings[route] = self._duration.labels(route)

    def __call__(self, route: str, method: str, status: int, seconds: float) -> None:
        counter = self._counts.get((route, status))
        if counter is None:
            counter = self._counts[(route, status)] = self._requests.labels(route, str(status))
        counter.inc()
        timing = self._timings.get(route)
        if timing is None:  # a route added to a router after start: still one series per pattern
            timing = self._timings[route] = self._duration.labels(route)
        timing.observe(seconds)
