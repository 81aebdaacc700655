"""The shared reference walker: locations, contained resources, rewriting."""

from __future__ import annotations

from fhir_so.references import iter_references, rewrite_references

RESOURCE = {
    "resourceType": "DocumentReference",
    "subject": {"reference": "urn:uuid:p"},
    "author": [{"reference": "Practitioner/1"}, {"display": "no reference"}],
    "contained": [{"resourceType": "Patient", "id": "c", "managingOrganization": {"reference": "#org"}}],
}


def test_every_reference_with_its_location() -> None:
    assert list(iter_references(RESOURCE, "DocumentReference")) == [
        ("urn:uuid:p", "DocumentReference.subject.reference"),
        ("Practitioner/1", "DocumentReference.author[0].reference"),
        ("#org", "DocumentReference.contained[0].managingOrganization.reference"),
    ]


def test_contained_resources_can_be_left_out() -> None:
    assert [r for r, _ in iter_references(RESOURCE, skip_contained=True)] == ["urn:uuid:p", "Practitioner/1"]


def test_rewrite_replaces_only_mapped_references_and_copies() -> None:
    out = rewrite_references(RESOURCE, {"urn:uuid:p": "Patient/9"})
    assert out["subject"] == {"reference": "Patient/9"}
    assert out["author"][0] == {"reference": "Practitioner/1"}
    assert RESOURCE["subject"] == {"reference": "urn:uuid:p"}, "the input is not changed"
