"""The configuration reference in docs/reference/ is generated from the config schemas and kept fresh."""

from __future__ import annotations

import difflib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from docs import gen_reference

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "docs" / "reference"
COMPONENTS = {c.name: c for c in gen_reference.COMPONENTS}


def test_committed_reference_matches_a_fresh_generation(tmp_path: Path) -> None:
    """`python -m docs.gen_reference --out DIR` reproduces docs/reference/ byte for byte; else 'run make generate'."""
    done = subprocess.run(
        [sys.executable, "-m", "docs.gen_reference", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    fresh = sorted(p.name for p in tmp_path.iterdir())
    assert fresh == ["exporter-config.md", "renewer-config.md"]
    committed = sorted(p.name for p in COMMITTED.glob("*.md"))
    assert committed == fresh, f"docs/reference/ holds {committed}, the generator writes {fresh}: run make generate"
    for name in fresh:
        new = (tmp_path / name).read_text(encoding="utf-8")
        old = (COMMITTED / name).read_text(encoding="utf-8")
        if new != old:
            diff = "".join(list(difflib.unified_diff(
                old.splitlines(keepends=True), new.splitlines(keepends=True),
                f"docs/reference/{name} (committed)", f"{name} (generated)",
            ))[:40])
            pytest.fail(f"docs/reference/{name} is stale: run make generate\n{diff}")


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_every_schema_key_is_documented_with_its_path(component: str) -> None:
    """Each key the JSON Schema defines (nested models and every issuer variant) has a row naming its full path."""
    page = (COMMITTED / f"{component}-config.md").read_text(encoding="utf-8")
    paths = set(gen_reference.iter_paths(COMPONENTS[component].schema()))
    assert len(paths) > 20
    missing = sorted(p for p in paths if f"| `{p}` |" not in page)
    assert not missing, f"keys without a row in docs/reference/{component}-config.md: {missing}"


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_reference_renders_what_certloop_config_schema_prints(component: str) -> None:
    """The generator's input is the schema `certloop config schema <component>` prints, not a private copy."""
    certloop = Path(sys.executable).with_name("certloop")
    done = subprocess.run([str(certloop), "config", "schema", component],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed == json.loads(json.dumps(COMPONENTS[component].schema()))


def test_renewer_issuer_union_has_a_section_per_type() -> None:
    """The discriminated union `certificates[].issuer` gets one section per `type`, each listing that kind's keys."""
    page = (COMMITTED / "renewer-config.md").read_text(encoding="utf-8")
    schema = COMPONENTS["renewer"].schema()
    mapping = schema["$defs"]["CertificateSpec"]["properties"]["issuer"]["discriminator"]["mapping"]
    for kind in mapping:
        assert f"## `certificates[].issuer` with `type: {kind}`" in page
        assert f"| `{kind}` (constant) |" in page
    assert "| `certificates[].issuer.directory` |" in page
    assert "| `certificates[].issuer.server` |" in page  # acme.sh only


def test_defaults_render_in_config_notation() -> None:
    """Durations appear as written in config files (`5m`, not `PT5M`), factory defaults and file modes are shown."""
    exporter = (COMMITTED / "exporter-config.md").read_text(encoding="utf-8")
    renewer = (COMMITTED / "renewer-config.md").read_text(encoding="utf-8")
    assert "| `global.interval` | duration | `5m` |" in exporter
    assert "PT" not in exporter.replace("PTIONS", "") and "`P1D`" not in renewer
    assert "| `certificates[].min_lifetime` | duration | `1d` |" in renewer
    assert "| `certificates[].outputs.key_mode` | integer | `0600` (octal) |" in renewer
    assert "- CertloopCertificateExpiring\n" in renewer  # alerts.renew_on comes from a default_factory
    assert "  limit: 300\n" in renewer  # rate_limits too


def test_supplementary_notes_name_real_keys_without_their_own_description() -> None:
    """Every note in gen_reference.NOTES names an existing key that still lacks a schema description."""
    for component, notes in gen_reference.NOTES.items():
        schema = COMPONENTS[component].schema()
        undescribed = set(gen_reference.undescribed_paths(schema))
        stale = sorted(set(notes) - undescribed)
        assert not stale, (
            f"{component}: notes for keys that do not exist or now carry their own description "
            f"(remove them from docs/gen_reference.py NOTES): {stale}"
        )
