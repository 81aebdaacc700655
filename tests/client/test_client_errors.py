"""Every failure becomes an exception from fhir_so.errors, with a readable message and no bare requests error."""

from __future__ import annotations

import pytest
import requests
import responses
import urllib3.exceptions
from tests.client.client_helpers import BASE, outcome

from fhir_so.client import FhirClient, RetryPolicy
from fhir_so.errors import AuthError, HttpError, ServerError, TransportError

HTML_500 = b"""<!DOCTYPE html><html><head><title>502 Bad Gateway - nginx</title></head>
<body><h1>Bad Gateway</h1><pre>Traceback (most recent call last): ...</pre></body></html>"""


@pytest.fixture
def once() -> FhirClient:
    return FhirClient(BASE, retries=RetryPolicy(attempts=1))


def test_operation_outcome_is_parsed_and_readable(rsps: responses.RequestsMock, once: FhirClient) -> None:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "error", "code": "required", "expression": ["Patient.name"], "diagnostics": "name is required"},
            {"severity": "warning", "code": "invalid", "details": {"text": "gender code unknown"}},
        ],
    }
    rsps.post(f"{BASE}/Patient", status=422, json=body)
    with pytest.raises(HttpError) as info:
        once.create({"resourceType": "Patient"})
    error = info.value
    assert (error.status, error.method, error.url) == (422, "POST", f"{BASE}/Patient")
    assert error.outcome == body
    assert error.issues == ["error: Patient.name: name is required", "warning: gender code unknown"]
    assert str(error) == (
        f"POST {BASE}/Patient failed: 422 Unprocessable Content: "
        "error: Patient.name: name is required; warning: gender code unknown"
    ) or str(error) == (
        f"POST {BASE}/Patient failed: 422 Unprocessable Entity: "
        "error: Patient.name: name is required; warning: gender code unknown"
    )
    assert error.exit_code == 3


def test_html_error_page_gives_title_not_markup(rsps: responses.RequestsMock, once: FhirClient) -> None:
    rsps.get(f"{BASE}/Patient/1", status=502, body=HTML_500, content_type="text/html")
    with pytest.raises(HttpError) as info:
        once.read("Patient", "1")
    message = str(info.value)
    assert "HTML page: 502 Bad Gateway - nginx" in message
    assert "<" not in message and "Traceback" not in message
    assert info.value.outcome is None


def test_malformed_json_error_body_is_excerpted(rsps: responses.RequestsMock, once: FhirClient) -> None:
    rsps.get(f"{BASE}/Patient/1", status=500, body=b'{"resourceType": "OperationOutcome", "issue": [' + b"x" * 5000)
    with pytest.raises(HttpError) as info:
        once.read("Patient", "1")
    message = str(info.value)
    assert message.startswith(f"GET {BASE}/Patient/1 failed: 500 Internal Server Error: {{\"resourceType\"")
    assert len(message) < 400


def test_2xx_with_unparsable_body_is_server_error(rsps: responses.RequestsMock, once: FhirClient) -> None:
    rsps.get(f"{BASE}/Patient/1", status=200, body=b"<html><title>Login</title></html>", content_type="text/html")
    with pytest.raises(ServerError) as info:
        once.read("Patient", "1")
    assert not isinstance(info.value, HttpError)
    assert "not JSON" in str(info.value) and "Login" in str(info.value)


def test_2xx_with_json_that_is_not_a_resource(rsps: responses.RequestsMock, once: FhirClient) -> None:
    rsps.get(f"{BASE}/Patient/1", json=[1, 2])
    with pytest.raises(ServerError, match="not an object"):
        once.read("Patient", "1")


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(401, AuthError), (403, AuthError), (400, HttpError), (418, HttpError)],
    ids=["401", "403", "400", "418"],
)
def test_status_classes(rsps: responses.RequestsMock, once: FhirClient, status: int, error_class: type) -> None:
    rsps.get(f"{BASE}/Patient/1", status=status, json=outcome("nope"))
    with pytest.raises(error_class) as info:
        once.read("Patient", "1")
    assert info.value.status == status and type(info.value) is error_class


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (requests.exceptions.ConnectionError("Connection aborted. RemoteDisconnected"), "connection failed or dropped"),
        (requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"), "dropped while reading"),
        (requests.exceptions.ReadTimeout("read timed out"), "timed out waiting"),
        (requests.exceptions.ConnectTimeout("connect timed out"), "connection timed out"),
        (requests.exceptions.SSLError("certificate verify failed"), "TLS failed"),
        (
            requests.exceptions.ConnectionError(
                urllib3.exceptions.MaxRetryError(
                    None,  # type: ignore[arg-type]
                    "/",
                    urllib3.exceptions.NewConnectionError(None, "Connection refused"),  # type: ignore[arg-type]
                )
            ),
            "could not connect",
        ),
    ],
    ids=["dropped", "chunked", "read-timeout", "connect-timeout", "tls", "refused"],
)
def test_transport_failures_become_transport_error(
    rsps: responses.RequestsMock, once: FhirClient, raised: Exception, expected: str
) -> None:
    rsps.get(f"{BASE}/Patient/1", body=raised)
    with pytest.raises(TransportError) as info:
        once.read("Patient", "1")
    assert expected in str(info.value)
    assert str(info.value).startswith(f"GET {BASE}/Patient/1: ")
    assert info.value.__cause__ is raised
    assert info.value.exit_code == 3


def test_credentials_in_query_are_redacted(rsps: responses.RequestsMock, once: FhirClient) -> None:
    rsps.get(f"{BASE}/Binary/1", status=500)
    with pytest.raises(HttpError) as info:
        once.request("GET", f"{BASE}/Binary/1?access_token=s3cr3t-value&x=1")
    assert "s3cr3t-value" not in str(info.value) and "s3cr3t-value" not in info.value.url
    assert "access_token=%2A%2A%2A" in info.value.url
