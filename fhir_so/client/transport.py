"""The one place that sends: :class:`Transport` owns the ``requests.Session``.

``Transport.send`` applies credentials (only when told the URL is on the server's origin),
the timeout, retries and logging, and turns every failure into an exception from
:mod:`fhir_so.errors`. :class:`AuthChannel` is what an auth object may use of it: plain JSON
requests without credentials (a SMART configuration, a token endpoint).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

import orjson
import requests

from fhir_so.auth import Auth
from fhir_so.client.results import FhirResponse, excerpt
from fhir_so.client.retry import RETRY_ANY, RETRY_IDEMPOTENT, RetryPolicy, classify_failure
from fhir_so.client.urls import redact_url
from fhir_so.errors import (
    AuthError,
    HttpError,
    NotFoundError,
    PreconditionFailed,
    TransportError,
    outcome_lines,
)

__all__ = ["AuthChannel", "Transport"]

log = logging.getLogger("fhir_so.client")

_ERROR_FOR_STATUS: dict[int, type[HttpError]] = {
    HTTPStatus.UNAUTHORIZED: AuthError,
    HTTPStatus.FORBIDDEN: AuthError,
    HTTPStatus.NOT_FOUND: NotFoundError,
    HTTPStatus.GONE: NotFoundError,
    HTTPStatus.CONFLICT: PreconditionFailed,
    HTTPStatus.PRECONDITION_FAILED: PreconditionFailed,
}


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
    ) -> FhirResponse:
        """Send one request with retries; the 2xx answer, or an exception from fhir_so.errors."""
        policy = self.retries
        attempt = 0
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
                )
            except requests.RequestException as exc:
                kind, sent = classify_failure(exc)
                if (idempotent or not sent) and attempt < policy.attempts and kind != "TLS failed":
                    wait = policy.delay(attempt)
                    log.warning(
                        "%s %s: %s; retry %d of %d in %.1f s",
                        method, redact_url(url), kind, attempt, policy.attempts - 1, wait,
                    )
                    policy.sleep(wait)
                    continue
                tries = f" after {attempt} attempts" if attempt > 1 else ""
                raise TransportError(
                    f"{method} {redact_url(url)}: {kind}{tries} ({type(exc).__name__})"
                ) from exc
            status = response.status_code
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "%s %s -> %d in %.1f ms",
                    method, redact_url(url), status, (time.perf_counter() - started) * 1000,
                )
            if status < 400:
                return FhirResponse(method, redact_url(url), status, response.headers, response.content, self.scrub)
            if status in (RETRY_IDEMPOTENT if idempotent else RETRY_ANY) and attempt < policy.attempts:
                wait = policy.delay(attempt, response.headers.get("Retry-After"))
                log.warning(
                    "%s %s -> %d; retry %d of %d in %.1f s",
                    method, redact_url(url), status, attempt, policy.attempts - 1, wait,
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
            raise self._http_error(method, url, response)

    def _http_error(self, method: str, url: str, response: requests.Response) -> HttpError:
        status = response.status_code
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = response.reason or ""
        outcome = None
        detail = ""
        content = response.content
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
        message = f"{method} {redact_url(url)} failed: {status} {phrase}".rstrip()
        if detail:
            message += f": {detail}"
        message = self.scrub(message)
        error_class = _ERROR_FOR_STATUS.get(status, HttpError)
        return error_class(message, status=status, method=method, url=redact_url(url), outcome=outcome)

    def scrub(self, text: str) -> str:
        """Blank any secret the server may have echoed back."""
        if self.auth is not None:
            for secret in self.auth.secret_values():
                if secret:
                    text = text.replace(secret, "***")
        return text


class AuthChannel:
    """What an auth object may use (:class:`fhir_so.auth.AuthHttp`): JSON requests without credentials."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    def get_json(self, url: str) -> dict[str, Any]:
        headers = dict(self._transport.headers, Accept="application/json")
        answer = self._transport.send("GET", url, None, headers, idempotent=True, authenticate=False)
        return answer.json() or {}

    def post_form(self, url: str, form: Mapping[str, str]) -> dict[str, Any]:
        headers = dict(self._transport.headers, Accept="application/json")
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        # Asking for a token twice is harmless, so a token request is retried like a GET.
        answer = self._transport.send("POST", url, urlencode(form).encode(), headers, idempotent=True, authenticate=False)
        return answer.json() or {}
