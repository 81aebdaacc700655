"""transfer on two in-memory fake servers: consent enforced, dry run, report back, and resume after a
kill at every single request (before and after the server applied it)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.workflow.conftest import BASE, OTHER, quick_policy
from tests.workflow.fake_fhir import FakeFhir, Killed, Tripwire, session_for

from fhir_so import terminology as term
from fhir_so.case import Case, Period, with_defaults
from fhir_so.client import FhirClient
from fhir_so.errors import ConsentError, InputError
from fhir_so.workflow.pull import pull
from fhir_so.workflow.push import push
from fhir_so.workflow.transfer import transfer

NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.timezone.utc)


def clock() -> dt.datetime:
    return NOW


@dataclass
class World:
    """The first physician's server (clinic) and the second-opinion server (expert)."""

    clinic: FakeFhir
    expert: FakeFhir
    src: FhirClient
    dst: FhirClient
    tripwire: Tripwire
    request_id: str


def make_world(case: Case, tripwire: Tripwire | None = None) -> World:
    wire = Tripwire()  # armed only once the first physician's case is in place
    clinic, expert = FakeFhir(BASE, tripwire=wire), FakeFhir(OTHER, tripwire=wire)
    session = session_for(clinic, expert)
    src = FhirClient(BASE, session=session, retries=quick_policy())
    dst = FhirClient(OTHER, session=session, retries=quick_policy())
    request_id = push(src, case).request_id
    assert request_id is not None
    wire.count = 0
    if tripwire is not None:
        wire.at, wire.after, wire.drop = tripwire.at, tripwire.after, tripwire.drop
    clinic.requests.clear()
    return World(clinic, expert, src, dst, wire, request_id)


@pytest.fixture
def first_case(urology: Case) -> Case:
    """The urology case as the first physician sends it: no opinion yet."""
    return urology.model_copy(update={"opinion": None, "task": None})  # the Task is made on the expert's server


@pytest.fixture
def world(first_case: Case) -> Iterator[World]:
    yield make_world(first_case)


def counts(fake: FakeFhir) -> dict[str, int]:
    return {t: fake.count(t) for t in sorted(fake.store) if fake.count(t)}


def test_full_consent_copies_the_case_with_new_ids(world: World, first_case: Case) -> None:
    result = transfer(world.src, world.dst, world.request_id, clock=clock)
    arrived = pull(world.dst, case_id=first_case.case_id)
    assert arrived.updated(task=None) == with_defaults(first_case)
    assert arrived.task is not None and arrived.task.status == "requested" and arrived.task.authored == "2026-11-01T12:00:00Z"
    assert result.destination_request_id is not None
    assert counts(world.expert) == {
        "Consent": 2, "Device": 1, "DocumentReference": 4, "Organization": 1, "Patient": 1, "Practitioner": 2, "Provenance": 1,
        "ServiceRequest": 1, "Task": 1,
    }
    task = world.expert.all("Task")[0]
    inputs = sorted(i["valueReference"]["reference"] for i in task["input"])
    assert inputs == sorted(f"DocumentReference/{d['id']}" for d in world.expert.all("DocumentReference"))
    provenance = world.expert.all("Provenance")[0]
    assert provenance["entity"][0]["what"]["identifier"]["value"] == f"{BASE}/ServiceRequest/{world.request_id}"
    assert provenance["entity"][0]["role"] == "source"
    assert provenance["recorded"] == "2026-11-01T12:00:00Z"
    assert {t["reference"].rsplit("/_history/")[0] for t in provenance["target"]} == {e.reference for e in result.push.entries}  # type: ignore[union-attr]
    kinds = {a["type"]["coding"][0]["code"]: a["who"]["reference"] for a in provenance["agent"]}
    assert kinds["assembler"].startswith("Device/")
    requester = next(p for p in world.expert.all("Practitioner") if p["identifier"][0]["value"] == first_case.requester.identifier.value)
    assert kinds["author"] == f"Practitioner/{requester['id']}"
    assert provenance["meta"]["tag"][0]["system"] == term.TAG_TRANSFER


