"""Consent scenarios as data: a small spec language, its FHIR Consents, and an independent oracle.

A scenario is a few Consents written the way other systems write them (nested provisions,
purposes, actions, several at once, linked from the request or only on the server), plus
optional changes to the records' codings. :func:`oracle` says which records may move, reading
the *spec* with a handful of plain rules written from FHIR R4 Consent and the issue, not the
policy module: when the policy and the oracle disagree, one of them is wrong, and a record that
moves where the oracle says it must not is a *violation*.

The base case is the urology example without its records consent (its report consent stays):
records ``plan`` (treatment-plan, restricted), ``questions`` (patient-questions),
``tumor-markers`` (lab-report), ``us-scrotum`` (imaging).
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fhir_so import terminology as term
from fhir_so.case import Case, load_case

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.timezone.utc)
OTHER_SYSTEM = "https://other-ehr.example.org/sid/consent"
STRANGER = {"system": "http://hl7.org/fhir/sid/us-npi", "value": "9999999999"}

LAB, IMAGING = term.RECORD_TYPES["lab-report"].code, term.RECORD_TYPES["imaging"].code

PERIODS = {
    "current": {"start": "2026-10-01", "end": "2027-12-31"},
    "expired": {"start": "2026-01-01", "end": "2026-10-31"},
    "future": {"start": "2026-12-01"},
    "today": {"start": "2026-10-01", "end": "2026-11-01"},  # a bare end date covers the whole day
    "lastsecond": {"start": "2026-10-01", "end": "2026-11-01T12:00:00Z"},  # the end's second is included
    "endedsecond": {"start": "2026-10-01", "end": "2026-11-01T11:59:59Z"},
    "none": None,
}
IN_PERIOD = {"current", "today", "lastsecond", "none"}


def base_case() -> Case:
    case = load_case(ROOT / "examples" / "urology-second-opinion.case.json")
    records = [r.model_copy(update={"restricted": r.id == "plan"}) for r in case.records]
    return case.model_copy(update={"records_consent": None, "opinion": None, "records": records})


BASE_KINDS = {r.id: r.kind for r in base_case().records}
RESTRICTED = {"plan"}


@dataclass(frozen=True)
class P:
    """One provision: ``type`` None means missing; the rest name a criterion or ``none``."""

    type: str | None = "permit"
    period: str = "current"
    actor: str = "performer"  # performer | performer-id | requester | stranger | display-only | author-role | none
    purpose: str = "TREAT"  # TREAT | HRESCH | HMARKT | COC | foreign | none
    action: str = "disclose"  # disclose | access | none
    cls: str = "DocumentReference"  # DocumentReference | DiagnosticReport | none
    kinds: tuple[str, ...] = ()  # record kinds named in provision.code
    label: bool = False  # provision.securityLabel = restricted
    data: str | None = None  # provision.data instance: one record id, or "other-request" (related: another case)
    nested: tuple[P, ...] = ()


@dataclass(frozen=True)
class C:
    """One Consent of the spec."""

    provision: P
    status: str = "active"
    patient: str = "self"  # self | other
    linked: bool = True
    scope: str = "patient-privacy"


@dataclass(frozen=True)
class Scenario:
    name: str
    consents: tuple[C, ...]
    codings: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = field(default=())  # record id -> (system, code)...


# -- the oracle: plain rules over the spec --------------------------------------------------------


def _kind_of(scenario: Scenario, rid: str) -> str | None:
    """None when the record's codings disagree or are not LOINC record types."""
    override = dict(scenario.codings).get(rid)
    if override is None:
        return BASE_KINDS[rid]
    kinds = {term.RECORD_KIND_BY_LOINC.get(code) if system == term.LOINC else None for system, code in override}
    return kinds.pop() if len(kinds) == 1 and None not in kinds else None


