"""The one place that sends: :class:`Transport` owns the ``requests.Session``.

``Transport.send`` applies credentials (only when told the URL is on the server's origin),
the timeout, retries and logging, and turns every failure into an exception from
:mod:`fhir_so.errors`. :class:`AuthChannel` is what an auth object may use of it: plain JSON
requests without credentials (a SMART configuration, a token endpoint).

Redirects are not left to requests: a GET (or HEAD) follows at most :data:`MAX_REDIRECTS`
redirects, each one to the same origin as the URL asked for (another origin is an
:class:`UnsafeUrlError`); any other method is never redirected (a 307 or 308 would resend
the Bundle of patient data): its 3xx is an :class:`HttpError`.

Bodies are read as a stream and refused past :data:`MAX_BODY` bytes (a server cannot make
the client buffer without end); the read timeout applies to each read of the socket. A
caller that expects a large body (a Bulk Data file) passes a :class:`BodySink`: the 2xx body
is written into it chunk by chunk, under the sink's own limit, and restarted on a retry.

Secrets: whatever the configured credentials are (a token, a password, a SMART key and its
assertion), the server's echo of them is blanked in every body read (a 2xx body for secrets
of 8 characters or more, so short strings in clinical data are left alone; an error body for
any), and error messages are also cleared of ``Authorization``-looking text and cut short.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import orjson
import requests

from fhir_so.auth import Auth
from fhir_so.client.results import FhirResponse, excerpt
from fhir_so.client.retry import RETRY_ANY, RETRY_IDEMPOTENT, RetryPolicy, classify_failure
from fhir_so.client.urls import prepare, redact_url, same_origin_redirect, show_url
from fhir_so.errors import (
    AuthError,
    HttpError,
    NotFoundError,
    PreconditionFailed,
    ServerError,
    TransportError,
    UnsafeUrlError,
    outcome_lines,
)

__all__ = ["AuthChannel", "BodySink", "MAX_BODY", "MAX_REDIRECTS", "Transport"]

MAX_REDIRECTS = 5
# No FHIR answer fhir-so reads is near this; a server sending more is refused, not buffered.
MAX_BODY = 512 * 1024 * 1024
_DETAIL = 300
_REDIRECTS = frozenset(
    {
        HTTPStatus.MOVED_PERMANENTLY,
        HTTPStatus.FOUND,
        HTTPStatus.SEE_OTHER,
        HTTPStatus.TEMPORARY_REDIRECT,
        HTTPStatus.PERMANENT_REDIRECT,
    }
)
_FOLLOWABLE = frozenset({"GET", "HEAD"})
# Secrets shorter than this are blanked in error bodies only: in a 2xx body they could be
# ordinary words of clinical text.
_MIN_DATA_SECRET = 8
_AUTH_HEADER_RE = re.compile(
    r"(?i)\b((?:proxy-)?authorization)([\"']?\s*[:=]\s*[\"']?)(?:(?:bearer|basic|digest|negotiate|token)\s+)?[^\s\"',;}<]+"
)
_AUTH_SCHEME_RE = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]{6,}=*")
_SECRET_FIELD_RE = re.compile(
    r"(?i)([\"']?\b(?:access_token|refresh_token|id_token|client_secret|client_assertion|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;}<]+"
)

log = logging.getLogger("fhir_so.client")

_ERROR_FOR_STATUS: dict[int, type[HttpError]] = {
    HTTPStatus.UNAUTHORIZED: AuthError,
    HTTPStatus.FORBIDDEN: AuthError,
    HTTPStatus.NOT_FOUND: NotFoundError,
    HTTPStatus.GONE: NotFoundError,
    HTTPStatus.CONFLICT: PreconditionFailed,
    HTTPStatus.PRECONDITION_FAILED: PreconditionFailed,
}


class BodySink(Protocol):
    """Where a streamed 2xx body goes (a bulk export's NDJSON file) instead of memory.

    ``reset`` is called before each attempt, so a retried download starts the file again;
    ``write`` gets the body chunk by chunk and may raise to stop the download (too big, bad data).
    """

    def reset(self) -> None: ...

    def write(self, chunk: bytes) -> None: ...


def _no_auth(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """Passed as ``auth=`` so requests applies neither session auth nor ~/.netrc."""
    return request


class Transport:
    """A session with its settings: credentials, timeout, retries, TLS verification, default headers.

    A session passed in belongs to the caller and is not closed by :meth:`close`.
    """

    def __init__(
        self,
        *,
        base_url: str,
        auth: Auth | None,
        timeout: tuple[float, float],
        retries: RetryPolicy,
        verify: bool | str,
        session: requests.Session | None,
        headers: Mapping[str, str],
    ) -> None:
        self.base_url = base_url
        self.auth = auth
        self.timeout = timeout
        self.retries = retries
        self.verify = verify
        self.owns_session = session is None
        self.session = session or requests.Session()
        self.headers = dict(headers)
        self.auth_channel = AuthChannel(self)
        self.max_body = MAX_BODY

    def close(self) -> None:
        """Close the session's connections (only when this transport created the session)."""
        if self.owns_session:
            self.session.close()

    def send(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        *,
        idempotent: bool,
        authenticate: bool,
        sink: BodySink | None = None,
    ) -> FhirResponse:
        """Send one request with retries; the 2xx answer, or an exception from fhir_so.errors.

        ``url`` must come from :func:`fhir_so.client.urls.resolve` (prepared and checked).
        With ``sink``, a 2xx body is streamed into it (not held, not limited by :attr:`max_body`:
        the sink sets its own limit) and the answer's ``content`` is empty.
        """
        policy = self.retries
        attempt = 0
        redirects = 0
        reauthenticated = False
        while True:
            attempt += 1
            if authenticate and self.auth is not None:
                headers.update(self.auth.headers(self.auth_channel))
            started = time.perf_counter()
            try:
                response = self.session.request(
                    method,
                    url,
                    data=body,
                    headers=headers,
                    timeout=self.timeout,
                    verify=self.verify,
                    auth=_no_auth,
                    allow_redirects=False,
                    stream=True,
                )
                redirect = 300 <= response.status_code < 400 and response.status_code != HTTPStatus.NOT_MODIFIED
                # A redirect's body is never read; any other body is read here, where a
                # connection dropped mid-body is a transport failure like any other.
                if redirect:
                    content = b""
                elif sink is not None and 200 <= response.status_code < 300:
                    content = self._stream_body(response, sink)
                else:
                    content = self._read_body(method, url, response)
            except requests.RequestException as exc:
                kind, sent = classify_failure(exc)
                if (idempotent or not sent) and attempt < policy.attempts and kind != "TLS failed":
                    wait = policy.delay(attempt)
                    log.warning(
                        "%s %s: %s; retry %d of %d in %.1f s",
                        method, show_url(url), kind, attempt, policy.attempts - 1, wait,
                    )
                    policy.sleep(wait)
                    continue
                tries = f" after {attempt} attempts" if attempt > 1 else ""
                raise TransportError(f"{method} {show_url(url)}: {kind}{tries} ({type(exc).__name__})") from exc
            status = response.status_code
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "%s %s -> %d in %.1f ms",
                    method, show_url(url), status, (time.perf_counter() - started) * 1000,
                )
            if redirect:
                url = self._redirect(method, url, response, redirects)
                redirects += 1
                attempt -= 1
                response.close()
                continue
            if status < 400:
                content = self._scrub_body(content, _MIN_DATA_SECRET)
                return FhirResponse(method, redact_url(url), status, response.headers, content, self.scrub)
            if status in (RETRY_IDEMPOTENT if idempotent else RETRY_ANY) and attempt < policy.attempts:
                wait = policy.delay(attempt, response.headers.get("Retry-After"))
                log.warning(
                    "%s %s -> %d; retry %d of %d in %.1f s",
                    method, show_url(url), status, attempt, policy.attempts - 1, wait,
                )
                response.close()
                policy.sleep(wait)
                continue
            if (
                status == HTTPStatus.UNAUTHORIZED
                and authenticate
                and self.auth is not None
                and not reauthenticated
                and self.auth.reset()
            ):
                # A cached token the server no longer accepts: fetch a new one once.
                reauthenticated = True
                attempt -= 1
                continue
            raise self._http_error(method, url, response, content)

    def _redirect(self, method: str, url: str, response: requests.Response, redirects: int) -> str:
        """Where a redirect leads, when it may be followed; otherwise the error that ends the request."""
        status = response.status_code
        location = response.headers.get("Location")
        shown = f"{method} {show_url(url)}"
        if method not in _FOLLOWABLE:
            # A 307/308 would have the body sent again, possibly elsewhere; a 301-303 would turn
            # the write into a GET. Neither is what the caller asked for.
            raise HttpError(
                f"{shown}: the server answered {status} (a redirect); fhir-so does not follow "
                f"redirects of a {method}, so nothing was sent again",
                status=status,
                method=method,
                url=redact_url(url),
            )
        if not location:
            raise HttpError(f"{shown}: the server answered {status} without a Location", status=status, method=method, url=redact_url(url))
        if redirects >= MAX_REDIRECTS:
            raise HttpError(f"{shown}: more than {MAX_REDIRECTS} redirects", status=status, method=method, url=redact_url(url))
        try:
            return same_origin_redirect(url, location)
        except UnsafeUrlError as exc:
            raise UnsafeUrlError(f"{shown}: the server answered {status}: {self.scrub(str(exc))}") from None

    def _read_body(self, method: str, url: str, response: requests.Response) -> bytes:
        """The whole body, refused past :attr:`max_body` bytes (a hostile server cannot exhaust memory)."""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            response.close()
            raise ServerError(f"{method} {show_url(url)}: the answer is {int(declared)} bytes, over the limit of {self.max_body}")
        if response.raw is None:
            # An adapter that built its answer in memory (a test double, a cache): nothing to stream.
            data = response.content or b""
            if len(data) > self.max_body:
                raise ServerError(f"{method} {show_url(url)}: the answer is over the limit of {self.max_body} bytes")
            return data
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(1 << 16):
            size += len(chunk)
            if size > self.max_body:
                response.close()
                raise ServerError(f"{method} {show_url(url)}: the answer is over the limit of {self.max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _stream_body(response: requests.Response, sink: BodySink) -> bytes:
        """Stream the body into the sink (started afresh); a sink that refuses closes the connection."""
        sink.reset()
        try:
            for chunk in response.iter_content(1 << 16):
                sink.write(chunk)
        finally:
            response.close()
        return b""

    def data_scrubber(self) -> Callable[[bytes], bytes]:
        """Blanks the configured secrets (8 characters or more) in data read in pieces (a streamed file's lines)."""
        secrets = [s.encode("utf-8", errors="ignore") for s in self._secrets(_MIN_DATA_SECRET)]
        secrets = [s for s in secrets if s]

        def scrub(content: bytes) -> bytes:
            for secret in secrets:
                if secret in content:
                    content = content.replace(secret, b"***")
            return content

        return scrub

    def _http_error(self, method: str, url: str, response: requests.Response, content: bytes) -> HttpError:
        status = response.status_code
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = (response.reason or "")[:80]
        outcome = None
        detail = ""
        content = self._scrub_body(content[: 1 << 20], 1)
        try:
            data = orjson.loads(content) if content.strip() else None
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict) and data.get("resourceType") == "OperationOutcome":
            outcome = data
            detail = "; ".join(outcome_lines(outcome))
        elif isinstance(data, dict) and isinstance(data.get("error"), str):
            # An OAuth error answer from a token endpoint.
            detail = " ".join(str(data.get(k, "")) for k in ("error", "error_description")).strip()
        elif content.strip():
            detail = excerpt(content, self.scrub)
        detail = self.scrub(" ".join(detail.split()))
        if len(detail) > _DETAIL:
            detail = detail[: _DETAIL - 1] + "…"
        message = f"{method} {show_url(url)} failed: {status} {phrase}".rstrip()
        if detail:
            message += f": {detail}"
        message = self.scrub(message)
        error_class = _ERROR_FOR_STATUS.get(status, HttpError)
        return error_class(message, status=status, method=method, url=redact_url(url), outcome=outcome)

    def _secrets(self, shortest: int) -> list[str]:
        """Every configured secret in the forms a server may echo it (raw, JSON- or URL-escaped)."""
        if self.auth is None:
            return []
        found: set[str] = set()
        for secret in self.auth.secret_values():
            if secret and len(secret) >= shortest:
                found.update({secret, secret.replace("/", "\\/"), quote(secret, safe="")})
        # Longest first, so a secret that contains another is blanked whole.
        return sorted(found, key=len, reverse=True)

    def _scrub_body(self, content: bytes, shortest: int) -> bytes:
        for secret in self._secrets(shortest):
            raw = secret.encode("utf-8", errors="ignore")
            if raw and raw in content:
                content = content.replace(raw, b"***")
        return content

    def scrub(self, text: str) -> str:
        """Blank any configured secret, and anything that looks like credentials, in a text."""
        for secret in self._secrets(1):
            text = text.replace(secret, "***")
        text = _AUTH_HEADER_RE.sub(r"\1\2***", text)
        text = _SECRET_FIELD_RE.sub(r"\1***", text)
        return _AUTH_SCHEME_RE.sub(r"\1 ***", text)


class AuthChannel:
    """What an auth object may use (:class:`fhir_so.auth.AuthHttp`): JSON requests without credentials."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    def get_json(self, url: str) -> dict[str, Any]:
        headers = dict(self._transport.headers, Accept="application/json")
        url, _ = prepare(url)
        answer = self._transport.send("GET", url, None, headers, idempotent=True, authenticate=False)
        return answer.json() or {}

    def post_form(self, url: str, form: Mapping[str, str]) -> dict[str, Any]:
        headers = dict(self._transport.headers, Accept="application/json")
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        url, _ = prepare(url)
        # Asking for a token twice is harmless, so a token request is retried like a GET.
        answer = self._transport.send("POST", url, urlencode(form).encode(), headers, idempotent=True, authenticate=False)
        return answer.json() or {}
