"""push, pull and transfer against the real local HAPI servers (fixtures ``fhir_server``, ``fhir_server_pair``).

Case ids get a per-run suffix, so reruns against servers that kept their data stay valid
(case ids are the idempotency keys). A transfer is killed part-way two ways: a transport
adapter that stops the process after the Nth request was applied (in process), and a real
child process that dies with ``os._exit`` after the Nth request; each is resumed from its
state file and must leave exactly one copy of every resource on the destination.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from fhir_so import terminology as term
from fhir_so.bundle import build_bundle
from fhir_so.case import Case, Period, load_case, with_defaults
from fhir_so.client import FhirClient
from fhir_so.errors import ConsentError
from fhir_so.workflow import pull, push, transfer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.case.json"))
UROLOGY = ROOT / "examples" / "urology-second-opinion.case.json"
RUN = uuid.uuid4().hex[:8]
NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.timezone.utc)


def clock() -> dt.datetime:
    return NOW


def unique(case: Case, tag: str) -> Case:
    """The case under an id no other test or run uses (earlier opinions follow along), for a patient
    of this run: the consent policy reads every Consent of the patient, so another run's consents
    for the same patient (on servers kept between runs) must not take part."""
    earlier = [e.model_copy(update={"case_id": f"{e.case_id}-{RUN}"}) for e in case.earlier_opinions]
    ident = case.patient.identifier
    patient = case.patient.model_copy(update={"identifier": ident.model_copy(update={"value": f"{ident.value}-{RUN}"})})
    task = case.task
    if task is not None and task.earlier_task:
        task = task.model_copy(update={"earlier_task": f"{task.earlier_task}-{RUN}"})
    return case.model_copy(
        update={"case_id": f"{case.case_id}-{tag}-{RUN}"[:64], "earlier_opinions": earlier, "patient": patient, "task": task}
    )


def sent(pulled: Case) -> Case:
    """What a transfer sent, as pulled from the destination: without the referral's Task it made there."""
    assert pulled.task is not None and pulled.task.status in ("requested", "accepted", "in-progress", "on-hold", "completed")
    return pulled.updated(task=None)


@pytest.fixture
def clients(fhir_server_pair: tuple[str, str]) -> Iterator[tuple[FhirClient, FhirClient]]:
    source, destination = fhir_server_pair
    with FhirClient(source) as a, FhirClient(destination) as b:
        yield a, b


@pytest.fixture
def first_case() -> Case:
    return load_case(UROLOGY).model_copy(update={"opinion": None, "task": None})  # the Task is made on the expert's server


def copies(client: FhirClient, case: Case, *, with_opinion: bool = False) -> dict[str, int]:
    """How many resources the server holds under each identifier of the case's bundle (1 = exactly one copy)."""
    found = {}
    for entry in build_bundle(case)["entry"]:
        rtype = entry["resource"]["resourceType"]
        ident = entry["resource"]["identifier"][0]
        found[f"{rtype}|{ident['value']}"] = client.search(rtype, identifier=f"{ident['system']}|{ident['value']}").count()
    return found


def provenances(client: FhirClient, transfer_id: str) -> int:
    return client.search("Provenance", _tag=f"{term.TAG_TRANSFER}|{transfer_id}").count()


# -- push and pull ---------------------------------------------------------------------------


def test_push_twice_creates_one_of_each(fhir_server: str) -> None:
    case = unique(load_case(UROLOGY), "push")
    with FhirClient(fhir_server) as client:
        first = push(client, case)
        second = push(client, case)
        assert first.counts()["created"] >= 8  # the case's own resources are new; parties may exist from other tests
        assert not second.changed, second.to_json()
        assert [e.reference for e in first.entries] == [e.reference for e in second.entries]
        assert set(copies(client, case).values()) == {1}


def test_a_change_propagates_as_an_update(fhir_server: str) -> None:
    case = unique(load_case(UROLOGY), "change")
    consent = case.records_consent
    assert consent is not None
    with FhirClient(fhir_server) as client:
        push(client, case)
        revoked = case.model_copy(update={"records_consent": consent.model_copy(update={"status": "revoked"})})
        result = push(client, revoked)
        assert [(e.resource_type, e.outcome) for e in result.entries if e.outcome != "unchanged"] == [("Consent", "updated")]
        assert pull(client, case_id=case.case_id) == with_defaults(revoked)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name.removesuffix(".case.json"))
