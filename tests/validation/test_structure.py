"""Structure: resource type, unknown elements, arrays, cardinality, choice types, JSON types, ele-1, `_x` extensions."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_so.validation import Validator

from .conftest import errors, rules

PATIENT: dict[str, Any] = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe", "given": ["Jane"]}], "gender": "female", "birthDate": "1970-01-01"}


def test_a_good_patient_has_no_error(validator: Validator) -> None:
    assert validator.is_valid(PATIENT)
    assert errors(validator.iter_issues(PATIENT)) == []


@pytest.mark.parametrize(
    ("resource", "rule", "where"),
    [
        ({"id": "x"}, "resource-type", ""),
        ({"resourceType": "Nonsense"}, "resource-type", ""),
        ({**PATIENT, "colour": "red"}, "unknown-element", "Patient.colour"),
        ({**PATIENT, "name": {"family": "Doe"}}, "structure", "Patient.name"),
        ({**PATIENT, "gender": ["female"]}, "structure", "Patient.gender"),
        ({**PATIENT, "name": []}, "structure", "Patient.name"),
        ({**PATIENT, "birthDate": "1970-02-30"}, "type", "Patient.birthDate"),
        ({**PATIENT, "active": "true"}, "type", "Patient.active"),
        ({**PATIENT, "id": "bad_id!"}, "type", "Patient.id"),
        ({**PATIENT, "name": [{}]}, "ele-1", "Patient.name[0]"),
        ({**PATIENT, "deceasedBoolean": False, "deceasedDateTime": "2020-01-01"}, "cardinality", "Patient.deceased"),
        ({**PATIENT, "deceasedString": "yes"}, "unknown-element", "Patient.deceasedString"),
        ({**PATIENT, "maritalStatus": "M"}, "type", "Patient.maritalStatus"),
    ],
    ids=["no-type", "unknown-type", "unknown-element", "object-not-array", "array-not-single", "empty-array", "bad-date",
         "string-boolean", "bad-id", "ele-1", "two-choices", "wrong-choice-type", "primitive-for-complex"],
)
def test_structure_errors(validator: Validator, resource: dict[str, Any], rule: str, where: str) -> None:
    found = errors(validator.iter_issues(resource))
    assert any(r == rule and (not where or loc == where) for r, loc in found), found


def test_required_element_missing_is_reported_on_the_parent(validator: Validator) -> None:
    sr = {"resourceType": "ServiceRequest", "intent": "order", "subject": {"reference": "Patient/1"}}
    found = list(validator.iter_issues(sr))
    missing = [i for i in found if i.rule == "cardinality"]
    assert [(i.expression, "ServiceRequest.status" in i.message) for i in missing] == [("ServiceRequest", True)]
    assert validator.is_valid({**sr, "status": "active"})


def test_max_cardinality_in_a_backbone(validator: Validator) -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "referenceRange": [{"low": {"value": 1}, "appliesTo": [{"text": "a"}], "age": {"low": {"value": 1}}}]}
    assert validator.is_valid(obs)


def test_choice_type_is_checked_as_its_type(validator: Validator) -> None:
    ok = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": 5, "unit": "mg"}}
    bad = {**ok, "valueQuantity": {"value": "five"}}
    assert validator.is_valid(ok)
    assert ("type", "Observation.value.value") in errors(validator.iter_issues(bad))


def test_primitive_extension_alone_is_a_value(validator: Validator) -> None:
    ext = {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]}
    assert validator.is_valid({**{k: v for k, v in PATIENT.items() if k != "birthDate"}, "_birthDate": ext})
    bad = {**PATIENT, "_birthDate": {"foo": 1}}
    assert ("unknown-element", "Patient.birthDate.foo") in errors(validator.iter_issues(bad))


def test_primitive_array_with_nulls_needs_parallel_extensions(validator: Validator) -> None:
    ext = {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]}
    good = {**PATIENT, "name": [{"given": ["A", None], "_given": [None, ext]}]}
    assert validator.is_valid(good)


def test_contained_and_bundle_entries_are_validated_in_place(validator: Validator) -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": "urn:uuid:0c3f7a1e-0000-4000-8000-000000000001", "resource": {**PATIENT, "gender": "f"}}]}
    found = errors(validator.iter_issues(bundle))
    assert ("binding", "Bundle.entry[0].resource.gender") in found


def test_unknown_extension_is_information_but_unknown_modifier_is_error(validator: Validator) -> None:
    ext = [{"url": "http://example.org/ext", "valueString": "x"}]
    issues = list(validator.iter_issues({**PATIENT, "extension": ext}))
    assert "extension-unknown" in rules(issues, "information") and not errors(issues)
    assert ("extension-unknown", "Patient.modifierExtension[0]") in errors(validator.iter_issues({**PATIENT, "modifierExtension": ext}))


def test_known_extension_is_checked_against_its_definition(validator: Validator) -> None:
    url = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
    assert validator.is_valid({**PATIENT, "extension": [{"url": url, "valueAddress": {"city": "Lyon"}}]})
    bad = errors(validator.iter_issues({**PATIENT, "extension": [{"url": url, "valueString": "Lyon"}]}))
    assert any(loc.startswith("Patient.extension[0]") for _, loc in bad), bad


def test_ext_1_value_and_extensions_together(validator: Validator) -> None:
    ext = [{"url": "http://example.org/ext", "valueString": "x", "extension": [{"url": "a", "valueString": "y"}]}]
    assert ("ext-1", "Patient.extension[0]") in errors(validator.iter_issues({**PATIENT, "extension": ext}))


def test_json_schema_layer_reports_where(definitions: Any) -> None:
    from fhir_so.packages import PackageCache
    from fhir_so.validation.structure import SchemaLayer

    layer = SchemaLayer(PackageCache().r4_json_schema_path())
    assert layer.issues(dict(PATIENT), "Patient") == []
    found = layer.issues({**PATIENT, "name": {"family": 1}}, "Patient")
    assert [(i.rule, i.expression) for i in found] == [("json-schema", "Patient.name")]


def test_json_schema_layer_runs_only_when_the_walker_passes(definitions: Any) -> None:
    from fhir_so.packages import PackageCache
    from fhir_so.validation import ValidatorOptions

    v = Validator(definitions, options=ValidatorOptions(json_schema=PackageCache().r4_json_schema_path()))
    assert v.is_valid(PATIENT)
    bad = list(v.iter_issues({**PATIENT, "name": {"family": "Doe"}}))
    assert "json-schema" not in rules(bad) and ("structure", "Patient.name") in errors(bad)
