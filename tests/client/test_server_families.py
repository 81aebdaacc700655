"""The client against the recorded habits of six FHIR server families (tests/client/families/).

Each folder holds one family's answers as fixture files (``request``, ``response``, what the
client must make of it in ``expect``, and the public page it follows in ``source``); its
README says where each comes from. Per family the same story runs through ``responses``:
push a case as a transaction (twice: created, then matched or updated), page through a
search by that family's next links, a conditional create that matches, an update that
loses a version race, an error, and a write answered without a body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from responses import matchers

from fhir_so.client import FhirClient, RetryPolicy
from fhir_so.errors import CapabilityError, HttpError, PreconditionFailed
from fhir_so.workflow.push import push

FAMILIES_DIR = Path(__file__).parent / "families"
FAMILIES = sorted(p.name for p in FAMILIES_DIR.iterdir() if p.is_dir() and (p / "README.md").exists())
PUSH_BUNDLE = json.loads((FAMILIES_DIR / "push-bundle.json").read_text())


def fixture(family: str, name: str) -> dict[str, Any] | None:
    path = FAMILIES_DIR / family / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def need(family: str, name: str) -> dict[str, Any]:
    found = fixture(family, name)
    assert found is not None, f"{family}: no {name}.json"
    return found


def having(*names: str) -> Any:
    """Parametrise over the families that have these fixtures (a README says why one has not)."""
    chosen = [f for f in FAMILIES if all((FAMILIES_DIR / f / f"{n}.json").exists() for n in names)]
    return pytest.mark.parametrize("family", chosen)


def base_url(family: str) -> str:
    """The family's base URL: where its transaction is posted."""
    for name in ("push-first", "parties-first"):
        found = fixture(family, name)
        if found is not None:
            return str(found["request"]["url"])
    raise AssertionError(f"{family}: no transaction fixture")


def answer(rsps: responses.RequestsMock, fx: dict[str, Any], *, strict_headers: bool = False) -> None:
    """Register one recorded answer for the request it answers."""
    request, reply = fx["request"], fx["response"]
    match = [matchers.header_matcher(request["headers"])] if strict_headers and request["headers"] else []
    body = reply["body"]
    rsps.add(
        request["method"],
        request["url"],
        status=reply["status"],
        headers={k: v for k, v in reply["headers"].items() if k.lower() != "content-type"},
        body=b"" if body is None else json.dumps(body).encode(),
        content_type=reply["headers"].get("Content-Type", "application/fhir+json"),
        match=match,
    )


def capabilities(rsps: responses.RequestsMock, family: str) -> None:
    found = fixture(family, "capabilities")
    if found is not None:
        answer(rsps, found)
        return
    rsps.get(
        f"{base_url(family)}/metadata",
        json={"resourceType": "CapabilityStatement", "status": "active", "fhirVersion": "4.0.1",
              "rest": [{"mode": "server", "interaction": [{"code": "transaction"}]}]},
    )


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def client(family: str) -> Iterator[FhirClient]:
    with FhirClient(base_url(family), retries=RetryPolicy(attempts=1)) as c:
        yield c


def entries(result: Any) -> list[list[Any]]:
    return [[e.resource_type, e.id, e.version, e.outcome] for e in result.entries]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_has_its_sources_written_down(family: str) -> None:
    readme = (FAMILIES_DIR / family / "README.md").read_text()
    for path in sorted((FAMILIES_DIR / family).glob("*.json")):
        fx = json.loads(path.read_text())
        assert fx["source"].strip(), f"{path.name} names no source"
        assert path.name in readme, f"{family}/README.md does not list {path.name}"
        assert {"request", "response", "expect"} <= set(fx), path.name


@pytest.mark.parametrize("family", FAMILIES)
def test_push_a_case_then_push_it_again(rsps: responses.RequestsMock, family: str, client: FhirClient) -> None:
    capabilities(rsps, family)
    refused = ((fixture(family, "capabilities") or {}).get("expect") or {}).get("refused")
    if refused:
        # The family declares it cannot do what the case's transaction asks: say so before sending.
        with pytest.raises(CapabilityError, match=refused):
            push(client, PUSH_BUNDLE)
        assert [c.request.method for c in rsps.calls] == ["GET"]
        return
    first = need(family, "push-first")
    answer(rsps, first)
    assert entries(push(client, PUSH_BUNDLE)) == first["expect"]
    again = need(family, "push-again")
    rsps.replace(responses.POST, base_url(family), status=again["response"]["status"], json=again["response"]["body"])
    assert entries(push(client, PUSH_BUNDLE)) == again["expect"]


