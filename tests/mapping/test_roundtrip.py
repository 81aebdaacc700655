"""parse(build(case)) == case for generated cases, and the build is deterministic."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings

from fhir_so.bundle import build_bundle, bundle_json, parse_bundle
from fhir_so.case import Case, case_from_dict, with_defaults

from tests.mapping.strategies import cases


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_generated_cases_round_trip(case: Case) -> None:
    assert parse_bundle(build_bundle(case)) == with_defaults(case)


@settings(max_examples=40, deadline=None)
@given(cases())
def test_case_json_round_trips_through_the_schema(case: Case) -> None:
    """What to_json writes, the loader (schema first) reads back as the same case."""
    assert case_from_dict(json.loads(case.to_json())) == with_defaults(case)


@settings(max_examples=30, deadline=None)
@given(cases())
def test_build_is_deterministic(case: Case) -> None:
    first = bundle_json(case)
    assert bundle_json(Case.model_validate(case.model_dump())) == first
    urls = [e["fullUrl"] for e in json.loads(first)["entry"]]
    assert len(urls) == len(set(urls)), "every entry has its own urn:uuid"
