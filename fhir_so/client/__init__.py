"""The FHIR R4 client: one ``requests.Session`` talking FHIR R4 JSON to one server.

Everything goes through one method, ``Transport.send`` (:mod:`.transport`), which adds the default
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

Credentials go only to the base URL's origin (scheme, host, port), judged on the URL exactly
as it is sent (:func:`fhir_so.client.urls.prepare`). A URL elsewhere (a paging ``next`` link,
an attachment) is refused with :class:`UnsafeUrlError`, unless the caller allows it with
``request(..., allow_foreign=True)``, which sends it without credentials; a URL with userinfo,
a backslash, whitespace or no scheme of its own is refused always. A GET follows at most five
redirects, each on its own origin; no other method is redirected. Secrets the server echoes
are blanked in what is read and in every error message; a search ends with an error on a
paging loop or past its page cap.

Servers differ (tests/client/families/ records six families): every search asks for a fresh
answer (``Cache-Control: no-cache``) and checks it got one (:mod:`.search`); pages are followed
by their ``next`` links whatever their size or style, and nothing relies on ``total``; a write's
id and version come from its body, ``Location`` or ``ETag`` in whichever forms the server uses;
a transaction entry the server does not locate is located from its request
(:meth:`FhirClient.transaction_response`); a conditional interaction the server declares it
lacks is refused before sending; a version conflict is :class:`PreconditionFailed` whether the
server says 409 or 412.

Rooms: :mod:`.urls` (base URL, origin, paths, redaction), :mod:`.retry` (what is retried and
how long to wait), :mod:`.transport` (the one ``send``), :mod:`.results` (typed answers, the one
reading of a transaction-response), :mod:`.search` (lazy searches and paging), :mod:`.batch`
(a transaction as ordered batches), :mod:`.fhir_client` (the REST interactions).
"""

from __future__ import annotations

from fhir_so.client.fhir_client import FHIR_JSON, FhirClient
from fhir_so.client.results import (
    EntryResponse,
    FhirResponse,
    SearchEntry,
    TransactionResponse,
    WriteResult,
    parse_location,
)
from fhir_so.client.retry import RetryPolicy
from fhir_so.client.search import Params, ParamValue, Search

__all__ = [
    "EntryResponse",
    "FHIR_JSON",
    "FhirClient",
    "FhirResponse",
    "ParamValue",
    "Params",
    "RetryPolicy",
    "Search",
    "SearchEntry",
    "TransactionResponse",
    "WriteResult",
    "parse_location",
]
