"""The metric catalogues dashboards are checked against: the Python ones (the contract) and the doc table."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass

from tests.dashboards.model import ROOT

# Labels the exporter adds to per-certificate series from its configuration (docs/architecture.md names
# `certificate` and `team` as the static labels alerting and dashboards rely on).
STATIC_LABELS = frozenset({"certificate", "team"})
# Labels Prometheus adds at scrape time.
TARGET_LABELS = frozenset({"job", "instance"})
COMMON_LABELS = ("source", "target", "address")
CATALOGUE_MODULES = ("certloop.exporter.metrics", "certloop.renewer.metrics")


class CatalogueMissing(AssertionError):
    """A Python catalogue module cannot be imported (the test fails: it is the contract)."""


@dataclass(frozen=True)
class Metric:
    name: str
    type: str
    labels: frozenset[str]  # every label a series of this metric may carry (incl. common/static/target)


def python_catalogue() -> dict[str, Metric]:
    """Every metric of `exporter.metrics.CATALOGUE` and `renewer.metrics.CATALOGUE` with its full label set."""
    out: dict[str, Metric] = {}
    for module_name in CATALOGUE_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise CatalogueMissing(
                f"{module_name} is not importable ({exc}); dashboards are checked against the metric "
                f"catalogues exporter/metrics.py and renewer/metrics.py (CATALOGUE)") from exc
        catalogue = getattr(module, "CATALOGUE", None)
        if not catalogue:
            raise CatalogueMissing(f"{module_name} has no CATALOGUE")
        per_target = set(getattr(module, "PER_TARGET", ()))  # the exporter's per-certificate families
        for spec in catalogue:
            labels = set(spec.labels) | TARGET_LABELS
            if spec in per_target:
                labels |= set(COMMON_LABELS) | STATIC_LABELS
            out[spec.name] = Metric(spec.name, spec.type, frozenset(labels))
    return out


def doc_catalogue() -> set[str]:
    """Metric names in the catalogue tables of docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `(certloop_[a-z0-9_]+)` \|", text, flags=re.MULTILINE))


def histograms(catalogue: dict[str, Metric]) -> set[str]:
    return {m.name for m in catalogue.values() if m.type == "histogram"}
