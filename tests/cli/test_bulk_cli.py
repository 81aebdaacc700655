"""fhir-so export / import on the command line: the whole protocol against a mocked server, resume, cancel, exit codes."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from click.testing import CliRunner
from tests.client.client_helpers import capability_statement, outcome

from fhir_so.cli import cli
from fhir_so.cli.app import App

BASE = "http://fhir.example.org/r4"
STATUS = f"{BASE}/$export-poll-status?_jobId=j1"
FAST = ["--max-poll-interval", "0.1"]
# a fake bearer token made per run: no credential, however fake, is written in the repo
TOKEN = f"tok-CLI-{secrets.token_hex(5)}"


def ndjson(*resources: dict[str, Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in resources)


PATIENTS = ndjson({"resourceType": "Patient", "id": "p1"}, {"resourceType": "Patient", "id": "p2"})
REQUESTS = ndjson({"resourceType": "ServiceRequest", "id": "s1", "status": "active", "intent": "order", "subject": {"reference": "Patient/p1"}})


def manifest(**extra: Any) -> dict[str, Any]:
    data = {
        "transactionTime": "2026-11-29T10:00:00Z",
        "request": f"{BASE}/$export",
        "requiresAccessToken": True,
        "output": [
            {"type": "Patient", "url": f"{BASE}/Binary/1", "count": 2},
            {"type": "ServiceRequest", "url": f"{BASE}/Binary/2"},
        ],
        "error": [],
    }
    data.update(extra)
    return data


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), obj=App(env=env or {}), catch_exceptions=False)


def serve_export(rsps: responses.RequestsMock, data: dict[str, Any] | None = None) -> None:
    rsps.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
    rsps.get(STATUS, status=202, headers={"Retry-After": "0", "X-Progress": "working"})
    rsps.get(STATUS, json=data or manifest())
    rsps.get(f"{BASE}/Binary/1", body=PATIENTS)
    rsps.get(f"{BASE}/Binary/2", body=REQUESTS)
    rsps.delete(STATUS, status=202)


def calls(rsps: responses.RequestsMock, method: str, url: str) -> int:
    return sum(1 for c in rsps.calls if c.request.method == method and c.request.url == url)


def test_export_downloads_verifies_and_deletes_the_job(rsps: responses.RequestsMock, tmp_path: Path) -> None:
    serve_export(rsps)
    out = tmp_path / "out"
    result = run("export", "--server", BASE, "-o", str(out), "--json", *FAST, env={"FHIR_SO_TOKEN": TOKEN})
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["counts"] == {"Patient": 2, "ServiceRequest": 1} and report["jobDeleted"] is True
    assert (out / "Patient.1.ndjson").read_text() == PATIENTS
    assert (out / "ServiceRequest.1.ndjson").read_text() == REQUESTS
    assert json.loads((out / "manifest.json").read_text()) == manifest()
    assert calls(rsps, "DELETE", STATUS) == 1
    # the token went to the server's origin for the kick-off, the polls and the files (requiresAccessToken)
    assert all(c.request.headers.get("Authorization") == f"Bearer {TOKEN}" for c in rsps.calls)


def test_a_rerun_after_a_kill_polls_the_same_job_and_skips_finished_files(rsps: responses.RequestsMock, tmp_path: Path) -> None:
    serve_export(rsps)
    out = tmp_path / "out"
    assert run("export", "--server", BASE, "-o", str(out), "--keep-job", *FAST).exit_code == 0
    # as if killed after the first file: the second file and the completion were never recorded
    state_file = out / ".fhir-so-export.json"
    state = json.loads(state_file.read_text())
    del state["files"][f"{BASE}/Binary/2"]
    state["complete"] = False
    state_file.write_text(json.dumps(state))
    (out / "ServiceRequest.1.ndjson").unlink()
    rsps.calls.reset()  # type: ignore[no-untyped-call]
    result = run("export", "--server", BASE, "-o", str(out), *FAST)
    assert result.exit_code == 0, result.output
    assert calls(rsps, "GET", f"{BASE}/$export?_outputFormat=application%2Ffhir%2Bndjson") == 0  # no new job
    assert calls(rsps, "GET", f"{BASE}/Binary/1") == 0
    assert calls(rsps, "GET", f"{BASE}/Binary/2") == 1
    assert "1 downloaded, 1 from an earlier run" in result.stdout


def test_a_complete_export_is_not_requested_again(rsps: responses.RequestsMock, tmp_path: Path) -> None:
    serve_export(rsps)
    out = tmp_path / "out"
    assert run("export", "--server", BASE, "-o", str(out), *FAST).exit_code == 0
    rsps.calls.reset()  # type: ignore[no-untyped-call]
    result = run("export", "--server", BASE, "-o", str(out), *FAST)
    assert result.exit_code == 0 and len(rsps.calls) == 0
    assert "already held this complete export" in result.stdout


def test_a_job_gone_on_resume_starts_a_new_one(rsps: responses.RequestsMock, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    old = f"{BASE}/$export-poll-status?_jobId=old"
    (out / ".fhir-so-export.json").write_text(json.dumps({
        "format": "fhir-so-export-state/1",
        "export": {"server": BASE, "request": {"level": "system", "group": None, "types": [], "since": None, "patients": []}},
        "status_url": old, "manifest": None, "files": {}, "complete": False,
    }))
    rsps.get(old, status=404, json=outcome("no such job"))
    serve_export(rsps)
    result = run("export", "--server", BASE, "-o", str(out), *FAST)
    assert result.exit_code == 0, result.output
    assert "earlier export job is gone" in result.stderr
    assert json.loads((out / ".fhir-so-export.json").read_text())["status_url"] == STATUS


def test_ctrl_c_cancels_the_job_and_exits_130_without_traceback(rsps: responses.RequestsMock, tmp_path: Path) -> None:
    rsps.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})

    def interrupted(request: Any) -> Any:
        raise KeyboardInterrupt

    rsps.add_callback(responses.GET, STATUS, callback=interrupted)
    rsps.delete(STATUS, status=202)
    out = tmp_path / "out"
    result = run("export", "--server", BASE, "-o", str(out), *FAST)
    assert result.exit_code == 130
    assert "Traceback" not in result.output and "cancelled" in result.stderr
    assert calls(rsps, "DELETE", STATUS) == 1
    assert not (out / ".fhir-so-export.json").exists()  # a rerun starts a new export


def test_ctrl_c_during_a_download_removes_the_partial_export(rsps: responses.RequestsMock, tmp_path: Path) -> None:
    rsps.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
    rsps.get(STATUS, json=manifest())
    rsps.get(f"{BASE}/Binary/1", body=PATIENTS)

    def interrupted(request: Any) -> Any:
        raise KeyboardInterrupt

    rsps.add_callback(responses.GET, f"{BASE}/Binary/2", callback=interrupted)
    rsps.delete(STATUS, status=202)
    out = tmp_path / "out"
    assert run("export", "--server", BASE, "-o", str(out), *FAST).exit_code == 130
    assert calls(rsps, "DELETE", STATUS) == 1
    assert sorted(p.name for p in out.iterdir()) == []


def test_error_files_are_saved_and_reported_with_exit_3(rsps: responses.RequestsMock, tmp_path: Path) -> None:
    serve_export(rsps, manifest(error=[{"type": "OperationOutcome", "url": f"{BASE}/Binary/e"}]))
    rsps.get(f"{BASE}/Binary/e", body=ndjson(outcome("Observation/9 could not be read"), outcome("fine", "informational") | {"issue": [{"severity": "information", "code": "informational"}]}))
    out = tmp_path / "out"
    result = run("export", "--server", BASE, "-o", str(out), *FAST)
    assert result.exit_code == 3, result.output
    assert "reported 1 error(s) in 1 file(s)" in result.stdout and "errors/OperationOutcome.1.ndjson" in result.stdout
    assert "Observation/9" in (out / "errors" / "OperationOutcome.1.ndjson").read_text()


def test_a_hostile_manifest_is_exit_3_and_no_file_is_fetched(rsps: responses.RequestsMock, tmp_path: Path) -> None:
    serve_export(rsps, manifest(output=[{"type": "Patient", "url": "http://attacker.example.net/collect"}]))
    result = run("export", "--server", BASE, "-o", str(tmp_path / "out"), *FAST, env={"FHIR_SO_TOKEN": TOKEN})
    assert result.exit_code == 3
    assert "outside the server's origin" in result.stderr and TOKEN not in result.output
    assert not any("attacker" in c.request.url for c in rsps.calls)


def test_a_bad_ndjson_line_is_exit_3_naming_file_and_line(rsps: responses.RequestsMock, tmp_path: Path) -> None:
    serve_export(rsps)
    rsps.replace(responses.GET, f"{BASE}/Binary/2", body=REQUESTS + "{oops\n")
    result = run("export", "--server", BASE, "-o", str(tmp_path / "out"), *FAST)
    assert result.exit_code == 3
    assert "ServiceRequest.1.ndjson: line 2: not JSON" in result.stderr
    assert not (tmp_path / "out" / "ServiceRequest.1.ndjson").exists()  # never half-written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2026-11-01"], "--since must be an instant"),
        (["--since", "last week"], "not a FHIR date"),
        (["--type", "Patient,bad type"], "not a FHIR resource type"),
        (["--patient", "bad id!"], "not a FHIR id"),
        (["--group", "g1", "--patient", "p1"], "only in a Patient-level export"),
        (["--allow-origin", "ftp://x"], "--allow-origin"),
    ],
    ids=["date-without-time", "garbage-since", "bad-type", "bad-patient", "patient-with-group", "bad-origin"],
)
def test_bad_options_are_exit_2(rsps: responses.RequestsMock, tmp_path: Path, args: list[str], message: str) -> None:
    result = run("export", "--server", BASE, "-o", str(tmp_path / "out"), *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_import_cli_prints_json_and_is_idempotent(rsps: responses.RequestsMock, tmp_path: Path) -> None:
    (tmp_path / "Patient.1.ndjson").write_text(PATIENTS)
    created: dict[str, int] = {}

    def transaction(request: Any) -> tuple[int, dict[str, str], str]:
        entries = []
        for e in json.loads(request.body)["entry"]:
            key = e["request"]["ifNoneExist"]
            status = "200 OK" if key in created else "201 Created"
            created.setdefault(key, len(created) + 1)
            entries.append({"response": {"status": status, "location": f"Patient/{created[key]}/_history/1"}})
        return 200, {}, json.dumps({"resourceType": "Bundle", "type": "transaction-response", "entry": entries})

    rsps.get(f"{BASE}/metadata", json=capability_statement("transaction"))
    rsps.add_callback(responses.POST, BASE, callback=transaction)
    first = run("import", str(tmp_path), "--server", BASE, "--json", "--source", "test")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["created"] == {"Patient": 2}
    second = run("import", str(tmp_path), "--server", BASE, "--state", str(tmp_path / "other-state.json"), "--source", "test")
    assert second.exit_code == 0 and "nothing new" in second.stdout


def test_import_of_a_missing_folder_is_exit_2(tmp_path: Path) -> None:
    result = run("import", str(tmp_path / "nope"), "--server", BASE)
    assert result.exit_code == 2 and "no such file or folder" in result.stderr


def test_ctrl_c_when_the_cancel_fails_keeps_the_state_to_resume(rsps: responses.RequestsMock, tmp_path: Path) -> None:
    rsps.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})

    def interrupted(request: Any) -> Any:
        raise KeyboardInterrupt

    rsps.add_callback(responses.GET, STATUS, callback=interrupted)
    rsps.delete(STATUS, status=400, json=outcome("cannot cancel now"))
    out = tmp_path / "out"
    result = run("export", "--server", BASE, "-o", str(out), *FAST)
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert "could not be cancelled" in result.stderr and "cannot cancel now" in result.stderr
    assert json.loads((out / ".fhir-so-export.json").read_text())["status_url"] == STATUS
