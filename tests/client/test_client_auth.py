"""Auth modes, where credentials may go, and that secrets never show up in logs, errors or reprs."""

from __future__ import annotations

import base64
import logging
import secrets
from pathlib import Path

import pytest
import requests
import responses
from tests.client.client_helpers import BASE, outcome
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fhir_so.auth import BasicAuth, BearerToken, SmartBackendAuth, auth_from_env
from fhir_so.client import FhirClient, RetryPolicy
from fhir_so.errors import AuthError, InputError, UnsafeUrlError

# made per run, never written in the repo: the tests look for these values where they must not be
TOKEN = f"tok-SECRET-{secrets.token_hex(5)}"
PASSWORD = f"pw-SECRET-{secrets.token_hex(2)}"
PATIENT = {"resourceType": "Patient", "id": "1"}


def _client(auth: object) -> FhirClient:
    return FhirClient(BASE, auth=auth, retries=RetryPolicy(attempts=1))  # type: ignore[arg-type]


def test_no_auth_sends_no_authorization(rsps: responses.RequestsMock, client: FhirClient) -> None:
    rsps.get(f"{BASE}/Patient/1", json=PATIENT)
    client.read("Patient", "1")
    assert "Authorization" not in rsps.calls[0].request.headers


def test_bearer_token(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/Patient/1", json=PATIENT)
    _client(BearerToken(TOKEN)).read("Patient", "1")
    assert rsps.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_basic_auth(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/Patient/1", json=PATIENT)
    _client(BasicAuth("alice", PASSWORD)).read("Patient", "1")
    expected = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert rsps.calls[0].request.headers["Authorization"] == f"Basic {expected}"


@pytest.mark.parametrize(
    "auth", [BearerToken(TOKEN), BasicAuth("alice", PASSWORD)], ids=["bearer", "basic"]
)
def test_secrets_never_in_logs_errors_or_reprs(
    rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture, auth: BearerToken | BasicAuth
) -> None:
    caplog.set_level(logging.DEBUG)
    header = auth.headers(None)["Authorization"]  # type: ignore[arg-type]
    # A badly behaved server echoes the credentials in its error page.
    rsps.get(f"{BASE}/Patient/1", status=503, body=f"<html><title>Denied {header}</title></html>")
    rsps.get(f"{BASE}/Patient/2", status=401, json=outcome(f"bad credentials: {header}"))
    client = FhirClient(BASE, auth=auth, retries=RetryPolicy(attempts=2, sleep=lambda s: None))
    errors = []
    for id in ("1", "2"):
        with pytest.raises(Exception) as info:
            client.read("Patient", id)
        errors.append(info.value)
    assert isinstance(errors[1], AuthError)
    secret = header.split(" ", 1)[1]
    texts = [caplog.text, repr(auth), repr(client)] + [str(e) for e in errors] + [repr(e) for e in errors]
    for text in texts:
        assert secret not in text and PASSWORD not in text and TOKEN not in text
    assert "GET https://fhir.example.org/r4/Patient/1 -> 503" in caplog.text, "the log does say what happened"


@pytest.mark.parametrize(
    "url",
    ["https://evil.example.com/r4/Patient?page=2", "http://fhir.example.org/r4/Patient", "https://fhir.example.org:8443/r4/x"],
    ids=["other-host", "other-scheme", "other-port"],
)
def test_foreign_urls_are_refused(rsps: responses.RequestsMock, url: str) -> None:
    with pytest.raises(UnsafeUrlError) as info:
        _client(BearerToken(TOKEN)).request("GET", url)
    assert "outside the server's origin" in str(info.value)
    assert len(rsps.calls) == 0


def test_other_schemes_are_refused_even_when_foreign_is_allowed(rsps: responses.RequestsMock) -> None:
    for url in ("file:///etc/passwd", "ftp://fhir.example.org/r4/x"):
        with pytest.raises(UnsafeUrlError, match="only http and https"):
            _client(BearerToken(TOKEN)).request("GET", url, allow_foreign=True)


def test_relative_path_with_a_url_in_its_query_stays_relative(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/ValueSet?url=http%3A%2F%2Floinc.org%2Fvs", json={"resourceType": "Bundle", "type": "searchset"})
    _client(BearerToken(TOKEN)).request("GET", "ValueSet?url=http%3A%2F%2Floinc.org%2Fvs")
    _client(BearerToken(TOKEN)).request("GET", "ValueSet?url=http://loinc.org/vs")
    assert all(c.request.headers["Authorization"] == f"Bearer {TOKEN}" for c in rsps.calls)


def test_foreign_url_allowed_goes_without_credentials(rsps: responses.RequestsMock) -> None:
    rsps.get("https://files.example.net/scan.pdf", body=b"%PDF-1.7", content_type="application/pdf")
    rsps.get("https://fhir.example.org:443/r4/Binary/1", body=b"%PDF-1.7", content_type="application/pdf")
    client = _client(BearerToken(TOKEN))
    answer = client.request("GET", "https://files.example.net/scan.pdf", allow_foreign=True, headers={"Accept": "*/*"})
    assert answer.content == b"%PDF-1.7"
    assert "Authorization" not in rsps.calls[0].request.headers
    # The same origin written with its default port still gets credentials.
    client.request("GET", "https://fhir.example.org:443/r4/Binary/1")
    assert rsps.calls[1].request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_session_auth_is_not_applied_to_foreign_urls(rsps: responses.RequestsMock) -> None:
    session = requests.Session()
    session.auth = ("leaky", "session-secret")
    rsps.get("https://files.example.net/a", body=b"x")
    FhirClient(BASE, session=session).request("GET", "https://files.example.net/a", allow_foreign=True)
    assert "Authorization" not in rsps.calls[0].request.headers


# -- auth_from_env ------------------------------------------------------------------------


def test_auth_from_env_kinds(tmp_path: Path) -> None:
    assert auth_from_env({}) is None
    assert isinstance(auth_from_env({"FHIR_SO_TOKEN": TOKEN}), BearerToken)
    basic = auth_from_env({"FHIR_SO_USERNAME": "alice", "FHIR_SO_PASSWORD": PASSWORD})
    assert isinstance(basic, BasicAuth) and basic.username == "alice"
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(_pem(ec.generate_private_key(ec.SECP384R1())))
    smart = auth_from_env(
        {"FHIR_SO_CLIENT_ID": "so-app", "FHIR_SO_PRIVATE_KEY": str(key_file), "FHIR_SO_TOKEN_URL": "https://auth.x/token"}
    )
    assert isinstance(smart, SmartBackendAuth)
    assert (smart.client_id, smart.algorithm, smart.token_url) == ("so-app", "ES384", "https://auth.x/token")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"FHIR_SO_TOKEN": TOKEN, "FHIR_SO_USERNAME": "a", "FHIR_SO_PASSWORD": PASSWORD}, "more than one kind"),
        ({"FHIR_SO_USERNAME": "alice"}, "needs both FHIR_SO_USERNAME and FHIR_SO_PASSWORD"),
        ({"FHIR_SO_CLIENT_ID": "so-app"}, "needs both FHIR_SO_CLIENT_ID and FHIR_SO_PRIVATE_KEY"),
        ({"FHIR_SO_CLIENT_ID": "so-app", "FHIR_SO_PRIVATE_KEY": "/nonexistent/key.pem"}, "/nonexistent/key.pem"),
    ],
    ids=["two-kinds", "half-basic", "half-smart", "missing-key-file"],
)
def test_auth_from_env_errors(environ: dict[str, str], message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        auth_from_env(environ)
    assert info.value.exit_code == 2
    assert TOKEN not in str(info.value) and PASSWORD not in str(info.value)


def test_unusable_private_key_does_not_echo_it(tmp_path: Path) -> None:
    key_file = tmp_path / "key.pem"
    key_file.write_text("-----BEGIN PRIVATE KEY-----\nSECRETKEYMATERIAL\n-----END PRIVATE KEY-----\n")
    with pytest.raises(InputError) as info:
        auth_from_env({"FHIR_SO_CLIENT_ID": "so-app", "FHIR_SO_PRIVATE_KEY": str(key_file)})
    assert str(key_file) in str(info.value) and "SECRETKEYMATERIAL" not in str(info.value)


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
