"""Hand-written JSON (comments, missing quotes or commas) is read, and each departure is a located error."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_so.validation.lenient import LenientError, parse_lenient
from fhir_so.validation.sources import iter_file


def test_departures_are_located_where_they_happen() -> None:
    text = b'// note\n{"resourceType": "Patient", name: [{"family": "Doe" "given": [Ann,]},], "gender": "female",}'
    value, found = parse_lenient(text)
    assert value == {"resourceType": "Patient", "name": [{"family": "Doe", "given": ["Ann"]}], "gender": "female"}
    assert ("Patient", "comments are not allowed in JSON") in found
    assert ("Patient", "the JSON property 'name' has no quotes around its name") in found
    assert ("Patient.name[0]", "a comma is missing in the JSON") in found
    assert ("Patient.name[0].given[0]", "the JSON property 'given' has no quotes around its value 'Ann'") in found
    assert ("Patient.name[0].given", "there is an extra comma at the end of the array") in found
    assert ("Patient", "there is an extra comma at the end of the object") in found


def test_comments_can_be_allowed() -> None:
    _, found = parse_lenient(b'{"resourceType": "Patient" /* ok */}', allow_comments=True)
    assert found == []


@pytest.mark.parametrize("text", [b'{"a": [1}', b'{"a": 1', b'{"a": }', b'{"a": 1} x', b"[1,,2]"])
def test_what_is_not_even_hand_written_json_stays_unreadable(text: bytes) -> None:
    with pytest.raises(LenientError):
        parse_lenient(text)


def test_a_file_read_leniently_carries_its_findings(tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_bytes(b'{"resourceType": "Patient", "id": "p1",}')
    (item,) = iter_file(f)
    assert item.error is None and item.resource == {"resourceType": "Patient", "id": "p1"}
    assert [(i.severity, i.expression, i.rule) for i in item.issues] == [("error", "Patient", "json")]
    f.write_bytes(b'{"resourceType": "Patient", "id": }')
    (item,) = iter_file(f)
    assert item.error is not None and "line 1" in str(item.error)
