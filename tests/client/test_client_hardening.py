"""Against a hostile server (mocked): redirects, echoed secrets, odd credentials and headers."""

from __future__ import annotations

import pytest
import responses
from tests.client.client_helpers import BASE, outcome

from fhir_so.auth import BasicAuth, BearerToken, auth_from_env
from fhir_so.client import FhirClient, RetryPolicy
from fhir_so.errors import HttpError, InputError, ServerError, UnsafeUrlError

TOKEN = "tok-SECRET-0123456789/abc+def="
PATIENT = {"resourceType": "Patient", "id": "1"}
ELSEWHERE = "https://elsewhere.example.com/r4"


def _client(token: str = TOKEN) -> FhirClient:
    return FhirClient(BASE, auth=BearerToken(token), retries=RetryPolicy(attempts=1))


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_write_is_never_redirected(rsps: responses.RequestsMock, status: int) -> None:
    rsps.post(BASE, status=status, headers={"Location": f"{ELSEWHERE}/"})
    rsps.post(f"{ELSEWHERE}/", json={"resourceType": "Bundle", "type": "transaction-response"})
    with pytest.raises(HttpError, match="does not follow redirects of a POST") as info:
        _client().request("POST", "", json={"resourceType": "Bundle", "type": "transaction"})
    assert info.value.status == status
    assert [c.request.url for c in rsps.calls] == [BASE], "the Bundle went nowhere else"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_get_redirect_to_another_origin_is_an_error(rsps: responses.RequestsMock, status: int) -> None:
    rsps.get(f"{BASE}/Patient/1", status=status, headers={"Location": f"{ELSEWHERE}/Patient/1"})
    rsps.get(f"{ELSEWHERE}/Patient/1", json=PATIENT)
    with pytest.raises(UnsafeUrlError, match="leaves the origin"):
        _client().read("Patient", "1")
    assert len(rsps.calls) == 1, "the other origin's answer is never taken as the server's"


def test_a_same_origin_get_redirect_is_followed_with_credentials(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/Patient/1", status=302, headers={"Location": "/r4/Patient/1/_history/2"})
    rsps.get(f"{BASE}/Patient/1/_history/2", json=PATIENT)
    assert _client().read("Patient", "1") == PATIENT
    assert rsps.calls[1].request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_redirects_are_bounded(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/Patient/1", status=302, headers={"Location": f"{BASE}/Patient/1"})
    with pytest.raises(HttpError, match="more than 5 redirects"):
        _client().read("Patient", "1")
    assert len(rsps.calls) == 6


def test_a_redirect_through_a_backslash_is_refused(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/Patient/1", status=302, headers={"Location": "https://elsewhere.example.com\\@fhir.example.org/r4/Patient/1"})
    with pytest.raises(UnsafeUrlError):
        _client().read("Patient", "1")
    assert len(rsps.calls) == 1


@pytest.mark.parametrize(
    "body",
    [
        f"Authorization: Bearer {TOKEN}",
        f'{{"echo": "{TOKEN.replace("/", chr(92) + "/")}"}}x',
        "tok-SECRET-0123456789%2Fabc%2Bdef%3D",
        "<html><title>Authorization: Bearer leaked-token-xyz</title></html>",
        "access_token=other-secret-value&x=1",
    ],
    ids=["header-echo", "json-escaped", "url-quoted", "html", "form"],
)
def test_a_2xx_body_that_is_not_json_is_excerpted_without_secrets(rsps: responses.RequestsMock, body: str) -> None:
    rsps.get(f"{BASE}/Patient/1", body=body, status=200, content_type="text/plain")
    with pytest.raises(ServerError) as info:
        _client().read("Patient", "1")
    message = str(info.value)
    for leaked in ("SECRET", "0123456789", "leaked-token", "other-secret"):
        assert leaked not in message
    assert "***" in message


def test_an_echoed_token_is_blanked_in_2xx_data_too(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/Patient/1", json={**PATIENT, "text": {"status": "generated", "div": f"<div>{TOKEN}</div>"}})
    assert TOKEN not in str(_client().read("Patient", "1"))


def test_error_details_are_cut_short(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/Patient/1", status=400, json=outcome("x" * 50_000))
    with pytest.raises(HttpError) as info:
        _client().read("Patient", "1")
    assert len(str(info.value)) < 500


def test_an_error_outcome_carries_no_secret(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/Patient/1", status=403, json=outcome(f"you sent {TOKEN}"))
    with pytest.raises(HttpError) as info:
        _client().read("Patient", "1")
    assert TOKEN not in str(info.value.outcome) and TOKEN not in "".join(info.value.issues)


@pytest.mark.parametrize("token", ["tökén", "токен", "tok en", "tok\tx", "emoji-\U0001f600"])
def test_a_token_http_cannot_carry_is_a_clear_input_error(token: str) -> None:
    with pytest.raises(InputError, match="HTTP header cannot carry"):
        BearerToken(token)
    with pytest.raises(InputError, match="HTTP header cannot carry"):
        auth_from_env({"FHIR_SO_TOKEN": token})


def test_basic_auth_with_unicode_is_fine_but_line_breaks_are_not(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/Patient/1", json=PATIENT)
    FhirClient(BASE, auth=BasicAuth("jürgen", "pässwörd")).read("Patient", "1")
    with pytest.raises(InputError):
        BasicAuth("a", "b\r\nX-Evil: 1")


@pytest.mark.parametrize(
    "headers",
    [{"X-Trace": "a\r\nX-Evil: 1"}, {"X-Trace": "ünïcødé-€"}, {"Bad Name": "x"}],
    ids=["crlf", "not-latin-1", "name"],
)
def test_per_request_headers_are_checked(headers: dict[str, str]) -> None:
    with pytest.raises(InputError):
        _client().request("GET", "Patient/1", headers=headers)


@pytest.mark.parametrize(
    "url",
    ["https://fhir.example.org\\@evil/r4", "https://u@fhir.example.org/r4", "https://fhir.example.org/r 4", "//fhir.example.org/r4"],
)
def test_a_base_url_two_parsers_could_read_differently_is_refused(url: str) -> None:
    with pytest.raises(InputError):
        FhirClient(url)


def test_an_answer_over_the_body_limit_is_refused_not_buffered(rsps: responses.RequestsMock) -> None:
    client = _client()
    client._transport.max_body = 1000
    rsps.get(f"{BASE}/Patient/1", body=b"x" * 5000, headers={"Content-Length": "5000"})
    with pytest.raises(ServerError, match="over the limit of 1000"):
        client.read("Patient", "1")
    # An answer without Content-Length is cut off as it streams: tests/hostile, mode "huge".