def _applies(p: P, rid: str | None, kind: str | None) -> bool | None:
    """True, False, or None (cannot be read). ``rid`` None asks about the step (any record at all)."""
    answers: list[bool | None] = []
    answers.append(p.period in IN_PERIOD)
    answers.append(p.cls in ("DocumentReference", "none"))
    if p.data == "other-request":
        answers.append(False)  # a consent for another case of the patient covers none of this one
    for limited, hit in ((bool(p.kinds), kind in p.kinds), (p.label, rid in RESTRICTED), (p.data not in (None, "other-request"), rid == p.data)):
        if limited:
            # for the step, a permit of some records opens it; a deny of some does not close it
            answers.append((p.type == "permit") if rid is None else hit)
    answers.append({"performer": True, "performer-id": True, "none": True, "requester": False, "stranger": False}.get(p.actor))
    answers.append(p.action in ("disclose", "none"))
    answers.append({"TREAT": True, "none": True, "HRESCH": False, "HMARKT": False, "COC": p.type == "deny"}.get(p.purpose))
    if False in answers:
        return False
    return None if None in answers else True


def _decide(p: P, rid: str | None, kind: str | None) -> str:
    if p.type is None:
        return "unreadable"
    applies = _applies(p, rid, kind)
    if applies is False:
        return "none"
    if applies is None:
        return "unreadable" if p.type == "deny" else "none"
    inner = [_decide(child, rid, kind) for child in p.nested]
    for decision in ("deny", "unreadable", "permit"):
        if decision in inner:
            return decision
    return p.type


def _combine(scenario: Scenario, rid: str | None, kind: str | None) -> str:
    counted = [c for c in scenario.consents if c.status == "active" and c.patient == "self" and c.scope == "patient-privacy"]
    decisions = [_decide(c.provision, rid, kind) for c in counted]
    for decision in ("deny", "unreadable", "permit"):
        if decision in decisions:
            return decision
    return "none"


def oracle(scenario: Scenario) -> frozenset[str] | None:
    """The records that may move, or None when the whole step is refused."""
    if _combine(scenario, None, None) != "permit":
        return None
    moved = set()
    for rid in BASE_KINDS:
        kind = _kind_of(scenario, rid)
        if kind is not None and _combine(scenario, rid, kind) == "permit":
            moved.add(rid)
    return frozenset(moved)


# -- the spec as FHIR ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refs:
    """How the Consents point at things: references valid where they will be stored."""

    patient: dict[str, Any]
    performer: dict[str, Any]
    requester: dict[str, Any]
    performer_identifier: dict[str, str]
    records: dict[str, dict[str, Any]]


def _coding(system: str, code: str) -> dict[str, str]:
    return {"system": system, "code": code}


def provision_json(p: P, refs: Refs) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if p.type is not None:
        out["type"] = p.type
    if PERIODS[p.period] is not None:
        out["period"] = PERIODS[p.period]
    role = {"coding": [_coding(term.V3_PARTICIPATION_TYPE, "IRCP")]}
    actors = {
        "performer": [{"role": role, "reference": refs.performer}],
        "performer-id": [{"role": role, "reference": {"identifier": refs.performer_identifier, "type": "Practitioner"}}],
        "requester": [{"role": role, "reference": refs.requester}],
        "stranger": [{"role": role, "reference": {"identifier": STRANGER, "type": "Practitioner"}}],
        "display-only": [{"role": role, "reference": {"display": "Dr. Somebody"}}],
        "author-role": [{"role": {"coding": [_coding(term.V3_PARTICIPATION_TYPE, "AUT")]}, "reference": refs.performer}],
        "none": [],
    }[p.actor]
    if actors:
        out["actor"] = actors
    if p.action != "none":
        out["action"] = [{"coding": [_coding(term.CONSENT_ACTION, p.action)]}]
    if p.purpose == "foreign":
        out["purpose"] = [_coding("https://other-ehr.example.org/purpose", "care")]
    elif p.purpose != "none":
        out["purpose"] = [_coding(term.V3_ACT_REASON, p.purpose)]
    if p.cls != "none":
        out["class"] = [_coding(term.RESOURCE_TYPES, p.cls)]
    if p.kinds:
        out["code"] = [{"coding": [_coding(term.LOINC, term.RECORD_TYPES[k].code)]} for k in p.kinds]
    if p.label:
        out["securityLabel"] = [_coding(term.RESTRICTED.system, term.RESTRICTED.code)]
    if p.data == "other-request":
        out["data"] = [{"meaning": "related", "reference": {"identifier": {"system": term.SID_CASE, "value": "another-case"}, "type": "ServiceRequest"}}]
    elif p.data is not None:
        out["data"] = [{"meaning": "instance", "reference": refs.records[p.data]}]
    if p.nested:
        out["provision"] = [provision_json(child, refs) for child in p.nested]
    return out


