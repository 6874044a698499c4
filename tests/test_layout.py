"""The package's layout rules (docs/ARCHITECTURE.md): no import cycles between its
modules, no module importing names from its own package's ``__init__``, and no
module over 700 lines."""
import ast
import os

import pytest

import sksparse_mlp

ROOT = os.path.dirname(os.path.abspath(sksparse_mlp.__file__))

# Cycles and imports from a package's __init__ that are allowed: none (the parallel/
# ones are gone); kept as sets so that a justified exception has one place to go.
KNOWN_CYCLES = set()
KNOWN_INIT_IMPORTS = set()
# Modules allowed over MAX_LINES: the kernels, to be split with the engine's rewrite.
MAX_LINES = 700
KNOWN_LARGE = set()


def _modules():
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                yield rel.removesuffix(".__init__"), path, name == "__init__.py"


MODULES = {name: (path, is_pkg) for name, path, is_pkg in _modules()}


def _imports(name):
    """(imported module, names taken from it) for every import in module ``name``."""
    path, is_pkg = MODULES[name]
    package = name if is_pkg else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            yield target, tuple(a.name for a in node.names)


def _edges():
    """Module -> the package modules it imports (a submodule named in ``from p import m`` too)."""
    graph = {name: set() for name in MODULES}
    init_imports = set()
    for name in MODULES:
        for target, names in _imports(name):
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            graph[name].update(s for s in subs if s != name)
            if target in MODULES and target != name and len(subs) < len(names):
                graph[name].add(target)
                if MODULES[target][1] and name.startswith(target + "."):
                    init_imports.add((name, target))
    return graph, init_imports


def _cycles(graph):
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return set(out)


def test_the_graph_is_read():
    graph, _ = _edges()
    assert "sksparse_mlp._estimators" in graph["sksparse_mlp.cli._flags"]
    assert "sksparse_mlp.cli._loaders" in graph["sksparse_mlp.cli._train"]
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == {frozenset({"a", "b"})}


def test_no_import_cycles():
    graph, _ = _edges()
    cycles = _cycles(graph)
    assert cycles - KNOWN_CYCLES == set(), "import cycles"
    assert KNOWN_CYCLES - cycles == set(), "fixed: remove from KNOWN_CYCLES"


def test_no_module_imports_its_packages_init():
    # the package __init__ re-exports; a module reading from it depends upwards
    _, init_imports = _edges()
    assert init_imports - KNOWN_INIT_IMPORTS == set()
    assert KNOWN_INIT_IMPORTS - init_imports == set(), "fixed: remove from KNOWN_INIT_IMPORTS"


@pytest.mark.parametrize("package", ["sksparse_mlp", "sksparse_mlp.cli"])
def test_package_init_only_re_exports(package):
    # an __init__ holds no code of its own, so there is nothing to import from it
    path, _ = MODULES[package]
    for node in ast.parse(open(path).read()).body:
        assert isinstance(node, (ast.Expr, ast.ImportFrom, ast.Import, ast.Assign)), (
            f"{package}: {ast.dump(node)[:80]}")


def test_no_module_over_the_size_bound():
    sizes = {name: sum(1 for _ in open(path)) for name, (path, _) in MODULES.items()}
    large = {name for name, n in sizes.items() if n > MAX_LINES}
    assert large - KNOWN_LARGE == set(), {n: sizes[n] for n in large - KNOWN_LARGE}
    assert KNOWN_LARGE - large == set(), "fixed: remove from KNOWN_LARGE"
