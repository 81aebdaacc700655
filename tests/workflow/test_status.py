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
from fhir_so.workflow.pull import pull
from fhir_so.workflow.push import push
from fhir_so.workflow.status import Event, Timeline
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
    assert urology.opinion is not None
    first_case = narrow(urology, "lab-report", "treatment-plan", "patient-questions")
    request_id = str(push(servers.first, first_case).request_id)
    transfer(servers.first, servers.second, request_id, clock=lambda: NOW)
    push(servers.first, narrow(urology))  # the patient widens the consent to every kind
    transfer(servers.first, servers.second, request_id, clock=lambda: NOW + dt.timedelta(days=1))
    on_expert = pull(servers.second, case_id=urology.case_id)
    written = push(servers.second, on_expert.with_opinion(urology.opinion))
    transfer(servers.second, servers.first, str(written.request_id), report_back=True, clock=lambda: NOW + dt.timedelta(days=7))

    timeline = case_timeline(servers.first, urology.case_id, expert=servers.second)

    assert [e.key for e in timeline.events] == sorted(e.key for e in timeline.events)
    assert kinds_of(timeline) == [
        ("first", "request"), ("first", "consent"), ("first", "consent"),
        ("expert", "request"), ("expert", "records-sent"), ("first", "records-withheld"),
        ("first", "consent"),
        ("expert", "records-sent"),
        ("expert", "opinion"),
        ("first", "report-back"),
    ]
    by_kind = {}
    for event in timeline.events:
        by_kind.setdefault(event.kind, []).append(event)
    withheld = by_kind["records-withheld"][0]
    # the policy's own words, as of the first transfer (the consent then covered three kinds)
    assert withheld.text.startswith("record us-scrotum (imaging) withheld: the consent does not cover imaging records: ")
    assert "the consent so-2026-uro-0417-records covers" in withheld.text
    assert withheld.reference is not None and withheld.reference.startswith("Provenance/")
    assert "lab-report, patient-questions, treatment-plan only" in by_kind["consent"][0].text
    assert by_kind["consent"][2].text.startswith("consent so-2026-uro-0417-records widened: covers ")
    first_sent, second_sent = by_kind["records-sent"]
    assert "(3 record(s) on the expert's server)" in first_sent.text and "us-scrotum" not in first_sent.text
    assert "(4 record(s) on the expert's server, 1 new): us-scrotum (imaging)" in second_sent.text
    assert "concordance different" in by_kind["opinion"][0].text and "concordance different" in by_kind["report-back"][0].text
    assert all(e.reference and "/_history/" in e.reference for e in timeline.events)
    assert timeline.request == {"first": f"ServiceRequest/{request_id}", "expert": written.request_id and f"ServiceRequest/{written.request_id}"}
    assert not timeline.stat and timeline.notes == () and timeline.task is None

    shape = timeline.to_json()
    assert shape["servers"] == {"first": BASE, "expert": OTHER}
    assert set(shape["events"][0]) == {"time", "server", "side", "kind", "text", "reference"}
    assert shape["events"][0]["time"].endswith("Z")
    text = "\n".join(timeline.lines())
    assert "records-withheld" in text and "us-scrotum (imaging) withheld" in text


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
