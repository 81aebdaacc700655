"""The fhir_so.packages package: its public face is complete and sorted, and no room reaches into another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import fhir_so.packages as packages

ROOT = Path(packages.__file__).parent


def test_all_is_sorted_complete_and_resolves() -> None:
    assert packages.__all__ == sorted(packages.__all__)
    public = {n for n, v in vars(packages).items() if not n.startswith("_") and n != "annotations" and type(v).__name__ != "module"}
    assert set(packages.__all__) == public
    for name in packages.__all__:
        assert getattr(packages, name) is not None, name


def private_imports(tree: ast.AST) -> list[str]:
    """Names with a leading underscore imported from another fhir_so module, or read off one as an attribute."""
    found = []
    own = {"self", "cls"} | {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fhir_so"):
            found += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            # self._x, cls._x and a class of this module are its own business; pkg._reader is not
            if not (isinstance(base, ast.Name) and base.id in own):
                found.append(f"{ast.unparse(base)}.{node.attr}")
    return found


def test_no_module_uses_a_private_name_of_another() -> None:
    offenders = {p.name: private_imports(ast.parse(p.read_text(encoding="utf-8"))) for p in sorted(ROOT.glob("*.py"))}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, offenders


def test_the_guard_catches_a_planted_violation() -> None:
    planted = ast.parse("from fhir_so.packages.model import _str_or_none\ndef f(pkg):\n    return pkg._reader('x')\n")
    assert private_imports(planted) == ["fhir_so.packages.model._str_or_none", "pkg._reader"]


# The rooms of fhir_so.packages in order: each imports only rooms before it (no import circle).
ROOMS = ["versions", "model", "schema", "folder", "archive", "definitions", "seed", "registry", "cache", "install"]


def room_imports(tree: ast.AST) -> set[str]:
    """The rooms of fhir_so.packages a module imports, whatever the form of the import."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 1:  # from .x import y / from . import x
                found |= {module.split(".")[0]} if module else {a.name for a in node.names}
            elif module.startswith("fhir_so.packages."):
                found.add(module.split(".")[2])
            elif module == "fhir_so.packages":
                found |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("fhir_so.packages.")}
    return found & set(ROOMS)


def test_every_room_is_declared_and_imports_only_earlier_rooms() -> None:
    assert sorted(p.stem for p in ROOT.glob("*.py") if p.stem != "__init__") == sorted(ROOMS)
    for room in ROOMS:
        used = room_imports(ast.parse((ROOT / f"{room}.py").read_text(encoding="utf-8")))
        later = {u for u in used if ROOMS.index(u) >= ROOMS.index(room)}
        assert not later, f"fhir_so.packages.{room} imports {sorted(later)}, which come after it"


def test_the_room_guard_catches_planted_imports() -> None:
    assert room_imports(ast.parse("from fhir_so.packages.cache import PackageCache\nfrom .install import x\nimport fhir_so.packages.seed")) == {"cache", "install", "seed"}
