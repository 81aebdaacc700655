"""Credentials for a FHIR server: none, HTTP basic, a bearer token, SMART Backend Services.

An auth object only produces headers; :class:`fhir_so.client.FhirClient` decides where they
go (only to the configured server's origin). Secrets live in private attributes, never in a
``repr``, a log line or an exception message. :func:`auth_from_env` is the one place that
reads credentials from an environment mapping (the CLI passes ``os.environ``)::

    Auth                    base: no credentials
    ├── BasicAuth           Authorization: Basic base64(user:password)
    ├── BearerToken         Authorization: Bearer <token>
    └── SmartBackendAuth    client-credentials grant with a signed JWT assertion (RS384/ES384),
                            token endpoint from .well-known/smart-configuration or given,
                            access token cached until shortly before it expires
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from fhir_so.errors import CapabilityError, InputError, ServerError, UnsafeUrlError

__all__ = [
    "Auth",
    "AuthHttp",
    "BasicAuth",
    "BearerToken",
    "SmartBackendAuth",
    "auth_from_env",
]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SMART_CONFIG_PATH = ".well-known/smart-configuration"


class AuthHttp(Protocol):
    """What an auth object may ask of the client: unauthenticated JSON requests."""

    @property
    def base_url(self) -> str: ...

    def get_json(self, url: str) -> dict[str, Any]: ...

    def post_form(self, url: str, form: Mapping[str, str]) -> dict[str, Any]: ...


class Auth:
    """No credentials. Subclasses add an Authorization header."""

    def headers(self, http: AuthHttp) -> dict[str, str]:
        """Headers to add to a request sent to the configured server."""
        return {}

    def reset(self) -> bool:
        """Forget cached credentials after a 401; True when a retry could succeed."""
        return False

    def secret_values(self) -> tuple[str, ...]:
        """Every secret string this object holds, so the client can scrub echoed text."""
        return ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BasicAuth(Auth):
    """HTTP basic authentication."""

    def __init__(self, username: str, password: str) -> None:
        if not username or not password:
            raise InputError("basic auth needs both a username and a password")
        if any(c in username or c in password for c in "\r\n\0") or ":" in username:
            raise InputError("the basic-auth username or password contains a line break, a NUL, or (username) a colon")
        self.username = username
        self._password = password
        raw = f"{username}:{password}".encode()
        self._header = "Basic " + base64.b64encode(raw).decode("ascii")

    def headers(self, http: AuthHttp) -> dict[str, str]:
        return {"Authorization": self._header}

    def secret_values(self) -> tuple[str, ...]:
        return (self._password, self._header.split(" ", 1)[1], f"{self.username}:{self._password}")

    def __repr__(self) -> str:
        return f"BasicAuth(username={self.username!r}, password=<hidden>)"


class BearerToken(Auth):
    """A bearer token obtained elsewhere (an OAuth access token, an API key)."""

    def __init__(self, token: str) -> None:
        if not isinstance(token, str) or not token or any(c in token for c in "\r\n"):
            raise InputError("the bearer token is empty or contains a line break")
        _check_header_text(token, "the bearer token")
        self._token = token

    def headers(self, http: AuthHttp) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def secret_values(self) -> tuple[str, ...]:
        return (self._token,)

    def __repr__(self) -> str:
        return "BearerToken(token=<hidden>)"


class SmartBackendAuth(Auth):
    """SMART Backend Services: an access token from the client-credentials grant.

    The client proves its identity with a JWT signed by its private key (RS384 for RSA keys,
    ES384 for EC P-384 keys), posted to the token endpoint as ``client_assertion``. The token
    endpoint is ``token_url`` when given, else read once from the server's
    ``.well-known/smart-configuration``. The access token is reused until ``refresh_margin``
    seconds before it expires (``clock`` is injectable for tests).
    """

    def __init__(
        self,
        client_id: str,
        private_key: str | bytes,
        *,
        token_url: str | None = None,
        scope: str = "system/*.read",
        key_id: str | None = None,
        algorithm: str | None = None,
        refresh_margin: float = 60.0,
        assertion_lifetime: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not client_id:
            raise InputError("SMART backend auth needs a client id")
        self.client_id = client_id
        self.scope = scope
        self.token_url = token_url
        self.refresh_margin = refresh_margin
        self.assertion_lifetime = assertion_lifetime
        self._clock = clock
        self._key = _load_private_key(private_key)
        self._key_material = _key_material(private_key)
        self._assertion: str | None = None
        self.algorithm = algorithm or ("RS384" if isinstance(self._key, rsa.RSAPrivateKey) else "ES384")
        if self.algorithm not in ("RS384", "ES384"):
            raise InputError(f"SMART backend auth signs with RS384 or ES384, not {self.algorithm}")
        self.key_id = key_id or _jwk_thumbprint(self._key, self.algorithm)
        self._token: str | None = None
        self._expires_at = 0.0

    def headers(self, http: AuthHttp) -> dict[str, str]:
        now = self._clock()
        if self._token is None or now >= self._expires_at:
            self._fetch_token(http, now)
        return {"Authorization": f"Bearer {self._token}"}

    def reset(self) -> bool:
        had_token = self._token is not None
        self._token = None
        self._expires_at = 0.0
        return had_token

    def secret_values(self) -> tuple[str, ...]:
        # The access token, the last signed assertion, and the private key's own text.
        live = tuple(v for v in (self._token, self._assertion) if v)
        return live + self._key_material

    def __repr__(self) -> str:
        return (
            f"SmartBackendAuth(client_id={self.client_id!r}, token_url={self.token_url!r}, "
            f"scope={self.scope!r}, algorithm={self.algorithm!r}, private_key=<hidden>)"
        )

    def _token_endpoint(self, http: AuthHttp) -> str:
        if self.token_url is None:
            config = http.get_json(f"{http.base_url}/{SMART_CONFIG_PATH}")
            endpoint = config.get("token_endpoint")
            if not isinstance(endpoint, str) or not endpoint:
                raise CapabilityError(f"{http.base_url}/{SMART_CONFIG_PATH} names no token_endpoint")
            self.token_url = endpoint
        _check_token_url(self.token_url, http.base_url)
        return self.token_url

    def _fetch_token(self, http: AuthHttp, now: float) -> None:
        url = self._token_endpoint(http)
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": url,
            "jti": uuid.uuid4().hex,
            "iat": int(now),
            "exp": int(now) + self.assertion_lifetime,
        }
        assertion = jwt.encode(
            claims, self._key, algorithm=self.algorithm, headers={"kid": self.key_id, "typ": "JWT"}
        )
        self._assertion = assertion
        answer = http.post_form(
            url,
            {
                "grant_type": "client_credentials",
                "scope": self.scope,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion,
            },
        )
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise ServerError(f"the token endpoint {_origin(url)} answered without an access_token")
        if any(not " " < c < "\x7f" for c in token):
            raise ServerError(f"the token endpoint {_origin(url)} answered with an access_token HTTP cannot carry")
        expires_in = answer.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, (int, float)) and expires_in > 0 else 300.0
        # Refresh a little early so a token never expires between our check and the server's.
        margin = min(self.refresh_margin, lifetime / 2)
        self._token = token
        self._expires_at = now + lifetime - margin


def _check_header_text(value: str, what: str) -> None:
    """A credential must be visible ASCII: requests sends headers as Latin-1, servers expect ASCII."""
    bad = next((c for c in value if not " " < c < "\x7f"), None)
    if bad is not None:
        raise InputError(
            f"{what} has a character an HTTP header cannot carry (U+{ord(bad):04X}); "
            "a token is printable ASCII without spaces"
        )


def _key_material(pem: str | bytes) -> tuple[str, ...]:
    """The base64 lines of a PEM key (and their concatenation): text no server may echo."""
    text = pem.decode("ascii", errors="ignore") if isinstance(pem, bytes) else pem
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("-----")]
    return tuple(line for line in [*lines, "".join(lines)] if len(line) >= 16)


def _load_private_key(pem: str | bytes) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        # The key's text must not reach the message: say only what is wrong with it.
        raise InputError("the SMART private key is not an unencrypted PEM private key") from None
    if isinstance(key, rsa.RSAPrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
        return key
    raise InputError("the SMART private key must be RSA (RS384) or EC P-384 (ES384)")


def _jwk_thumbprint(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, algorithm: str) -> str:
    """The RFC 7638 thumbprint of the public key: a stable default ``kid``."""
    algo = jwt.get_algorithm_by_name(algorithm)
    jwk = json.loads(algo.to_jwk(key.public_key()))
    members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _check_token_url(url: str, base_url: str) -> None:
    """A client assertion goes over TLS, or to the FHIR server's own origin."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    base = urlsplit(base_url)
    if (parts.scheme, parts.netloc.lower()) == (base.scheme, base.netloc.lower()):
        return
    raise UnsafeUrlError(
        f"refusing to send a client assertion to {_origin(url)}: the token endpoint must use https"
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def auth_from_env(environ: Mapping[str, str]) -> Auth | None:
    """Build credentials from an environment mapping; None when none are set.

    ``FHIR_SO_CLIENT_ID`` + ``FHIR_SO_PRIVATE_KEY`` (a PEM file; optional ``FHIR_SO_TOKEN_URL``,
    ``FHIR_SO_SCOPE``, ``FHIR_SO_KEY_ID``) → SMART Backend Services; ``FHIR_SO_TOKEN`` →
    bearer token; ``FHIR_SO_USERNAME`` + ``FHIR_SO_PASSWORD`` → basic. More than one kind,
    or half of a pair, is an :class:`InputError`.
    """

    def get(name: str) -> str | None:
        value = environ.get(name)
        return value if value else None

    smart = get("FHIR_SO_CLIENT_ID") or get("FHIR_SO_PRIVATE_KEY")
    bearer = get("FHIR_SO_TOKEN")
    basic = get("FHIR_SO_USERNAME") or get("FHIR_SO_PASSWORD")
    kinds = [
        name
        for name, present in (
            ("FHIR_SO_CLIENT_ID/FHIR_SO_PRIVATE_KEY", smart),
            ("FHIR_SO_TOKEN", bearer),
            ("FHIR_SO_USERNAME/FHIR_SO_PASSWORD", basic),
        )
        if present
    ]
    if len(kinds) > 1:
        raise InputError(f"credentials of more than one kind are set ({', '.join(kinds)}); set only one")
    if smart:
        client_id, key_file = get("FHIR_SO_CLIENT_ID"), get("FHIR_SO_PRIVATE_KEY")
        if not client_id or not key_file:
            raise InputError("SMART backend auth needs both FHIR_SO_CLIENT_ID and FHIR_SO_PRIVATE_KEY")
        try:
            pem = Path(key_file).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read the private key: {exc.strerror or exc}", source=key_file) from None
        try:
            return SmartBackendAuth(
                client_id,
                pem,
                token_url=get("FHIR_SO_TOKEN_URL"),
                scope=get("FHIR_SO_SCOPE") or "system/*.read",
                key_id=get("FHIR_SO_KEY_ID"),
            )
        except InputError as exc:
            raise InputError(exc.detail, source=key_file) from None
    if bearer:
        return BearerToken(bearer)
    if basic:
        username, password = get("FHIR_SO_USERNAME"), get("FHIR_SO_PASSWORD")
        if not username or not password:
            raise InputError("basic auth needs both FHIR_SO_USERNAME and FHIR_SO_PASSWORD")
        return BasicAuth(username, password)
    return None
