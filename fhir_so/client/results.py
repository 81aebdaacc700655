"""What the server answered, typed: a response, a write's result, a search entry, a transaction.

The one reading of a transaction-response (or batch-response) lives here:
:class:`TransactionResponse` pairs each entry sent with the :class:`EntryResponse` the server
gave for it (status, location, version, OperationOutcome); the workflows classify from it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any, NamedTuple

import orjson

from fhir_so.errors import ServerError
from fhir_so.fhirtypes import RESOURCE_REF_RE

__all__ = [
    "EntryResponse",
    "FhirResponse",
    "SearchEntry",
    "TransactionResponse",
    "WriteResult",
    "expect_bundle",
    "parse_location",
]

EXCERPT = 200


def _same(text: str) -> str:
    return text


def excerpt(content: bytes, scrub: Callable[[str], str] = _same) -> str:
    """A short, single-line excerpt of a body; for an HTML page, its title or its text."""
    text = content[: 8 * EXCERPT].decode("utf-8", errors="replace")
    text = scrub(text)
    if "<" in text[:200] and re.search(r"<(!doctype|html|head|body|title)\b", text, re.IGNORECASE):
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        text = "HTML page: " + (title.group(1) if title else re.sub(r"<[^>]*>", " ", text))
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT else text[: EXCERPT - 1] + "…"


@dataclass(frozen=True)
class FhirResponse:
    """A successful answer. ``url`` has no credentials; ``json()`` parses the body once asked."""

    method: str
    url: str
    status: int
    headers: Mapping[str, str]
    content: bytes
    scrub: Callable[[str], str] = field(default=_same, repr=False, compare=False)

    def json(self) -> dict[str, Any] | None:
        """The body as a JSON object, None when empty; ServerError when it is not JSON."""
        if not self.content or self.content.isspace():
            return None
        try:
            data = orjson.loads(self.content)
        except orjson.JSONDecodeError:
            raise ServerError(
                f"{self.method} {self.url}: the server answered {self.status} with a body that is "
                f"not JSON: {excerpt(self.content, self.scrub)}"
            ) from None
        if not isinstance(data, dict):
            raise ServerError(
                f"{self.method} {self.url}: the server answered {self.status} with JSON that is "
                f"not an object: {excerpt(self.content, self.scrub)}"
            )
        return data

    def resource(self) -> dict[str, Any]:
        """The body as a FHIR resource (a JSON object with a resourceType)."""
        data = self.json()
        if data is None or not isinstance(data.get("resourceType"), str):
            raise ServerError(
                f"{self.method} {self.url}: expected a FHIR resource, got: {excerpt(self.content, self.scrub) or '(empty)'}"
            )
        return data


def _short(text: str, limit: int = 64) -> str:
    """A value the server chose, fit for a message: one line, a few dozen characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def expect_bundle(answer: FhirResponse, expected_type: str) -> dict[str, Any]:
    """The answer's Bundle, or ServerError when it is not a Bundle of that type."""
    bundle = answer.resource()
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != expected_type:
        got = _short(str(bundle.get("resourceType"))) + (f" of type {_short(str(bundle.get('type')))}" if bundle.get("type") else "")
        got = answer.scrub(got)
        raise ServerError(f"{answer.method} {answer.url}: expected a {expected_type} Bundle, got {got}")
    return bundle


def parse_location(location: Any) -> tuple[str | None, str | None, str | None]:
    """(type, id, version) from a Location like ``.../Patient/1/_history/2``."""
    if not isinstance(location, str):
        return None, None, None
    match = RESOURCE_REF_RE.search(location.split("?")[0].rstrip("/"))
    if not match:
        return None, None, None
    return match.group(1), match.group(2), match.group(3)


def etag_version(etag: str) -> str:
    """The version id inside an ETag, weak or strong (``W/"3"``, ``"3"``, ``w/"3"`` -> ``3``)."""
    text = etag.strip()
    if text[:2] in ("W/", "w/"):
        text = text[2:]
    return text.strip().strip('"')


@dataclass(frozen=True)
class WriteResult:
    """The outcome of create or update: status, where the resource now lives, and its body.

    Servers answer a write three ways (``Prefer: return=``): with the resource, with an
    OperationOutcome, or with no body at all (``minimal``, and what some servers do whatever
    is asked). Id and version then come from ``Location`` (absolute or relative, with or
    without ``_history/N``) and ``ETag`` (weak ``W/"3"`` or strong ``"3"``).
    """

    status: int
    location: str | None
    etag: str | None
    resource: dict[str, Any] | None
    outcome: dict[str, Any] | None = None

    @classmethod
    def of(cls, answer: FhirResponse) -> WriteResult:
        data = answer.json()
        kind = data.get("resourceType") if data is not None else None
        resource = data if isinstance(kind, str) and kind != "OperationOutcome" else None
        outcome = data if kind == "OperationOutcome" else None
        return cls(
            status=answer.status,
            location=answer.headers.get("Location") or answer.headers.get("Content-Location"),
            etag=answer.headers.get("ETag") or None,
            resource=resource,
            outcome=outcome,
        )

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
        if self.etag and etag_version(self.etag):
            return etag_version(self.etag)
        meta = (self.resource or {}).get("meta") or {}
        if isinstance(meta.get("versionId"), str):
            return str(meta["versionId"])
        return parse_location(self.location)[2]


