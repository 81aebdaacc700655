"""Invariants: native ones (ele-1, ext-1, dom-2..6, ref-1, per-1...) and FHIRPath ones through fhirpathpy, compiled once."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_so.validation import Validator
from fhir_so.validation.fhirpath import InvariantEngine

from .conftest import errors, rules

PATIENT: dict[str, Any] = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe"}]}


def test_per_1_period_order(validator: Validator) -> None:
    bad = {**PATIENT, "name": [{"family": "Doe", "period": {"start": "2024-02-01", "end": "2024-01-01"}}]}
    assert ("per-1", "Patient.name[0].period") in errors(validator.iter_issues(bad))
    good = {**PATIENT, "name": [{"family": "Doe", "period": {"start": "2024-01", "end": "2024-02-15"}}]}
    assert validator.is_valid(good)
    # equal at the coarser precision: undecidable in FHIRPath, a failure for the HL7 validator (official suite: encounter-period)
    undecidable = {**PATIENT, "name": [{"family": "Doe", "period": {"start": "2023-06-21", "end": "2023-06-21T06:20:00Z"}}]}
    assert ("per-1", "Patient.name[0].period") in errors(validator.iter_issues(undecidable))


def test_dom_2_and_dom_3_contained(validator: Validator) -> None:
    org = {"resourceType": "Organization", "id": "o1", "name": "Clinic"}
    referenced = {**PATIENT, "contained": [org], "managingOrganization": {"reference": "#o1"}}
    assert validator.is_valid(referenced)
    orphan = {**PATIENT, "contained": [org]}
    assert ("dom-3", "Patient.contained[0]") in errors(validator.iter_issues(orphan))
    nested = {**PATIENT, "contained": [{**org, "contained": [{"resourceType": "Organization", "id": "o2", "name": "x"}]}], "managingOrganization": {"reference": "#o1"}}
    assert ("dom-2", "Patient.contained[0]") in errors(validator.iter_issues(nested))


def test_contained_resource_needs_an_id(validator: Validator) -> None:
    orphan = {**PATIENT, "contained": [{"resourceType": "Organization", "name": "Clinic"}]}
    assert ("contained-id", "Patient.contained[0]") in errors(validator.iter_issues(orphan))


def test_dom_4_and_dom_5(validator: Validator) -> None:
    org = {"resourceType": "Organization", "id": "o1", "name": "Clinic", "meta": {"versionId": "1", "security": [{"code": "R"}]}}
    found = rules(validator.iter_issues({**PATIENT, "contained": [org], "managingOrganization": {"reference": "#o1"}}), "error")
    assert {"dom-4", "dom-5"} <= found


def test_dom_6_narrative_is_a_warning(validator: Validator) -> None:
    issues = list(validator.iter_issues(PATIENT))
    assert "dom-6" in rules(issues, "warning")
    with_text = {**PATIENT, "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Jane</div>'}}
    assert "dom-6" not in rules(validator.iter_issues(with_text))


def test_txt_2_empty_narrative(validator: Validator) -> None:
    empty = {**PATIENT, "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"> </div>'}}
    assert "txt-2" in rules(validator.iter_issues(empty), "error")


def test_ref_1_contained_reference_must_resolve(validator: Validator) -> None:
    assert ("ref-1", "Patient.managingOrganization") in errors(validator.iter_issues({**PATIENT, "managingOrganization": {"reference": "#nowhere"}}))


def test_fhirpath_invariant_through_fhirpathpy(validator: Validator) -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueString": "a",
           "dataAbsentReason": {"text": "n/a"}}
    assert ("obs-6", "Observation") in errors(validator.iter_issues(obs))
    assert validator.is_valid({k: v for k, v in obs.items() if k != "dataAbsentReason"})


def test_fhirpath_ignores_primitive_extensions_in_comparisons(validator: Validator) -> None:
    ext = {"extension": [{"url": "http://example.org/e", "valueString": "x"}]}
    obs = {"resourceType": "Observation", "status": "final", "_status": ext, "code": {"text": "x"}, "valueString": "a"}
    assert not errors(validator.iter_issues(obs))


@pytest.mark.parametrize(("value", "expected"), [({"a": 1}, False), ("x", True)])
def test_has_value_is_available(value: Any, expected: bool) -> None:
    engine = InvariantEngine()
    assert engine.evaluate("hasValue()", value, "string", {}, {}) is expected


def test_expressions_are_compiled_once_and_unsupported_ones_skipped() -> None:
    engine = InvariantEngine()
    fn = engine.compiled("name.exists()")
    assert fn is not None and engine.compiled("name.exists()") is fn
    assert engine.evaluate("subject.resolve().exists()", {}, "Observation", {}, {}) is None
    assert "resolve" in engine.skipped["subject.resolve().exists()"]
    assert engine.evaluate("trace('x').exists()", {"a": 1}, "Element", {}, {}) is True  # trace prints nothing


def test_contained_resources_refer_to_each_other(validator: Validator) -> None:
    org = {"resourceType": "Organization", "id": "o1", "name": "Clinic"}
    prac = {"resourceType": "Practitioner", "id": "d1", "name": [{"family": "Who"}]}
    role = {"resourceType": "PractitionerRole", "id": "r1", "practitioner": {"reference": "#d1"}, "organization": {"reference": "#o1"}}
    sr = {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": {"reference": "Patient/1"},
          "contained": [org, prac, role], "performer": [{"reference": "#r1"}]}
    assert errors(validator.iter_issues(sr)) == []
