"""Case <-> FHIR R4 resources, both ways and lossless.

``case_to_resources(case, ref_for)`` gives every resource of a case with the identifier
that keys it; ``case_from_graph(graph)`` reads a case back from resources whose
references resolve (a built bundle, or one pulled from a server). One module per resource
does the field-by-field work; this module only orders and wires them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fhir_so import terminology as term
from fhir_so.case import Case, Party, with_defaults
from fhir_so.errors import InputError
from fhir_so.mapping.common import (
    COVERAGE,
    OPINION,
    PATIENT,
    RECORDS_CONSENT,
    REPORT_CONSENT,
    SERVICE_REQUEST,
    RefFor,
    Resource,
    first_identifier,
    party_key,
    record_key,
)
from fhir_so.mapping.consent import consent_from_fhir, consent_purpose, consent_to_fhir
from fhir_so.mapping.coverage import coverage_from_fhir, coverage_to_fhir
from fhir_so.mapping.diagnostic_report import opinion_from_fhir, opinion_to_fhir
from fhir_so.mapping.document_reference import record_from_fhir, record_to_fhir
from fhir_so.mapping.graph import Graph, Node
from fhir_so.mapping.narrative import with_narrative
from fhir_so.mapping.parties import party_from_fhir, party_to_fhir, patient_from_fhir, patient_to_fhir
from fhir_so.mapping.service_request import service_request_fields, service_request_to_fhir
from fhir_so.mapping.task import TASK, find_tasks, task_from_fhir, task_to_fhir

__all__ = ["Graph", "Mapped", "Node", "case_from_graph", "case_to_resources", "find_requests"]


@dataclass(frozen=True)
class Mapped:
    """One resource of a case, the key naming it, and the identifier a server finds it by.

    ``shared`` resources (patient, physicians, services) belong to the clinic: a push only
    creates them when missing. The others belong to the case: a push creates or updates them.
    """

    key: str
    resource: Resource
    system: str
    value: str
    shared: bool


def _parties(case: Case) -> dict[str, Party]:
    found: dict[str, Party] = {}
    for party in case.parties():
        found.setdefault(party_key(party), party)
    return found


def case_to_resources(case: Case, ref_for: RefFor) -> list[Mapped]:
    """Every resource of the case, parties first, in a stable order."""
    case = with_defaults(case)
    out = [Mapped(PATIENT, patient_to_fhir(case.patient), case.patient.identifier.system, case.patient.identifier.value, True)]
    for key, party in _parties(case).items():
        out.append(Mapped(key, party_to_fhir(party), party.identifier.system, party.identifier.value, True))

    def owned(key: str, resource: Resource, system: str, value: str) -> None:
        out.append(Mapped(key, resource, system, value, False))

    cid = case.case_id
    owned(SERVICE_REQUEST, service_request_to_fhir(case, ref_for), term.SID_CASE, cid)
    if case.records_consent is not None and case.records_consent.recipient is not None:
        owned(RECORDS_CONSENT, consent_to_fhir(case.records_consent, "records", cid, case.records_consent.recipient, ref_for), term.SID_CONSENT, f"{cid}-records")
    if case.report_consent is not None and case.report_consent.recipient is not None:
        owned(REPORT_CONSENT, consent_to_fhir(case.report_consent, "report", cid, case.report_consent.recipient, ref_for), term.SID_CONSENT, f"{cid}-report")
    if case.insurance is not None:
        owned(COVERAGE, coverage_to_fhir(case.insurance, cid, ref_for), term.SID_COVERAGE, f"{cid}-coverage")
    for record in case.records:
        author = party_key(record.author or case.requester)
        owned(record_key(record.id), record_to_fhir(record, cid, author, ref_for), term.SID_RECORD, f"{cid}/{record.id}")
    if case.opinion is not None:
        owned(OPINION, opinion_to_fhir(case.opinion, cid, party_key(case.performer), ref_for), term.SID_OPINION, cid)
    if case.task is not None:
        owned(TASK, task_to_fhir(case, ref_for), term.SID_TASK, cid)
    # every built resource carries its generated narrative (dom-6); parsing ignores it
    return [replace(m, resource=with_narrative(m.resource)) for m in out]


def find_requests(graph: Graph) -> list[Node]:
    """The second-opinion ServiceRequests in the graph (those carrying a case identifier)."""
    return [n for n in graph.of_type("ServiceRequest") if first_identifier(n.resource, term.SID_CASE)]


def case_from_graph(graph: Graph, case_id: str | None = None) -> Case:
    """Read one case back; ``case_id`` picks one when the graph holds several."""
    source = graph.source
    requests = find_requests(graph)
    if case_id is not None:
        requests = [n for n in requests if first_identifier(n.resource, term.SID_CASE) == case_id]
    if not requests:
        wanted = f" for case {case_id!r}" if case_id else ""
        raise InputError(f"no second-opinion ServiceRequest (identifier system {term.SID_CASE}){wanted}", source=source, location="Bundle.entry")
    if len(requests) > 1:
        ids = ", ".join(sorted(str(first_identifier(n.resource, term.SID_CASE)) for n in requests))
        raise InputError(f"several cases in one bundle ({ids}); name one", source=source, location="Bundle.entry")
    sr = requests[0]
    res, where = sr.resource, sr.where
    fields = service_request_fields(sr, source)

    def party(ref_field: str, ref: object) -> Party:
        return party_from_fhir(graph.resolve(ref, f"{where}.{ref_field}"), source)

    performers = res.get("performer") or []
    if not performers:
        raise InputError("ServiceRequest names no performer (the second physician)", source=source, location=f"{where}.performer")
    consents: dict[str, object] = {}
    for i, info in enumerate(res.get("supportingInfo") or []):
        if "reference" not in info:
            continue
        node = graph.resolve(info, f"{where}.supportingInfo[{i}]")
        if node.resource.get("resourceType") == "Consent":
            purpose = consent_purpose(node.resource)
            if purpose is not None:
                consents[purpose] = consent_from_fhir(node, graph)
    insurance = None
    if res.get("insurance"):
        insurance = coverage_from_fhir(graph.resolve(res["insurance"][0], f"{where}.insurance[0]"), graph)
    records = [
        record_from_fhir(n, graph, fields.case_id)
        for n in graph.of_type("DocumentReference")
        if any(graph.points_to(r, sr) for r in (n.resource.get("context") or {}).get("related") or [])
    ]
    tasks = find_tasks(graph, sr)
    if len(tasks) > 1:
        raise InputError(f"several Tasks have the request as their focus ({', '.join(n.where for n in tasks)})", source=source, location=where)
    opinions = [n for n in graph.of_type("DiagnosticReport") if any(graph.points_to(r, sr) for r in n.resource.get("basedOn") or [])]
    data = {
        "case_id": fields.case_id,
        "status": fields.status,
        "requested": fields.requested,
        "patient": patient_from_fhir(graph.resolve(res.get("subject"), f"{where}.subject"), source),
        "requester": party("requester", res.get("requester")),
        "performer": party("performer[0]", performers[0]),
        "reasons": fields.reasons,
        "conditions": fields.conditions,
        "priority": fields.priority,
        "mode": fields.mode,
        "questions": fields.questions,
        "insurance": insurance,
        "records_consent": consents.get("records"),
        "report_consent": consents.get("report"),
        "records": records,
        "opinion": opinion_from_fhir(opinions[0], source) if opinions else None,
        "earlier_opinions": fields.earlier_opinions,
        "task": task_from_fhir(tasks[0], graph) if tasks else None,
    }
    try:
        return with_defaults(Case.model_validate(data))
    except ValueError as exc:
        raise InputError(f"the resources do not make a valid case: {exc}", source=source, location=where) from None
