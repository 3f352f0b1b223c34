"""pyproject.toml declares the distributions that src/ imports, and no others.

Every third-party import in ``src/`` (read with ``ast``, without importing anything) must be
covered by ``[project.dependencies]`` or, when it is optional, by an extra of
``[project.optional-dependencies]``:

- an import at module level, outside ``try:`` (and outside ``if TYPE_CHECKING:``), runs when
  the module is imported, so its distribution is a core dependency;
- an import inside ``try:`` (with an ``except ImportError`` path) or inside a function may be
  optional: core dependency or extra;
- every core dependency and every extra except ``testing`` is imported somewhere, except the
  ones another dependency loads for us (:data:`LOADED_BY_A_DEPENDENCY`).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

#: import name -> the requirement names (``name`` or ``name[extra]``) that install it
IMPORT_TO_DISTRIBUTION: dict[str, tuple[str, ...]] = {
    "PIL": ("pillow",),
    "skimage": ("scikit-image",),
    "yaml": ("pyyaml",),
    "sklearn": ("scikit-learn",),
    "cv2": ("opencv-python", "opencv-python-headless"),
    "distributed": ("distributed", "dask[distributed]"),
    "dask": ("dask", "dask[distributed]"),
    "qtpy": ("qtpy",),
}

#: extras that are not about what src/ imports
TOOL_EXTRAS = ("testing",)

#: core dependencies src/ never imports by name, because a dependency loads them: each with
#: what we need it for (and the test that shows it in use)
LOADED_BY_A_DEPENDENCY = {
    "imagecodecs": "tifffile's codecs for LZW, JPEG, ... compressed TIFFs (tests/"
                   "test_cli_bad_inputs.py::test_lzw_and_jpeg_compressed_tiffs_are_read)",
}

OWN_PACKAGES = {"napari_sam"}


def _pyproject() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_keys(requirement: str) -> set[str]:
    """``"dask[distributed]>=2023.1"`` -> {"dask", "dask[distributed]"}."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[([^\]]*)\])?", requirement)
    assert m, f"cannot read the requirement {requirement!r}"
    name = _normalise(m.group(1))
    keys = {name}
    for extra in (m.group(3) or "").split(","):
        if extra.strip():
            keys.add(f"{name}[{_normalise(extra.strip())}]")
    return keys


def _distributions(import_name: str) -> set[str]:
    names = IMPORT_TO_DISTRIBUTION.get(import_name, (import_name,))
    return {n if "[" in n else _normalise(n) for n in names}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[tuple[str, bool]]:
    """(top-level import name, required) for every absolute import; ``required`` is True for
    imports that run unconditionally when the module is imported."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, optional: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child, optional)
            return
        if isinstance(node, ast.Import):
            found.extend((a.name.split(".")[0], not optional) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], not optional))
        inner = optional or isinstance(
            node, (ast.Try, ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        if sys.version_info >= (3, 11) and isinstance(node, ast.TryStar):
            inner = True
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, False)
    return found


def imported_distributions() -> dict[str, dict[str, object]]:
    """import name -> {"required": bool, "files": [paths]} over every module under src/."""
    stdlib = set(sys.stdlib_module_names)
    out: dict[str, dict[str, object]] = {}
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, required in _imports(tree):
            if name in stdlib or name in OWN_PACKAGES or name == "__future__":
                continue
            rec = out.setdefault(name, {"required": False, "files": []})
            rec["required"] = bool(rec["required"]) or required
            rec["files"].append(str(path.relative_to(ROOT)))
    return out


def declared() -> tuple[set[str], dict[str, set[str]]]:
    project = _pyproject()["project"]
    core: set[str] = set()
    for req in project.get("dependencies", []):
        core |= _requirement_keys(req)
    extras = {}
    for extra, reqs in project.get("optional-dependencies", {}).items():
        keys: set[str] = set()
        for req in reqs:
            keys |= _requirement_keys(req)
        extras[extra] = keys
    return core, extras


def test_the_import_walk_finds_what_it_should():
    """The walker itself: module level vs. try / function, TYPE_CHECKING skipped."""
    tree = ast.parse(
        "import numpy\nfrom scipy import ndimage\nimport os.path\n"
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n"
        "try:\n    import xxhash\nexcept ImportError:\n    xxhash = None\n"
        "def f():\n    import onnx\nfrom . import sibling\n")
    assert _imports(tree) == [("numpy", True), ("scipy", True), ("os", True),
                              ("typing", True), ("xxhash", False), ("onnx", False)]
    assert _requirement_keys("dask[distributed]>=2023.1") == {"dask", "dask[distributed]"}
    assert _requirement_keys("napari[pyqt6]>=0.5") == {"napari", "napari[pyqt6]"}
    assert _distributions("PIL") == {"pillow"}
    assert "scikit-image" in _distributions("skimage")


def test_every_module_level_import_is_a_core_dependency():
    core, _ = declared()
    missing = {name: rec["files"][:3] for name, rec in imported_distributions().items()
               if rec["required"] and not (_distributions(name) & core)}
    assert not missing, (
        f"imported at module level but not in [project.dependencies]: {missing}; declare them "
        "in pyproject.toml (IMPORT_TO_DISTRIBUTION maps import names to distributions)")


def test_every_optional_import_is_a_dependency_or_an_extra():
    core, extras = declared()
    anywhere = core.union(*extras.values())
    missing = {name: rec["files"][:3] for name, rec in imported_distributions().items()
               if not (_distributions(name) & anywhere)}
    assert not missing, (
        f"imported (inside try: or a function) but declared nowhere: {missing}; add them to "
        "[project.dependencies] or to an extra in pyproject.toml")


def test_every_declared_dependency_is_imported():
    core, extras = declared()
    imported: set[str] = set()
    for name in imported_distributions():
        imported |= _distributions(name)
    bare = {k for k in core if "[" not in k}
    unused = sorted(bare - imported - set(LOADED_BY_A_DEPENDENCY))
    assert not unused, f"[project.dependencies] lists distributions src/ never imports: {unused}"
    for extra, keys in extras.items():
        if extra in TOOL_EXTRAS:
            continue
        assert keys & imported, f"extra {extra!r} installs nothing that src/ imports: {keys}"