def consent_json(c: C, index: int, scenario: str, refs: Refs, patient_identifier: dict[str, str]) -> dict[str, Any]:
    patient = refs.patient if c.patient == "self" else {"identifier": {**patient_identifier, "value": "SOMEONE-ELSE"}}
    scope = {"patient-privacy": _coding(term.CONSENT_SCOPE, "patient-privacy"), "research": _coding(term.CONSENT_SCOPE, "research")}[c.scope]
    return {
        "resourceType": "Consent",
        "identifier": [{"system": OTHER_SYSTEM, "value": f"{scenario}-{index}"}],
        "status": c.status,
        "scope": {"coding": [scope]},
        "category": [{"coding": [_coding(term.LOINC, "59284-0")]}],
        "patient": patient,
        "dateTime": "2026-10-01T09:00:00Z",
        "policyRule": {"coding": [_coding(term.CONSENT_POLICY, "hipaa-auth")]},
        "provision": provision_json(c.provision, refs),
    }


# -- the table ---------------------------------------------------------------------------------------

permit = P()
deny = P(type="deny")
EVERY = frozenset(BASE_KINDS)

NAMED: list[Scenario] = [
    Scenario("plain-permit", (C(permit),)),
    Scenario("nested-deny-for-a-kind", (C(replace(permit, nested=(replace(deny, kinds=("lab-report",)),))),)),
    Scenario("nested-deny-for-everything", (C(replace(permit, nested=(P(type="deny", actor="none", purpose="none", action="none", cls="none"),))),)),
    Scenario("two-linked-deny-then-permit", (C(deny), C(permit))),
    Scenario("two-linked-permit-then-deny", (C(permit), C(deny))),
    Scenario("consent-of-another-patient", (C(permit, patient="other"),)),
    Scenario("purpose-research", (C(replace(permit, purpose="HRESCH")),)),
    Scenario("purpose-marketing", (C(replace(permit, purpose="HMARKT")),)),
    Scenario("action-access", (C(replace(permit, action="access")),)),
    Scenario("active-deny-not-linked", (C(permit), C(deny, linked=False))),
    Scenario("lab-first-imaging-second-under-lab-only", (C(replace(permit, kinds=("lab-report",))),),
             (("us-scrotum", ((term.LOINC, LAB), (term.LOINC, IMAGING))),)),
    Scenario("revoked", (C(permit, status="inactive"),)),
    Scenario("draft", (C(permit, status="draft"),)),
    Scenario("entered-in-error-deny-is-void", (C(permit), C(deny, status="entered-in-error"))),
    Scenario("expired", (C(replace(permit, period="expired")),)),
    Scenario("not-yet-valid", (C(replace(permit, period="future")),)),
    Scenario("bare-end-date-covers-the-day", (C(replace(permit, period="today")),)),
    Scenario("end-second-included", (C(replace(permit, period="lastsecond")),)),
    Scenario("end-second-passed", (C(replace(permit, period="endedsecond")),)),
    Scenario("wrong-recipient", (C(replace(permit, actor="requester")),)),
    Scenario("recipient-by-identifier-only", (C(replace(permit, actor="performer-id")),)),
    Scenario("recipient-unreadable", (C(replace(permit, actor="display-only")),)),
    Scenario("actor-role-not-ircp-on-a-deny", (C(permit), C(replace(deny, actor="author-role"), linked=False))),
    Scenario("provision-type-missing", (C(replace(permit, type=None)),)),
    Scenario("deny-with-permit-exception", (C(replace(deny, actor="none", nested=(permit,))),)),
    Scenario("unlinked-permit-counts", (C(permit, linked=False),)),
    Scenario("unlinked-deny-for-another-recipient", (C(permit), C(replace(deny, actor="stranger"), linked=False))),
    Scenario("nested-deny-expired-has-no-effect", (C(replace(permit, nested=(replace(deny, period="expired"),))),)),
    Scenario("deny-for-continuity-of-care", (C(permit), C(replace(deny, purpose="COC"), linked=False))),
    Scenario("deny-for-research-only", (C(permit), C(replace(deny, purpose="HRESCH"), linked=False))),
    Scenario("report-consent-class-only", (C(replace(permit, cls="DiagnosticReport")),)),
    Scenario("foreign-purpose-permit", (C(replace(permit, purpose="foreign")),)),
    Scenario("deny-restricted-label", (C(permit), C(replace(deny, label=True), linked=False))),
    Scenario("deny-one-record-instance", (C(replace(permit, nested=(replace(deny, data="questions"),))),)),
    Scenario("permit-only-imaging-and-lab", (C(replace(permit, kinds=("imaging", "lab-report"))),)),
    Scenario("record-with-a-snomed-coding", (C(permit),), (("tumor-markers", ((term.SNOMED, "4241000179101"),)),)),
    Scenario("research-scope-consent-ignored", (C(permit), C(deny, scope="research", linked=False))),
    Scenario("permit-for-another-request-of-the-patient", (C(replace(permit, data="other-request"), linked=False),)),
    Scenario("deny-for-another-request-of-the-patient", (C(permit), C(replace(deny, data="other-request"), linked=False))),
]