def test_pull_equals_the_pushed_case(fhir_server: str, path: Path) -> None:
    case = unique(load_case(path), "pull")
    with FhirClient(fhir_server) as client:
        pushed = push(client, case)
        assert pull(client, case_id=case.case_id) == with_defaults(case)
        assert pull(client, request_id=pushed.request_id) == with_defaults(case)


# -- transfer -------------------------------------------------------------------------------


def test_transfer_with_full_consent(clients: tuple[FhirClient, FhirClient], first_case: Case) -> None:
    src, dst = clients
    case = unique(first_case, "full")
    request_id = push(src, case).request_id
    result = transfer(src, dst, str(request_id), clock=clock)
    assert sent(pull(dst, case_id=case.case_id)) == with_defaults(case)
    assert set(copies(dst, case).values()) == {1}
    assert provenances(dst, str(result.transfer_id)) == 1
    provenance = dst.read("Provenance", str(result.provenance).split("/")[1])
    assert provenance["entity"][0]["what"]["identifier"]["value"] == f"{src.base_url}/ServiceRequest/{request_id}"
    again = transfer(src, dst, str(request_id), clock=clock)
    assert again.push is not None and not again.push.changed
    assert again.provenance == result.provenance


def test_transfer_with_partial_consent(clients: tuple[FhirClient, FhirClient], first_case: Case) -> None:
    src, dst = clients
    consent = first_case.records_consent
    assert consent is not None
    case = unique(first_case.model_copy(update={"records_consent": consent.model_copy(update={"record_kinds": ["lab-report"]})}), "partial")
    request_id = push(src, case).request_id
    result = transfer(src, dst, str(request_id), clock=clock)
    assert {w.record_id for w in result.plan.withheld} == {"plan", "questions", "us-scrotum"}
    copied = pull(dst, case_id=case.case_id)
    assert [r.id for r in copied.records] == ["tumor-markers"]
    withheld = dst.search("DocumentReference", identifier=f"{term.SID_RECORD}|{case.case_id}/plan").count()
    assert withheld == 0


@pytest.mark.parametrize(
    "update",
    [
        None,
        {"period": Period(start="2026-10-02", end="2026-10-31")},
        {"status": "revoked"},
    ],
    ids=["missing", "expired", "revoked"],
)
def test_transfer_refused_writes_nothing(clients: tuple[FhirClient, FhirClient], first_case: Case, update: dict[str, Any] | None, tmp_path: Path) -> None:
    src, dst = clients
    consent = first_case.records_consent
    assert consent is not None
    new = consent.model_copy(update=update) if update else None
    case = unique(first_case.model_copy(update={"records_consent": new}), "refused")
    request_id = push(src, case).request_id
    state = tmp_path / "state.json"
    with pytest.raises(ConsentError, match="nothing was sent"):
        transfer(src, dst, str(request_id), state=state, clock=clock)
    assert not state.exists()
    assert dst.search("ServiceRequest", identifier=f"{term.SID_CASE}|{case.case_id}").count() == 0
    assert dst.search("DocumentReference", identifier=f"{term.SID_RECORD}|{case.case_id}/plan").count() == 0


def _expert_writes_opinion(src: FhirClient, dst: FhirClient, case: Case, opinion: Any) -> str:
    request_id = push(src, case).request_id
    out = transfer(src, dst, str(request_id), clock=clock)
    on_expert = pull(dst, case_id=case.case_id)
    written = push(dst, on_expert.model_copy(update={"opinion": opinion}))
    assert written.request_id == out.destination_request_id
    return str(written.request_id)


def test_report_back_with_consent(clients: tuple[FhirClient, FhirClient], first_case: Case) -> None:
    src, dst = clients
    opinion = load_case(UROLOGY).opinion
    case = unique(first_case, "report")
    expert_request = _expert_writes_opinion(src, dst, case, opinion)
    result = transfer(dst, src, expert_request, report_back=True, clock=clock)
    back = pull(src, case_id=case.case_id)
    assert back == with_defaults(case.model_copy(update={"opinion": opinion}))
    assert provenances(src, str(result.transfer_id)) == 1
    assert src.search("DiagnosticReport", identifier=f"{term.SID_OPINION}|{case.case_id}").count() == 1


