"""Every metric and label the alerting rules use exists in the metric catalogues.

Checked against both the contract (the tables in docs/architecture.md, with their fixed label values)
and the code (`exporter.metrics.CATALOGUE`, `renewer.metrics.CATALOGUE`), so a rename on either side fails.
"""

from __future__ import annotations

import re

import pytest

from certloop.exporter import metrics as exporter_metrics
from certloop.renewer import metrics as renewer_metrics
from tests.alerting.node_exporter import NODE_EXPORTER
from tests.alerting.rules import ROOT, Selector, annotation_queries, iter_rules, load_rules, selectors

# Labels every exporter series may carry beyond its own: the common ones, the scrape's, and the static
# labels the mixin relies on (config.libsonnet: certificateLabel, teamLabel).
EXPORTER_COMMON = {"source", "target", "address", "job", "instance", "certificate", "team"}
RENEWER_COMMON = {"job", "instance"}
# Series Prometheus itself makes, and node_exporter's that the host group uses.
BUILTIN = {"up": {"job", "instance"}, **NODE_EXPORTER}
# A chain-position pair the per-position metrics carry.
POSITION = {"position", "role"}


def _cells(line: str) -> list[str]:
    """Cells of a markdown table row; `|` inside backticks (value sets like `a|b`) does not split."""
    if not line.startswith("|"):
        return []
    cells, current, in_code = [], "", False
    for char in line.strip()[1:]:
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append(current.strip())
            current = ""
        else:
            current += char
    return cells


def catalogue() -> dict[str, dict[str, set[str] | None]]:
    """metric -> label -> allowed values (None: any value), from docs/architecture.md's tables."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    metrics: dict[str, dict[str, set[str] | None]] = {}
    for line in text.splitlines():
        cells = _cells(line)
        if len(cells) < 3 or not re.fullmatch(r"`(certloop_[a-z0-9_]+)`", cells[0]):
            continue
        name, label_text = cells[0].strip("`"), cells[2]
        labels: dict[str, set[str] | None] = {}
        for label, values in re.findall(r"\b([a-z_]+)(?:=`([^`]*)`)?", label_text.replace("(no address)", "")):
            labels[label] = set(values.split("|")) if values else None
        common = RENEWER_COMMON if name.startswith("certloop_renewer_") else EXPORTER_COMMON
        for label in common:
            labels.setdefault(label, None)
        if "position" in labels:
            labels["role"] = {"leaf", "intermediate", "root"}
        metrics[name] = labels
        if cells[1].startswith("histogram"):
            metrics.update(_histogram_series(name, labels))
    for name, builtin_labels in BUILTIN.items():
        metrics[name] = dict.fromkeys(builtin_labels)
    return metrics


def _histogram_series(name: str, labels: dict[str, set[str] | None]) -> dict[str, dict[str, set[str] | None]]:
    """The series a histogram family exposes: `_bucket` (with `le`), `_sum`, `_count`."""
    return {f"{name}_bucket": {**labels, "le": None}, f"{name}_sum": dict(labels), f"{name}_count": dict(labels)}


def code_catalogue() -> dict[str, dict[str, set[str] | None]]:
    """metric -> label -> None, from the exporter's and the renewer's catalogue modules."""
    metrics: dict[str, dict[str, set[str] | None]] = {}
    for spec in exporter_metrics.CATALOGUE:
        labels = set(spec.labels) | {"job", "instance"}
        if spec in exporter_metrics.PER_TARGET:
            labels |= EXPORTER_COMMON
        metrics[spec.name] = dict.fromkeys(labels)
        if spec.type == "histogram":
            metrics.update(_histogram_series(spec.name, metrics[spec.name]))
    for definition in renewer_metrics.CATALOGUE:
        metrics[definition.name] = dict.fromkeys(set(definition.labels) | RENEWER_COMMON)
        if definition.type == "histogram":
            metrics.update(_histogram_series(definition.name, metrics[definition.name]))
    for name, builtin_labels in BUILTIN.items():
        metrics[name] = dict.fromkeys(builtin_labels)
    return metrics


CATALOGUES = {"architecture.md": catalogue, "code": code_catalogue}


def _recorded_names() -> set[str]:
    return {r["record"] for r in iter_rules(load_rules()) if "record" in r}


def _all_selectors() -> list[tuple[str, str, list[Selector]]]:
    out: list[tuple[str, str, list[Selector]]] = []
    for rule in iter_rules(load_rules()):
        name = str(rule.get("alert") or rule.get("record"))
        out.append((name, rule["expr"], selectors(rule["expr"])))
        for query in annotation_queries(rule):
            out.append((f"{name} (annotation query)", query, selectors(query)))
    return out


def test_catalogue_is_read_from_the_contract() -> None:
    """The catalogue parser finds both tables, with label value sets where the contract fixes them."""
    cat = catalogue()
    assert "certloop_cert_not_after_timestamp_seconds" in cat
    assert "certloop_renewer_next_due_timestamp_seconds" in cat
    assert cat["certloop_renewer_last_result"]["result"] is None
    assert cat["certloop_renewer_renewals_total"]["result"] == {"succeeded", "failed", "rolled_back"}
    assert cat["certloop_cert_not_after_timestamp_seconds"]["role"] == {"leaf", "intermediate", "root"}
    assert "address" in cat["certloop_endpoint_addresses_consistent"]  # common labels are always allowed


def test_code_catalogue_matches_the_contract_for_every_metric_the_rules_use() -> None:
    """The names the rules use are declared in both the contract and the code."""
    used = {sel.metric for _, _, found in _all_selectors() for sel in found} - _recorded_names()
    assert used <= set(catalogue()) & set(code_catalogue())


def test_selector_extraction_reads_names_and_matchers() -> None:
    """The PromQL reader finds selectors and skips functions, keywords, grouping lists and strings."""
    expr = ('label_replace(count by (source) (max_over_time(foo_x{a="1",b=~"x|y"}[1d]) '
            '< ignoring(position) group_left() bar:rec), "status", "ok", "", "") unless on (job) up == 0')
    found = {(s.metric, s.matchers) for s in selectors(expr)}
    assert found == {("foo_x", (("a", "=", "1"), ("b", "=~", "x|y"))), ("bar:rec", ()), ("up", ())}


@pytest.mark.parametrize("source", sorted(CATALOGUES))
@pytest.mark.parametrize(("rule", "expr", "found"), _all_selectors(), ids=lambda v: v if isinstance(v, str) else "")
def test_rule_uses_only_catalogued_metrics_and_labels(
    rule: str, expr: str, found: list[Selector], source: str
) -> None:
    """Each selector names a catalogued metric (or a recording rule of ours) with catalogued labels and values."""
    cat = CATALOGUES[source]()
    recorded = _recorded_names()
    assert found, f"{rule}: no selector found in {expr!r}"
    for sel in found:
        if sel.metric in recorded:
            # Recording rules keep the labels of the series they are computed from.
            continue
        assert sel.metric in cat, f"{rule}: {sel.metric} is not in the metric catalogue"
        allowed = dict(cat[sel.metric])
        if "role" in allowed or "position" in allowed:
            allowed.update(dict.fromkeys(POSITION - set(allowed)))
        for label, op, value in sel.matchers:
            assert label in allowed, f"{rule}: {sel.metric} has no label {label!r}"
            values = allowed[label]
            if values is not None and op == "=" and "%s" not in value:
                assert value in values, f"{rule}: {sel.metric}{{{label}={value!r}}} not in {sorted(values)}"
