"""``fhir-so task ...``: each step, its options, its exit codes (0 done, 1 refused, 2 bad input, 3 server failed).

HTTP goes through ``responses`` to the in-memory fake servers of the workflow tests.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import responses
from click.testing import CliRunner

from fhir_so.case import load_case
from fhir_so.cli import cli
from fhir_so.client import FhirClient
from fhir_so.workflow import push, transfer
from tests.workflow.conftest import BASE, EXAMPLES, OTHER, quick_policy
from tests.workflow.fake_fhir import FakeFhir, serve_with_responses

CASE_ID = "so-2026-uro-0417"


@pytest.fixture
def expert() -> Iterator[FakeFhir]:
    """The urology case transferred to the expert's (fake) server, which now holds its Task, requested."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        clinic, expert = FakeFhir(BASE), FakeFhir(OTHER)
        serve_with_responses(rsps, clinic, expert)
        case = load_case(EXAMPLES / "urology-second-opinion.case.json").updated(opinion=None, task=None)
        with FhirClient(BASE, retries=quick_policy()) as src, FhirClient(OTHER, retries=quick_policy()) as dst:
            push(src, case)
            transfer(src, dst, case_id=CASE_ID, clock=lambda: dt.datetime(2026, 11, 2, 8, tzinfo=dt.timezone.utc))
        yield expert


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("FHIR_SO_SERVER", "FHIR_SO_TOKEN", "FHIR_SO_USERNAME", "FHIR_SO_PASSWORD", "FHIR_SO_CLIENT_ID", "FHIR_SO_PRIVATE_KEY"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def task(runner: CliRunner, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli, ["task", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def on(step: str, *extra: str) -> list[str]:
    return [step, "--server", OTHER, "--case", CASE_ID, *extra]


def status_of(expert: FakeFhir) -> str:
    return str(expert.all("Task")[0]["status"])


def test_accept_ask_start_complete_with_a_report(runner: CliRunner, expert: FakeFhir, tmp_path: Path) -> None:
    code, out, _ = task(runner, *on("accept"))
    assert code == 0 and "requested -> accepted (accepted), version 2" in out
    code, out, _ = task(runner, *on("ask", "--records", "imaging,operative-note", "--records", "lab-report", "--note", "MRI please", "--json"))
    answer = json.loads(out)
    assert code == 0 and (answer["status"], answer["business_status"], answer["version"]) == ("on-hold", "more-info-needed", "3")
    outputs = [o["valueCodeableConcept"]["coding"][0]["code"] for o in expert.all("Task")[0]["output"]]
    assert outputs == ["18748-4", "11504-8", "11502-2"]
    assert task(runner, *on("start"))[0] == 0
    pdf = tmp_path / "opinion.pdf"
    pdf.write_bytes(b"%PDF-1.4 signed opinion\n")
    code, out, err = task(runner, *on(
        "complete", "--conclusion", "Low-risk disease", "--concordance", "refined", "--treatment-changed",
        "--diagnosis", "urn:oid:2.16.840.1.113883.6.96|399068003|Malignant tumor of prostate",
        "--issued", "2026-11-03T09:00:00Z", "--report", "opinion.pdf", "--files-root", str(tmp_path), "--json",
    ))
    assert code == 0, err
    answer = json.loads(out)
    report = expert.all("DiagnosticReport")[0]
    assert answer["status"] == "completed" and answer["opinion"] == f"DiagnosticReport/{report['id']}"
    assert report["conclusion"] == "Low-risk disease" and report["issued"] == "2026-11-03T09:00:00Z"
    assert report["presentedForm"][0]["contentType"] == "application/pdf" and report["presentedForm"][0]["title"] == "opinion.pdf"
    assert report["conclusionCode"][0]["coding"][0]["code"] == "399068003"


def test_an_illegal_step_exits_1_naming_the_allowed_ones(runner: CliRunner, expert: FakeFhir) -> None:
    code, _, err = task(runner, *on("complete", "--conclusion", "x", "--concordance", "confirmed", "--treatment-unchanged"))
    assert code == 1
    assert "cannot complete a Task that is requested; allowed next: accepted (task accept), rejected (task decline), on-hold (task ask)" in err
    assert expert.all("DiagnosticReport") == [] and status_of(expert) == "requested"


def test_decline_needs_a_reason_and_is_final(runner: CliRunner, expert: FakeFhir) -> None:
    code, _, err = task(runner, *on("decline"))
    assert code == 2 and "--reason" in err
    code, out, _ = task(runner, *on("decline", "--reason", "Outside my specialty"))
    assert code == 0 and "-> rejected (declined)" in out
    code, _, err = task(runner, *on("accept"))
    assert code == 1 and "none: rejected is final" in err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (on("ask", "--records", "x-ray"), "x-ray is not a record kind"),
        (on("ask"), "Missing option '--records'"),
        (on("complete", "--conclusion", "x", "--concordance", "maybe", "--treatment-changed"), "'maybe' is not one of"),
        (on("complete", "--conclusion", "x", "--concordance", "refined"), "--treatment-changed"),
        (on("complete", "--conclusion", "x", "--concordance", "refined", "--treatment-changed", "--diagnosis", "nosystem"), "SYSTEM|CODE"),
        (on("complete", "--conclusion", "x", "--concordance", "refined", "--treatment-changed", "--issued", "yesterday"), "--issued"),
        (on("complete", "--conclusion", "x", "--concordance", "refined", "--treatment-changed", "--report", "../../etc/passwd"),
         "outside the files folder"),
        (["accept", "--server", OTHER, "--case", "no-such-case"], "no Task for case no-such-case"),
        (["accept", "--case", CASE_ID], "--server"),
    ],
    ids=["unknown-kind", "no-kinds", "bad-concordance", "no-treatment", "bad-diagnosis", "bad-issued", "report-outside-root",
         "no-task", "no-server"],
)
def test_bad_input_exits_2(runner: CliRunner, expert: FakeFhir, args: list[str], fragment: str) -> None:
    code, _, err = task(runner, *args)
    assert code == 2 and fragment in err, err
    assert status_of(expert) == "requested"


def test_a_server_that_fails_exits_3(runner: CliRunner) -> None:
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{OTHER}/Task", status=500, json={"resourceType": "OperationOutcome", "issue": []})
        code, _, err = task(runner, "accept", "--server", OTHER, "--case", CASE_ID, "--timeout", "1")
    assert code == 3, err


def test_the_help_draws_the_state_machine(runner: CliRunner) -> None:
    code, out, _ = task(runner, "--help")
    assert code == 0
    assert "in-progress -> on-hold (ask) | completed (complete)" in " ".join(out.split())


def test_expect_version_refuses_a_task_that_moved_on(runner: CliRunner, expert: FakeFhir) -> None:
    assert task(runner, *on("accept", "--expect-version", "1"))[0] == 0
    code, _, err = task(runner, *on("decline", "--reason", "busy", "--expect-version", "1"))
    assert code == 1 and "changed since version 1 was read: the server holds version 2 (accepted)" in err
    assert status_of(expert) == "accepted"
