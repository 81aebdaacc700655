"""FhirClient basics: headers, timeouts, URLs, and the REST interactions read/create/update/delete."""

from __future__ import annotations

import json

import pytest
import requests
import responses
from tests.client.client_helpers import BASE, outcome
from responses import matchers

from fhir_so import __version__
from fhir_so.client import FhirClient, RetryPolicy
from fhir_so.errors import InputError, NotFoundError, PreconditionFailed

PATIENT = {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "3"}, "name": [{"family": "Doe"}]}


def test_read_sends_fhir_headers_and_default_timeout(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/Patient/p1", json=PATIENT)
    assert client.read("Patient", "p1") == PATIENT
    request = rsps.calls[0].request
    assert request.headers["Accept"] == "application/fhir+json"
    assert request.headers["User-Agent"] == f"fhir-so/{__version__}"
    assert "Content-Type" not in request.headers
    assert request.req_kwargs["timeout"] == (5.0, 30.0)
    # True, or the CA bundle requests takes from REQUESTS_CA_BUNDLE: verification stays on.
    assert request.req_kwargs["verify"] not in (False, None)


def test_timeout_and_verify_are_configurable(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/Patient/p1", json=PATIENT)
    with FhirClient(BASE, timeout=(1.5, 7.0), verify=False, user_agent="clinic-sync/2") as client:
        client.read("Patient", "p1")
    request = rsps.calls[0].request
    assert request.req_kwargs["timeout"] == (1.5, 7.0)
    assert request.req_kwargs["verify"] is False
    assert request.headers["User-Agent"] == f"fhir-so/{__version__} clinic-sync/2"


def test_vread(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/Patient/p1/_history/3", json=PATIENT)
    assert client.vread("Patient", "p1", "3")["meta"]["versionId"] == "3"


def test_create_posts_fhir_json_and_reports_location(rsps: responses.RequestsMock, client: FhirClient) -> None:
    created = dict(PATIENT, id="new1", meta={"versionId": "1"})
    rsps.post(
        f"{BASE}/Patient",
        json=created,
        status=201,
        headers={"Location": f"{BASE}/Patient/new1/_history/1", "ETag": 'W/"1"'},
    )
    result = client.create({"resourceType": "Patient", "name": [{"family": "Doe"}]})
    request = rsps.calls[0].request
    assert request.headers["Content-Type"] == "application/fhir+json; fhirVersion=4.0"
    assert json.loads(request.body) == {"resourceType": "Patient", "name": [{"family": "Doe"}]}
    assert "If-None-Exist" not in request.headers
    assert result.created and result.id == "new1" and result.version_id == "1"
    assert result.resource == created


def test_conditional_create_sends_if_none_exist(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.post(
        f"{BASE}/Patient",
        status=200,
        body=b"",
        headers={"Location": f"{BASE}/Patient/old7/_history/2"},
        match=[matchers.header_matcher({"If-None-Exist": "identifier=urn%3Aoid%3A1.2%7C42"})],
    )
    result = client.create(
        {"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2", "value": "42"}]},
        if_none_exist={"identifier": "urn:oid:1.2|42"},
    )
    assert not result.created
    assert (result.id, result.version_id, result.resource) == ("old7", "2", None)


def test_update_with_if_match_sends_weak_etag(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.put(
        f"{BASE}/Patient/p1",
        json=dict(PATIENT, meta={"versionId": "4"}),
        headers={"ETag": 'W/"4"'},
        match=[matchers.header_matcher({"If-Match": 'W/"3"'})],
    )
    result = client.update(PATIENT, if_match="3")
    assert result.version_id == "4" and not result.created


def test_update_conflict_raises_precondition_failed(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.put(f"{BASE}/Patient/p1", status=412, json=outcome("Resource version mismatch: expected 3, found 5"))
    with pytest.raises(PreconditionFailed) as info:
        client.update(PATIENT, if_match='W/"3"')
    error = info.value
    assert error.status == 412 and error.method == "PUT" and error.url == f"{BASE}/Patient/p1"
    assert "version mismatch" in str(error)
    assert error.issues == ["error: Resource version mismatch: expected 3, found 5"]
    assert len(rsps.calls) == 1, "a 412 is an answer, not a failure to retry"


def test_delete(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.delete(f"{BASE}/Patient/p1", status=204)
    client.delete("Patient", "p1")
    assert rsps.calls[0].request.method == "DELETE"


def test_not_found_is_typed(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/Patient/gone", status=410, json=outcome("Resource was deleted"))
    with pytest.raises(NotFoundError, match="410 Gone: error: Resource was deleted"):
        client.read("Patient", "gone")


@pytest.mark.parametrize(
    ("resource_type", "id"),
    [("Patient", "../metadata"), ("Patient", "a/b"), ("patient", "1"), ("Patient", ""), ("Patient", "x" * 65)],
    ids=["traversal", "slash", "lowercase-type", "empty-id", "long-id"],
)
def test_hostile_ids_are_input_errors(client: FhirClient, resource_type: str, id: str) -> None:
    with pytest.raises(InputError):
        client.read(resource_type, id)


@pytest.mark.parametrize(
    "url",
    ["ftp://example.org/fhir", "example.org/fhir", "https://user:pw@example.org/fhir", "https://x.org/fhir?a=1"],
    ids=["ftp", "no-scheme", "credentials-in-url", "query"],
)
def test_bad_base_urls_are_input_errors(url: str) -> None:
    with pytest.raises(InputError) as info:
        FhirClient(url)
    assert "pw" not in str(info.value)


def test_base_url_trailing_slash_is_ignored(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/Patient/p1", json=PATIENT)
    with FhirClient(BASE + "/") as client:
        assert client.read("Patient", "p1")["id"] == "p1"


def test_context_manager_closes_its_own_session_only() -> None:
    closed: list[str] = []

    class Recording(requests.Session):
        def close(self) -> None:
            closed.append("closed")
            super().close()

    with FhirClient(BASE, session=Recording()):
        pass
    assert closed == [], "a session passed in belongs to the caller"
    client = FhirClient(BASE)
    client._transport.session = Recording()
    with client:
        pass
    assert closed == ["closed"]


def test_session_seam_is_used(rsps: responses.RequestsMock) -> None:
    session = requests.Session()
    session.headers["X-Trace"] = "abc"
    rsps.get(f"{BASE}/Patient/p1", json=PATIENT)
    with FhirClient(BASE, session=session) as client:
        client.read("Patient", "p1")
    assert rsps.calls[0].request.headers["X-Trace"] == "abc"


def test_operation_get_and_post(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/ValueSet/$expand?url=http%3A%2F%2Fx.org%2Fvs", json={"resourceType": "ValueSet"})
    rsps.post(f"{BASE}/Patient/$validate", json=outcome("All OK", code="informational"))
    assert client.operation("expand", resource_type="ValueSet", params={"url": "http://x.org/vs"}) == {
        "resourceType": "ValueSet"
    }
    answer = client.operation("$validate", resource_type="Patient", body=PATIENT)
    assert answer is not None and answer["resourceType"] == "OperationOutcome"
    assert json.loads(rsps.calls[1].request.body) == PATIENT


def test_request_low_level_returns_status_and_headers(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/Patient?_id=p1", json={"resourceType": "Bundle", "type": "searchset"}, headers={"X-Req": "9"})
    answer = client.request("GET", "/Patient", params={"_id": "p1"})
    assert answer.status == 200 and answer.headers["x-req"] == "9"
    assert answer.json() == {"resourceType": "Bundle", "type": "searchset"}


def test_retry_policy_none_means_one_attempt(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/Patient/p1", status=503)
    with FhirClient(BASE, retries=RetryPolicy(attempts=1)) as client, pytest.raises(Exception):
        client.read("Patient", "p1")
    assert len(rsps.calls) == 1
