"""The ulmfit package's import map has no cycle: every import statement (at module level or inside a function,
whichever runs first) points down. ``python tests/test_layering.py`` prints the map's cycles (none) too."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ulmfit"


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package (a package by its __init__.py)."""
    found = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_map(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``from a import b`` counts as importing a.b when that is a
    module, else a; relative imports resolved)."""
    mods = modules(package)
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    if f"{source}.{alias.name}" in mods:
                        deps.add(f"{source}.{alias.name}")
                    elif source in mods:
                        deps.add(source)
        graph[name] = deps - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_map_has_no_cycle():
    graph = import_map()
    assert {"ulmfit.store", "ulmfit.store.cli", "ulmfit.shipped", "ulmfit.compare"} <= set(graph)
    assert "ulmfit.store" in graph["ulmfit.shipped"] and "ulmfit.store" in graph["ulmfit.compare"]
    found = cycles(graph)
    assert not found, "import cycles in ulmfit/: " + "; ".join(" <-> ".join(c) for c in found)


def test_bench_imports_nothing_from_experiments():
    """The benchmarks and the experiment scripts share only what ulmfit has (``ulmfit.processes``, ``ulmfit.report``):
    no module of bench/ imports experiments/, at module level or inside a function."""
    bench = PACKAGE.parent / "bench"
    found = []
    for path in sorted(bench.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            found += [f"{path.relative_to(bench.parent)}: {n}" for n in names if n.split(".")[0] == "experiments"]
    assert not found, "bench/ imports experiments/: " + "; ".join(found)


def test_a_cycle_is_found():
    """The checker itself: a cycle through three modules, and one through an import inside a function."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_inside_functions_count(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub import low\n")
    (pkg / "sub" / "low.py").write_text("def f():\n    from pkg import high\n")
    (pkg / "high.py").write_text("from .sub.low import f\n")
    graph = import_map(pkg)
    assert graph == {"pkg": set(), "pkg.sub": {"pkg.sub.low"}, "pkg.sub.low": {"pkg.high"}, "pkg.high": {"pkg.sub.low"}}
    assert cycles(graph) == [["pkg.high", "pkg.sub.low"]]


if __name__ == "__main__":
    graph = import_map()
    found = cycles(graph)
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports inside ulmfit/; cycles: {found or 'none'}")
    sys.exit(1 if found else 0)
