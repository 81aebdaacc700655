"""Capabilities, transactions, batches, and the batch fallback for servers without transactions."""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses

from fhir_so.client import FhirClient
from fhir_so.errors import CapabilityError, HttpError, InputError, ServerError
from tests.client.client_helpers import BASE, capability_statement, outcome

PATIENT_URN = "urn:uuid:11111111-1111-4111-8111-111111111111"
REQUEST_URN = "urn:uuid:22222222-2222-4222-8222-222222222222"
CONSENT_URN = "urn:uuid:33333333-3333-4333-8333-333333333333"


def transaction() -> dict[str, Any]:
    """ServiceRequest and Consent reference the Patient; the Consent also references the request."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": CONSENT_URN,
                "resource": {
                    "resourceType": "Consent",
                    "patient": {"reference": PATIENT_URN},
                    "sourceReference": {"reference": REQUEST_URN},
                },
                "request": {"method": "POST", "url": "Consent"},
            },
            {
                "fullUrl": REQUEST_URN,
                "resource": {"resourceType": "ServiceRequest", "subject": {"reference": PATIENT_URN}},
                "request": {"method": "POST", "url": "ServiceRequest", "ifNoneExist": "identifier=case|1"},
            },
            {
                "fullUrl": PATIENT_URN,
                "resource": {"resourceType": "Patient", "identifier": [{"system": "mrn", "value": "7"}]},
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=mrn|7"},
            },
        ],
    }


def batch_response(*replies: tuple[str, str]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [{"response": {"status": status, "location": location}} for status, location in replies],
    }


def test_capabilities_fetched_once(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/metadata", json=capability_statement("transaction", "batch"))
    client.require("transaction", "batch")
    assert client.supports("batch") and not client.supports("history-system")
    client.capabilities()
    assert len(rsps.calls) == 1


@pytest.mark.parametrize("version", ["5.0.0", "3.0.2", "4.3.0", ""], ids=["R5", "STU3", "R4B", "none"])
def test_not_r4_is_a_capability_error(rsps: responses.RequestsMock, client: FhirClient, version: str) -> None:
    rsps.get(f"{BASE}/metadata", json=capability_statement("transaction", version=version))
    with pytest.raises(CapabilityError, match="fhir-so needs R4"):
        client.require()


def test_metadata_that_is_not_a_capability_statement(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/metadata", json={"resourceType": "Patient"})
    with pytest.raises(Exception, match="expected a CapabilityStatement"):
        client.capabilities()


def test_transaction_posts_bundle_to_base(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/metadata", json=capability_statement("transaction"))
    reply = {"resourceType": "Bundle", "type": "transaction-response", "entry": [{"response": {"status": "201 Created"}}] * 3}
    rsps.post(BASE, json=reply)
    assert client.transaction(transaction()) == reply
    post = rsps.calls[1].request
    assert post.url == BASE and json.loads(post.body)["type"] == "transaction"
    assert post.headers["Content-Type"] == "application/fhir+json; fhirVersion=4.0"


def test_no_transaction_support_is_a_capability_error(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/metadata", json=capability_statement("batch"))
    with pytest.raises(CapabilityError, match="does not support transactions; pass fallback_to_batch=True"):
        client.transaction(transaction())
    assert [c.request.method for c in rsps.calls] == ["GET"]


def test_no_transaction_and_no_batch(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/metadata", json=capability_statement("search-system"))
    rsps.post(BASE, status=405, json=outcome("POST to the base URL is not supported"))
    with pytest.raises(CapabilityError, match="neither transactions nor batches"):
        client.transaction(transaction(), fallback_to_batch=True)


def test_batch_fallback_on_a_server_that_does_not_declare_batch(rsps: responses.RequestsMock, client: FhirClient) -> None:
    # HAPI declares only "transaction" among system interactions, yet handles batches.
    rsps.get(f"{BASE}/metadata", json=capability_statement("history-system"))
    rsps.post(BASE, json=batch_response(("201 Created", "Patient/p9/_history/1")))
    rsps.post(BASE, json=batch_response(("201 Created", "ServiceRequest/sr4/_history/1")))
    rsps.post(BASE, json=batch_response(("201 Created", "Consent/c1/_history/1")))
    answer = client.transaction(transaction(), fallback_to_batch=True)
    assert len(answer["entry"]) == 3


def test_batch_fallback_sends_in_dependency_order_and_resolves_urns(
    rsps: responses.RequestsMock, client: FhirClient
) -> None:
    rsps.get(f"{BASE}/metadata", json=capability_statement("batch"))
    rsps.post(BASE, json=batch_response(("201 Created", "Patient/p9/_history/1")))
    rsps.post(BASE, json=batch_response(("200 OK", f"{BASE}/ServiceRequest/sr4/_history/2")))
    rsps.post(BASE, json=batch_response(("201 Created", "Consent/c1/_history/1")))
    answer = client.transaction(transaction(), fallback_to_batch=True)

    sent = [json.loads(c.request.body) for c in rsps.calls if c.request.method == "POST"]
    assert [b["type"] for b in sent] == ["batch"] * 3
    assert [[e["resource"]["resourceType"] for e in b["entry"]] for b in sent] == [["Patient"], ["ServiceRequest"], ["Consent"]]
    assert sent[1]["entry"][0]["resource"]["subject"] == {"reference": "Patient/p9"}
    assert sent[2]["entry"][0]["resource"]["patient"] == {"reference": "Patient/p9"}
    assert sent[2]["entry"][0]["resource"]["sourceReference"] == {"reference": "ServiceRequest/sr4"}
    assert sent[1]["entry"][0]["request"]["ifNoneExist"] == "identifier=case|1"
    # The answer reads like a transaction-response, entries in the order they were given.
    assert answer["type"] == "transaction-response"
    assert [e["response"]["location"] for e in answer["entry"]] == [
        "Consent/c1/_history/1",
        f"{BASE}/ServiceRequest/sr4/_history/2",
        "Patient/p9/_history/1",
    ]


def test_batch_fallback_failure_says_what_was_applied(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/metadata", json=capability_statement("batch"))
    rsps.post(BASE, json=batch_response(("201 Created", "Patient/p9/_history/1")))
    failed = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [
            {
                "response": {
                    "status": "422 Unprocessable Entity",
                    "outcome": {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "diagnostics": "bad code"}]},
                }
            }
        ],
    }
    rsps.post(BASE, json=failed)
    with pytest.raises(HttpError) as info:
        client.transaction(transaction(), fallback_to_batch=True)
    assert info.value.status == 422
    assert "not atomic" in str(info.value) and "1 entries were applied" in str(info.value)
    assert "ServiceRequest" in str(info.value) and "bad code" in str(info.value)


def test_batch_fallback_refuses_reference_cycles(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/metadata", json=capability_statement("batch"))
    bundle = transaction()
    bundle["entry"][2]["resource"]["link"] = [{"other": {"reference": CONSENT_URN}}]
    with pytest.raises(CapabilityError, match="cycle"):
        client.transaction(bundle, fallback_to_batch=True)


def test_batch(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.post(BASE, json=batch_response(("200 OK", "Patient/1")))
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": "Patient/1"}}]}
    assert client.batch(bundle)["type"] == "batch-response"


@pytest.mark.parametrize(
    "bundle",
    [{"resourceType": "Patient"}, {"resourceType": "Bundle", "type": "batch"}, {"resourceType": "Bundle", "type": "collection"}],
    ids=["not-a-bundle", "batch", "collection"],
)
def test_transaction_needs_a_transaction_bundle(client: FhirClient, bundle: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        client.transaction(bundle)


def test_transaction_response_is_read_entry_by_entry() -> None:
    from fhir_so.client import TransactionResponse

    sent = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=a|1"}},
            {"resource": {"resourceType": "ServiceRequest"}, "request": {"method": "PUT", "url": "ServiceRequest?identifier=a|2"}},
        ],
    }
    answer = {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [
            {"response": {"status": "201 Created", "location": "Patient/7/_history/1"}},
            {"response": {"status": "200 OK", "location": "ServiceRequest/9/_history/2", "etag": 'W/"3"'}},
        ],
    }
    read = TransactionResponse.read("http://x/fhir", sent, answer)
    first, second = read.responses
    assert (first.created, first.resource_type, first.id, first.version) == (True, "Patient", "7", "1")
    assert (second.ok, second.created, second.id, second.version) == (True, False, "9", "3"), "the ETag wins"
    assert read.requests[1]["method"] == "PUT" and read.resources[0]["resourceType"] == "Patient"
    with pytest.raises(ServerError, match="has 1 entries for 2 sent"):
        TransactionResponse.read("http://x/fhir", sent, {"type": "transaction-response", "entry": answer["entry"][:1]})
