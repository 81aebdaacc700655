"""Findings as data: best_issue's heuristic, OperationOutcome rendering and parsing, streaming inputs."""

from __future__ import annotations

from pathlib import Path

from fhir_so.validation import Issue, best_issue, iter_inputs, to_operation_outcome
from fhir_so.validation.outcome import issues_from_outcome


def test_best_issue_prefers_severity_then_structure_then_depth() -> None:
    deep = Issue("error", "invariant", "Patient.name[0].period", "per-1", "per-1")
    shallow_struct = Issue("error", "structure", "Patient.foo", "unknown", "unknown-element")
    warning = Issue("warning", "structure", "Patient", "w", "structure")
    assert best_issue([warning, deep, shallow_struct]) == shallow_struct
    assert best_issue([warning]) == warning
    assert best_issue([]) is None


def test_operation_outcome_round_trip() -> None:
    issue = Issue("error", "value", "Patient.birthDate", "not a date", "type")
    oo = to_operation_outcome([issue])
    assert oo["resourceType"] == "OperationOutcome"
    assert issues_from_outcome(oo) == [issue]
    empty = to_operation_outcome([])
    assert empty["issue"][0]["severity"] == "information" and issues_from_outcome(empty) == []


def test_ndjson_is_streamed_line_by_line(tmp_path: Path) -> None:
    f = tmp_path / "x.ndjson"
    f.write_text('{"resourceType":"Patient"}\n\n{"resourceType": \n{"resourceType":"Observation"}\n')
    items = list(iter_inputs([f]))
    assert [i.line for i in items] == [1, 3, 4]
    assert items[1].error is not None and "line 3" in str(items[1].error)
    assert items[2].resource == {"resourceType": "Observation"}
    assert items[2].uri.endswith("x.ndjson#line=4")


def test_invalid_utf8_is_bad_input(tmp_path: Path) -> None:
    f = tmp_path / "bad.json"
    f.write_bytes(b'{"resourceType": "Patient", "id": "\xff"}')
    (item,) = iter_inputs([f])
    assert item.error is not None and "UTF-8" in str(item.error)
