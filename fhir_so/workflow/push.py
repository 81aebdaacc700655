"""push: send one case to a FHIR server as ONE transaction, idempotently.

The bundle built from a case makes every entry conditional (parties: create if none has the
identifier; case resources: ``PUT Type?identifier=...``), so pushing twice leaves the server
as pushing once. The result says, per entry, whether the server created, updated or left
the resource unchanged, read from the transaction-response: ``201`` is a creation; ``200``
on a conditional create means the party was already there; ``200`` on a conditional update
is an update unless the server reports a no-op (HAPI's ``SUCCESSFUL_UPDATE_NO_CHANGE``
outcome, with or without ``_WITH_CONDITIONAL_MATCH``) or the version is still 1 (an update always bumps the version).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from os import PathLike
from pathlib import Path
from typing import Any, Literal

from fhir_so import terminology as term
from fhir_so.bundle import build_bundle, bundle_graph
from fhir_so.case import Case, case_from_dict
from fhir_so.client import EntryResponse, FhirClient
from fhir_so.errors import InputError, ProfileError, ServerError, excerpt
from fhir_so.jsonio import load_json_object
from fhir_so.packages import PackageCache
from fhir_so.validation.structure import SchemaLayer

__all__ = ["Outcome", "PushResult", "PushedEntry", "classify_entry", "push", "transaction_of"]

Outcome = Literal["created", "updated", "unchanged"]

# HAPI's message codes in a transaction-response entry's OperationOutcome for a write that changed nothing.
_NO_CHANGE_CODES = frozenset(
    {"SUCCESSFUL_UPDATE_NO_CHANGE", "SUCCESSFUL_UPDATE_WITH_CONDITIONAL_MATCH_NO_CHANGE", "SUCCESSFUL_CREATE_WITH_CONDITIONAL_MATCH"}
)


@dataclass(frozen=True)
class PushedEntry:
    """One resource of the pushed case as the server now holds it."""

    resource_type: str
    id: str
    version: str | None
    outcome: Outcome
    identifier: str | None = None

    @property
    def reference(self) -> str:
        """``Type/id`` on the server."""
        return f"{self.resource_type}/{self.id}"

    def to_json(self) -> dict[str, Any]:
        return {
            "resourceType": self.resource_type,
            "id": self.id,
            "version": self.version,
            "outcome": self.outcome,
            "identifier": self.identifier,
        }


@dataclass(frozen=True)
class PushResult:
    """What one push did: per entry the server id, version and outcome."""

    server: str
    case_id: str | None
    stat: bool
    entries: tuple[PushedEntry, ...]

    def counts(self) -> dict[str, int]:
        """How many entries were created, updated and unchanged (all three keys present)."""
        found = Counter(e.outcome for e in self.entries)
        return {k: found.get(k, 0) for k in ("created", "updated", "unchanged")}

    @property
    def changed(self) -> bool:
        """False when the push changed nothing on the server (a repeat)."""
        return any(e.outcome != "unchanged" for e in self.entries)

    def of_type(self, resource_type: str) -> list[PushedEntry]:
        return [e for e in self.entries if e.resource_type == resource_type]

    @property
    def request_id(self) -> str | None:
        """The server id of the case's ServiceRequest, when the push carried one."""
        found = self.of_type("ServiceRequest")
        return found[0].id if found else None

    def summary(self) -> str:
        """One line a person reads: what changed, or that nothing did."""
        c = self.counts()
        what = f"case {self.case_id}" if self.case_id else "bundle"
        if not self.changed:
            return f"{what}: nothing new on {self.server}: all {len(self.entries)} resources were already there, unchanged"
        return f"{what} pushed to {self.server}: {c['created']} created, {c['updated']} updated, {c['unchanged']} unchanged"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PushResult:
        """The inverse of :meth:`to_json` (a push kept in a transfer's state file)."""
        entries = tuple(
            PushedEntry(e["resourceType"], e["id"], e.get("version"), e["outcome"], e.get("identifier"))
            for e in data.get("entries") or []
        )
        return cls(str(data.get("server", "")), data.get("case_id"), bool(data.get("stat")), entries)

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "case_id": self.case_id,
            "stat": self.stat,
            "changed": self.changed,
            "counts": self.counts(),
            "request_id": self.request_id,
            "entries": [e.to_json() for e in self.entries],
        }


def transaction_of(case_or_bundle: Case | Mapping[str, Any]) -> dict[str, Any]:
    """The transaction Bundle to send: built from a case, or a Bundle given as is."""
    if isinstance(case_or_bundle, Case):
        return build_bundle(case_or_bundle)
    bundle = dict(case_or_bundle)
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
        raise InputError("push sends a case or a transaction Bundle", location="Bundle.type")
    return bundle


