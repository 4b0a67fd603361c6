"""No import cycle in certloop's packages: a cycle is two modules that cannot be understood apart.

Walks every import (grimp, import-linter's graph builder), including those made only for type
checking: a ``TYPE_CHECKING`` import still ties two modules' vocabularies together. No cycle is
allowed; the last ones (install <-> pipeline, api <-> statuspage, spec <-> issuers) were cut by giving
what both sides needed a module of its own (renewer.context, renewer.routes, renewer.issuance).
"""

from __future__ import annotations

import grimp
import pytest

PACKAGES = ("certloop", "stack", "benchmarks")


def _cycles(graph: grimp.ImportGraph) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(graph.find_modules_directly_imported_by(root)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.find_modules_directly_imported_by(nxt))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


@pytest.mark.parametrize("type_checking", [True, False], ids=["with-type-checking-imports", "at-run-time"])
def test_no_import_cycle(type_checking: bool) -> None:
    """No cycle among the packages' modules, counting the imports made only for type checking or not."""
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=not type_checking, cache_dir=None)
    assert {"certloop.renewer.install", "certloop.exporter.check", "certloop.probe"} <= graph.modules
    assert [sorted(c) for c in _cycles(graph)] == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The walk is not vacuous: a graph with a -> b -> c -> a and d -> a has exactly {a, b, c}."""
    graph = grimp.ImportGraph()
    for importer, imported in (("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")):
        graph.add_import(importer=importer, imported=imported)
    assert _cycles(graph) == [frozenset({"a", "b", "c"})]
