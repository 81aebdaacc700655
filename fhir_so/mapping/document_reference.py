"""DocumentReference: one record sent to the second physician."""

from __future__ import annotations

from fhir_so import terminology as term
from typing import cast

from fhir_so.case import Record, RecordKind
from fhir_so.errors import InputError
from fhir_so.mapping.common import (
    PATIENT,
    SERVICE_REQUEST,
    RefFor,
    Resource,
    attachment_from_fhir,
    attachment_to_fhir,
    codings,
    first_identifier,
    identifier,
    reference,
    with_profile,
)
from fhir_so.mapping.graph import Graph, Node
from fhir_so.mapping.parties import party_from_fhir


def record_to_fhir(record: Record, case_id: str, author_key: str, ref_for: RefFor) -> Resource:
    resource: Resource = {
        "resourceType": "DocumentReference",
        "identifier": [identifier(term.SID_RECORD, f"{case_id}/{record.id}")],
        "status": "current",
        "type": term.RECORD_TYPES[record.kind].concept(),
        "subject": reference(ref_for, PATIENT),
        "date": record.date,
        "author": [reference(ref_for, author_key)],
        "description": record.title,
    }
    if record.restricted:
        resource["securityLabel"] = [term.RESTRICTED.concept()]
    resource["content"] = [{"attachment": attachment_to_fhir(record.content)}]
    resource["context"] = {"related": [reference(ref_for, SERVICE_REQUEST)]}
    return with_profile(resource, term.SD_DOCUMENT_REFERENCE)


def record_kind(resource: Resource) -> RecordKind | None:
    for coding in codings([resource.get("type") or {}]):
        if coding.get("system") == term.LOINC and coding.get("code") in term.RECORD_KIND_BY_LOINC:
            return cast(RecordKind, term.RECORD_KIND_BY_LOINC[coding["code"]])
    return None


def record_from_fhir(node: Node, graph: Graph, case_id: str) -> Record:
    res, where, source = node.resource, node.where, graph.source
    ident = first_identifier(res, term.SID_RECORD)
    record_id = ident.split("/", 1)[1] if ident and ident.startswith(f"{case_id}/") else res.get("id")
    if not record_id:
        raise InputError("DocumentReference has no record identifier", source=source, location=f"{where}.identifier")
    kind = record_kind(res)
    if kind is None:
        raise InputError("DocumentReference type is not one of the record kinds fhir-so knows", source=source, location=f"{where}.type")
    contents = res.get("content") or []
    if not contents or "attachment" not in contents[0]:
        raise InputError("DocumentReference has no content attachment", source=source, location=f"{where}.content")
    authors = res.get("author") or []
    if not authors:
        raise InputError("DocumentReference has no author", source=source, location=f"{where}.author")
    labels = {c.get("code") for c in codings(res.get("securityLabel"))}
    return Record(
        id=record_id,
        kind=kind,
        title=res.get("description") or contents[0]["attachment"].get("title") or kind,
        date=res.get("date", ""),
        author=party_from_fhir(graph.resolve(authors[0], f"{where}.author[0]"), source),
        content=attachment_from_fhir(contents[0]["attachment"], f"{where}.content[0].attachment", source),
        restricted=term.RESTRICTED.code in labels,
    )
