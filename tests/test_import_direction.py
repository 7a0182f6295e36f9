"""Imports flow one way (and form no new loop): entry scripts / model_utils -> src.engine -> src.export -> src.runtime -> src.paths ->
src.weights -> src.quantlib -> src.models -> src.data, src.metrics -> src.utils -> src.errors (the table in
docs/architecture.md; src.quantlib and src.models also keep off each other and src.models off src.data;
src.errors, the user-error classes every layer raises, imports nothing of the project).

Read from the source (every ``import`` statement, also those inside functions), so a lazy
import that goes the wrong way is caught as well as a top-level one.
"""
import ast
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")

# package under src -> packages it must not import
_ENTRY_SIDE = ("src.engine", "src.export", "src.runtime", "src.paths")  # the rows above src.weights
FORBIDDEN = {
    "src.export": ("src.engine",),
    "src.runtime": ("src.engine", "src.export"),  # running a file never needs a writer
    "src.paths": ("src.engine", "src.export", "src.runtime"),
    "src.errors": ("src.engine", "src.export", "src.runtime", "src.paths", "src.weights", "src.quantlib", "src.models", "src.data",
                   "src.metrics", "src.utils"),
    "src.weights": _ENTRY_SIDE,
    "src.quantlib": _ENTRY_SIDE + ("src.weights", "src.models"),
    "src.models": _ENTRY_SIDE + ("src.quantlib", "src.weights", "src.data"),
    "src.data": _ENTRY_SIDE + ("src.quantlib", "src.models", "src.weights"),
    "src.metrics": _ENTRY_SIDE + ("src.quantlib", "src.models", "src.weights"),
    "src.utils": _ENTRY_SIDE + ("src.quantlib", "src.models", "src.weights", "src.data", "src.metrics"),
}
# the one model_utils import allowed in src: the runtime setting that must run before MindSpore loads
ALLOWED_MODEL_UTILS = {("src", "model_utils.runtime_env")}


def _modules():
    for folder, _, files in os.walk(SRC):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                yield (module[:-len(".__init__")] if module.endswith(".__init__") else module), path


def _imports(path):
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno


def _within(module, package):
    return module == package or module.startswith(package + ".")


def _violations():
    found = []
    for module, path in _modules():
        for imported, line in _imports(path):
            where = f"{os.path.relpath(path, ROOT)}:{line} imports {imported}"
            if _within(imported, "model_utils") and (module, imported) not in ALLOWED_MODEL_UTILS:
                found.append(where + " (src does not import model_utils)")
            for package, forbidden in FORBIDDEN.items():
                if _within(module, package):
                    found += [f"{where} ({package} must not import {f})" for f in forbidden if _within(imported, f)]
    return found


def test_imports_flow_one_way():
    assert _violations() == []


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_every_ruled_package_exists(package):
    """The table names real packages or modules (a renamed one would make its rule check nothing)."""
    path = os.path.join(ROOT, *package.split("."))
    assert os.path.isdir(path) or os.path.isfile(path + ".py")


def test_the_checker_sees_lazy_imports(tmp_path):
    """An import inside a function counts."""
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from src.engine.evaluate import run_evaluation\n", encoding="utf-8")
    assert ("src.engine.evaluate", 2) in list(_imports(str(path)))


def _module_graph():
    """{module: modules of src it imports} (top-level and lazy imports; ``from src.x import y`` counts
    ``src.x.y`` when that is a module; a package's own ``__init__`` is not an edge)."""
    modules = dict(_modules())
    graph = {m: set() for m in modules}
    for module, path in modules.items():
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name and name != module and name != "src" and not module.startswith(name + "."):
                    graph[module].add(name)
    return graph


def _loops(graph):
    """The strongly connected components of more than one module (Tarjan), each as a sorted tuple."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(tuple(sorted(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return set(found)


# import loops still to undo; the list may only shrink (it is empty: src/ has none)
KNOWN_LOOPS = set()


def test_no_new_import_loops():
    loops = _loops(_module_graph())
    assert loops - KNOWN_LOOPS == set(), f"new import loop(s): {sorted(loops - KNOWN_LOOPS)}"
    assert KNOWN_LOOPS - loops == set(), f"loop(s) gone: remove them from KNOWN_LOOPS: {sorted(KNOWN_LOOPS - loops)}"


def test_the_loop_finder_finds_a_loop():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _loops(graph) == {("a", "b", "c")}


def _lazy_project_imports():
    """``path:line module`` of every import of a project module (``src``, ``model_utils``) inside a function of
    ``src/``."""
    found = []
    for _, path in _modules():
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for sub in ast.walk(node):
                names = []
                if isinstance(sub, ast.ImportFrom) and sub.level == 0 and sub.module:
                    names = [sub.module]
                elif isinstance(sub, ast.Import):
                    names = [a.name for a in sub.names]
                found += [f"{os.path.relpath(path, ROOT)}:{sub.lineno} {n}" for n in names
                          if _within(n, "src") or _within(n, "model_utils")]
    return sorted(set(found))


def test_no_project_import_is_placed_inside_a_function():
    """Imports inside functions are for optional heavy dependencies only (TensorFlow, LiteRT, onnxruntime,
    torch); the project's own modules are imported at the top, where the direction rules and the loop check
    read them as the module's real dependencies."""
    assert _lazy_project_imports() == []


def test_the_lazy_import_finder_finds_one(tmp_path, monkeypatch):
    package = tmp_path / "src"
    package.mkdir()
    (package / "m.py").write_text("import os\n\ndef f():\n    from src.utils import atomic\n    import numpy\n",
                                  encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "SRC", str(package))
    monkeypatch.setattr(sys.modules[__name__], "ROOT", str(tmp_path))
    assert _lazy_project_imports() == ["src/m.py:4 src.utils"]


def _py_files(folder):
    for name in sorted(os.listdir(os.path.join(ROOT, folder))):
        if name.endswith(".py"):
            yield os.path.join(folder, name)


def test_tests_do_not_import_scripts_and_scripts_do_not_import_tests():
    """A script's logic lives in src/ (tests call it there, or run the script as a command); scripts do not
    reach into tests/."""
    found = []
    for folder, other in (("tests", "scripts"), ("scripts", "tests")):
        for path in _py_files(folder):
            found += [f"{path}:{line} imports {name}" for name, line in _imports(os.path.join(ROOT, path))
                      if _within(name, other)]
    assert found == []


def test_scripts_edit_sys_path_only_through_the_bootstrap():
    """Every script imports scripts/_bootstrap.py (the one place that puts the project root on sys.path) and
    none edits sys.path itself (code a script runs in a child Python, in a string, is not the script's)."""
    offenders, missing = [], []
    for path in _py_files("scripts"):
        if path.endswith(("__init__.py", "_bootstrap.py")):
            continue
        tree = ast.parse(open(os.path.join(ROOT, path), encoding="utf-8").read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", "") == "sys":
                offenders.append(path)
        if not any(name == "_bootstrap" for name, _ in _imports(os.path.join(ROOT, path))):
            missing.append(path)
    assert offenders == [] and missing == []
