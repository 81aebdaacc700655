"""Guards that keep the code base in shape: layers, sibling order, no circles, no private reaches, __all__.

Each guard is a function over a source tree (``check_*``) so that a test can plant a
violation in a temporary tree and prove the guard fails on it; the ``test_*`` functions run
the same checkers on the real package.
"""

from __future__ import annotations

import ast
import json
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

import fhir_so
from fhir_so.case import generated_schema

PACKAGE = Path(fhir_so.__file__).parent

# DESIGN.md: each layer imports only layers above it in this list.
LAYERS = [
    "errors", "case", "terminology", "mapping", "bundle", "consent", "packages", "validation", "client", "workflow", "server", "cli",
]
# Top-level modules that serve a layer without being one (errors-layer helpers serve every layer).
MODULE_LAYER = {
    "fhirtypes": "errors", "jsonio": "errors", "references": "errors",
    "profiles": "packages", "auth": "client", "processes": "server", "postgres": "server", "__init__": "cli",
}
# The declared graph between siblings: inside each sub-package a module may import only the
# modules listed before it (its ``__init__`` may import them all). A new module goes in its place
# here; a sub-package not listed must at least be free of import circles.
SIBLING_ORDER = {
    "mapping": ["graph", "common", "narrative", "parties", "consent", "coverage", "diagnostic_report", "document_reference", "service_request", "task"],
    "validation": [
        "findings", "primitives", "fhirpath", "snapshot", "lenient", "limits", "sources", "loading", "native", "bindings",
        "plan", "structure", "bundles", "narrative", "questionnaire", "terminology_resources", "walkstate", "extensions", "slicing", "profile",
        "rules", "outcome", "validator",
    ],
    "workflow": [
        "clock", "state", "provenance", "consent", "task", "pull", "push", "remote_validate", "run_validation", "scale_out", "profiles_install", "transfer", "batch",
        "bulk_export", "bulk_import", "status", "demo",
    ],
    "cli": ["app", "params", "common", "batch", "bulk", "convert", "exchange", "task", "packages", "profiles", "server", "status", "validate"],
}
# Known exceptions, each with the change that removes it (delete the line when that lands).
ALLOWED_EDGES: set[tuple[str, str]] = set()
ALLOWED_PRIVATE: set[tuple[str, str, str]] = set()
# Modules whose private names their own sub-package shares (one room split into files).
PRIVATE_SHARED_WITHIN = ("fhir_so.client", "fhir_so.packages", "fhir_so.validation")


