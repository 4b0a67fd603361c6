"""Measured figures live in benchmarks/RESULTS.md, not in docstrings and comments.

A docstring says why and what must stay true; a figure ("~4x less CPU", "35-45 us", "26 MB") rots as the
code and the machines change, and correcting it costs a commit each time. This scans every docstring and
comment of the installed packages (Python, and the mixin's jsonnet comments) with a conservative pattern for
measurements: an approximate number (``~3``), a number with a time or size unit, a ratio (``4x``, ``30 %``,
"ten times rarer"), instructions, requests per second. Inline code (``...``) is left out: durations in
examples are configuration, not measurements. What matches and is not a measurement (a protocol's limit, a
library's constant, a value certloop sets) is listed below with the reason. A docstring that points to a
figure names a heading of benchmarks/RESULTS.md, and that heading must exist.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("certloop", "exporter", "renewer", "alerting", "dashboards")
RESULTS = REPO / "benchmarks" / "RESULTS.md"

_UNIT = r"(?:ns|us|µs|μs|ms|kB|KB|MB|GB|KiB|MiB|GiB)"
MEASUREMENT = re.compile(
    rf"~\s?\d[\d,.-]*(?:\s?(?:{_UNIT}\b|x\b|%))?"  # an approximate number, with its unit if any
    rf"|\b\d[\d,.]*\s?{_UNIT}\b"  # a duration or a size
    r"|\b\d+(?:\.\d+)?\s?x\b(?!\d)"  # a ratio, 4x
    r"|\b\d+(?:\.\d+)?\s?%(?!\w)"  # a percentage (not an IPv6 zone such as fe80::1%eth0)
    r"|\b(?:\d+|two|three|four|five|ten|hundred)\s+times\s+(?:faster|slower|rarer|cheaper|fewer|less|more|smaller|larger)\b"
    r"|\binstructions\b|\breq(?:uests)?/s\b|\bper second\b",
    re.IGNORECASE,
)
_INLINE_CODE = re.compile(r"``[^`]*``|`[^`]*`")
_POINTER = re.compile(r'benchmarks/RESULTS\.md, "([^"]+)"')

# (file, what matched) -> why it is not a measured figure
NOT_MEASUREMENTS = {
    ("certloop/tls.py", "256 KiB"): "asyncio's SSL transport buffer size, a constant of the library",
    ("certloop/tls.py", "100 KiB"): "OpenSSL's max_cert_list default, a limit",
    ("certloop/tlsobserve.py", "~18 KiB"): "the largest TLS record (RFC 8446, 5.2), a protocol limit",
    ("renewer/daemon.py", "5 ms"): "Python's default switch interval (sys.getswitchinterval), documented",
    ("renewer/daemon.py", "1 ms"): "the switch interval the renewer sets (SWITCH_INTERVAL)",
    ("renewer/timeline.py", "~10"): "at most ten ticks on the axis, a layout rule",
    ("alerting/config.libsonnet", "3 x"): "three times warningFloor, a formula",
    ("alerting/alerts/host.libsonnet", "50ms"): "the clock-skew threshold the alert uses, a setting",
}


def _python_texts(path: Path) -> Iterator[tuple[int, str]]:
    """(first line, text) of every docstring and of every block of consecutive comment lines."""
    source = path.read_text(encoding="utf-8")
    block: list[str] = []
    start = last = 0
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.COMMENT:
            continue
        if block and token.start[0] != last + 1:
            yield start, " ".join(block)
            block = []
        if not block:
            start = token.start[0]
        block.append(token.string.lstrip("#"))
        last = token.start[0]
    if block:
        yield start, " ".join(block)
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        for statement in body if isinstance(body, list) else ():
            if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant) \
                    and isinstance(statement.value.value, str):
                yield statement.lineno, statement.value.value


def _jsonnet_texts(path: Path) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        code, sep, comment = line.partition("//")
        if sep and "'" not in code and '"' not in code:  # a comment, not a // inside a string
            yield number, comment


def _texts() -> Iterator[tuple[str, int, str]]:
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*")):
            parts = set(path.relative_to(REPO).parts)
            if parts & {"generated", "vendor", "migrations", "__pycache__"}:
                continue
            read = {".py": _python_texts, ".libsonnet": _jsonnet_texts, ".jsonnet": _jsonnet_texts}.get(path.suffix)
            if read is not None:
                for line, text in read(path):
                    yield str(path.relative_to(REPO)), line, " ".join(_INLINE_CODE.sub("", text).split())


def figures_in(text: str) -> list[str]:
    return [m.group(0) for m in MEASUREMENT.finditer(_INLINE_CODE.sub("", text))]


def test_no_measured_figure_in_a_docstring_or_comment() -> None:
    found = [(name, line, figure, text) for name, line, text in _texts() for figure in figures_in(text)]
    new = [f"{name}:{line}: {figure!r} in: {text[:160]}" for name, line, figure, text in found
           if (name, figure) not in NOT_MEASUREMENTS]
    assert not new, ("measured figures belong in benchmarks/RESULTS.md under a heading the docstring names:\n"
                     + "\n".join(new))
    stale = set(NOT_MEASUREMENTS) - {(name, figure) for name, _, figure, _ in found}
    assert not stale, f"allowed figures no longer in the code (drop them from the list): {sorted(stale)}"


def test_pointers_name_a_heading_of_results() -> None:
    headings = [line.lstrip("#").strip() for line in RESULTS.read_text(encoding="utf-8").splitlines()
                if line.startswith("#")]
    pointers = {(name, title) for name, _, text in _texts() for title in _POINTER.findall(text)}
    assert pointers, "no docstring points to benchmarks/RESULTS.md: the scan finds nothing"
    missing = sorted((name, title) for name, title in pointers
                     if not any(title.lower() in heading.lower() for heading in headings))
    assert not missing, f"no heading of benchmarks/RESULTS.md contains these names: {missing}"


def test_the_pattern_catches_figures_and_spares_the_rest() -> None:
    for figure in ("~4x less CPU", "costs 35-45 us uncached", "a 26 MB body", "~30% less CPU per file",
                   "7,000 makes them ten times rarer", "836k instructions", "519 req/s", "~1 ms of CPU"):
        assert figures_in(figure), figure
    for text in ("RFC 8446 section 7", "port 443", "``500ms``, ``5s``", "fe80::1%eth0", "HTTP/1.1 100 Continue",
                 "a dozen times", "0x1301", "at most 64 hellos"):
        assert not figures_in(text), text
