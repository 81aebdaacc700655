"""pull in few round trips: the request search folds in the case's records and opinions
(``_revinclude``) where the server declares it, falls back to the separate paged searches
whenever that one answer might be incomplete, and ``pull_with_consents`` takes what the case
points to from the consent search's answer. The result is the same as the careful way's."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from tests.workflow.conftest import BASE, EXAMPLES, quick_policy
from tests.workflow.fake_fhir import FakeFhir, session_for

from fhir_so.case import Case, load_case
from fhir_so.client import FhirClient
from fhir_so.workflow.pull import privacy_consents, pull_bundle, pull_with_consents, revincludes_declared
from fhir_so.workflow.push import push


# the module (``fhir_so.workflow.pull`` the attribute is the function of that name)
pull_module = importlib.import_module("fhir_so.workflow.pull")


def _client(fake: FakeFhir) -> FhirClient:
    return FhirClient(BASE, session=session_for(fake), retries=quick_policy())


@pytest.fixture
def careful() -> Iterator[tuple[FakeFhir, FhirClient]]:
    fake = FakeFhir(BASE, page_size=2)
    with _client(fake) as client:
        yield fake, client


@pytest.fixture
def quick() -> Iterator[tuple[FakeFhir, FhirClient]]:
    fake = FakeFhir(BASE, page_size=2, revinclude=True)
    with _client(fake) as client:
        yield fake, client


def _searches(fake: FakeFhir) -> list[tuple[str, dict[str, list[str]]]]:
    """(resource type, query) of each search the fake answered (metadata left out)."""
    out = []
    for method, url in fake.requests:
        parts = urlsplit(url)
        rtype = parts.path.rsplit("/", 1)[-1]
        if method == "GET" and rtype != "metadata":
            out.append((rtype, parse_qs(parts.query)))
    return out


def _same_case(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same resources under the same fullUrls (the two fakes number ids the same way)."""
    return {e["fullUrl"]: e["resource"] for e in a["entry"]} == {e["fullUrl"]: e["resource"] for e in b["entry"]}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.case.json")), ids=lambda p: p.name.removesuffix(".case.json"))
def test_one_search_pulls_the_same_case_as_the_separate_searches(
    careful: tuple[FakeFhir, FhirClient], quick: tuple[FakeFhir, FhirClient], path: Path
) -> None:
    case = load_case(path)
    (slow_fake, slow), (fast_fake, fast) = careful, quick
    rid = push(slow, case).request_id
    assert push(fast, case).request_id == rid
    slow_fake.requests.clear()
    fast_fake.requests.clear()
    assert _same_case(pull_bundle(slow, request_id=rid), pull_bundle(fast, request_id=rid))
    kinds = [t for t, _ in _searches(fast_fake)]
    assert kinds[0] == "ServiceRequest" and not {"DocumentReference", "DiagnosticReport", "Task"} & set(kinds)
    first = _searches(fast_fake)[0][1]
    assert set(first["_revinclude"]) == {"DocumentReference:related", "DiagnosticReport:based-on", "Task:focus"}
    assert set(first["_include:iterate"]) == {"DocumentReference:author", "DiagnosticReport:performer", "Task:owner"}
    assert len(_searches(fast_fake)) < len(_searches(slow_fake))


def test_the_capability_decides(careful: tuple[FakeFhir, FhirClient], quick: tuple[FakeFhir, FhirClient]) -> None:
    assert revincludes_declared(quick[1]) and not revincludes_declared(careful[1])


def test_many_records_are_also_searched_the_careful_way(
    quick: tuple[FakeFhir, FhirClient], urology: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server cuts its includes short past its cap: at the trust limit the paged searches run too."""
    fake, client = quick
    rid = push(client, urology).request_id
    records = len(urology.records)
    pointing = records + (urology.opinion is not None)  # records and the opinion point to the request
    monkeypatch.setattr(pull_module, "REVINCLUDE_TRUST", pointing)
    fake.requests.clear()
    bundle = pull_bundle(client, request_id=rid)
    kinds = [t for t, _ in _searches(fake)]
    assert "DocumentReference" in kinds and "DiagnosticReport" in kinds
    assert sum(e["resource"]["resourceType"] == "DocumentReference" for e in bundle["entry"]) == records
    monkeypatch.setattr(pull_module, "REVINCLUDE_TRUST", pointing + 1)
    fake.requests.clear()
    pull_bundle(client, request_id=rid)
    assert "DocumentReference" not in [t for t, _ in _searches(fake)]


def test_a_warning_in_the_answer_means_the_careful_way(quick: tuple[FakeFhir, FhirClient], urology: Case) -> None:
    fake, client = quick
    rid = push(client, urology).request_id
    plain = fake.search_page

    def warned(rtype: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        page = plain(rtype, params)
        if any(k == "_revinclude" for k, _ in params):
            # what a server says when it cut the includes short: keep only the match
            page["entry"] = page["entry"][:1] + [{"resource": {"resourceType": "OperationOutcome", "issue": [
                {"severity": "warning", "code": "incomplete", "diagnostics": "includes truncated"}]}, "search": {"mode": "outcome"}}]
        return page

    fake.search_page = warned  # type: ignore[method-assign]
    bundle = pull_bundle(client, request_id=rid)
    assert sum(e["resource"]["resourceType"] == "DocumentReference" for e in bundle["entry"]) == len(urology.records)


def test_a_server_that_declares_but_refuses_the_form_gets_the_separate_searches(
    quick: tuple[FakeFhir, FhirClient], careful: tuple[FakeFhir, FhirClient], urology: Case
) -> None:
    fake, client = quick
    rid = push(client, urology).request_id
    push(careful[1], urology)
    fake.revinclude = False  # still declared (the capabilities are cached), now answered 400
    assert _same_case(pull_bundle(client, request_id=rid), pull_bundle(careful[1], request_id=rid))


def test_pull_with_consents_reads_the_consents_once(quick: tuple[FakeFhir, FhirClient], urology: Case) -> None:
    fake, client = quick
    rid = push(client, urology).request_id
    expected_bundle = pull_bundle(client, request_id=rid)
    request = expected_bundle["entry"][0]["resource"]
    expected_consents = privacy_consents(client, request)
    fake.requests.clear()
    bundle, consents = pull_with_consents(client, request_id=rid)
    assert _same_case(bundle, expected_bundle) and consents == expected_consents
    assert [t for t, _ in _searches(fake)] == ["ServiceRequest", "Consent"]  # no Consent?_id=... read
    assert sum(c["resourceType"] == "Consent" for c in consents) == 2


def test_pull_with_consents_still_reads_a_linked_consent_the_search_did_not_find(
    quick: tuple[FakeFhir, FhirClient], urology: Case
) -> None:
    """A Consent the request links but the patient search misses (another scope) is read by id."""
    fake, client = quick
    rid = push(client, urology).request_id
    for consent in fake.store["Consent"].values():
        consent["scope"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}]}
    fake.requests.clear()
    bundle, consents = pull_with_consents(client, request_id=rid)
    assert consents == []
    assert sum(e["resource"]["resourceType"] == "Consent" for e in bundle["entry"]) == 2
    assert [t for t, _ in _searches(fake)] == ["ServiceRequest", "Consent", "Consent"]
    assert "_id" in _searches(fake)[2][1]  # the linked ones, by id
