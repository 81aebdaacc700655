"""Primitive forms: each type has values that pass and values that fail, beyond what the JSON schema checks."""

from __future__ import annotations

import pytest

from fhir_so.validation.primitives import CHECKERS, checkers

CASES = [
    ("date", "2024", True), ("date", "2024-02-29", True), ("date", "2023-02-29", False), ("date", "2023-02-30", False),
    ("date", "2024-13-01", False), ("date", "24-01-01", False), ("date", 20240101, False),
    ("dateTime", "2024-05-01T10:00:00Z", True), ("dateTime", "2024-05-01T10:00:00+02:00", True),
    ("dateTime", "2024-05-01T10:00", False), ("dateTime", "2024-05-01T10:00:00", False), ("dateTime", "2023-04-31", False),
    ("instant", "2024-05-01T10:00:00.123Z", True), ("instant", "2024-05-01", False),
    ("time", "23:59:59", True), ("time", "24:00:00", False),
    ("boolean", True, True), ("boolean", "true", False), ("boolean", 1, False),
    ("integer", 3, True), ("integer", 3.0, False), ("integer", True, False), ("integer", 2**31, False),
    ("positiveInt", 1, True), ("positiveInt", 0, False), ("unsignedInt", 0, True), ("unsignedInt", -1, False),
    ("decimal", 1.5, True), ("decimal", "1.5", False),
    ("string", "x", True), ("string", "", False), ("string", "   ", False), ("string", 5, False),
    ("code", "final", True), ("code", " final", False), ("code", "a  b", False),
    ("id", "abc-1.2", True), ("id", "a_b", False), ("id", "x" * 65, False),
    ("uri", "http://x", True), ("uri", "has space", False),
    ("oid", "urn:oid:1.2.3", True), ("oid", "1.2.3", False),
    ("uuid", "urn:uuid:c757873d-ec9a-4326-a141-556f43239520", True), ("uuid", "urn:uuid:C757873D", False),
    ("base64Binary", "aGVsbG8=", True), ("base64Binary", "aGVsbG8", False), ("base64Binary", "not base64!", False),
    ("xhtml", '<div xmlns="http://www.w3.org/1999/xhtml">x</div>', True), ("xhtml", "<div>x</div>", False), ("xhtml", "<p>x</p>", False),
]


@pytest.mark.parametrize(("type_code", "value", "ok"), CASES, ids=[f"{t}-{v!r}-{'ok' if ok else 'bad'}" for t, v, ok in CASES])
def test_primitive_form(type_code: str, value: object, ok: bool) -> None:
    message = CHECKERS[type_code](value)
    assert (message is None) is ok, message
    if not ok:
        assert message  # a reason a person can act on


@pytest.mark.parametrize("type_code", ["uri", "url", "canonical"])
def test_urn_uuid_in_a_uri_must_be_a_valid_lower_case_uuid(type_code: str) -> None:
    assert CHECKERS[type_code]("urn:uuid:c757873d-ec9a-4326-a141-556f43239520") is None
    assert CHECKERS[type_code]("Patient/1") is None
    assert CHECKERS[type_code]("urn:uuid:c757873d-ec9a-4326-a141-556f43239520asdf") == "UUIDs must be valid and lowercase (c757873d-ec9a-4326-a141-556f43239520asdf)"
    assert CHECKERS[type_code]("urn:uuid:C757873D-EC9A-4326-A141-556F43239520") is not None


def test_example_urls_are_errors_only_when_examples_are_not_allowed() -> None:
    assert checkers(allow_examples=True) is CHECKERS
    strict = checkers(allow_examples=False)
    assert strict["url"]("http://repository.example.org/fhir/x") == "Example URLs are not allowed in this context (http://repository.example.org/fhir/x)"
    assert strict["canonical"]("http://acme.com/sd") is not None
    assert strict["uri"]("http://hl7.org/fhir/sid/us-ssn") is None
    assert strict["string"]("http://example.org") is None  # only uri-like types
