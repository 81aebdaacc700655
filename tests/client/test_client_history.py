"""history: every version of one resource, paged lazily like a search, deleted versions left out."""

from __future__ import annotations

from typing import Any

import pytest
import responses

from fhir_so.client import FhirClient
from fhir_so.errors import NotFoundError, ServerError
from tests.client.client_helpers import BASE


def history_page(versions: list[str | None], next_url: str | None = None) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    for v in versions:
        if v is None:  # a deletion: HAPI sends the request and response, no resource
            entries.append({"request": {"method": "DELETE", "url": "Task/7"}, "response": {"status": "204"}})
        else:
            entries.append({"resource": {"resourceType": "Task", "id": "7", "meta": {"versionId": v}}})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history", "entry": entries}
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


def test_every_version_across_pages_and_headers_on_each(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/Task/7/_history", json=history_page(["4", None], f"{BASE}?_getpages=h&_getpagesoffset=2"))
    rsps.get(f"{BASE}?_getpages=h&_getpagesoffset=2", json=history_page(["2", "1"]))
    versions = client.history("Task", "7", headers={"Cache-Control": "no-cache"})
    assert len(rsps.calls) == 0, "nothing is sent until the versions are read"
    assert [r["meta"]["versionId"] for r in versions] == ["4", "2", "1"]
    assert [c.request.headers.get("Cache-Control") for c in rsps.calls] == ["no-cache", "no-cache"]


def test_a_searchset_is_not_a_history(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/Task/7/_history", json={"resourceType": "Bundle", "type": "searchset"})
    with pytest.raises(ServerError, match="expected a history Bundle"):
        list(client.history("Task", "7"))


def test_a_paging_loop_ends_with_an_error(rsps: responses.RequestsMock, client: FhirClient) -> None:
    loop = f"{BASE}?_getpages=h&_getpagesoffset=2"
    rsps.get(f"{BASE}/Task/7/_history", json=history_page(["3"], loop))
    rsps.get(loop, json=history_page(["2"], loop))
    with pytest.raises(ServerError, match="paging loop"):
        list(client.history("Task", "7"))


def test_an_unknown_resource_is_not_found(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/Task/9/_history", status=404, json={"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]})
    with pytest.raises(NotFoundError):
        list(client.history("Task", "9"))
