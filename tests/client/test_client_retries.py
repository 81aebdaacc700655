"""Retries: what is retried, how long the client waits, and what is never retried."""

from __future__ import annotations

import email.utils

import pytest
import requests
import responses
from tests.client.client_helpers import BASE, capability_statement, outcome

from fhir_so.client import FhirClient, RetryPolicy
from fhir_so.errors import HttpError, TransportError

PATIENT = {"resourceType": "Patient", "id": "1"}
NOW = 1_700_000_000.0


def test_429_with_retry_after_seconds(rsps: responses.RequestsMock, client: FhirClient, sleeps: list[float]) -> None:
    rsps.get(f"{BASE}/Patient/1", status=429, headers={"Retry-After": "7"})
    rsps.get(f"{BASE}/Patient/1", json=PATIENT)
    assert client.read("Patient", "1") == PATIENT
    assert sleeps == [7.0]
    assert len(rsps.calls) == 2


def test_429_with_retry_after_http_date(rsps: responses.RequestsMock, client: FhirClient, sleeps: list[float]) -> None:
    when = email.utils.formatdate(NOW + 12, usegmt=True)
    rsps.get(f"{BASE}/Patient/1", status=429, headers={"Retry-After": when})
    rsps.get(f"{BASE}/Patient/1", json=PATIENT)
    assert client.read("Patient", "1") == PATIENT
    assert sleeps == [12.0]


def test_retry_after_is_capped(rsps: responses.RequestsMock, sleeps: list[float]) -> None:
    policy = RetryPolicy(max_retry_after=20.0, sleep=sleeps.append, clock=lambda: NOW)
    rsps.get(f"{BASE}/Patient/1", status=503, headers={"Retry-After": "3600"})
    rsps.get(f"{BASE}/Patient/1", json=PATIENT)
    with FhirClient(BASE, retries=policy) as client:
        client.read("Patient", "1")
    assert sleeps == [20.0]


def test_get_retried_through_500_502_503(rsps: responses.RequestsMock, client: FhirClient, sleeps: list[float]) -> None:
    for status in (500, 502, 503):
        rsps.get(f"{BASE}/Patient/1", status=status)
    rsps.get(f"{BASE}/Patient/1", json=PATIENT)
    assert client.read("Patient", "1") == PATIENT
    assert [c.response.status_code for c in rsps.calls] == [500, 502, 503, 200]
    # Exponential backoff: 0.5, 1, 2 seconds (jitter pinned at its maximum in the fixture).
    assert sleeps == [0.5, 1.0, 2.0]


def test_jitter_spreads_waits_between_half_and_full() -> None:
    low = RetryPolicy(backoff=1.0, random=lambda: 0.0)
    high = RetryPolicy(backoff=1.0, random=lambda: 1.0)
    assert [low.delay(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert [high.delay(n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert RetryPolicy(backoff=1.0, max_backoff=3.0, random=lambda: 1.0).delay(10) == 3.0


def test_gives_up_after_the_last_attempt(rsps: responses.RequestsMock, client: FhirClient, sleeps: list[float]) -> None:
    rsps.get(f"{BASE}/Patient/1", status=503, json=outcome("maintenance"))
    with pytest.raises(HttpError) as info:
        client.read("Patient", "1")
    assert info.value.status == 503 and "maintenance" in str(info.value)
    assert len(rsps.calls) == 4 and len(sleeps) == 3


def test_connection_dropped_mid_response_then_success(
    rsps: responses.RequestsMock, client: FhirClient, sleeps: list[float]
) -> None:
    rsps.get(f"{BASE}/Patient/1", body=requests.exceptions.ChunkedEncodingError("IncompleteRead(10 bytes read)"))
    rsps.get(f"{BASE}/Patient/1", body=requests.exceptions.ConnectionError("Connection reset by peer"))
    rsps.get(f"{BASE}/Patient/1", json=PATIENT)
    assert client.read("Patient", "1") == PATIENT
    assert len(sleeps) == 2


def test_transport_failure_after_all_attempts(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/Patient/1", body=requests.exceptions.ReadTimeout("read timeout"))
    with pytest.raises(TransportError, match="after 4 attempts"):
        client.read("Patient", "1")


def test_plain_post_not_retried_on_500(rsps: responses.RequestsMock, client: FhirClient, sleeps: list[float]) -> None:
    rsps.post(f"{BASE}/Patient", status=500, json=outcome("database timeout"))
    rsps.post(f"{BASE}/Patient", status=201, json=PATIENT)
    with pytest.raises(HttpError) as info:
        client.create({"resourceType": "Patient"})
    assert info.value.status == 500
    assert len(rsps.calls) == 1 and sleeps == []


@pytest.mark.parametrize("status", [502, 503, 504])
def test_plain_post_not_retried_on_gateway_errors(rsps: responses.RequestsMock, client: FhirClient, status: int) -> None:
    rsps.post(f"{BASE}/Patient", status=status)
    with pytest.raises(HttpError):
        client.create({"resourceType": "Patient"})
    assert len(rsps.calls) == 1


def test_plain_post_not_retried_after_read_timeout(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.post(f"{BASE}/Patient", body=requests.exceptions.ReadTimeout("read timeout"))
    with pytest.raises(TransportError):
        client.create({"resourceType": "Patient"})
    assert len(rsps.calls) == 1


def test_plain_post_retried_on_429(rsps: responses.RequestsMock, client: FhirClient, sleeps: list[float]) -> None:
    rsps.post(f"{BASE}/Patient", status=429, headers={"Retry-After": "1"})
    rsps.post(f"{BASE}/Patient", status=201, json=PATIENT)
    assert client.create({"resourceType": "Patient"}).created
    assert sleeps == [1.0]


def test_conditional_create_retried_on_503(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.post(f"{BASE}/Patient", status=503)
    rsps.post(f"{BASE}/Patient", status=200, json=PATIENT)
    result = client.create({"resourceType": "Patient"}, if_none_exist="identifier=x|1")
    assert result.id == "1" and len(rsps.calls) == 2


def _transaction(*requests_: dict[str, str]) -> dict[str, object]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": {"resourceType": "Patient"}, "request": r} for r in requests_],
    }


@pytest.mark.parametrize(
    ("entries", "retried"),
    [
        (({"method": "POST", "url": "Patient", "ifNoneExist": "identifier=a|1"}, {"method": "PUT", "url": "Patient/2"}), True),
        (({"method": "GET", "url": "Patient/3"}, {"method": "DELETE", "url": "Patient/4"}), True),
        (({"method": "POST", "url": "Patient", "ifNoneExist": "identifier=a|1"}, {"method": "POST", "url": "Patient"}), False),
        (({"method": "PATCH", "url": "Patient/2"},), False),
    ],
    ids=["conditional-create+put", "get+delete", "one-plain-post", "patch"],
)
def test_transaction_retried_only_when_replay_is_safe(
    rsps: responses.RequestsMock, client: FhirClient, entries: tuple[dict[str, str], ...], retried: bool
) -> None:
    rsps.get(f"{BASE}/metadata", json=capability_statement("transaction"))
    rsps.post(BASE, status=503)
    rsps.post(BASE, json={"resourceType": "Bundle", "type": "transaction-response", "entry": []})
    if retried:
        client.transaction(_transaction(*entries))
    else:
        with pytest.raises(HttpError):
            client.transaction(_transaction(*entries))
    posts = [c for c in rsps.calls if c.request.method == "POST"]
    assert len(posts) == (2 if retried else 1)
