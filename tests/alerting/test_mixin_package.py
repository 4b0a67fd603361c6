"""The mixin as jsonnet-bundler users consume it: vendored `alerting/`, imported from an outside file.

jb copies the dependency's subdirectory to `vendor/<remote host/path>/alerting` (and, with legacyImports, a
`vendor/alerting` link); the user's jsonnet imports `mixin.libsonnet` from there. The test does what jb
does (copies the directory, nothing else of the repository) and renders a user file with Debian's jsonnet
binary and with the PyPI binding: rules, alerts and dashboards come out, a `_config` override reaches the
alerts and the dashboards alike, and the default dashboards equal dashboards/generated.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from certloop.alerting.build import ALERTING_DIR, evaluate
from certloop.dashboards.build import DASHBOARDS, render_all
from tests.alerting.test_jsonnet_versions import render_with_binary, render_with_binding
from tests.dashboards.model import GENERATED
from tests.docs.markdown import fenced_blocks

VENDORED = "github.com/certloop/certloop/alerting"

# What alerting/README.md tells a user to write (the override is the point of the exercise).
USER_FILE = """
local certloop = (import 'VENDORED/mixin.libsonnet') + {
  _config+:: {
    exporterSelector: 'job="tls-exporter"',
    expiry+: { warningCeiling: '45d', criticalCeiling: '20d' },
    renewerQueueStuckAfter: '2h',
  },
};
{
  rules: { groups: certloop.prometheusRules.groups + certloop.prometheusAlerts.groups },
  dashboards: certloop.grafanaDashboards,
}
""".replace("VENDORED", VENDORED)
PATCH = {"exporterSelector": 'job="tls-exporter"', "expiry": {"warningCeiling": "45d", "criticalCeiling": "20d"},
         "renewerQueueStuckAfter": "2h"}
DEFAULTS = """
local certloop = import 'VENDORED/mixin.libsonnet';
certloop.grafanaDashboards
""".replace("VENDORED", VENDORED)
RENDERERS = {"jsonnet 0.18 binary": "binary", "PyPI binding": "binding"}


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A jb-style vendor tree holding a copy of alerting/ only (no Python caches)."""
    root = tmp_path_factory.mktemp("user")
    shutil.copytree(ALERTING_DIR, root / "vendor" / VENDORED, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return root


def _render(kind: str, snippet: str, root: Path) -> Any:
    if kind == "binary":
        return render_with_binary(snippet, root / "vendor", root)
    return render_with_binding(snippet, root / "vendor")


@pytest.mark.parametrize("where", ["alerting", "."])
def test_jsonnetfile_is_a_jb_manifest(where: str) -> None:
    """jb v1 manifests without dependencies: alerting/ (vendored with subdir alerting, the documented way)
    and the repository root (vendoring the whole repository also works: same import path)."""
    manifest = json.loads((ALERTING_DIR.parent / where / "jsonnetfile.json").read_text(encoding="utf-8"))
    assert manifest["version"] == 1
    assert manifest["dependencies"] == []


@pytest.mark.parametrize("kind", RENDERERS.values(), ids=RENDERERS.keys())
def test_default_grafana_dashboards_are_the_generated_ones(vendor: Path, kind: str) -> None:
    """grafanaDashboards from the vendored mixin equals dashboards/generated/*.json, file for file."""
    dashboards = _render(kind, DEFAULTS, vendor)
    assert sorted(dashboards) == sorted(f"{name}.json" for name in DASHBOARDS)
    for name, dashboard in dashboards.items():
        assert dashboard == json.loads((GENERATED / name).read_text(encoding="utf-8")), name


@pytest.mark.parametrize("kind", RENDERERS.values(), ids=RENDERERS.keys())
def test_an_override_changes_rules_and_dashboards_alike(vendor: Path, kind: str) -> None:
    """The user's _config override gives the rules alerting.build renders with that patch and the
    dashboards dashboards.build renders with it: one set of thresholds for both."""
    out = _render(kind, USER_FILE, vendor)
    assert out["rules"] == json.loads(json.dumps(evaluate(PATCH)))
    expected = {name: json.loads(text) for name, text in render_all(PATCH).items() if name.endswith(".json")}
    assert out["dashboards"] == expected
    # and the override is visible where a user looks: the days-left colours and the queue age
    overview = json.dumps(out["dashboards"]["overview.json"])
    assert '"value": 20' in overview and '"value": 45' in overview
    assert "3888000" in overview  # the 45d warning ceiling in the "Expiring" query
    assert '"value": 7200' in json.dumps(out["dashboards"]["renewals.json"])
    assert any('job="tls-exporter"' in rule["expr"] for group in out["rules"]["groups"] for rule in group["rules"])


def _readme_block(marker: str) -> str:
    [block] = [text for _, text in fenced_blocks(ALERTING_DIR / "README.md", "jsonnet") if marker in text]
    return block


def test_readme_vendored_example_writes_rules_and_dashboards(vendor: Path) -> None:
    """The README's monitoring.jsonnet, run as it says (`jsonnet -J vendor -m out`), writes a rules file
    promtool accepts and the four dashboards."""
    (vendor / "monitoring.jsonnet").write_text(_readme_block("monitoring.jsonnet"), encoding="utf-8")
    (vendor / "out").mkdir()
    done = subprocess.run(["jsonnet", "-J", "vendor", "-m", "out", "monitoring.jsonnet"], cwd=vendor,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in (vendor / "out").iterdir())
    assert written == sorted(["certloop.rules.yml", *(f"certloop-{name}.json" for name in DASHBOARDS)])
    overview = json.loads((vendor / "out" / "certloop-overview.json").read_text(encoding="utf-8"))
    assert overview == json.loads((GENERATED / "overview.json").read_text(encoding="utf-8"))
    checked = subprocess.run(["promtool", "check", "rules", str(vendor / "out" / "certloop.rules.yml")],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert 'job=\\"tls-exporter\\"' in (vendor / "out" / "certloop.rules.yml").read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", RENDERERS.values(), ids=RENDERERS.keys())
def test_readme_severity_example_gives_three_levels(vendor: Path, kind: str) -> None:
    """The README's severityLevels snippet yields only critical/warning/info, keeping certloop_severity."""
    snippet = "(" + _readme_block("severityLevels") + ").prometheusAlerts"
    out = _render(kind, snippet, vendor)
    labels = [rule["labels"] for group in out["groups"] for rule in group["rules"]]
    assert {label["severity"] for label in labels} == {"critical", "warning", "info"}
    assert {label["certloop_severity"] for label in labels} == {"critical", "major", "warning", "info"}


@pytest.mark.parametrize("kind", RENDERERS.values(), ids=RENDERERS.keys())
def test_readme_customise_example_renders_from_the_repository(kind: str) -> None:
    """The README's my-certloop.jsonnet (imported as alerting/mixin.libsonnet from the repository root)."""
    snippet = _readme_block("my-certloop.jsonnet")
    out = _render_at_root(kind, snippet)
    assert any('team="payments"' in rule["expr"] for group in out["groups"] for rule in group["rules"])


def _render_at_root(kind: str, snippet: str) -> Any:
    root = ALERTING_DIR.parent
    if kind == "binary":
        return render_with_binary(snippet, root, root)
    return render_with_binding(snippet, root)
