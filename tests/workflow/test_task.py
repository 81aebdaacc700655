"""The referral's Task: every transition allowed and refused, the version guard, complete's one transaction,
and the Task a transfer creates (once, however often it runs).

The servers are the in-memory fake (tests/workflow/fake_fhir.py) mounted on the clients' session:
it keeps versions and history and answers a stale If-Match (or ifMatch in a transaction) with 412.
"""

from __future__ import annotations

import datetime as dt
from itertools import product

import pytest

from fhir_so.case import Case, Opinion
from fhir_so.client import FhirClient
from fhir_so.errors import CaseNotFoundError, InputError, TransitionRefused, VersionConflict
from fhir_so.workflow import pull, push, transfer
from fhir_so.workflow.task import (
    ACTIONS,
    STEP_FOR,
    TRANSITIONS,
    Action,
    allowed_next,
    check_transition,
    find_task,
    task_accept,
    task_ask,
    task_complete,
    task_decline,
    task_history,
    task_start,
)
from tests.workflow.conftest import BASE, OTHER, quick_policy
from tests.workflow.fake_fhir import FakeFhir, session_for

NOW = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.timezone.utc)
STATUSES = ["draft", "requested", "received", "accepted", "rejected", "ready", "cancelled", "in-progress", "on-hold", "failed",
            "completed", "entered-in-error"]

OPINION = Opinion(
    status="final",
    issued="2026-11-03T09:00:00Z",
    conclusion="Low-risk disease: active surveillance is appropriate.",
    concordance="refined",
    treatment_changed=True,
)


def clock() -> dt.datetime:
    return NOW


# -- the table ---------------------------------------------------------------------------------

EXPECTED = {  # the FHIR Task state machine as the brief draws it, written out independently of the code
    ("requested", "accept"), ("requested", "decline"), ("requested", "ask"),
    ("received", "accept"), ("received", "decline"), ("received", "ask"),
    ("accepted", "start"), ("accepted", "ask"), ("accepted", "decline"),
    ("on-hold", "start"), ("on-hold", "accept"),
    ("in-progress", "ask"), ("in-progress", "complete"),
}


@pytest.mark.parametrize(("status", "action"), list(product(STATUSES, ACTIONS)), ids=lambda v: str(v))
def test_every_status_and_step_is_allowed_or_refused_as_the_state_machine_says(status: str, action: Action) -> None:
    if (status, action) in EXPECTED:
        assert check_transition(status, action) == ACTIONS[action][0]
        return
    with pytest.raises(TransitionRefused) as caught:
        check_transition(status, action, "c-1")
    err = caught.value
    assert err.exit_code == 1 and err.status == status and err.allowed == allowed_next(status)
    assert f"cannot {action} a Task that is {status}" in str(err)
    if allowed_next(status):
        for nxt in allowed_next(status):
            assert f"{nxt} (task {STEP_FOR[nxt]})" in str(err)
    else:
        assert f"none: {status} is final" in str(err)


def test_final_statuses_allow_nothing() -> None:
    for status in ("completed", "rejected", "cancelled", "failed", "entered-in-error"):
        assert allowed_next(status) == () and status not in TRANSITIONS


def test_an_unknown_step_is_bad_input() -> None:
    with pytest.raises(InputError):
        check_transition("requested", "approve")  # type: ignore[arg-type]


# -- on a server ------------------------------------------------------------------------------------


@pytest.fixture
def world(urology: Case) -> tuple[FakeFhir, FhirClient, FhirClient, Case]:
    """The case on the clinic, transferred to the expert: the expert has its Task, requested."""
    clinic, expert = FakeFhir(BASE), FakeFhir(OTHER)
    session = session_for(clinic, expert)
    src = FhirClient(BASE, session=session, retries=quick_policy())
    dst = FhirClient(OTHER, session=session, retries=quick_policy())
    first = urology.updated(opinion=None, task=None)  # the first physician's copy: no Task there
    push(src, first)
    transfer(src, dst, case_id=first.case_id, clock=clock)
    return expert, src, dst, first


