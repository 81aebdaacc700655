"""Hostile input in Questionnaires, responses, CodeSystems, ValueSets and narratives gives findings, not exceptions."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_so.validation import Validator

from .test_robustness import _paths, assert_findings_not_exceptions, json_values

EXT = "http://hl7.org/fhir/StructureDefinition/"
Q = {
    "resourceType": "Questionnaire", "url": "http://example.com/Questionnaire/fuzz", "status": "active",
    "item": [
        {"linkId": "a", "type": "choice", "answerOption": [{"valueCoding": {"system": "http://example.org", "code": "x"}}]},
        {"linkId": "b", "type": "integer", "enableWhen": [{"question": "a", "operator": "=", "answerCoding": {"system": "http://example.org", "code": "x"}}],
         "extension": [{"url": EXT + "minValue", "valueInteger": 1}]},
        {"linkId": "g", "type": "group", "item": [{"linkId": "s", "type": "string", "maxLength": 3, "extension": [{"url": EXT + "regex", "valueString": "[a-z]+"}]}]},
        {"linkId": "q", "type": "quantity", "extension": [{"url": EXT + "questionnaire-unitOption", "valueCoding": {"code": "kg"}}]},
    ],
}
QR = {
    "resourceType": "QuestionnaireResponse", "questionnaire": "http://example.com/Questionnaire/fuzz", "status": "completed",
    "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>answers</p></div>'},
    "item": [
        {"linkId": "a", "answer": [{"valueCoding": {"system": "http://example.org", "code": "x"}}]},
        {"linkId": "b", "answer": [{"valueInteger": 4}]},
        {"linkId": "g", "item": [{"linkId": "s", "answer": [{"valueString": "abc"}]}]},
        {"linkId": "q", "answer": [{"valueQuantity": {"value": 2, "code": "kg"}}]},
    ],
}
CS = {"resourceType": "CodeSystem", "url": "http://example.org/cs", "status": "active", "content": "complete", "count": 1,
      "property": [{"code": "inactive", "uri": "http://hl7.org/fhir/concept-properties#inactive", "type": "boolean"}],
      "concept": [{"code": "x", "property": [{"code": "inactive", "valueBoolean": True}]}]}
VS = {"resourceType": "ValueSet", "url": "http://example.org/vs", "status": "active",
      "compose": {"include": [{"system": "http://example.org/cs", "concept": [{"code": "x"}], "filter": [{"property": "inactive", "op": "=", "value": "true"}]}]}}
BUNDLE: dict[str, Any] = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in (Q, QR, CS, VS)]}
PATHS = _paths(BUNDLE)[1:]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(PATHS), json_values), min_size=1, max_size=3))
def test_random_values_in_terminology_and_questionnaires(validator: Validator, changes: list[tuple[tuple[Any, ...], Any]]) -> None:
    assert_findings_not_exceptions(validator, BUNDLE, changes)
