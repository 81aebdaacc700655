"""transfer: copy a case between FHIR servers, only as far as the patient's consent allows.

Two directions; the case is named on the *source* server by its ServiceRequest's id
(``request_id``, ``--request``) or by its case id (``case_id``, ``--case``):

* ``records`` (default): first physician's server -> second-opinion server. The case is
  pulled, every privacy Consent of the patient checked by the one policy
  (:mod:`fhir_so.consent`: those the request links and those found by patient on the source), and the request,
  its consents, coverage and the permitted records are pushed as one transaction; withheld
  records and the opinion (which only ever flows back) stay behind.
* ``report`` (``--report-back``): second-opinion server -> first physician's server. Only
  the opinion (DiagnosticReport) goes, with the parties it names, and only when the report
  Consent permits it on both servers (the first physician's copy is the patient's own).
  The opinion's ``basedOn`` points to the request already on the destination through a
  conditional reference (``ServiceRequest?identifier=...``).

A records-out transfer also writes the referral's Task on the destination
(:func:`fhir_so.workflow.task.transfer_task_entry`): created ``requested`` the first time, its
inputs extended by the records sent later, its status never touched; the Task update carries
``ifMatch``, and a transfer that loses that race to the second physician's step plans again.

Ids are remapped by going through the canonical case: pull -> case -> build -> push. Every
entry is conditional on its identifier, so a repeat changes nothing. Each transfer then
writes a Provenance (:mod:`fhir_so.workflow.provenance`) keyed by a transfer id. The state
file (:mod:`fhir_so.workflow.state`) records each step, so a run killed at any point and
started again skips what is done and finishes: no record lost, none duplicated.

Records out also answers the second physician's *ask* (:func:`answer_ask`): when the case's Task
on the destination is on hold with ``records-requested`` outputs, the kinds the consent now
allows have gone with the transfer, and the Task goes back to the status it had before the ask;
a kind the consent does not allow is named (:class:`Unmet`) with the consent and the provision
that left it behind, in :attr:`TransferResult.ask`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from typing import Any, Literal

import orjson

from fhir_so import terminology as term
from fhir_so.bundle import build_bundle
from fhir_so.case import Case, Party
from fhir_so.client import FhirClient
from fhir_so.consent import Verdict, Withheld, item_kind, records_verdict, report_verdict, request_of, require
from fhir_so.errors import CaseNotFoundError, ConsentError, InputError, PreconditionFailed, ServerError
from fhir_so.mapping.task import io_type, requested_kind
from fhir_so.references import iter_references, rewrite_references
from fhir_so.workflow.clock import Clock, utc_now
from fhir_so.workflow.clock import instant as _instant
from fhir_so.workflow.provenance import provenance_bundle
from fhir_so.workflow.pull import case_of, find_request_id, privacy_consents, pull_bundle, pull_with_consents
from fhir_so.workflow.push import PushResult, classify_entry, push
from fhir_so.workflow.state import StateStore, TransferState
from fhir_so.workflow.task import find_task, task_accept, task_history, task_start, transfer_task_entry

__all__ = ["AskAnswer", "Direction", "Plan", "TransferResult", "Unmet", "answer_ask", "patient_consents", "plan_transfer", "transfer", "utc_now"]

Direction = Literal["records", "report"]

# Fixed namespace for transfer ids derived from content (runs without a state file).
_TRANSFER_NS = uuid.UUID("0d7f6b1e-9c2a-5e4b-a3f8-71c5e2d90b64")
_SHARED = frozenset({"Patient", "Practitioner", "Organization"})


@dataclass(frozen=True)
class Plan:
    """What a transfer will send, what stays behind and why; computed before anything is written."""

    direction: Direction
    case_id: str
    source_url: str
    verdicts: tuple[Verdict, ...]
    moves: tuple[str, ...]
    withheld: tuple[Withheld, ...]
    not_sent: tuple[str, ...]
    stat: bool
    author: str | None
    bundle: dict[str, Any] = field(repr=False, compare=False)
    # False when planning saw no Task on hold on the destination, so no ask can be open and the
    # transfer need not look again; a plan read back from a state file does not know (True).
    ask_possible: bool = field(default=True, repr=False, compare=False)

    def to_state(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "source_url": self.source_url,
            "verdicts": [v.to_json() for v in self.verdicts],
            "moves": list(self.moves),
            "withheld": [{"record": w.record_id, "kind": w.kind, "reason": w.reason} for w in self.withheld],
            "not_sent": list(self.not_sent),
            "stat": self.stat,
            "author": self.author,
        }

    @classmethod
    def from_state(cls, direction: Direction, data: Mapping[str, Any]) -> Plan:
        return cls(
            direction=direction,
            case_id=str(data["case_id"]),
            source_url=str(data["source_url"]),
            verdicts=tuple(Verdict.from_json(v) for v in data.get("verdicts") or []),
            moves=tuple(data.get("moves") or []),
            withheld=tuple(Withheld(w["record"], w["kind"], w["reason"]) for w in data.get("withheld") or []),
            not_sent=tuple(data.get("not_sent") or []),
            stat=bool(data.get("stat")),
            author=data.get("author"),
            bundle={},
        )


@dataclass(frozen=True)
class TransferResult:
    """What a transfer did (or, with ``dry_run``, would do)."""

    direction: Direction
    source: str
    destination: str
    request_id: str
    plan: Plan
    dry_run: bool = False
    transfer_id: str | None = None
    push: PushResult | None = None
    provenance: str | None = None
    resumed_from: tuple[str, ...] = ()
    #: what this records-out transfer did about the second physician's ask (None: no ask was open)
    ask: AskAnswer | None = None

    @property
    def case_id(self) -> str:
        return self.plan.case_id

    @property
    def destination_request_id(self) -> str | None:
        """The ServiceRequest's id on the destination (records direction)."""
        return self.push.request_id if self.push else None

    def lines(self) -> list[str]:
        """The plan and the outcome as lines a person reads."""
        p = self.plan
        head = "plan (dry run, nothing written)" if self.dry_run else "transfer"
        what = "records out" if p.direction == "records" else "report back"
        out = [f"{head}: {what} of case {p.case_id}: {self.source} -> {self.destination}"]
        if p.stat:
            out.append("  FLAG: stat request: an emergency must not wait for this opinion")
        out += [f"  consent: {v.reason}" for v in p.verdicts]
        out += [f"  moves: {m}" for m in p.moves]
        out += [f"  withheld: record {w.record_id} ({w.kind}): {w.reason}" for w in p.withheld]
        out += [f"  not sent: {n}" for n in p.not_sent]
        if self.resumed_from:
            out.append(f"  resumed: steps already done by an earlier run: {', '.join(self.resumed_from)}")
        if self.push is not None:
            out.append(f"  {self.push.summary()}")
            out += [f"    {e.resource_type}/{e.id} v{e.version} {e.outcome}" for e in self.push.entries]
        if self.provenance:
            out.append(f"  provenance: {self.provenance} (transfer {self.transfer_id})")
        if self.ask is not None:
            out += self.ask.lines()
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "direction": self.plan.direction,
            "case_id": self.plan.case_id,
            "source": self.source,
            "destination": self.destination,
            "request_id": self.request_id,
            "dry_run": self.dry_run,
            **{k: v for k, v in self.plan.to_state().items() if k not in ("case_id", "author")},
            "transfer_id": self.transfer_id,
            "push": self.push.to_json() if self.push else None,
            "destination_request_id": self.destination_request_id,
            "provenance": self.provenance,
            "resumed_from": list(self.resumed_from),
            "ask": self.ask.to_json() if self.ask is not None else None,
        }