@having("parties-first", "parties-again")
def test_conditional_creates_matched_in_a_transaction(rsps: responses.RequestsMock, family: str, client: FhirClient) -> None:
    """A family that answers a matched conditional create without a location: the client finds it."""
    first, again = need(family, "parties-first"), need(family, "parties-again")
    parties = {**PUSH_BUNDLE, "entry": PUSH_BUNDLE["entry"][:2]}
    capabilities(rsps, family)
    answer(rsps, first)
    assert entries(push(client, parties)) == first["expect"]
    rsps.replace(responses.POST, base_url(family), status=again["response"]["status"], json=again["response"]["body"])
    for name in ("locate-Patient", "locate-Practitioner"):
        answer(rsps, need(family, name), strict_headers=True)
    assert entries(push(client, parties)) == again["expect"]
    searches = [c.request for c in rsps.calls if c.request.method == "GET" and "identifier=" in (c.request.url or "")]
    assert len(searches) == 2 and all(r.headers["Cache-Control"] == "no-cache" for r in searches)


@having("search-1", "search-2")
def test_pull_pages_through_the_family_s_links(rsps: responses.RequestsMock, family: str, client: FhirClient) -> None:
    pages = []
    n = 1
    while (page := fixture(family, f"search-{n}")) is not None:
        pages.append(page)
        n += 1
    assert len(pages) >= 2, f"{family}: a search fixture needs two pages or more"
    for page in pages:
        answer(rsps, page)
    first_url = pages[0]["request"]["url"]
    subject = dict(p.split("=", 1) for p in first_url.split("?", 1)[1].split("&"))["subject"]
    found = [r["id"] for r in client.search("ServiceRequest", subject=subject).page_size(2)]
    assert found == [i for page in pages for i in page["expect"]]
    asked = [c.request.url for c in rsps.calls]
    assert len(asked) == len(pages)
    for call in rsps.calls:
        assert call.request.headers["Cache-Control"] == "no-cache"


@having("create-match")
def test_conditional_create_that_matches(rsps: responses.RequestsMock, family: str, client: FhirClient) -> None:
    fx = need(family, "create-match")
    answer(rsps, fx)
    patient = PUSH_BUNDLE["entry"][0]["resource"]
    result = client.create(patient, if_none_exist=PUSH_BUNDLE["entry"][0]["request"]["ifNoneExist"])
    sent = rsps.calls[0].request.headers["If-None-Exist"]
    assert sent == fx["request"]["headers"]["If-None-Exist"]
    expect = fx["expect"]
    assert (result.created, result.id, result.version_id) == (expect["created"], expect["id"], expect["version"])


@having("update-conflict")
def test_update_that_lost_a_version_race(rsps: responses.RequestsMock, family: str, client: FhirClient) -> None:
    fx = need(family, "update-conflict")
    answer(rsps, fx)
    rid = fx["request"]["url"].rsplit("/", 1)[1]
    with pytest.raises(PreconditionFailed) as info:
        client.update({"resourceType": "ServiceRequest", "id": rid, "status": "active", "intent": "order"}, if_match="0")
    error, expect = info.value, fx["expect"]
    assert rsps.calls[0].request.headers["If-Match"] == fx["request"]["headers"]["If-Match"]
    assert (error.status, error.version) == (expect["status"], expect["version"])
    assert expect["contains"] in str(error) and f"version {expect['version']}" in str(error)
    assert error.outcome == fx["response"]["body"]


@having("error")
def test_an_error_is_one_readable_line(rsps: responses.RequestsMock, family: str, client: FhirClient) -> None:
    fx = need(family, "error")
    answer(rsps, fx)
    with pytest.raises(HttpError) as info:
        client.create({"resourceType": "Patient", "gender": "sometimes"})
    message, expect = str(info.value), fx["expect"]
    assert info.value.status == expect["status"] and info.value.outcome == fx["response"]["body"]
    assert expect["contains"] in message
    assert "\n" not in message and len(message) < 500


@having("create-minimal")
def test_a_write_answered_without_a_body(rsps: responses.RequestsMock, family: str, client: FhirClient) -> None:
    fx = need(family, "create-minimal")
    answer(rsps, fx)
    written = client.create({"resourceType": "Practitioner"}, prefer="minimal")
    assert rsps.calls[0].request.headers["Prefer"] == "return=minimal"
    assert (written.created, written.resource, written.id, written.version_id) == (
        True, None, fx["expect"]["id"], fx["expect"]["version"],
    )


def test_every_family_is_here() -> None:
    assert FAMILIES == ["aidbox", "blaze", "firely", "hapi", "medplum", "microsoft"]
