"""The referral's Task on the two local HAPI servers: a case's whole life, illegal steps, the race, pull --as case.

Each test uses a fresh case id and patient (the servers may be kept between runs), reads the Task
by id or through the client's searches (which ask for no cached answer), and so holds on the tuned
and on the stock server profile alike.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_so import terminology as term
from fhir_so.case import Case, Opinion, load_case
from fhir_so.client import FhirClient
from fhir_so.errors import TransitionRefused, VersionConflict
from fhir_so.workflow import pull, push, transfer
from fhir_so.workflow.task import TaskResult, find_task, task_accept, task_ask, task_complete, task_decline, task_start
from tests.live.conftest import run_fhir_so

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[2]
UROLOGY = ROOT / "examples" / "urology-second-opinion.case.json"
NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.timezone.utc)
OPINION = Opinion(
    status="final",
    issued="2026-11-05T10:00:00Z",
    conclusion="Epididymo-orchitis: antibiotics, review in two weeks.",
    concordance="different",
    treatment_changed=True,
)


def fresh(tag: str) -> Case:
    """The urology case as the first physician sends it, under a case id and patient of its own."""
    run = uuid.uuid4().hex[:10]
    case = load_case(UROLOGY)
    ident = case.patient.identifier
    patient = case.patient.model_copy(update={"identifier": ident.model_copy(update={"value": f"{ident.value}-{run}"})})
    return case.updated(case_id=f"so-task-{tag}-{run}", opinion=None, task=None, patient=patient)


@pytest.fixture
def clients(fhir_server_pair: tuple[str, str]) -> Iterator[tuple[FhirClient, FhirClient]]:
    source, destination = fhir_server_pair
    with FhirClient(source) as a, FhirClient(destination) as b:
        yield a, b


def sent_to_expert(src: FhirClient, dst: FhirClient, case: Case) -> None:
    push(src, case)
    transfer(src, dst, case_id=case.case_id, clock=lambda: NOW)


def test_a_case_s_whole_life(clients: tuple[FhirClient, FhirClient]) -> None:
    src, dst = clients
    case = fresh("life")
    sent_to_expert(src, dst, case)
    task = find_task(dst, case.case_id)
    assert task is not None and task["status"] == "requested" and task["authoredOn"] == "2026-11-01T12:00:00Z"
    docs = {e["id"] for e in dst.search("DocumentReference", related=task["focus"]["reference"])}
    assert {i["valueReference"]["reference"].split("/")[1] for i in task["input"]} == docs and len(docs) == len(case.records)
    # pulled now, HAPI caches the history's count (one version): the final pull must still see all five
    assert [(e.version, e.status) for e in pull(dst, case_id=case.case_id).task.history] == [("1", "requested")]  # type: ignore[union-attr]
    # a re-run of the transfer makes no second Task
    transfer(src, dst, case_id=case.case_id, clock=lambda: NOW + dt.timedelta(hours=1))
    assert dst.search("Task", identifier=f"{term.SID_TASK}|{case.case_id}").with_headers({"Cache-Control": "no-cache"}).count() == 1

    with pytest.raises(TransitionRefused, match="allowed next: accepted .task accept., rejected .task decline., on-hold .task ask."):
        task_complete(dst, case.case_id, OPINION)
    assert task_accept(dst, case.case_id).version == "2"
    asked = task_ask(dst, case.case_id, ["imaging"], "Please send the CT images.")
    assert (asked.previous, asked.status, asked.business_status) == ("accepted", "on-hold", "more-info-needed")
    started = task_start(dst, case.case_id)
    assert (started.previous, started.status) == ("on-hold", "in-progress")
    done = task_complete(dst, case.case_id, OPINION)
    assert (done.status, done.version) == ("completed", "5") and done.opinion is not None
    report = dst.read("DiagnosticReport", done.opinion.split("/")[1])
    assert report["basedOn"] == [task["focus"]] and report["conclusion"] == OPINION.conclusion
    final = dst.read("Task", task["id"])
    assert final["output"][-1]["valueReference"]["reference"].endswith(done.opinion)
    with pytest.raises(TransitionRefused, match="none: completed is final"):
        task_decline(dst, case.case_id, "too late")

    pulled = pull(dst, case_id=case.case_id)
    assert pulled.opinion == OPINION and pulled.task is not None
    assert (pulled.task.status, pulled.task.business_status, pulled.task.requested_kinds) == ("completed", "completed", ["imaging"])
    assert [(e.version, e.status) for e in pulled.task.history] == [
        ("1", "requested"), ("2", "accepted"), ("3", "on-hold"), ("4", "in-progress"), ("5", "completed"),
    ]
    assert pulled.updated(task=None, opinion=None) == case


def test_two_clinicians_accept_the_same_version_one_wins(fhir_server_pair: tuple[str, str]) -> None:
    source, destination = fhir_server_pair
    case = fresh("race")
    with FhirClient(source) as src, FhirClient(destination) as dst:
        sent_to_expert(src, dst, case)
        version = find_task(dst, case.case_id)["meta"]["versionId"]  # type: ignore[index]
    barrier = threading.Barrier(2)
    outcomes: list[TaskResult | Exception] = []

    def clinician() -> None:
        with FhirClient(destination) as own:  # one client per thread: a client is not shared between threads
            barrier.wait()
            try:
                outcomes.append(task_accept(own, case.case_id, expected_version=version))
            except Exception as exc:  # noqa: BLE001 - the test sorts outcomes below
                outcomes.append(exc)

    threads = [threading.Thread(target=clinician) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    wins = [o for o in outcomes if isinstance(o, TaskResult)]
    losses = [o for o in outcomes if isinstance(o, VersionConflict)]
    assert (len(wins), len(losses)) == (1, 1), outcomes
    assert losses[0].exit_code == 1 and losses[0].newer == wins[0].version == str(int(version) + 1)
    assert f"the server holds version {wins[0].version} (accepted)" in str(losses[0])
    with FhirClient(destination) as dst:
        assert dst.read("Task", wins[0].task_id)["meta"]["versionId"] == wins[0].version  # no lost update, no second write


def test_pull_as_case_round_trips_the_task(clients: tuple[FhirClient, FhirClient], tmp_path: Path) -> None:
    src, dst = clients
    case = fresh("pull")
    sent_to_expert(src, dst, case)
    task_decline(dst, case.case_id, "Outside my specialty: please ask a uro-oncologist")
    target = tmp_path / "on-expert.case.json"
    done = run_fhir_so("pull", "--server", dst.base_url, "--case", case.case_id, "--as", "case", "-o", str(target))
    assert done.returncode == 0, done.stderr
    written = json.loads(target.read_text(encoding="utf-8"))
    assert written["task"]["status"] == "rejected" and written["task"]["reason"].startswith("Outside my specialty")
    assert [e["status"] for e in written["task"]["history"]] == ["requested", "rejected"]
    loaded = load_case(target)
    assert loaded == pull(dst, case_id=case.case_id)
    assert loaded.task is not None and loaded.task.history == pull(dst, case_id=case.case_id).task.history  # type: ignore[union-attr]
    # the CLI's refusal: exit 1, the allowed steps named
    refused = run_fhir_so("task", "accept", "--server", dst.base_url, "--case", case.case_id)
    assert refused.returncode == 1 and "none: rejected is final" in refused.stderr
