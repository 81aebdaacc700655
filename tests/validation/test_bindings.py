"""Bindings: required -> error, extensible -> warning, preferred -> information; offline systems; unknown codes."""

from __future__ import annotations

from typing import Any

from fhir_so.validation import Validator
from fhir_so.validation.bindings import Terminology

from .conftest import errors, rules, warnings

OBS: dict[str, Any] = {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}}


def test_required_code_outside_the_value_set_is_an_error(validator: Validator) -> None:
    assert ("binding", "Observation.status") in errors(validator.iter_issues({**OBS, "status": "done"}))
    assert validator.is_valid(OBS)


def test_required_codeable_concept(validator: Validator) -> None:
    system = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
    allergy = {"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/1"}, "clinicalStatus": {"coding": [{"system": system, "code": "active"}]}}
    assert validator.is_valid(allergy)
    bad = {**allergy, "clinicalStatus": {"coding": [{"system": "http://example.org/other", "code": "x"}]}}
    assert ("binding", "AllergyIntolerance.clinicalStatus.coding") in errors(validator.iter_issues(bad))


CONSENT: dict[str, Any] = {
    "resourceType": "Consent", "status": "active", "patient": {"reference": "Patient/1"},
    "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
    "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
    "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentpolicycodes", "code": "hipaa-auth"}]},
}


def test_extensible_binding_is_a_warning(validator: Validator) -> None:
    assert "binding" not in rules(validator.iter_issues(CONSENT))
    bad = {**CONSENT, "scope": {"coding": [{"system": "http://example.org/other", "code": "x"}]}}
    issues = list(validator.iter_issues(bad))
    assert "binding" in rules(issues, "warning")
    assert not errors(issues)


def test_preferred_binding_is_information(validator: Validator) -> None:
    obs = {**OBS, "category": [{"coding": [{"system": "http://example.org/cat", "code": "x"}]}]}
    issues = list(validator.iter_issues(obs))
    assert "binding" in rules(issues, "information")
    assert not errors(issues)


def test_snomed_and_loinc_are_checked_for_form_only_and_say_so(validator: Validator) -> None:
    report = {"resourceType": "DiagnosticReport", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "11488-4"}]}}
    issues = list(validator.iter_issues(report))
    assert any(i.rule == "binding-offline" and i.severity == "information" and "offline" in i.message for i in issues)
    assert not errors(issues)
    bad = {**OBS, "code": {"coding": [{"system": "http://loinc.org", "code": "not-a-loinc"}]}}
    assert ("code-form", "Observation.code.coding[0].code") in warnings(validator.iter_issues(bad))
    snomed = {**OBS, "bodySite": {"coding": [{"system": "http://snomed.info/sct", "code": "abc"}]}}
    assert ("code-form", "Observation.bodySite.coding[0].code") in warnings(validator.iter_issues(snomed))


def test_mime_type_form_in_a_required_binding_is_a_warning(validator: Validator) -> None:
    doc = {"resourceType": "DocumentReference", "status": "current", "content": [{"attachment": {"contentType": "not a mime type", "url": "http://x/y"}}]}
    assert ("code-form", "DocumentReference.content[0].attachment.contentType") in warnings(validator.iter_issues(doc))
    doc["content"][0]["attachment"]["contentType"] = "application/pdf"
    assert "code-form" not in rules(validator.iter_issues(doc))


def test_unknown_code_in_a_local_code_system(validator: Validator) -> None:
    # (terminology.hl7.org systems are the exception: core's copies are old, see test_terminology.py)
    obs = {**OBS, "category": [{"coding": [{"system": "http://hl7.org/fhir/administrative-gender", "code": "nonsense"}]}]}
    assert ("code-unknown", "Observation.category[0].coding[0].code") in errors(validator.iter_issues(obs))


def test_expansions_are_cached_frozensets(definitions: Any) -> None:
    term = Terminology(definitions)
    first = term.expand("http://hl7.org/fhir/ValueSet/administrative-gender")
    assert first is not None and isinstance(first.pairs, frozenset)
    assert ("http://hl7.org/fhir/administrative-gender", "female") in first.pairs
    assert term.expand("http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1") is first
    assert term.expand("http://example.org/no-such-vs") is None