def test_a_second_transfer_duplicates_nothing(world: World) -> None:
    transfer(world.src, world.dst, world.request_id, clock=clock)
    before = counts(world.expert)
    again = transfer(world.src, world.dst, world.request_id, clock=lambda: NOW + dt.timedelta(hours=1))
    assert counts(world.expert) == before
    assert again.push is not None and not again.push.changed


def test_partial_consent_withholds_other_kinds(first_case: Case) -> None:
    consent = first_case.records_consent
    assert consent is not None
    case = first_case.model_copy(update={"records_consent": consent.model_copy(update={"record_kinds": ["imaging", "lab-report"]})})
    w = make_world(case)
    result = transfer(w.src, w.dst, w.request_id, clock=clock)
    assert {x.record_id for x in result.plan.withheld} == {"plan", "questions"}
    copied = pull(w.dst, case_id=case.case_id)
    assert {r.id for r in copied.records} == {"us-scrotum", "tumor-markers"}
    assert w.expert.count("DocumentReference") == 2
    assert any("withheld: record plan (treatment-plan)" in line for line in result.lines())


@pytest.mark.parametrize(
    "change",
    [
        {"records_consent": None},
        {"records_consent": {"status": "revoked"}},
        {"records_consent": {"period": Period(start="2026-10-02", end="2026-10-31")}},
        {"records_consent": {"period": Period(start="2026-12-01")}},
        {"records_consent": {"decision": "deny"}},
        {"records_consent": {"recipient": "requester"}},
    ],
    ids=["missing", "revoked", "expired", "not-yet-valid", "deny", "wrong-recipient"],
)
def test_refused_consent_writes_nothing(first_case: Case, change: dict[str, object], tmp_path: Path) -> None:
    consent = first_case.records_consent
    assert consent is not None
    update = change["records_consent"]
    if isinstance(update, dict):
        if update.get("recipient") == "requester":
            update = {"recipient": first_case.requester}
        new = consent.model_copy(update=update)
    else:
        new = None
    w = make_world(first_case.model_copy(update={"records_consent": new}))
    state = tmp_path / "state.json"
    with pytest.raises(ConsentError) as caught:
        transfer(w.src, w.dst, w.request_id, state=state, clock=clock)
    assert caught.value.exit_code == 1
    assert "nothing was sent" in str(caught.value)
    assert w.expert.writes() == 0 and w.expert.store == {}
    assert not state.exists()


