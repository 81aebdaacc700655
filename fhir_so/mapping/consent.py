"""Consent: the patient's permission to disclose records out, or the report back."""

from __future__ import annotations

from typing import Literal

from fhir_so import terminology as term
from typing import cast

from fhir_so.case import Consent, ConsentStatus, Party, Period, RecordKind
from fhir_so.errors import InputError
from fhir_so.mapping.common import PATIENT, SERVICE_REQUEST, RefFor, Resource, codings, identifier, party_key, reference, with_profile
from fhir_so.mapping.graph import Graph, Node
from fhir_so.mapping.parties import party_from_fhir

Purpose = Literal["records", "report"]

# FHIR R4 Consent has no "revoked" status: a revoked consent is "inactive" (terminated).
_STATUS_TO_FHIR = {"draft": "draft", "proposed": "proposed", "active": "active", "rejected": "rejected", "revoked": "inactive"}
_STATUS_FROM_FHIR = {v: k for k, v in _STATUS_TO_FHIR.items()}


def consent_to_fhir(consent: Consent, purpose: Purpose, case_id: str, recipient: Party, ref_for: RefFor) -> Resource:
    """``recipient`` is the consent's own, or the case's default for this purpose."""
    provision: Resource = {"type": consent.decision}
    period = {k: v for k, v in (("start", consent.period.start), ("end", consent.period.end)) if v}
    if period:
        provision["period"] = period
    provision["actor"] = [{"role": term.ROLE_RECIPIENT.concept(), "reference": reference(ref_for, party_key(recipient))}]
    provision["action"] = [term.ACTION_DISCLOSE.concept()]
    provision["purpose"] = [term.PURPOSE_TREATMENT.coding()]
    if purpose == "records":
        provision["class"] = [{"system": term.RESOURCE_TYPES, "code": "DocumentReference"}]
        if consent.record_kinds:
            provision["code"] = [term.RECORD_TYPES[k].concept() for k in consent.record_kinds]
        profile = term.SD_CONSENT_RECORDS
    else:
        provision["class"] = [{"system": term.RESOURCE_TYPES, "code": "DiagnosticReport"}]
        provision["code"] = [term.CONSULT_NOTE.concept()]
        profile = term.SD_CONSENT_REPORT
    # What the consent covers is this case: records related to its request (context.related),
    # the opinion based on it. Without this, a patient's consent for one case would reach every
    # other case with the same recipient (FHIR reads a Consent for all of the patient's data).
    provision["data"] = [{"meaning": "related", "reference": reference(ref_for, SERVICE_REQUEST)}]
    resource: Resource = {
        "resourceType": "Consent",
        "identifier": [identifier(term.SID_CONSENT, f"{case_id}-{purpose}")],
        "status": _STATUS_TO_FHIR[consent.status],
        "scope": term.CONSENT_SCOPE_PRIVACY.concept(),
        "category": [term.CONSENT_CATEGORY.concept()],
        "patient": reference(ref_for, PATIENT),
        "dateTime": consent.date,
        "performer": [reference(ref_for, PATIENT)],
        "policyRule": term.CONSENT_POLICY_RULE.concept(),
        "provision": provision,
    }
    return with_profile(resource, profile)


def consent_purpose(resource: Resource) -> Purpose | None:
    """Records out or report back, told by what the provision covers."""
    classes = {c.get("code") for c in (resource.get("provision") or {}).get("class") or []}
    if "DiagnosticReport" in classes:
        return "report"
    if "DocumentReference" in classes or classes == set():
        return "records"
    return None


def consent_from_fhir(node: Node, graph: Graph) -> Consent:
    res, where, source = node.resource, node.where, graph.source
    status = _STATUS_FROM_FHIR.get(res.get("status", ""))
    if status is None:
        raise InputError(f"Consent status {res.get('status')!r} is not one fhir-so maps", source=source, location=f"{where}.status")
    provision = res.get("provision") or {}
    actors = [a for a in provision.get("actor") or [] if term.ROLE_RECIPIENT.code in {c.get("code") for c in codings([a.get("role") or {}])}]
    if not actors:
        raise InputError("Consent names no recipient (provision.actor with role IRCP)", source=source, location=f"{where}.provision.actor")
    recipient = party_from_fhir(graph.resolve(actors[0].get("reference"), f"{where}.provision.actor[0].reference"), source)
    kinds: list[RecordKind] = []
    if consent_purpose(res) == "records":
        for i, coding in enumerate(codings(provision.get("code"))):
            kind = term.RECORD_KIND_BY_LOINC.get(coding.get("code", "")) if coding.get("system") == term.LOINC else None
            if kind is None:
                raise InputError(f"record kind {coding.get('code')!r} is not one fhir-so knows", source=source, location=f"{where}.provision.code[{i}]")
            kinds.append(cast(RecordKind, kind))
    period = provision.get("period") or {}
    date = res.get("dateTime")
    if not date:
        raise InputError("Consent needs a dateTime", source=source, location=f"{where}.dateTime")
    return Consent(
        status=cast(ConsentStatus, status),
        decision=provision.get("type", "permit"),
        date=date,
        period=Period(start=period.get("start"), end=period.get("end")),
        recipient=recipient,
        record_kinds=kinds,
    )
