"""pull: fetch one case (or every case of a patient) from a FHIR server.

A case is gathered with a handful of searches, each followed lazily page by page:

1. the ServiceRequest (by server id or by case identifier) with ``_include`` of its subject,
   requester and performer;
2. ``DocumentReference?related=ServiceRequest/ID`` with ``_include=DocumentReference:author``;
3. ``DiagnosticReport?based-on=ServiceRequest/ID`` with ``_include=DiagnosticReport:performer``,
   and ``Task?focus=ServiceRequest/ID`` with ``_include=Task:owner`` (the referral's Task);
4. what R4 cannot search for from the request (the Consents in ``supportingInfo``, the
   Coverage in ``insurance``) and the parties those point to: one ``_id`` search per
   resource type until every reference the case needs resolves.

When the server's CapabilityStatement declares the reverse includes
``DocumentReference:related`` and ``DiagnosticReport:based-on`` for ServiceRequest (HAPI
does), searches 1-3 are one: the request search also asks for them (``_revinclude``; the
Task too where ``Task:focus`` is declared), and
step 4 fetches the authors and performers it did not bring. A server caps the includes of a
page (HAPI and Microsoft's server at 1000 by default) and may cut them short with no more than a
warning, so that one answer is trusted only when it holds fewer than
:data:`REVINCLUDE_TRUST` records and opinions and no OperationOutcome; otherwise searches 2
and 3 run as well, paged (a resource found twice is kept once).

:func:`pull_with_consents` also reads every privacy Consent of the patient (what the consent
policy judges a transfer by) and lets step 4 take the Consents and parties it needs from
that answer instead of asking again.

The resources go into a ``collection`` Bundle with absolute fullUrls, which
:func:`fhir_so.bundle.parse_bundle` reads back to the canonical case. A case with a Task
also gets the Task's history (``Task/ID/_history``) when pulled as a case (:func:`pull`,
:func:`case_with_history`): the history is the server's record, not part of the Bundle.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from http import HTTPStatus
from typing import Any

from fhir_so import terminology as term
from fhir_so.bundle import parse_bundle
from fhir_so.case import Case
from fhir_so.client import FhirClient, Search, SearchEntry
from fhir_so.errors import CaseNotFoundError, FhirSoError, HttpError, InputError
from fhir_so.fhirtypes import FHIR_ID_RE as _ID
from fhir_so.references import iter_references
from fhir_so.workflow.task import with_history

__all__ = [
    "CaseCollector",
    "REVINCLUDE_TRUST",
    "case_of",
    "case_with_history",
    "find_request_id",
    "privacy_consents",
    "pull",
    "pull_bundle",
    "pull_patient",
    "pull_patient_bundle",
    "pull_patient_bundles",
    "pull_with_consents",
    "request_search",
    "revincludes_declared",
]

Resource = dict[str, Any]

# Types a case's resources point to that pull fetches when no search brought them in.
_FOLLOW = frozenset({"Patient", "Practitioner", "Organization", "Consent", "Coverage"})
_SR_INCLUDES = ("ServiceRequest:subject", "ServiceRequest:requester", "ServiceRequest:performer")
# A case points to a handful of resources; more rounds than this means a reference cycle gone wrong.
_MAX_ROUNDS = 8
# What points to a case's request: its records and its opinions (step 1 asks for them when it can).
_SR_REVINCLUDES = ("DocumentReference:related", "DiagnosticReport:based-on")
# ... and the parties those name (R4 ``:iterate``; a server that ignores it leaves them to step 4)
_ITERATE = ("DocumentReference:author", "DiagnosticReport:performer")
_REVINCLUDED = frozenset(r.split(":")[0] for r in _SR_REVINCLUDES)
# The referral's Task (one per case, on the expert's server) joins the request search too where
# the server declares that reverse include; else it is a search of its own.
_TASK_REVINCLUDE = "Task:focus"
_TASK_ITERATE = "Task:owner"
#: One search's reverse includes are trusted to be complete below this many (far under any server's cap).
REVINCLUDE_TRUST = 50


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InputError(f"{what} must be a FHIR id (1-64 of A-Z a-z 0-9 - .), got {value!r}")
    return value


class CaseCollector:
    """The resources of one or more cases, keyed ``Type/id``, gathered from one server."""

    def __init__(self, client: FhirClient) -> None:
        self.client = client
        self._base = client.base_url + "/"
        self.resources: dict[str, Resource] = {}
        self._absent: set[str] = set()
        # resources read from this server by another search (the patient's consents): what
        # complete() may take from here instead of asking the server again
        self._known: dict[str, Resource] = {}

    def know(self, resources: list[Resource]) -> None:
        """Resources of this server read elsewhere, for :meth:`complete` to use (not added to the case)."""
        for resource in resources:
            rtype, rid = resource.get("resourceType"), resource.get("id")
            if isinstance(rtype, str) and isinstance(rid, str):
                self._known.setdefault(f"{rtype}/{rid}", resource)

    def add(self, resource: Mapping[str, Any]) -> str | None:
        rtype, rid = resource.get("resourceType"), resource.get("id")
        if not isinstance(rtype, str) or not isinstance(rid, str):
            return None
        key = f"{rtype}/{rid}"
        self.resources.setdefault(key, dict(resource))
        return key

    def add_search(self, search: Search) -> list[Resource]:
        """Every page of a search: matches and includes are kept; the matches are returned."""
        matches = []
        for entry in search.entries():
            if entry.mode == "outcome":
                continue
            self.add(entry.resource)
            if entry.mode == "match":
                matches.append(entry.resource)
        return matches

    def _local(self, ref: str) -> str | None:
        """``Type/id`` of a reference to this server, or None (urn:, another server, logical)."""
        if ref.startswith(self._base):
            ref = ref[len(self._base):]
        elif "://" in ref or ref.startswith(("urn:", "#")):
            return None
        ref = ref.split("/_history/")[0]
        parts = ref.split("/")
        if len(parts) != 2 or not _ID.fullmatch(parts[1]):
            return None
        return ref

    def complete(self) -> None:
        """Fetch what the collected resources point to (types in ``_FOLLOW``) until nothing is missing."""
        for _ in range(_MAX_ROUNDS):
            missing: dict[str, set[str]] = {}
            taken = False
            for resource in list(self.resources.values()):
                for ref, _ in iter_references(resource, skip_contained=True):
                    local = self._local(ref)
                    if local is None or local in self.resources or local in self._absent:
                        continue
                    rtype, rid = local.split("/")
                    if rtype not in _FOLLOW:
                        continue
                    if local in self._known:
                        self.add(self._known[local])
                        taken = True  # its own references are looked at in the next round
                    else:
                        missing.setdefault(rtype, set()).add(rid)
            if not missing and not taken:
                return
            for rtype, ids in sorted(missing.items()):
                self.add_search(self.client.search(rtype, _id=",".join(sorted(ids))))
                still = ids - {k.split("/")[1] for k in self.resources if k.startswith(rtype + "/")}
                # Not on the server (deleted, or never there): parsing names the dangling reference.
                self._absent |= {f"{rtype}/{rid}" for rid in still}
        raise InputError(f"{self.client.base_url}: references kept leading to new resources after {_MAX_ROUNDS} rounds")

    def add_case(self, request: Mapping[str, Any]) -> None:
        """Everything that belongs to one ServiceRequest already collected."""
        ref = f"ServiceRequest/{request['id']}"
        self.add_search(
            self.client.search("DocumentReference", related=ref).include("DocumentReference:author")
        )
        self.add_search(
            self.client.search("DiagnosticReport", {"based-on": ref}).include("DiagnosticReport:performer")
        )
        self.add_task(request)

    def add_task(self, request: Mapping[str, Any]) -> None:
        """The referral's Task of one ServiceRequest."""
        ref = f"ServiceRequest/{request['id']}"
        # the Task changes most often (every step of the second physician): never a cached answer
        self.add_search(self.client.search("Task", focus=ref).include(_TASK_ITERATE).with_headers({"Cache-Control": "no-cache"}))

    def bundle(self) -> Resource:
        """A collection Bundle, ServiceRequests first, with absolute fullUrls."""
        keys = sorted(
            self.resources,
            key=lambda k: (not k.startswith("ServiceRequest/"), k),
        )
        return {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"fullUrl": self._base + k, "resource": self.resources[k]} for k in keys],
        }


