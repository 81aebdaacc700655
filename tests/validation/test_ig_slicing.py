"""What real implementation guides (IPS) need: versioned targetProfiles, slicing on resolve(), an item that fits two slices."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_so.validation import Validator

from .conftest import Overlay, errors

SD = "http://hl7.org/fhir/StructureDefinition/"
LOINC = "http://loinc.org"


def _sd(url: str, type_: str, diff: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "StructureDefinition", "url": url, "name": "Test", "status": "draft", "kind": "resource", "abstract": False,
            "type": type_, "baseDefinition": SD + type_, "derivation": "constraint", "differential": {"element": diff}}


CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"  # shipped in core R4: decided offline


def _vs(url: str, loinc: str, category: str) -> dict[str, Any]:
    include = [{"system": LOINC, "concept": [{"code": loinc}]}, {"system": CATEGORY, "concept": [{"code": category}]}]
    return {"resourceType": "ValueSet", "url": url, "status": "active", "compose": {"include": include}}


OBS_URL = "http://example.org/StructureDefinition/obs-versioned-targets"
OBS = _sd(OBS_URL, "Observation", [
    {"id": "Observation.performer", "path": "Observation.performer",
     "type": [{"code": "Reference", "targetProfile": [SD + "Practitioner|4.0.1", SD + "Organization|4.0.1"]}]},
    {"id": "Observation.hasMember", "path": "Observation.hasMember", "type": [{"code": "Reference", "targetProfile": [SD + "vitalsigns"]}]},
])


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": f"urn:uuid:6f1d0d4e-2222-4000-8000-00000000000{i}", "resource": r} for i, r in enumerate(resources)]}


def _obs(**more: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, **more}


@pytest.mark.parametrize(
    ("target", "field", "bad"),
    [
        ({"resourceType": "Practitioner"}, "performer", False),
        ({"resourceType": "Organization", "name": "x"}, "performer", False),
        ({"resourceType": "Patient"}, "performer", True),
        (_obs(), "hasMember", False),  # a core profile (vitalsigns) names its type through its plan, not its URL
        ({"resourceType": "Patient"}, "hasMember", True),
    ],
    ids=["versioned-practitioner", "versioned-organization", "versioned-wrong-type", "core-profile-target", "core-profile-wrong-type"],
)
def test_target_profiles_with_a_version_name_their_type(definitions: Any, target: dict[str, Any], field: str, bad: bool) -> None:
    v = Validator(Overlay(definitions, [OBS]), profiles=[OBS_URL])
    ref = {"reference": "urn:uuid:6f1d0d4e-2222-4000-8000-000000000000"}
    obs = _obs(**{field: [ref]})
    found = [e for e in errors(v.iter_issues(_bundle(target, obs))) if e[0] == "reference-target"]
    assert found == ([("reference-target", f"Bundle.entry[1].resource.{field}[0]")] if bad else []), found


BUNDLE_URL = "http://example.org/StructureDefinition/two-obs-slices"
EDD_URL, OUTCOME_URL = "http://example.org/StructureDefinition/edd", "http://example.org/StructureDefinition/outcome"


def _coded_obs_profile(url: str, vs_url: str) -> dict[str, Any]:
    return _sd(url, "Observation", [
        {"id": "Observation.code", "path": "Observation.code", "binding": {"strength": "required", "valueSet": vs_url}},
    ])


def _two_slices_bundle_profile() -> dict[str, Any]:
    return {**_sd(BUNDLE_URL, "Bundle", [
        {"id": "Bundle.entry", "path": "Bundle.entry",
         "slicing": {"discriminator": [{"type": "type", "path": "resource"}, {"type": "profile", "path": "resource"}], "rules": "open"}},
        {"id": "Bundle.entry:edd", "path": "Bundle.entry", "sliceName": "edd"},
        {"id": "Bundle.entry:edd.resource", "path": "Bundle.entry.resource", "type": [{"code": "Observation", "profile": [EDD_URL]}]},
        {"id": "Bundle.entry:outcome", "path": "Bundle.entry", "sliceName": "outcome"},
        {"id": "Bundle.entry:outcome.resource", "path": "Bundle.entry.resource", "type": [{"code": "Observation", "profile": [OUTCOME_URL]}]},
    ])}


@pytest.fixture(scope="module")
def two_slices(definitions: Any) -> Validator:
    extra = [
        _two_slices_bundle_profile(),
        _coded_obs_profile(EDD_URL, "http://example.org/ValueSet/edd"), _vs("http://example.org/ValueSet/edd", "11778-8", "vital-signs"),
        _coded_obs_profile(OUTCOME_URL, "http://example.org/ValueSet/outcome"), _vs("http://example.org/ValueSet/outcome", "11636-8", "laboratory"),
    ]
    return Validator(Overlay(definitions, extra), profiles=[BUNDLE_URL])


@pytest.mark.parametrize(
    ("code", "multiple"),
    [
        ({"coding": [{"system": CATEGORY, "code": "vital-signs"}]}, False),
        ({"coding": [{"system": CATEGORY, "code": "laboratory"}]}, False),
        ({"coding": [{"system": CATEGORY, "code": "imaging"}]}, False),  # fits neither: decided offline
        # the HL7 validator cannot decide LOINC membership offline, so a LOINC code fits both (even one listed in one)
        ({"coding": [{"system": LOINC, "code": "29463-7"}]}, True),
        ({"coding": [{"system": LOINC, "code": "11778-8"}]}, True),
    ],
    ids=["fits-edd", "fits-outcome", "fits-none", "loinc-unknown-offline", "loinc-listed"],
)
def test_an_item_that_surely_fits_two_slices_is_an_error(two_slices: Validator, code: dict[str, Any], multiple: bool) -> None:
    found = errors(two_slices.iter_issues(_bundle(_obs(code=code))))
    assert (("slicing-multiple", "Bundle.entry[0]") in found) is multiple, found
    if multiple:  # checked against the sliced element only, not against a slice it was arbitrarily given
        assert [e for e in found if e[0] == "binding"] == [], found


COMP_URL = "http://example.org/StructureDefinition/comp-resolve"


def test_a_profile_discriminator_on_resolve_follows_the_reference_in_the_bundle(definitions: Any) -> None:
    comp = _sd(COMP_URL, "Composition", [
        {"id": "Composition.section.entry", "path": "Composition.section.entry",
         "slicing": {"discriminator": [{"type": "profile", "path": "resolve()"}], "rules": "open"}},
        {"id": "Composition.section.entry:edd", "path": "Composition.section.entry", "sliceName": "edd", "max": "1",
         "type": [{"code": "Reference", "targetProfile": [EDD_URL]}]},
        {"id": "Composition.section.entry:outcome", "path": "Composition.section.entry", "sliceName": "outcome", "min": 1, "max": "1",
         "type": [{"code": "Reference", "targetProfile": [OUTCOME_URL]}]},
    ])
    extra = [comp, _coded_obs_profile(EDD_URL, "http://example.org/ValueSet/edd"), _vs("http://example.org/ValueSet/edd", "11778-8", "vital-signs"),
             _coded_obs_profile(OUTCOME_URL, "http://example.org/ValueSet/outcome"), _vs("http://example.org/ValueSet/outcome", "11636-8", "laboratory")]
    v = Validator(Overlay(definitions, extra), profiles=[COMP_URL])
    edd, outcome = (_obs(code={"coding": [{"system": CATEGORY, "code": c}]}) for c in ("vital-signs", "laboratory"))
    refs = [{"reference": "urn:uuid:6f1d0d4e-2222-4000-8000-000000000001"}, {"reference": "urn:uuid:6f1d0d4e-2222-4000-8000-000000000002"}]
    composition = {"resourceType": "Composition", "status": "final", "type": {"text": "x"}, "date": "2024-01-01", "author": [{"display": "x"}],
                   "title": "x", "section": [{"title": "s", "entry": refs}]}
    good = _bundle(composition, edd, outcome)
    assert [e for e in errors(v.iter_issues(good)) if e[0].startswith("slicing")] == []
    # both entries resolve to EDD observations: one too many for 'edd', none for 'outcome' (before, resolve() was
    # not followed and every entry fell into the first slice)
    bad = _bundle(composition, edd, edd)
    found = [e for e in errors(v.iter_issues(bad)) if e[0].startswith("slicing")]
    assert sorted(found) == [("slicing-cardinality", "Bundle.entry[0].resource.section[0]"), ("slicing-cardinality", "Bundle.entry[0].resource.section[0].entry")], found
