"""The case's timeline (fhir-so status) assembled from two fake servers served through ``responses``.

The story is played with the real workflows (push, transfer, report back) on fakes that keep
every version with its time, so the timeline is read the way a real server would answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import responses
from tests.workflow.conftest import BASE, OTHER, quick_policy
from tests.workflow.history_fake import HistoryFake, Ticker, serve

from fhir_so.case import Case
from fhir_so.client import FhirClient
from fhir_so.errors import CaseNotFoundError, InputError
from fhir_so.workflow import case_timeline, watch
from fhir_so.workflow.pull import find_request_id
from fhir_so.workflow.push import push
from fhir_so.workflow.status import Event, Timeline
from fhir_so.workflow.task import task_accept, task_ask, task_complete, task_start
from fhir_so.workflow.transfer import transfer

NOW = dt.datetime(2026, 10, 3, 12, 0, tzinfo=dt.timezone.utc)


@dataclass
class Servers:
    clinic: HistoryFake
    expert: HistoryFake
    first: FhirClient
    second: FhirClient


@pytest.fixture
def servers() -> Iterator[Servers]:
    ticker = Ticker()
    clinic, expert = HistoryFake(BASE, ticker), HistoryFake(OTHER, ticker)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        serve(mock, clinic, expert)
        with FhirClient(BASE, retries=quick_policy()) as first, FhirClient(OTHER, retries=quick_policy()) as second:
            yield Servers(clinic, expert, first, second)


def narrow(case: Case, *kinds: str) -> Case:
    consent = case.records_consent
    assert consent is not None
    return case.updated(opinion=None, records_consent={**consent.model_dump(), "record_kinds": list(kinds)})


def kinds_of(timeline: Timeline) -> list[tuple[str, str]]:
    return [(e.side, e.kind) for e in timeline.events]


def test_the_whole_story_in_order(servers: Servers, urology: Case) -> None:
    opinion = urology.opinion
    assert opinion is not None
    case_id = urology.case_id
    first_case = narrow(urology, "lab-report", "treatment-plan", "patient-questions")
    request_id = str(push(servers.first, first_case).request_id)
    at = iter(NOW + dt.timedelta(hours=h) for h in range(100))

    def clock() -> dt.datetime:
        return next(at)

    first = transfer(servers.first, servers.second, request_id, clock=clock)
    assert first.ask is None and {w.record_id for w in first.plan.withheld} == {"us-scrotum"}
    task_accept(servers.second, case_id, clock=clock)
    task_ask(servers.second, case_id, ["imaging"], "the ultrasound itself, please", clock=clock)
    refused = transfer(servers.first, servers.second, request_id, clock=clock)  # the consent still leaves imaging out
    assert refused.ask is not None and not refused.ask.answered and refused.ask.resumed is None
    push(servers.first, narrow(urology))  # the patient widens the consent to every kind
    answered = transfer(servers.first, servers.second, request_id, clock=clock)
    assert answered.ask is not None and answered.ask.answered and answered.ask.resumed == "accepted"
    task_start(servers.second, case_id, clock=clock)
    done = task_complete(servers.second, case_id, opinion, clock=clock)
    transfer(servers.second, servers.first, done.opinion and request_id_on(servers.second, case_id), report_back=True, clock=clock)

    timeline = case_timeline(servers.first, case_id, expert=servers.second)

    assert [e.key for e in timeline.events] == sorted(e.key for e in timeline.events)
    assert kinds_of(timeline) == [
        ("first", "request"), ("first", "consent"), ("first", "consent"),
        ("expert", "request"), ("expert", "task"), ("expert", "records-sent"), ("first", "records-withheld"),
        ("expert", "task"),  # accepted
        ("expert", "records-asked"),  # the transfer under the narrow consent sends the same: no new Provenance
        ("first", "consent"),  # widened
        ("expert", "task"), ("expert", "records-sent"),  # the imaging goes and is added to the Task's input
        ("expert", "task"),  # back to accepted
        ("expert", "task"),  # in progress
        ("expert", "task"), ("expert", "opinion"),  # the completed Task and the opinion: one transaction
        ("first", "report-back"),
    ]
    texts = [e.text for e in timeline.events]
    withheld = next(e for e in timeline.events if e.kind == "records-withheld")
    # the policy's own words, as of the first transfer (the consent then covered three kinds)
    assert withheld.text.startswith("record us-scrotum (imaging) withheld: the consent does not cover imaging records: ")
    assert "the consent so-2026-uro-0417-records covers" in withheld.text
    consent = next(c for c in servers.clinic.all("Consent") if c["identifier"][0]["value"] == f"{case_id}-records")
    assert withheld.reference == f"Consent/{consent['id']}/_history/1", "the consent's version that decided then"
    assert "lab-report, patient-questions, treatment-plan only" in texts[1]
    assert texts[4] == "Task created: requested (received), 3 record(s) in its input"
    assert texts[7] == "Task accepted (accepted)"
    assert texts[8] == "more records asked: imaging (note: the ultrasound itself, please); Task on-hold (more-info-needed)"
    assert texts[9].startswith("consent so-2026-uro-0417-records widened: covers ")
    assert texts[10] == "1 more record(s) added to the Task's input (4 in all)"
    assert "(4 record(s) on the expert's server, 1 new): us-scrotum (imaging)" in texts[11]
    assert texts[12] == "Task accepted (accepted), back from on-hold (4 record(s) in its input)"
    assert texts[13] == "Task in-progress (in-progress)"
    assert texts[14].startswith("Task completed (completed): the opinion DiagnosticReport/") and "concordance different" in texts[15]
    assert "concordance different" in texts[16]
    assert all(e.reference and "/_history/" in e.reference for e in timeline.events)
    assert timeline.task is not None and timeline.task["status"] == "completed" and timeline.task["business_status"] == "completed"
    assert not timeline.stat and timeline.notes == ()

    shape = timeline.to_json()
    assert shape["servers"] == {"first": BASE, "expert": OTHER}
    assert shape["request"] == {"first": f"ServiceRequest/{request_id}", "expert": f"ServiceRequest/{request_id_on(servers.second, case_id)}"}
    assert set(shape["events"][0]) == {"time", "server", "side", "kind", "text", "reference"}
    assert shape["events"][0]["time"].endswith("Z")
    text = "\n".join(timeline.lines())
    assert "Task now: completed (completed)" in text and "us-scrotum (imaging) withheld" in text


def request_id_on(client: FhirClient, case_id: str) -> str:
    return find_request_id(client, case_id)


def test_first_server_only_and_a_case_not_sent_yet(servers: Servers, urology: Case) -> None:
    push(servers.first, urology.updated(opinion=None))
    alone = case_timeline(servers.first, urology.case_id)
    assert {e.side for e in alone.events} == {"first"} and alone.expert is None
    not_sent = case_timeline(servers.first, urology.case_id, expert=servers.second)
    assert not_sent.notes == (f"case {urology.case_id} is not on {OTHER}: no records have been sent there yet",)
    assert not_sent.events == alone.events


def test_a_revoked_consent_and_a_stat_request_are_shown(servers: Servers, urology: Case) -> None:
    case = urology.updated(opinion=None, priority="stat")
    push(servers.first, case)
    push(servers.first, case.revoke_records_consent("2026-10-05T10:00:00Z"))
    timeline = case_timeline(servers.first, case.case_id)
    assert timeline.stat
    assert "FLAG: stat request" in timeline.events[0].text and "FLAG: stat request" in timeline.lines()[1]
    revoked = [e for e in timeline.events if e.kind == "consent" and "revoked" in e.text]
    assert len(revoked) == 1 and revoked[0].text.startswith("consent so-2026-uro-0417-records revoked: status active -> revoked (inactive)")


def test_a_case_not_on_the_first_server(servers: Servers) -> None:
    with pytest.raises(CaseNotFoundError) as caught:
        case_timeline(servers.first, "no-such-case")
    assert caught.value.exit_code == 2 and "no ServiceRequest with case id no-such-case" in str(caught.value)


def test_the_same_server_twice_is_bad_input(servers: Servers) -> None:
    with pytest.raises(InputError, match="the same"):
        case_timeline(servers.first, "x", expert=servers.first)


def test_watch_hands_on_only_new_events() -> None:
    def event(n: int) -> Event:
        return Event(f"2026-11-29T09:00:0{n}.000Z", BASE, "first", "request", f"event {n}", f"ServiceRequest/1/_history/{n}")

    reads = iter([[event(1)], [event(1), event(2)], [event(1), event(2)], [event(1), event(2), event(3)]])

    def read() -> Timeline:
        return Timeline("c", BASE, None, False, {"first": "ServiceRequest/1", "expert": None}, None, tuple(next(reads)))

    got: list[list[str]] = []
    naps: list[float] = []
    watch(read, 5.0, lambda _t, new: got.append([e.text for e in new]), sleep=naps.append, rounds=4)
    assert got == [["event 1"], ["event 2"], [], ["event 3"]]
    assert naps == [5.0, 5.0, 5.0]


def test_versions_a_cached_history_leaves_out_are_read_one_by_one(servers: Servers, urology: Case) -> None:
    case = urology.updated(opinion=None)
    push(servers.first, case)
    push(servers.first, case.revoke_records_consent("2026-10-05T10:00:00Z"))
    complete = case_timeline(servers.first, case.case_id)
    servers.clinic.history_lag = 1  # the server's _history answers still count the versions it had before the last write
    servers.clinic.requests.clear()
    assert case_timeline(servers.first, case.case_id) == complete
    assert any("/_history/2" in url for _, url in servers.clinic.requests), "the version left out was read by itself"
