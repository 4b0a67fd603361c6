"""Dashboards know the code only by metric names: every name and label they use must exist in a catalogue."""

from __future__ import annotations

import re

from tests.dashboards import model
from tests.dashboards.catalogue import TARGET_LABELS, Metric, doc_catalogue, histograms, python_catalogue

_SELECTOR = re.compile(r"\b(certloop_[a-z0-9_]+)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")

Exprs = list[tuple[str, str]]


def _expressions() -> Exprs:
    """(where, expression) for every panel query and every variable query of every dashboard."""
    # The Host dashboard reads node_exporter, not a certloop catalogue: tests/deploy/test_host_alerts.py
    # runs its queries against a real node_exporter instead.
    certloop = {name: dash for name, dash in model.load().items() if name != "host"}
    out = [(q.id, q.expr) for name, dash in certloop.items() for q in model.queries(name, dash)]
    for name, dash in certloop.items():
        out += [(f"{name}/${v.name}", v.query) for v in model.variables(dash) if v.type == "query"]
    assert len(out) > 40, "expected the generated dashboards to hold dozens of queries"
    return out


def _unknown_metrics(exprs: Exprs, known: set[str], hist: set[str]) -> list[tuple[str, str]]:
    return sorted({(where, name) for where, expr in exprs for name in model.metric_names(expr)
                   if model.base_name(name, hist) not in known})


def _wrong_matchers(exprs: Exprs, catalogue: dict[str, Metric]) -> list[tuple[str, str, str]]:
    hist = histograms(catalogue)
    wrong = []
    for where, expr in exprs:
        for metric, matchers in _SELECTOR.findall(expr):
            spec = catalogue[model.base_name(metric, hist)]
            allowed = spec.labels | ({"le"} if metric.endswith("_bucket") else set())
            wrong += [(where, metric, label) for label in _MATCHER.findall(matchers) if label not in allowed]
    return wrong


def _wrong_grouping(exprs: Exprs, catalogue: dict[str, Metric]) -> list[tuple[str, str]]:
    hist = histograms(catalogue)
    wrong = []
    for where, expr in exprs:
        names = {model.base_name(n, hist) for n in model.metric_names(expr)}
        available = set().union(*(catalogue[n].labels for n in names)) | TARGET_LABELS | {"le"}
        for group in _GROUPING.findall(expr):
            labels = [x.strip() for x in group.split(",") if x.strip()]
            wrong += [(where, label) for label in labels if label not in available]
    return wrong


def test_every_metric_in_a_panel_exists_in_the_python_catalogues() -> None:
    """Each certloop_* name in a panel or variable query is declared in exporter/ or renewer/metrics.py."""
    catalogue = python_catalogue()
    unknown = _unknown_metrics(_expressions(), set(catalogue), histograms(catalogue))
    assert not unknown, f"metrics not in the exporter/renewer catalogues: {unknown}"


def test_every_metric_in_a_panel_is_in_the_documented_catalogue() -> None:
    """The same names also appear in the catalogue tables of docs/architecture.md (the written contract)."""
    documented = doc_catalogue()
    assert len(documented) >= 30
    assert _unknown_metrics(_expressions(), documented, documented) == []


def test_label_matchers_name_labels_their_metric_carries() -> None:
    """`metric{label=...}` only filters on labels that metric has (own, common, static or target labels)."""
    wrong = _wrong_matchers(_expressions(), python_catalogue())
    assert not wrong, f"label matchers on labels the metric does not have: {wrong}"


def test_grouping_labels_exist_on_a_metric_of_the_expression() -> None:
    """Labels in by/on/group_left(...) belong to at least one metric the expression reads."""
    wrong = _wrong_grouping(_expressions(), python_catalogue())
    assert not wrong, f"grouping labels no metric of the expression carries: {wrong}"


def test_every_catalogue_metric_is_shown_somewhere() -> None:
    """Each metric the exporter and renewer expose appears on at least one dashboard."""
    catalogue = python_catalogue()
    hist = histograms(catalogue)
    shown = {model.base_name(n, hist) for _, expr in _expressions() for n in model.metric_names(expr)}
    assert set(catalogue) - shown == set()


def test_the_checks_catch_a_wrong_name_matcher_and_grouping() -> None:
    """The checks are not vacuous: a misspelt metric, a label the metric lacks and a bad `by` are reported."""
    catalogue = python_catalogue()
    bad: Exprs = [
        ("name", 'sum(rate(certloop_probe_total{source="endpoint"}[5m]))'),
        ("matcher", 'certloop_renewer_queue_depth{certificate="x"}'),
        ("grouping", "count by (verdict) (certloop_probe_success)"),
    ]
    assert _unknown_metrics(bad, set(catalogue), histograms(catalogue)) == [("name", "certloop_probe_total")]
    assert _wrong_matchers(bad[1:], catalogue) == [("matcher", "certloop_renewer_queue_depth", "certificate")]
    assert _wrong_grouping(bad[2:], catalogue) == [("grouping", "verdict")]
