"""``fhir-so status``: the timeline on a terminal, --json, --watch until Ctrl-C, and the exit codes."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import responses
from click.testing import CliRunner
from tests.workflow.conftest import BASE, EXAMPLES, OTHER
from tests.workflow.history_fake import HistoryFake, Ticker, serve

from fhir_so.bundle import build_bundle
from fhir_so.case import Case, load_case
from fhir_so.cli import cli
from fhir_so.cli.app import App
from fhir_so.client import FhirClient
from fhir_so.workflow.push import push
from fhir_so.workflow.transfer import transfer

CASE_ID = "so-2026-uro-0417"
NOW = dt.datetime(2026, 10, 3, 12, 0, tzinfo=dt.timezone.utc)
Answer = tuple[int, Any, dict[str, str]] | None


@dataclass
class Servers:
    clinic: HistoryFake
    expert: HistoryFake
    case: Case


@pytest.fixture
def servers() -> Iterator[Servers]:
    """The urology case pushed to the clinic and sent to the expert (imaging withheld by a narrow consent)."""
    ticker = Ticker()
    clinic, expert = HistoryFake(BASE, ticker), HistoryFake(OTHER, ticker)
    case = load_case(EXAMPLES / "urology-second-opinion.case.json")
    consent = case.records_consent
    assert consent is not None
    case = case.updated(opinion=None, records_consent={**consent.model_dump(), "record_kinds": ["lab-report", "treatment-plan"]})
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        serve(mock, clinic, expert)
        with FhirClient(BASE) as first, FhirClient(OTHER) as second:
            request_id = push(first, case).request_id
            transfer(first, second, str(request_id), clock=lambda: NOW)
        yield Servers(clinic, expert, case)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), obj=App(env={}), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_the_timeline_on_a_terminal(servers: Servers) -> None:
    code, out, err = run("status", "--server", BASE, "--expert", OTHER, "--case", CASE_ID)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"case {CASE_ID}: first physician's server {BASE}, expert's server {OTHER}"
    assert any("records-sent" in line and "2 record(s)" in line for line in lines)
    withheld = [line for line in lines if "records-withheld" in line]
    assert {w.split("record ")[1].split(" withheld")[0] for w in withheld} == {"us-scrotum (imaging)", "questions (patient-questions)"}


def test_json_is_one_document(servers: Servers) -> None:
    code, out, _ = run("status", "--server", BASE, "--expert", OTHER, "--case", CASE_ID, "--json")
    data = json.loads(out)
    assert code == 0
    assert data["case_id"] == CASE_ID and data["servers"] == {"first": BASE, "expert": OTHER}
    assert [e["kind"] for e in data["events"]].count("records-withheld") == 2
    assert data["stat"] is False and data["notes"] == []
    assert {k: data["task"][k] for k in ("status", "business_status", "version")} == {"status": "requested", "business_status": "received", "version": "1"}


def test_a_stat_request_is_flagged(servers: Servers) -> None:
    stat = servers.case.updated(priority="stat")
    servers.clinic.transaction(build_bundle(stat))
    code, out, err = run("status", "--server", BASE, "--case", CASE_ID)
    assert code == 0
    assert "FLAG: stat request" in out.splitlines()[1] and "FLAG" in err


def test_watch_prints_only_new_events_and_ends_quietly_on_ctrl_c(servers: Servers) -> None:
    rounds = {"n": 0}
    revoked = servers.case.revoke_records_consent("2026-10-05T10:00:00Z")

    def hook(method: str, url: str) -> Answer:
        if method == "GET" and "/ServiceRequest?" in url and url.startswith(BASE):
            rounds["n"] += 1
            if rounds["n"] == 2:
                servers.clinic.transaction(build_bundle(revoked))  # the patient revokes between two reads
            if rounds["n"] == 4:
                raise KeyboardInterrupt
        return None

    servers.clinic.on_request = hook
    code, out, err = run("status", "--server", BASE, "--expert", OTHER, "--case", CASE_ID, "--watch", "0.1")
    assert code == 0
    assert "Traceback" not in out + err and "stopped watching" in err
    lines = out.splitlines()
    assert lines[0].startswith(f"case {CASE_ID}:")
    after = lines[lines.index(next(line for line in lines if "revoked" in line)):]
    assert len(after) == 1, "the second read prints the one new event, the third nothing"
    assert "consent so-2026-uro-0417-records revoked" in after[0]
    assert sum("records-sent" in line for line in lines) == 1


def test_watch_json_prints_one_line_per_event(servers: Servers) -> None:
    rounds = {"n": 0}

    def hook(method: str, url: str) -> Answer:
        if method == "GET" and "/ServiceRequest?" in url and url.startswith(BASE):
            rounds["n"] += 1
            if rounds["n"] == 2:
                raise KeyboardInterrupt
        return None

    servers.clinic.on_request = hook
    code, out, err = run("status", "--server", BASE, "--case", CASE_ID, "--watch", "0.1", "--json")
    assert code == 0 and "stopped watching" in err
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) >= 3 and all(set(e) == {"time", "server", "side", "kind", "text", "reference"} for e in events)
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--case", "no-such-case"], 2, "has no ServiceRequest with case id no-such-case"),
        (["--case", CASE_ID, "--expert", BASE], 2, "the same"),
        (["--case", "a b|c"], 2, "the case id must be a FHIR id"),
        (["--case", CASE_ID, "--watch", "0"], 2, "--watch"),
        (["--case", CASE_ID, "--expert", "ftp://x"], 2, "--expert"),
    ],
    ids=["unknown-case", "same-server", "bad-case-id", "watch-zero", "bad-expert-url"],
)
def test_bad_input_exits_2(servers: Servers, args: list[str], code: int, message: str) -> None:
    got, out, err = run("status", "--server", BASE, *args)
    assert got == code and message in out + err


def test_a_server_failure_exits_3(servers: Servers) -> None:
    def broken(method: str, url: str) -> Answer:
        if "/_history" in url:  # answered 400: not retried, so the test does not wait
            return 400, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception", "diagnostics": "history is broken"}]}, {}
        return None

    servers.expert.on_request = broken
    code, _, err = run("status", "--server", BASE, "--expert", OTHER, "--case", CASE_ID)
    assert code == 3 and "Traceback" not in err
