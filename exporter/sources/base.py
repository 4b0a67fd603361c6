"""The one signature every inventory source implements, and what a source is given to work with.

A source is built from a :class:`Context` (the validated config plus shared runtime objects) and
offers ``sweep(put)``: observe everything it is configured for, call ``put(key, fragments)`` for
each target whose exposition changed, and return the keys of every target still alive (the engine
drops the rest). ``interval`` is the pause between sweeps in seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from certloop.exporter.config import ExporterConfig
from certloop.exporter.report import ExporterCaches
from certloop.truststore import TrustStore

__all__ = ["Context", "ProbeCounter", "Put", "Resolver", "Source", "utcnow"]

Put = Callable[[Hashable, Mapping[str, bytes]], None]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class ProbeCounter:
    """``certloop_probes_total`` by (source, result); survives reloads (counters never go back)."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, source: str, success: bool, n: int = 1) -> None:
        key = (source, "success" if success else "failure")
        self.counts[key] = self.counts.get(key, 0) + n


class Resolver(Protocol):
    """`certloop.resolve.Resolver`: every A/AAAA address of a name, or ``ProbeError(dns)``."""

    async def resolve(self, host: str) -> Sequence[str]: ...


@dataclass(frozen=True)
class Context:
    """What sources and /probe share: config, trust stores by ``ca_file`` (None: the default), resolver,
    and what the process remembers (``caches``: the engine's, kept across reloads like ``counter``)."""

    config: ExporterConfig
    trust_stores: Mapping[str | None, TrustStore]
    resolver: Resolver
    counter: ProbeCounter
    caches: ExporterCaches
    clock: Callable[[], datetime] = utcnow
    state_dir: str | None = None  # --storage.path: where sources keep what survives a restart

    @property
    def trust(self) -> TrustStore:
        return self.trust_stores[None]

    def trust_for(self, ca_file: str | None) -> TrustStore:
        return self.trust_stores.get(ca_file) or self.trust_stores[None]


class Source(Protocol):
    kind: str
    interval: float

    async def sweep(self, put: Put) -> set[Hashable]: ...

    async def close(self) -> None:
        """Called once when the source is replaced (reload) or the exporter stops."""