def test_dry_run_plans_and_writes_nothing(world: World, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    result = transfer(world.src, world.dst, world.request_id, state=state, dry_run=True, clock=clock)
    assert result.dry_run and result.push is None
    assert world.expert.writes() == 0 and world.clinic.writes() == 0  # it reads whether the expert has the Task yet
    assert [m for m in result.plan.moves if m.startswith("Task")] == ["Task (new: requested, owner Dr. Samuel Okafor, 4 record(s) as input)"]
    assert not state.exists()
    assert result.lines()[0].startswith("plan (dry run, nothing written)")
    assert len([m for m in result.plan.moves if m.startswith("DocumentReference")]) == 4


def test_dry_run_of_a_refused_transfer_fails_the_same_way(first_case: Case) -> None:
    w = make_world(first_case.model_copy(update={"records_consent": None}))
    with pytest.raises(ConsentError):
        transfer(w.src, w.dst, w.request_id, dry_run=True, clock=clock)


def test_the_opinion_never_goes_out_with_the_records(urology: Case) -> None:
    w = make_world(urology)
    result = transfer(w.src, w.dst, w.request_id, clock=clock)
    assert w.expert.count("DiagnosticReport") == 0
    assert any("opinion" in n for n in result.plan.not_sent)


def test_a_state_file_of_another_transfer_is_refused(world: World, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    transfer(world.src, world.dst, world.request_id, state=state, clock=clock)
    with pytest.raises(InputError, match="another transfer"):
        transfer(world.src, world.dst, "999", state=state, clock=clock)
    state.write_text("[]")
    with pytest.raises(InputError, match="not a fhir-so transfer state file"):
        transfer(world.src, world.dst, world.request_id, state=state, clock=clock)


def test_a_finished_state_file_makes_no_request(world: World, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    first = transfer(world.src, world.dst, world.request_id, state=state, clock=clock)
    world.tripwire.count = 0
    again = transfer(world.src, world.dst, world.request_id, state=state, clock=clock)
    assert world.tripwire.count == 0
    assert again.resumed_from == ("pulled", "pushed", "provenance", "done")
    assert again.provenance == first.provenance
    saved = json.loads(state.read_text())
    assert set(saved["steps"]) == {"pulled", "pushed", "provenance", "done"}


def test_same_source_and_destination_is_refused(world: World) -> None:
    with pytest.raises(InputError, match="same"):
        transfer(world.src, world.src, world.request_id, clock=clock)


# -- report back -----------------------------------------------------------------------------


def _second_opinion_written(w: World, urology: Case) -> str:
    """Records out, then the second physician writes the opinion on the expert server."""
    out = transfer(w.src, w.dst, w.request_id, clock=clock)
    on_expert = pull(w.dst, case_id=urology.case_id)
    pushed = push(w.dst, on_expert.model_copy(update={"opinion": urology.opinion}))
    assert out.destination_request_id == pushed.request_id
    return str(pushed.request_id)


def test_report_back_with_consent(first_case: Case, urology: Case) -> None:
    w = make_world(first_case)
    expert_request = _second_opinion_written(w, urology)
    before = counts(w.clinic)
    result = transfer(w.dst, w.src, expert_request, report_back=True, clock=clock)
    assert pull(w.src, case_id=urology.case_id).opinion == urology.opinion
    after = counts(w.clinic)
    assert after.pop("DiagnosticReport") == 1 and after.pop("Provenance") == 1 and after.pop("Device") == 1
    assert after == before  # nothing else was added on the first physician's server
    assert [e.resource_type for e in result.push.entries] == ["Patient", "Practitioner", "DiagnosticReport"]  # type: ignore[union-attr]
    report = w.clinic.all("DiagnosticReport")[0]
    assert report["basedOn"][0]["reference"] == f"ServiceRequest/{w.request_id}"


def test_report_back_without_consent_is_refused(first_case: Case, urology: Case) -> None:
    w = make_world(first_case.model_copy(update={"report_consent": None}))
    expert_request = _second_opinion_written(w, urology)
    writes = w.clinic.writes()
    with pytest.raises(ConsentError, match="report back"):
        transfer(w.dst, w.src, expert_request, report_back=True, clock=clock)
    assert w.clinic.writes() == writes
    assert w.clinic.count("DiagnosticReport") == 0


def test_report_back_refused_when_revoked_at_the_first_physicians_server(first_case: Case, urology: Case) -> None:
    w = make_world(first_case)
    expert_request = _second_opinion_written(w, urology)
    report = first_case.report_consent
    assert report is not None
    push(w.src, first_case.model_copy(update={"report_consent": report.model_copy(update={"status": "revoked"})}))
    with pytest.raises(ConsentError, match="revoked .*as recorded on " + BASE):
        transfer(w.dst, w.src, expert_request, report_back=True, clock=clock)
    assert w.clinic.count("DiagnosticReport") == 0


def test_report_back_needs_an_opinion(world: World) -> None:
    out = transfer(world.src, world.dst, world.request_id, clock=clock)
    with pytest.raises(InputError, match="no opinion"):
        transfer(world.dst, world.src, str(out.destination_request_id), report_back=True, clock=clock)


# -- killed part-way, resumed ------------------------------------------------------------------


def _expected_counts(case: Case) -> tuple[int, dict[str, int]]:
    w = make_world(case)
    transfer(w.src, w.dst, w.request_id, clock=clock)
    return w.tripwire.count, counts(w.expert)


@pytest.mark.parametrize("after", [False, True], ids=["before-applied", "after-applied"])
def test_killed_at_every_request_then_resumed_loses_and_duplicates_nothing(first_case: Case, tmp_path: Path, after: bool) -> None:
    total, expected = _expected_counts(first_case)
    assert total >= 6
    for n in range(1, total + 1):
        w = make_world(first_case, Tripwire(n, after=after))
        state = tmp_path / f"state-{n}-{after}.json"
        with pytest.raises(Killed):
            transfer(w.src, w.dst, w.request_id, state=state, clock=clock)
        w.tripwire.at = None
        began = state.exists()  # the killed run got as far as fixing the transfer's id and time
        result = transfer(w.src, w.dst, w.request_id, state=state, clock=lambda: NOW + dt.timedelta(minutes=5))
        assert counts(w.expert) == expected, f"killed at request {n}"
        assert pull(w.dst, case_id=first_case.case_id).updated(task=None) == with_defaults(first_case), f"killed at request {n}"
        assert len(w.expert.all("Task")) == 1, f"killed at request {n}"
        provenance = w.expert.all("Provenance")[0]
        assert provenance["recorded"] == ("2026-11-01T12:00:00Z" if began else "2026-11-01T12:05:00Z")
        assert result.provenance == f"Provenance/{provenance['id']}"


def test_killed_without_a_state_file_still_duplicates_nothing(first_case: Case) -> None:
    total, expected = _expected_counts(first_case)
    for n in range(1, total + 1):
        w = make_world(first_case, Tripwire(n, after=True))
        with pytest.raises(Killed):
            transfer(w.src, w.dst, w.request_id, clock=clock)
        w.tripwire.at = None
        transfer(w.src, w.dst, w.request_id, clock=lambda: NOW + dt.timedelta(minutes=5))
        assert counts(w.expert) == expected, f"killed at request {n}"


@pytest.mark.parametrize("after", [False, True], ids=["refused", "answer-lost"])
def test_a_dropped_connection_is_retried_when_safe(first_case: Case, after: bool) -> None:
    total, expected = _expected_counts(first_case)
    for n in range(1, total + 1):
        w = make_world(first_case, Tripwire(n, after=after, drop=True))
        transfer(w.src, w.dst, w.request_id, clock=clock)
        assert counts(w.expert) == expected, f"connection dropped at request {n}"


def test_a_server_down_for_good_fails_with_exit_3_and_resumes(first_case: Case, tmp_path: Path) -> None:
    total, expected = _expected_counts(first_case)
    state = tmp_path / "state.json"
    w = make_world(first_case)
    w.expert.handle = lambda *a, **k: (503, None, {})  # type: ignore[method-assign]
    with pytest.raises(Exception) as caught:
        transfer(w.src, w.dst, w.request_id, state=state, clock=clock)
    assert getattr(caught.value, "exit_code", None) == 3
    del w.expert.handle
    transfer(w.src, w.dst, w.request_id, state=state, clock=clock)
    assert counts(w.expert) == expected


def test_a_state_file_in_a_missing_folder_fails_before_anything_moves(world: World, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="folder of the state file"):
        transfer(world.src, world.dst, world.request_id, state=tmp_path / "nope" / "s.json", clock=clock)
    assert world.expert.requests == [] and world.clinic.requests == []


def test_report_back_killed_at_every_request_then_resumed(first_case: Case, urology: Case, tmp_path: Path) -> None:
    # Killed after the server applied request n: the harder case (a kill before request n+1 is the same state).
    after = True
    def ready(tripwire: Tripwire | None) -> tuple[World, str]:
        w = make_world(first_case)
        expert_request = _second_opinion_written(w, urology)
        w.tripwire.count = 0
        if tripwire is not None:
            w.tripwire.at, w.tripwire.after = tripwire.at, tripwire.after
        return w, expert_request

    w, expert_request = ready(None)
    transfer(w.dst, w.src, expert_request, report_back=True, clock=clock)
    total, expected = w.tripwire.count, counts(w.clinic)
    for n in range(1, total + 1):
        w, expert_request = ready(Tripwire(n, after=after))
        state = tmp_path / f"report-{n}-{after}.json"
        with pytest.raises(Killed):
            transfer(w.dst, w.src, expert_request, report_back=True, state=state, clock=clock)
        w.tripwire.at = None
        transfer(w.dst, w.src, expert_request, report_back=True, state=state, clock=clock)
        assert counts(w.clinic) == expected, f"killed at request {n}"
        assert pull(w.src, case_id=urology.case_id).opinion == urology.opinion


def test_a_damaged_state_file_is_bad_input(world: World, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    transfer(world.src, world.dst, world.request_id, state=state, clock=clock)
    saved = json.loads(state.read_text())
    del saved["steps"]["done"], saved["steps"]["provenance"]
    saved["steps"]["pulled"] = {"nonsense": True}
    state.write_text(json.dumps(saved))
    with pytest.raises(InputError, match="damaged"):
        transfer(world.src, world.dst, world.request_id, state=state, clock=clock)


def test_an_unlinked_deny_on_the_source_refuses_the_transfer(first_case: Case) -> None:
    """The policy reads every privacy Consent of the patient on the source, not only those the request links."""
    w = make_world(first_case)
    subject = w.src.read("ServiceRequest", w.request_id)["subject"]
    deny = {"resourceType": "Consent", "status": "active", "scope": {"coding": [{"system": term.CONSENT_SCOPE, "code": "patient-privacy"}]},
            "patient": subject, "dateTime": "2026-10-20T00:00:00Z", "provision": {"type": "deny"}}
    w.src.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [{"fullUrl": "urn:uuid:9b1f3c2e-0000-4000-8000-000000000001", "resource": deny, "request": {"method": "POST", "url": "Consent"}}]})
    with pytest.raises(ConsentError, match="denies"):
        transfer(w.src, w.dst, w.request_id, clock=clock)
    assert w.expert.count("ServiceRequest") == 0 and w.expert.count("DocumentReference") == 0
    assert any(method == "GET" and "/Consent?" in url for method, url in w.clinic.requests)


def test_an_unlinked_deny_for_another_physician_on_the_source_does_not_refuse(first_case: Case) -> None:
    """The deny names a Practitioner the case does not hold: it is fetched with the Consent (_include) and compared."""
    w = make_world(first_case)
    subject = w.src.read("ServiceRequest", w.request_id)["subject"]
    other = {"resourceType": "Practitioner", "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1111111111"}]}
    role = {"coding": [{"system": term.V3_PARTICIPATION_TYPE, "code": "IRCP"}]}
    deny = {"resourceType": "Consent", "status": "active", "scope": {"coding": [{"system": term.CONSENT_SCOPE, "code": "patient-privacy"}]},
            "patient": subject, "dateTime": "2026-10-20T00:00:00Z",
            "provision": {"type": "deny", "actor": [{"role": role, "reference": {"reference": "urn:uuid:9b1f3c2e-0000-4000-8000-000000000002"}}]}}
    w.src.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:9b1f3c2e-0000-4000-8000-000000000002", "resource": other, "request": {"method": "POST", "url": "Practitioner"}},
        {"fullUrl": "urn:uuid:9b1f3c2e-0000-4000-8000-000000000003", "resource": deny, "request": {"method": "POST", "url": "Consent"}},
    ]})
    result = transfer(w.src, w.dst, w.request_id, clock=clock)
    assert result.plan.verdicts[0].allowed and len(result.plan.moves) > 3
