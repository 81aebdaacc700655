"""References: target types, resolution inside a Bundle (urn:uuid fullUrls), reference.type agreement."""

from __future__ import annotations

from typing import Any

from fhir_so.validation import Validator

from .conftest import errors

U1 = "urn:uuid:6f1d0d4e-1111-4000-8000-000000000001"
U2 = "urn:uuid:6f1d0d4e-1111-4000-8000-000000000002"


def _bundle(obs_subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": U1, "resource": {"resourceType": "Patient", "name": [{"family": "Doe"}]}, "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": U2, "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": obs_subject}},
             "request": {"method": "POST", "url": "Observation"}},
        ],
    }


def test_urn_uuid_reference_resolves_inside_the_bundle(validator: Validator) -> None:
    assert validator.is_valid(_bundle(U1))


def test_urn_uuid_reference_not_in_the_bundle(validator: Validator) -> None:
    missing = "urn:uuid:6f1d0d4e-1111-4000-8000-000000000009"
    assert ("reference-resolve", "Bundle.entry[1].resource.subject.reference") in errors(validator.iter_issues(_bundle(missing)))


def test_reference_to_a_wrong_target_type(validator: Validator) -> None:
    b = _bundle(U1)
    b["entry"][1]["resource"]["subject"] = {"reference": U2}  # an Observation cannot be the subject
    assert ("reference-target", "Bundle.entry[1].resource.subject") in errors(validator.iter_issues(b))
    sr = {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": {"reference": "Medication/1"}}
    issues = list(validator.iter_issues(sr))
    # not resolvable: only the URL names the type, so it is advice (as in HAPI)
    assert not errors(issues) and any(i.rule == "reference-target" and i.severity == "warning" for i in issues)


def test_reference_type_must_match(validator: Validator) -> None:
    sr = {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": {"reference": "Patient/1", "type": "Group"}}
    assert ("reference-target", "ServiceRequest.subject.type") in errors(validator.iter_issues(sr))


def test_bundle_invariants(validator: Validator) -> None:
    b = _bundle(U1)
    del b["entry"][0]["request"]
    assert "bdl-3" in {r for r, _ in errors(validator.iter_issues(b))}


def test_memo_never_carries_a_reference_verdict_across_resources(validator: Validator) -> None:
    contained = {"resourceType": "Organization", "id": "o1", "name": "x"}
    ident = {"system": "urn:x", "value": "1", "assigner": {"reference": "#o1"}}
    ok = {"resourceType": "Patient", "contained": [contained], "identifier": [ident], "managingOrganization": {"reference": "#o1"}}
    assert validator.is_valid(ok)
    orphan = {"resourceType": "Patient", "identifier": [ident]}
    assert ("ref-1", "Patient.identifier[0].assigner") in errors(validator.iter_issues(orphan))


def test_the_same_coding_is_judged_the_same_everywhere(validator: Validator) -> None:
    good = {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}}
    for _ in range(3):
        assert validator.is_valid(good)
    bad = {**good, "category": [{"coding": [{"system": "http://hl7.org/fhir/administrative-gender", "code": "nonsense"}]}]}
    for _ in range(3):
        assert ("code-unknown", "Observation.category[0].coding[0].code") in errors(validator.iter_issues(bad))
