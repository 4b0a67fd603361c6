"""certloop is Apache-2.0: the LICENSE file holds the license's full text and the package metadata says so."""

from __future__ import annotations

import importlib.metadata
import tomllib

from tests.docs.markdown import ROOT


def test_license_file_is_the_apache_2_0_text() -> None:
    """LICENSE is the whole Apache License 2.0 (terms 1-9 and the appendix), not a pointer to it."""
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License\n                           Version 2.0, January 2004" in text
    for term in ("1. Definitions.", "4. Redistribution.", "9. Accepting Warranty or Additional Liability.",
                 "END OF TERMS AND CONDITIONS", "APPENDIX: How to apply the Apache License to your work."):
        assert term in text, term
    assert len(text) > 11_000


def test_pyproject_declares_the_spdx_license_and_ships_the_file() -> None:
    """PEP 639: `license` is the SPDX expression and `license-files` names LICENSE."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "Apache-2.0"
    assert "LICENSE" in project["license-files"]


def test_installed_metadata_carries_the_license() -> None:
    """The metadata setuptools wrote for the installed (editable) package says Apache-2.0 and ships LICENSE."""
    metadata = importlib.metadata.metadata("certloop")
    assert metadata["License-Expression"] == "Apache-2.0"
    assert "LICENSE" in (metadata.get_all("License-File") or [])
