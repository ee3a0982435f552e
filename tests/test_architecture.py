"""The layering and size rules of the package (docs/architecture.md), checked on the source.

Imports flow downward only (algorithms -> executor -> compiler -> primitives; ``nn``
uses primitives), there are no import circles between modules, no module is much
over 600 lines, and a function over 80 lines says why in its docstring.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "braintrace"

#: what each layer may import from the package (besides itself and the leaf modules)
ALLOWED = {
    "primitives": set(),
    "compiler": {"primitives"},
    "executor": {"compiler", "primitives"},
    "algorithms": {"executor", "compiler", "primitives"},
    "nn": {"primitives"},
}
#: modules every layer may use: they import nothing of the package's layers
LEAVES = {"errors", "data"}


def modules():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        name = ".".join(rel.parts)
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        yield name, path


def imports_of(name, path):
    """Package-internal modules imported at module level (not under TYPE_CHECKING, not inside functions)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if isinstance(node, (ast.Import, ast.ImportFrom, ast.If, ast.Try)) else []:
            if isinstance(sub, ast.ImportFrom):
                if sub.level:
                    base = package.split(".")
                    base = base[: len(base) - sub.level + 1]
                    mod = ".".join(base + ([sub.module] if sub.module else []))
                else:
                    mod = sub.module or ""
                if mod.startswith("braintrace"):
                    out.add(mod)
                    for alias in sub.names:
                        out.add(f"{mod}.{alias.name}")
            elif isinstance(sub, ast.Import):
                out.update(a.name for a in sub.names if a.name.startswith("braintrace"))
    known = {n for n, _ in modules()}
    return {m for m in out if m in known and m != name}


def layer(name):
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


@pytest.mark.parametrize("name,path", list(modules()), ids=[n for n, _ in modules()])
def test_imports_flow_downward(name, path):
    own = layer(name)
    if own not in ALLOWED:
        return
    for mod in imports_of(name, path):
        other = layer(mod)
        if other in (own, None) or other in LEAVES:
            continue
        assert other in ALLOWED[own], f"{name} imports {mod}: {own} may not depend on {other}"


def test_no_import_circles():
    graph = {name: imports_of(name, path) for name, path in modules()}
    # a package's __init__ (a facade) importing its submodules is not a circle
    edges = {n: {m for m in deps if not n.startswith(m + ".") and not m.startswith(n + ".")} for n, deps in graph.items()}
    state = {}

    def visit(n, stack):
        state[n] = "open"
        for m in edges.get(n, ()):
            if state.get(m) == "open":
                cycle = stack[stack.index(m):] + [m]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if m not in state:
                visit(m, stack + [m])
        state[n] = "done"

    for n in edges:
        if n not in state:
            visit(n, [n])


@pytest.mark.parametrize("name,path", list(modules()), ids=[n for n, _ in modules()])
def test_modules_and_functions_are_small(name, path):
    text = path.read_text()
    assert len(text.splitlines()) <= 620, f"{name} has {len(text.splitlines())} lines (limit ~600): split it by concept"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            doc = ast.get_docstring(node) or ""
            body = n - (len(doc.splitlines()) + 2 if doc else 0)
            assert body <= 80 or "long because" in doc, (
                f"{name}.{node.name} has {body} lines of code (limit ~80 without a reason in its docstring)"
            )
