"""fhir-so validate: exit codes 0/1/2, and text, json and junit reports that parse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner

from fhir_so.cli import cli

GOOD = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe"}], "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Doe</div>'}}
BAD = {"resourceType": "Patient", "birthDate": "2023-02-30"}


@pytest.fixture
def files(tmp_path: Path, definitions: Any) -> dict[str, Path]:
    out = {}
    for name, content in {"good.json": json.dumps(GOOD), "bad.json": json.dumps(BAD), "broken.json": '{"resourceType": "Patient",\n  "id": }',
                          "many.ndjson": json.dumps(GOOD) + "\n\n" + json.dumps(BAD) + "\n", "array.json": "[1]"}.items():
        (tmp_path / name).write_text(content)
        out[name] = tmp_path / name
    return out


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["validate", *args])


@pytest.mark.parametrize(("names", "code"), [(["good.json"], 0), (["bad.json"], 1), (["good.json", "bad.json"], 1), (["broken.json"], 2),
                                             (["array.json"], 2), (["many.ndjson"], 1)],
                         ids=["valid", "invalid", "mixed", "malformed", "not-an-object", "ndjson"])
def test_exit_codes(files: dict[str, Path], names: list[str], code: int) -> None:
    result = run(*[str(files[n]) for n in names])
    assert result.exit_code == code, result.output


def test_malformed_json_names_file_line_and_column(files: dict[str, Path]) -> None:
    result = run(str(files["broken.json"]))
    assert "broken.json" in result.output and "line 2 column" in result.output
    assert "Traceback" not in result.output


def test_missing_path_is_bad_input(tmp_path: Path) -> None:
    result = run(str(tmp_path / "nope.json"))
    assert result.exit_code == 2 and "nope.json" in result.output


def test_text_report_names_location_and_rule(files: dict[str, Path]) -> None:
    result = run(str(files["bad.json"]))
    assert "error: Patient.birthDate:" in result.output and "[type]" in result.output and "INVALID" in result.output


def test_json_report_is_an_operation_outcome(files: dict[str, Path]) -> None:
    result = run(str(files["bad.json"]), "--format", "json")
    doc = json.loads(result.stdout)
    assert doc["resourceType"] == "OperationOutcome"
    assert any(i["severity"] == "error" and i["expression"] == ["Patient.birthDate"] for i in doc["issue"])


def test_json_report_for_many_inputs_is_a_bundle(files: dict[str, Path]) -> None:
    result = run(str(files["good.json"]), str(files["many.ndjson"]), "--format", "json")
    doc = json.loads(result.stdout)
    assert doc["resourceType"] == "Bundle" and len(doc["entry"]) == 3
    assert doc["entry"][2]["fullUrl"].endswith("many.ndjson#line=3")


def test_junit_report_parses(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report.xml"
    result = run(str(files["good.json"]), str(files["bad.json"]), "--format", "junit", "-o", str(out))
    assert result.exit_code == 1
    root = ElementTree.parse(out).getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == 2 and cases[0].find("failure") is None and cases[1].find("failure") is not None


def test_directory_is_walked(files: dict[str, Path]) -> None:
    result = run(str(files["good.json"].parent), "--format", "json")
    assert result.exit_code == 2  # broken.json and array.json are in the folder
    assert len(json.loads(result.stdout)["entry"]) == 6


def test_unknown_forced_profile_is_bad_input(files: dict[str, Path]) -> None:
    result = run(str(files["good.json"]), "--profile", "http://example.org/StructureDefinition/nope")
    assert result.exit_code == 2 and "nope" in result.output


def test_broken_declared_profile_is_bad_input_not_a_traceback(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "package.json").write_text(json.dumps({"name": "broken.example", "version": "0.0.1", "fhirVersions": ["4.0.1"], "dependencies": {"hl7.fhir.r4.core": "4.0.1"}}))
    url = "http://example.org/StructureDefinition/broken"
    (pkg / "StructureDefinition-broken.json").write_text(json.dumps({
        "resourceType": "StructureDefinition", "id": "broken", "url": url, "name": "Broken", "status": "draft", "kind": "resource",
        "abstract": False, "type": "Patient", "baseDefinition": "http://example.org/StructureDefinition/no-such-base", "derivation": "constraint",
        "differential": {"element": [{"id": "Patient.name", "path": "Patient.name", "min": 1}]}}))
    res = tmp_path / "p.json"
    res.write_text(json.dumps({"resourceType": "Patient", "meta": {"profile": [url]}}))
    result = run(str(res), "--package", str(pkg))
    assert result.exit_code == 2, result.output
    assert url in result.output and "no-such-base" in result.output and "Traceback" not in result.output
    forced = run(str(res), "--package", str(pkg), "--profile", url)
    assert forced.exit_code == 2 and url in forced.output
