"""Follow the loaded configuration object through the calls that pass it on, by reading the source.

Starting at a function and one of its parameters (``src.engine.evaluate.run_evaluation``'s ``config``),
every call in that function whose arguments include the object (by name) is resolved to the function
it calls (a function of the same module, an imported function or class, ``self.method``), the
argument is matched to the callee's parameter, and the walk goes on from there; each function is
visited once. A call that passes the object to a function of *another file* is one move between
files; the count is what issue 28 measures ("followed from run_evaluation, it moves between files
45 times"). Calls the reader cannot resolve (a method of an object of unknown class, a function
held in a variable) are listed apart.

    python tests/config_flow.py                      # run_evaluation's config, moves listed
    python tests/config_flow.py src.engine.phone run_phone config
"""
import ast
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("src", "model_utils")
# calls that are not the project's functions (builtins, the standard library, MindSpore)
_NOT_PROJECT = {"isinstance", "getattr", "hasattr", "type", "tuple", "list", "dict", "set", "str", "int", "float",
                "bool", "len", "open", "print", "os", "ms", "super", "json", "np", "Interpreter"}
# with ``derived``, a value built from the object by a function of one of these modules is the object too
# (its typed sections: ``evaluation = evaluation_sections(config)``, ``evaluation.quant``)
SECTION_MODULES = ("sections", "config_fill")


