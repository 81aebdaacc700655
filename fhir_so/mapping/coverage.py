"""Coverage: the payer that requires or pays for the opinion."""

from __future__ import annotations

from fhir_so import terminology as term
from fhir_so.case import Insurance
from fhir_so.errors import InputError
from fhir_so.mapping.common import PATIENT, RefFor, Resource, identifier, party_key, reference
from fhir_so.mapping.graph import Graph, Node
from fhir_so.mapping.parties import party_from_fhir


def coverage_to_fhir(insurance: Insurance, case_id: str, ref_for: RefFor) -> Resource:
    return {
        "resourceType": "Coverage",
        "identifier": [identifier(term.SID_COVERAGE, f"{case_id}-coverage")],
        "status": "active",
        "subscriberId": insurance.member_id,
        "beneficiary": reference(ref_for, PATIENT),
        "payor": [reference(ref_for, party_key(insurance.payer))],
    }


def coverage_from_fhir(node: Node, graph: Graph) -> Insurance:
    res, where = node.resource, node.where
    payors = res.get("payor") or []
    if not payors:
        raise InputError("Coverage names no payor", source=graph.source, location=f"{where}.payor")
    if not res.get("subscriberId"):
        raise InputError("Coverage needs subscriberId (the member id)", source=graph.source, location=f"{where}.subscriberId")
    return Insurance(payer=party_from_fhir(graph.resolve(payors[0], f"{where}.payor[0]"), graph.source), member_id=res["subscriberId"])
