"""Every documented renewer example writes only where the shipped systemd unit lets it write.

The unit runs with `ProtectSystem=strict`: outside `ReadWritePaths=` and its `StateDirectory=` the whole
file system is read-only, so a user who copies an example whose outputs or webroot lie elsewhere gets
EROFS at the first renewal. The examples are the renewer configs in the README, in docs/**/*.md (YAML
fences with a `certificates:` list) and the per-environment templates examples/*/renewer.yml.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.docs.markdown import ROOT, documentation_files, fenced_blocks

UNIT = ROOT / "deploy" / "systemd" / "certloop-renewer.service"
OUTPUT_ROLES = ("cert", "key", "fullchain", "chain")


def unit_writable_paths(text: str) -> list[PurePosixPath]:
    """`ReadWritePaths=` entries plus `/var/lib/<StateDirectory>` of a unit file ('-' prefixes dropped)."""
    paths: list[PurePosixPath] = []
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "ReadWritePaths":
            paths += [PurePosixPath(p.lstrip("-+")) for p in value.split()]
        elif key == "StateDirectory":
            paths += [PurePosixPath("/var/lib") / p for p in value.split()]
    return paths


def written_paths(config: Any) -> Iterator[tuple[str, str]]:
    """(what, path) for every place a renewer config makes the renewer write."""
    if not isinstance(config, dict):
        return
    if config.get("data_dir"):
        yield "data_dir", str(config["data_dir"])
    for cert in config.get("certificates") or []:
        ident = cert.get("id", "?")
        for role in OUTPUT_ROLES:
            if (cert.get("outputs") or {}).get(role):
                yield f"{ident}.outputs.{role}", str(cert["outputs"][role])
        issuer = cert.get("issuer") or {}
        webroot = issuer.get("webroot") or (issuer.get("http01") or {}).get("webroot")
        if webroot:
            yield f"{ident}.issuer webroot", str(webroot)


def documented_configs() -> list[tuple[str, Any]]:
    """(where, parsed config) of every renewer example a user may copy."""
    found: list[tuple[str, Any]] = []
    for path in documentation_files():
        for line, text in fenced_blocks(path, "yaml"):
            if "certificates:" not in text:
                continue
            where = f"{path.relative_to(ROOT)}:{line}"
            found.append((where, yaml.safe_load(text)))
    for path in sorted((ROOT / "examples").glob("*/renewer.yml")):
        found.append((str(path.relative_to(ROOT)), yaml.safe_load(path.read_text(encoding="utf-8"))))
    return found


def _outside(path: str, allowed: list[PurePosixPath]) -> bool:
    candidate = PurePosixPath(path)
    return not any(candidate == root or root in candidate.parents for root in allowed)


def test_the_unit_allows_the_certificate_and_webroot_directories() -> None:
    """The reader finds what the shipped unit allows: the TLS directory, the webroot and the state dir."""
    allowed = unit_writable_paths(UNIT.read_text(encoding="utf-8"))
    assert PurePosixPath("/var/lib/certloop-renewer") in allowed
    assert len(allowed) >= 3


def test_examples_are_found() -> None:
    """The README's and docs/renewer.md's worked examples are among the configs checked."""
    wheres = [where for where, _ in documented_configs()]
    assert any(w.startswith("README.md:") for w in wheres)
    assert any(w.startswith("docs/renewer.md:") for w in wheres)
    assert {f"examples/{env}/renewer.yml" for env in ("dev", "test", "prod")} <= set(wheres)
    assert sum(1 for _, config in documented_configs() for _ in written_paths(config)) >= 6


@pytest.mark.parametrize(("where", "config"), documented_configs(), ids=lambda v: v if isinstance(v, str) else "")
def test_documented_outputs_are_writable_under_the_unit(where: str, config: Any) -> None:
    """Each output file, webroot and data_dir of the example lies under the unit's ReadWritePaths."""
    allowed = unit_writable_paths(UNIT.read_text(encoding="utf-8"))
    outside = [f"{what}: {path}" for what, path in written_paths(config) if _outside(path, allowed)]
    assert not outside, (f"{where} writes where {UNIT.relative_to(ROOT)} forbids it "
                         f"(ReadWritePaths: {' '.join(map(str, allowed))}):\n" + "\n".join(outside))


def test_the_check_flags_a_path_outside(tmp_path: Path) -> None:
    """The check can fail: the README's former /etc/nginx/certs outputs are outside the unit's paths."""
    unit = tmp_path / "u.service"
    unit.write_text("[Service]\nStateDirectory=certloop-renewer\nReadWritePaths=/etc/nginx/tls -/var/www/acme\n",
                    encoding="utf-8")
    allowed = unit_writable_paths(unit.read_text(encoding="utf-8"))
    assert allowed == [PurePosixPath("/var/lib/certloop-renewer"), PurePosixPath("/etc/nginx/tls"),
                       PurePosixPath("/var/www/acme")]
    config = {"certificates": [{"id": "shop", "issuer": {"http01": {"webroot": "/var/www/acme"}},
                                "outputs": {"fullchain": "/etc/nginx/certs/shop.pem",
                                            "key": "/etc/nginx/tls/shop.key"}}]}
    outside = [path for _, path in written_paths(config) if _outside(path, allowed)]
    assert outside == ["/etc/nginx/certs/shop.pem"]
    assert _outside("/etc/nginx/tlsx/a.pem", allowed)