def load_push_input(path: str | PathLike[str], *, files_root: str | PathLike[str] | None = None) -> Case | dict[str, Any]:
    """What a file holds for push: a transaction Bundle, or a case file (schema-checked).

    Everything is checked before a request is made: a case as :func:`~fhir_so.case.load_case`
    does (attachment files from its folder or ``files_root``); a Bundle's entries as R4
    resources with a request (method and url) each, and its urn: references resolving inside it.
    """
    data = load_json_object(path)
    source = str(path)
    if "resourceType" not in data:
        case = case_from_dict(data, source, Path(path).parent, files_root=files_root)
        build_bundle(case, source)  # a case that maps to invalid R4 is refused here, naming the file
        return case
    if data.get("resourceType") != "Bundle" or data.get("type") != "transaction":
        raise InputError(
            f"expected a transaction Bundle (or a case file), found resourceType {excerpt(data.get('resourceType'))} "
            f"type {excerpt(data.get('type'))}",
            source=source,
            location="Bundle.type" if data.get("resourceType") == "Bundle" else "$.resourceType",
        )
    bundle_graph(data, source)
    if not data.get("entry"):
        raise InputError("the transaction has no entries: nothing to push", source=source, location="Bundle.entry")
    _check_json_types(data, source)
    for i, entry in enumerate(data.get("entry") or []):
        request = entry.get("request")
        where = f"Bundle.entry[{i}].request"
        if not isinstance(request, dict) or not isinstance(request.get("method"), str) or not isinstance(request.get("url"), str):
            raise InputError("a transaction entry needs a request with a method and a url", source=source, location=where)
    return data


@lru_cache(maxsize=2)
def _schema_layer(path: Path) -> SchemaLayer:
    return SchemaLayer(path)


def _check_json_types(bundle: dict[str, Any], source: str) -> None:
    """The R4 JSON schema on each entry: the R4 models take ``"dateTime": 12345`` as a string, a server would not.

    The schema comes from the FHIR package cache (``fhir-so packages seed``); without it this
    check is left to the server (the R4 models and the null check above still run).
    """
    try:
        path = PackageCache().r4_json_schema_path()
    except ProfileError:
        return
    layer = _schema_layer(path)
    for i, entry in enumerate(bundle.get("entry") or []):
        issues = layer.issues(entry["resource"], f"Bundle.entry[{i}].resource")
        if issues:
            more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
            raise InputError(f"not valid R4 JSON: {issues[0].message}{more}", source=source, location=issues[0].expression)


def _case_facts(bundle: Mapping[str, Any]) -> tuple[str | None, bool]:
    """The case id and whether the request is stat, from the bundle's ServiceRequest (or its opinion)."""
    found: tuple[str | None, bool] = (None, False)
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") or {}
        for ident in resource.get("identifier") or []:
            if resource.get("resourceType") == "ServiceRequest" and ident.get("system") == term.SID_CASE:
                return ident.get("value"), resource.get("priority") == "stat"
            if resource.get("resourceType") == "DiagnosticReport" and ident.get("system") == term.SID_OPINION:
                found = (ident.get("value"), False)
    return found


def classify_entry(request: Mapping[str, Any], response: Mapping[str, Any] | EntryResponse) -> tuple[Outcome, str | None, str | None, str | None]:
    """(outcome, type, id, version) of one transaction-response entry for the entry sent."""
    answer = response if isinstance(response, EntryResponse) else EntryResponse.of(response)
    rtype, rid, version = answer.resource_type, answer.id, answer.version
    if answer.created:
        return "created", rtype, rid, version
    if not answer.ok:
        raise ServerError(f"the transaction-response has an entry with status {answer.status_text or None!r}")
    if str(request.get("method", "")).upper() == "POST" or answer.outcome_codes() & _NO_CHANGE_CODES:
        return "unchanged", rtype, rid, version
    return ("unchanged" if version == "1" else "updated"), rtype, rid, version


def _identifier_of(resource: Mapping[str, Any]) -> str | None:
    for ident in resource.get("identifier") or []:
        if ident.get("system") and ident.get("value"):
            return f"{ident['system']}|{ident['value']}"
    return None


def push(client: FhirClient, case_or_bundle: Case | Mapping[str, Any]) -> PushResult:
    """Send a case (or its transaction Bundle) as one transaction; say what the server did."""
    bundle = transaction_of(case_or_bundle)
    case_id, stat = _case_facts(bundle)
    answer = client.transaction_response(bundle)
    entries = []
    for i, (request, resource, response) in enumerate(zip(answer.requests, answer.resources, answer.responses)):
        outcome, rtype, rid, version = classify_entry(request, response)
        rtype = rtype or resource.get("resourceType")
        if not rtype or not rid:
            raise ServerError(f"{client.base_url}: transaction-response entry {i} has no location (Type/id)")
        entries.append(PushedEntry(rtype, rid, version, outcome, _identifier_of(resource)))
    return PushResult(client.base_url, case_id, stat, tuple(entries))
