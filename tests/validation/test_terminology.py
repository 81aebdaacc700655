"""Terminology offline: displays, filters on local CodeSystems, supplements, and CodeSystem / ValueSet definition checks."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_so.validation import Validator
from fhir_so.validation.bindings import Terminology

from .conftest import Overlay, errors, rules, warnings

CS_URL = "http://example.org/fhir/CodeSystem/colours"
COLOURS: dict[str, Any] = {
    "resourceType": "CodeSystem", "url": CS_URL, "status": "active", "content": "complete", "caseSensitive": True,
    "hierarchyMeaning": "is-a",
    "property": [
        {"code": "warm", "type": "boolean"},
        {"code": "family", "type": "code"},
        {"code": "notSelectable", "uri": "http://hl7.org/fhir/concept-properties#notSelectable", "type": "boolean"},
    ],
    "concept": [
        {"code": "red", "display": "Red", "designation": [{"value": "Rouge"}], "property": [{"code": "warm", "valueBoolean": True}, {"code": "family", "valueCode": "primary"}],
         "concept": [{"code": "crimson", "display": "Crimson", "property": [{"code": "warm", "valueBoolean": True}]}]},
        {"code": "blue", "display": "Blue", "property": [{"code": "warm", "valueBoolean": False}, {"code": "family", "valueCode": "primary"}]},
        {"code": "teal", "display": "Teal", "property": [{"code": "notSelectable", "valueBoolean": True}]},
    ],
}


def vs(url: str, *filters: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "ValueSet", "url": url, "status": "active", "compose": {"include": [{"system": CS_URL, "filter": list(filters)}]}}


@pytest.fixture(scope="module")
def tx(definitions: Any) -> Terminology:
    sets = [
        vs("http://example.org/vs/warm", {"property": "warm", "op": "=", "value": "true"}),
        vs("http://example.org/vs/red-family", {"property": "concept", "op": "is-a", "value": "red"}),
        vs("http://example.org/vs/below-red", {"property": "concept", "op": "descendent-of", "value": "red"}),
        vs("http://example.org/vs/regex", {"property": "code", "op": "regex", "value": "b.*"}),
        vs("http://example.org/vs/has-family", {"property": "family", "op": "exists", "value": "true"}),
        vs("http://example.org/vs/in", {"property": "concept", "op": "in", "value": "red,teal"}),
        vs("http://example.org/vs/not-in", {"property": "concept", "op": "not-in", "value": "red,teal"}),
        vs("http://example.org/vs/family-in", {"property": "family", "op": "in", "value": "primary,other"}),
    ]
    return Terminology(Overlay(definitions, [COLOURS, *sets]))


@pytest.mark.parametrize(
    ("url", "codes"),
    [
        ("http://example.org/vs/warm", {"red", "crimson"}),
        ("http://example.org/vs/red-family", {"red", "crimson"}),
        ("http://example.org/vs/below-red", {"crimson"}),
        ("http://example.org/vs/regex", {"blue"}),
        ("http://example.org/vs/has-family", {"red", "blue"}),
        ("http://example.org/vs/in", {"red", "teal"}),
        ("http://example.org/vs/not-in", {"crimson", "blue"}),
        ("http://example.org/vs/family-in", {"red", "blue"}),
    ],
    ids=["property-equals", "is-a", "descendent-of", "regex", "exists", "in", "not-in", "property-in"],
)
def test_filters_on_a_local_code_system(tx: Terminology, url: str, codes: set[str]) -> None:
    exp = tx.expand(url)
    assert exp is not None and not exp.open_systems
    assert {c for _, c in exp.pairs} == codes


def test_a_filter_on_an_unknown_system_stays_open(tx: Terminology, definitions: Any) -> None:
    snomed = {"resourceType": "ValueSet", "url": "http://example.org/vs/sct", "status": "active", "compose": {"include": [{"system": "http://snomed.info/sct", "filter": [{"property": "concept", "op": "is-a", "value": "404684003"}]}]}}
    exp = Terminology(Overlay(definitions, [snomed])).expand("http://example.org/vs/sct")
    assert exp is not None and exp.contains("http://snomed.info/sct", "22298006") is None


def test_expand_a_value_set_given_as_a_resource(tx: Terminology) -> None:
    exp = tx.expand_resource({"resourceType": "ValueSet", "id": "x", "compose": {"include": [{"system": CS_URL, "concept": [{"code": "red"}]}]}})
    assert exp is not None and exp.contains(CS_URL, "red") and exp.contains(CS_URL, "blue") is False


def test_display_checks_on_a_local_code_system(tx: Terminology) -> None:
    assert list(tx.check_coding({"system": CS_URL, "code": "red", "display": "Red"}, "X")) == []
    assert list(tx.check_coding({"system": CS_URL, "code": "red", "display": "  rouge "}, "X")) == [], "designations count, case and spacing aside"
    wrong = list(tx.check_coding({"system": CS_URL, "code": "red", "display": "Green"}, "X"))
    assert [(i.rule, i.expression, i.severity) for i in wrong] == [("display", "X.display", "error")]
    assert "Wrong Display Name 'Green'" in wrong[0].message and "Valid display is 'Red'" in wrong[0].message
    assert [i.rule for i in tx.check_coding({"system": CS_URL, "code": "purple"}, "X")] == ["code-unknown"]


def test_core_display_check_in_a_resource(validator: Validator) -> None:
    gender = {"system": "http://hl7.org/fhir/administrative-gender", "code": "male"}
    ok = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueCodeableConcept": {"coding": [{**gender, "display": "Male"}]}}
    assert not errors(validator.iter_issues(ok))
    bad = {**ok, "valueCodeableConcept": {"coding": [{**gender, "display": "Female"}]}}
    assert ("display", "Observation.value.coding[0].display") in errors(validator.iter_issues(bad))


def test_a_coding_cannot_name_a_supplement(definitions: Any) -> None:
    supplement = {"resourceType": "CodeSystem", "url": "http://example.org/supp", "status": "active", "content": "supplement", "supplements": CS_URL, "concept": [{"code": "red"}]}
    v = Validator(Overlay(definitions, [COLOURS, supplement]))
    obs = {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "http://example.org/supp", "code": "red"}]}}
    assert ("code-supplement", "Observation.code.coding[0].system") in errors(v.iter_issues(obs))


# -- CodeSystem definitions ----------------------------------------------------------------------------

def cs_issues(definitions: Any, cs: dict[str, Any]) -> list[Any]:
    v = Validator(Overlay(definitions, [COLOURS]))
    return [i for i in v.iter_issues(cs) if i.rule.startswith("cs-")]


def test_a_clean_code_system_passes(definitions: Any) -> None:
    assert cs_issues(definitions, {**COLOURS, "url": "http://example.org/other", "count": 4}) == []


def test_duplicate_codes(definitions: Any) -> None:
    cs = {**COLOURS, "url": "http://example.org/dup", "property": [], "concept": [{"code": "a", "display": "A"}, {"code": "b", "display": "B", "concept": [{"code": "a", "display": "A2"}]}]}
    assert ("cs-duplicate-code", "CodeSystem.concept[1].concept[0]") in errors(cs_issues(definitions, cs))


def test_count_must_match_a_complete_code_system(definitions: Any) -> None:
    wrong = cs_issues(definitions, {**COLOURS, "url": "http://example.org/x", "count": 9})
    assert ("cs-count", "CodeSystem.count") in errors(wrong)
    fragment = cs_issues(definitions, {**COLOURS, "url": "http://example.org/x", "content": "fragment", "count": 2})
    assert ("cs-count", "CodeSystem.count") in warnings(fragment) and not errors(fragment)
    empty = cs_issues(definitions, {"resourceType": "CodeSystem", "url": "http://example.org/e", "status": "active", "content": "complete", "caseSensitive": True})
    assert "cs-count" in rules(empty, "warning")


def test_supplement_rules(definitions: Any) -> None:
    good = {"resourceType": "CodeSystem", "url": "http://example.org/supp", "status": "active", "content": "supplement", "supplements": CS_URL, "concept": [{"code": "red", "designation": [{"language": "fr", "value": "Rouge"}]}]}
    assert not errors(cs_issues(definitions, good))
    not_in_base = cs_issues(definitions, {**good, "concept": [{"code": "mauve"}]})
    assert ("cs-supplement", "CodeSystem.concept[0]") in errors(not_in_base)
    wrong_content = cs_issues(definitions, {**good, "content": "complete"})
    assert ("cs-supplement", "CodeSystem.content") in errors(wrong_content)
    no_base = {**good}
    del no_base["supplements"]
    assert ("cs-supplement", "CodeSystem.content") in errors(cs_issues(definitions, no_base))


def test_property_declarations_and_values(definitions: Any) -> None:
    cs = {
        "resourceType": "CodeSystem", "url": "http://example.org/props", "status": "active", "content": "complete", "caseSensitive": True,
        "property": [
            {"code": "notSelectable", "uri": "http://hl7.org/fhir/concept-properties#notSelectable", "type": "dateTime"},
            {"code": "notSelectable", "uri": "http://example.org/p2", "type": "boolean"},
            {"code": "other", "uri": "http://example.org/p2", "type": "string"},
            {"code": "inactive", "uri": "http://hl7.org/fhir/concept-properties#deprecationDate", "type": "dateTime"},
            {"code": "rel", "uri": "not-absolute", "type": "code"},
        ],
        "concept": [{"code": "a", "display": "A", "property": [{"code": "notSelectable", "valueBoolean": True}, {"code": "undeclared", "valueString": "x"}, {"code": "other"}]}],
    }
    issues = cs_issues(definitions, cs)
    text = [i.message for i in issues if i.is_error]
    assert "Wrong type 'dateTime': The URI 'http://hl7.org/fhir/concept-properties#notSelectable' identifies a property that has the type 'boolean'" in text
    assert "A property is already defined with the code 'notSelectable'" in text
    assert "A property is already defined with the URI 'http://example.org/p2'" in text
    assert any("is normally assigned the code 'deprecationDate'" in t for t in text)
    assert "A property URI must be an absolute URI, but 'not-absolute' is not" in text
    assert "The property 'notSelectable' has the invalid type 'boolean', when it is defined to have the type 'dateTime'" in text
    assert "The property 'other' has no value, and cannot be understood" in text
    assert ("cs-property", "CodeSystem.concept[0].property[1]") in warnings(issues)


# -- ValueSet definitions ------------------------------------------------------------------------------

def vs_issues(definitions: Any, value_set: dict[str, Any]) -> list[Any]:
    v = Validator(Overlay(definitions, [COLOURS]))
    return [i for i in v.iter_issues(value_set) if i.rule.startswith("vs-")]


def test_include_system_must_be_absolute(definitions: Any) -> None:
    vset = {"resourceType": "ValueSet", "url": "http://example.org/vs/a", "status": "active", "compose": {"include": [{"system": "#local", "concept": [{"code": "x"}]}]}}
    issues = vs_issues(definitions, vset)
    assert ("vs-include-system", "ValueSet.compose.include[0]") in errors(issues)
    assert "valueset-system extension" in issues[0].message
    assert not vs_issues(definitions, {**vset, "compose": {"include": [{"system": CS_URL, "concept": [{"code": "red"}]}]}})


def test_include_concepts_must_exist_in_a_local_code_system(definitions: Any) -> None:
    vset = {"resourceType": "ValueSet", "url": "http://example.org/vs/a", "status": "active", "compose": {"include": [{"system": CS_URL, "concept": [{"code": "red"}, {"code": "mauve"}]}]}}
    assert errors(vs_issues(definitions, vset)) == [("vs-include-code", "ValueSet.compose.include[0].concept[1]")]


@pytest.mark.parametrize(
    ("flt", "message"),
    [
        ({"property": "warm", "op": "=", "value": "1"}, "The value for a filter based on property 'warm' must be either 'true' or 'false', not '1'"),
        ({"property": "notSelectable", "op": "=", "value": "yes"}, "The value for a filter based on property 'notSelectable' must be either 'true' or 'false', not 'yes'"),
        ({"property": "concept", "op": "is-a", "value": "mauve"}, "The value for a filter based on property 'concept' must be a valid code from the system"),
        ({"property": "code", "op": "regex", "value": "(unclosed"}, "should be a valid regex"),
    ],
    ids=["boolean", "known-boolean", "unknown-code", "bad-regex"],
)
def test_filter_values(definitions: Any, flt: dict[str, Any], message: str) -> None:
    issues = vs_issues(definitions, vs("http://example.org/vs/f", flt))
    assert any(i.is_error and message in i.message and i.expression == "ValueSet.compose.include[0].filter[0]" for i in issues)


def test_good_filters_pass(definitions: Any) -> None:
    good = vs("http://example.org/vs/f", {"property": "warm", "op": "=", "value": "true"}, {"property": "concept", "op": "is-a", "value": "red"})
    assert vs_issues(definitions, good) == []


@pytest.mark.parametrize(("code", "ok"), [("mg/dL", True), ("mm[Hg]", True), ("{beats}/min", True), ("10*3/uL", True), ("kg m", False), ("m[", False)])
def test_ucum_codes_are_checked_for_form(tx: Terminology, code: str, ok: bool) -> None:
    found = [i.rule for i in tx.check_coding({"system": "http://unitsofmeasure.org", "code": code}, "X")]
    assert found == ([] if ok else ["code-form"])


def test_unknown_code_in_cores_copy_of_hl7_terminology_is_advice(validator: Validator) -> None:
    # core R4 ships 2019 copies of terminology.hl7.org code systems: a newer code is only a warning
    consent_purpose = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "NOT-A-2019-CODE"}
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueCodeableConcept": {"coding": [consent_purpose]}}
    issues = list(validator.iter_issues(obs))
    assert ("code-unknown", "Observation.value.coding[0].code") in warnings(issues)
    assert "code-unknown" not in rules(issues, "error")
    # outside terminology.hl7.org an unknown code in a complete local CodeSystem stays an error
    gender = {**obs, "valueCodeableConcept": {"coding": [{"system": "http://hl7.org/fhir/administrative-gender", "code": "nope"}]}}
    assert ("code-unknown", "Observation.value.coding[0].code") in errors(validator.iter_issues(gender))


def test_coding_filter_values(definitions: Any) -> None:
    cs = {**COLOURS, "url": "http://example.org/coded", "property": [{"code": "kind", "type": "Coding"}], "concept": [{"code": "a", "display": "A"}]}
    v = Validator(Overlay(definitions, [COLOURS, cs]))

    def issues(value: str) -> list[Any]:
        vset = {"resourceType": "ValueSet", "url": "http://example.org/vs/c", "status": "active",
                "compose": {"include": [{"system": "http://example.org/coded", "filter": [{"property": "kind", "op": "=", "value": value}]}]}}
        return [i for i in v.iter_issues(vset) if i.rule == "vs-filter"]

    assert issues(f"{CS_URL}#red") == []
    assert [i.severity for i in issues(f"{CS_URL}|red")] == ["warning"], "the search-style system|code is accepted with a warning"
    assert any(i.is_error and "must be in the format system(|version)#code" in i.message for i in issues("red"))
    assert any(i.is_error and "which is not a valid code" in i.message for i in issues(f"{CS_URL}#mauve"))