def _task(expert: FakeFhir) -> dict:  # type: ignore[type-arg]
    tasks = expert.all("Task")
    assert len(tasks) == 1
    return tasks[0]


def test_the_transfer_creates_a_requested_task_with_the_request_parties_and_records(world) -> None:  # type: ignore[no-untyped-def]
    expert, _, dst, case = world
    task = _task(expert)
    assert (task["status"], task["intent"], task["priority"]) == ("requested", "order", case.priority)
    assert task["businessStatus"]["coding"][0]["code"] == "received"
    request = expert.all("ServiceRequest")[0]
    assert task["focus"] == {"reference": f"ServiceRequest/{request['id']}"}
    assert task["for"] == request["subject"] and task["requester"] == request["requester"] and task["owner"] == request["performer"][0]
    assert task["authoredOn"] == "2026-11-02T08:00:00Z"
    docs = {f"DocumentReference/{d['id']}" for d in expert.all("DocumentReference")}
    assert {i["valueReference"]["reference"] for i in task["input"]} == docs and len(task["input"]) == len(docs)
    assert find_task(dst, case.case_id)["id"] == task["id"]


def test_a_rerun_of_the_transfer_creates_no_second_task_and_keeps_its_status(world) -> None:  # type: ignore[no-untyped-def]
    expert, src, dst, case = world
    task_accept(dst, case.case_id, clock=clock)
    again = transfer(src, dst, case_id=case.case_id, clock=lambda: NOW + dt.timedelta(hours=1))
    task = _task(expert)
    assert task["status"] == "accepted" and task["meta"]["versionId"] == "2"
    assert not [m for m in again.plan.moves if m.startswith("Task")]  # nothing new to add
    assert len(expert.all("Provenance")) == 1  # the same transfer id: no second Provenance


def test_records_sent_later_become_new_inputs(world, urology: Case) -> None:  # type: ignore[no-untyped-def]
    expert, src, dst, case = world
    task_accept(dst, case.case_id, clock=clock)
    extra = {"id": "zz-ct", "kind": "imaging", "title": "CT abdomen", "date": "2026-10-20T10:00:00Z",
             "content": {"content_type": "application/pdf", "data": "JVBERi0K"}}
    push(src, case.with_record(extra))
    result = transfer(src, dst, case_id=case.case_id, clock=lambda: NOW + dt.timedelta(hours=2))
    task = _task(expert)
    assert task["status"] == "accepted"  # untouched
    assert task["lastModified"] == "2026-11-02T10:00:00Z"
    docs = {f"DocumentReference/{d['id']}" for d in expert.all("DocumentReference")}
    assert {i["valueReference"]["reference"] for i in task["input"]} == docs and len(task["input"]) == len(docs)
    assert [m for m in result.plan.moves if m.startswith("Task")] == [f"Task/{task['id']} (accepted): 1 more record(s) as input"]


