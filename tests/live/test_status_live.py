"""fhir-so status and the ask/answer loop on the two local HAPI servers, and the demo's new steps.

Each test uses fresh case ids and a fresh patient (the servers may be kept between runs, and the
consent policy reads every Consent of the patient); every read goes through the client (by id,
or searches that ask for no cached answer), so the tests hold on the tuned and the stock server
profile alike.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fhir_so import terminology as term
from fhir_so.case import Case, load_case
from fhir_so.client import FhirClient
from fhir_so.workflow import find_request_id, push, transfer
from fhir_so.workflow.demo import SECOND, THIRD, run_demo
from fhir_so.workflow.task import find_task, task_accept, task_ask, task_complete, task_start
from tests.live.conftest import run_fhir_so

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
NOW = dt.datetime(2026, 10, 3, 12, 0, tzinfo=dt.timezone.utc)
NO_CACHE = {"Cache-Control": "no-cache"}


def clock() -> dt.datetime:
    return NOW


def utc(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def unique(case: Case, run: str) -> Case:
    """The case under ids of this run: its case id, its earlier opinions', its patient's."""
    ident = case.patient.identifier
    patient = case.patient.model_copy(update={"identifier": ident.model_copy(update={"value": f"{ident.value}-{run}"})})
    earlier = [e.model_copy(update={"case_id": f"{e.case_id}-{run}"}) for e in case.earlier_opinions]
    task = case.task.model_copy(update={"earlier_task": f"{case.task.earlier_task}-{run}" if case.task.earlier_task else None}) if case.task else None
    return case.updated(case_id=f"{case.case_id}-{run}", patient=patient, earlier_opinions=earlier, task=task)


def narrow(case: Case, *kinds: str) -> Case:
    consent = case.records_consent
    assert consent is not None
    return case.updated(opinion=None, task=None, records_consent={**consent.model_dump(), "record_kinds": list(kinds)})


@pytest.fixture
def clients(fhir_server_pair: tuple[str, str]) -> Iterator[tuple[FhirClient, FhirClient]]:
    source, destination = fhir_server_pair
    with FhirClient(source) as a, FhirClient(destination) as b:
        yield a, b


def transfer_cli(src: FhirClient, dst: FhirClient, case_id: str) -> tuple[int, dict[str, Any], str]:
    done = run_fhir_so("transfer", "--from", src.base_url, "--to", dst.base_url, "--case", case_id, "--json", timeout=120)
    return done.returncode, json.loads(done.stdout), done.stderr


def test_the_ask_under_a_narrower_then_a_wider_consent_and_status_against_the_servers(clients: tuple[FhirClient, FhirClient]) -> None:
    src, dst = clients
    urology = unique(load_case(EXAMPLES / SECOND), uuid.uuid4().hex[:8])
    case_id = urology.case_id
    opinion = urology.opinion
    assert opinion is not None
    push(src, narrow(urology, "lab-report", "treatment-plan", "patient-questions"))
    transfer(src, dst, case_id=case_id, clock=clock)
    task_accept(dst, case_id, clock=clock)
    task_ask(dst, case_id, ["imaging"], "the ultrasound itself", clock=clock)

    # a narrower consent: the lab reports are there already, the imaging is refused, naming the consent and provision
    code, out, err = transfer_cli(src, dst, case_id)
    consent = next(iter(src.search("Consent", identifier=f"{term.SID_CONSENT}|{case_id}-records").with_headers(NO_CACHE)))
    assert code == 1, err
    assert out["ask"]["answered"] is False and [u["kind"] for u in out["ask"]["unmet"]] == ["imaging"]
    assert f"the ask is not answered for imaging: record(s) us-scrotum withheld: the consent does not cover imaging records: the consent {case_id}-records covers" in err
    assert f"(decided at Consent/{consent['id']}.provision)" in err
    held = find_task(dst, case_id)
    assert held is not None and held["status"] == "on-hold"

    # a wider consent: the imaging follows into the Task's input, and the Task goes back to accepted
    push(src, narrow(urology))
    code, out, err = transfer_cli(src, dst, case_id)
    assert code == 0, err
    assert out["ask"]["answered"] is True and out["ask"]["sent"] == ["imaging"] and out["ask"]["resumed"] == "accepted"
    task = find_task(dst, case_id)
    assert task is not None and task["status"] == "accepted"
    records = [i["valueReference"]["reference"] for i in task["input"] if i["type"]["coding"][0]["code"] == "record"]
    assert len(records) == 4

    task_start(dst, case_id, clock=clock)
    task_complete(dst, case_id, opinion, clock=clock)
    transfer(dst, src, case_id=case_id, report_back=True, clock=lambda: NOW + dt.timedelta(days=7))

    # status --json against what the two servers hold
    done = run_fhir_so("status", "--server", src.base_url, "--expert", dst.base_url, "--case", case_id, "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    first_id, expert_id = find_request_id(src, case_id), find_request_id(dst, case_id)
    assert data["request"] == {"first": f"ServiceRequest/{first_id}", "expert": f"ServiceRequest/{expert_id}"}
    task = find_task(dst, case_id)
    assert task is not None
    assert data["task"]["reference"] == f"Task/{task['id']}" and data["task"]["version"] == task["meta"]["versionId"]
    assert data["task"]["status"] == "completed"
    events = data["events"]
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)
    # every version of the Task is one event, and says the status the server holds for it
    task_events = [e for e in events if e["kind"] in ("task", "records-asked")]
    assert [e["reference"] for e in task_events] == [f"Task/{task['id']}/_history/{v}" for v in range(1, int(task["meta"]["versionId"]) + 1)]
    for event in task_events:
        held_then = dst.vread("Task", str(task["id"]), event["reference"].rsplit("/", 1)[1])
        assert utc(event["time"]) == utc(held_then["meta"]["lastUpdated"])
        assert held_then["status"] in event["text"] or event["kind"] == "records-asked" or "added to the Task's input" in event["text"]
    # the records sent: one event per Provenance of a transfer from the first server that wrote something new
    provenances = {f"Provenance/{p['id']}" for p in dst.search("Provenance", target=f"ServiceRequest/{expert_id}").with_headers(NO_CACHE)}
    sent = [e for e in events if e["kind"] == "records-sent"]
    assert {e["reference"].split("/_history/")[0] for e in sent} == provenances and len(sent) == 2
    assert "1 new): us-scrotum (imaging)" in sent[1]["text"]
    withheld = [e for e in events if e["kind"] == "records-withheld"]
    assert len(withheld) == 1 and withheld[0]["text"].startswith("record us-scrotum (imaging) withheld: the consent does not cover imaging records")
    assert withheld[0]["reference"] == f"Consent/{consent['id']}/_history/1" and withheld[0]["server"] == src.base_url
    consent_versions = [e for e in events if e["kind"] == "consent"]
    assert [e["reference"] for e in consent_versions if e["reference"].startswith(f"Consent/{consent['id']}/")] == [
        f"Consent/{consent['id']}/_history/1", f"Consent/{consent['id']}/_history/2"]
    opinion_on_expert = next(iter(dst.search("DiagnosticReport", {"based-on": f"ServiceRequest/{expert_id}"}).with_headers(NO_CACHE)))
    report_home = next(iter(src.search("DiagnosticReport", {"based-on": f"ServiceRequest/{first_id}"}).with_headers(NO_CACHE)))
    assert [e["reference"] for e in events if e["kind"] == "opinion"] == [f"DiagnosticReport/{opinion_on_expert['id']}/_history/1"]
    assert [e["reference"] for e in events if e["kind"] == "report-back"] == [f"DiagnosticReport/{report_home['id']}/_history/1"]
    assert {e["server"] for e in events} == {src.base_url, dst.base_url}


def test_the_demo_tells_the_ask_and_the_third_opinion_and_a_rerun_writes_nothing(clients: tuple[FhirClient, FhirClient], tmp_path: Path) -> None:
    src, dst = clients
    run = uuid.uuid4().hex[:8]
    folder = tmp_path / "examples"
    folder.mkdir()
    for name in (SECOND, THIRD):
        (folder / name).write_text(unique(load_case(EXAMPLES / name), run).to_json(), encoding="utf-8")
    lines: list[str] = []
    (tmp_path / "one").mkdir()
    result = run_demo(src, dst, examples=folder, state_dir=tmp_path / "one", say=lines.append)
    text = "\n".join(lines)
    second, third = f"so-2026-uro-0417-{run}", f"so-2026-uro-0417-3-{run}"
    assert [(s.case_id, s.action) for s in result.task_steps] == [
        (second, "accept"), (second, "ask"), (second, "start"), (second, "complete"),
        (third, "accept"), (third, "start"), (third, "complete"),
    ]
    assert "REFUSED for imaging" in text and f"the consent {second}-records covers" in text
    assert len(result.asks) == 1 and result.asks[0].resumed == "accepted"
    second_task, third_task = find_task(dst, second), find_task(dst, third)
    assert second_task is not None and third_task is not None
    assert second_task["status"] == third_task["status"] == "completed"
    assert len([i for i in second_task["input"] if i["type"]["coding"][0]["code"] == "record"]) == 4
    earlier = [i["valueReference"]["identifier"]["value"] for i in third_task["input"] if i["type"]["coding"][0]["code"] == "earlier-task"]
    assert earlier == [second]
    assert find_task(src, second, required=False) is None, "the Task lives on the second-opinion server only"

    (tmp_path / "two").mkdir()
    again_lines: list[str] = []
    again = run_demo(src, dst, examples=folder, state_dir=tmp_path / "two", say=again_lines.append)
    assert again.wrote_nothing_new, [p.to_json() for p in again.pushes]
    assert "nothing was written, nothing duplicated" in again_lines[-1]
    assert find_task(dst, second) == second_task and find_task(dst, third) == third_task
