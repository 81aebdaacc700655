"""QuestionnaireResponse against its Questionnaire: the HL7 Java validator's rules, passes and fails."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fhir_so.validation import Validator

from .conftest import Overlay, errors, rules

Q_URL = "http://example.com/Questionnaire/intake"
EXT = "http://hl7.org/fhir/StructureDefinition/"


class WithResources(Overlay):
    """An overlay that also serves Questionnaires by canonical URL, as a loaded package does."""

    def resource(self, kind: str, url: str) -> dict[str, Any] | None:
        hit = self.extra.get(url.split("|")[0])
        return hit if hit is not None and hit["resourceType"] == kind else None


def questionnaire(*items: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"resourceType": "Questionnaire", "url": Q_URL, "status": "active", "item": list(items), **more}


def response(*items: dict[str, Any], status: str = "completed", **more: Any) -> dict[str, Any]:
    return {"resourceType": "QuestionnaireResponse", "questionnaire": Q_URL, "status": status, "item": list(items), **more}


def check(definitions: Any, q: dict[str, Any], qr: dict[str, Any]) -> list[Any]:
    """Issues of ``qr`` with ``q`` served by a loaded package (only the questionnaire rules)."""
    v = Validator(WithResources(definitions, [q]))
    return [i for i in v.iter_issues(qr) if i.rule.startswith("qr-")]


def messages(issues: list[Any]) -> list[str]:
    return [i.message for i in issues if i.is_error]


def test_a_matching_response_is_valid(definitions: Any) -> None:
    q = questionnaire(
        {"linkId": "name", "type": "string", "required": True},
        {"linkId": "grp", "type": "group", "item": [{"linkId": "age", "type": "integer"}]},
    )
    qr = response({"linkId": "name", "answer": [{"valueString": "Ada"}]}, {"linkId": "grp", "item": [{"linkId": "age", "answer": [{"valueInteger": 36}]}]})
    assert check(definitions, q, qr) == []


def test_unknown_link_id_is_an_error(definitions: Any) -> None:
    issues = check(definitions, questionnaire({"linkId": "q1", "type": "string"}), response({"linkId": "q2", "answer": [{"valueString": "x"}]}))
    assert ("qr-linkid", "QuestionnaireResponse") in errors(issues)
    assert "LinkId 'q2' not found in questionnaire" in messages(issues)


def test_item_in_the_wrong_place_and_out_of_order(definitions: Any) -> None:
    q = questionnaire({"linkId": "a", "type": "string"}, {"linkId": "grp", "type": "group", "item": [{"linkId": "b", "type": "string"}]})
    misplaced = check(definitions, q, response({"linkId": "b", "answer": [{"valueString": "x"}]}))
    assert "Structural Error: item with linkid b is in the wrong place" in messages(misplaced)
    order = check(definitions, q, response({"linkId": "grp", "item": [{"linkId": "b", "answer": [{"valueString": "x"}]}]}, {"linkId": "a", "answer": [{"valueString": "y"}]}))
    assert "Structural Error: items are out of order" in messages(order)


def test_answer_type_must_match_item_type(definitions: Any) -> None:
    q = questionnaire({"linkId": "q1", "type": "boolean"})
    issues = check(definitions, q, response({"linkId": "q1", "answer": [{"valueCoding": {"code": "y"}}]}))
    assert ("qr-answer-type", "QuestionnaireResponse.item[0].answer[0].value.ofType(Coding)") in errors(issues)
    assert "Answer value must be of the type boolean not Coding" in messages(issues)
    assert check(definitions, q, response({"linkId": "q1", "answer": [{"valueBoolean": True}]})) == []


def test_required_items_error_when_completed_warning_when_in_progress(definitions: Any) -> None:
    q = questionnaire({"linkId": "q1", "type": "string", "required": True})
    done = check(definitions, q, response())
    assert "No response answer found for required item 'q1'" in messages(done)
    draft = check(definitions, q, response(status="in-progress"))
    assert not messages(draft) and rules(draft, "warning") == {"qr-required"}


def test_required_group_needs_sub_items(definitions: Any) -> None:
    q = questionnaire({"linkId": "g", "type": "group", "required": True, "item": [{"linkId": "s", "type": "string"}]})
    assert "No sub-items found for required group" in messages(check(definitions, q, response({"linkId": "g"})))


def test_repeats(definitions: Any) -> None:
    q = questionnaire({"linkId": "q1", "type": "string"})
    two = response({"linkId": "q1", "answer": [{"valueString": "a"}, {"valueString": "b"}]})
    assert "Only one response answer item with this linkId allowed" in messages(check(definitions, q, two))
    q["item"][0]["repeats"] = True
    assert check(definitions, q, two) == []


def test_groups_and_displays_take_no_answers(definitions: Any) -> None:
    q = questionnaire({"linkId": "g", "type": "group", "item": [{"linkId": "s", "type": "string"}]}, {"linkId": "d", "type": "display"})
    issues = check(definitions, q, response({"linkId": "g", "answer": [{"valueString": "x"}]}, {"linkId": "d", "answer": [{"valueString": "x"}]}))
    assert "Items of type question should not have answers" in messages(issues)
    assert "Items of type 'display' cannot have answers" in messages(issues)


def test_question_items_nest_under_answers(definitions: Any) -> None:
    q = questionnaire({"linkId": "q", "type": "boolean", "item": [{"linkId": "sub", "type": "string"}]})
    wrong = response({"linkId": "q", "answer": [{"valueBoolean": True}], "item": [{"linkId": "sub", "answer": [{"valueString": "x"}]}]})
    assert "Items not of type group should not have items outside answers (use answer.item not .item)" in messages(check(definitions, q, wrong))
    right = response({"linkId": "q", "answer": [{"valueBoolean": True, "item": [{"linkId": "sub", "answer": [{"valueString": "x"}]}]}]})
    assert check(definitions, q, right) == []


def test_answer_options(definitions: Any) -> None:
    options = [{"valueCoding": {"system": "http://example.org", "code": "c1"}}, {"valueCoding": {"system": "http://example.org", "code": "c2"}, "extension": [{"url": EXT + "questionnaire-optionExclusive", "valueBoolean": True}]}]
    q = questionnaire({"linkId": "q1", "type": "choice", "repeats": True, "answerOption": options})
    ok = response({"linkId": "q1", "answer": [{"valueCoding": {"system": "http://example.org", "code": "c1"}}]})
    assert check(definitions, q, ok) == []
    bad = response({"linkId": "q1", "answer": [{"valueCoding": {"system": "http://example.org", "code": "c9"}}]})
    assert "The code http://example.org::c9 is not in the set of permitted values" in messages(check(definitions, q, bad))
    exclusive = response({"linkId": "q1", "answer": [{"valueCoding": {"system": "http://example.org", "code": "c1"}}, {"valueCoding": {"system": "http://example.org", "code": "c2"}}]})
    assert any("is an exclusive option" in m for m in messages(check(definitions, q, exclusive)))
    strings = questionnaire({"linkId": "q1", "type": "string", "answerOption": [{"valueString": "a"}]})
    assert "The string b is not in the set of permitted values" in messages(check(definitions, strings, response({"linkId": "q1", "answer": [{"valueString": "b"}]})))


def test_open_choice_accepts_free_text_but_warns_when_it_matches_an_option(definitions: Any) -> None:
    q = questionnaire({"linkId": "q1", "type": "open-choice", "answerOption": [{"valueCoding": {"system": "http://example.org", "code": "B", "display": "Blood"}}]})
    assert check(definitions, q, response({"linkId": "q1", "answer": [{"valueString": "Sweat"}]})) == []
    issues = check(definitions, q, response({"linkId": "q1", "answer": [{"valueString": "blood"}]}))
    assert not messages(issues) and rules(issues, "warning") == {"qr-option"}


def test_answer_value_set_from_a_loaded_package(definitions: Any) -> None:
    q = questionnaire({"linkId": "q1", "type": "choice", "answerValueSet": "http://hl7.org/fhir/ValueSet/administrative-gender"})
    good = response({"linkId": "q1", "answer": [{"valueCoding": {"system": "http://hl7.org/fhir/administrative-gender", "code": "male"}}]})
    assert check(definitions, q, good) == []
    bad = response({"linkId": "q1", "answer": [{"valueCoding": {"system": "http://hl7.org/fhir/administrative-gender", "code": "cat"}}]})
    assert any("is not in the options value set" in m for m in messages(check(definitions, q, bad)))


def test_answer_value_set_contained_in_the_questionnaire(definitions: Any) -> None:
    vs = {"resourceType": "ValueSet", "id": "yn", "status": "active", "compose": {"include": [{"system": "http://example.org/yn", "concept": [{"code": "y"}, {"code": "n"}]}]}}
    q = questionnaire({"linkId": "q1", "type": "choice", "answerValueSet": "#yn"}, contained=[vs])
    assert check(definitions, q, response({"linkId": "q1", "answer": [{"valueCoding": {"system": "http://example.org/yn", "code": "y"}}]})) == []
    assert messages(check(definitions, q, response({"linkId": "q1", "answer": [{"valueCoding": {"system": "http://example.org/yn", "code": "x"}}]})))


@pytest.mark.parametrize(
    ("item", "answer", "expected"),
    [
        ({"type": "string", "maxLength": 2}, {"valueString": "abc"}, "The answer 'abc' is longer then the allowed maximum length of 2"),
        ({"type": "string", "extension": [{"url": EXT + "minLength", "valueInteger": 5}]}, {"valueString": "abc"}, "The answer 'abc' is shorter then the required minimum length of 5"),
        ({"type": "string", "extension": [{"url": EXT + "regex", "valueString": "[0-9]+"}]}, {"valueString": "12a"}, "The answer '12a' does not conform to the required regex '[0-9]+'"),
        ({"type": "integer", "extension": [{"url": EXT + "minValue", "valueInteger": 20}]}, {"valueInteger": 5}, "The value 5 is less than the allowed minimum of 20"),
        ({"type": "integer", "extension": [{"url": EXT + "maxValue", "valueInteger": 2}]}, {"valueInteger": 5}, "The value 5 is greater than the allowed maximum of 2"),
        ({"type": "decimal", "extension": [{"url": EXT + "maxDecimalPlaces", "valueInteger": 2}]}, {"valueDecimal": 1.666}, "The value 1.666 has too many decimal places (limit = 2)"),
        ({"type": "date", "extension": [{"url": EXT + "minValue", "valueDate": "2020"}]}, {"valueDate": "1998"}, "The value 1998 is less than the allowed minimum of 2020"),
        ({"type": "dateTime", "extension": [{"url": EXT + "maxValue", "valueDateTime": "2022-06"}]}, {"valueDateTime": "2022-07"}, "The value 2022-07 is greater than the allowed maximum of 2022-06"),
        ({"type": "attachment", "extension": [{"url": EXT + "mimeType", "valueCode": "image/gif"}]}, {"valueAttachment": {"contentType": "application/pdf"}}, "The mime type application/pdf is not valid for this answer (allowed = image/gif)"),
        ({"type": "attachment", "extension": [{"url": EXT + "maxSize", "valueDecimal": 2}]}, {"valueAttachment": {"data": "aGVsbG8="}}, "The attachment is too large (allowed = 2, found = 5)"),
        ({"type": "reference", "extension": [{"url": EXT + "questionnaire-referenceResource", "valueCode": "Patient"}]}, {"valueReference": {"reference": "Organization/1"}}, "The resource type 'Organization' in the reference Organization/1 is not allowed (allowed = Patient)"),
        ({"type": "quantity", "extension": [{"url": EXT + "questionnaire-unitOption", "valueCoding": {"system": "http://unitsofmeasure.org", "code": "km"}}]}, {"valueQuantity": {"value": 1, "system": "http://unitsofmeasure.org", "code": "kg"}}, "The value 1 (UCUM#kg) has a unit that is not valid (allowed =  (UCUM#km))"),
    ],
    ids=["maxLength", "minLength", "regex", "minValue", "maxValue", "maxDecimalPlaces", "date-min", "dateTime-max", "mimeType", "maxSize", "referenceResource", "unitOption"],
)
def test_item_constraints(definitions: Any, item: dict[str, Any], answer: dict[str, Any], expected: str) -> None:
    q = questionnaire({"linkId": "q1", **item})
    assert expected in messages(check(definitions, q, response({"linkId": "q1", "answer": [answer]})))


def test_item_constraints_pass_within_limits(definitions: Any) -> None:
    q = questionnaire({"linkId": "q1", "type": "integer", "extension": [{"url": EXT + "minValue", "valueInteger": 1}, {"url": EXT + "maxValue", "valueInteger": 9}]})
    assert check(definitions, q, response({"linkId": "q1", "answer": [{"valueInteger": 5}]})) == []


def test_min_and_max_occurs(definitions: Any) -> None:
    q = questionnaire({"linkId": "q1", "type": "string", "repeats": True, "extension": [{"url": EXT + "questionnaire-maxOccurs", "valueInteger": 1}]})
    assert "The maximum number of answers is 1 but this has 2 answers" in messages(check(definitions, q, response({"linkId": "q1", "answer": [{"valueString": "a"}, {"valueString": "b"}]})))
    q = questionnaire({"linkId": "q1", "type": "string", "repeats": True, "extension": [{"url": EXT + "questionnaire-minOccurs", "valueInteger": 2}]})
    assert "The minimum number of answers is 2 but this has 1 answers" in messages(check(definitions, q, response({"linkId": "q1", "answer": [{"valueString": "a"}]})))


def test_enable_when(definitions: Any) -> None:
    q = questionnaire(
        {"linkId": "smoker", "type": "boolean"},
        {"linkId": "packs", "type": "integer", "required": True, "enableWhen": [{"question": "smoker", "operator": "=", "answerBoolean": True}]},
    )
    # disabled: no answer needed, and an answer is an error
    assert check(definitions, q, response({"linkId": "smoker", "answer": [{"valueBoolean": False}]})) == []
    answered = check(definitions, q, response({"linkId": "smoker", "answer": [{"valueBoolean": False}]}, {"linkId": "packs", "answer": [{"valueInteger": 3}]}))
    assert "Item has answer, even though it is not enabled (item id = 'packs')" in messages(answered)
    # enabled: the required answer must be there
    missing = check(definitions, q, response({"linkId": "smoker", "answer": [{"valueBoolean": True}]}))
    assert "No response answer found for required item 'packs'" in messages(missing)


def test_questionnaire_found_in_the_bundle_or_contained(definitions: Any) -> None:
    q = questionnaire({"linkId": "q1", "type": "boolean"})
    bad = response({"linkId": "q9", "answer": [{"valueBoolean": True}]})
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": "urn:uuid:0b1e2c8a-1111-4a1a-8a1a-000000000001", "resource": q}, {"fullUrl": "urn:uuid:0b1e2c8a-1111-4a1a-8a1a-000000000002", "resource": bad}]}
    issues = list(Validator(definitions).iter_issues(bundle))
    assert ("qr-linkid", "Bundle.entry[1].resource") in errors(issues)
    contained = {**copy.deepcopy(bad), "questionnaire": "#q", "contained": [{**q, "id": "q"}]}
    assert ("qr-linkid", "QuestionnaireResponse") in errors(Validator(definitions).iter_issues(contained))


def test_unknown_questionnaire_is_a_warning_not_an_error(definitions: Any) -> None:
    qr = response({"linkId": "q1", "answer": [{"valueBoolean": True}]}, questionnaire="http://example.com/Questionnaire/nowhere")
    issues = [i for i in Validator(definitions).iter_issues(qr) if i.rule == "qr-questionnaire"]
    assert [i.severity for i in issues] == ["warning"]


def test_a_questionnaire_url_of_another_type_is_an_error(definitions: Any) -> None:
    qr = response(questionnaire="http://hl7.org/fhir/ValueSet/administrative-gender")
    assert ("qr-questionnaire", "QuestionnaireResponse.questionnaire") in errors(Validator(definitions).iter_issues(qr))


def test_a_malformed_questionnaire_gives_findings_not_exceptions(definitions: Any) -> None:
    q = questionnaire({"linkId": ["not", "a", "string"], "type": {"x": 1}, "item": "nope", "enableWhen": [{"question": [1]}]})
    qr = response({"linkId": "q1", "answer": [{"valueBoolean": True}]})
    check(definitions, q, qr)  # must not raise


def test_cli_finds_the_questionnaire_in_a_package_folder(tmp_path: Any, definitions: Any) -> None:
    import json

    from click.testing import CliRunner

    from fhir_so.cli import cli

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "package.json").write_text(json.dumps({"name": "forms.example", "version": "0.0.1", "fhirVersions": ["4.0.1"], "dependencies": {"hl7.fhir.r4.core": "4.0.1"}}))
    (pkg / "Questionnaire-intake.json").write_text(json.dumps(questionnaire({"linkId": "q1", "type": "string", "maxLength": 2})))
    qr = tmp_path / "qr.json"
    qr.write_text(json.dumps(response({"linkId": "q1", "answer": [{"valueString": "too long"}]})))
    with_pkg = CliRunner().invoke(cli, ["validate", str(qr), "--package", str(pkg)])
    assert with_pkg.exit_code == 1 and "longer then the allowed maximum length of 2" in with_pkg.output, with_pkg.output
    without = CliRunner().invoke(cli, ["validate", str(qr)])
    assert without.exit_code == 0 and "could not be resolved" in without.output, without.output


def test_questionnaire_enable_when_targets(validator: Validator) -> None:
    def q_issues(*items: dict[str, Any]) -> list[Any]:
        return [i for i in validator.iter_issues(questionnaire(*items)) if i.rule == "q-enable-when"]

    first = {"linkId": "a", "type": "boolean"}
    assert q_issues(first, {"linkId": "b", "type": "string", "enableWhen": [{"question": "a", "operator": "exists", "answerBoolean": True}]}) == []
    missing = q_issues(first, {"linkId": "b", "type": "string", "enableWhen": [{"question": "zz", "operator": "exists", "answerBoolean": True}]})
    assert [(i.severity, i.expression, i.message) for i in missing] == [("error", "Questionnaire.item[1]", "Unable to find an item with the linkId 'zz' which is referenced in the enableWhen for 'b'")]
    itself = q_issues({"linkId": "a", "type": "boolean", "enableWhen": [{"question": "a", "operator": "exists", "answerBoolean": True}]})
    assert [i.message for i in itself] == ["Target for this question enableWhen can't reference itself"]
    inner = q_issues({"linkId": "g", "type": "group", "enableWhen": [{"question": "c", "operator": "exists", "answerBoolean": True}], "item": [{"linkId": "c", "type": "boolean"}]})
    assert [i.message for i in inner] == ["Questions with an enableWhen cannot refer to an inner question for its enableWhen condition"]
    after = q_issues({"linkId": "b", "type": "string", "enableWhen": [{"question": "a", "operator": "exists", "answerBoolean": True}]}, first)
    assert [(i.severity, i.message) for i in after] == [("warning", "The target of this enableWhen rule (a) comes after the question itself")]