def test_report_back_without_consent(clients: tuple[FhirClient, FhirClient], first_case: Case) -> None:
    src, dst = clients
    opinion = load_case(UROLOGY).opinion
    case = unique(first_case.model_copy(update={"report_consent": None}), "noreport")
    expert_request = _expert_writes_opinion(src, dst, case, opinion)
    with pytest.raises(ConsentError, match="report back"):
        transfer(dst, src, expert_request, report_back=True, clock=clock)
    assert src.search("DiagnosticReport", identifier=f"{term.SID_OPINION}|{case.case_id}").count() == 0


# -- killed part-way ---------------------------------------------------------------------------


class Killed(BaseException):
    """The process stopped here (a BaseException: the library must not swallow it)."""


class DiesAfter(HTTPAdapter):
    """A real HTTP adapter that stops the caller right after the Nth request reached the server."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.count = 0

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        response = super().send(request, *args, **kwargs)
        self.count += 1
        if self.count == self.n:
            raise Killed(f"stopped after request {self.n}: {request.method} {request.url}")
        return response


def _requests_in_a_transfer(src: FhirClient, dst: FhirClient, case: Case) -> int:
    counter = DiesAfter(10_000)
    session = requests.Session()
    session.mount("http://", counter)
    request_id = push(src, case).request_id
    with FhirClient(src.base_url, session=session) as a, FhirClient(dst.base_url, session=session) as b:
        transfer(a, b, str(request_id), clock=clock)
    return counter.count


def test_killed_after_each_request_and_resumed(clients: tuple[FhirClient, FhirClient], first_case: Case, tmp_path: Path) -> None:
    src, dst = clients
    total = _requests_in_a_transfer(src, dst, unique(first_case, "count"))
    assert total >= 6
    for n in range(1, total):
        case = unique(first_case, f"k{n}")
        request_id = str(push(src, case).request_id)
        state = tmp_path / f"state-{n}.json"
        session = requests.Session()
        session.mount("http://", DiesAfter(n))
        with FhirClient(src.base_url, session=session) as a, FhirClient(dst.base_url, session=session) as b:
            with pytest.raises(Killed):
                transfer(a, b, request_id, state=state, clock=clock)
        result = transfer(src, dst, request_id, state=state, clock=clock)
        assert set(copies(dst, case).values()) == {1}, f"killed after request {n}"
        assert provenances(dst, str(result.transfer_id)) == 1, f"killed after request {n}"
        assert sent(pull(dst, case_id=case.case_id)) == with_defaults(case), f"killed after request {n}"


_CHILD = textwrap.dedent(
    """
    import os, sys, requests
    from requests.adapters import HTTPAdapter
    from fhir_so.client import FhirClient
    from fhir_so.workflow import transfer

    class DieAfter(HTTPAdapter):
        count = 0
        def send(self, request, *args, **kwargs):
            response = super().send(request, *args, **kwargs)
            DieAfter.count += 1
            if DieAfter.count == int(sys.argv[5]):
                os._exit(137)  # a hard kill: no cleanup, no finally blocks
            return response

    session = requests.Session()
    session.mount("http://", DieAfter())
    source, destination = FhirClient(sys.argv[1], session=session), FhirClient(sys.argv[2], session=session)
    transfer(source, destination, sys.argv[3], state=sys.argv[4])
    """
)


def test_a_killed_process_resumed_by_the_cli(clients: tuple[FhirClient, FhirClient], first_case: Case, tmp_path: Path) -> None:
    src, dst = clients
    total = _requests_in_a_transfer(src, dst, unique(first_case, "pcount"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    fhir_so = Path(sys.executable).with_name("fhir-so")
    for n in sorted({total - 2, total - 1}):  # killed after the records went, and after the Provenance was written
        case = unique(first_case, f"p{n}")
        request_id = str(push(src, case).request_id)
        state = tmp_path / f"state-{n}.json"
        child = subprocess.run(
            [sys.executable, "-c", _CHILD, src.base_url, dst.base_url, request_id, str(state), str(n)],
            env=env, capture_output=True, timeout=300,
        )
        assert child.returncode == 137, child.stderr.decode()
        resumed = subprocess.run(
            [str(fhir_so), "transfer", "--from", src.base_url, "--to", dst.base_url, "--request", request_id, "--state", str(state), "--json"],
            env=env, capture_output=True, timeout=300, text=True,
        )
        assert resumed.returncode == 0, resumed.stderr
        assert set(copies(dst, case).values()) == {1}, f"killed after request {n}"
        transfer_id = json.loads(state.read_text())["transfer_id"]
        assert provenances(dst, transfer_id) == 1
        assert sent(pull(dst, case_id=case.case_id)) == with_defaults(case)
