"""Guards that keep the code base in shape: the layer contract, __all__, the case schema file."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

import fhir_so
from fhir_so.case import generated_schema

PACKAGE = Path(fhir_so.__file__).parent

# DESIGN.md: each layer imports only layers above it in this list (errors/jsonio serve all).
LAYERS = ["errors", "case", "terminology", "mapping", "bundle", "consent", "packages", "validation", "client", "workflow", "server", "cli"]
MODULE_LAYER = {"jsonio": "errors", "references": "errors", "profiles": "packages", "auth": "client", "__init__": "cli"}


def layer_of(module: str) -> int:
    """The layer index of a dotted module name inside fhir_so."""
    first = module.split(".")[1] if module.count(".") else "__init__"
    return LAYERS.index(MODULE_LAYER.get(first, first))


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1 and parts[:-1] != ["fhir_so"]:
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return {n for n in names if n.startswith("fhir_so.")}


@pytest.mark.parametrize(("module", "path"), modules(), ids=[m for m, _ in modules()])
def test_no_layer_imports_a_layer_below_it(module: str, path: Path) -> None:
    if module == "fhir_so":
        pytest.skip("the package's public face re-exports every layer")
    mine = layer_of(module)
    for name in imported(path):
        try:
            theirs = layer_of(name)
        except ValueError:
            continue  # a name imported from a module (fhir_so.x.func): its module is checked too
        assert theirs <= mine, f"{module} ({LAYERS[mine]}) imports {name} ({LAYERS[theirs]}), a layer below it"


def test_every_module_has_a_docstring() -> None:
    missing = [m for m, p in modules() if not ast.get_docstring(ast.parse(p.read_text(encoding="utf-8")))]
    assert not missing, f"modules without a docstring: {missing}"


def test_all_is_complete_sorted_and_resolves() -> None:
    public = {n for n in vars(fhir_so) if not n.startswith("_") and n not in {"annotations", "importlib", "Any"}}
    public -= {m for m in public if type(getattr(fhir_so, m)).__name__ == "module"}
    assert fhir_so.__all__ == sorted(fhir_so.__all__)
    assert set(fhir_so.__all__) >= public
    for name in fhir_so.__all__:
        assert getattr(fhir_so, name) is not None, name


def test_case_schema_file_matches_the_models() -> None:
    """Regenerate with: python -m fhir_so.case --write-schema."""
    committed = json.loads((PACKAGE / "schemas" / "case.schema.json").read_text(encoding="utf-8"))
    assert committed == generated_schema()


# A string literal that opens with a code or identifier system (prose in docstrings may name one).
SYSTEM_URI = re.compile(r"""["'](https://fhir-so\.org/fhir|http://terminology\.hl7\.org|http://loinc\.org|http://snomed\.info|http://hl7\.org/fhir/sid|urn:ietf:(bcp|rfc))""")


def test_only_terminology_spells_a_system_uri() -> None:
    spelled = [
        f"{path.relative_to(PACKAGE.parent)}:{n}"
        for _, path in modules()
        if path.name != "terminology.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if SYSTEM_URI.search(line)
    ]
    assert not spelled, f"system URIs outside fhir_so/terminology.py: {spelled}"
