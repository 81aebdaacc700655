"""The client package's face: every public name importable from fhir_so.client, __all__ complete and sorted."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import fhir_so.client

PACKAGE = Path(fhir_so.client.__file__).parent
# The names fhir_so.client offered before it became a package: code elsewhere imports them.
BEFORE_THE_SPLIT = ["FHIR_JSON", "FhirClient", "FhirResponse", "RetryPolicy", "Search", "SearchEntry", "WriteResult", "parse_location"]


def test_all_is_a_sorted_literal_that_resolves() -> None:
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    literal = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets)
    )
    assert literal == sorted(literal) == fhir_so.client.__all__
    for name in literal:
        assert getattr(fhir_so.client, name) is not None


def test_all_is_complete() -> None:
    public = {n for n, v in vars(fhir_so.client).items() if not n.startswith("_") and not type(v).__name__ == "module"}
    public -= {"annotations"}
    assert public <= set(fhir_so.client.__all__), sorted(public - set(fhir_so.client.__all__))


@pytest.mark.parametrize("name", BEFORE_THE_SPLIT)
def test_names_from_before_the_split_still_import(name: str) -> None:
    assert name in fhir_so.client.__all__
    assert getattr(importlib.import_module("fhir_so.client"), name) is not None


@pytest.mark.parametrize("module", sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"))
def test_each_room_lists_its_public_names(module: str) -> None:
    loaded = importlib.import_module(f"fhir_so.client.{module}")
    assert loaded.__all__ == sorted(loaded.__all__), module
    for name in loaded.__all__:
        assert hasattr(loaded, name), f"{module}.{name}"
    assert len((PACKAGE / f"{module}.py").read_text(encoding="utf-8").splitlines()) <= 500
