"""Search: an immutable builder that pages lazily, keeps search modes and guards next links."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses

from fhir_so.client import FhirClient, SearchEntry
from fhir_so.errors import InputError, ServerError, UnsafeUrlError
from tests.client.client_helpers import BASE


def page(ids: list[str], next_url: str | None = None, includes: tuple[str, ...] = ()) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [
        {"fullUrl": f"{BASE}/ServiceRequest/{i}", "resource": {"resourceType": "ServiceRequest", "id": i}, "search": {"mode": "match"}}
        for i in ids
    ]
    entries += [
        {"resource": {"resourceType": "Patient", "id": p}, "search": {"mode": "include"}} for p in includes
    ]
    links = [{"relation": "self", "url": f"{BASE}/ServiceRequest"}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    return {"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries}


def query(call: Any) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(call.request.url).query)


def test_pages_are_fetched_lazily(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/ServiceRequest", json=page(["a", "b"], f"{BASE}?_getpages=x&_getpagesoffset=2"))
    rsps.get(f"{BASE}?_getpages=x&_getpagesoffset=2", json=page(["c", "d"], f"{BASE}?_getpages=x&_getpagesoffset=4"))
    rsps.get(f"{BASE}?_getpages=x&_getpagesoffset=4", json=page(["e"]))
    search = client.search("ServiceRequest", subject="Patient/1")
    assert len(rsps.calls) == 0, "building a search sends nothing"
    found = iter(search)
    assert next(found)["id"] == "a"
    assert next(found)["id"] == "b"
    assert len(rsps.calls) == 1, "the second page waits until the first is consumed"
    assert next(found)["id"] == "c"
    assert len(rsps.calls) == 2
    assert [r["id"] for r in found] == ["d", "e"]
    assert len(rsps.calls) == 3
    assert query(rsps.calls[0]) == [("subject", "Patient/1")]


def test_builder_is_immutable_and_composes_parameters(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/ServiceRequest", json=page(["a"]))
    base = client.search("ServiceRequest", {"code:text": "consult"}, status="active")
    refined = (
        base.where(date=["ge2024-01-01", "le2024-12-31"], stat=True)
        .include("ServiceRequest:subject")
        .include("Consent:data", reverse=True, iterate=True)
        .sort("-authored", "_id")
        .page_size(50)
    )
    assert base.params == (("code:text", "consult"), ("status", "active"))
    list(refined)
    assert query(rsps.calls[0]) == [
        ("code:text", "consult"),
        ("status", "active"),
        ("date", "ge2024-01-01"),
        ("date", "le2024-12-31"),
        ("stat", "true"),
        ("_include", "ServiceRequest:subject"),
        ("_revinclude:iterate", "Consent:data"),
        ("_sort", "-authored,_id"),
        ("_count", "50"),
    ]


def test_iteration_yields_matches_and_entries_keep_includes(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/ServiceRequest", json=page(["a"], f"{BASE}?page=2", includes=("p1",)))
    rsps.get(f"{BASE}?page=2", json=page(["b"], includes=("p2",)))
    search = client.search("ServiceRequest").include("ServiceRequest:subject")
    assert [r["id"] for r in search] == ["a", "b"]
    entries = list(search.entries())
    assert [(e.resource["id"], e.mode) for e in entries] == [("a", "match"), ("p1", "include"), ("b", "match"), ("p2", "include")]
    assert entries[0] == SearchEntry(entries[0].resource, "match", f"{BASE}/ServiceRequest/a")


def test_pages_yields_each_bundle(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/ServiceRequest", json=page(["a"], f"{BASE}?page=2"))
    rsps.get(f"{BASE}?page=2", json=page(["b"]))
    bundles = list(client.search("ServiceRequest").pages())
    assert [b["entry"][0]["resource"]["id"] for b in bundles] == ["a", "b"]


def test_foreign_next_link_is_refused(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/ServiceRequest", json=page(["a"], "https://elsewhere.example.com/fhir?page=2"))
    found = iter(client.search("ServiceRequest"))
    assert next(found)["id"] == "a"
    with pytest.raises(UnsafeUrlError, match="elsewhere.example.com"):
        next(found)
    assert len(rsps.calls) == 1


def test_next_link_to_itself_stops(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/ServiceRequest?x=1", json=page(["a"], f"{BASE}/ServiceRequest?x=1"))
    with pytest.raises(ServerError, match="paging loop"):
        list(client.search("ServiceRequest", x=1))


def test_a_non_searchset_answer_is_a_server_error(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/ServiceRequest", json={"resourceType": "OperationOutcome", "issue": []})
    with pytest.raises(ServerError, match="expected a searchset Bundle, got OperationOutcome"):
        list(client.search("ServiceRequest"))


def test_first_and_count(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/ServiceRequest?status=active&_count=1", json=page(["a"], f"{BASE}?page=2"))
    rsps.get(
        f"{BASE}/ServiceRequest?status=active&_summary=count",
        json={"resourceType": "Bundle", "type": "searchset", "total": 42},
    )
    search = client.search("ServiceRequest", status="active")
    first = search.first()
    assert first is not None and first["id"] == "a"
    assert len(rsps.calls) == 1, "first() does not fetch a second page"
    assert search.count() == 42


def test_page_size_and_sort_replace_earlier_values(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/Patient", json=page(["a"]))
    search = client.search("Patient").page_size(500).sort("name").where(active=True)
    assert search.first() is not None
    assert query(rsps.calls[0]) == [("_sort", "name"), ("active", "true"), ("_count", "1")]


def test_first_of_nothing_is_none(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/Patient", json={"resourceType": "Bundle", "type": "searchset", "total": 0})
    assert client.search("Patient", identifier="x|404").first() is None


def test_bad_resource_type_is_refused_before_sending(client: FhirClient) -> None:
    with pytest.raises(InputError):
        client.search("../metadata")


def test_per_request_headers_go_with_every_page_and_the_count(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/ServiceRequest", json=page(["a"], f"{BASE}?_getpages=x&_getpagesoffset=1"))
    rsps.get(f"{BASE}?_getpages=x&_getpagesoffset=1", json=page(["b"]))
    plain = client.search("ServiceRequest")
    traced = plain.with_headers({"X-Request-Id": "r-1", "Prefer": "handling=strict"}).where(status="active")
    assert [r["id"] for r in traced] == ["a", "b"]
    for call in rsps.calls:
        assert call.request.headers["X-Request-Id"] == "r-1"
        assert call.request.headers["Prefer"] == "handling=strict"
    assert plain.headers == (), "with_headers returns a new search"
    assert dict(traced.with_headers({"x-request-id": "r-2"}).headers) == {"Prefer": "handling=strict", "x-request-id": "r-2"}
    rsps.reset()
    rsps.get(f"{BASE}/ServiceRequest?status=active&_summary=count", json={"resourceType": "Bundle", "type": "searchset", "total": 3})
    assert traced.count() == 3
    assert rsps.calls[-1].request.headers["X-Request-Id"] == "r-1"


def test_pages_alternating_between_two_urls_stop_with_a_clear_error(rsps: responses.RequestsMock, client: FhirClient) -> None:
    one, two = f"{BASE}?_getpages=x&o=1", f"{BASE}?_getpages=x&o=2"
    rsps.get(f"{BASE}/ServiceRequest", json=page(["a"], one))
    rsps.get(one, json=page(["b"], two))
    rsps.get(two, json=page(["c"], one))
    with pytest.raises(ServerError, match="paging loop"):
        list(client.search("ServiceRequest"))
    assert len(rsps.calls) == 3, "the repeated page is not fetched again"


def test_a_next_link_spelled_differently_but_the_same_page_is_a_loop(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/ServiceRequest", json=page(["a"], f"{BASE}/ServiceRequest?"))
    with pytest.raises(ServerError, match="paging loop"):
        list(client.search("ServiceRequest"))


def test_page_cap_ends_a_search(rsps: responses.RequestsMock, client: FhirClient) -> None:
    for n in range(5):
        rsps.get(f"{BASE}?p={n}", json=page([str(n)], f"{BASE}?p={n + 1}"))
    rsps.get(f"{BASE}/ServiceRequest", json=page(["s"], f"{BASE}?p=0"))
    search = client.search("ServiceRequest").page_limit(3)
    with pytest.raises(ServerError, match="limit of 3 pages"):
        list(search)
    assert len(rsps.calls) == 3
    assert search.where(x=1).max_pages == 3, "the limit survives refinement"


@pytest.mark.parametrize(
    "link",
    [
        "//elsewhere.example.com/r4/ServiceRequest?p=2",
        "https://fhir.example.org\\@elsewhere.example.com/r4/x",
        "https://elsewhere.example.com\\@fhir.example.org/r4/x",
        "https://user:pw@fhir.example.org/r4/x",
        "https://fhir.example.org@elsewhere.example.com/r4/x",
        "https://fhir.example.org/r4/x y",
        "javascript:alert(1)",
    ],
    ids=["scheme-relative", "backslash-host-last", "backslash-host-first", "userinfo", "userinfo-foreign", "space", "javascript"],
)
def test_hostile_next_links_are_refused_before_sending(rsps: responses.RequestsMock, client: FhirClient, link: str) -> None:
    rsps.get(f"{BASE}/ServiceRequest", json=page(["a"], link))
    found = iter(client.search("ServiceRequest"))
    assert next(found)["id"] == "a"
    with pytest.raises(UnsafeUrlError):
        next(found)
    assert len(rsps.calls) == 1, "nothing is sent for a refused link"
