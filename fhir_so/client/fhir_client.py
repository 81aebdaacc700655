"""FhirClient: the REST interactions of FHIR R4 (read, search, create, update, transaction, ...).

It builds each request (path, query, body, headers, whether it may be retried) and hands
it to its :class:`~fhir_so.client.transport.Transport`, the one place that sends.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from itertools import islice
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qsl, urlencode

import orjson
import requests

from fhir_so import __version__
from fhir_so.auth import Auth
from fhir_so.client.batch import batch_fallback
from fhir_so.client.results import FhirResponse, TransactionResponse, WriteResult, etag_version, expect_bundle
from fhir_so.client.retry import RetryPolicy
from fhir_so.client.search import MAX_PAGES, Freshness, Params, ParamValue, Search, follow_pages, merge_params
from fhir_so.client.transport import BodySink, Transport
from fhir_so.client.urls import (
    check_base_url,
    check_id,
    check_type,
    origin_of,
    resolve,
    resource_path,
    resource_type_of,
)
from fhir_so.errors import CapabilityError, InputError, PreconditionFailed, ServerError

__all__ = ["FHIR_JSON", "FhirClient"]

FHIR_JSON = "application/fhir+json"
FHIR_JSON_BODY = "application/fhir+json; fhirVersion=4.0"
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}")
_OP_RE = re.compile(r"\$?[A-Za-z][A-Za-z0-9\-_]{0,63}")
#: What a write may ask the server to answer with (``Prefer: return=...``).
Prefer = Literal["representation", "minimal", "OperationOutcome"]
_PREFER = ("representation", "minimal", "OperationOutcome")


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
        self.base_url = check_base_url(base_url)
        self._origin = origin_of(self.base_url)
        self._user_agent = user_agent
        agent = f"fhir-so/{__version__}"
        self.user_agent = f"{agent} {user_agent}" if user_agent else agent
        self._transport = Transport(
            base_url=self.base_url,
            auth=auth,
            timeout=timeout,
            retries=retries or RetryPolicy(),
            verify=verify,
            session=session,
            headers={"Accept": FHIR_JSON, "User-Agent": self.user_agent},
        )
        self._capabilities: dict[str, Any] | None = None
        # What tells a cached search answer from a fresh one (see fhir_so.client.search).
        self.freshness = Freshness()

    @property
    def auth(self) -> Auth | None:
        return self._transport.auth

    @property
    def timeout(self) -> tuple[float, float]:
        return self._transport.timeout

    @property
    def retries(self) -> RetryPolicy:
        return self._transport.retries

    @property
    def verify(self) -> bool | str:
        return self._transport.verify

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
        self._transport.close()

    def clone(self) -> Self:
        """A client like this one for another thread: same server, credentials, timeout, retries,
        TLS check and user agent, its own new session; it starts with the CapabilityStatement
        this one has read (a read-only dict), if any."""
        twin = type(self)(self.base_url, auth=self.auth, timeout=self.timeout, retries=self.retries, verify=self.verify,
                          user_agent=self._user_agent)
        twin._capabilities = self._capabilities
        return twin

    # -- capabilities -------------------------------------------------------------------

    def capabilities(self) -> dict[str, Any]:
        """The server's CapabilityStatement (GET /metadata once; cached on this client)."""
        if self._capabilities is None:
            answer = self.request("GET", "metadata").resource()
            if answer.get("resourceType") != "CapabilityStatement":
                raise ServerError(
                    f"GET {self.base_url}/metadata: expected a CapabilityStatement, got {str(answer['resourceType'])[:64]}"
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
        return self.request("GET", resource_path(resource_type, id)).resource()

    def vread(self, resource_type: str, id: str, version_id: str) -> dict[str, Any]:
        """GET [type]/[id]/_history/[vid]."""
        return self.request("GET", resource_path(resource_type, id, "_history", check_id(version_id))).resource()

    def history(
        self, resource_type: str, id: str, *, headers: Mapping[str, str] | None = None, max_pages: int = MAX_PAGES
    ) -> Iterator[dict[str, Any]]:
        """GET [type]/[id]/_history: every version of one resource, in the server's order (newest first
        on HAPI), paging followed lazily. A deleted version (an entry with no resource) is left out;
        a resource the server does not have is a NotFoundError. ``headers`` go with every page
        (``Cache-Control: no-cache`` where freshness matters)."""
        sent = dict(headers or {})
        answer = self.request("GET", resource_path(resource_type, id, "_history"), headers=sent)
        for page in follow_pages(self, answer, "history", sent, max_pages):
            for entry in page.get("entry") or []:
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if isinstance(resource, dict):
                    yield resource

    def search(self, resource_type: str, params: Params | None = None, /, **kwargs: ParamValue) -> Search:
        """A lazy, immutable search: ``client.search("Patient", identifier="sys|1")``.

        Nothing is sent until it is iterated. Parameter names that are not Python identifiers
        (``general-practitioner``, ``code:text``) go in the ``params`` mapping; per-request
        headers go through :meth:`Search.with_headers`.
        """
        check_type(resource_type)
        return Search(self, resource_type, merge_params((), params, kwargs))

    def create(
        self, resource: Mapping[str, Any], *, if_none_exist: Params | str | None = None, prefer: Prefer = "representation"
    ) -> WriteResult:
        """POST [type]; with ``if_none_exist`` a conditional create (If-None-Exist header).

        ``prefer`` asks for the answer's body (``Prefer: return=``): the resource, nothing
        (``minimal``) or an ``OperationOutcome``; servers may answer otherwise, and
        :class:`WriteResult` reads id and version from whatever comes.
        """
        resource_type = resource_type_of(resource)
        headers = {"Prefer": _prefer(prefer)}
        if if_none_exist is not None:
            headers["If-None-Exist"] = (
                if_none_exist if isinstance(if_none_exist, str) else urlencode(merge_params((), if_none_exist, {}))
            )
        return WriteResult.of(self.request("POST", resource_type, json=resource, headers=headers))

    def update(self, resource: Mapping[str, Any], *, if_match: str | None = None, prefer: Prefer = "representation") -> WriteResult:
        """PUT [type]/[id]; ``if_match`` (a versionId or an ETag) makes a concurrent change a
        :class:`PreconditionFailed` (412 or 409, as the server says it); ``prefer`` as for :meth:`create`."""
        resource_type = resource_type_of(resource)
        id = resource.get("id")
        if not isinstance(id, str):
            raise InputError("an update needs the resource's id", location=f"{resource_type}.id")
        headers = {"Prefer": _prefer(prefer)}
        if if_match is not None:
            headers["If-Match"] = if_match if if_match.startswith(('W/"', '"')) else f'W/"{if_match}"'
        try:
            return WriteResult.of(self.request("PUT", resource_path(resource_type, id), json=resource, headers=headers))
        except PreconditionFailed as exc:
            if if_match is None:
                raise
            # A version conflict is a 412 for the spec and some servers, a 409 for others (HAPI's
            # JPA server among them): one error either way, naming the version the update was based on.
            version = etag_version(if_match)
            raise PreconditionFailed(
                f"{exc.message} (the update was based on {resource_type}/{id} version {version}; "
                "someone changed it since: read it again)",
                status=exc.status,
                method=exc.method,
                url=exc.url,
                outcome=exc.outcome,
                version=version,
            ) from exc

    def delete(self, resource_type: str, id: str) -> None:
        """DELETE [type]/[id]."""
        self.request("DELETE", resource_path(resource_type, id))

    def transaction(self, bundle: Mapping[str, Any], *, fallback_to_batch: bool = False) -> dict[str, Any]:
        """POST a transaction Bundle; return the transaction-response Bundle.

        Read it entry by entry with :meth:`TransactionResponse.read`. When the server does not
        declare ``transaction`` support: CapabilityError, or with ``fallback_to_batch`` the
        entries go as a series of batches in dependency order (see
        :func:`fhir_so.client.batch.batch_fallback`), *which is not atomic*: a failure leaves
        earlier entries applied.
        """
        body = _check_bundle(bundle, "transaction")
        self.require()
        self.require_conditional(body)
        if not self.supports("transaction"):
            if not fallback_to_batch:
                raise CapabilityError(
                    f"{self.base_url} does not support transactions; "
                    "pass fallback_to_batch=True to send the entries as batches (not atomic)"
                )
            # Not require("batch"): HAPI, for one, handles batches without declaring them.
            return batch_fallback(self.base_url, body, self.batch)
        answer = self.request("POST", "", json=body, idempotent=_transaction_is_idempotent(body))
        return expect_bundle(answer, "transaction-response")

    def transaction_response(self, bundle: Mapping[str, Any], *, fallback_to_batch: bool = False) -> TransactionResponse:
        """:meth:`transaction`, read entry by entry against what was sent, every entry located.

        Servers do not all say where an entry's resource is: Blaze leaves ``location`` out of
        an update's and a matched conditional create's answer (and, by default, the resource
        too). Such an entry is located from its request: the ``Type/id`` of its url, or a fresh
        search on its condition (``ifNoneExist``, or the query of a conditional update) that
        must match exactly one resource.
        """
        sent = dict(bundle)
        read = TransactionResponse.read(self.base_url, sent, self.transaction(sent, fallback_to_batch=fallback_to_batch))
        return read.located(self.locate)

    def locate(self, request: Mapping[str, Any]) -> dict[str, Any] | None:
        """Where a transaction entry's request put its resource: a stub ``{resourceType, id, meta}``.

        From the ``Type/id`` of the request's url, or else from a fresh search on its condition
        (``ifNoneExist`` of a create, the query of a conditional update); None when neither
        says, ServerError when the condition matches more or less than one resource.
        """
        url = str(request.get("url") or "").lstrip("/")
        path, _, query = url.partition("?")
        method = str(request.get("method") or "").upper()
        parts = path.split("/")
        if len(parts) == 2 and not query and method in ("PUT", "DELETE", "PATCH"):
            return {"resourceType": check_type(parts[0]), "id": check_id(parts[1])}
        condition = request.get("ifNoneExist") if method == "POST" else query if method == "PUT" else None
        if len(parts) != 1 or not isinstance(condition, str) or not condition:
            return None
        rtype = check_type(parts[0])
        # Two matches are enough to know it is not one; pages are fetched only as far as that.
        found = list(islice(self.search(rtype, parse_qsl(condition, keep_blank_values=True)).page_size(2), 2))
        if len(found) != 1:
            raise ServerError(
                f"{self.base_url}: the transaction-response does not say where the {rtype} of "
                f"{method} {_shorten(url)} is, and its condition matches {len(found)} resources"
                + (" or more" if len(found) > 1 else "")
            )
        return {"resourceType": rtype, "id": found[0].get("id"), "meta": found[0].get("meta") or {}}

    def require_conditional(self, bundle: Mapping[str, Any]) -> None:
        """CapabilityError when the server declares it cannot do a conditional create or update
        the bundle asks of it (``conditionalCreate`` / ``conditionalUpdate`` false in its
        CapabilityStatement, as Blaze declares conditional update): a clear refusal before
        anything is sent, instead of an error from deep inside the transaction."""
        declared = _conditional_support(self.capabilities())
        for i, entry in enumerate(bundle.get("entry") or []):
            request = entry.get("request") if isinstance(entry, Mapping) else None
            if not isinstance(request, Mapping):
                continue
            method = str(request.get("method") or "").upper()
            url = str(request.get("url") or "").lstrip("/")
            rtype = url.split("?", 1)[0].split("/", 1)[0]
            if method == "PUT" and "?" in url:
                kind = "conditionalUpdate"
            elif method == "POST" and request.get("ifNoneExist"):
                kind = "conditionalCreate"
            else:
                continue
            if declared.get((rtype, kind)) is False:
                what = "conditional update" if kind == "conditionalUpdate" else "conditional create"
                raise CapabilityError(
                    f"{self.base_url} declares no {what} for {_shorten(rtype)} "
                    f"(CapabilityStatement {kind} false), which entry {i} ({method} {_shorten(url)}) needs"
                )

    def batch(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        """POST a batch Bundle; return the batch-response Bundle (entries succeed or fail alone)."""
        body = _check_bundle(bundle, "batch")
        answer = self.request("POST", "", json=body, idempotent=_transaction_is_idempotent(body))
        return expect_bundle(answer, "batch-response")

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
        path = resource_path(*parts, op) if parts else op
        if resource_type is not None:
            check_type(resource_type)
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
        credentials: bool = True,
        sink: BodySink | None = None,
    ) -> FhirResponse:
        """Send one request; return the 2xx answer or raise (see the package docstring).

        ``path_or_url`` is relative to the base URL, or absolute on the same origin; with
        ``allow_foreign`` an absolute URL elsewhere is fetched *without credentials*.
        ``idempotent`` overrides the method-based guess used to decide on retries.
        ``credentials=False`` sends no credentials even on the server's origin (a Bulk Data
        file whose manifest says ``requiresAccessToken: false``). With ``sink`` a 2xx body is
        streamed into it instead of being read into the answer (see :class:`BodySink`).
        """
        method = method.upper()
        query = urlencode(merge_params((), params, {})) if params else ""
        url, same_origin = resolve(self.base_url, self._origin, path_or_url, allow_foreign, query)
        body = None
        send_headers = dict(self._transport.headers)
        if json is not None:
            body = orjson.dumps(json)
            send_headers["Content-Type"] = FHIR_JSON_BODY
        if headers:
            send_headers.update(_checked_headers(headers))
        if idempotent is None:
            idempotent = method in _IDEMPOTENT_METHODS or (
                method == "POST" and ("If-None-Exist" in send_headers or url.split("?")[0].endswith("/_search"))
            )
        return self._transport.send(
            method, url, body, send_headers, idempotent=idempotent, authenticate=same_origin and credentials, sink=sink
        )

    def data_scrubber(self) -> Callable[[bytes], bytes]:
        """What blanks this client's secrets in data read piece by piece (see :meth:`Transport.data_scrubber`)."""
        return self._transport.data_scrubber()



def _prefer(prefer: str) -> str:
    if prefer not in _PREFER:
        raise InputError(f"prefer is one of {', '.join(_PREFER)}, got {prefer!r}")
    return f"return={prefer}"


def _shorten(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _conditional_support(capabilities: Mapping[str, Any]) -> dict[tuple[str, str], bool]:
    """(type, conditionalCreate|conditionalUpdate) -> what the CapabilityStatement declares, where it does."""
    found: dict[tuple[str, str], bool] = {}
    for rest in capabilities.get("rest") or []:
        if not isinstance(rest, Mapping) or rest.get("mode", "server") != "server":
            continue
        for resource in rest.get("resource") or []:
            if not isinstance(resource, Mapping) or not isinstance(resource.get("type"), str):
                continue
            for kind in ("conditionalCreate", "conditionalUpdate"):
                if isinstance(resource.get(kind), bool):
                    found[(resource["type"], kind)] = resource[kind]
    return found


def _checked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers a caller adds: names and values HTTP can carry (Latin-1, no line breaks)."""
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InputError(f"a header name and value must be strings: {name!r}")
        if not _HEADER_NAME_RE.fullmatch(name):
            raise InputError(f"not an HTTP header name: {name[:80]!r}")
        if any(c in value for c in "\r\n\0"):
            raise InputError(f"the value of header {name} contains a line break")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise InputError(f"the value of header {name} has characters HTTP headers cannot carry (not Latin-1)") from None
    return dict(headers)


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
