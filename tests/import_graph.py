"""ddz's import graph, read from the source with `ast` (nothing is imported).

    python tests/import_graph.py [ROOT]     # a summary: modules, edges, cycles, function-level imports

Used by tests/test_layers.py, which fails on a cycle or an import that goes up a layer.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the ddz module imported (a package means its __init__)
    line: int
    in_function: bool  # inside a def: runs only when called, hides a cycle from import time
    type_only: bool  # under `if TYPE_CHECKING:`: never runs


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path, package: str = "ddz") -> dict[str, Path]:
    return {module_name(root, path): path for path in sorted((root / package).rglob("*.py"))}


def _target(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that `name` (a dotted import) names or lies inside."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _walk(node: ast.AST, in_function: bool = False, type_only: bool = False) -> Iterator[tuple]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, in_function, type_only
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _walk(child, True, type_only)
        elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            yield from _walk(child, in_function, True)
        else:
            yield from _walk(child, in_function, type_only)


def imports(root: Path, package: str = "ddz") -> list[Import]:
    """Every import of a ddz module by a ddz module."""
    known = modules(root, package)
    found = []
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        for node, in_function, type_only in _walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{alias.name}" for alias in node.names]
            for dotted in targets:
                target = _target(dotted, known)
                if target is not None and target != name:
                    found.append(Import(name, target, node.lineno, in_function, type_only))
    return found


def cycles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def function_level_statements(root: Path, package: str = "ddz") -> dict[str, int]:
    """Import statements inside functions, of any package, per module."""
    counts = {}
    for name, path in modules(root, package).items():
        tree = ast.parse(path.read_text(), str(path))
        n = sum(1 for _, in_function, type_only in _walk(tree) if in_function and not type_only)
        if n:
            counts[name] = n
    return counts


def summary(root: Path) -> str:
    edges = [e for e in imports(root) if not e.type_only]
    top = [e for e in edges if not e.in_function]
    lines = [
        f"modules: {len(modules(root))}",
        f"imports between ddz modules: {len(edges)} ({len(edges) - len(top)} inside functions)",
        f"import statements inside functions (any package): {sum(function_level_statements(root).values())}",
        f"cycles at import time: {len(cycles(top))}",
        f"cycles counting function-level imports: {len(cycles(edges))}",
    ]
    lines += [f"  {' <-> '.join(c)}" for c in cycles(edges)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()))
