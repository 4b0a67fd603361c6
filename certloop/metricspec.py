"""One metric's declaration, the type both daemons' catalogues are made of.

``exporter/metrics.py`` and ``renewer/metrics.py`` each hold a ``CATALOGUE`` of :class:`MetricSpec`: the
one place a metric's name, type, help, unit and labels are written. What is served is rendered from it
(the exporter writes ``# HELP``/``# TYPE`` with :meth:`MetricSpec.header`; the renewer builds its
prometheus_client objects from the spec), and ``alerting/``, ``dashboards/`` and docs/architecture.md are
checked against it, so a name cannot be served, alerted on or documented without being declared.

What must stay true, checked when a spec is made (a wrong one fails at import, in every test):

- names and labels are valid Prometheus identifiers; a label is never ``le`` on a histogram nor starts
  with ``__``, and none repeats;
- a counter's name ends in ``_total`` and only a counter's does (prometheus_client and promtool agree);
- ``unit`` is the base unit the name ends with (``seconds``, ``bytes``): a name ending in a unit declares
  it, and a declared unit is the name's suffix (before ``_total``), as OpenMetrics requires.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["UNITS", "MetricSpec", "MetricType"]

MetricType = Literal["gauge", "counter", "histogram"]
UNITS = ("seconds", "bytes", "ratio")
"""Base units a name may end with; a name ending in one of them declares it as ``unit``."""

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric family: its name, type, help text, base unit and labels.

    ``labels`` are the labels the family's series carry beyond what the daemon adds to every series of
    their kind (the exporter's per-target ``source``/``target``/``address`` and static labels, see
    ``exporter.metrics.PER_TARGET``; the renewer adds none).
    """

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()
    unit: str = ""

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"{self.name!r}: not a metric name")
        if (self.type == "counter") != self.name.endswith("_total"):
            raise ValueError(f"{self.name}: a counter's name ends in _total, and only a counter's")
        base = self.name.removesuffix("_total")
        named = next((u for u in UNITS if base.endswith(f"_{u}")), "")
        if self.unit != named:
            raise ValueError(f"{self.name}: unit {self.unit!r}, but the name says {named!r}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"{self.name}: a label repeats in {self.labels}")
        for label in self.labels:
            if not _LABEL.fullmatch(label) or label.startswith("__") or (self.type == "histogram" and label == "le"):
                raise ValueError(f"{self.name}: {label!r} cannot be a label of this family")

    def header(self) -> str:
        """The ``# HELP`` and ``# TYPE`` lines of the text exposition format."""
        return f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.type}\n"