# -- planning ----------------------------------------------------------------------------


def _identifier_key(party: Party) -> str:
    return f"{party.identifier.system}|{party.identifier.value}"


def _record_label(case: Case, record_id: str) -> str:
    kind = next(r.kind for r in case.records if r.id == record_id)
    return f"DocumentReference {record_id} ({kind})"


def _case_id(bundle: Mapping[str, Any]) -> str:
    request = request_of(bundle) or {}
    for ident in request.get("identifier") or []:
        if ident.get("system") == term.SID_CASE and isinstance(ident.get("value"), str):
            return str(ident["value"])
    return str(request.get("id"))


def patient_consents(client: FhirClient, bundle: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every privacy Consent the server holds for the request's patient, linked from the request or
    not, with the actors they name (so the policy compares recipients by identifier, not by guess)."""
    return privacy_consents(client, request_of(bundle) or {})


def _case_view(bundle: Mapping[str, Any], record_ids: set[str], case_id: str) -> dict[str, Any]:
    """The pulled bundle as the case model reads it: without the withheld records, and without the
    Consents other systems wrote (the policy has judged them; the case model holds fhir-so's own two)."""
    idents = {f"{case_id}/{r}" for r in record_ids}
    own = {f"{case_id}-records", f"{case_id}-report"}

    def values(resource: Mapping[str, Any], system: str) -> set[Any]:
        return {i.get("value") for i in resource.get("identifier") or [] if isinstance(i, dict) and i.get("system") == system}

    def dropped(resource: Mapping[str, Any]) -> bool:
        if resource.get("resourceType") == "Consent":
            return not values(resource, term.SID_CONSENT) & own
        if resource.get("resourceType") != "DocumentReference":
            return False
        found = values(resource, term.SID_RECORD)
        return bool(found & idents) or (not found and resource.get("id") in record_ids)

    entries = bundle.get("entry") or []
    gone = {f"{e['resource'].get('resourceType')}/{e['resource'].get('id')}" for e in entries if dropped(e["resource"])}
    gone |= {e.get("fullUrl") for e in entries if dropped(e["resource"])}
    kept = []
    for entry in entries:
        resource = entry["resource"]
        if dropped(resource):
            continue
        if resource.get("resourceType") == "ServiceRequest" and resource.get("supportingInfo"):
            info = [i for i in resource["supportingInfo"] if not (isinstance(i, dict) and i.get("reference") in gone)]
            entry = {**entry, "resource": {**resource, "supportingInfo": info}}
        kept.append(entry)
    return {**bundle, "entry": kept}


def _plan_records(source: FhirClient, destination: FhirClient, request_id: str, now: dt.datetime) -> Plan:
    # one pass for the case and the patient's consents (the consent search's answer serves both)
    pulled, consents = pull_with_consents(source, request_id=request_id)
    verdict = require(records_verdict(pulled, now, consents=consents, source=f"{source.base_url}/"), _case_id(pulled))
    case = case_of(_case_view(pulled, {w.record_id for w in verdict.withheld}, _case_id(pulled)), source.base_url)
    # The destination's Task is the destination's: the source's copy (if any) never travels.
    outgoing = case.model_copy(update={"records": [r for r in case.records if r.id in verdict.moves], "opinion": None, "task": None})
    bundle = build_bundle(outgoing)
    task = transfer_task_entry(destination, outgoing, bundle, _instant(now))
    if task.entry is not None:
        bundle["entry"].append(task.entry)
    moves = ["ServiceRequest (the request)"]
    moves += [f"Consent ({purpose})" for purpose, c in (("records", case.records_consent), ("report", case.report_consent)) if c]
    if case.insurance is not None:
        moves.append("Coverage")
    moves += [_record_label(case, r) for r in verdict.moves]
    if task.line:
        moves.append(task.line)
    not_sent = []
    if case.opinion is not None:
        not_sent.append("the opinion (DiagnosticReport): it only goes back to the first physician, with --report-back")
    return Plan(
        "records",
        case.case_id,
        f"{source.base_url}/ServiceRequest/{request_id}",
        (verdict,),
        tuple(moves),
        verdict.withheld,
        tuple(not_sent),
        case.is_stat,
        _identifier_key(case.requester),
        bundle,
        ask_possible=task.found_status == "on-hold",
    )


def _plan_report(source: FhirClient, destination: FhirClient, request_id: str, now: dt.datetime) -> Plan:
    pulled = pull_bundle(source, request_id=request_id)
    case = case_of(_case_view(pulled, set(), _case_id(pulled)), source.base_url)
    if case.opinion is None:
        raise InputError(f"case {case.case_id} has no opinion (DiagnosticReport) on {source.base_url} yet: nothing to report back")
    try:
        home = pull_bundle(destination, case_id=case.case_id)
    except CaseNotFoundError:
        raise InputError(
            f"case {case.case_id} is not on {destination.base_url}: the report goes back to the server the request came from"
        ) from None
    # Both copies must permit it: the first physician's server holds the patient's own consents.
    verdicts = []
    for where, client, which in ((destination.base_url, destination, home), (source.base_url, source, pulled)):
        verdict = report_verdict(which, now, consents=patient_consents(client, which), source=f"{where}/")
        if not verdict.allowed:
            raise ConsentError(f"case {case.case_id}: nothing was sent: {verdict.reason} (as recorded on {where})")
        verdicts.append(Verdict(verdict.purpose, True, f"{verdict.reason} (on {where})"))
    return Plan(
        "report",
        case.case_id,
        f"{source.base_url}/ServiceRequest/{request_id}",
        tuple(verdicts),
        (f"DiagnosticReport (the opinion: {case.opinion.status}, {case.opinion.concordance})",),
        (),
        ("the request, consents and records: they came from the destination",),
        case.is_stat,
        _identifier_key(case.performer),
        _only(build_bundle(case), "DiagnosticReport"),
    )


def _only(bundle: Mapping[str, Any], keep_type: str) -> dict[str, Any]:
    """The entries of ``keep_type`` and the parties they name; other references become conditional ones."""
    entries = list(bundle.get("entry") or [])
    by_url = {e["fullUrl"]: e for e in entries}
    kept = [e for e in entries if e["resource"]["resourceType"] == keep_type]
    wanted: set[str] = set()
    rewrite: dict[str, str] = {}
    for entry in kept:
        for ref, _ in iter_references(entry["resource"]):
            target = by_url.get(ref)
            if target is None:
                continue
            if target["resource"]["resourceType"] in _SHARED:
                wanted.add(ref)
            else:
                rtype, query = target["request"]["url"].split("?", 1)
                rewrite[ref] = f"{rtype}?{query}"
    parties = [e for e in entries if e["fullUrl"] in wanted]
    return {"resourceType": "Bundle", "type": "transaction", "entry": parties + [rewrite_references(e, rewrite) for e in kept]}


def _request_id(source: FhirClient, request_id: str | None, case_id: str | None) -> str:
    """The source's ServiceRequest id, given it or the case id (exactly one of them)."""
    if (request_id is None) == (case_id is None):
        raise InputError("name the case by exactly one of request_id (the ServiceRequest's server id) or case_id")
    return request_id if request_id is not None else find_request_id(source, str(case_id))


def plan_transfer(
    source: FhirClient,
    destination: FhirClient,
    request_id: str | None = None,
    *,
    case_id: str | None = None,
    report_back: bool = False,
    clock: Clock = utc_now,
) -> Plan:
    """Pull and check consent; raise ConsentError when nothing may move. Reads only.

    The case is named on ``source`` by ``request_id`` or ``case_id`` (exactly one).
    """
    request_id = _request_id(source, request_id, case_id)
    now = clock()
    if report_back:
        return _plan_report(source, destination, request_id, now)
    return _plan_records(source, destination, request_id, now)


# -- answering the second physician's ask ---------------------------------------------------


@dataclass(frozen=True)
class Unmet:
    """A record kind the second physician asked for that did not go, and exactly why."""

    kind: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "reason": self.reason}


@dataclass(frozen=True)
class AskAnswer:
    """What a records-out transfer did about an open ask: the destination's Task on hold with
    ``records-requested`` outputs. ``resumed`` is the status the Task went back to (None: it stays
    on hold, and ``held`` says why)."""

    task: str
    asked: tuple[str, ...]
    sent: tuple[str, ...]
    unmet: tuple[Unmet, ...]
    resumed: str | None
    held: str | None = None
    dry_run: bool = False

    @property
    def answered(self) -> bool:
        """Every kind asked for went (the consent allowed it and the first physician has such records)."""
        return not self.unmet

    def lines(self) -> list[str]:
        would = "would " if self.dry_run else ""
        out = [f"  ask: {self.task} is on hold for more records: {', '.join(self.asked)}"]
        if self.sent:
            out.append(f"  ask: {would}send now: {', '.join(self.sent)}")
        out += [f"  ask: NOT ANSWERED for {u.kind}: {u.reason}" for u in self.unmet]
        if self.resumed:
            out.append(f"  ask: answered; {self.task} {'would go' if self.dry_run else 'went'} back to {self.resumed}")
        elif self.held:
            out.append(f"  ask: {self.task} stays on hold: {self.held}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "asked": list(self.asked),
            "sent": list(self.sent),
            "unmet": [u.to_json() for u in self.unmet],
            "answered": self.answered,
            "resumed": self.resumed,
            "held": self.held,
            "dry_run": self.dry_run,
        }


def _provision_name(where: str | None, pulled: Mapping[str, Any], base: str) -> str | None:
    """``Consent/ID.provision...`` for a provision's place in the pulled bundle or on the server."""
    if not where:
        return None
    if where.startswith("Bundle.entry["):
        index, _, rest = where.removeprefix("Bundle.entry[").partition("].resource")
        entries = pulled.get("entry") or []
        if index.isdigit() and int(index) < len(entries):
            resource = entries[int(index)].get("resource") or {}
            return f"{resource.get('resourceType')}/{resource.get('id')}{rest}"
    return where.removeprefix(base + "/")


def _status_before_hold(destination: FhirClient, task_id: str) -> str | None:
    """The status the Task had before it last went on hold (from its _history)."""
    before = None
    previous = None
    for event in task_history(destination, task_id):
        if event.status == "on-hold" and previous is not None and previous != "on-hold":
            before = previous
        previous = event.status
    return before


def answer_ask(
    source: FhirClient,
    destination: FhirClient,
    request_id: str,
    *,
    case_id: str | None = None,
    clock: Clock = utc_now,
    dry_run: bool = False,
) -> AskAnswer | None:
    """Answer the second physician's ask, after a records-out transfer (None: no ask is open).

    An ask is open when the case's Task on ``destination`` is ``on-hold`` with ``records-requested``
    outputs. Each kind asked for is answered when the consent policy lets at least one record of
    that kind of the case on ``source`` go (the transfer has sent it, and added it to the Task's
    input). A kind that cannot go is :class:`Unmet` with the reason: the consent that left it
    behind and the provision that decided, or that the first physician holds no such record.
    When every kind is answered the Task goes back (``If-Match`` on its version, through
    :func:`fhir_so.workflow.task.task_accept` / ``task_start``) to the status it had before the
    ask: ``accepted`` or ``in-progress``. A Task that was still ``requested`` stays on hold: the
    state machine has no way back to requested, and accepting is the second physician's call.
    """
    if case_id is None:
        case_id = _case_id({"entry": [{"resource": source.read("ServiceRequest", request_id)}]})
    task = find_task(destination, case_id, required=False)
    if task is None or task.get("status") != "on-hold":
        return None
    asked = list(dict.fromkeys(k for k in (requested_kind(o.get("valueCodeableConcept")) for o in task.get("output") or []
                                           if isinstance(o, dict) and io_type(o) == "records-requested") if k))
    if not asked:
        return None
    task_ref = f"Task/{task.get('id')}"
    pulled, consents = pull_with_consents(source, request_id=request_id)
    verdict = records_verdict(pulled, clock(), consents=consents, source=f"{source.base_url}/")
    kinds: dict[str, list[str]] = {}
    for entry in pulled.get("entry") or []:
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "DocumentReference":
            kind, _ = item_kind(resource)
            kinds.setdefault(kind or "unknown", []).append(_record_of(resource, case_id))
    withheld = {w.record_id: w for w in verdict.withheld}
    sent, unmet = [], []
    for kind in asked:
        records = sorted(kinds.get(kind, []))
        if not verdict.allowed:
            unmet.append(Unmet(kind, f"{verdict.reason} (nothing was sent)"))
        elif any(r in verdict.moves for r in records):
            sent.append(kind)
        elif not records:
            unmet.append(Unmet(kind, f"{source.base_url} holds no {kind} record for case {case_id}: there is nothing to send"))
        else:
            first = next((withheld[r] for r in records if r in withheld), None)
            why = first.reason if first is not None else "the consent policy did not let it go"
            where = _provision_name(first.provision, pulled, source.base_url) if first is not None else None
            unmet.append(Unmet(kind, f"record(s) {', '.join(records)} withheld: {why}" + (f" (decided at {where})" if where else "")
                               + f"; the patient's consent must permit {kind} records for {case_id}"))
    if unmet:
        return AskAnswer(task_ref, tuple(asked), tuple(sent), tuple(unmet), None, "not every kind asked for can be sent", dry_run)
    before = _status_before_hold(destination, str(task["id"]))
    if before not in ("accepted", "in-progress"):
        why = (f"it was {before or 'requested'} before the ask, and on-hold goes back only to accepted or in-progress: "
               f"the second physician accepts it (fhir-so task accept)")
        return AskAnswer(task_ref, tuple(asked), tuple(sent), (), None, why, dry_run)
    if not dry_run:
        step = task_start if before == "in-progress" else task_accept
        step(destination, case_id, clock=clock)
    return AskAnswer(task_ref, tuple(asked), tuple(sent), (), before, None, dry_run)


def _record_of(resource: Mapping[str, Any], case_id: str) -> str:
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == term.SID_RECORD and isinstance(ident.get("value"), str):
            return str(ident["value"]).removeprefix(f"{case_id}/")
    return str(resource.get("id"))


# -- running -----------------------------------------------------------------------------


# A transfer whose Task update keeps losing to the second physician's steps gives up after this many tries.
_TASK_RACE_ATTEMPTS = 3


def _updates_a_task(bundle: Mapping[str, Any]) -> bool:
    return any((e.get("request") or {}).get("ifMatch") and (e.get("resource") or {}).get("resourceType") == "Task"
               for e in bundle.get("entry") or [])


def _derived_id(key: Mapping[str, str], bundle: Mapping[str, Any]) -> str:
    """Same transfer of the same content -> same id, so even a run without a state file never duplicates."""
    # The Task entry is left out: it carries the time of the run (authoredOn, lastModified) and
    # whether the destination had a Task yet, neither of which makes it another transfer.
    content = {**bundle, "entry": [e for e in bundle.get("entry") or [] if (e.get("resource") or {}).get("resourceType") != "Task"]}
    digest = hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()
    name = "|".join([key["direction"], key["source"], key["request"], key["destination"], digest])
    return str(uuid.uuid5(_TRANSFER_NS, name))


def _author_reference(pushed: PushResult, identifier: str | None) -> str | None:
    for entry in pushed.entries:
        if entry.identifier == identifier and entry.resource_type in ("Practitioner", "Organization"):
            return entry.reference
    return None


def _write_provenance(destination: FhirClient, state: TransferState, plan: Plan, pushed: PushResult) -> str:
    if state.transfer_id is None or state.recorded is None:
        raise ValueError("the transfer id and time are fixed before anything is written")
    bundle = provenance_bundle(
        transfer_id=state.transfer_id,
        recorded=state.recorded,
        targets=[f"{e.reference}/_history/{e.version}" if e.version else e.reference for e in pushed.entries],
        source_url=plan.source_url,
        author=_author_reference(pushed, plan.author),
        description=f"fhir-so transfer ({plan.direction}) of case {plan.case_id}",
    )
    # Read entry by entry and located (a server may leave the location out of a matched conditional create).
    answer = destination.transaction_response(bundle)
    if len(answer) != 2:
        raise ServerError(f"{destination.base_url}: the Provenance transaction-response has {len(answer)} entries, expected 2")
    _, rtype, rid, _ = classify_entry(answer.requests[1], answer.responses[1])
    if rtype != "Provenance" or not rid:
        raise ServerError(f"{destination.base_url}: the Provenance transaction-response names no Provenance")
    return f"Provenance/{rid}"


def transfer(
    source: FhirClient,
    destination: FhirClient,
    request_id: str | None = None,
    *,
    case_id: str | None = None,
    state: str | PathLike[str] | StateStore | None = None,
    dry_run: bool = False,
    report_back: bool = False,
    clock: Clock = utc_now,
) -> TransferResult:
    """Copy a case (or, with ``report_back``, its opinion) from ``source`` to ``destination``.

    Consent is checked before anything is written (ConsentError, exit 1, when it refuses).
    ``state`` is a JSON file recording progress; a run killed part-way and started again with
    the same file completes the transfer without losing or duplicating anything. ``dry_run``
    plans and reports without writing anything, the state file included. The case is named
    on ``source`` by ``request_id`` (its ServiceRequest's server id) or by ``case_id``
    (exactly one; CaseNotFoundError when the source has no such case).
    """
    if source.base_url == destination.base_url:
        raise InputError("the source and destination servers are the same: a transfer copies between two servers")
    request_id = _request_id(source, request_id, case_id)
    direction: Direction = "report" if report_back else "records"
    key = {"direction": direction, "source": source.base_url, "destination": destination.base_url, "request": request_id}
    progress = TransferState.open(state, key)
    done_before = tuple(s for s in ("pulled", "pushed", "provenance", "done") if progress.done(s))

    def finished(plan: Plan, pushed: PushResult | None, provenance: str | None) -> TransferResult:
        # records out answers the second physician's ask, if one is open (after the records moved)
        # (a run that found everything done by an earlier one asks nothing: that transfer is over)
        ask = None
        if direction == "records" and "done" not in done_before and plan.ask_possible:
            ask = answer_ask(source, destination, request_id, case_id=plan.case_id, clock=clock, dry_run=dry_run)
        return TransferResult(direction, source.base_url, destination.base_url, request_id, plan, dry_run,
                              progress.transfer_id, pushed, provenance, done_before, ask)

    if progress.done("pushed") and not dry_run:
        try:
            plan = Plan.from_state(direction, progress.get("pulled"))
            pushed = PushResult.from_json(progress.get("pushed"))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"the state file is damaged ({type(exc).__name__}: {exc}); start over with a new --state file",
                             source=str(state), location="$.steps") from None
    else:
        plan = plan_transfer(source, destination, request_id, report_back=report_back, clock=clock)
        if dry_run:
            return finished(plan, None, None)
        progress.begin(_derived_id(key, plan.bundle), _instant(clock()))
        progress.mark("pulled", plan.to_state())
        for attempt in range(_TASK_RACE_ATTEMPTS):
            try:
                pushed = push(destination, plan.bundle)
                break
            except PreconditionFailed:
                # The only ifMatch in a records transaction is the Task's: the second physician moved
                # it between planning and pushing (nothing was written). Plan its inputs again.
                if attempt == _TASK_RACE_ATTEMPTS - 1 or not _updates_a_task(plan.bundle):
                    raise
                plan = plan_transfer(source, destination, request_id, report_back=report_back, clock=clock)
                progress.mark("pulled", plan.to_state())
        progress.mark("pushed", pushed.to_json())
    if progress.done("provenance"):
        provenance = str(progress.get("provenance").get("id"))
    else:
        provenance = _write_provenance(destination, progress, plan, pushed)
        progress.mark("provenance", {"id": provenance})
    if not progress.done("done"):
        progress.mark("done", {"at": _instant(clock())})
    return finished(plan, pushed, provenance)