STATUSES = ("active", "inactive", "draft")
PERIOD_CHOICES = ("current", "expired", "future", "today")
ACTORS = ("performer", "performer-id", "requester", "stranger", "display-only")
PURPOSES = ("TREAT", "HRESCH", "COC", "none")
NESTINGS = ("flat", "deny-lab", "deny-all", "deny-lab-expired", "deny-root-permit-inside")
SEVERAL = ("one", "plus-unlinked-deny", "plus-unlinked-permit-stranger", "plus-linked-research-deny")


def _nesting(p: P, how: str) -> P:
    if how == "deny-lab":
        return replace(p, nested=(P(type="deny", actor="none", kinds=("lab-report",)),))
    if how == "deny-all":
        return replace(p, nested=(P(type="deny", actor="none", purpose="none", action="none", cls="none"),))
    if how == "deny-lab-expired":
        return replace(p, nested=(P(type="deny", actor="none", kinds=("lab-report",), period="expired"),))
    if how == "deny-root-permit-inside":
        return P(type="deny", actor="none", purpose="none", action="none", cls="none", period=p.period, nested=(replace(p, period="none"),))
    return p


def combinations() -> list[Scenario]:
    """status x period x actor x purpose x nesting x several consents."""
    out = []
    for status, period, actor, purpose, nesting, several in itertools.product(STATUSES, PERIOD_CHOICES, ACTORS, PURPOSES, NESTINGS, SEVERAL):
        main = C(_nesting(P(period=period, actor=actor, purpose=purpose), nesting), status=status)
        extra = {
            "one": (),
            "plus-unlinked-deny": (C(P(type="deny"), linked=False),),
            "plus-unlinked-permit-stranger": (C(P(actor="stranger"), linked=False),),
            "plus-linked-research-deny": (C(P(type="deny", purpose="HRESCH")),),
        }[several]
        out.append(Scenario(f"{status}-{period}-{actor}-{purpose}-{nesting}-{several}", (main, *extra)))
    return out
