"""SMART Backend Services: the signed assertion, discovery, token caching and refresh."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fhir_so.auth import ASSERTION_TYPE, SmartBackendAuth
from fhir_so.client import FhirClient, RetryPolicy
from fhir_so.errors import AuthError, CapabilityError, HttpError, InputError, UnsafeUrlError
from tests.client.client_helpers import BASE, outcome

TOKEN_URL = "https://auth.example.org/oauth/token"
PATIENT = {"resourceType": "Patient", "id": "1"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def token_reply(token: str, expires_in: int = 300) -> dict[str, Any]:
    return {"access_token": token, "token_type": "bearer", "expires_in": expires_in, "scope": "system/*.read"}


def form(call: Any) -> dict[str, str]:
    body = call.request.body
    text = body.decode() if isinstance(body, bytes) else body
    return {k: v[0] for k, v in parse_qs(text).items()}


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_token_request_carries_a_signed_assertion(
    rsps: responses.RequestsMock, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, kind: str
) -> None:
    key = rsa_key if kind == "rsa" else ec_key
    clock = Clock()
    auth = SmartBackendAuth("so-app", pem(key), token_url=TOKEN_URL, scope="system/Patient.rs", clock=clock)
    rsps.post(TOKEN_URL, json=token_reply("at-1"))
    rsps.get(f"{BASE}/Patient/1", json=PATIENT)
    FhirClient(BASE, auth=auth).read("Patient", "1")

    token_call, read_call = rsps.calls
    sent = form(token_call)
    assert token_call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "Authorization" not in token_call.request.headers
    assert sent["grant_type"] == "client_credentials"
    assert sent["scope"] == "system/Patient.rs"
    assert sent["client_assertion_type"] == ASSERTION_TYPE
    algorithm = "RS384" if kind == "rsa" else "ES384"
    header = jwt.get_unverified_header(sent["client_assertion"])
    assert header["alg"] == algorithm and header["typ"] == "JWT" and header["kid"] == auth.key_id
    claims = jwt.decode(
        sent["client_assertion"], key.public_key(), algorithms=[algorithm], audience=TOKEN_URL,
        options={"verify_exp": False},
    )
    assert claims["iss"] == claims["sub"] == "so-app"
    assert claims["exp"] - int(clock.now) == 300 and claims["jti"]
    assert read_call.request.headers["Authorization"] == "Bearer at-1"


def test_token_endpoint_discovered_from_smart_configuration(
    rsps: responses.RequestsMock, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    rsps.get(f"{BASE}/.well-known/smart-configuration", json={"token_endpoint": TOKEN_URL})
    rsps.post(TOKEN_URL, json=token_reply("at-1"))
    rsps.get(f"{BASE}/Patient/1", json=PATIENT)
    auth = SmartBackendAuth("so-app", pem(ec_key))
    FhirClient(BASE, auth=auth).read("Patient", "1")
    assert auth.token_url == TOKEN_URL
    assert [c.request.url for c in rsps.calls] == [f"{BASE}/.well-known/smart-configuration", TOKEN_URL, f"{BASE}/Patient/1"]


def test_smart_configuration_without_token_endpoint(rsps: responses.RequestsMock, ec_key: ec.EllipticCurvePrivateKey) -> None:
    rsps.get(f"{BASE}/.well-known/smart-configuration", json={"capabilities": []})
    with pytest.raises(CapabilityError, match="no token_endpoint"):
        FhirClient(BASE, auth=SmartBackendAuth("so-app", pem(ec_key))).read("Patient", "1")


def test_plain_http_token_endpoint_elsewhere_is_refused(rsps: responses.RequestsMock, ec_key: ec.EllipticCurvePrivateKey) -> None:
    auth = SmartBackendAuth("so-app", pem(ec_key), token_url="http://auth.example.org/token")
    with pytest.raises(UnsafeUrlError, match="must use https"):
        FhirClient(BASE, auth=auth).read("Patient", "1")
    assert len(rsps.calls) == 0


def test_token_cached_then_refreshed_after_expiry(rsps: responses.RequestsMock, ec_key: ec.EllipticCurvePrivateKey) -> None:
    clock = Clock()
    auth = SmartBackendAuth("so-app", pem(ec_key), token_url=TOKEN_URL, clock=clock, refresh_margin=30)
    rsps.post(TOKEN_URL, json=token_reply("at-1", expires_in=300))
    rsps.post(TOKEN_URL, json=token_reply("at-2", expires_in=300))
    rsps.get(f"{BASE}/Patient/1", json=PATIENT)
    client = FhirClient(BASE, auth=auth)
    for _ in range(3):
        client.read("Patient", "1")
        clock.now += 60
    # 180 s in: still inside the 300 s lifetime minus the 30 s margin.
    client.read("Patient", "1")
    clock.now += 100  # 280 s: within the margin, so the token is renewed before it can expire
    client.read("Patient", "1")
    token_calls = [c for c in rsps.calls if c.request.url == TOKEN_URL]
    assert len(token_calls) == 2
    used = [c.request.headers["Authorization"] for c in rsps.calls if c.request.url != TOKEN_URL]
    assert used == ["Bearer at-1"] * 4 + ["Bearer at-2"]


def test_401_with_a_cached_token_fetches_a_new_one_once(
    rsps: responses.RequestsMock, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    auth = SmartBackendAuth("so-app", pem(ec_key), token_url=TOKEN_URL, clock=Clock())
    rsps.post(TOKEN_URL, json=token_reply("at-revoked"))
    rsps.post(TOKEN_URL, json=token_reply("at-fresh"))
    rsps.get(f"{BASE}/Patient/1", status=401, json=outcome("token revoked"))
    rsps.get(f"{BASE}/Patient/1", json=PATIENT)
    assert FhirClient(BASE, auth=auth).read("Patient", "1") == PATIENT
    used = [c.request.headers.get("Authorization") for c in rsps.calls if c.request.url != TOKEN_URL]
    assert used == ["Bearer at-revoked", "Bearer at-fresh"]


def test_rejected_client_is_an_auth_error_without_secrets(
    rsps: responses.RequestsMock, ec_key: ec.EllipticCurvePrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rsps.post(TOKEN_URL, status=401, json={"error": "invalid_client", "error_description": "unknown key id"})
    auth = SmartBackendAuth("so-app", pem(ec_key), token_url=TOKEN_URL)
    client = FhirClient(BASE, auth=auth, retries=RetryPolicy(attempts=1))
    with pytest.raises(AuthError) as info:
        client.read("Patient", "1")
    assert "invalid_client unknown key id" in str(info.value)
    assertion = form(rsps.calls[0])["client_assertion"]
    key_text = pem(ec_key).decode()
    for text in (str(info.value), repr(info.value), repr(auth), repr(client), caplog.text):
        assert assertion not in text
        assert key_text.splitlines()[1] not in text


def test_issued_token_is_scrubbed_from_echoing_errors(
    rsps: responses.RequestsMock, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    rsps.post(TOKEN_URL, json=token_reply("at-SECRET-777"))
    rsps.get(f"{BASE}/Patient/1", status=403, body="<html><title>forbidden for at-SECRET-777</title></html>")
    client = FhirClient(BASE, auth=SmartBackendAuth("so-app", pem(ec_key), token_url=TOKEN_URL))
    with pytest.raises(AuthError) as info:
        client.read("Patient", "1")
    assert "at-SECRET-777" not in str(info.value) and "forbidden for ***" in str(info.value)


def test_unsupported_keys_are_refused() -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(InputError, match="P-384"):
        SmartBackendAuth("so-app", pem(p256))
    with pytest.raises(InputError, match="not an unencrypted PEM"):
        SmartBackendAuth("so-app", b"not a key")


@pytest.mark.parametrize(
    "endpoint",
    ["https://auth.example.org\\@evil.example.com/token", "https://user@auth.example.org/token", "//auth.example.org/token"],
    ids=["backslash", "userinfo", "scheme-relative"],
)
def test_a_token_endpoint_two_parsers_could_read_differently_is_refused(
    rsps: responses.RequestsMock, rsa_key: rsa.RSAPrivateKey, endpoint: str
) -> None:
    rsps.get(f"{BASE}/.well-known/smart-configuration", json={"token_endpoint": endpoint})
    auth = SmartBackendAuth("so-app", pem(rsa_key))
    with pytest.raises(UnsafeUrlError):
        FhirClient(BASE, auth=auth, retries=RetryPolicy(attempts=1)).read("Patient", "1")
    assert [c.request.method for c in rsps.calls] == ["GET"], "no assertion was posted"


def test_the_private_key_and_assertion_are_scrubbed_from_echoes(rsps: responses.RequestsMock, rsa_key: rsa.RSAPrivateKey) -> None:
    key_text = pem(rsa_key).decode()
    line = key_text.splitlines()[3]
    auth = SmartBackendAuth("so-app", key_text, token_url=TOKEN_URL)
    rsps.post(TOKEN_URL, status=400, json={"error": "invalid_client", "error_description": f"bad key {line}"})
    with pytest.raises(HttpError) as info:
        FhirClient(BASE, auth=auth, retries=RetryPolicy(attempts=1)).read("Patient", "1")
    assert line not in str(info.value) and "bad key ***" in str(info.value)
    assertion = form(rsps.calls[0])["client_assertion"]
    assert assertion in auth.secret_values()