def request_search(client: FhirClient, *, request_id: str | None = None, case_id: str | None = None) -> Search:
    """The search for one case's ServiceRequest with its parties included."""
    if (request_id is None) == (case_id is None):
        raise InputError("name exactly one of a request id or a case id")
    search = client.search("ServiceRequest")
    if request_id is not None:
        search = search.where(_id=_check_id(request_id, "the request id"))
    else:
        search = search.where(identifier=f"{term.SID_CASE}|{_check_id(str(case_id), 'the case id')}")
    return search.include(*_SR_INCLUDES)


def find_request_id(client: FhirClient, case_id: str) -> str:
    """The server id of the ServiceRequest that carries ``case_id`` (CaseNotFoundError when none)."""
    matches = [e.resource for e in request_search(client, case_id=case_id).entries() if e.mode == "match"]
    if not matches:
        raise CaseNotFoundError(f"{client.base_url} has no ServiceRequest with case id {case_id}", server=client.base_url, case_id=case_id)
    if len(matches) > 1:
        ids = ", ".join(sorted(str(m.get("id")) for m in matches))
        raise InputError(f"{client.base_url} has several ServiceRequests for case {case_id} ({ids}); name one by its request id")
    return str(matches[0]["id"])


def _declared_revincludes(client: FhirClient) -> list[str]:
    """The reverse includes the server's CapabilityStatement declares on ServiceRequest."""
    try:
        capabilities = client.capabilities()
    except FhirSoError:
        return []  # no usable CapabilityStatement: the separate searches need none
    for rest in capabilities.get("rest") or []:
        if not isinstance(rest, dict) or rest.get("mode", "server") != "server":
            continue
        for resource in rest.get("resource") or []:
            if isinstance(resource, dict) and resource.get("type") == "ServiceRequest":
                declared = resource.get("searchRevInclude") or []
                return [str(r) for r in declared] if isinstance(declared, list) else []
    return []


