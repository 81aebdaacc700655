"""What a stock HAPI does, met live: searches that must see the write just before them, a write
answered without a body, a version conflict. Holds on the tuned profile and on one that reuses
cached searches (the client asks for fresh answers: ``Cache-Control: no-cache``)."""

from __future__ import annotations

import uuid

import pytest
import requests

from fhir_so.client import FhirClient
from fhir_so.errors import PreconditionFailed

SYSTEM = "urn:fhir-so:test:stock-habits"


@pytest.fixture
def client(fhir_server: str) -> FhirClient:
    return FhirClient(fhir_server)


def test_a_search_sees_the_write_made_just_before_it(fhir_server: str, client: FhirClient) -> None:
    value = uuid.uuid4().hex
    search = client.search("Patient", identifier=f"{SYSTEM}|{value}")
    assert list(search) == []  # a server with a search cache now holds this empty answer
    created = requests.post(
        f"{fhir_server}/Patient",
        json={"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": value}]},
        headers={"Content-Type": "application/fhir+json"},
        timeout=30,
    )
    created.raise_for_status()
    assert [p["identifier"][0]["value"] for p in search] == [value]
    assert search.count() == 1


def test_a_write_answered_without_a_body(client: FhirClient) -> None:
    result = client.create({"resourceType": "Practitioner", "name": [{"family": "Minimal"}]}, prefer="minimal")
    assert result.created and result.resource is None
    assert result.id and result.version_id == "1"
    assert client.read("Practitioner", result.id)["name"][0]["family"] == "Minimal"


def test_a_version_conflict_is_one_typed_error(client: FhirClient) -> None:
    first = client.create({"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": uuid.uuid4().hex}]})
    assert first.resource is not None
    client.update({**first.resource, "active": True}, if_match="1")
    with pytest.raises(PreconditionFailed) as info:
        client.update({**first.resource, "active": False}, if_match="1")
    assert info.value.status in (409, 412) and info.value.version == "1"
    assert "based on Patient/" in str(info.value)
