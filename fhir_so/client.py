"""FhirClient: one ``requests.Session`` talking FHIR R4 JSON to one server.

Everything goes through one private method, ``FhirClient._send``, which adds the default
headers and timeout, applies credentials (only for the configured server's origin), retries
what is safe to retry, logs method, URL, status and elapsed time (never headers), and turns
every failure into an exception from :mod:`fhir_so.errors`::

    ServerError                  the body of a 2xx answer is not JSON, paging loops, ...
    ├── TransportError           connection refused or dropped, timeout, TLS (after retries)
    ├── CapabilityError          not FHIR 4.0.x, no transaction (nor batch) support
    ├── UnsafeUrlError           a URL outside the server's origin (credentials would leak)
    └── HttpError                any other non-2xx answer, with status, method, url, outcome
        ├── AuthError            401, 403
        ├── NotFoundError        404, 410
        └── PreconditionFailed   409, 412 (an If-Match conflict)
    InputError                   a resource type, id or base URL that cannot be used (exit 2)

No bare ``requests`` exception escapes; the original is chained (``raise ... from exc``).

What is retried, and why (see :class:`RetryPolicy`):

* An *idempotent* request (GET, HEAD, PUT, DELETE, a POST search, a conditional create with
  ``If-None-Exist``, and a transaction whose every entry is GET/HEAD/PUT/DELETE or a POST with
  ``ifNoneExist``) is retried after a connection error, a timeout, a dropped response, and
  statuses 429, 500, 502, 503 and 504: sending it twice leaves the server as sending it once.
* Any other request (a plain create, a transaction with a plain POST, an operation) is retried
  only when the server cannot have acted on it: the connection was never made, or it answered
  429 Too Many Requests. A 500 or a timeout after sending is not retried: it may have run.
* Waits grow exponentially with jitter; a ``Retry-After`` header (seconds or an HTTP date) is
  honoured, capped by ``RetryPolicy.max_retry_after``.

Credentials go only to the base URL's origin (scheme, host, port). A URL elsewhere (a paging
``next`` link, an attachment) is refused with :class:`UnsafeUrlError`, unless the caller allows
it with ``request(..., allow_foreign=True)``, which sends it without credentials. Redirects are
followed by ``requests``, which drops the Authorization header when the host changes.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, NamedTuple, Self, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import requests
import urllib3.exceptions

from fhir_so import __version__
from fhir_so.auth import Auth
from fhir_so.errors import (
    AuthError,
    CapabilityError,
    HttpError,
    InputError,
    NotFoundError,
    PreconditionFailed,
    ServerError,
    TransportError,
    UnsafeUrlError,
    outcome_lines,
)
from fhir_so.references import iter_references, rewrite_references

__all__ = [
    "FHIR_JSON",
    "FhirClient",
    "FhirResponse",
    "RetryPolicy",
    "Search",
    "SearchEntry",
    "WriteResult",
    "parse_location",
]

log = logging.getLogger("fhir_so.client")

FHIR_JSON = "application/fhir+json"
FHIR_JSON_BODY = "application/fhir+json; fhirVersion=4.0"

ParamValue: TypeAlias = str | int | float | bool | Sequence[str | int | float | bool]
Params: TypeAlias = Mapping[str, ParamValue] | Sequence[tuple[str, str]]

_TYPE_RE = re.compile(r"[A-Z][A-Za-z]{1,63}")
_ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_ABSOLUTE_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")
_OP_RE = re.compile(r"\$?[A-Za-z][A-Za-z0-9\-_]{0,63}")
_SECRET_PARAMS = frozenset({"access_token", "token", "password", "client_secret", "client_assertion", "code", "key", "api_key", "apikey"})
_EXCERPT = 200

_ERROR_FOR_STATUS: dict[int, type[HttpError]] = {
    HTTPStatus.UNAUTHORIZED: AuthError,
    HTTPStatus.FORBIDDEN: AuthError,
    HTTPStatus.NOT_FOUND: NotFoundError,
    HTTPStatus.GONE: NotFoundError,
    HTTPStatus.CONFLICT: PreconditionFailed,
    HTTPStatus.PRECONDITION_FAILED: PreconditionFailed,
}
_RETRY_IDEMPOTENT = frozenset(
    {
        HTTPStatus.TOO_MANY_REQUESTS,
        HTTPStatus.INTERNAL_SERVER_ERROR,
        HTTPStatus.BAD_GATEWAY,
        HTTPStatus.SERVICE_UNAVAILABLE,
        HTTPStatus.GATEWAY_TIMEOUT,
    }
)
# The server refused before doing anything: safe whatever the method.
_RETRY_ANY = frozenset({HTTPStatus.TOO_MANY_REQUESTS})
# What a server answers to a POST of a Bundle it cannot process at all.
_NO_SUCH_INTERACTION = frozenset({HTTPStatus.NOT_FOUND, HTTPStatus.METHOD_NOT_ALLOWED, HTTPStatus.NOT_IMPLEMENTED})
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


def _no_auth(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """Passed as ``auth=`` so requests applies neither session auth nor ~/.netrc."""
    return request


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry (see the module docstring for *what* is retried).

    ``attempts`` counts every try, the first included (1 = never retry). The wait before
    retry *n* is ``backoff * 2**(n-1)``, capped at ``max_backoff``, of which a random half
    is jitter; a Retry-After header replaces it, capped at ``max_retry_after``. ``sleep``,
    ``random`` and ``clock`` are injectable for tests.
    """

    attempts: int = 4
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 120.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    def delay(self, retry: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        if retry_after:
            seconds = self._parse_retry_after(retry_after)
            if seconds is not None:
                return min(max(seconds, 0.0), self.max_retry_after)
        ceiling = min(self.max_backoff, self.backoff * 2 ** (retry - 1))
        return ceiling / 2 + self.random() * ceiling / 2

    def _parse_retry_after(self, value: str) -> float | None:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return when.timestamp() - self.clock()


@dataclass(frozen=True)
class FhirResponse:
    """A successful answer. ``url`` has no credentials; ``json()`` parses the body once asked."""

    method: str
    url: str
    status: int
    headers: Mapping[str, str]
    content: bytes

    def json(self) -> dict[str, Any] | None:
        """The body as a JSON object, None when empty; ServerError when it is not JSON."""
        if not self.content or self.content.isspace():
            return None
        try:
            data = orjson.loads(self.content)
        except orjson.JSONDecodeError:
            raise ServerError(
                f"{self.method} {self.url}: the server answered {self.status} with a body that is "
                f"not JSON: {_excerpt(self.content)}"
            ) from None
        if not isinstance(data, dict):
            raise ServerError(
                f"{self.method} {self.url}: the server answered {self.status} with JSON that is "
                f"not an object: {_excerpt(self.content)}"
            )
        return data

    def resource(self) -> dict[str, Any]:
        """The body as a FHIR resource (a JSON object with a resourceType)."""
        data = self.json()
        if data is None or not isinstance(data.get("resourceType"), str):
            raise ServerError(
                f"{self.method} {self.url}: expected a FHIR resource, got: {_excerpt(self.content) or '(empty)'}"
            )
        return data


@dataclass(frozen=True)
class WriteResult:
    """The outcome of create or update: status, where the resource now lives, and its body."""

    status: int
    location: str | None
    etag: str | None
    resource: dict[str, Any] | None

    @property
    def created(self) -> bool:
        """True when the server made a new resource (201); False when a condition matched."""
        return self.status == HTTPStatus.CREATED

    @property
    def id(self) -> str | None:
        """The resource's logical id, from the body or the Location header."""
        if self.resource and isinstance(self.resource.get("id"), str):
            return str(self.resource["id"])
        return parse_location(self.location)[1]

    @property
    def version_id(self) -> str | None:
        """The version id, from the ETag, the body's meta or the Location header."""
        if self.etag:
            return _etag_version(self.etag)
        meta = (self.resource or {}).get("meta") or {}
        if isinstance(meta.get("versionId"), str):
            return str(meta["versionId"])
        return parse_location(self.location)[2]


class SearchEntry(NamedTuple):
    """One entry of a search result page, with ``mode`` ``match``, ``include`` or ``outcome``."""

    resource: dict[str, Any]
    mode: str
    full_url: str | None


class FhirClient:
    """A client for one FHIR R4 server. Owns one ``requests.Session``; use it as a context manager.

    ``timeout`` is ``(connect, read)`` seconds, applied to every request. ``session`` is a seam
    for tests and special transports (a session passed in is not closed by :meth:`close`).
    Not safe to share between threads: the capability cache and auth token are per object.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: Auth | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        retries: RetryPolicy | None = None,
        verify: bool | str = True,
        session: requests.Session | None = None,
        user_agent: str | None = None,
    ) -> None:
        self.base_url = _check_base_url(base_url)
        self.auth = auth
        self.timeout = timeout
        self.retries = retries or RetryPolicy()
        self.verify = verify
        self._owns_session = session is None
        self._session = session or requests.Session()
        self._origin = _origin_of(self.base_url)
        agent = f"fhir-so/{__version__}"
        self.user_agent = f"{agent} {user_agent}" if user_agent else agent
        self._headers = {"Accept": FHIR_JSON, "User-Agent": self.user_agent}
        self._capabilities: dict[str, Any] | None = None
        self._auth_http = _AuthChannel(self)

    def __repr__(self) -> str:
        return f"FhirClient({self.base_url!r}, auth={self.auth!r}, timeout={self.timeout!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the session's connections (only when this client created the session)."""
        if self._owns_session:
            self._session.close()

    # -- capabilities -------------------------------------------------------------------

    def capabilities(self) -> dict[str, Any]:
        """The server's CapabilityStatement (GET /metadata once; cached on this client)."""
        if self._capabilities is None:
            answer = self.request("GET", "metadata").resource()
            if answer.get("resourceType") != "CapabilityStatement":
                raise ServerError(
                    f"GET {self.base_url}/metadata: expected a CapabilityStatement, got {answer['resourceType']}"
                )
            self._capabilities = answer
        return self._capabilities

    def supports(self, interaction: str) -> bool:
        """Whether the server declares a system-level interaction (``transaction``, ``batch``, ...)."""
        for rest in self.capabilities().get("rest") or []:
            if rest.get("mode", "server") != "server":
                continue
            if any(i.get("code") == interaction for i in rest.get("interaction") or []):
                return True
        return False

    def require(self, *interactions: str) -> None:
        """Raise CapabilityError unless the server speaks FHIR 4.0.x and declares each interaction."""
        version = str(self.capabilities().get("fhirVersion", ""))
        if not version.startswith("4.0."):
            raise CapabilityError(
                f"{self.base_url} speaks FHIR {version or '(no fhirVersion)'}; fhir-so needs R4 (4.0.x)"
            )
        for interaction in interactions:
            if not self.supports(interaction):
                raise CapabilityError(f"{self.base_url} does not declare support for '{interaction}'")

    # -- REST interactions --------------------------------------------------------------

    def read(self, resource_type: str, id: str) -> dict[str, Any]:
        """GET [type]/[id]."""
        return self.request("GET", _path(resource_type, id)).resource()

    def vread(self, resource_type: str, id: str, version_id: str) -> dict[str, Any]:
        """GET [type]/[id]/_history/[vid]."""
        return self.request("GET", _path(resource_type, id, "_history", _check_id(version_id))).resource()

    def search(self, resource_type: str, params: Params | None = None, /, **kwargs: ParamValue) -> Search:
        """A lazy, immutable search: ``client.search("Patient", identifier="sys|1")``.

        Nothing is sent until it is iterated. Parameter names that are not Python identifiers
        (``general-practitioner``, ``code:text``) go in the ``params`` mapping.
        """
        _check_type(resource_type)
        return Search(self, resource_type, _merge_params((), params, kwargs))

    def create(self, resource: Mapping[str, Any], *, if_none_exist: Params | str | None = None) -> WriteResult:
        """POST [type]; with ``if_none_exist`` a conditional create (If-None-Exist header)."""
        resource_type = _resource_type(resource)
        headers = {"Prefer": "return=representation"}
        if if_none_exist is not None:
            headers["If-None-Exist"] = (
                if_none_exist if isinstance(if_none_exist, str) else urlencode(_merge_params((), if_none_exist, {}))
            )
        answer = self.request("POST", resource_type, json=resource, headers=headers)
        return _write_result(answer)

    def update(self, resource: Mapping[str, Any], *, if_match: str | None = None) -> WriteResult:
        """PUT [type]/[id]; ``if_match`` (a versionId or an ETag) makes a concurrent change a 412."""
        resource_type = _resource_type(resource)
        id = resource.get("id")
        if not isinstance(id, str):
            raise InputError("an update needs the resource's id", location=f"{resource_type}.id")
        headers = {"Prefer": "return=representation"}
        if if_match is not None:
            headers["If-Match"] = if_match if if_match.startswith(('W/"', '"')) else f'W/"{if_match}"'
        answer = self.request("PUT", _path(resource_type, id), json=resource, headers=headers)
        return _write_result(answer)

    def delete(self, resource_type: str, id: str) -> None:
        """DELETE [type]/[id]."""
        self.request("DELETE", _path(resource_type, id))

    def transaction(self, bundle: Mapping[str, Any], *, fallback_to_batch: bool = False) -> dict[str, Any]:
        """POST a transaction Bundle; return the transaction-response Bundle.

        When the server does not declare ``transaction`` support: CapabilityError, or with
        ``fallback_to_batch`` the entries go as a series of batches in dependency order (see
        :meth:`_batch_fallback`), *which is not atomic*: a failure leaves earlier entries applied.
        """
        body = _check_bundle(bundle, "transaction")
        self.require()
        if not self.supports("transaction"):
            if not fallback_to_batch:
                raise CapabilityError(
                    f"{self.base_url} does not support transactions; "
                    "pass fallback_to_batch=True to send the entries as batches (not atomic)"
                )
            # Not require("batch"): HAPI, for one, handles batches without declaring them.
            return self._batch_fallback(body)
        answer = self.request("POST", "", json=body, idempotent=_transaction_is_idempotent(body))
        return _bundle(answer, "transaction-response")

    def batch(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        """POST a batch Bundle; return the batch-response Bundle (entries succeed or fail alone)."""
        body = _check_bundle(bundle, "batch")
        answer = self.request("POST", "", json=body, idempotent=_transaction_is_idempotent(body))
        return _bundle(answer, "batch-response")

    def operation(
        self,
        name: str,
        *,
        resource_type: str | None = None,
        id: str | None = None,
        body: Mapping[str, Any] | None = None,
        params: Params | None = None,
        idempotent: bool | None = None,
    ) -> dict[str, Any] | None:
        """Invoke ``$name`` at system, type or instance level.

        With ``body`` (a Parameters resource, or a resource for ``$validate``) it is a POST;
        without, a GET with ``params`` in the query. POSTed operations are retried like a
        create unless ``idempotent=True`` says the operation has no side effects.
        """
        if not _OP_RE.fullmatch(name):
            raise InputError(f"not an operation name: {name!r}")
        op = name if name.startswith("$") else f"${name}"
        if id is not None and resource_type is None:
            raise InputError("an instance operation needs the resource type as well as the id")
        parts = [p for p in (resource_type, id) if p is not None]
        path = _path(*parts, op) if parts else op
        if resource_type is not None:
            _check_type(resource_type)
        if body is not None:
            answer = self.request("POST", path, params=params, json=body, idempotent=idempotent)
        else:
            answer = self.request("GET", path, params=params)
        return answer.json()

    # -- the low level ------------------------------------------------------------------

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Params | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        allow_foreign: bool = False,
    ) -> FhirResponse:
        """Send one request; return the 2xx answer or raise (see the module docstring).

        ``path_or_url`` is relative to the base URL, or absolute on the same origin; with
        ``allow_foreign`` an absolute URL elsewhere is fetched *without credentials*.
        ``idempotent`` overrides the method-based guess used to decide on retries.
        """
        method = method.upper()
        url, same_origin = self._resolve(path_or_url, allow_foreign)
        if params:
            query = urlencode(_merge_params((), params, {}))
            url = f"{url}&{query}" if "?" in url else f"{url}?{query}"
        body = None
        send_headers = dict(self._headers)
        if json is not None:
            body = orjson.dumps(json)
            send_headers["Content-Type"] = FHIR_JSON_BODY
        if headers:
            send_headers.update(headers)
        if idempotent is None:
            idempotent = method in _IDEMPOTENT_METHODS or (
                method == "POST" and ("If-None-Exist" in send_headers or url.split("?")[0].endswith("/_search"))
            )
        return self._send(method, url, body, send_headers, idempotent=idempotent, authenticate=same_origin)

    def _resolve(self, path_or_url: str, allow_foreign: bool) -> tuple[str, bool]:
        """An absolute URL, and whether credentials may go with it."""
        absolute = _ABSOLUTE_RE.match(path_or_url)
        if not absolute:
            path = path_or_url.lstrip("/")
            return (f"{self.base_url}/{path}" if path else self.base_url), True
        if absolute.group(1).lower() not in ("http", "https"):
            raise UnsafeUrlError(f"refusing {_redact_url(path_or_url)}: only http and https URLs are fetched")
        if _origin_of(path_or_url) == self._origin:
            return path_or_url, True
        if allow_foreign:
            return path_or_url, False
        raise UnsafeUrlError(
            f"refusing {_redact_url(path_or_url)}: it is outside the server's origin "
            f"{self._origin[0]}://{self._origin[1]}:{self._origin[2]}, where credentials must stay"
        )

    def _send(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        *,
        idempotent: bool,
        authenticate: bool,
    ) -> FhirResponse:
        """The one place that sends: auth, timeout, retries, logging, errors."""
        policy = self.retries
        attempt = 0
        reauthenticated = False
        while True:
            attempt += 1
            if authenticate and self.auth is not None:
                headers.update(self.auth.headers(self._auth_http))
            started = time.perf_counter()
            try:
                response = self._session.request(
                    method,
                    url,
                    data=body,
                    headers=headers,
                    timeout=self.timeout,
                    verify=self.verify,
                    auth=_no_auth,
                )
            except requests.RequestException as exc:
                kind, sent = _classify(exc)
                if (idempotent or not sent) and attempt < policy.attempts and kind != "TLS failed":
                    wait = policy.delay(attempt)
                    log.warning(
                        "%s %s: %s; retry %d of %d in %.1f s",
                        method, _redact_url(url), kind, attempt, policy.attempts - 1, wait,
                    )
                    policy.sleep(wait)
                    continue
                tries = f" after {attempt} attempts" if attempt > 1 else ""
                raise TransportError(
                    f"{method} {_redact_url(url)}: {kind}{tries} ({type(exc).__name__})"
                ) from exc
            status = response.status_code
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "%s %s -> %d in %.1f ms",
                    method, _redact_url(url), status, (time.perf_counter() - started) * 1000,
                )
            if status < 400:
                return FhirResponse(method, _redact_url(url), status, response.headers, response.content)
            if status in (_RETRY_IDEMPOTENT if idempotent else _RETRY_ANY) and attempt < policy.attempts:
                wait = policy.delay(attempt, response.headers.get("Retry-After"))
                log.warning(
                    "%s %s -> %d; retry %d of %d in %.1f s",
                    method, _redact_url(url), status, attempt, policy.attempts - 1, wait,
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
            detail = _excerpt(content)
        message = f"{method} {_redact_url(url)} failed: {status} {phrase}".rstrip()
        if detail:
            message += f": {detail}"
        message = self._scrub(message)
        error_class = _ERROR_FOR_STATUS.get(status, HttpError)
        return error_class(message, status=status, method=method, url=_redact_url(url), outcome=outcome)

    def _scrub(self, text: str) -> str:
        """Blank any secret the server may have echoed back into an error body."""
        if self.auth is not None:
            for secret in self.auth.secret_values():
                if secret:
                    text = text.replace(secret, "***")
        return text

    # -- paging -------------------------------------------------------------------------

    def _pages(self, resource_type: str, params: Sequence[tuple[str, str]]) -> Iterator[dict[str, Any]]:
        """Yield search result Bundles, fetching the next page only when asked for it."""
        answer = self.request("GET", resource_type, params=params)
        while True:
            page = _bundle(answer, "searchset")
            next_url = _next_link(page)
            yield page
            if next_url is None:
                return
            del page
            if next_url == answer.url:
                raise ServerError(f"{answer.url}: the server's next link points to the same page")
            answer = self.request("GET", next_url)

    # -- the transaction fallback -------------------------------------------------------

    def _batch_fallback(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """Send a transaction's entries as batches, each after the entries it references.

        An entry whose resource references another entry's ``urn:uuid`` full URL waits for a
        later batch, and the reference is rewritten to the ``Type/id`` the server gave. Not
        atomic: when an entry fails, the entries of earlier batches stay applied; the error
        says how many. Idempotent re-runs (conditional creates) make that recoverable.
        """
        entries = list(bundle.get("entry") or [])
        levels = _dependency_levels(entries)
        results: dict[int, dict[str, Any]] = {}
        resolved: dict[str, str] = {}
        applied = 0
        for level in levels:
            batch_entries = [_rewrite_references(entries[i], resolved) for i in level]
            try:
                answer = self.batch({"resourceType": "Bundle", "type": "batch", "entry": batch_entries})
            except HttpError as exc:
                if applied == 0 and exc.status in _NO_SUCH_INTERACTION:
                    raise CapabilityError(
                        f"{self.base_url} supports neither transactions nor batches ({exc.status})"
                    ) from exc
                raise
            response_entries = answer.get("entry") or []
            if len(response_entries) != len(level):
                raise ServerError(
                    f"POST {self.base_url}: the batch-response has {len(response_entries)} entries "
                    f"for {len(level)} sent; {applied} entries were applied before"
                )
            for index, reply in zip(level, response_entries):
                response = reply.get("response") or {}
                status_text = str(response.get("status", ""))
                status = int(status_text.split()[0]) if status_text[:3].isdigit() else 0
                if not 200 <= status < 300:
                    outcome = response.get("outcome")
                    detail = "; ".join(outcome_lines(outcome)) or status_text or "no status"
                    what = (entries[index].get("resource") or {}).get("resourceType", "entry")
                    raise HttpError(
                        f"POST {self.base_url} (batch fallback, not atomic): entry {index} ({what}) "
                        f"failed: {detail}; {applied} entries were applied before it",
                        status=status,
                        method="POST",
                        url=self.base_url,
                        outcome=outcome if isinstance(outcome, dict) else None,
                    )
                full_url = entries[index].get("fullUrl")
                location = parse_location(response.get("location"))
                if isinstance(full_url, str) and full_url.startswith("urn:") and location[0] and location[1]:
                    resolved[full_url] = f"{location[0]}/{location[1]}"
                results[index] = reply
            applied += len(level)
        return {
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": [results[i] for i in range(len(entries))],
        }


class _AuthChannel:
    """What an auth object may use: unauthenticated JSON requests through the client."""

    def __init__(self, client: FhirClient) -> None:
        self._client = client

    @property
    def base_url(self) -> str:
        return self._client.base_url

    def get_json(self, url: str) -> dict[str, Any]:
        headers = dict(self._client._headers, Accept="application/json")
        answer = self._client._send("GET", url, None, headers, idempotent=True, authenticate=False)
        return answer.json() or {}

    def post_form(self, url: str, form: Mapping[str, str]) -> dict[str, Any]:
        headers = dict(self._client._headers, Accept="application/json")
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        # Asking for a token twice is harmless, so a token request is retried like a GET.
        answer = self._client._send(
            "POST", url, urlencode(form).encode(), headers, idempotent=True, authenticate=False
        )
        return answer.json() or {}


class Search:
    """An immutable, lazy FHIR search. Each method returns a new Search; nothing is sent
    until it is iterated, and pages are fetched one at a time as iteration reaches them.

    Iterating yields the matched resources; :meth:`entries` also yields ``_include``-d ones
    with their search mode; :meth:`pages` yields each Bundle.
    """

    __slots__ = ("_client", "resource_type", "params")

    def __init__(self, client: FhirClient, resource_type: str, params: tuple[tuple[str, str], ...]) -> None:
        self._client = client
        self.resource_type = resource_type
        self.params = params

    def __repr__(self) -> str:
        return f"Search({self.resource_type!r}, {urlencode(self.params)!r})"

    def where(self, params: Params | None = None, /, **kwargs: ParamValue) -> Search:
        """Add search parameters (ANDed with the ones already there)."""
        return Search(self._client, self.resource_type, _merge_params(self.params, params, kwargs))

    def include(self, *targets: str, reverse: bool = False, iterate: bool = False) -> Search:
        """``_include`` (or ``_revinclude`` with ``reverse``), e.g. ``"ServiceRequest:subject"``."""
        name = "_revinclude" if reverse else "_include"
        if iterate:
            name += ":iterate"
        return Search(self._client, self.resource_type, self.params + tuple((name, t) for t in targets))

    def sort(self, *keys: str) -> Search:
        """``_sort`` (replacing any earlier one); prefix a key with ``-`` for descending."""
        return self._replace("_sort", ",".join(keys))

    def page_size(self, count: int) -> Search:
        """``_count`` (replacing any earlier one): matches per page; the server may cap it."""
        return self._replace("_count", str(count))

    def _replace(self, name: str, value: str) -> Search:
        kept = tuple(p for p in self.params if p[0] != name)
        return Search(self._client, self.resource_type, kept + ((name, value),))

    def pages(self) -> Iterator[dict[str, Any]]:
        """Each searchset Bundle, following ``next`` links (same origin only) lazily."""
        return self._client._pages(self.resource_type, self.params)

    def entries(self) -> Iterator[SearchEntry]:
        """Every entry of every page with its ``search.mode`` (match, include, outcome)."""
        for page in self.pages():
            for entry in page.get("entry") or []:
                resource = entry.get("resource")
                if isinstance(resource, dict):
                    mode = (entry.get("search") or {}).get("mode") or "match"
                    yield SearchEntry(resource, mode, entry.get("fullUrl"))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (e.resource for e in self.entries() if e.mode == "match")

    def first(self) -> dict[str, Any] | None:
        """The first match, or None (asks for one result)."""
        return next(iter(self.page_size(1)), None)

    def count(self) -> int:
        """The number of matches, from ``_summary=count`` (no resources are fetched)."""
        answer = self._client.request("GET", self.resource_type, params=self.params + (("_summary", "count"),))
        total = _bundle(answer, "searchset").get("total")
        if not isinstance(total, int):
            raise ServerError(f"GET {answer.url}: the server did not report a total")
        return total


# -- helpers ------------------------------------------------------------------------------


def _check_base_url(base_url: str) -> str:
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"the server URL must be http(s)://host[:port]/path, got {_redact_url(base_url)!r}")
    if parts.username or parts.password:
        raise InputError("put credentials in the auth options, not in the server URL")
    if parts.query or parts.fragment:
        raise InputError(f"the server URL must not have a query or fragment: {_redact_url(base_url)!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _origin_of(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or (443 if scheme == "https" else 80)


def _redact_url(url: str) -> str:
    """The URL without user:password and without the values of credential-like parameters."""
    if "@" not in url and "?" not in url:
        return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        query = parts.query
        if query and any(k.lower() in _SECRET_PARAMS for k, _ in parse_qsl(query, keep_blank_values=True)):
            query = urlencode(
                [
                    (k, "***" if k.lower() in _SECRET_PARAMS else v)
                    for k, v in parse_qsl(query, keep_blank_values=True)
                ]
            )
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "(unparsable URL)"


def _excerpt(content: bytes) -> str:
    """A short, single-line excerpt of a body; for an HTML page, its title or its text."""
    text = content[: 8 * _EXCERPT].decode("utf-8", errors="replace")
    if "<" in text[:200] and re.search(r"<(!doctype|html|head|body|title)\b", text, re.IGNORECASE):
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        text = "HTML page: " + (title.group(1) if title else re.sub(r"<[^>]*>", " ", text))
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT else text[: _EXCERPT - 1] + "…"


def _classify(exc: requests.RequestException) -> tuple[str, bool]:
    """A short description of a transport failure, and whether the request may have been sent."""
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS failed", False
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connection timed out", False
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "timed out waiting for the answer", True
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return "connection dropped while reading the answer", True
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)
        if isinstance(reason, urllib3.exceptions.NewConnectionError):
            return "could not connect", False
        return "connection failed or dropped", True
    return "request failed", True


def _check_type(resource_type: str) -> str:
    if not isinstance(resource_type, str) or not _TYPE_RE.fullmatch(resource_type):
        raise InputError(f"not a FHIR resource type: {resource_type!r}")
    return resource_type


def _check_id(id: str) -> str:
    if not isinstance(id, str) or not _ID_RE.fullmatch(id):
        raise InputError(f"not a FHIR id (1-64 of A-Z a-z 0-9 - .): {id!r}")
    return id


def _path(resource_type: str, *rest: str) -> str:
    _check_type(resource_type)
    if rest and not rest[0].startswith("$"):
        _check_id(rest[0])
    return "/".join((resource_type, *rest))


def _resource_type(resource: Mapping[str, Any]) -> str:
    if not isinstance(resource, Mapping):
        raise InputError(f"expected a FHIR resource (a JSON object), got {type(resource).__name__}")
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        raise InputError("the resource has no resourceType", location="resourceType")
    return _check_type(resource_type)


def _param_text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _merge_params(
    base: tuple[tuple[str, str], ...], params: Params | None, kwargs: Mapping[str, ParamValue]
) -> tuple[tuple[str, str], ...]:
    """Search parameters as (name, value) pairs; a list value repeats the name (AND)."""
    pairs = list(base)
    items: Iterable[tuple[str, Any]]
    if params is None:
        items = ()
    elif isinstance(params, Mapping):
        items = params.items()
    else:
        items = params
    for name, value in [*items, *kwargs.items()]:
        if isinstance(value, (list, tuple)):
            pairs.extend((name, _param_text(v)) for v in value)
        else:
            pairs.append((name, _param_text(value)))
    return tuple(pairs)


def _bundle(answer: FhirResponse, expected_type: str) -> dict[str, Any]:
    bundle = answer.resource()
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != expected_type:
        got = str(bundle.get("resourceType")) + (f" of type {bundle.get('type')}" if bundle.get("type") else "")
        raise ServerError(f"{answer.method} {answer.url}: expected a {expected_type} Bundle, got {got}")
    return bundle


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


def _check_bundle(bundle: Mapping[str, Any], bundle_type: str) -> dict[str, Any]:
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        raise InputError(f"expected a Bundle of type {bundle_type}", location="resourceType")
    if bundle.get("type") != bundle_type:
        raise InputError(f"expected Bundle.type '{bundle_type}', got {bundle.get('type')!r}", location="type")
    return dict(bundle)


def _transaction_is_idempotent(bundle: Mapping[str, Any]) -> bool:
    """True when replaying the bundle cannot duplicate anything: no unconditional POST."""
    for entry in bundle.get("entry") or []:
        request = entry.get("request") or {}
        method = str(request.get("method", "")).upper()
        if method == "POST" and request.get("ifNoneExist"):
            continue
        if method not in ("GET", "HEAD", "PUT", "DELETE"):
            return False
    return True


def _write_result(answer: FhirResponse) -> WriteResult:
    data = answer.json()
    resource = data if data is not None and isinstance(data.get("resourceType"), str) else None
    return WriteResult(
        status=answer.status,
        location=answer.headers.get("Location") or answer.headers.get("Content-Location"),
        etag=answer.headers.get("ETag"),
        resource=resource,
    )


def _etag_version(etag: str) -> str:
    return etag.removeprefix("W/").strip('"')


_LOCATION_RE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/([A-Za-z0-9\-.]{1,64}))?/?$")


