"""The case's task part <-> the FHIR Task: every field, what is derived, what is the server's (history)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from fhir_so import terminology as term
from fhir_so.bundle import build_bundle, parse_bundle
from fhir_so.case import Case, TaskEvent, case_from_dict, load_case
from fhir_so.errors import InputError
from fhir_so.mapping.common import check_r4
from tests.mapping.strategies import cases, tasks
from tests.mapping.test_examples import EXAMPLES

TASK: dict[str, Any] = {
    "status": "on-hold",
    "business_status": "more-info-needed",
    "authored": "2026-10-03T08:00:00Z",
    "last_modified": "2026-10-04T16:30:00Z",
    "requested_kinds": ["imaging", "operative-note"],
    "note": "Please send the MRI of the pelvis and the operative note.",
    "earlier_task": "so-2025-uro-0001",
}


@pytest.fixture
def case() -> Case:
    return load_case(EXAMPLES / "urology-second-opinion.case.json").with_task(TASK)


def _entry(bundle: dict[str, Any], rtype: str) -> dict[str, Any]:
    found = [e for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]
    assert len(found) == 1, rtype
    return found[0]


def test_the_task_carries_every_field_where_the_profile_expects_it(case: Case) -> None:
    bundle = build_bundle(case)
    entry = _entry(bundle, "Task")
    task = entry["resource"]
    url = {e["resource"]["resourceType"]: e["fullUrl"] for e in bundle["entry"]}
    assert entry["request"] == {"method": "PUT", "url": f"Task?identifier={term.SID_TASK}|{case.case_id}"}
    assert task["meta"] == {"profile": [term.SD_TASK]}
    assert task["identifier"] == [{"system": term.SID_TASK, "value": case.case_id}]
    assert (task["status"], task["intent"], task["priority"]) == ("on-hold", "order", case.priority)
    assert task["businessStatus"] == term.TASK_BUSINESS_STATUS["more-info-needed"].concept()
    assert task["code"] == term.TASK_FULFILL.concept()
    assert task["focus"] == {"reference": url["ServiceRequest"]} and task["for"] == {"reference": url["Patient"]}
    request = _entry(bundle, "ServiceRequest")["resource"]
    assert task["requester"] == request["requester"] and task["owner"] == request["performer"][0]
    assert (task["authoredOn"], task["lastModified"]) == ("2026-10-03T08:00:00Z", "2026-10-04T16:30:00Z")
    assert task["note"] == [{"text": TASK["note"]}]
    docs = [e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference"]
    records = [i["valueReference"]["reference"] for i in task["input"] if i["type"]["coding"][0]["code"] == "record"]
    assert records == docs and len(docs) == len(case.records)
    earlier = [i for i in task["input"] if i["type"]["coding"][0]["code"] == "earlier-task"]
    assert earlier[0]["valueReference"] == {"type": "Task", "identifier": {"system": term.SID_TASK, "value": "so-2025-uro-0001"}}
    outputs = {(o["type"]["coding"][0]["code"], str(o.get("valueCodeableConcept", o.get("valueReference")))) for o in task["output"]}
    assert outputs == {
        ("records-requested", str(term.RECORD_TYPES["imaging"].concept())),
        ("records-requested", str(term.RECORD_TYPES["operative-note"].concept())),
        ("opinion", str({"reference": url["DiagnosticReport"]})),
    }
    check_r4(task, "Task", "test")
    assert parse_bundle(bundle) == case


def test_a_stat_task_is_flagged_in_its_narrative(case: Case) -> None:
    task = _entry(build_bundle(case.updated(priority="stat")), "Task")["resource"]
    assert task["priority"] == "stat" and "STAT (an emergency: must not wait)" in task["text"]["div"]


def test_decline_reason_and_another_owner_round_trip(case: Case) -> None:
    service = {"kind": "organization", "identifier": {"system": "urn:oid:1.2.3", "value": "tumour-board"}, "name": "Tumour board"}
    declined = case.with_task({**TASK, "status": "rejected", "business_status": "declined", "reason": "Outside my specialty", "owner": service})
    bundle = build_bundle(declined)
    task = _entry(bundle, "Task")["resource"]
    assert task["statusReason"] == {"text": "Outside my specialty"}
    owner = next(e for e in bundle["entry"] if e["fullUrl"] == task["owner"]["reference"])["resource"]
    assert owner["resourceType"] == "Organization" and owner["name"] == "Tumour board"
    assert parse_bundle(bundle) == declined


def test_history_is_the_servers_build_writes_none_of_it(case: Case) -> None:
    events = [TaskEvent(status="requested", business_status="received", time="2026-10-03T08:00:00.123+00:00", version="1")]
    with_history = case.with_task(case.task.model_copy(update={"history": events}))  # type: ignore[union-attr]
    assert build_bundle(with_history) == build_bundle(case)
    parsed = parse_bundle(build_bundle(with_history))
    assert parsed == with_history == case  # history does not make two cases different (like server ids)
    assert parsed.task is not None and parsed.task.history == []
    assert case.task != case.task.model_copy(update={"status": "completed"})  # type: ignore[union-attr]  # everything else does
    # ...but the case file keeps it (pull --as case writes it, load reads it back)
    loaded = case_from_dict(json.loads(with_history.to_json()))
    assert loaded.task is not None and loaded.task.history == events


def test_the_owner_defaults_to_the_performer(case: Case) -> None:
    assert case.task is not None and case.task.owner == case.performer
    assert case.with_task({"authored": "2026-10-03T08:00:00Z"}).task.status == "requested"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (lambda t: t.pop("authoredOn"), "authoredOn", "needs authoredOn"),
        (lambda t: t["businessStatus"]["coding"][0].update(code="lost"), "businessStatus", "unknown so-task-status code 'lost'"),
        (lambda t: t["output"][0].update(valueCodeableConcept={"text": "x"}), "output[0].valueCodeableConcept", "record kind"),
    ],
    ids=["no-authoredOn", "unknown-business-status", "requested-kind-without-loinc"],
)
def test_a_broken_task_is_an_input_error_naming_the_place(case: Case, change: Any, where: str, message: str) -> None:
    bundle = copy.deepcopy(build_bundle(case))
    index = next(i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "Task")
    change(bundle["entry"][index]["resource"])
    with pytest.raises(InputError) as caught:
        parse_bundle(bundle, "b.json")
    assert f"Bundle.entry[{index}].resource.{where}" in str(caught.value) and message in str(caught.value)


def test_two_tasks_for_one_request_are_refused(case: Case) -> None:
    bundle = copy.deepcopy(build_bundle(case))
    entry = copy.deepcopy(_entry(bundle, "Task"))
    entry["fullUrl"] = "urn:uuid:00000000-0000-4000-8000-000000000001"
    bundle["entry"].append(entry)
    with pytest.raises(InputError, match="several Tasks"):
        parse_bundle(bundle, "b.json")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), tasks)
def test_generated_cases_with_a_task_round_trip(case: Case, task: Any) -> None:
    try:
        with_task = case.with_task(task)
    except InputError:
        return  # the task's owner shares an identifier with another party but not its name
    assert parse_bundle(build_bundle(with_task)) == with_task