def revincludes_declared(client: FhirClient) -> bool:
    """Whether the server declares the reverse includes of a case's records and opinions on ServiceRequest."""
    declared = _declared_revincludes(client)
    return all(r in declared for r in _SR_REVINCLUDES)


def _collect_request(collector: CaseCollector, *, request_id: str | None, case_id: str | None) -> Resource:
    """Step 1 (with 2 and 3 folded in where the server allows; see the module's docstring): the request."""
    client = collector.client
    search = request_search(client, request_id=request_id, case_id=case_id)
    declared = _declared_revincludes(client)
    combined = all(r in declared for r in _SR_REVINCLUDES)
    with_task = combined and _TASK_REVINCLUDE in declared
    entries: list[SearchEntry] = []
    if combined:
        reverse = (*_SR_REVINCLUDES, _TASK_REVINCLUDE) if with_task else _SR_REVINCLUDES
        iterate = (*_ITERATE, _TASK_ITERATE) if with_task else _ITERATE
        try:
            entries = list(search.include(*reverse, reverse=True).include(*iterate, iterate=True).entries())
        except HttpError as exc:
            if exc.status != HTTPStatus.BAD_REQUEST:
                raise
            combined = False  # declared, yet refused in this form: the separate searches
    if not combined:
        entries = list(search.entries())
    matches: list[Resource] = []
    pointing = 0
    complete = combined
    for entry in entries:
        if entry.mode == "outcome":
            complete = False  # a warning (includes cut short?) or an error: ask the careful way too
            continue
        collector.add(entry.resource)
        if entry.mode == "match":
            matches.append(entry.resource)
        elif entry.resource.get("resourceType") in _REVINCLUDED:
            pointing += 1
    del entries
    what = f"ServiceRequest/{request_id}" if request_id is not None else f"ServiceRequest with case id {case_id}"
    if not matches:
        raise CaseNotFoundError(f"{client.base_url} has no {what}", server=client.base_url, case_id=case_id, request_id=request_id)
    if len(matches) > 1:
        ids = ", ".join(sorted(str(m.get("id")) for m in matches))
        raise InputError(f"{client.base_url} has several ServiceRequests for case {case_id} ({ids}); pull one with --request")
    if not complete or pointing >= REVINCLUDE_TRUST:
        collector.add_case(matches[0])
    elif not with_task:
        collector.add_task(matches[0])
    return matches[0]


def pull_bundle(client: FhirClient, *, request_id: str | None = None, case_id: str | None = None) -> Resource:
    """The case as a collection Bundle of the server's resources (ids and meta as the server has them)."""
    collector = CaseCollector(client)
    _collect_request(collector, request_id=request_id, case_id=case_id)
    collector.complete()
    return collector.bundle()


def privacy_consents(client: FhirClient, request: Mapping[str, Any]) -> list[Resource]:
    """Every privacy Consent the server holds for the request's patient, linked from the request or
    not, with the actors they name (so the policy compares recipients by identifier, not by guess)."""
    subject = (request.get("subject") or {}).get("reference")
    if not isinstance(subject, str):
        return []
    search = client.search("Consent", patient=subject, scope=f"{term.CONSENT_SCOPE}|{term.CONSENT_SCOPE_PRIVACY.code}")
    return [dict(e.resource) for e in search.include("Consent:actor").entries() if e.mode in ("match", "include")]