def test_the_whole_life_accept_ask_start_complete(world) -> None:  # type: ignore[no-untyped-def]
    expert, _, dst, case = world
    cid = case.case_id
    accepted = task_accept(dst, cid, clock=clock)
    assert (accepted.previous, accepted.status, accepted.business_status, accepted.version) == ("requested", "accepted", "accepted", "2")
    asked = task_ask(dst, cid, ["imaging", "operative-note", "imaging"], "Please send the MRI", clock=clock)
    assert (asked.status, asked.business_status) == ("on-hold", "more-info-needed")
    task = _task(expert)
    wanted = [o["valueCodeableConcept"]["coding"][0]["code"] for o in task["output"]]
    assert wanted == ["18748-4", "11504-8"] and task["note"] == [{"text": "Please send the MRI"}]
    with pytest.raises(TransitionRefused):  # asking again while on hold is no transition (on-hold -> on-hold)
        task_ask(dst, cid, ["imaging"], clock=clock)
    started = task_start(dst, cid, clock=clock)
    assert (started.previous, started.status) == ("on-hold", "in-progress")
    done = task_complete(dst, cid, OPINION, clock=clock)
    assert (done.status, done.business_status, done.version) == ("completed", "completed", "5")
    report = expert.all("DiagnosticReport")[0]
    assert done.opinion == f"DiagnosticReport/{report['id']}"
    task = _task(expert)
    assert task["output"][-1]["valueReference"] == {"reference": f"DiagnosticReport/{report['id']}"}
    assert report["basedOn"] == [task["focus"]] and report["subject"] == task["for"] and report["performer"] == [task["owner"]]
    assert "completed" in task["text"]["div"]  # the narrative follows the status
    history = task_history(dst, task["id"])
    assert [(e.version, e.status, e.business_status) for e in history] == [
        ("1", "requested", "received"), ("2", "accepted", "accepted"), ("3", "on-hold", "more-info-needed"),
        ("4", "in-progress", "in-progress"), ("5", "completed", "completed"),
    ]
    pulled = pull(dst, case_id=cid)
    assert pulled.opinion == OPINION
    assert pulled.task is not None and pulled.task.status == "completed" and pulled.task.requested_kinds == ["imaging", "operative-note"]
    assert pulled.task.note == "Please send the MRI" and [e.version for e in pulled.task.history] == ["1", "2", "3", "4", "5"]
    for step in (lambda: task_accept(dst, cid), lambda: task_complete(dst, cid, OPINION), lambda: task_decline(dst, cid, "no")):
        with pytest.raises(TransitionRefused) as caught:
            step()
        assert "none: completed is final" in str(caught.value)


def test_decline_records_the_reason_and_is_final(world) -> None:  # type: ignore[no-untyped-def]
    expert, _, dst, case = world
    with pytest.raises(InputError):
        task_decline(dst, case.case_id, "  ")
    result = task_decline(dst, case.case_id, "Outside my specialty", clock=clock)
    assert (result.status, result.business_status) == ("rejected", "declined")
    assert _task(expert)["statusReason"] == {"text": "Outside my specialty"}
    with pytest.raises(TransitionRefused) as caught:
        task_complete(dst, case.case_id, OPINION)
    assert "cannot complete a Task that is rejected; allowed next: none: rejected is final" in str(caught.value)
    assert expert.all("DiagnosticReport") == []  # refused before anything was written
    assert pull(dst, case_id=case.case_id).task.reason == "Outside my specialty"  # type: ignore[union-attr]


def test_complete_before_start_is_refused_with_the_allowed_steps(world) -> None:  # type: ignore[no-untyped-def]
    _, _, dst, case = world
    task_accept(dst, case.case_id, clock=clock)
    with pytest.raises(TransitionRefused) as caught:
        task_complete(dst, case.case_id, OPINION)
    assert "allowed next: in-progress (task start), on-hold (task ask), rejected (task decline)" in str(caught.value)


def test_ask_checks_the_kinds(world) -> None:  # type: ignore[no-untyped-def]
    _, _, dst, case = world
    with pytest.raises(InputError, match="at least one record kind"):
        task_ask(dst, case.case_id, [])
    with pytest.raises(InputError, match="unknown record kind"):
        task_ask(dst, case.case_id, ["x-ray"])


def test_a_lost_race_is_a_version_conflict_naming_the_newer_version(world) -> None:  # type: ignore[no-untyped-def]
    expert, _, dst, case = world
    read = find_task(dst, case.case_id)
    task_accept(dst, case.case_id, clock=clock)  # the other clinician was first
    with pytest.raises(VersionConflict) as caught:
        task_decline(dst, case.case_id, "busy", expected_version=read["meta"]["versionId"])  # type: ignore[index]
    err = caught.value
    assert err.exit_code == 1 and (err.version, err.newer, err.status) == ("1", "2", "accepted")
    assert "the server holds version 2 (accepted)" in str(err) and "nothing was written" in str(err)
    assert _task(expert)["status"] == "accepted"