@dataclass(frozen=True)
class Import:
    """One import statement's target: the module it loads, and the names taken from it."""

    module: str
    names: tuple[str, ...]
    line: int


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name -> file for every module under the package directory ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def imports_of(module: str, path: Path, known: set[str], exports: dict[str, str]) -> list[Import]:
    """Every fhir_so module ``module`` imports, in every form.

    ``import fhir_so.x``, ``from fhir_so.x import y``, ``from fhir_so import x`` (a submodule,
    or a lazily exported name resolved through ``exports``), relative imports, and
    ``importlib.import_module("fhir_so.x")`` with a literal name.
    """
    top = module.split(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [Import(a.name, (), node.lineno) for a in node.names if a.name.split(".")[0] == top]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(module, path).split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != top:
                continue
            taken = []
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in known:
                    found.append(Import(sub, (), node.lineno))
                elif target == top and alias.name in exports:
                    found.append(Import(exports[alias.name], (alias.name,), node.lineno))
                elif target == top and alias.name == "__version__":
                    continue  # a constant of the package's face, no code
                else:
                    taken.append(alias.name)
            if taken:
                found.append(Import(target, tuple(taken), node.lineno))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module":
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.split(".")[0] == top:
                found.append(Import(arg.value, (), node.lineno))
    return found


def _exports(root: Path) -> dict[str, str]:
    """The lazily exported names of the package's face (its ``_EXPORTS`` literal), if any."""
    tree = ast.parse((root / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
            value = ast.literal_eval(node.value)
            return {str(k): str(v) for k, v in value.items()}
    return {}


def layer_of(module: str) -> int:
    """The layer index of a dotted module name inside the package."""
    parts = module.split(".")
    first = parts[1] if len(parts) > 1 else "__init__"
    return LAYERS.index(MODULE_LAYER.get(first, first))


def graph(root: Path) -> dict[str, list[Import]]:
    """module -> the package modules it imports (edges to the package's face left out)."""
    names = module_names(root)
    known, exports = set(names), _exports(root)
    out = {}
    for module, path in names.items():
        edges = []
        for imp in imports_of(module, path, known, exports):
            target = imp.module
            while target not in known and "." in target:
                target = target.rpartition(".")[0]
            if target in known and target != module:
                edges.append(Import(target, imp.names, imp.line))
        out[module] = edges
    return out


def check_layers(root: Path) -> list[str]:
    """Imports that run from a layer to one below it (the package's face may import every layer)."""
    top = root.name
    bad = []
    for module, edges in graph(root).items():
        if module == top:
            continue
        mine = layer_of(module)
        for imp in edges:
            if imp.module == top:
                continue
            theirs = layer_of(imp.module)
            if theirs > mine:
                bad.append(f"{module}:{imp.line} ({LAYERS[mine]}) imports {imp.module} ({LAYERS[theirs]}), a layer below it")
    return bad


def check_siblings(root: Path, order: dict[str, list[str]] = SIBLING_ORDER) -> list[str]:
    """Imports between modules of one sub-package that break its declared order."""
    top = root.name
    bad = []
    for module, edges in graph(root).items():
        parts = module.split(".")
        if len(parts) != 3 or parts[1] not in order:
            continue
        rooms = order[parts[1]]
        if parts[2] not in rooms:
            bad.append(f"{module} is not in the declared order of {top}/{parts[1]}/ (SIBLING_ORDER)")
            continue
        for imp in edges:
            other = imp.module.split(".")
            if len(other) == 3 and other[1] == parts[1] and (module, imp.module) not in ALLOWED_EDGES:
                if other[2] not in rooms or rooms.index(other[2]) >= rooms.index(parts[2]):
                    bad.append(f"{module}:{imp.line} imports its sibling {imp.module}, declared after it")
    return bad


def check_no_circles(root: Path) -> list[str]:
    """Import circles between the package's modules (the face and the allowed edges aside)."""
    top = root.name
    edges = {m: {i.module for i in e if i.module != top and (m, i.module) not in ALLOWED_EDGES} for m, e in graph(root).items() if m != top}
    # A sub-package's __init__ re-exports its rooms: an edge from a room up to its own __init__ is a circle.
    circles: list[str] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges.get(m, ())):
            if state.get(n) == 1:
                circles.append(" -> ".join(stack[stack.index(n):] + [n]))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    return circles


def check_private_reaches(root: Path) -> list[str]:
    """``from other_module import _private``: a module using another's private name."""
    bad = []
    for module, edges in graph(root).items():
        for imp in edges:
            shared = any(module.startswith(p + ".") and imp.module.startswith(p + ".") for p in PRIVATE_SHARED_WITHIN)
            for name in imp.names:
                if name.startswith("_") and not name.startswith("__") and not shared and (module, imp.module, name) not in ALLOWED_PRIVATE:
                    bad.append(f"{module}:{imp.line} imports {imp.module}.{name}, a private name")
    return bad


def check_all_sorted(root: Path) -> list[str]:
    """Each ``__all__`` is a literal list of strings in sorted order (a computed one cannot be checked)."""
    bad = []
    for module, path in module_names(root).items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                if not isinstance(node.value, ast.List) or not all(
                    isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.value.elts
                ):
                    bad.append(f"{module}: __all__ is not a literal list of strings")
                    continue
                names = [e.value for e in node.value.elts]  # type: ignore[attr-defined]
                if names != sorted(names):
                    bad.append(f"{module}: __all__ is not sorted")
    return bad


# -- the guards on the real package --------------------------------------------------------------


def test_no_layer_imports_a_layer_below_it() -> None:
    assert check_layers(PACKAGE) == []


def test_siblings_import_in_their_declared_order() -> None:
    assert check_siblings(PACKAGE) == []


def test_the_package_has_no_import_circle() -> None:
    assert check_no_circles(PACKAGE) == []


def test_no_module_imports_another_modules_private_name() -> None:
    assert check_private_reaches(PACKAGE) == []


def test_every_all_is_a_sorted_literal() -> None:
    assert check_all_sorted(PACKAGE) == []


def test_every_module_has_a_docstring() -> None:
    missing = [m for m, p in module_names(PACKAGE).items() if not ast.get_docstring(ast.parse(p.read_text(encoding="utf-8")))]
    assert not missing, f"modules without a docstring: {missing}"


def test_all_is_complete_and_resolves() -> None:
    public = {n for n in vars(fhir_so) if not n.startswith("_") and n not in {"annotations", "importlib", "Any"}}
    public -= {m for m in public if type(getattr(fhir_so, m)).__name__ == "module"}
    assert set(fhir_so.__all__) >= public
    assert set(fhir_so.__all__) == {*fhir_so._EXPORTS, "__version__"}
    for name in fhir_so.__all__:
        assert getattr(fhir_so, name) is not None, name


def test_case_schema_file_matches_the_models() -> None:
    """Regenerate with: python -m fhir_so.case --write-schema."""
    committed = json.loads((PACKAGE / "schemas" / "case.schema.json").read_text(encoding="utf-8"))
    assert committed == generated_schema()


# A string literal that opens with a code or identifier system (prose in docstrings may name one).
SYSTEM_URI = re.compile(r"""["'](https://fhir-so\.org/fhir|http://terminology\.hl7\.org|http://loinc\.org|http://snomed\.info|http://hl7\.org/fhir/sid|urn:ietf:(bcp|rfc))""")


def check_system_uris(root: Path) -> list[str]:
    return [
        f"{path.relative_to(root.parent)}:{n}"
        for _, path in module_names(root).items()
        if path.name != "terminology.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if SYSTEM_URI.search(line)
    ]


def test_only_terminology_spells_a_system_uri() -> None:
    spelled = check_system_uris(PACKAGE)
    assert not spelled, f"system URIs outside fhir_so/terminology.py: {spelled}"


# -- each guard fails on a planted violation ------------------------------------------------------


def plant(tmp_path: Path, files: dict[str, str]) -> Path:
    """A small package ``fhir_so`` under tmp_path with the given files (docstrings added)."""
    root = tmp_path / "fhir_so"
    for name, body in {"__init__.py": "", **files}.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f'"""{name}."""\n' + textwrap.dedent(body), encoding="utf-8")
    return root


LAYER_VIOLATIONS = {
    "absolute": "from fhir_so.client import FhirClient\n",
    "plain import": "import fhir_so.client\n",
    "from the package": "from fhir_so import client\n",
    "relative": "from .client import FhirClient\n",
    "relative package": "from . import client\n",
    "lazy export": "from fhir_so import FhirClient\n",
    "import_module": "import importlib\nimportlib.import_module('fhir_so.client')\n",
    "inside a function": "def f():\n    from fhir_so.client import FhirClient\n",
}


@pytest.mark.parametrize("body", LAYER_VIOLATIONS.values(), ids=LAYER_VIOLATIONS.keys())
def test_the_layer_guard_fails_on_every_import_form(tmp_path: Path, body: str) -> None:
    root = plant(tmp_path, {"client.py": "", "case.py": body, "__init__.py": "_EXPORTS = {'FhirClient': 'fhir_so.client'}\n"})
    found = check_layers(root)
    assert len(found) == 1 and "fhir_so.case" in found[0] and "fhir_so.client" in found[0], found


def test_the_layer_guard_accepts_imports_upward(tmp_path: Path) -> None:
    root = plant(tmp_path, {"case.py": "", "client.py": "from fhir_so import case\nfrom . import errors\n", "errors.py": ""})
    assert check_layers(root) == []


def test_the_sibling_guard_fails_on_an_import_against_the_order(tmp_path: Path) -> None:
    root = plant(tmp_path, {"mapping/__init__.py": "", "mapping/graph.py": "from fhir_so.mapping.common import x\n", "mapping/common.py": ""})
    assert check_siblings(root) == ["fhir_so.mapping.graph:2 imports its sibling fhir_so.mapping.common, declared after it"]
    root = plant(tmp_path / "b", {"mapping/__init__.py": "", "mapping/extra.py": ""})
    assert check_siblings(root) == ["fhir_so.mapping.extra is not in the declared order of fhir_so/mapping/ (SIBLING_ORDER)"]


def test_the_circle_guard_fails_on_a_circle(tmp_path: Path) -> None:
    root = plant(tmp_path, {"packages/__init__.py": "", "packages/a.py": "from .b import x\n", "packages/b.py": "from fhir_so.packages import a\n"})
    assert check_no_circles(root) == ["fhir_so.packages.a -> fhir_so.packages.b -> fhir_so.packages.a"]


def test_the_private_guard_fails_on_a_private_import(tmp_path: Path) -> None:
    root = plant(tmp_path, {"case.py": "_secret = 1\n", "bundle.py": "from fhir_so.case import _secret\n"})
    assert check_private_reaches(root) == ["fhir_so.bundle:2 imports fhir_so.case._secret, a private name"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("__all__ = sorted(['b', 'a'])\n", "not a literal list"),
        ("__all__ = ['b', 'a']\n", "not sorted"),
    ],
    ids=["computed", "unsorted"],
)
def test_the_all_guard_fails(tmp_path: Path, body: str, message: str) -> None:
    found = check_all_sorted(plant(tmp_path, {"case.py": body}))
    assert len(found) == 1 and message in found[0], found


def test_the_system_uri_guard_fails(tmp_path: Path) -> None:
    root = plant(tmp_path, {"case.py": "LOINC = 'http://loinc.org'\n"})
    assert check_system_uris(root) == ["fhir_so/case.py:2"]
