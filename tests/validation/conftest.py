"""Fixtures for the validator tests: the seeded core R4 definitions, and an overlay for test profiles."""

from __future__ import annotations

from typing import Any, Iterable

import pytest

from fhir_so.packages import CORE_SPEC, PackageCache
from fhir_so.validation import Issue, Validator
from tests.prerequisites import need


class Overlay:
    """Definitions with extra conformance resources (test profiles) in front of the real ones."""

    def __init__(self, base: Any, extra: Iterable[dict[str, Any]]) -> None:
        self.base = base
        self.extra = {r["url"]: r for r in extra}

    def _get(self, kind: str, url: str) -> dict[str, Any] | None:
        hit = self.extra.get(url.split("|")[0])
        if hit is not None and hit["resourceType"] == kind:
            return hit
        return None

    def structure_definition(self, url: str) -> dict[str, Any] | None:
        return self._get("StructureDefinition", url) or self.base.structure_definition(url)

    def value_set(self, url: str) -> dict[str, Any] | None:
        return self._get("ValueSet", url) or self.base.value_set(url)

    def code_system(self, url: str) -> dict[str, Any] | None:
        return self._get("CodeSystem", url) or self.base.code_system(url)


@pytest.fixture(scope="session")
def definitions() -> Any:
    cache = PackageCache()
    try:
        cache.load(CORE_SPEC)
    except Exception as exc:  # the cache is seeded by ./run setup (fhir-so packages seed)
        need(f"core R4 package not seeded (fhir-so packages seed): {exc}")
    return cache.definitions()


@pytest.fixture(scope="session")
def validator(definitions: Any) -> Validator:
    return Validator(definitions)


def errors(issues: Iterable[Issue]) -> list[tuple[str, str]]:
    """(rule, location) of every error."""
    return [(i.rule, i.expression) for i in issues if i.is_error]


def warnings(issues: Iterable[Issue]) -> list[tuple[str, str]]:
    """(rule, location) of every warning."""
    return [(i.rule, i.expression) for i in issues if i.severity == "warning"]


def rules(issues: Iterable[Issue], severity: str | None = None) -> set[str]:
    return {i.rule for i in issues if severity is None or i.severity == severity}
