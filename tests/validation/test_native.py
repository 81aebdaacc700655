"""Native invariants agree with fhirpathpy on the same values, and each can fail and pass."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_so.validation.fhirpath import InvariantEngine
from fhir_so.validation.native import NATIVE_EXPRESSIONS, compile_simple

BUNDLE_TX = {"resourceType": "Bundle", "type": "transaction"}

# expression key -> (type path, values that hold, values that break)
SAMPLES: dict[str, tuple[str, list[Any], list[Any]]] = {
    "start.hasValue().not() or end.hasValue().not() or (start <= end)": (
        "Period", [{"start": "2024-01-01", "end": "2024-01-02"}, {"start": "2024-01"}, {"start": "2024-01-01T10:00:00Z", "end": "2024-01-01T11:00:00+00:00"}],
        [{"start": "2024-02-01", "end": "2024-01-01"}, {"start": "2024-01-01T12:00:00Z", "end": "2024-01-01T11:00:00Z"}]),
    "code.empty() or system.exists()": ("Quantity", [{"value": 1}, {"code": "mg", "system": "http://unitsofmeasure.org"}], [{"code": "mg"}]),
    "data.empty() or contentType.exists()": ("Attachment", [{"url": "http://x"}, {"data": "aGk=", "contentType": "text/plain"}], [{"data": "aGk="}]),
    "value.empty() or system.exists()": ("ContactPoint", [{"system": "phone", "value": "1"}], [{"value": "1"}]),
    "orderDetail.empty() or code.exists()": ("ServiceRequest", [{"resourceType": "ServiceRequest", "code": {"text": "x"}, "orderDetail": [{"text": "y"}]}],
                                             [{"resourceType": "ServiceRequest", "orderDetail": [{"text": "y"}]}]),
    "policy.exists() or policyRule.exists()": ("Consent", [{"resourceType": "Consent", "policyRule": {"text": "x"}}], [{"resourceType": "Consent"}]),
    "name.exists() or telecom.exists() or address.exists() or organization.exists()": ("Patient.contact", [{"name": {"text": "x"}}], [{"gender": "male"}]),
    "(identifier.count() + name.count()) > 0": ("Organization", [{"resourceType": "Organization", "name": "x"}], [{"resourceType": "Organization", "active": True}]),
    "where(use = 'home').empty()": ("Organization.telecom", [{"use": "work", "value": "1"}], [{"use": "home", "value": "1"}]),
    "total.empty() or (type = 'searchset') or (type = 'history')": ("Bundle", [{"resourceType": "Bundle", "type": "searchset", "total": 1}], [{**BUNDLE_TX, "total": 1}]),
    "entry.search.empty() or (type = 'searchset')": ("Bundle", [BUNDLE_TX], [{**BUNDLE_TX, "entry": [{"search": {"mode": "match"}}]}]),
    "resource.exists() or request.exists() or response.exists()": ("Bundle.entry", [{"request": {"method": "GET", "url": "Patient"}}], [{"fullUrl": "urn:uuid:x"}]),
    "fullUrl.exists() implies fullUrl.contains('/_history/').not()": ("Bundle.entry", [{"fullUrl": "http://x/Patient/1"}], [{"fullUrl": "http://x/Patient/1/_history/2"}]),
    "type = 'document' implies (identifier.system.exists() and identifier.value.exists())": (
        "Bundle", [{"resourceType": "Bundle", "type": "document", "identifier": {"system": "urn:x", "value": "1"}}], [{"resourceType": "Bundle", "type": "document"}]),
}

BUNDLE_RESOURCE_EXPRESSIONS = {
    "entry.all(request.exists() = (%resource.type = 'batch' or %resource.type = 'transaction' or %resource.type = 'history'))": (
        [{**BUNDLE_TX, "entry": [{"request": {"method": "POST", "url": "Patient"}}]}], [{**BUNDLE_TX, "entry": [{"fullUrl": "urn:uuid:x"}]}]),
    "(type = 'history') or entry.where(fullUrl.exists()).select(fullUrl&resource.meta.versionId).isDistinct()": (
        [{**BUNDLE_TX, "entry": [{"fullUrl": "urn:a"}, {"fullUrl": "urn:b"}]}], [{**BUNDLE_TX, "entry": [{"fullUrl": "urn:a"}, {"fullUrl": "urn:a"}]}]),
}


@pytest.fixture(scope="module")
def engine() -> InvariantEngine:
    return InvariantEngine()


@pytest.mark.parametrize("expression", sorted(SAMPLES), ids=lambda e: e[:40])
def test_native_matches_fhirpathpy(engine: InvariantEngine, expression: str) -> None:
    path, holds, breaks = SAMPLES[expression]
    native = NATIVE_EXPRESSIONS[expression]
    for value in holds:
        assert native(value) is True
        assert engine.evaluate(expression, value, path, value, value) is True, value
    for value in breaks:
        assert native(value) is False
        assert engine.evaluate(expression, value, path, value, value) is False, value


@pytest.mark.parametrize("expression", sorted(BUNDLE_RESOURCE_EXPRESSIONS), ids=lambda e: e[:40])
def test_native_bundle_rules_match_fhirpathpy(engine: InvariantEngine, expression: str) -> None:
    holds, breaks = BUNDLE_RESOURCE_EXPRESSIONS[expression]
    for value in holds:
        assert NATIVE_EXPRESSIONS[expression](value) is True
        assert engine.evaluate(expression, value, "Bundle", value, value) is True
    for value in breaks:
        assert NATIVE_EXPRESSIONS[expression](value) is False
        assert engine.evaluate(expression, value, "Bundle", value, value) is False


@pytest.mark.parametrize(
    ("expression", "value", "expected"),
    [
        ("data.exists() or url.exists()", {"url": "http://x"}, True),
        ("data.exists() or url.exists()", {"title": "x"}, False),
        ("data.exists() implies (size.exists() and hash.exists())", {"data": "aGk=", "size": 2, "hash": "x"}, True),
        ("data.exists() implies (size.exists() and hash.exists())", {"data": "aGk="}, False),
        ("dataAbsentReason.empty() or value.empty()", {"resourceType": "Observation", "valueString": "x"}, True),
        ("dataAbsentReason.empty() or value.empty()", {"resourceType": "Observation", "valueString": "x", "dataAbsentReason": {"text": "n/a"}}, False),
        ("operation.exists() xor assert.exists()", {"operation": {"type": {"code": "x"}}}, True),
        ("operation.exists() xor assert.exists()", {}, False),
        ("(low.exists() or high.exists()).not() or text.exists()", {"low": {"value": 1}}, False),
    ],
)
def test_simple_existence_invariants_compile_and_match_fhirpathpy(engine: InvariantEngine, expression: str, value: Any, expected: bool) -> None:
    pred = compile_simple(expression)
    assert pred is not None and pred(value) is expected
    assert engine.evaluate(expression, value, "Element", value, value) is expected


@pytest.mark.parametrize("expression", ["name.where(use = 'official').exists()", "count() > 1", "a.exists() or", "reference.startsWith('#')"])
def test_other_expressions_are_left_to_fhirpathpy(expression: str) -> None:
    assert compile_simple(expression) is None
