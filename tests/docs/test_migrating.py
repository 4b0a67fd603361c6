"""docs/migrating.md names only certloop metrics and labels that exist, and its PromQL and rules are valid.

Every `certloop_*` name in the guide must be in the metric contract (docs/architecture.md's tables) and
in the exporter's and renewer's code catalogues, the way tests/alerting/test_contract.py checks the
rules; every `certloop:*` name must be a recording rule of the mixin; label matchers on certloop series
must use labels those series carry; the rules file it offers passes `promtool check rules`, and each
PromQL block parses (checked by promtool as a recording rule).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.alerting.rules import iter_rules, load_rules, selectors
from tests.alerting.test_contract import POSITION, catalogue, code_catalogue
from tests.docs.markdown import ROOT, fenced_blocks

GUIDE = ROOT / "docs" / "migrating.md"
HISTOGRAM = ("_bucket", "_sum", "_count")
_METRIC = re.compile(r"(?<![\w-])(certloop_[a-z0-9_]+)")
_RECORDED = re.compile(r"(?<![\w-])(certloop:[a-z0-9_:]+)")
_CODE_SPAN = re.compile(r"`([^`]+)`")


def _text() -> str:
    return GUIDE.read_text(encoding="utf-8")


def _base(name: str) -> str:
    for suffix in HISTOGRAM:
        if name.endswith(suffix) and name[: -len(suffix)] in code_catalogue():
            return name[: -len(suffix)]
    return name


def named_metrics(text: str) -> set[str]:
    return {_base(name) for name in _METRIC.findall(text)}


def expressions(text: str) -> list[str]:
    """Every inline code span and every promql/yaml block line set that mentions a certloop series."""
    found = [span for span in _CODE_SPAN.findall(text) if "certloop_" in span]
    for language in ("promql", "yaml"):
        found += [block for _, block in fenced_blocks(GUIDE, language) if "certloop_" in block]
    return found


def bad_labels(expr: str) -> list[str]:
    """Matchers on certloop series naming a label the series does not carry."""
    cat = catalogue()
    problems = []
    for sel in selectors(expr):
        if not sel.metric.startswith("certloop_") or sel.metric not in cat:
            continue
        allowed = dict(cat[sel.metric])
        if "role" in allowed or "position" in allowed:
            allowed.update(dict.fromkeys(POSITION - set(allowed)))
        problems += [f"{sel.metric}{{{label}}}" for label, _, _ in sel.matchers if label not in allowed]
    return problems


def test_the_guide_covers_the_three_exporters() -> None:
    """The guide maps the metrics users come from (a sample of each exporter's names) and finds many of ours."""
    text = _text()
    for theirs in ("probe_ssl_earliest_cert_expiry", "probe_ssl_last_chain_expiry_timestamp_seconds",
                   "probe_tls_version_info", "x509_cert_not_after", "x509_cert_expired", "x509_read_errors",
                   "ssl_cert_not_after", "ssl_probe_success", "ssl_verified_cert_not_after"):
        assert f"`{theirs}" in text, theirs
    assert len(named_metrics(text)) >= 12


def test_every_certloop_metric_named_exists_in_both_catalogues() -> None:
    """Each `certloop_*` name is in the contract tables and in the code catalogues."""
    named = named_metrics(_text())
    contract, code = set(catalogue()), set(code_catalogue())
    assert not named - contract, f"not in docs/architecture.md's catalogue: {sorted(named - contract)}"
    assert not named - code, f"not in exporter/renewer CATALOGUE: {sorted(named - code)}"


def test_every_recording_rule_named_exists() -> None:
    """Each `certloop:*` name is recorded by the mixin's generated rules."""
    recorded = {rule["record"] for rule in iter_rules(load_rules()) if "record" in rule}
    named = set(_RECORDED.findall(_text()))
    assert named, "the guide names the mixin's recording rule for time left"
    assert named <= recorded, sorted(named - recorded)


def test_label_matchers_use_labels_the_series_carry() -> None:
    """`{label=...}` on a certloop series in the guide names a label of that series."""
    problems = [p for expr in expressions(_text()) for p in bad_labels(expr)]
    assert not problems, problems


def test_the_checks_can_fail() -> None:
    """A made-up metric and a label the series lacks are caught."""
    assert "certloop_cert_expired" not in code_catalogue()
    assert named_metrics("`certloop_cert_expired` and `certloop_renewer_renewal_duration_seconds_bucket`") == {
        "certloop_cert_expired", "certloop_renewer_renewal_duration_seconds"}
    assert bad_labels('certloop_probe_success{filepath="/x"}') == ["certloop_probe_success{filepath}"]
    assert bad_labels('certloop_cert_not_after_timestamp_seconds{source="file", position="0"}') == []


def test_the_offered_rules_file_passes_promtool(tmp_path: Path) -> None:
    """The guide's certloop-migration.rules.yml is a valid Prometheus rules file."""
    [rules] = [block for _, block in fenced_blocks(GUIDE, "yaml") if "certloop-migration" in block]
    path = tmp_path / "certloop-migration.rules.yml"
    path.write_text(rules, encoding="utf-8")
    done = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(yaml.safe_load(rules)["groups"][0]["rules"]) >= 4


@pytest.mark.parametrize("index", range(2))
def test_comparison_queries_parse(tmp_path: Path, index: int) -> None:
    """The side-by-side comparison queries are valid PromQL (promtool checks them as recording rules)."""
    blocks = [block for _, block in fenced_blocks(GUIDE, "promql")]
    assert len(blocks) == 2
    path = tmp_path / "q.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": [{"record": "q:x", "expr": blocks[index]}]}]}),
                    encoding="utf-8")
    done = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
