"""A records-out transfer answers the second physician's ask: the kinds the consent allows go and the Task
goes back to where it was; a kind it does not allow is named with the consent and the provision."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import responses
from click.testing import CliRunner
from tests.workflow.conftest import BASE, OTHER, quick_policy
from tests.workflow.fake_fhir import FakeFhir, serve_with_responses, session_for

from fhir_so.case import Case
from fhir_so.cli import cli
from fhir_so.cli.app import App
from fhir_so.client import FhirClient
from fhir_so.workflow.push import push
from fhir_so.workflow.task import find_task, task_accept, task_ask, task_start
from fhir_so.workflow.transfer import answer_ask, transfer

NOW = dt.datetime(2026, 10, 3, 12, 0, tzinfo=dt.timezone.utc)


def clock() -> dt.datetime:
    return NOW


@dataclass
class World:
    clinic: FakeFhir
    expert: FakeFhir
    src: FhirClient
    dst: FhirClient
    request_id: str
    case: Case


def narrow(case: Case, *kinds: str) -> Case:
    consent = case.records_consent
    assert consent is not None
    return case.updated(opinion=None, records_consent={**consent.model_dump(), "record_kinds": list(kinds)})


@pytest.fixture
def world(urology: Case) -> Iterator[World]:
    """The urology case sent under a consent without imaging; the second physician accepted it."""
    clinic, expert = FakeFhir(BASE), FakeFhir(OTHER)
    session = session_for(clinic, expert)
    with FhirClient(BASE, session=session, retries=quick_policy()) as src, FhirClient(OTHER, session=session, retries=quick_policy()) as dst:
        case = narrow(urology, "lab-report", "treatment-plan", "patient-questions")
        request_id = str(push(src, case).request_id)
        transfer(src, dst, request_id, clock=clock)
        yield World(clinic, expert, src, dst, request_id, case)


def task_of(world: World) -> dict[str, object]:
    task = find_task(world.dst, world.case.case_id)
    assert task is not None
    return task


def test_no_ask_open_means_no_answer(world: World) -> None:
    assert answer_ask(world.src, world.dst, world.request_id, clock=clock) is None
    task_accept(world.dst, world.case.case_id, clock=clock)
    again = transfer(world.src, world.dst, world.request_id, clock=clock)
    assert again.ask is None and task_of(world)["status"] == "accepted"


def test_a_narrower_consent_names_the_kind_the_consent_and_the_provision(world: World) -> None:
    case_id = world.case.case_id
    task_accept(world.dst, case_id, clock=clock)
    task_ask(world.dst, case_id, ["imaging", "lab-report"], "the ultrasound, and the markers again", clock=clock)
    version = task_of(world)["meta"]
    result = transfer(world.src, world.dst, world.request_id, clock=clock)
    ask = result.ask
    assert ask is not None and not ask.answered and ask.resumed is None
    assert ask.asked == ("imaging", "lab-report") and ask.sent == ("lab-report",)
    assert [u.kind for u in ask.unmet] == ["imaging"]
    consent = next(c for c in world.clinic.all("Consent") if c["identifier"][0]["value"] == f"{case_id}-records")
    reason = ask.unmet[0].reason
    assert reason.startswith("record(s) us-scrotum withheld: the consent does not cover imaging records: ")
    assert f"the consent {case_id}-records covers" in reason
    assert f"(decided at Consent/{consent['id']}.provision)" in reason
    assert task_of(world)["status"] == "on-hold" and task_of(world)["meta"] == version, "the Task is left as it was"
    lines = "\n".join(result.lines())
    assert "ask: NOT ANSWERED for imaging" in lines and "stays on hold" in lines
    assert result.to_json()["ask"]["unmet"][0]["kind"] == "imaging"


def test_a_wider_consent_sends_the_records_and_the_task_goes_back(world: World, urology: Case) -> None:
    case_id = world.case.case_id
    task_accept(world.dst, case_id, clock=clock)
    task_start(world.dst, case_id, clock=clock)
    task_ask(world.dst, case_id, ["imaging"], clock=clock)
    dry = transfer(world.src, world.dst, world.request_id, clock=clock, dry_run=True)
    assert dry.ask is not None and dry.ask.dry_run and not dry.ask.answered and task_of(world)["status"] == "on-hold"
    push(world.src, narrow(urology))  # the patient widens the consent
    result = transfer(world.src, world.dst, world.request_id, clock=clock)
    assert result.ask is not None and result.ask.answered and result.ask.sent == ("imaging",)
    assert result.ask.resumed == "in-progress", "it goes back to the state it came from"
    task = task_of(world)
    assert task["status"] == "in-progress"
    inputs = [i["valueReference"]["reference"] for i in task["input"] if i["type"]["coding"][0]["code"] == "record"]  # type: ignore[index, union-attr]
    assert len(inputs) == 4 and world.expert.count("DocumentReference") == 4
    assert "ask: answered; Task/" in "\n".join(result.lines())
    # answered once: the next transfer finds no ask open
    assert transfer(world.src, world.dst, world.request_id, clock=clock).ask is None


def test_a_kind_the_first_physician_does_not_hold(world: World) -> None:
    task_accept(world.dst, world.case.case_id, clock=clock)
    task_ask(world.dst, world.case.case_id, ["operative-note"], clock=clock)
    ask = answer_ask(world.src, world.dst, world.request_id, clock=clock)
    assert ask is not None and [u.kind for u in ask.unmet] == ["operative-note"]
    assert ask.unmet[0].reason == f"{BASE} holds no operative-note record for case {world.case.case_id}: there is nothing to send"


def test_an_ask_before_accepting_stays_on_hold_once_answered(world: World, urology: Case) -> None:
    task_ask(world.dst, world.case.case_id, ["imaging"], clock=clock)
    push(world.src, narrow(urology))
    result = transfer(world.src, world.dst, world.request_id, clock=clock)
    assert result.ask is not None and result.ask.answered and result.ask.resumed is None
    assert result.ask.held is not None and "fhir-so task accept" in result.ask.held
    assert task_of(world)["status"] == "on-hold"


def test_the_command_exits_1_for_the_kind_the_consent_does_not_allow(urology: Case) -> None:
    clinic, expert = FakeFhir(BASE), FakeFhir(OTHER)
    case = narrow(urology, "lab-report")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        serve_with_responses(mock, clinic, expert)
        with FhirClient(BASE) as src, FhirClient(OTHER) as dst:
            request_id = str(push(src, case).request_id)
            transfer(src, dst, request_id, clock=clock)
            task_accept(dst, case.case_id, clock=clock)
            task_ask(dst, case.case_id, ["imaging"], clock=clock)
        args = ["transfer", "--from", BASE, "--to", OTHER, "--case", case.case_id]
        result = CliRunner().invoke(cli, [*args, "--json"], obj=App(env={}), catch_exceptions=False)
        assert result.exit_code == 1
        assert json.loads(result.stdout)["ask"]["unmet"][0]["kind"] == "imaging"
        assert "the ask is not answered for imaging: record(s) us-scrotum withheld" in result.stderr