def test_a_lost_race_in_complete_writes_neither_the_report_nor_the_task(world) -> None:  # type: ignore[no-untyped-def]
    expert, _, dst, case = world
    task_accept(dst, case.case_id, clock=clock)
    task_start(dst, case.case_id, clock=clock)
    with pytest.raises(VersionConflict) as caught:
        task_complete(dst, case.case_id, OPINION, expected_version="2")
    assert caught.value.newer == "3"
    assert expert.all("DiagnosticReport") == [] and _task(expert)["status"] == "in-progress"


def test_a_case_without_a_task_is_not_found(world) -> None:  # type: ignore[no-untyped-def]
    _, src, _, case = world
    with pytest.raises(CaseNotFoundError) as caught:
        task_accept(src, case.case_id)  # the clinic's server has the case but no Task
    assert caught.value.exit_code == 2 and "no Task for case" in str(caught.value)


def test_a_third_opinion_task_links_the_earlier_task(urology: Case) -> None:
    clinic, expert = FakeFhir(BASE), FakeFhir(OTHER)
    session = session_for(clinic, expert)
    src = FhirClient(BASE, session=session, retries=quick_policy())
    dst = FhirClient(OTHER, session=session, retries=quick_policy())
    third = urology.updated(case_id="so-third-1", opinion=None, task=None, earlier_opinions=[{"case_id": urology.case_id, "summary": "refined"}])
    push(src, third)
    transfer(src, dst, case_id=third.case_id, clock=clock)
    task = expert.all("Task")[0]
    earlier = [i for i in task["input"] if i["type"]["coding"][0]["code"] == "earlier-task"]
    assert earlier == [{"type": earlier[0]["type"], "valueReference": {"type": "Task", "identifier": {
        "system": "https://fhir-so.org/fhir/sid/task-id", "value": urology.case_id}}}]
    assert pull(dst, case_id=third.case_id).task.earlier_task == urology.case_id  # type: ignore[union-attr]


def test_a_history_answered_from_a_stale_count_is_completed_version_by_version(world) -> None:  # type: ignore[no-untyped-def]
    """HAPI answers Task/ID/_history from a cached count: a Task updated since shows only its newest versions."""
    expert, _, dst, case = world
    task_accept(dst, case.case_id, clock=clock)
    task_start(dst, case.case_id, clock=clock)
    expert.history_limit = 1
    task_id = _task(expert)["id"]
    assert [(e.version, e.status) for e in task_history(dst, task_id)] == [("1", "requested"), ("2", "accepted"), ("3", "in-progress")]
    vreads = [url.rsplit("/", 1)[1] for method, url in expert.requests if "/_history/" in url]
    assert vreads == ["1", "2"]  # the versions the answer left out, read one by one


def _another_clinician_first(expert: FakeFhir, method: str) -> None:
    """Just before the next write (``update`` or ``transaction``) reaches the server, someone else accepts the Task."""
    original = getattr(expert, method)

    def racing(*args):  # type: ignore[no-untyped-def]
        setattr(expert, method, original)  # once
        task = _task(expert)
        expert.update("Task", task["id"], {**task, "status": "accepted"}, None)
        return original(*args)

    setattr(expert, method, racing)


def test_the_server_refuses_an_update_made_against_an_old_version(world) -> None:  # type: ignore[no-untyped-def]
    expert, _, dst, case = world
    _another_clinician_first(expert, "update")
    with pytest.raises(VersionConflict) as caught:
        task_decline(dst, case.case_id, "busy")
    err = caught.value
    assert (err.version, err.newer, err.status) == ("1", "2", "accepted") and "HTTP 412" in str(err)
    assert _task(expert)["status"] == "accepted" and "statusReason" not in _task(expert)  # the decline was not written


def test_the_server_refuses_a_complete_made_against_an_old_version(world) -> None:  # type: ignore[no-untyped-def]
    expert, _, dst, case = world
    task_accept(dst, case.case_id, clock=clock)
    task_start(dst, case.case_id, clock=clock)
    _another_clinician_first(expert, "transaction")
    with pytest.raises(VersionConflict) as caught:
        task_complete(dst, case.case_id, OPINION)
    assert caught.value.newer == "4"
    assert expert.all("DiagnosticReport") == []  # one transaction: the report went with the refused Task update
