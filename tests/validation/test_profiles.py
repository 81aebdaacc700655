"""Profiles: snapshots generated from a differential, fixed/pattern, cardinality, slicing, declared and forced
profiles, the project's own profiles, and broken profiles that must fail with a ProfileError naming them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_so.errors import ProfileError
from fhir_so.packages import PackageCache
from fhir_so.terminology import PACKAGE_NAME, PACKAGE_VERSION, SD_SERVICE_REQUEST
from fhir_so.validation import Validator

from .conftest import Overlay, errors, rules
from tests.prerequisites import need

URL = "http://example.org/StructureDefinition/strict-patient"
MRN = "http://example.org/mrn"
BIRTHPLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"


def _sd(url: str, diff: list[dict[str, Any]], *, base: str = "http://hl7.org/fhir/StructureDefinition/Patient", type_: str = "Patient") -> dict[str, Any]:
    return {"resourceType": "StructureDefinition", "url": url, "name": "Test", "status": "draft", "kind": "resource", "abstract": False,
            "type": type_, "baseDefinition": base, "derivation": "constraint", "differential": {"element": diff}}


STRICT = _sd(URL, [
    {"id": "Patient.identifier", "path": "Patient.identifier", "min": 1, "slicing": {"discriminator": [{"type": "value", "path": "system"}], "rules": "open"}},
    {"id": "Patient.identifier:mrn", "path": "Patient.identifier", "sliceName": "mrn", "min": 1, "max": "1"},
    {"id": "Patient.identifier:mrn.system", "path": "Patient.identifier.system", "min": 1, "fixedUri": MRN},
    {"id": "Patient.gender", "path": "Patient.gender", "min": 1},
    {"id": "Patient.maritalStatus", "path": "Patient.maritalStatus", "patternCodeableConcept": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]}},
    {"id": "Patient.name", "path": "Patient.name", "max": "1"},
    {"id": "Patient.name.family", "path": "Patient.name.family", "min": 1},
    {"id": "Patient.telecom", "path": "Patient.telecom", "max": "0"},
    {"id": "Patient.extension", "path": "Patient.extension", "slicing": {"discriminator": [{"type": "value", "path": "url"}], "rules": "closed"}},
    {"id": "Patient.extension:birthPlace", "path": "Patient.extension", "sliceName": "birthPlace", "max": "1",
     "type": [{"code": "Extension", "profile": [BIRTHPLACE]}]},
    {"id": "Patient.deceased[x]", "path": "Patient.deceased[x]", "type": [{"code": "boolean"}]},
    {"id": "Patient.contact", "path": "Patient.contact", "slicing": {"discriminator": [{"type": "exists", "path": "organization"}], "rules": "open"},
     "constraint": [{"key": "sp-1", "severity": "error", "human": "a contact needs a name", "expression": "name.exists()"}]},
    {"id": "Patient.contact:org", "path": "Patient.contact", "sliceName": "org", "max": "1"},
    {"id": "Patient.contact:org.organization", "path": "Patient.contact.organization", "min": 1},
])

GOOD: dict[str, Any] = {"resourceType": "Patient", "meta": {"profile": [URL]}, "identifier": [{"system": MRN, "value": "42"}],
                        "gender": "female", "name": [{"family": "Doe"}]}


@pytest.fixture(scope="module")
def strict(definitions: Any) -> Validator:
    return Validator(Overlay(definitions, [STRICT]))


def test_snapshot_is_generated_from_the_differential(strict: Validator) -> None:
    plan = strict.plans.plan(URL)
    assert plan is not None and plan.type == "Patient"
    assert plan.by_id["Patient.identifier:mrn.system"].fixed == MRN
    assert plan.by_id["Patient.name.family"].min == 1
    assert strict.is_valid(GOOD), list(strict.iter_issues(GOOD))


@pytest.mark.parametrize(
    ("change", "rule", "where"),
    [
        (lambda r: r.pop("gender"), "cardinality", "Patient"),
        (lambda r: r["name"].append({"family": "Roe"}), "cardinality", "Patient.name"),
        (lambda r: r["name"][0].pop("family"), "cardinality", "Patient.name[0]"),
        (lambda r: r.update(telecom=[{"system": "phone", "value": "1"}]), "cardinality", "Patient.telecom"),
        (lambda r: r["identifier"].__setitem__(0, {"system": "http://other", "value": "1"}), "slicing-cardinality", "Patient"),
        (lambda r: r["identifier"].append({"system": MRN, "value": "43"}), "slicing-cardinality", "Patient.identifier"),
        (lambda r: r.update(maritalStatus={"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "S"}]}), "pattern", "Patient.maritalStatus"),
        (lambda r: r.update(deceasedDateTime="2020-01-01"), "unknown-element", "Patient.deceasedDateTime"),
        (lambda r: r.update(extension=[{"url": "http://example.org/other", "valueString": "x"}]), "slicing", "Patient.extension[0]"),
        (lambda r: r.update(extension=[{"url": BIRTHPLACE, "valueString": "Lyon"}]), "unknown-element", "Patient.extension[0].valueString"),
        (lambda r: r.update(contact=[{"gender": "male"}]), "sp-1", "Patient.contact[0]"),
        (lambda r: r.update(contact=[{"name": {"text": "a"}, "organization": {"display": "x"}}, {"name": {"text": "b"}, "organization": {"display": "y"}}]),
         "slicing-cardinality", "Patient.contact"),
    ],
    ids=["min", "max", "min-in-datatype", "max-0", "required-slice", "slice-max", "pattern", "choice-narrowed",
         "closed-slicing", "extension-profile", "profile-invariant", "exists-discriminator"],
)
def test_profile_rule_fails(strict: Validator, change: Any, rule: str, where: str) -> None:
    resource = copy.deepcopy(GOOD)
    change(resource)
    found = errors(strict.iter_issues(resource))
    assert (rule, where) in found, found


def test_allowed_variants_pass(strict: Validator) -> None:
    ok = copy.deepcopy(GOOD)
    ok["extension"] = [{"url": BIRTHPLACE, "valueAddress": {"city": "Lyon"}}]
    ok["identifier"].append({"system": "http://other", "value": "x"})
    ok["contact"] = [{"name": {"text": "a"}, "organization": {"display": "x"}}, {"name": {"text": "b"}}]
    ok["deceasedBoolean"] = False
    assert strict.is_valid(ok), errors(strict.iter_issues(ok))


def test_forced_profile_applies_without_meta_profile(definitions: Any) -> None:
    forced = Validator(Overlay(definitions, [STRICT]), profiles=[URL])
    bare = {k: v for k, v in GOOD.items() if k not in ("meta", "gender")}
    assert ("cardinality", "Patient") in errors(forced.iter_issues(bare))
    assert Validator(Overlay(definitions, [STRICT])).is_valid(bare)


def test_unknown_declared_profile_is_a_warning(validator: Validator) -> None:
    p = {**GOOD, "meta": {"profile": ["http://example.org/StructureDefinition/unknown"]}}
    issues = list(validator.iter_issues(p))
    assert "profile-unknown" in rules(issues, "warning") and not errors(issues)


def test_profile_of_another_type_is_an_error(strict: Validator) -> None:
    obs = {"resourceType": "Observation", "meta": {"profile": [URL]}, "status": "final", "code": {"text": "x"}}
    assert ("profile-type", "Observation") in errors(strict.iter_issues(obs))


# --- broken profiles ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profiles", "needle"),
    [
        ([_sd("http://example.org/sd/bad-slicing", [
            {"id": "Patient.identifier", "path": "Patient.identifier", "slicing": {"rules": "open"}},
            {"id": "Patient.identifier:a", "path": "Patient.identifier", "sliceName": "a"}])], "without a discriminator"),
        ([_sd("http://example.org/sd/cycle-a", [], base="http://example.org/sd/cycle-b"),
          _sd("http://example.org/sd/cycle-b", [], base="http://example.org/sd/cycle-a")], "cycle"),
        ([_sd("http://example.org/sd/no-base", [], base="http://example.org/sd/missing")], "base definition"),
    ],
    ids=["slicing-without-discriminator", "base-cycle", "missing-base"],
)
def test_broken_profile_is_a_profile_error(definitions: Any, profiles: list[dict[str, Any]], needle: str) -> None:
    v = Validator(Overlay(definitions, profiles), profiles=[profiles[0]["url"]])
    with pytest.raises(ProfileError) as info:
        v.check_profiles()
    assert profiles[0]["url"] in str(info.value) and needle in str(info.value)


def test_differential_element_missing_from_the_base_is_left_out(definitions: Any) -> None:
    """As the HL7 generator does: the element the base lacks is dropped, the rest of the profile applies."""
    sd = _sd("http://example.org/sd/bad-element", [
        {"id": "Patient.colour", "path": "Patient.colour", "min": 1},
        {"id": "Patient.name", "path": "Patient.name", "min": 1},
    ])
    v = Validator(Overlay(definitions, [sd]), profiles=[sd["url"]])
    v.check_profiles()
    assert v.plans.snapshots.ignored == {sd["url"]: ["Patient.colour"]}
    assert ("cardinality", "Patient") in errors(v.iter_issues({"resourceType": "Patient"}))
    assert not errors(v.iter_issues({"resourceType": "Patient", "name": [{"family": "X"}]}))


# --- the project's own profiles -------------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "urology-second-opinion.bundle.json"


@pytest.fixture(scope="module")
def project() -> Validator:
    cache = PackageCache()
    if (PACKAGE_NAME, PACKAGE_VERSION) not in cache.installed():
        need("the project's profiles are not built (fhir-so profiles build)")
    return Validator(cache.definitions([f"{PACKAGE_NAME}#{PACKAGE_VERSION}"]))


def _request() -> dict[str, Any]:
    bundle = orjson.loads(EXAMPLE.read_bytes())
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest")


def test_project_example_request_conforms(project: Validator) -> None:
    sr = _request()
    assert SD_SERVICE_REQUEST in sr["meta"]["profile"]
    assert project.is_valid(sr), errors(project.iter_issues(sr))


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        (lambda r: r.__setitem__("reasonCode", r["reasonCode"][1:]), "slicing-cardinality"),
        (lambda r: r["code"]["coding"][0].__setitem__("code", "12345678"), "pattern"),
        (lambda r: r.__setitem__("intent", "plan"), "fixed"),
        (lambda r: r["orderDetail"][0]["coding"][0].__setitem__("code", "by-pigeon"), "binding"),
        (lambda r: r.pop("identifier"), "cardinality"),
    ],
    ids=["no-second-opinion-code", "wrong-code", "intent-not-order", "mode-not-in-valueset", "no-case-id"],
)
def test_project_profile_catches(project: Validator, change: Any, rule: str) -> None:
    sr = _request()
    change(sr)
    assert rule in {r for r, _ in errors(project.iter_issues(sr))}


# --- slicing by type and by profile, ordered and openAtEnd (a Bundle profile) -----------------------

BUNDLE_URL = "http://example.org/StructureDefinition/patient-first-bundle"


def _bundle_profile(rules: str, ordered: bool) -> dict[str, Any]:
    return _sd(BUNDLE_URL, [
        {"id": "Bundle.entry", "path": "Bundle.entry", "min": 1,
         "slicing": {"discriminator": [{"type": "type", "path": "resource"}], "rules": rules, "ordered": ordered}},
        {"id": "Bundle.entry:patient", "path": "Bundle.entry", "sliceName": "patient", "min": 1, "max": "1"},
        {"id": "Bundle.entry:patient.resource", "path": "Bundle.entry.resource", "min": 1, "type": [{"code": "Patient"}]},
        {"id": "Bundle.entry:obs", "path": "Bundle.entry", "sliceName": "obs", "min": 0, "max": "*"},
        {"id": "Bundle.entry:obs.resource", "path": "Bundle.entry.resource", "min": 1, "type": [{"code": "Observation"}]},
    ], base="http://hl7.org/fhir/StructureDefinition/Bundle", type_="Bundle")


PAT = {"resource": {"resourceType": "Patient", "name": [{"family": "Doe"}]}}
OBS = {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}}
ORG = {"resource": {"resourceType": "Organization", "name": "x"}}


@pytest.mark.parametrize(
    ("rules_", "ordered", "entries", "problem"),
    [
        ("closed", True, [PAT, OBS, OBS], None),
        ("closed", True, [OBS], ("slicing-cardinality", "Bundle")),
        ("closed", True, [PAT, PAT], ("slicing-cardinality", "Bundle.entry")),
        ("closed", True, [PAT, ORG], ("slicing", "Bundle.entry[1]")),
        ("open", True, [PAT, ORG, OBS], None),
        ("closed", True, [OBS, PAT], ("slicing", "Bundle.entry[1]")),
        ("open", False, [OBS, PAT], None),
        ("openAtEnd", False, [PAT, ORG, OBS], ("slicing", "Bundle.entry[1]")),
        ("openAtEnd", False, [PAT, OBS, ORG], None),
    ],
    ids=["closed-ok", "missing-slice", "slice-max", "closed-extra", "open-extra", "out-of-order", "unordered-ok", "open-at-end-bad", "open-at-end-ok"],
)
def test_type_discriminator_rules_and_order(definitions: Any, rules_: str, ordered: bool, entries: list[Any], problem: tuple[str, str] | None) -> None:
    v = Validator(Overlay(definitions, [_bundle_profile(rules_, ordered)]), profiles=[BUNDLE_URL])
    found = [e for e in errors(v.iter_issues({"resourceType": "Bundle", "type": "collection", "entry": copy.deepcopy(entries)})) if e[0].startswith("slicing")]
    assert (found == []) if problem is None else (problem in found), found


def test_profile_discriminator(definitions: Any) -> None:
    profile = _sd(BUNDLE_URL, [
        {"id": "Bundle.entry", "path": "Bundle.entry", "slicing": {"discriminator": [{"type": "profile", "path": "resource"}], "rules": "closed"}},
        {"id": "Bundle.entry:strict", "path": "Bundle.entry", "sliceName": "strict", "min": 1},
        {"id": "Bundle.entry:strict.resource", "path": "Bundle.entry.resource", "type": [{"code": "Patient", "profile": [URL]}]},
    ], base="http://hl7.org/fhir/StructureDefinition/Bundle", type_="Bundle")
    v = Validator(Overlay(definitions, [profile, STRICT]), profiles=[BUNDLE_URL])
    conforming = {k: val for k, val in GOOD.items() if k != "meta"}
    assert v.is_valid({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": conforming}]})
    plain = {"resourceType": "Patient", "name": [{"family": "Doe"}]}
    found = errors(v.iter_issues({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": plain}]}))
    assert ("slicing", "Bundle.entry[0]") in found and ("slicing-cardinality", "Bundle") in found


def test_forced_profile_applies_to_bundle_entries_of_its_type(definitions: Any) -> None:
    forced = Validator(Overlay(definitions, [STRICT]), profiles=[URL])
    bare = {k: v for k, v in GOOD.items() if k not in ("meta", "gender")}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": bare}, {"resource": {"resourceType": "Organization", "name": "x"}}]}
    assert ("cardinality", "Bundle.entry[0].resource") in errors(forced.iter_issues(bundle))
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    assert ("profile-type", "Observation") in errors(forced.iter_issues(obs))


def test_reference_to_a_profile_checks_the_profile_type(definitions: Any) -> None:
    obs_profile = _sd("http://example.org/StructureDefinition/linked-obs", [
        {"id": "Observation.subject", "path": "Observation.subject", "type": [{"code": "Reference", "targetProfile": [URL]}]},
    ], base="http://hl7.org/fhir/StructureDefinition/Observation", type_="Observation")
    v = Validator(Overlay(definitions, [STRICT, obs_profile]), profiles=["http://example.org/StructureDefinition/linked-obs"])
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "urn:uuid:6f1d0d4e-1111-4000-8000-000000000001"}}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:6f1d0d4e-1111-4000-8000-000000000001", "resource": {"resourceType": "Group", "type": "person", "actual": True}},
        {"fullUrl": "urn:uuid:6f1d0d4e-1111-4000-8000-000000000002", "resource": obs}]}
    assert ("reference-target", "Bundle.entry[1].resource.subject") in errors(v.iter_issues(bundle))


def test_malformed_snapshot_is_a_profile_error(definitions: Any) -> None:
    bad = {**STRICT, "url": "http://example.org/sd/malformed", "snapshot": {"element": [{"id": "Patient", "path": "Patient"}, {"id": "Patient.name", "min": "one"}]}}
    v = Validator(Overlay(definitions, [bad]), profiles=["http://example.org/sd/malformed"])
    with pytest.raises(ProfileError) as info:
        v.check_profiles()
    assert "http://example.org/sd/malformed" in str(info.value)


def test_unresolvable_target_profile_of_a_resolved_reference_is_an_error(definitions: Any) -> None:
    missing = "http://example.org/StructureDefinition/not-loaded"
    obs_profile = _sd("http://example.org/StructureDefinition/obs-missing-target", [
        {"id": "Observation.subject", "path": "Observation.subject", "type": [{"code": "Reference", "targetProfile": [missing]}]},
    ], base="http://hl7.org/fhir/StructureDefinition/Observation", type_="Observation")
    v = Validator(Overlay(definitions, [obs_profile]), profiles=["http://example.org/StructureDefinition/obs-missing-target"])
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "urn:uuid:6f1d0d4e-1111-4000-8000-000000000001"}}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:6f1d0d4e-1111-4000-8000-000000000001", "resource": {"resourceType": "Patient"}},
        {"fullUrl": "urn:uuid:6f1d0d4e-1111-4000-8000-000000000002", "resource": obs}]}
    issues = [i for i in v.iter_issues(bundle) if i.rule == "reference-profile"]
    assert [(i.severity, i.expression, i.message) for i in issues] == [
        ("error", "Bundle.entry[1].resource.subject", f"Unable to resolve the profile reference '{missing}'")]
    # an unresolved reference (not in the Bundle) is not judged by its profile
    alone = {**obs, "subject": {"reference": "Patient/1"}}
    assert not [i for i in v.iter_issues(alone) if i.rule == "reference-profile"]
