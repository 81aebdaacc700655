"""ServiceRequest: the request for a second (or third) opinion, the case's anchor."""

from __future__ import annotations

from dataclasses import dataclass

from fhir_so import terminology as term
from fhir_so.case import Case, Coding, EarlierOpinion
from fhir_so.errors import InputError
from fhir_so.mapping.common import (
    COVERAGE,
    PATIENT,
    RECORDS_CONSENT,
    REPORT_CONSENT,
    RefFor,
    Resource,
    coding_from,
    coding_of,
    identifier,
    mode_codes,
    party_key,
    reference,
    with_profile,
)
from fhir_so.mapping.graph import Node


def service_request_to_fhir(case: Case, ref_for: RefFor) -> Resource:
    reasons = [term.SECOND_OPINION.concept()]
    reasons += [term.REASONS[r].concept() for r in case.reasons]
    reasons += [{"coding": [coding_of(c)]} for c in case.conditions]
    resource: Resource = {
        "resourceType": "ServiceRequest",
        "identifier": [identifier(term.SID_CASE, case.case_id)],
        "status": case.status,
        "intent": "order",
        "category": [term.CONSULTATION.concept()],
        "priority": case.priority,
        "code": term.CONFIRMATORY_CONSULTATION.concept(),
        "orderDetail": [{"coding": mode_codes(case.mode)}],
        "subject": reference(ref_for, PATIENT),
        "authoredOn": case.requested,
        "requester": reference(ref_for, party_key(case.requester)),
        "performer": [reference(ref_for, party_key(case.performer))],
        "reasonCode": reasons,
    }
    if case.insurance is not None:
        resource["insurance"] = [reference(ref_for, COVERAGE)]
    supporting = []
    if case.records_consent is not None:
        supporting.append(reference(ref_for, RECORDS_CONSENT))
    if case.report_consent is not None:
        supporting.append(reference(ref_for, REPORT_CONSENT))
    for earlier in case.earlier_opinions:
        ref: Resource = {"type": "DiagnosticReport", "identifier": identifier(term.SID_OPINION, earlier.case_id)}
        if earlier.summary:
            ref["display"] = earlier.summary
        supporting.append(ref)
    if supporting:
        resource["supportingInfo"] = supporting
    if case.questions:
        resource["note"] = [{"text": q} for q in case.questions]
    return with_profile(resource, term.SD_SERVICE_REQUEST)


@dataclass(frozen=True)
class RequestFields:
    """What the ServiceRequest alone tells of the case (references are resolved by the caller)."""

    case_id: str
    status: str
    requested: str
    priority: str
    mode: str
    reasons: list[str]
    conditions: list[Coding]
    questions: list[str]
    earlier_opinions: list[EarlierOpinion]


def service_request_fields(node: Node, source: str) -> RequestFields:
    res, where = node.resource, node.where
    case_id = next((i.get("value") for i in res.get("identifier") or [] if i.get("system") == term.SID_CASE), None)
    if not case_id:
        raise InputError(f"ServiceRequest has no case identifier ({term.SID_CASE})", source=source, location=f"{where}.identifier")
    reasons: list[str] = []
    conditions: list[Coding] = []
    for i, concept in enumerate(res.get("reasonCode") or []):
        for coding in concept.get("coding") or []:
            system, code = coding.get("system"), coding.get("code")
            if system == term.V2_0336:
                continue
            if system == term.CS_REASON:
                if code not in term.REASONS:
                    raise InputError(f"unknown so-reason code {code!r}", source=source, location=f"{where}.reasonCode[{i}]")
                reasons.append(code)
            elif system and code:
                conditions.append(coding_from(coding))
    modes = [c.get("code") for d in res.get("orderDetail") or [] for c in d.get("coding") or [] if c.get("system") == term.CS_MODE]
    if not modes or modes[0] not in term.MODES:
        raise InputError("ServiceRequest needs an so-mode code in orderDetail", source=source, location=f"{where}.orderDetail")
    earlier = []
    for info in res.get("supportingInfo") or []:
        ident = info.get("identifier") or {}
        if ident.get("system") == term.SID_OPINION and ident.get("value"):
            earlier.append(EarlierOpinion(case_id=ident["value"], summary=info.get("display")))
    if not res.get("authoredOn"):
        raise InputError("ServiceRequest needs authoredOn", source=source, location=f"{where}.authoredOn")
    return RequestFields(
        case_id=case_id,
        status=res.get("status", "active"),
        requested=res["authoredOn"],
        priority=res.get("priority", "routine"),
        mode=modes[0],
        reasons=reasons,
        conditions=conditions,
        questions=[n["text"] for n in res.get("note") or [] if n.get("text")],
        earlier_opinions=earlier,
    )