def pull_with_consents(
    client: FhirClient, *, request_id: str | None = None, case_id: str | None = None
) -> tuple[Resource, list[Resource]]:
    """What :func:`pull_bundle` and :func:`privacy_consents` give, in fewer requests: the Consents
    and parties the case points to are taken from the consent search's answer when it holds them."""
    collector = CaseCollector(client)
    request = _collect_request(collector, request_id=request_id, case_id=case_id)
    consents = privacy_consents(client, request)
    collector.know(consents)
    collector.complete()
    return collector.bundle(), consents


def _case_id_of(request: Mapping[str, Any]) -> str | None:
    for ident in request.get("identifier") or []:
        if ident.get("system") == term.SID_CASE and isinstance(ident.get("value"), str):
            return str(ident["value"])
    return None


def case_of(bundle: Mapping[str, Any], base_url: str) -> Case:
    """The case of a bundle made by :func:`pull_bundle` (its first entry is the ServiceRequest)."""
    request = bundle["entry"][0]["resource"]
    return parse_bundle(bundle, f"{base_url}/ServiceRequest/{request['id']}", _case_id_of(request))


def _task_of(bundle: Mapping[str, Any], case_id: str) -> tuple[str | None, str | None]:
    """(id, versionId) of the case's Task in a pulled bundle, or (None, None)."""
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "Task" and any(
            i.get("system") == term.SID_TASK and i.get("value") == case_id for i in resource.get("identifier") or []
        ):
            version = (resource.get("meta") or {}).get("versionId")
            return str(resource.get("id")), version if isinstance(version, str) else None
    return None, None


def case_with_history(client: FhirClient, bundle: Mapping[str, Any], case_id: str | None = None) -> Case:
    """The case of a pulled bundle (:func:`case_of`, or ``case_id`` of several), its Task's history read from ``client``."""
    if case_id is None:
        case = case_of(bundle, client.base_url)
    else:
        case = parse_bundle(bundle, client.base_url, case_id)
    return with_history(client, case, *_task_of(bundle, case.case_id))


def pull(client: FhirClient, *, request_id: str | None = None, case_id: str | None = None) -> Case:
    """One case, in canonical form (what was pushed, server ids and meta aside), its Task's history included."""
    return case_with_history(client, pull_bundle(client, request_id=request_id, case_id=case_id))


def pull_patient_bundles(client: FhirClient, patient_id: str) -> Iterator[tuple[str, Resource]]:
    """Each second-opinion case of a patient as (case id, collection Bundle), one at a time."""
    search = client.search(
        "ServiceRequest", subject=f"Patient/{_check_id(patient_id, 'the patient id')}", identifier=f"{term.SID_CASE}|"
    ).include(*_SR_INCLUDES)
    for page in search.pages():
        entries = [e for e in page.get("entry") or [] if isinstance(e.get("resource"), dict)]
        included = {
            f"{e['resource'].get('resourceType')}/{e['resource'].get('id')}": e["resource"]
            for e in entries
            if (e.get("search") or {}).get("mode") == "include"
        }
        for entry in entries:
            request = entry["resource"]
            if (entry.get("search") or {}).get("mode", "match") != "match":
                continue
            case_id = _case_id_of(request)
            if case_id is None:
                continue
            collector = CaseCollector(client)
            collector.add(request)
            for ref, _ in iter_references(request, skip_contained=True):
                if ref in included:
                    collector.add(included[ref])
            collector.add_case(request)
            collector.complete()
            yield case_id, collector.bundle()


def pull_patient_bundle(client: FhirClient, patient_id: str) -> Resource:
    """Every second-opinion case of a patient in one collection Bundle (an entry shared by cases once).

    CaseNotFoundError when the patient has no case on the server.
    """
    entries: dict[str, Resource] = {}
    for _, bundle in pull_patient_bundles(client, patient_id):
        for entry in bundle["entry"]:
            entries.setdefault(entry["fullUrl"], entry)
    if not entries:
        raise CaseNotFoundError(f"{client.base_url} has no second-opinion case for Patient/{patient_id}", server=client.base_url)
    return {"resourceType": "Bundle", "type": "collection", "entry": list(entries.values())}


def pull_patient(client: FhirClient, patient_id: str) -> Iterator[Case]:
    """Each second-opinion case of a patient, in canonical form, one at a time."""
    for case_id, bundle in pull_patient_bundles(client, patient_id):
        case = parse_bundle(bundle, f"{client.base_url}/Patient/{patient_id}", case_id)
        yield with_history(client, case, *_task_of(bundle, case_id))
