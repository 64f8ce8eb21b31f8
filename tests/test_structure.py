"""No package has an import cycle inside it, and the public site and the console stay apart (issue 16).

Every import counts, the ones inside functions too: a deferred import still ties two modules
together, and a cycle of them is one change away from an ImportError at start-up. An import of
`a.b.c` counts as an edge to `a.b.c` only, not to the packages `a` and `a.b` that Python runs first:
a package's __init__ that gathers its modules (newsletter/web/console/__init__.py) would otherwise
make every module of the package a cycle with it.
"""
from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from .conftest import ROOT

Graph = dict[str, set[str]]

PUBLIC = "newsletter.web.public"
CONSOLE = "newsletter.web.console"


def module_name(path: Path, root: Path) -> str:
    """newsletter/web/app.py -> newsletter.web.app; newsletter/web/__init__.py -> newsletter.web."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST, module: str, is_package: bool, modules: Collection[str]) -> Iterator[str]:
    """The modules among `modules` that the imports in the tree load, relative imports made absolute.

    `from X import y` loads X.y when that is a module, and X otherwise (y is a name in X).
    """
    package = module if is_package else module.rpartition(".")[0]
    for node in run_time_nodes(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # level 1 is this package, each further dot one package up
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                name = f"{base}.{alias.name}"
                if name in modules or base in modules:
                    yield name if name in modules else base


def run_time_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below this one but those under `if TYPE_CHECKING:`, which never run: an import there
    is for annotations only, the usual way to name a type without importing its module."""
    for child in ast.iter_child_nodes(node):
        yield child
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield other
                yield from run_time_nodes(other)
        else:
            yield from run_time_nodes(child)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_graph(root: Path, package: str) -> Graph:
    """Module -> the modules of `package` it imports, for every .py file under root/package."""
    modules = {module_name(path, root): path for path in sorted((root / package).rglob("*.py"))}
    graph: Graph = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text("utf-8"), str(path))
        found = imported_modules(tree, module, path.name == "__init__.py", modules)
        graph[module] = set(found) - {module}
    return graph


def find_cycle(graph: Graph) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None: a depth-first search that meets a module on its own path."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path, on_path = [start], {start}
        stack = [iter(sorted(graph.get(start, ())))]
        while stack:
            following = next(stack[-1], None)
            if following is None:
                stack.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
            elif following in on_path:
                return [*path[path.index(following):], following]
            elif following not in done:
                path.append(following)
                on_path.add(following)
                stack.append(iter(sorted(graph.get(following, ()))))
    return None


def path_between(graph: Graph, start: str, goal: str) -> list[str] | None:
    """A chain of imports from start to a module named goal or under it, or None."""
    paths = {start: [start]}
    queue = [start]
    for module in queue:
        for following in sorted(graph.get(module, ())):
            if following in paths:
                continue
            paths[following] = [*paths[module], following]
            if following == goal or following.startswith(goal + "."):
                return paths[following]
            queue.append(following)
    return None


@pytest.mark.parametrize(("package", "modules"), [("newsletter", 30), ("mailer", 20), ("subscribers", 20),
                                                  ("components", 15)])
def test_no_package_has_an_import_cycle(package: str, modules: int) -> None:
    graph = import_graph(ROOT, package)
    assert len(graph) > modules  # it read the package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_public_site_and_the_console_do_not_import_each_other() -> None:
    graph = import_graph(ROOT, "newsletter")
    assert PUBLIC in graph and CONSOLE in graph
    assert path_between(graph, PUBLIC, CONSOLE) is None, path_between(graph, PUBLIC, CONSOLE)
    consoles = sorted(m for m in graph if m == CONSOLE or m.startswith(CONSOLE + "."))
    assert len(consoles) > 3
    assert [path for m in consoles if (path := path_between(graph, m, PUBLIC))] == []


# --- the checker itself --------------------------------------------------------------------------------------


def test_find_cycle_reports_a_cycle_in_a_synthetic_graph() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"x"}}) == ["x", "x"]


def test_find_cycle_finds_none_in_a_graph_without_one() -> None:
    # a diamond: d is reached twice, which is not a cycle
    assert find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None


def test_the_parser_sees_relative_and_deferred_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "top.py").write_text("from .sub import low\n")
    (package / "sub" / "__init__.py").write_text("from . import low\n")
    (package / "sub" / "low.py").write_text("def later():\n    from ..top import something\n")
    (package / "alone.py").write_text("import pkg.sub.low\nimport json\n")
    (package / "typed.py").write_text("import typing\nif typing.TYPE_CHECKING:\n    from . import top\n"
                                      "else:\n    from . import alone\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph == {"pkg": set(), "pkg.top": {"pkg.sub.low"}, "pkg.sub": {"pkg.sub.low"},
                     "pkg.sub.low": {"pkg.top"}, "pkg.alone": {"pkg.sub.low"},
                     "pkg.typed": {"pkg.alone"}}
    assert find_cycle(graph) == ["pkg.sub.low", "pkg.top", "pkg.sub.low"]
    assert path_between(graph, "pkg.alone", "pkg.top") == ["pkg.alone", "pkg.sub.low", "pkg.top"]
