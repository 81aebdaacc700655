"""Patient, Practitioner and Organization: the people and services a case names."""

from __future__ import annotations

from typing import Literal

from fhir_so.case import Identifier, Party, Patient, Person
from fhir_so.errors import InputError
from fhir_so.mapping.common import Resource, identifier_of
from fhir_so.mapping.graph import Node


def patient_to_fhir(patient: Patient) -> Resource:
    name: Resource = {"family": patient.name.family}
    if patient.name.given:
        name["given"] = list(patient.name.given)
    if patient.name.prefix:
        name["prefix"] = list(patient.name.prefix)
    out: Resource = {"resourceType": "Patient", "identifier": [identifier_of(patient.identifier)], "name": [name]}
    if patient.gender:
        out["gender"] = patient.gender
    if patient.birth_date:
        out["birthDate"] = patient.birth_date
    return out


def patient_from_fhir(node: Node, source: str) -> Patient:
    res = node.resource
    names = res.get("name") or []
    if not names or not names[0].get("family"):
        raise InputError("Patient needs a name with a family name", source=source, location=f"{node.where}.name")
    name = names[0]
    return Patient(
        identifier=_identifier(node, source),
        name=Person(family=name["family"], given=name.get("given", []), prefix=name.get("prefix", [])),
        birth_date=res.get("birthDate"),
        gender=res.get("gender"),
    )


def party_to_fhir(party: Party) -> Resource:
    if party.kind == "organization":
        org: Resource = {"resourceType": "Organization", "identifier": [identifier_of(party.identifier)]}
        if party.specialty:
            org["type"] = [{"text": party.specialty}]
        org["name"] = party.name
        return org
    out: Resource = {"resourceType": "Practitioner", "identifier": [identifier_of(party.identifier)], "name": [{"text": party.name}]}
    if party.specialty:
        out["qualification"] = [{"code": {"text": party.specialty}}]
    return out


def party_from_fhir(node: Node, source: str) -> Party:
    res = node.resource
    kind: Literal["practitioner", "organization"]
    if res.get("resourceType") == "Organization":
        name = res.get("name")
        types = res.get("type") or [{}]
        specialty = types[0].get("text")
        kind = "organization"
    elif res.get("resourceType") == "Practitioner":
        names = res.get("name") or [{}]
        first = names[0]
        name = first.get("text") or " ".join([*first.get("prefix", []), *first.get("given", []), first.get("family", "")]).strip()
        quals = res.get("qualification") or [{}]
        specialty = (quals[0].get("code") or {}).get("text")
        kind = "practitioner"
    else:
        raise InputError(
            f"expected a Practitioner or Organization, found {res.get('resourceType')}", source=source, location=node.where
        )
    if not name:
        raise InputError(f"{res['resourceType']} needs a name", source=source, location=f"{node.where}.name")
    return Party(kind=kind, identifier=_identifier(node, source), name=name, specialty=specialty)


def _identifier(node: Node, source: str) -> Identifier:
    idents = node.resource.get("identifier") or []
    for ident in idents:
        if ident.get("system") and ident.get("value"):
            return Identifier(system=ident["system"], value=ident["value"])
    raise InputError(
        f"{node.resource.get('resourceType')} needs an identifier with system and value",
        source=source,
        location=f"{node.where}.identifier",
    )