def _module_files():
    files = {}
    for package in PACKAGES:
        for folder, _, names in os.walk(os.path.join(ROOT, package)):
            for name in names:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    files[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return files


class _Module:
    def __init__(self, name, path):
        self.name, self.path = name, path
        with open(path, encoding="utf-8") as handle:
            self.tree = ast.parse(handle.read(), path)
        self.defs, self.imports = {}, {}  # name -> node (functions, classes); name -> (module, attr or None)
        package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        for node in self.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                self.defs[node.name] = node
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
                for alias in node.names:
                    self.imports[alias.asname or alias.name] = (base, alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    self.imports[alias.asname or alias.name.split(".")[0]] = (alias.name, None)


class ConfigFlow:
    """The walk: :meth:`follow` fills ``moves`` (caller, callee, parameter) and ``unresolved``."""

    def __init__(self, derived=False):
        self.derived = derived
        self._module_of_call = None
        self.files = _module_files()
        self.modules = {}
        self.moves, self.same_file, self.unresolved = [], [], []
        self.reached = set()  # the modules whose functions receive the object

    def module(self, name):
        if name not in self.modules and name in self.files:
            self.modules[name] = _Module(name, self.files[name])
        return self.modules.get(name)

    def resolve(self, module_name, name, depth=0):
        """(module, def node, class node or None) of ``name`` as seen in ``module_name``; None if unknown."""
        module = self.module(module_name)
        if module is None or depth > 10:
            return None
        if name in module.defs:
            node = module.defs[name]
            if isinstance(node, ast.ClassDef):
                init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
                return (module_name, init, node) if init is not None else None
            return module_name, node, None
        if name in module.imports:
            source, attr = module.imports[name]
            if attr is None:
                return None
            if f"{source}.{attr}" in self.files:  # a module imported by name
                return None
            return self.resolve(source, attr, depth + 1)
        return None

    def _callee(self, module_name, cls, call):
        func = call.func
        if isinstance(func, ast.Name):
            return self.resolve(module_name, func.id)
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            owner = func.value.id
            if owner == "self" and cls is not None:
                method = next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == func.attr), None)
                return (module_name, method, cls) if method is not None else None
            module = self.module(module_name)
            target = module.imports.get(owner)
            if target is not None:
                full = target[0] if target[1] is None else f"{target[0]}.{target[1]}"
                if full in self.files:
                    return self.resolve(full, func.attr)
        return None

    def _from_tracked(self, value, tracked):
        """Whether an assigned value is the object (a plain alias) or, with ``derived``, its typed sections:
        an attribute of it (``evaluation.quant``) or what a function of :data:`SECTION_MODULES` builds from
        it (``evaluation_sections(config)``)."""
        if isinstance(value, ast.Name):
            return value.id in tracked
        if not self.derived:
            return False
        if isinstance(value, ast.Attribute):
            return self._from_tracked(value.value, tracked)
        if isinstance(value, ast.Call) and self._module_of_call is not None:
            takes = any(isinstance(a, ast.Name) and a.id in tracked for a in value.args) or \
                any(isinstance(k.value, ast.Name) and k.value.id in tracked for k in value.keywords)
            target = self._callee(self._module_of_call[0], self._module_of_call[1], value) if takes else None
            return target is not None and target[0].rsplit(".", 1)[-1] in SECTION_MODULES
        return False

    @staticmethod
    def _parameter(fn, cls, call, tracked):
        params = [a.arg for a in fn.args.posonlyargs + fn.args.args]
        if cls is not None and params and params[0] in ("self", "cls"):
            params = params[1:]
        for i, arg in enumerate(call.args):
            if isinstance(arg, ast.Name) and arg.id in tracked and i < len(params):
                return params[i]
        for keyword in call.keywords:
            if isinstance(keyword.value, ast.Name) and keyword.value.id in tracked and keyword.arg:
                return keyword.arg
        return None

    def follow(self, module_name, function, parameter):
        """Walk from ``module_name.function``'s ``parameter``; returns the number of moves between files."""
        start = self.resolve(module_name, function)
        queue, seen = [(start[0], start[1], start[2], parameter)], set()
        while queue:
            mod, fn, cls, param = queue.pop(0)
            self.reached.add(mod)
            key = (mod, id(fn), param)
            if key in seen:
                continue
            seen.add(key)
            tracked = {param}
            self._module_of_call = (mod, cls)
            for _ in range(3):  # aliases (cfg = config) and, with derived, what is built from it
                for node in ast.walk(fn):
                    if isinstance(node, ast.Assign) and self._from_tracked(node.value, tracked):
                        tracked |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            here = f"{mod}.{(cls.name + '.') if cls else ''}{fn.name}"
            for call in (n for n in ast.walk(fn) if isinstance(n, ast.Call)):
                passes = any(isinstance(a, ast.Name) and a.id in tracked for a in call.args) or \
                    any(isinstance(k.value, ast.Name) and k.value.id in tracked for k in call.keywords)
                if not passes:
                    continue
                target = self._callee(mod, cls, call)
                if target is None or target[1] is None:
                    name = ast.unparse(call.func)
                    if name.split(".")[0] not in _NOT_PROJECT:  # a builtin or a library takes it: no move
                        self.unresolved.append((here, name, call.lineno))
                    continue
                tmod, tfn, tcls = target
                tparam = self._parameter(tfn, tcls, call, tracked)
                if tparam is None:
                    continue
                there = f"{tmod}.{(tcls.name + '.') if tcls else ''}{tfn.name}"
                edge = (here, there, tparam)
                if self.files[tmod] != self.files[mod]:
                    if edge not in self.moves:
                        self.moves.append(edge)
                elif edge not in self.same_file:
                    self.same_file.append(edge)
                queue.append((tmod, tfn, tcls, tparam))
        return len(self.moves)


def main(argv):
    derived = "--derived" in argv
    argv = [a for a in argv if a != "--derived"]
    module_name, function, parameter = (argv + ["src.engine.evaluate", "run_evaluation", "config"][len(argv):])[:3]
    flow = ConfigFlow(derived)
    count = flow.follow(module_name, function, parameter)
    for here, there, param in flow.moves:
        print(f"  {here} -> {there} ({param})")
    reached = sorted({flow.files[m].replace(ROOT + os.sep, "") for m in flow.reached})
    print(f"{count} moves between files (tests/test_options.py allows 15), {len(flow.same_file)} calls within a file, "
          f"{len(flow.unresolved)} calls not resolved; {len(reached)} files reached: {' '.join(reached)}")
    for here, func, line in flow.unresolved:
        print(f"  unresolved: {here} line {line}: {func}(...)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
