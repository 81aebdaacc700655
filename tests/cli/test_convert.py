"""``fhir-so build`` / ``parse``: outputs, and every kind of bad input gives exit 2 and one clear message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
from click.testing import CliRunner

from fhir_so.bundle import build_bundle
from fhir_so.case import case_from_dict
from fhir_so.cli import cli

GOOD: dict[str, Any] = {
    "case_id": "cli-1",
    "requested": "2026-03-01T09:30:00Z",
    "patient": {"identifier": {"system": "urn:oid:1.2.3", "value": "MRN-1"}, "name": {"family": "Doe", "given": ["Jo"]}},
    "requester": {"identifier": {"system": "urn:oid:1.2.4", "value": "P-1"}, "name": "Dr. A"},
    "performer": {"identifier": {"system": "urn:oid:1.2.4", "value": "P-2"}, "name": "Dr. B"},
    "reasons": ["uncertain-diagnosis"],
    "mode": "record-review",
    "records_consent": {"date": "2026-03-01T09:00:00Z"},
    "records": [
        {"id": "r1", "kind": "lab-report", "title": "Labs", "date": "2026-02-01T08:00:00Z", "content": {"content_type": "text/plain", "data": "aGk="}}
    ],
}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def write(tmp_path: Path, name: str, content: Any) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def test_build_writes_bundle_and_parse_reads_it_back(runner: CliRunner, tmp_path: Path) -> None:
    case_file = write(tmp_path, "case.json", GOOD)
    out = tmp_path / "bundle.json"
    result = runner.invoke(cli, ["build", str(case_file), "-o", str(out)])
    assert result.exit_code == 0, result.output
    bundle = json.loads(out.read_text())
    assert bundle["type"] == "transaction"
    assert {e["resource"]["resourceType"] for e in bundle["entry"]} >= {"ServiceRequest", "Consent", "DocumentReference"}
    result = runner.invoke(cli, ["parse", str(out)])
    assert result.exit_code == 0, result.output
    assert case_from_dict(json.loads(result.output)) == case_from_dict(GOOD)


def test_stat_request_is_flagged(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["build", str(write(tmp_path, "c.json", {**GOOD, "priority": "stat"}))])
    assert result.exit_code == 0
    assert "stat request" in result.stderr


def _drop(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda d: {k: v for k, v in d.items() if k != key}


BAD_CASES = [
    pytest.param(b"{", "malformed JSON", "line 1 column 2", id="malformed-json"),
    pytest.param(b"", "empty", None, id="empty-file"),
    pytest.param(b"\xff\xfe{}", "not valid UTF-8", None, id="invalid-utf8"),
    pytest.param(b"[1, 2]", "expected object, found an array", "at $:", id="not-an-object"),
    *[pytest.param(_drop(k)(GOOD), f"'{k}' is a required property", "at $:", id=f"missing-{k}") for k in ("case_id", "requested", "patient", "requester", "performer", "reasons", "mode")],
    pytest.param({**GOOD, "reasons": ["bogus"]}, "'bogus' is not one of the allowed values", "$.reasons[0]", id="unknown-reason"),
    pytest.param({**GOOD, "reasons": []}, "should be non-empty", "$.reasons", id="no-reason"),
    pytest.param({**GOOD, "priority": 3}, "3", "$.priority", id="wrong-type"),
    pytest.param({**GOOD, "extra": 1}, "unknown field", "$", id="unknown-field"),
    pytest.param({**GOOD, "requested": "2026-02-30T09:00:00Z"}, "not a real date", "$.requested", id="impossible-date"),
    pytest.param({**GOOD, "case_id": "../etc/passwd"}, "does not have the expected form", "$.case_id", id="hostile-id"),
    pytest.param(
        {**GOOD, "records": [{**GOOD["records"][0], "content": {"content_type": "text/plain", "data": "!!"}}]},
        "not valid base64",
        "$.records[0].content",
        id="bad-base64",
    ),
    pytest.param(
        {**GOOD, "records": [{**GOOD["records"][0], "content": {"content_type": "text/plain", "url": "javascript:alert(1)"}}]},
        "does not have the expected form",
        "$.records[0].content.url",
        id="hostile-url",
    ),
    pytest.param(
        {**GOOD, "records": [{**GOOD["records"][0], "content": {"content_type": "text/plain", "file": "missing.pdf"}}]},
        "cannot read attachment 'missing.pdf': no such file",
        "$.records[0].content.file",
        id="missing-attachment-file",
    ),
    pytest.param(
        {**GOOD, "performer": {**GOOD["requester"], "name": "Someone else"}},
        "share the identifier",
        "$",
        id="conflicting-parties",
    ),
]


@pytest.mark.parametrize(("content", "message", "place"), BAD_CASES)
def test_build_bad_input(runner: CliRunner, tmp_path: Path, content: Any, message: str, place: str | None) -> None:
    case_file = write(tmp_path, "case.json", content)
    out = tmp_path / "out.json"
    result = runner.invoke(cli, ["build", str(case_file), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert str(case_file) in result.stderr
    assert message in result.stderr
    if place:
        assert place in result.stderr
    assert not out.exists(), "no partial output file"
    assert not list(tmp_path.glob(".out.json*")), "no temp file left behind"


def test_build_directory_instead_of_file(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["build", str(tmp_path)])
    assert result.exit_code == 2
    assert "is a directory" in result.stderr


def test_build_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["build", str(tmp_path / "nope.json")])
    assert result.exit_code == 2
    assert "no such file" in result.stderr


def test_huge_attachment_file_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    big = tmp_path / "scan.bin"
    with big.open("wb") as fh:
        fh.truncate(20 * 1024 * 1024 + 1)
    case = {**GOOD, "records": [{**GOOD["records"][0], "content": {"content_type": "application/octet-stream", "file": "scan.bin"}}]}
    result = runner.invoke(cli, ["build", str(write(tmp_path, "case.json", case))])
    assert result.exit_code == 2
    assert "over the inline limit" in result.stderr


def _bundle() -> dict[str, Any]:
    return build_bundle(case_from_dict(GOOD))


def _dangling(b: dict[str, Any]) -> dict[str, Any]:
    b["entry"][-1]["resource"]["subject"]["reference"] = "urn:uuid:00000000-0000-0000-0000-000000000000"
    return b


def _unknown_type(b: dict[str, Any]) -> dict[str, Any]:
    b["entry"][0]["resource"]["resourceType"] = "Pateint"
    return b


def _no_request(b: dict[str, Any]) -> dict[str, Any]:
    for e in b["entry"]:
        if e["resource"]["resourceType"] == "ServiceRequest":
            del e["resource"]["identifier"]
    return b


def _bad_status(b: dict[str, Any]) -> dict[str, Any]:
    for e in b["entry"]:
        if e["resource"]["resourceType"] == "ServiceRequest":
            e["resource"]["status"] = 7
    return b


def _tampered(b: dict[str, Any]) -> dict[str, Any]:
    for e in b["entry"]:
        if e["resource"]["resourceType"] == "DocumentReference":
            e["resource"]["content"][0]["attachment"]["data"] = "aGo="
    return b


BAD_BUNDLES = [
    pytest.param(_dangling, "does not resolve", "Bundle.entry[", id="dangling-reference"),
    pytest.param(_unknown_type, "unknown resourceType 'Pateint'", "Bundle.entry[0].resource.resourceType", id="unknown-resource-type"),
    pytest.param(_no_request, "no second-opinion ServiceRequest", "Bundle.entry", id="no-service-request"),
    pytest.param(_bad_status, "not a valid R4 ServiceRequest", ".status", id="wrong-type"),
    pytest.param(_tampered, "hash does not match", "attachment.hash", id="tampered-attachment"),
    pytest.param(lambda b: {**b, "resourceType": "Patient"}, "expected a Bundle", "Bundle.resourceType", id="not-a-bundle"),
]


@pytest.mark.parametrize(("mutate", "message", "place"), BAD_BUNDLES)
def test_parse_bad_bundle(runner: CliRunner, tmp_path: Path, mutate: Callable[[dict[str, Any]], dict[str, Any]], message: str, place: str) -> None:
    path = write(tmp_path, "bundle.json", mutate(_bundle()))
    out = tmp_path / "case.json"
    result = runner.invoke(cli, ["parse", str(path), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert str(path) in result.stderr and message in result.stderr and place in result.stderr
    assert not out.exists()
