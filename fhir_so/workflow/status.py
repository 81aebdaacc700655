"""status: the life of one case as a timeline, read from the first physician's server and the expert's.

What the first physician wants to know, in the order it happened:

========================  ==============  =====================================================
kind                      read on         from
========================  ==============  =====================================================
``request``               both servers    the ServiceRequest's ``_history`` (written, changed)
``consent``               first server    each Consent's ``_history`` (given, widened, revoked)
``records-sent``          expert server   each records-out transfer's ``Provenance``
``records-withheld``      first server    the consent policy run again as of that transfer
``task``                  expert server   the Task's ``_history`` (received, accepted, ...)
``records-asked``         expert server   a Task version on hold with ``records-requested``
``opinion``               expert server   the DiagnosticReport's ``_history``
``report-back``           first server    the DiagnosticReport there, and its ``Provenance``
========================  ==============  =====================================================

Every event carries the time the server recorded it (``meta.lastUpdated``, in UTC), the server,
its kind, a sentence, and the resource version it comes from (``Type/id/_history/N``). Events
are ordered by time, then by a stable key, so the same servers give the same timeline.

Why a record stayed behind is the consent policy's own words (:mod:`fhir_so.consent`): the
policy is run again on the first server's records with the Consents *as they were* when the
transfer ran (their versions from ``_history``) at the time the transfer checked them
(``Provenance.recorded``). A later change to a consent does not rewrite the past.

Every read goes through the client with ``Cache-Control: no-cache``, so ``--watch`` sees new
writes even on a server that reuses cached search results.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fhir_so import terminology as term
from fhir_so.client import FhirClient
from fhir_so.consent import records_verdict
from fhir_so.errors import CaseNotFoundError, InputError, NotFoundError
from fhir_so.fhirtypes import FHIR_ID_RE
from fhir_so.mapping.task import io_type, requested_kind

__all__ = ["Event", "KINDS", "Timeline", "case_timeline", "watch"]

Resource = dict[str, Any]

#: The event kinds, in the order they sort when two happen at the same instant.
KINDS = ("request", "consent", "records-sent", "records-withheld", "task", "records-asked", "opinion", "report-back")
_NO_CACHE = {"Cache-Control": "no-cache"}
_MAX_VREADS = 200  # versions read one by one when _history leaves them out (a case's resources change a handful of times)
_STAT = "FLAG: stat request: an emergency must not wait for this opinion"


@dataclass(frozen=True)
class Event:
    """One thing that happened to the case, on one server."""

    time: str
    server: str
    side: str  # "first" (the first physician's server) or "expert" (the second-opinion server)
    kind: str
    text: str
    reference: str | None = None

    @property
    def key(self) -> tuple[str, int, str, str, str]:
        """The order of the timeline: time, then kind, server, resource and text (stable)."""
        return (self.time, KINDS.index(self.kind), self.side, self.reference or "", self.text)

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "server": self.server, "side": self.side, "kind": self.kind, "text": self.text,
                "reference": self.reference}

    def line(self) -> str:
        where = "first " if self.side == "first" else "expert"
        ref = f"  [{self.reference}]" if self.reference else ""
        return f"{self.time}  {where}  {self.kind:<16} {self.text}{ref}"


@dataclass(frozen=True)
class Timeline:
    """The case's life on both servers: who holds what, the Task's state now, and every event."""

    case_id: str
    first: str
    expert: str | None
    stat: bool
    request: Mapping[str, str | None]
    task: Mapping[str, Any] | None
    events: tuple[Event, ...]
    notes: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """The timeline as a person reads it on a terminal."""
        out = [f"case {self.case_id}: first physician's server {self.first}" + (f", expert's server {self.expert}" if self.expert else "")]
        if self.stat:
            out.append(f"  {_STAT}")
        if self.task is not None:
            out.append(f"  Task now: {self.task['status']} ({self.task.get('business_status') or '-'}), "
                       f"{self.task['reference']} version {self.task['version']}")
        out += [f"  note: {n}" for n in self.notes]
        out += [f"  {e.line()}" for e in self.events]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "stat": self.stat,
            "servers": {"first": self.first, "expert": self.expert},
            "request": dict(self.request),
            "task": dict(self.task) if self.task is not None else None,
            "events": [e.to_json() for e in self.events],
            "notes": list(self.notes),
        }


# -- reading one server --------------------------------------------------------------------------


def _utc(value: Any) -> str:
    """A FHIR instant as UTC with milliseconds (``2026-11-29T23:20:45.493Z``), so times sort as text."""
    if not isinstance(value, str):
        return ""
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _when(resource: Mapping[str, Any]) -> str:
    return _utc((resource.get("meta") or {}).get("lastUpdated"))


def _version(resource: Mapping[str, Any]) -> str:
    return str((resource.get("meta") or {}).get("versionId") or "")


def _ref(resource: Mapping[str, Any]) -> str:
    base = f"{resource.get('resourceType')}/{resource.get('id')}"
    return f"{base}/_history/{_version(resource)}" if _version(resource) else base


def _local(reference: Any, base: str) -> str | None:
    """``Type/id`` of a reference to this server (relative, or absolute under its base; any version dropped)."""
    if not isinstance(reference, str):
        return None
    if reference.startswith(base + "/"):
        reference = reference[len(base) + 1:]
    elif "://" in reference or reference.startswith(("urn:", "#")):
        return None
    parts = reference.split("/_history/")[0].split("/")
    return f"{parts[0]}/{parts[1]}" if len(parts) == 2 and FHIR_ID_RE.fullmatch(parts[1]) else None


def _values(resource: Mapping[str, Any], system: str) -> list[str]:
    return [str(i["value"]) for i in resource.get("identifier") or [] if isinstance(i, dict) and i.get("system") == system and isinstance(i.get("value"), str)]


def _codes(concept: Any) -> list[tuple[str, str]]:
    concepts = concept if isinstance(concept, list) else [concept]
    return [(str(c.get("system")), str(c.get("code"))) for x in concepts if isinstance(x, dict) for c in x.get("coding") or [] if isinstance(c, dict)]


def _kind_of(concept: Any) -> str:
    """A record kind by its LOINC coding (the project's names), else the first code as written."""
    pairs = _codes(concept)
    for system, code in pairs:
        if system == term.LOINC and code in term.RECORD_KIND_BY_LOINC:
            return term.RECORD_KIND_BY_LOINC[code]
    return pairs[0][1] if pairs else "unknown"


@dataclass
class _Side:
    """What one server holds of the case, read fresh."""

    client: FhirClient
    side: str
    request: Resource
    included: dict[str, Resource]
    documents: list[Resource]
    reports: list[Resource]
    consents: list[Resource] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.client.base_url

    @property
    def request_ref(self) -> str:
        return f"ServiceRequest/{self.request['id']}"

    def history(self, resource: Mapping[str, Any]) -> list[Resource]:
        """Every version of a resource, oldest first, up to the version just read.

        A server may answer ``_history`` from a cached count (HAPI does, for a while after a
        write; ``Cache-Control: no-cache`` does not reach that cache) or cap its pages: versions
        the answer left out are read one by one (vread); one that is gone (deleted) is skipped.
        """
        rtype, rid = str(resource["resourceType"]), str(resource["id"])
        found = {_version(v): v for v in self.client.history(rtype, rid, headers=_NO_CACHE)}
        current = _version(resource)
        if current.isdigit():
            for number in range(max(1, int(current) - _MAX_VREADS), int(current) + 1):
                if str(number) not in found:
                    try:
                        found[str(number)] = self.client.vread(rtype, rid, str(number))
                    except NotFoundError:
                        continue
        return sorted(found.values(), key=lambda r: (int(_version(r)) if _version(r).isdigit() else 0, _when(r)))

    def event(self, resource: Mapping[str, Any], kind: str, text: str, when: str | None = None) -> Event:
        return Event(when or _when(resource), self.base, self.side, kind, text, _ref(resource))

    def record_id(self, doc: Mapping[str, Any], case_id: str) -> str:
        for value in _values(doc, term.SID_RECORD):
            return value.removeprefix(f"{case_id}/")
        return f"DocumentReference/{doc.get('id')}"


def _search(client: FhirClient, resource_type: str, params: Mapping[str, Any], *includes: str) -> tuple[list[Resource], dict[str, Resource]]:
    """Matches and included resources (``Type/id`` -> resource) of one fresh search, every page."""
    search = client.search(resource_type, params).with_headers(_NO_CACHE)
    if includes:
        search = search.include(*includes)
    matches, included = [], {}
    for entry in search.entries():
        if entry.mode == "match":
            matches.append(entry.resource)
        elif entry.mode == "include":
            included[f"{entry.resource.get('resourceType')}/{entry.resource.get('id')}"] = entry.resource
    return matches, included


def _read_side(client: FhirClient, side: str, case_id: str) -> _Side | None:
    requests, included = _search(client, "ServiceRequest", {"identifier": f"{term.SID_CASE}|{case_id}"},
                                 "ServiceRequest:subject", "ServiceRequest:requester", "ServiceRequest:performer")
    if not requests:
        return None
    if len(requests) > 1:
        ids = ", ".join(sorted(str(r.get("id")) for r in requests))
        raise InputError(f"{client.base_url} has several ServiceRequests for case {case_id} ({ids})")
    request = requests[0]
    ref = f"ServiceRequest/{request['id']}"
    documents, authors = _search(client, "DocumentReference", {"related": ref}, "DocumentReference:author")
    reports, _ = _search(client, "DiagnosticReport", {"based-on": ref})
    found = _Side(client, side, request, {**included, **authors}, documents, reports)
    found.consents = _consents(found)
    return found


def _consents(side: _Side) -> list[Resource]:
    """The Consents the request links, and every privacy Consent of its patient (the policy reads them all)."""
    subject = _local((side.request.get("subject") or {}).get("reference"), side.base)
    found: dict[str, Resource] = {}
    if subject is not None:
        matches, actors = _search(side.client, "Consent", {"patient": subject, "scope": f"{term.CONSENT_SCOPE}|{term.CONSENT_SCOPE_PRIVACY.code}"},
                                  "Consent:actor")
        side.included.update(actors)
        found.update({f"Consent/{c['id']}": c for c in matches})
    linked = [r for r in (_local(i.get("reference"), side.base) for i in side.request.get("supportingInfo") or [] if isinstance(i, dict)) if r]
    missing = sorted(r.split("/")[1] for r in linked if r.startswith("Consent/") and r not in found)
    if missing:
        matches, actors = _search(side.client, "Consent", {"_id": ",".join(missing)}, "Consent:actor")
        side.included.update(actors)
        found.update({f"Consent/{c['id']}": c for c in matches})
    return [found[k] for k in sorted(found)]


# -- events of each kind -------------------------------------------------------------------------


def _request_events(side: _Side) -> list[Event]:
    events = []
    before: Resource | None = None
    where = "the first physician's server" if side.side == "first" else "the second-opinion server"
    for version in side.history(side.request):
        priority = version.get("priority") or "routine"
        if before is None:
            text = f"request written on {where} (status {version.get('status')}, priority {priority})"
            if priority == "stat":
                text += f"; {_STAT}"
        else:
            changes = [f"{name} {before.get(name) or '-'} -> {version.get(name) or '-'}"
                       for name in ("status", "priority") if before.get(name) != version.get(name)]
            if len(version.get("supportingInfo") or []) != len(before.get("supportingInfo") or []):
                changes.append(f"links {len(version.get('supportingInfo') or [])} consent(s) and earlier opinion(s)")
            text = "request updated: " + ("; ".join(changes) if changes else f"version {_version(version)}")
        events.append(side.event(version, "request", text))
        before = version
    return events


def _own_consent(consent: Mapping[str, Any], case_id: str) -> bool | None:
    """True: this case's own consent; False: another case's; None: written by another system."""
    mine = _values(consent, term.SID_CONSENT)
    if not mine:
        return None
    return any(v in (f"{case_id}-records", f"{case_id}-report") for v in mine)


def _describe_consent(consent: Mapping[str, Any]) -> dict[str, str]:
    provision = consent.get("provision") or {}
    classes = {str(c.get("code")) for c in provision.get("class") or [] if isinstance(c, dict)}
    what = "the report back" if "DiagnosticReport" in classes else "records out"
    kinds = sorted({_kind_of(c) for c in provision.get("code") or []}) if what == "records out" else []
    period = provision.get("period") or {}
    nested = len(provision.get("provision") or [])
    return {
        "status": "revoked (inactive)" if consent.get("status") == "inactive" else str(consent.get("status")),
        "decision": str(provision.get("type") or "no provision type"),
        "covers": (", ".join(kinds) + " only") if kinds else "every record kind" if what == "records out" else "the opinion",
        "period": f"{period.get('start') or '…'} to {period.get('end') or '…'}" if period else "no period",
        "nested": f"{nested} nested provision(s)" if nested else "",
        "what": what,
    }


def _consent_events(side: _Side, case_id: str, history: Mapping[str, list[Resource]]) -> list[Event]:
    events = []
    for consent in side.consents:
        own = _own_consent(consent, case_id)
        if own is False:
            continue  # another case's consent: its provision.data keeps it to that case
        name = (_values(consent, term.SID_CONSENT) or [f"Consent/{consent['id']}"])[0]
        who = "" if own else " (written by another system)"
        before: dict[str, str] | None = None
        for version in history[f"Consent/{consent['id']}"]:
            now = _describe_consent(version)
            if before is None:
                text = (f"consent {name}{who} for {now['what']} given: {now['decision']}, {now['covers']}, "
                        f"{now['period']}, status {now['status']}" + (f", {now['nested']}" if now["nested"] else ""))
            else:
                changes = [f"{k} {before[k] or '-'} -> {now[k] or '-'}" for k in ("status", "decision", "covers", "period", "nested") if before[k] != now[k]]
                if not changes:
                    before = now
                    continue
                verb = "revoked" if now["status"].startswith("revoked") and not before["status"].startswith("revoked") else (
                    "widened" if now["covers"] == "every record kind" and before["covers"] != now["covers"] else "changed")
                text = f"consent {name} {verb}: " + "; ".join(changes)
            events.append(side.event(version, "consent", text))
            before = now
    return events


def _as_of(history: Sequence[Resource], when: str) -> Resource | None:
    """The version that was current at ``when`` (None: the resource did not exist yet)."""
    current = None
    for version in history:
        if _when(version) <= when:
            current = version
    return current


def _entity_source(provenance: Mapping[str, Any]) -> str:
    for entity in provenance.get("entity") or []:
        ident = ((entity or {}).get("what") or {}).get("identifier") or {}
        if ident.get("system") == term.URI and isinstance(ident.get("value"), str):
            return str(ident["value"])
    return ""


def _provenances(side: _Side, targets: Iterable[str]) -> list[Resource]:
    wanted = sorted(set(targets))
    if not wanted:
        return []
    matches, _ = _search(side.client, "Provenance", {"target": ",".join(wanted)})
    return sorted(matches, key=lambda p: (_when(p), str(p.get("id"))))


def _withheld_then(
    first: _Side, case_id: str, consent_history: Mapping[str, list[Resource]], provenance: Mapping[str, Any]
) -> list[tuple[str, str, str, str | None]]:
    """(record id, kind, why, the deciding Consent's version or the record) of each record the consent
    policy held back when this transfer ran."""
    at = _when(provenance)
    recorded = _utc(provenance.get("recorded")) or at
    try:
        now = dt.datetime.fromisoformat(recorded.replace("Z", "+00:00"))
    except ValueError:
        return []
    base = first.base + "/"
    entries: list[Resource] = [{"fullUrl": base + first.request_ref, "resource": first.request}]
    entries += [{"fullUrl": base + k, "resource": r} for k, r in sorted(first.included.items())]
    entries += [{"fullUrl": f"{base}DocumentReference/{d['id']}", "resource": d} for d in first.documents if _when(d) <= at]
    consents = [v for v in (_as_of(consent_history[f"Consent/{c['id']}"], at) for c in first.consents) if v is not None]
    entries += [{"fullUrl": f"{base}Consent/{c['id']}", "resource": c} for c in consents]
    verdict = records_verdict({"resourceType": "Bundle", "type": "collection", "entry": entries}, now, source=base)

    def decided_by(where: str | None) -> str | None:
        """``Consent/ID/_history/V`` (the version judged) for a place ``Bundle.entry[N].resource...``."""
        if not where or not where.startswith("Bundle.entry["):
            return None
        index = where.removeprefix("Bundle.entry[").partition("]")[0]
        return _ref(entries[int(index)]["resource"]) if index.isdigit() and int(index) < len(entries) else None

    return [(w.record_id, w.kind, w.reason, decided_by(w.provision) or decided_by(w.where)) for w in verdict.withheld]


def _transfer_events(first: _Side, expert: _Side, case_id: str, consent_history: Mapping[str, list[Resource]]) -> list[Event]:
    """Records sent (each records-out Provenance on the expert's server) and withheld (the policy, as of then)."""
    events = []
    source_prefix = f"{first.base}/ServiceRequest/"
    docs = {f"DocumentReference/{d['id']}": d for d in expert.documents}
    sent_before: set[str] = set()
    withheld_before: set[tuple[str, str]] = set()
    for provenance in _provenances(expert, [expert.request_ref, *docs]):
        if not _entity_source(provenance).startswith(source_prefix):
            continue
        targets = [t for t in (_local((x or {}).get("reference"), expert.base) for x in provenance.get("target") or []) if t]
        records = sorted(t for t in targets if t in docs)
        new = [t for t in records if t not in sent_before]
        sent_before.update(records)
        shown = ", ".join(f"{expert.record_id(docs[t], case_id)} ({_kind_of(docs[t].get('type'))})" for t in new) or "no new record"
        count = f"{len(records)} record(s) on the expert's server" + (f", {len(new)} new" if len(new) != len(records) else "")
        events.append(expert.event(provenance, "records-sent", f"records sent from the first physician's server ({count}): {shown}"))
        for record_id, kind, why, decided in _withheld_then(first, case_id, consent_history, provenance):
            if (record_id, why) in withheld_before:
                continue
            withheld_before.add((record_id, why))
            # at the transfer's time; the reference is what decided, on the first server (the consent's version)
            events.append(Event(_when(provenance), first.base, "first", "records-withheld",
                                f"record {record_id} ({kind}) withheld: {why}", decided))
    return events


def _task_outputs(task: Mapping[str, Any], code: str) -> list[Mapping[str, Any]]:
    return [o for o in task.get("output") or [] if isinstance(o, dict) and io_type(o) == code]


def _task_inputs(task: Mapping[str, Any], code: str) -> list[Mapping[str, Any]]:
    return [i for i in task.get("input") or [] if isinstance(i, dict) and io_type(i) == code]


def _business(task: Mapping[str, Any]) -> str:
    for system, code in _codes(task.get("businessStatus")):
        if system == term.CS_TASK_STATUS:
            return code
    return ""


def _notes(task: Mapping[str, Any]) -> list[str]:
    return [str(n["text"]) for n in task.get("note") or [] if isinstance(n, dict) and isinstance(n.get("text"), str)]


def _task_text(version: Mapping[str, Any], before: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """(kind, sentence) for one Task version; None when nothing a person follows changed."""
    status, business = str(version.get("status")), _business(version)
    asked = sorted({requested_kind(o.get("valueCodeableConcept")) or _kind_of(o.get("valueCodeableConcept"))
                    for o in _task_outputs(version, "records-requested")})
    records = len(_task_inputs(version, "record"))
    if before is None:
        text = f"Task created: {status} ({business or '-'}), {records} record(s) in its input"
        earlier = [_task_ref(i) for i in _task_inputs(version, "earlier-task")]
        if earlier:
            text += f"; follows the earlier opinion's Task ({', '.join(earlier)})"
        if version.get("priority") == "stat":
            text += f"; {_STAT}"
        return "task", text
    if (status, business) == (str(before.get("status")), _business(before)):
        added = records - len(_task_inputs(before, "record"))
        if added > 0:
            return "task", f"{added} more record(s) added to the Task's input ({records} in all)"
        return None
    if status == "on-hold" and asked:
        note = "; ".join(_notes(version))
        return "records-asked", f"more records asked: {', '.join(asked)}" + (f" (note: {note})" if note else "") + f"; Task on-hold ({business or '-'})"
    text = f"Task {status} ({business or '-'})"
    if status == "rejected":
        reason = (version.get("statusReason") or {}).get("text")
        text += f": {reason}" if reason else ""
    if status == "completed":
        opinion = [_task_ref(o) for o in _task_outputs(version, "opinion")]
        text += f": the opinion {', '.join(opinion)}" if opinion else ""
    if str(before.get("status")) == "on-hold":
        text += f", back from on-hold ({records} record(s) in its input)"
    return "task", text


def _task_ref(item: Mapping[str, Any]) -> str:
    """A Task input's or output's reference as a person reads it: ``Type/id``, or the Task of case X."""
    value = item.get("valueReference")
    if not isinstance(value, dict):
        return "?"
    if isinstance(value.get("reference"), str):
        return str(value["reference"])
    ident = value.get("identifier") or {}
    if ident.get("system") == term.SID_TASK and ident.get("value"):
        return f"the Task of case {ident['value']}"
    return str(value.get("display") or "?")


def _task_events(expert: _Side, case_id: str) -> tuple[list[Event], dict[str, Any] | None]:
    tasks, _ = _search(expert.client, "Task", {"identifier": f"{term.SID_TASK}|{case_id}"})
    events: list[Event] = []
    now = None
    for task in sorted(tasks, key=lambda t: str(t.get("id"))):
        before: Resource | None = None
        for version in expert.history(task):
            said = _task_text(version, before)
            if said is not None:
                events.append(expert.event(version, *said))
            before = version
        now = {"reference": f"Task/{task['id']}", "version": _version(task), "status": task.get("status"),
               "business_status": _business(task) or None, "priority": task.get("priority") or "routine"}
    return events, now


def _report_events(side: _Side, kind: str) -> list[Event]:
    events = []
    for report in sorted(side.reports, key=lambda r: str(r.get("id"))):
        before: Resource | None = None
        for version in side.history(report):
            concordance = [c for s, c in _codes(version.get("conclusionCode")) if s == term.CS_CONCORDANCE]
            status = version.get("status")
            if before is not None and status == before.get("status"):
                before = version
                continue
            shown = f"{status}" + (f", concordance {concordance[0]}" if concordance else "")
            if kind == "opinion":
                text = f"opinion written on the second-opinion server ({shown})" if before is None else f"opinion now {shown}"
            else:
                text = f"the opinion arrived back on the first physician's server ({shown})" if before is None else f"the opinion there now {shown}"
            events.append(side.event(version, kind, text))
            before = version
    return events


# -- the timeline --------------------------------------------------------------------------------


def case_timeline(first: FhirClient, case_id: str, *, expert: FhirClient | None = None) -> Timeline:
    """The case's timeline from the first physician's server and, optionally, the expert's.

    CaseNotFoundError (exit 2) when the first server has no ServiceRequest with this case id; a
    case not (yet) on the expert's server is a note, not an error. Server failures raise
    :class:`fhir_so.errors.ServerError` (exit 3).
    """
    if not isinstance(case_id, str) or not FHIR_ID_RE.fullmatch(case_id):
        raise InputError(f"the case id must be a FHIR id (1-64 of A-Z a-z 0-9 - .), got {str(case_id)[:80]!r}")
    if expert is not None and expert.base_url == first.base_url:
        raise InputError("the first physician's server and the expert's are the same: give two servers, or no --expert")
    home = _read_side(first, "first", case_id)
    if home is None:
        raise CaseNotFoundError(f"{first.base_url} has no ServiceRequest with case id {case_id}", server=first.base_url, case_id=case_id)
    consent_history = {f"Consent/{c['id']}": home.history(c) for c in home.consents}
    events = _request_events(home) + _consent_events(home, case_id, consent_history) + _report_events(home, "report-back")
    notes: list[str] = []
    task = None
    request: dict[str, str | None] = {"first": home.request_ref, "expert": None}
    away = _read_side(expert, "expert", case_id) if expert is not None else None
    if expert is not None and away is None:
        notes.append(f"case {case_id} is not on {expert.base_url}: no records have been sent there yet")
    if away is not None:
        request["expert"] = away.request_ref
        task_events, task = _task_events(away, case_id)
        events += _request_events(away) + _transfer_events(home, away, case_id, consent_history) + task_events + _report_events(away, "opinion")
    stat = home.request.get("priority") == "stat" or (task is not None and task.get("priority") == "stat")
    return Timeline(case_id, first.base_url, expert.base_url if expert else None, stat, request, task,
                    tuple(sorted(events, key=lambda e: e.key)), tuple(notes))


def watch(
    read: Callable[[], Timeline],
    every: float,
    emit: Callable[[Timeline, list[Event]], None],
    *,
    sleep: Callable[[float], None] = time.sleep,
    rounds: int | None = None,
) -> None:
    """Read the timeline every ``every`` seconds and hand ``emit`` the events not seen before
    (all of them the first time), until interrupted (KeyboardInterrupt goes to the caller) or
    after ``rounds`` reads."""
    seen: set[tuple[str, int, str, str, str]] = set()
    done = 0
    while rounds is None or done < rounds:
        if done:
            sleep(every)
        timeline = read()
        new = [e for e in timeline.events if e.key not in seen]
        seen.update(e.key for e in new)
        emit(timeline, new)
        done += 1
