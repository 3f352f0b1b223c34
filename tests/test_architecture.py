"""The package's shape: module and function sizes, no import circle, no private name used
across modules (docs/architecture.md says what each module owns).

These read the source with :mod:`ast`; nothing is imported.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "napari_sam"
MAX_MODULE_LINES = 800
MAX_FUNCTION_LINES = 80  # without its docstring

# private names of other projects that we must touch, each with the reason
FOREIGN_PRIVATE_OK = {
    "torch._dynamo",  # checked (never imported) so that building a model stays dynamo-free
    # layers.remove_layer keeps a removed Shapes layer's GL programs (a Mesa crash): napari
    # and vispy have no public way to the visuals of a layer and the parts of a visual
    "window._qt_viewer",
    "node._subvisuals",
    # layer_history.record_step redraws a labels layer's thumbnail after napari's partial
    # update of a commit (a whole-layer refresh for it took 0.16 s on a 4000 x 4000 image)
    "layer._update_thumbnail",
    # the standard library's documented exit without unwinding: cli.interruption ends the
    # process on a signal in the interpreter's shutdown, where SystemExit is only "ignored"
    "os._exit",
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _resolve(name: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = _package_of(name, path).split(".")
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def _is_private(attr: str) -> bool:
    return attr.startswith("_") and not attr.startswith("__")


def _imports(name: str, path: Path) -> set[str]:
    """Our modules that ``name`` imports at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = _resolve(name, path, node)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in MODULES else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in MODULES and m != name}


def test_no_module_is_over_800_lines():
    long = {n: len(p.read_text(encoding="utf-8").splitlines()) for n, p in MODULES.items()}
    long = {n: k for n, k in long.items() if k > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_is_over_80_lines_apart_from_its_docstring():
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            lines = node.end_lineno - first + 1
            doc = node.body[0]
            if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) \
                    and isinstance(doc.value.value, str):
                lines -= doc.end_lineno - doc.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                long.append(f"{name}.{node.name} ({lines})")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_no_private_name_is_used_across_modules():
    """``from x import _name``, ``x._name`` on a module of ours, and ``obj._name`` on an
    object that is not ``self`` or ``cls`` (another module's internals) are refused."""
    found = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = _resolve(name, path, node)
                for alias in node.names:
                    if _is_private(alias.name) and base.startswith(PACKAGE) \
                            and f"{base}.{alias.name}" not in MODULES and base != name:
                        found.append(f"{name}: from {base} import {alias.name}")
            elif isinstance(node, ast.Attribute) and _is_private(node.attr):
                owner = node.value
                if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                    continue
                if isinstance(owner, ast.Call) and ast.unparse(owner.func) == "super":
                    continue  # overriding a framework's hook (argparse, torch)
                dotted = ast.unparse(owner) + "." + node.attr
                if dotted in FOREIGN_PRIVATE_OK:
                    continue
                found.append(f"{name}:{node.lineno}: {dotted}")
    assert not found, "private names used across modules:\n" + "\n".join(found)


def test_there_is_no_import_circle():
    graph = {n: _imports(n, p) for n, p in MODULES.items()}
    # a package's __init__ re-exporting its own modules is not a circle of logic
    for n in graph:
        graph[n] = {d for d in graph[n] if not (MODULES[d].name == "__init__.py"
                                                 and n.startswith(d + "."))}
    state, stack, circles = {}, [], []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for d in sorted(graph[n]):
            if state.get(d) == 1:
                circles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.count(".") <= 1))
def test_every_module_says_what_it_owns(name):
    doc = ast.get_docstring(ast.parse(MODULES[name].read_text(encoding="utf-8")))
    assert doc and len(doc.split()) >= 5, f"{name} has no module docstring"


def test_docs_architecture_lists_every_module():
    text = (SRC.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^- `([\w.]+)`/?:", text, flags=re.M))
    names = {n.replace(PACKAGE + ".", "", 1) if n != PACKAGE else PACKAGE for n in MODULES}
    assert not names - listed, f"modules missing in docs/architecture.md: {sorted(names - listed)}"
    assert not listed - names, f"docs/architecture.md lists no such module: {sorted(listed - names)}"


def test_progress_bar_classes_are_named_for_what_they_are():
    """Two modules defined a class ``ProgressBar`` for two concepts: the bar a library call's
    ``progress=True`` stands for (``napari_sam.progress``) and a batch job's bar on stderr,
    quiet or as log lines (``napari_sam.batch.progress``). Each name is one concept."""
    homes: dict[str, list[str]] = {}
    for name, path in MODULES.items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and node.name.endswith("ProgressBar"):
                homes.setdefault(node.name, []).append(name)
    assert homes == {"AutoProgressBar": ["napari_sam.progress"],
                     "JobProgressBar": ["napari_sam.batch.progress"]}
