"""Rules the official validator suite measured as missing: Bundle rules, extensions, sizes, schema errata."""

from __future__ import annotations

import base64
from typing import Any

from fhir_so.packages import PackageCache
from fhir_so.validation import Validator, ValidatorOptions
from tests.validation.conftest import errors, rules

PATIENT = {"resourceType": "Patient", "id": "p1", "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">p</div>'}}


def test_bundle_full_url_must_be_absolute_and_links_unique(validator: Validator) -> None:
    bundle = {
        "resourceType": "Bundle", "type": "collection",
        "link": [{"relation": "self", "url": "http://x/1"}, {"relation": "self", "url": "http://x/2"}],
        "entry": [{"fullUrl": "Patient/p1", "resource": PATIENT}, {"fullUrl": "resource:1", "resource": {**PATIENT, "id": "p2"}},
                  {"fullUrl": "http://x/fhir/Patient/other", "resource": {**PATIENT, "id": "p3"}}],
    }
    found = errors(validator.iter_issues(bundle))
    assert ("bundle-fullurl", "Bundle.entry[0]") in found
    assert ("bundle-fullurl", "Bundle.entry[2]") in found  # type and id do not match the resource
    assert not [f for f in found if f[1] == "Bundle.entry[1]"]  # resource:N has a scheme: absolute
    assert ("bundle-link", "Bundle.link[1]") in found


def test_unknown_extensions_and_their_context(validator: Validator, definitions: Any) -> None:
    unknown = {**PATIENT, "extension": [{"url": "http://other.org/ext/x", "valueString": "a"}]}
    assert ("extension-unknown", "Patient.extension[0]") in errors(validator.iter_issues(unknown))
    hl7 = {**PATIENT, "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/not-in-r4", "valueString": "a"}]}
    assert validator.is_valid(hl7)
    example = {**PATIENT, "extension": [{"url": "http://example.org/ext/x", "valueString": "a"}]}
    assert validator.is_valid(example)
    strict = Validator(definitions, options=ValidatorOptions(allow_examples=False, business_rules=False))
    assert not strict.is_valid(example)
    allowed = Validator(definitions, options=ValidatorOptions(extension_domains=("http://other.org/",), business_rules=False))
    assert allowed.is_valid(unknown)
    mothers = {"url": "http://hl7.org/fhir/StructureDefinition/humanname-mothers-family", "valueString": "Y"}
    wrong = {**PATIENT, "name": [{"family": "X", "extension": [mothers]}]}
    assert ("extension-context", "Patient.name[0]") in errors(validator.iter_issues(wrong))
    right = {**PATIENT, "name": [{"family": "X", "_family": {"extension": [mothers]}}]}
    assert "extension-context" not in rules(validator.iter_issues(right))


def test_sizes_and_resource_id(validator: Validator) -> None:
    media = {"resourceType": "Media", "status": "completed", "content": {"contentType": "text/plain", "data": base64.b64encode(b"hello").decode(), "size": 100}}
    assert ("attachment-size", "Media.content") in errors(validator.iter_issues(media))
    assert not any(r == "attachment-size" for r, _ in errors(validator.iter_issues({**media, "content": {**media["content"], "size": 5}})))
    assert ("structure", "Patient.id") in errors(validator.iter_issues({**PATIENT, "_id": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]}}))
    assert ("type", "Patient.name[0].text") in errors(validator.iter_issues({**PATIENT, "name": [{"text": "x" * (1024 * 1024 + 1)}]}))


def test_schema_enum_on_an_extensible_binding_is_an_erratum(definitions: Any) -> None:
    v = Validator(definitions, options=ValidatorOptions(json_schema=PackageCache().r4_json_schema_path(), business_rules=False))
    measure = {**PATIENT, "resourceType": "Measure", "status": "active",
               "group": [{"population": [{"criteria": {"language": "text/cql.identifier", "expression": "X"}}]}]}
    assert not errors(v.iter_issues(measure))


def test_a_relative_reference_to_two_entries_is_ambiguous(validator: Validator) -> None:
    obs = {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}}
    comp = {"resourceType": "List", "id": "l1", "status": "current", "mode": "working", "entry": [{"item": {"reference": "Observation/o1"}}]}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "http://a.org/fhir/List/l1", "resource": comp},
        {"fullUrl": "http://a.org/fhir/Observation/o1", "resource": obs},
        {"fullUrl": "http://b.org/fhir/Observation/o1", "resource": {**obs}},
    ]}
    assert ("reference-resolve", "Bundle.entry[0].resource.entry[0].item") in errors(validator.iter_issues(bundle))
    bundle["entry"].pop()
    assert "reference-resolve" not in {r for r, _ in errors(validator.iter_issues(bundle))}
