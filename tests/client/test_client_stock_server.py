"""What a stock server does that the project's tuned HAPI does not, and how the client copes.

Fresh searches (HAPI reuses a search's results for 60 s unless told ``Cache-Control: no-cache``,
and says so with ``X-Cache: HIT``), capped page sizes, no ``total``, writes answered without a
body or with an OperationOutcome, Location and ETag in all their forms, 409 and 412 for a
version conflict, HTML error pages.
"""

from __future__ import annotations

from typing import Any

import pytest
import responses
from responses import matchers
from tests.client.client_helpers import BASE, outcome

from fhir_so.client import EntryResponse, FhirClient, RetryPolicy, TransactionResponse
from fhir_so.errors import CapabilityError, HttpError, InputError, PreconditionFailed, ServerError

PATIENT = {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "3"}}


def searchset(
    *ids: str, next_url: str | None = None, bundle_id: str | None = None, total: int | None = None, made: str | None = None
) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Patient", "id": i}, "search": {"mode": "match"}} for i in ids],
    }
    if bundle_id:
        bundle["id"] = bundle_id
    if made:
        bundle["meta"] = {"lastUpdated": made}
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    if total is not None:
        bundle["total"] = total
    return bundle


# -- fresh answers ------------------------------------------------------------------------


def test_a_search_asks_for_a_fresh_answer(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/Patient", json=searchset("a"), match=[matchers.header_matcher({"Cache-Control": "no-cache"})])
    assert [p["id"] for p in client.search("Patient", identifier="s|1")] == ["a"]


def test_a_cached_search_sends_no_cache_control(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/Patient", json=searchset("a"))
    list(client.search("Patient").cached())
    assert "Cache-Control" not in rsps.calls[0].request.headers


def test_pages_after_the_first_keep_the_header(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/Patient", json=searchset("a", next_url=f"{BASE}?_getpages=u1&_getpagesoffset=1&_count=1"))
    rsps.get(f"{BASE}?_getpages=u1&_getpagesoffset=1&_count=1", json=searchset("b"))
    assert [p["id"] for p in client.search("Patient")] == ["a", "b"]
    assert all(c.request.headers.get("Cache-Control") == "no-cache" for c in rsps.calls)


@pytest.mark.parametrize(
    ("headers", "shown"),
    [({"X-Cache": f"HIT from {BASE}"}, "X-Cache: HIT"), ({"Age": "12"}, "Age: 12")],
    ids=["hapi-x-cache-hit", "http-cache-age"],
)
def test_a_cached_answer_is_asked_for_again(
    rsps: responses.RequestsMock, client: FhirClient, headers: dict[str, str], shown: str
) -> None:
    rsps.get(f"{BASE}/Patient", json=searchset("old"), headers=headers)
    rsps.get(f"{BASE}/Patient", json=searchset("old", "new"))
    assert [p["id"] for p in client.search("Patient")] == ["old", "new"]
    assert len(rsps.calls) == 2


def test_a_server_that_keeps_answering_from_its_cache_stops_the_search(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/Patient", json=searchset("old"), headers={"X-Cache": f"HIT from {BASE}"})
    with pytest.raises(ServerError, match=r"answered from a cache .*twice \(X-Cache: HIT from "):
        list(client.search("Patient"))
    assert len(rsps.calls) == 2


def test_a_reused_bundle_reveals_a_reused_search(rsps: responses.RequestsMock, client: FhirClient) -> None:
    """HAPI reusing a search hands back the first answer's Bundle.id (the search's UUID) and meta.lastUpdated."""
    first = searchset("a", bundle_id="search-1", made="2026-11-29T10:00:00.100+00:00")
    rsps.get(f"{BASE}/Patient", json=first)
    rsps.get(f"{BASE}/Patient", json=first)
    rsps.get(f"{BASE}/Patient", json=searchset("a", "b", bundle_id="search-2", made="2026-11-29T10:00:05.300+00:00"))
    assert [p["id"] for p in client.search("Patient")] == ["a"]
    assert [p["id"] for p in client.search("Patient")] == ["a", "b"]
    assert len(rsps.calls) == 3


@pytest.mark.parametrize(
    ("second", "third"),
    [
        ({"bundle_id": "same-id", "made": "2026-11-29T10:00:01Z"}, {"bundle_id": "same-id", "made": "2026-11-29T10:00:02Z"}),
        ({"bundle_id": "same-id"}, {"bundle_id": "same-id"}),
        ({"made": "2026-11-29T10:00:00Z"}, {"made": "2026-11-29T10:00:00Z"}),
    ],
    ids=["same-id-new-instant", "same-id-no-instant", "no-id-same-instant"],
)
def test_one_sign_alone_is_not_taken_for_reuse(
    rsps: responses.RequestsMock, client: FhirClient, second: dict[str, str], third: dict[str, str]
) -> None:
    """A server may give every answer the same id, or none: only id and instant together tell."""
    rsps.get(f"{BASE}/Patient", json=searchset("a", **second))
    rsps.get(f"{BASE}/Patient", json=searchset("a", "b", **third))
    assert [p["id"] for p in client.search("Patient")] == ["a"]
    assert [p["id"] for p in client.search("Patient")] == ["a", "b"]
    assert len(rsps.calls) == 2


def test_a_cached_search_takes_the_cached_answer(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/Patient", json=searchset("old"), headers={"X-Cache": f"HIT from {BASE}"})
    assert [p["id"] for p in client.search("Patient").cached()] == ["old"]
    assert len(rsps.calls) == 1


# -- pages, totals ------------------------------------------------------------------------


def test_a_capped_page_size_is_followed_not_assumed(rsps: responses.RequestsMock, client: FhirClient) -> None:
    """Asked for 50 a page, the server gives 2 and a next link: every page is read."""
    rsps.get(f"{BASE}/Patient?_count=50", json=searchset("a", "b", next_url=f"{BASE}/Patient?_count=2&_offset=2"))
    rsps.get(f"{BASE}/Patient?_count=2&_offset=2", json=searchset("c", "d", next_url=f"{BASE}/Patient?_count=2&_offset=4"))
    rsps.get(f"{BASE}/Patient?_count=2&_offset=4", json=searchset("e"))
    assert [p["id"] for p in client.search("Patient").page_size(50)] == ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize(
    ("link", "followed"),
    [
        ("/r4/Patient?page=2", f"{BASE}/Patient?page=2"),
        ("Patient?page=2", f"{BASE}/Patient?page=2"),
    ],
    ids=["root-relative", "relative"],
)
def test_a_relative_next_link_is_read_against_the_page(
    rsps: responses.RequestsMock, client: FhirClient, link: str, followed: str
) -> None:
    rsps.get(f"{BASE}/Patient", json=searchset("a", next_url=link))
    rsps.get(followed, json=searchset("b"))
    assert [p["id"] for p in client.search("Patient")] == ["a", "b"]
    assert rsps.calls[1].request.url == followed


def test_count_uses_the_total_when_there_is_one(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/Patient?_summary=count", json=searchset(total=7))
    assert client.search("Patient").count() == 7


def test_count_without_a_total_counts_page_by_page(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/Patient?_summary=count", json=searchset())
    rsps.get(f"{BASE}/Patient?_elements=id", json=searchset("a", "b", next_url=f"{BASE}/Patient?_elements=id&ct=xyz"))
    page_two = searchset("c")
    page_two["entry"].append({"resource": {"resourceType": "Organization", "id": "o"}, "search": {"mode": "include"}})
    rsps.get(f"{BASE}/Patient?_elements=id&ct=xyz", json=page_two)
    assert client.search("Patient").count() == 3


# -- writes: bodies, Location, ETag ----------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "etag", "version"),
    [
        (f"{BASE}/Patient/p9/_history/4", 'W/"4"', "4"),
        (f"{BASE}/Patient/p9/_history/4", None, "4"),
        (f"{BASE}/Patient/p9", 'W/"4"', "4"),
        (f"{BASE}/Patient/p9", '"4"', "4"),
        ("Patient/p9/_history/4", None, "4"),
        ("Patient/p9", '"4"', "4"),
        (f"{BASE}/Patient/p9", None, None),
    ],
    ids=["abs-history-weak", "abs-history-no-etag", "abs-weak", "abs-strong", "rel-history", "rel-strong", "no-version"],
)
def test_a_minimal_answer_gives_id_and_version_from_headers(
    rsps: responses.RequestsMock, client: FhirClient, location: str, etag: str | None, version: str | None
) -> None:
    headers = {"Location": location} | ({"ETag": etag} if etag else {})
    rsps.post(f"{BASE}/Patient", status=201, body=b"", headers=headers)
    result = client.create({"resourceType": "Patient"})
    assert (result.created, result.id, result.version_id, result.resource) == (True, "p9", version, None)


def test_an_operation_outcome_answer_is_not_taken_for_the_resource(rsps: responses.RequestsMock, client: FhirClient) -> None:
    body = {"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational", "diagnostics": "created"}]}
    rsps.post(f"{BASE}/Patient", status=201, json=body, headers={"Location": f"{BASE}/Patient/p9/_history/1", "ETag": 'W/"1"'})
    result = client.create({"resourceType": "Patient"})
    assert result.resource is None and result.outcome == body
    assert (result.id, result.version_id) == ("p9", "1")


@pytest.mark.parametrize("status", [409, 412])
def test_a_version_conflict_is_one_error_naming_the_version(rsps: responses.RequestsMock, client: FhirClient, status: int) -> None:
    rsps.put(f"{BASE}/Patient/p1", status=status, json=outcome("version conflict", code="conflict"))
    with pytest.raises(PreconditionFailed) as info:
        client.update(PATIENT, if_match='W/"3"')
    error = info.value
    assert error.status == status and error.version == "3"
    assert "based on Patient/p1 version 3" in str(error) and "version conflict" in str(error)
    assert len(rsps.calls) == 1


def test_a_conflict_without_if_match_names_no_version(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.put(f"{BASE}/Patient/p1", status=409, json=outcome("conflict"))
    with pytest.raises(PreconditionFailed) as info:
        client.update(PATIENT)
    assert info.value.version is None and "based on" not in str(info.value)


# -- errors as HTML pages -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
def test_an_html_error_page_is_one_short_line(status: int) -> None:
    page = (
        b"<!DOCTYPE html>\n<html><head><title>Apache Tomcat/10 - Error report</title></head><body>"
        b"<h1>HTTP Status 500</h1><pre>java.lang.NullPointerException\n\tat ca.uhn.fhir.Foo.bar(Foo.java:1)\n"
        + b"\tat x.y.Z(Z.java:2)\n" * 2000
        + b"</pre></body></html>"
    )
    with responses.RequestsMock() as rsps, FhirClient(BASE, retries=RetryPolicy(attempts=1)) as client:
        rsps.get(f"{BASE}/Patient/1", status=status, body=page, content_type="text/html;charset=utf-8")
        with pytest.raises(HttpError) as info:
            client.read("Patient", "1")
    message = str(info.value)
    assert "\n" not in message and len(message) < 400
    assert "HTML page: Apache Tomcat/10 - Error report" in message
    assert "NullPointerException" not in message and "<" not in message
    assert info.value.status == status and info.value.outcome is None


# -- transaction-response entries ------------------------------------------------------------------


def test_entry_without_location_is_read_from_its_resource() -> None:
    entry = EntryResponse.of({"status": "201"}, {"resourceType": "Patient", "id": "p7", "meta": {"versionId": "2"}})
    assert (entry.status, entry.resource_type, entry.id, entry.version) == (201, "Patient", "p7", "2")


def test_entry_statuses_with_and_without_reason_phrase() -> None:
    sent = {"entry": [{"request": {"method": "POST", "url": "Patient"}}, {"request": {"method": "PUT", "url": "Patient/x"}}]}
    answer = {
        "type": "transaction-response",
        "entry": [
            {"response": {"status": "201 Created", "location": "Patient/a/_history/1", "etag": 'W/"1"'}},
            {"response": {"status": "200", "location": f"{BASE}/Patient/x/_history/5", "etag": '"5"'}},
        ],
    }
    read = TransactionResponse.read(BASE, sent, answer)
    assert [(r.status, r.id, r.version) for r in read.responses] == [(201, "a", "1"), (200, "x", "5")]


# -- transactions: what the server declares, entries without a location --------------------------------


def _capabilities(**resource: Any) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement", "status": "active", "fhirVersion": "4.0.1",
        "rest": [{"mode": "server", "interaction": [{"code": "transaction"}], "resource": [{"type": "ServiceRequest", **resource}]}],
    }


CONDITIONAL_PUT = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [{"resource": {"resourceType": "ServiceRequest"}, "request": {"method": "PUT", "url": "ServiceRequest?identifier=s|1"}}],
}


def test_a_conditional_update_the_server_declares_it_lacks_is_refused_before_sending(
    rsps: responses.RequestsMock, client: FhirClient
) -> None:
    rsps.get(f"{BASE}/metadata", json=_capabilities(conditionalUpdate=False))
    with pytest.raises(CapabilityError, match=r"declares no conditional update for ServiceRequest .*entry 0 \(PUT ServiceRequest\?identifier=s\|1\)"):
        client.transaction(CONDITIONAL_PUT)
    assert [c.request.method for c in rsps.calls] == ["GET"]


@pytest.mark.parametrize("declared", [{"conditionalUpdate": True}, {}], ids=["declared", "not-said"])
def test_a_conditional_update_declared_or_not_mentioned_is_sent(
    rsps: responses.RequestsMock, client: FhirClient, declared: dict[str, Any]
) -> None:
    rsps.get(f"{BASE}/metadata", json=_capabilities(**declared))
    rsps.post(BASE, json={"resourceType": "Bundle", "type": "transaction-response", "entry": [{"response": {"status": "200", "location": "ServiceRequest/9/_history/2"}}]})
    assert client.transaction(CONDITIONAL_PUT)["entry"][0]["response"]["status"] == "200"


@pytest.mark.parametrize(
    ("request_", "stub"),
    [
        ({"method": "PUT", "url": "Patient/p7"}, {"resourceType": "Patient", "id": "p7"}),
        ({"method": "POST", "url": "Patient"}, None),
        ({"method": "GET", "url": "Patient?name=x"}, None),
    ],
    ids=["put-by-id", "plain-create", "read"],
)
def test_locate_without_a_search(client: FhirClient, request_: dict[str, Any], stub: dict[str, Any] | None) -> None:
    assert client.locate(request_) == stub


@pytest.mark.parametrize("found", [0, 2])
def test_locate_by_a_condition_must_find_exactly_one(rsps: responses.RequestsMock, client: FhirClient, found: int) -> None:
    rsps.get(f"{BASE}/Patient", json=searchset(*[f"p{i}" for i in range(found)]))
    with pytest.raises(ServerError, match=f"its condition matches {found} resources"):
        client.locate({"method": "POST", "url": "Patient", "ifNoneExist": "identifier=s|1"})
    sent = rsps.calls[0].request
    assert sent.headers["Cache-Control"] == "no-cache" and "identifier=s%7C1" in sent.url


def test_locate_by_a_condition_reads_id_and_version(rsps: responses.RequestsMock, client: FhirClient) -> None:
    found = searchset("p1")
    found["entry"][0]["resource"]["meta"] = {"versionId": "4"}
    rsps.get(f"{BASE}/ServiceRequest", json=found)
    stub = client.locate({"method": "PUT", "url": "ServiceRequest?identifier=s|1"})
    assert stub == {"resourceType": "ServiceRequest", "id": "p1", "meta": {"versionId": "4"}}


def test_prefer_must_be_one_the_spec_names(client: FhirClient) -> None:
    with pytest.raises(InputError, match="prefer is one of representation, minimal, OperationOutcome"):
        client.create({"resourceType": "Patient"}, prefer="everything")  # type: ignore[arg-type]


def test_total_says_none_when_the_server_does_not_count(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/Patient?_summary=count", json=searchset())
    assert client.search("Patient").total() is None
    assert len(rsps.calls) == 1, "no pages are read for total()"
