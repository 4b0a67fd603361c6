"""The inventory cache: pre-rendered exposition fragments per target, merged into one text per change.

``/metrics`` never rebuilds objects per scrape: each target's samples are rendered once when its
result changes (:func:`exporter.report.render`), and the merged text is rebuilt only after a change,
so a scrape of 10,000 unchanged files is a dictionary lookup and a bytes copy.

:class:`Inventory` also implements prometheus_client's collector protocol (``collect``/``describe``)
for embedding in a ``CollectorRegistry``; ``describe`` does no I/O, ``collect`` parses the cached text.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from certloop.exporter import metrics as m

__all__ = ["Inventory"]

Key = Hashable


class Inventory:
    """Fragments keyed by (kind, target identity); ``text()`` merges them in catalogue order."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[Key, m.Fragments]] = {}
        self._data: bytes | None = b""

    def put(self, kind: str, key: Key, fragments: m.Fragments) -> None:
        """Set (or replace) one target's fragments."""
        self._entries.setdefault(kind, {})[key] = fragments
        self._data = None

    def retain(self, kind: str, alive: Iterable[Key]) -> int:
        """Drop entries of ``kind`` not in ``alive`` (targets removed from the config or disk); returns how many."""
        entries = self._entries.get(kind)
        if not entries:
            return 0
        keep = alive if isinstance(alive, (set, frozenset)) else set(alive)  # sources return sets: no copy
        gone = [k for k in entries if k not in keep]
        for k in gone:
            del entries[k]
        if gone:
            self._data = None
        return len(gone)

    def keys(self, kind: str) -> set[Key]:
        return set(self._entries.get(kind, {}))

    def __len__(self) -> int:
        return sum(len(e) for e in self._entries.values())

    def data(self) -> bytes:
        """The merged exposition of every cached target (rebuilt only after a change)."""
        if self._data is None:
            self._data = m.merge(f for entries in self._entries.values() for f in entries.values())
        return self._data

    def text(self) -> str:
        return self.data().decode()

    # prometheus_client collector protocol -------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        for spec in m.PER_TARGET:
            yield Metric(spec.name, spec.help, spec.type)

    def collect(self) -> Iterator[Metric]:
        yield from text_string_to_metric_families(self.text())
