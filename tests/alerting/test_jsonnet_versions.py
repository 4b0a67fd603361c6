"""The mixin renders the same with Debian 12's `jsonnet` binary (0.18) as with the PyPI binding.

Users import the mixin with whatever jsonnet their distribution ships; alerting/README.md states the
minimum version, and this test renders with a binary of exactly that era (bootstrap installs Debian's
`jsonnet`) and with the `_jsonnet` binding, and requires identical output.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import _jsonnet
import pytest

from certloop.alerting.build import ALERTING_DIR

RULES_SNIPPET = (
    "local m = import 'mixin.libsonnet';\n"
    "{ groups: m.prometheusRules.groups + m.prometheusAlerts.groups }\n"
)


def _binary_version() -> tuple[int, ...]:
    out = subprocess.run(["jsonnet", "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    match = re.search(r"v(\d+)\.(\d+)\.(\d+)", out)
    assert match, out
    return tuple(int(part) for part in match.groups())


def _stated_minimum() -> tuple[int, ...]:
    text = (ALERTING_DIR / "README.md").read_text(encoding="utf-8")
    match = re.search(r"jsonnet (\d+)\.(\d+) or newer", text)
    assert match, "alerting/README.md does not state the minimum jsonnet version"
    return tuple(int(part) for part in match.groups())


def render_with_binary(snippet: str, jpath: Path, cwd: Path) -> Any:
    result = subprocess.run(["jsonnet", "-J", str(jpath), "-e", snippet], capture_output=True, text=True,
                            cwd=cwd, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def render_with_binding(snippet: str, jpath: Path) -> Any:
    return json.loads(_jsonnet.evaluate_snippet("snippet", snippet, jpathdir=[str(jpath)]))


def test_the_binary_is_the_stated_minimum() -> None:
    """The binary the test uses is no newer than the minimum the README states (so that minimum is proven)."""
    assert _binary_version()[:2] == _stated_minimum()


def test_rules_render_identically_with_binary_and_binding() -> None:
    """Rules and alerts from the Debian binary equal the binding's, rule for rule."""
    binary = render_with_binary(RULES_SNIPPET, ALERTING_DIR, ALERTING_DIR)
    binding = render_with_binding(RULES_SNIPPET, ALERTING_DIR)
    assert binary == binding
    assert len([r for g in binary["groups"] for r in g["rules"] if "alert" in r]) >= 20


def test_no_std_function_newer_than_the_minimum() -> None:
    """std functions added after 0.18 (std.all, std.any, std.trim, ...) are not used anywhere in the mixin."""
    newer = {"all", "any", "trim", "equalsIgnoreCase", "isEmpty", "contains", "remove", "removeAt",
             "minArray", "maxArray", "avg", "sum", "flattenDeepArray", "objectRemoveKey", "sha1", "sha256",
             "sha512", "sha3", "isEven", "isOdd", "isInteger", "isDecimal", "round", "xor", "xnor"}
    used = set()
    for path in ALERTING_DIR.rglob("*.*sonnet"):
        code = re.sub(r"//.*", "", path.read_text(encoding="utf-8"))  # comments may name them
        used |= {name for name in re.findall(r"\bstd\.(\w+)", code) if name in newer}
    assert not used, f"std functions newer than jsonnet 0.18: {sorted(used)}"


@pytest.mark.parametrize("duration", ["30 d", "3x", "d", "1.5d"])
def test_bad_durations_fail_on_the_binary_too(duration: str) -> None:
    """The duration check (rewritten without std.all) still rejects malformed values on 0.18."""
    snippet = f"(import 'lib/duration.libsonnet').seconds('{duration}')"
    result = subprocess.run(["jsonnet", "-J", str(ALERTING_DIR), "-e", snippet], capture_output=True, text=True,
                            cwd=ALERTING_DIR, timeout=60)
    assert result.returncode != 0
    assert f'expected a duration like "30d", got "{duration}"' in result.stderr