def parse_location(location: Any) -> tuple[str | None, str | None, str | None]:
    """(type, id, version) from a Location like ``.../Patient/1/_history/2``."""
    if not isinstance(location, str):
        return None, None, None
    match = _LOCATION_RE.search(location.split("?")[0])
    if not match:
        return None, None, None
    return match.group(1), match.group(2), match.group(3)


def _dependency_levels(entries: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """Group entry indexes so each group only references entries of earlier groups."""
    by_full_url = {
        e.get("fullUrl"): i for i, e in enumerate(entries) if isinstance(e.get("fullUrl"), str)
    }
    depends: list[set[int]] = []
    for i, entry in enumerate(entries):
        targets = {by_full_url[r] for r, _ in iter_references(entry.get("resource")) if r in by_full_url}
        targets.discard(i)
        depends.append(targets)
    levels: list[list[int]] = []
    placed: set[int] = set()
    while len(placed) < len(entries):
        level = [i for i in range(len(entries)) if i not in placed and depends[i] <= placed]
        if not level:
            raise CapabilityError(
                "the server lacks transactions and these entries reference each other in a cycle, "
                "so they cannot be sent as ordered batches"
            )
        levels.append(level)
        placed.update(level)
    return levels


def _rewrite_references(entry: Mapping[str, Any], resolved: Mapping[str, str]) -> dict[str, Any]:
    """A copy of the entry whose references to already-created entries use their real ids."""
    return dict(rewrite_references(dict(entry), resolved)) if resolved else dict(entry)
