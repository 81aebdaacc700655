"""push classification and pull assembly, against mocked HTTP (responses) and the in-memory fake server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from tests.workflow.conftest import BASE, EXAMPLES, quick_policy
from tests.workflow.fake_fhir import FakeFhir, session_for

from fhir_so import terminology as term
from fhir_so.bundle import build_bundle
from fhir_so.case import Case, load_case, with_defaults
from fhir_so.client import FhirClient
from fhir_so.errors import InputError, ServerError
from fhir_so.workflow.pull import pull, pull_bundle, pull_patient
from fhir_so.workflow.push import PushResult, classify_entry, push

CAPABILITIES = {
    "resourceType": "CapabilityStatement",
    "status": "active",
    "fhirVersion": "4.0.1",
    "rest": [{"mode": "server", "interaction": [{"code": "transaction"}]}],
}


@pytest.fixture
def fake() -> FakeFhir:
    return FakeFhir(BASE, page_size=2)


@pytest.fixture
def fake_client(fake: FakeFhir) -> Iterator[FhirClient]:
    with FhirClient(BASE, session=session_for(fake), retries=quick_policy()) as c:
        yield c


# -- classification ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "response", "expected"),
    [
        ("POST", {"status": "201 Created", "location": "Patient/1/_history/1"}, ("created", "Patient", "1", "1")),
        ("POST", {"status": "200 OK", "location": "Patient/1/_history/1"}, ("unchanged", "Patient", "1", "1")),
        ("PUT", {"status": "201 Created", "location": "ServiceRequest/7/_history/1"}, ("created", "ServiceRequest", "7", "1")),
        ("PUT", {"status": "200 OK", "location": "ServiceRequest/7/_history/1"}, ("unchanged", "ServiceRequest", "7", "1")),
        ("PUT", {"status": "200 OK", "location": "ServiceRequest/7/_history/3", "etag": 'W/"3"'}, ("updated", "ServiceRequest", "7", "3")),
        (
            "PUT",
            {
                "status": "200 OK",
                "location": "http://h/fhir/Consent/9/_history/4",
                "outcome": {"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational", "details": {"coding": [{"code": "SUCCESSFUL_UPDATE_NO_CHANGE"}]}}]},
            },
            ("unchanged", "Consent", "9", "4"),
        ),
        ("PUT", {"status": "200", "etag": 'W/"2"', "location": "Consent/9"}, ("updated", "Consent", "9", "2")),
    ],
    ids=["create", "create-matched", "update-created", "update-v1", "update-bumped", "hapi-no-change", "etag-only"],
)
def test_classify_entry(method: str, response: dict[str, str], expected: tuple[str, str, str, str]) -> None:
    assert classify_entry({"method": method}, response) == expected


def test_classify_refuses_a_failed_entry() -> None:
    with pytest.raises(ServerError):
        classify_entry({"method": "PUT"}, {"status": "412 Precondition Failed"})


def _reply(bundle: dict, statuses: list[str]) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [
            {"response": {"status": s, "location": f"{e['resource']['resourceType']}/{i + 1}/_history/1"}}
            for i, (e, s) in enumerate(zip(bundle["entry"], statuses))
        ],
    }


def test_push_reports_ids_and_outcomes(rsps: responses.RequestsMock, client: FhirClient, urology: Case) -> None:
    bundle = build_bundle(urology)
    rsps.get(f"{BASE}/metadata", json=CAPABILITIES)
    rsps.post(BASE, json=_reply(bundle, ["201 Created"] * len(bundle["entry"])))
    result = push(client, urology)
    assert result.case_id == urology.case_id and not result.stat
    assert result.counts() == {"created": len(bundle["entry"]), "updated": 0, "unchanged": 0}
    assert result.request_id == str(1 + [e["resource"]["resourceType"] for e in bundle["entry"]].index("ServiceRequest"))
    sent = json.loads(rsps.calls[-1].request.body)
    assert sent == bundle
    assert PushResult.from_json(result.to_json()) == result


def test_second_push_says_nothing_new(rsps: responses.RequestsMock, client: FhirClient, urology: Case) -> None:
    bundle = build_bundle(urology)
    rsps.get(f"{BASE}/metadata", json=CAPABILITIES)
    rsps.post(BASE, json=_reply(bundle, ["200 OK"] * len(bundle["entry"])))
    result = push(client, bundle)
    assert not result.changed
    assert "nothing new" in result.summary()


def test_push_rejects_a_short_transaction_response(rsps: responses.RequestsMock, client: FhirClient, urology: Case) -> None:
    bundle = build_bundle(urology)
    rsps.get(f"{BASE}/metadata", json=CAPABILITIES)
    rsps.post(BASE, json=_reply(bundle, ["201 Created"])  | {"entry": []})
    with pytest.raises(ServerError, match="0 entries"):
        push(client, urology)


def test_push_refuses_a_bundle_that_is_not_a_transaction(client: FhirClient) -> None:
    with pytest.raises(InputError):
        push(client, {"resourceType": "Bundle", "type": "collection", "entry": []})


def test_stat_is_flagged(rsps: responses.RequestsMock, client: FhirClient) -> None:
    case = load_case(EXAMPLES / "stat-request.case.json")
    bundle = build_bundle(case)
    rsps.get(f"{BASE}/metadata", json=CAPABILITIES)
    rsps.post(BASE, json=_reply(bundle, ["201 Created"] * len(bundle["entry"])))
    assert push(client, case).stat


# -- against the fake server ----------------------------------------------------------------


def test_push_twice_on_the_fake_creates_one_of_each(fake: FakeFhir, fake_client: FhirClient, urology: Case) -> None:
    first = push(fake_client, urology)
    counts = {t: fake.count(t) for t in fake.store}
    second = push(fake_client, urology)
    assert first.counts()["created"] == len(first.entries)
    assert not second.changed
    assert {t: fake.count(t) for t in fake.store} == counts
    assert [e.id for e in first.entries] == [e.id for e in second.entries]


def test_a_changed_case_is_an_update(fake_client: FhirClient, urology: Case) -> None:
    push(fake_client, urology)
    consent = urology.records_consent
    assert consent is not None
    revoked = urology.model_copy(update={"records_consent": consent.model_copy(update={"status": "revoked"})})
    result = push(fake_client, revoked)
    updated = [e for e in result.entries if e.outcome == "updated"]
    assert [(e.resource_type, e.version) for e in updated] == [("Consent", "2")]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.case.json")), ids=lambda p: p.name.removesuffix(".case.json"))
def test_pull_equals_push_for_every_example(fake_client: FhirClient, path: Path) -> None:
    case = load_case(path)
    pushed = push(fake_client, case)
    assert pull(fake_client, case_id=case.case_id) == with_defaults(case)
    assert pull(fake_client, request_id=pushed.request_id) == with_defaults(case)


def test_pull_follows_every_page(fake: FakeFhir, fake_client: FhirClient, urology: Case) -> None:
    push(fake_client, urology)
    fake.requests.clear()
    bundle = pull_bundle(fake_client, case_id=urology.case_id)
    doc_pages = [u for m, u in fake.requests if "/DocumentReference?" in u]
    assert len(doc_pages) == 2  # four records, two per page
    assert "_offset=2" in doc_pages[1]
    assert bundle["type"] == "collection"
    assert all(e["fullUrl"].startswith(BASE + "/") for e in bundle["entry"])
    assert bundle["entry"][0]["resource"]["resourceType"] == "ServiceRequest"
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds.count("DocumentReference") == 4 and kinds.count("Consent") == 2


def test_pull_asks_for_the_includes_and_reads_what_r4_cannot_search(fake: FakeFhir, fake_client: FhirClient, urology: Case) -> None:
    push(fake_client, urology)
    fake.requests.clear()
    pull_bundle(fake_client, case_id=urology.case_id)
    queries = [parse_qs(urlsplit(u).query) for _, u in fake.requests]
    first = queries[0]
    assert first["identifier"] == [f"{term.SID_CASE}|{urology.case_id}"]
    assert set(first["_include"]) == {"ServiceRequest:subject", "ServiceRequest:requester", "ServiceRequest:performer"}
    consent_reads = [q for (m, u), q in zip(fake.requests, queries) if "/Consent?" in u]
    assert len(consent_reads) == 1 and len(consent_reads[0]["_id"][0].split(",")) == 2


def test_pull_of_a_missing_case_is_bad_input(fake_client: FhirClient) -> None:
    with pytest.raises(InputError, match="no a ServiceRequest with case id nope|has no"):
        pull(fake_client, case_id="nope")


def test_pull_refuses_a_hostile_id(fake_client: FhirClient) -> None:
    with pytest.raises(InputError, match="FHIR id"):
        pull(fake_client, request_id="1&_include=*")


def test_pull_needs_exactly_one_key(fake_client: FhirClient) -> None:
    with pytest.raises(InputError):
        pull(fake_client)
    with pytest.raises(InputError):
        pull(fake_client, request_id="1", case_id="x")


def test_pull_patient_gives_each_case(fake: FakeFhir, fake_client: FhirClient, urology: Case) -> None:
    third = load_case(EXAMPLES / "urology-third-opinion.case.json")
    push(fake_client, urology)
    push(fake_client, third)
    patient_id = fake.all("Patient")[0]["id"]
    cases = sorted(pull_patient(fake_client, patient_id), key=lambda c: c.case_id)
    assert cases == [with_defaults(urology), with_defaults(third)]