class SearchEntry(NamedTuple):
    """One entry of a search result page, with ``mode`` ``match``, ``include`` or ``outcome``."""

    resource: dict[str, Any]
    mode: str
    full_url: str | None


@dataclass(frozen=True)
class EntryResponse:
    """The ``response`` of one transaction-response or batch-response entry."""

    status: int
    status_text: str
    location: str | None
    etag: str | None
    outcome: dict[str, Any] | None

    @classmethod
    def of(cls, response: Mapping[str, Any], resource: Any = None) -> EntryResponse:
        """Read an entry's ``response`` element (a status it cannot read is 0).

        ``status`` may be ``"201 Created"`` (HAPI, Firely) or a bare ``"201"`` (Microsoft,
        Blaze, Medplum). A server that leaves out ``location`` (or ``etag``) but returns the
        entry's ``resource`` has its place read from the resource's type, id and versionId.
        """
        text = str(response.get("status") or "").strip()
        head = text.split(" ", 1)[0]
        location, etag, outcome = response.get("location"), response.get("etag"), response.get("outcome")
        location = location if isinstance(location, str) and location else None
        etag = etag if isinstance(etag, str) and etag_version(etag) else None
        if isinstance(resource, Mapping) and (location is None or etag is None):
            rtype, rid = resource.get("resourceType"), resource.get("id")
            version = (resource.get("meta") or {}).get("versionId") if isinstance(resource.get("meta"), Mapping) else None
            if location is None and isinstance(rtype, str) and isinstance(rid, str) and rtype != "OperationOutcome":
                location = f"{rtype}/{rid}" + (f"/_history/{version}" if isinstance(version, str) else "")
            if etag is None and isinstance(version, str) and parse_location(location)[1] == rid:
                etag = f'W/"{version}"'
        if outcome is None and isinstance(resource, Mapping) and resource.get("resourceType") == "OperationOutcome":
            outcome = resource
        return cls(
            status=int(head) if head.isdigit() else 0,
            status_text=_short(text, 80),
            location=location,
            etag=etag,
            outcome=outcome if isinstance(outcome, dict) else None,
        )

    @property
    def ok(self) -> bool:
        return HTTPStatus.OK <= self.status < HTTPStatus.MULTIPLE_CHOICES

    @property
    def created(self) -> bool:
        return self.status == HTTPStatus.CREATED

    @property
    def resource_type(self) -> str | None:
        return parse_location(self.location)[0]

    @property
    def id(self) -> str | None:
        return parse_location(self.location)[1]

    @property
    def version(self) -> str | None:
        """The version, from the ETag when there is one, else from the location."""
        if self.etag:
            return etag_version(self.etag) or parse_location(self.location)[2]
        return parse_location(self.location)[2]

    def outcome_codes(self) -> set[str]:
        """Message codes the server put in the entry's OperationOutcome (HAPI: details.coding.code)."""
        codes: set[str] = set()
        for issue in (self.outcome or {}).get("issue") or []:
            for coding in (issue.get("details") or {}).get("coding") or []:
                if isinstance(coding.get("code"), str):
                    codes.add(coding["code"])
        return codes


@dataclass(frozen=True)
class TransactionResponse:
    """A transaction (or batch) response read against the Bundle that was sent, entry by entry."""

    server: str
    requests: tuple[Mapping[str, Any], ...]
    resources: tuple[Mapping[str, Any], ...]
    responses: tuple[EntryResponse, ...]
    bundle: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def read(cls, server: str, sent: Mapping[str, Any], answer: Mapping[str, Any]) -> TransactionResponse:
        """Pair each sent entry with its answer; ServerError when the counts differ."""
        sent_entries: Sequence[Mapping[str, Any]] = sent.get("entry") or []
        received: Sequence[Mapping[str, Any]] = answer.get("entry") or []
        if len(received) != len(sent_entries):
            raise ServerError(
                f"{server}: the {answer.get('type') or 'transaction-response'} has {len(received)} entries "
                f"for {len(sent_entries)} sent"
            )
        return cls(
            server=server,
            requests=tuple(e.get("request") or {} for e in sent_entries),
            resources=tuple(e.get("resource") or {} for e in sent_entries),
            responses=tuple(EntryResponse.of(r.get("response") or {}, r.get("resource")) for r in received),
            bundle=answer,
        )

    def __len__(self) -> int:
        return len(self.responses)

    def located(self, locate: Callable[[Mapping[str, Any]], Mapping[str, Any] | None]) -> TransactionResponse:
        """A copy where each successful entry that names no resource (no location, no resource)
        is read again with the stub ``locate(request)`` finds for it (see FhirClient.locate)."""
        responses = list(self.responses)
        for i, (request, response) in enumerate(zip(self.requests, responses)):
            if not response.ok or response.id is not None or str(request.get("method", "")).upper() in ("GET", "HEAD", "DELETE"):
                continue
            stub = locate(request)
            if stub is not None:
                responses[i] = EntryResponse.of(
                    {"status": response.status_text, "etag": response.etag, "outcome": response.outcome}, stub
                )
        return replace(self, responses=tuple(responses))
