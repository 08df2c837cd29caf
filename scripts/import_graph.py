"""Which mgnm packages import which: the package-level import graph of src/mgnm.

    python scripts/import_graph.py [SRC]    # SRC: a src directory, default this checkout's

Every ``import`` and ``from ... import`` of every module is counted, at the top or inside a
function alike (an import deferred into a function still ties the two packages together);
the module-level cycle check leaves out imports under ``if TYPE_CHECKING:`` (annotations
only, never run).
A package is ``mgnm.<first name>``: ``mgnm.train.trainer`` belongs to ``mgnm.train`` and
``mgnm.api`` is its own. Imports within one package are left out.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _nodes(tree: ast.AST, typing: bool) -> list[ast.AST]:
    """Every node of ``tree``; without ``typing``, not those under ``if TYPE_CHECKING:``."""
    out, todo = [], [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node) and not typing:
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def imported_modules(path: Path, src: Path, typing: bool = True) -> set[str]:
    """The mgnm modules that the file at ``path`` imports anywhere in it (in functions too);
    with ``typing=False``, not counting the imports under ``if TYPE_CHECKING:``, which never
    run."""
    name = module_name(path, src)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _nodes(ast.parse(path.read_text(), str(path)), typing):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # ``from mgnm import api`` imports the module mgnm.api
            found.update(f"{target}.{a.name}" for a in node.names)
    return {m for m in found if m == "mgnm" or m.startswith("mgnm.")}


def module_edges(src: Path = SRC) -> dict[str, set[str]]:
    """Every mgnm module -> the mgnm modules it imports when it runs (itself left out)."""
    modules = {module_name(p, src) for p in (src / "mgnm").rglob("*.py")}
    return {module_name(path, src): {m for m in imported_modules(path, src, typing=False)
                                     if m in modules and m != module_name(path, src)}
            for path in sorted((src / "mgnm").rglob("*.py"))}


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def package_edges(src: Path = SRC) -> dict[tuple[str, str], list[str]]:
    """(importing package, imported package) -> the 'module -> module' imports behind it."""
    modules = {module_name(p, src) for p in (src / "mgnm").rglob("*.py")}
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted((src / "mgnm").rglob("*.py")):
        importer = module_name(path, src)
        for target in sorted(imported_modules(path, src)):
            if target not in modules or target == "mgnm":
                continue  # a name imported from a module, not a module itself
            a, b = package_of(importer), package_of(target)
            if a != b:
                edges[(a, b)].append(f"{importer} -> {target}")
    return dict(edges)


def find_cycle(edges: dict[tuple[str, str], list[str]] | dict[str, set[str]]) -> list[str] | None:
    """One cycle (its first node repeated at the end), or None, of a graph given as package
    edges (:func:`package_edges`) or as each node's successors (:func:`module_edges`)."""
    graph: dict[str, set[str]] = defaultdict(set)
    if isinstance(edges, dict) and all(isinstance(v, set) for v in edges.values()):
        for a, succ in edges.items():
            graph[a] |= succ  # type: ignore[arg-type]
    else:
        for a, b in edges:
            graph[a].add(b)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def main() -> None:
    edges = package_edges(Path(sys.argv[1]) if len(sys.argv) > 1 else SRC)
    for (a, b), why in sorted(edges.items()):
        print(f"{a} -> {b}    ({len(why)}: {', '.join(why[:3])}{', ...' if len(why) > 3 else ''})")
    cycle = find_cycle(edges)
    print("package cycle: " + " -> ".join(cycle) if cycle else "no package cycle")
    cycle = find_cycle(module_edges(Path(sys.argv[1]) if len(sys.argv) > 1 else SRC))
    print("module cycle: " + " -> ".join(cycle) if cycle else "no module cycle")


if __name__ == "__main__":
    main()
