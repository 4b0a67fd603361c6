"""The metric catalogue is the contract: it matches docs/architecture.md, docs/exporter.md and the code's output."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, generate_latest

from certloop.config import validate_model
from certloop.exporter import metrics as m
from certloop.exporter.collector import Inventory
from certloop.exporter.config import ExporterConfig

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _table_names(text: str) -> list[str]:
    return re.findall(r"^\| `(certloop_[a-z_]+)` \|", text, flags=re.M)


def test_catalogue_matches_the_architecture_contract() -> None:
    """Every exporter metric of docs/architecture.md is in CATALOGUE with the same type, and nothing more."""
    arch = (DOCS / "architecture.md").read_text()
    exporter_part = arch.split("Renewer (`renewer/metrics.py`)")[0]
    rows = {name: line for line in exporter_part.splitlines()
            for name in _table_names(line + "\n")}
    assert set(rows) == {spec.name for spec in m.CATALOGUE}
    for spec in m.CATALOGUE:
        assert f"| {spec.type}" in rows[spec.name], spec.name
        for label in spec.labels:
            if spec in m.PER_TARGET:
                assert label in rows[spec.name], (spec.name, label)


def test_exporter_docs_list_the_catalogue_and_a_valid_config() -> None:
    """docs/exporter.md lists exactly the catalogue, and its worked config validates against the schema."""
    doc = (DOCS / "exporter.md").read_text()
    assert _table_names(doc) == [spec.name for spec in m.CATALOGUE]
    worked = re.search(r"```yaml\n(global:.*?)```", doc, flags=re.S)
    assert worked is not None
    config = validate_model(ExporterConfig, yaml.safe_load(worked.group(1)))
    assert config.endpoints[0].labels["certificate"] == "shop-prod"


def test_names_follow_the_house_rules() -> None:
    """Prefix certloop_, counters end in _total, timestamps in _timestamp_seconds, no duplicate names."""
    names = [spec.name for spec in m.CATALOGUE]
    assert len(names) == len(set(names))
    for spec in m.CATALOGUE:
        assert spec.name.startswith("certloop_")
        assert (spec.type == "counter") == spec.name.endswith("_total")
        if "timestamp" in spec.name:
            assert spec.name.endswith("_timestamp_seconds")


def test_inventory_is_a_prometheus_client_collector() -> None:
    """Registered in a prometheus_client registry, the cache round-trips its samples; retain drops stale keys."""
    inv = Inventory()
    inv.put("files", "/a.pem", {m.PROBE_SUCCESS.name: m.sample(m.PROBE_SUCCESS.name, 'source="file"', (), 1).encode()})
    inv.put("files", "/b.pem", {m.PROBE_SUCCESS.name: m.sample(m.PROBE_SUCCESS.name, 'source="x\\"y"', (), 0).encode()})
    registry = CollectorRegistry()
    registry.register(inv)
    text = generate_latest(registry).decode()
    assert 'certloop_probe_success{source="file"} 1.0' in text
    assert 'certloop_probe_success{source="x\\"y"} 0.0' in text
    assert inv.retain("files", ["/a.pem"]) == 1
    assert b"x\\\"y" not in inv.data() and len(inv) == 1
