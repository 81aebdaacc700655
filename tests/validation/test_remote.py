"""--server: each resource goes to the server's $validate; the same reports and exit codes as offline."""

from __future__ import annotations

import json
from pathlib import Path

import responses
from click.testing import CliRunner

from fhir_so.cli import cli

BASE = "http://fhir.test/fhir"
ERROR_OO = {"resourceType": "OperationOutcome", "issue": [
    {"severity": "error", "code": "value", "diagnostics": "bad date", "expression": ["Patient.birthDate"]}]}
OK_OO = {"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational", "diagnostics": "No issues detected during validation"}]}


def _file(tmp_path: Path) -> Path:
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"resourceType": "Patient", "birthDate": "2023-02-30"}))
    return f


@responses.activate
def test_server_findings_make_the_verdict(tmp_path: Path) -> None:
    responses.post(f"{BASE}/Patient/$validate", json=ERROR_OO)
    result = CliRunner().invoke(cli, ["validate", str(_file(tmp_path)), "--server", BASE, "--format", "json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["issue"][0]["expression"] == ["Patient.birthDate"]
    sent = json.loads(responses.calls[0].request.body)
    assert sent["resourceType"] == "Patient"


@responses.activate
def test_server_all_ok_is_valid_and_profile_goes_in_parameters(tmp_path: Path) -> None:
    responses.post(f"{BASE}/Patient/$validate", json=OK_OO)
    result = CliRunner().invoke(cli, ["validate", str(_file(tmp_path)), "--server", BASE, "--profile", "http://example.org/sd/p"])
    assert result.exit_code == 0, result.output
    sent = json.loads(responses.calls[0].request.body)
    assert sent["resourceType"] == "Parameters"
    assert {"name": "profile", "valueUri": "http://example.org/sd/p"} in sent["parameter"]


@responses.activate
def test_older_hapi_412_with_outcome_is_a_verdict_not_a_failure(tmp_path: Path) -> None:
    responses.post(f"{BASE}/Patient/$validate", json=ERROR_OO, status=412)
    result = CliRunner().invoke(cli, ["validate", str(_file(tmp_path)), "--server", BASE])
    assert result.exit_code == 1 and "Patient.birthDate" in result.output
