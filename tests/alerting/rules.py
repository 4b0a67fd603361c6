"""Helpers shared by the alerting tests: the generated rules, and metric/label names used by PromQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTING = ROOT / "alerting"
GENERATED_RULES = ALERTING / "generated" / "certloop.rules.yml"
PROMTOOL_TESTS = ALERTING / "tests"
ALERTMANAGER_DIR = ALERTING / "alertmanager"
RUNBOOKS = ROOT / "docs" / "runbooks"

SEVERITIES = ("critical", "major", "warning", "info")

# PromQL words that look like identifiers but are not metric names.
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
             "group_right", "inf", "nan"}


def load_rules(path: Path = GENERATED_RULES) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def iter_rules(rules: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for group in rules["groups"]:
        yield from group["rules"]


def alerts(rules: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [r for r in iter_rules(rules or load_rules()) if "alert" in r]


@dataclass(frozen=True)
class Selector:
    """One vector selector in an expression: the metric name and its label matchers."""

    metric: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, op, value)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}|([a-zA-Z_:][a-zA-Z0-9_:]*)")


def selectors(expr: str) -> list[Selector]:
    """The vector selectors of a PromQL expression (a lexer-level reading, enough for our rules).

    Function names (an identifier followed by `(`), keywords, grouping label lists, durations in `[...]`
    and string arguments (e.g. of label_replace) are not selectors.
    """
    # Blank out grouping clauses and ranges first; keep strings inside {...} for the matchers.
    text = _GROUPING.sub(" ", expr)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    found: list[Selector] = []
    pos = 0
    while pos < len(text):
        if text[pos] in "\"'":
            end = _STRING.match(text, pos)
            pos = end.end() if end else pos + 1
            continue
        m = _SELECTOR.match(text, pos)
        if not m or (pos > 0 and (text[pos - 1].isalnum() or text[pos - 1] in "_:.")):
            pos += 1
            continue
        name = m.group(1) or m.group(3)
        body = m.group(2)
        after = text[m.end():].lstrip()
        if body is None and (name in _KEYWORDS or after.startswith("(") or re.fullmatch(r"[0-9.e]+", name)):
            pos = m.end()
            continue
        matchers = tuple((k, op, v) for k, op, v in _MATCHER.findall(body or ""))
        found.append(Selector(name or "", matchers))
        pos = m.end()
    return found


_QUERY_IN_TEMPLATE = re.compile(r'printf\s+"([^"]*)"')


def annotation_queries(rule: dict[str, Any]) -> list[str]:
    """PromQL run from annotation templates via `query` (with printf's %s left in)."""
    return [q.replace("'", '"') for text in rule.get("annotations", {}).values()
            for q in _QUERY_IN_TEMPLATE.findall(text)]
