"""Inventory sources, one module each behind one table: ``SOURCES[kind](ctx) -> Source``.

Adding a source is one module implementing :class:`~exporter.sources.base.Source` plus one entry here.
"""

from __future__ import annotations

from collections.abc import Callable

from certloop.exporter.sources.base import Context, ProbeCounter, Put, Source
from certloop.exporter.sources.endpoints import EndpointSource
from certloop.exporter.sources.files import FileSource

__all__ = ["SOURCES", "Context", "ProbeCounter", "Put", "Source"]

SOURCES: dict[str, Callable[[Context], Source]] = {
    "endpoints": EndpointSource,
    "files": FileSource,
}
