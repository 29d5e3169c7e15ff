"""No import cycle inside the package, counting the imports inside functions.

Every module of ``purchase_intent`` is parsed with :mod:`ast` (nothing is
imported); every ``import`` and ``from ... import`` statement counts, at the
top of a module or inside a function, class or ``if TYPE_CHECKING`` block,
relative ones resolved against the importing module's package. The graph's
nodes are the package's modules (a package is its ``__init__``); an edge
``A -> B`` means the code of ``A`` needs ``B`` to have run.

What an import statement in module ``M`` needs, as Python resolves it:

* ``import a.b.c`` runs ``a/__init__``, then ``a/b/__init__``, then ``a.b.c``:
  ``M -> a.b.c``, and ``M -> a``, ``M -> a.b`` for each of those packages that
  is not ``M`` itself or a package ``M`` is inside. Those are always
  initialised (or being initialised) before ``M``'s code runs: Python imports
  ``a.b`` before any module in it, so ``import a.b.sibling`` from inside ``a.b``
  never runs ``a/b/__init__``, nor needs anything from it.
* ``from a.b import x`` first imports ``a.b`` as above, then takes ``x``:
  if ``a.b.x`` is a module of the package, Python imports it (``M -> a.b.x``;
  ``a.b`` only under the rule above); otherwise ``x`` is a name read from
  ``a/b/__init__``'s namespace, which must already hold it: ``M -> a.b`` even
  when ``M`` is inside ``a.b`` (the data registry case: a dataset module
  reading a helper from ``data/__init__`` while ``data/__init__`` names the
  dataset modules).
* ``from . import x`` / ``from ..y import x``: the same, once the relative
  module is resolved (``.`` is ``M``'s package; for a package's ``__init__``,
  the package itself).

Imports of other distributions (numpy, tensorflow, ...) are not nodes.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "purchase_intent"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def package_modules(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package (a package is its ``__init__``)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _ancestors(name: str) -> list[str]:
    """``a.b.c`` -> ``["a", "a.b"]``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _resolve_relative(importer: str, level: int, module: str | None, modules: dict[str, Path]) -> str:
    """The absolute module of ``from <level dots><module> import ...`` in ``importer``."""
    package = importer if _is_package(importer, modules) else importer.rpartition(".")[0]
    parts = package.split(".")
    if level - 1 > len(parts) - 1:
        raise ValueError(f"{importer}: relative import beyond the top-level package")
    base = parts[:len(parts) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _needs(importer: str, target: str, modules: dict[str, Path]) -> set[str]:
    """The package modules ``import target`` runs that ``importer`` depends on (see the module docstring)."""
    inside = set(_ancestors(importer)) | {importer}
    out = {p for p in _ancestors(target) if p in modules and p not in inside}
    if target in modules and target not in inside:
        out.add(target)
    return out


def module_imports(name: str, modules: dict[str, Path]) -> dict[str, list[int]]:
    """The package modules ``name`` depends on through its import statements -> line numbers."""
    tree = ast.parse(modules[name].read_text(), filename=str(modules[name]))
    package = name.split(".")[0]
    edges: dict[str, list[int]] = {}

    def add(targets, line):
        for t in targets:
            lines = edges.setdefault(t, []) if t != name else [line]
            if line not in lines:
                lines.append(line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == package or alias.name.startswith(package + "."):
                    add(_needs(name, alias.name, modules), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = (_resolve_relative(name, node.level, node.module, modules) if node.level
                    else node.module or "")
            if base != package and not base.startswith(package + "."):
                continue
            add(_needs(name, base, modules), node.lineno)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:  # a submodule: imported
                    add({sub}, node.lineno)
                elif base in modules:  # a name (or *) read from base's namespace
                    add({base}, node.lineno)
    return edges


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, dict[str, list[int]]]:
    """Module -> {module it depends on: [line, ...]} over every module of the package."""
    modules = package_modules(root, package)
    return {name: module_imports(name, modules) for name in modules}


def find_cycle(graph: dict[str, dict[str, list[int]]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of the graph, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if not state.get(nxt) and nxt in graph:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def describe(cycle: list[str], graph) -> str:
    return "\n".join(f"  {a} -> {b}  (line {', '.join(map(str, graph[a][b]))} of {a})"
                     for a, b in zip(cycle, cycle[1:]))


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 30 and "purchase_intent.task" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle:\n" + describe(cycle, graph)


def test_serving_does_not_import_predict():
    graph = import_graph()
    for name, edges in graph.items():
        if name.startswith(f"{PACKAGE}.serving"):
            assert f"{PACKAGE}.predict" not in edges, (name, edges[f"{PACKAGE}.predict"])


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_the_rules_on_a_made_up_package(tmp_path):
    """Function-level and relative imports count; a sibling import does not depend on the parent's __init__."""
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "def f():\n    from .b import g\n",  # function-level, relative
        "pkg/b.py": "import pkg.a\n",
        "pkg/data/__init__.py": "from pkg.data import one\n",  # the registry names its modules
        "pkg/data/one.py": "import pkg.data.two\nfrom . import two\n",  # siblings: not data/__init__
        "pkg/data/two.py": "X = 1\n",
    })
    graph = import_graph(tmp_path / "pkg", "pkg")
    assert graph["pkg.a"] == {"pkg.b": [2]}
    assert graph["pkg.b"] == {"pkg.a": [1]}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
    assert graph["pkg.data.one"] == {"pkg.data.two": [1, 2]}
    assert graph["pkg.data"] == {"pkg.data.one": [1]}

    # A dataset module reading a helper from the registry's namespace: a cycle.
    _write(tmp_path, {"pkg/data/one.py": "def load():\n    from pkg.data import helper\n", "pkg/b.py": ""})
    graph = import_graph(tmp_path / "pkg", "pkg")
    assert graph["pkg.data.one"] == {"pkg.data": [2]}
    assert find_cycle(graph) == ["pkg.data", "pkg.data.one", "pkg.data"]

    # From outside, importing pkg.data.two runs pkg/data/__init__ too.
    _write(tmp_path, {"pkg/data/one.py": "", "pkg/c.py": "from .data.two import X\n"})
    graph = import_graph(tmp_path / "pkg", "pkg")
    assert graph["pkg.c"] == {"pkg.data": [1], "pkg.data.two": [1]}
    assert find_cycle(graph) is None
