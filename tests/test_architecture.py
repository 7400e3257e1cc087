"""The package's import graph: every import points down the layers.

Read from the source (function-level imports included, since they hide cycles from Python but
not from a reader), with the implicit import of a module's parent packages.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "benchmark"


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.with_suffix("").relative_to(PACKAGE.parent).parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (a submodule import also imports its packages)."""
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in mods else base for alias in node.names}
        deps = set()
        for target in targets:
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if target.startswith("benchmark."):
                parts = target.split(".")
                deps |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)}
        graph[name] = {d for d in deps if d != name and not name.startswith(d + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_checker_sees_a_cycle_and_a_package_edge():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = import_graph()
    assert "benchmark.models" in graph["benchmark.stages.fetch"]       # via `from ..models import …`
    assert "benchmark.models.zoo" in graph["benchmark.pipeline"]       # a function-level import


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_stages_do_not_import_each_other_and_nothing_below_imports_them():
    graph = import_graph()
    for name, deps in graph.items():
        stages = {d for d in deps if d.startswith("benchmark.stages.")}
        if name.startswith("benchmark.stages."):
            assert not stages, f"{name} imports the stages {sorted(stages)}: share through benchmark.pipeline"
        elif name != "benchmark.cli":
            assert not stages and "benchmark.stages" not in deps, f"{name} imports a stage"


def test_modules_and_functions_stay_small():
    """One idea per module (at most 500 lines), one step per function (at most 60)."""
    too_long = []
    for name, path in modules().items():
        text = path.read_text()
        if len(text.splitlines()) > 500:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            length = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and length > 60:
                too_long.append(f"{name}.{node.name}: {length} lines")
    assert not too_long, too_long
