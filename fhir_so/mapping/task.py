"""Task: the referral's life on the second-opinion server, beside the ServiceRequest.

The pattern of HL7 BSeR and FHIR Clinical Order Workflows: ``focus`` the request, ``for`` the
patient, ``requester`` the first physician, ``owner`` the second; ``status`` follows the FHIR
Task state machine and ``businessStatus`` says the same in the referral's words
(``so-task-status``). What went in and came out is typed by ``so-task-io``:

* input ``record`` → each DocumentReference of the case (the records sent);
* input ``earlier-task`` → the Task of an earlier opinion (a third opinion), by identifier;
* output ``records-requested`` → a record kind the second physician asked for (the LOINC type
  the DocumentReference carries), the ask's words in ``note``;
* output ``opinion`` → the DiagnosticReport, once the case has one.

Inputs of kind ``record`` and the ``opinion`` output are derived from the case (its records,
its opinion), so parsing does not read them back; everything else round-trips. The Task's
history is the server's: building writes none of it (see :class:`fhir_so.case.Task`).
"""

from __future__ import annotations

from typing import Any

from fhir_so import terminology as term
from fhir_so.case import Case
from fhir_so.errors import InputError
from fhir_so.mapping.common import (
    OPINION,
    PATIENT,
    SERVICE_REQUEST,
    RefFor,
    Resource,
    codings,
    identifier,
    party_key,
    record_key,
    reference,
    with_profile,
)
from fhir_so.mapping.graph import Graph, Node
from fhir_so.mapping.parties import party_from_fhir

TASK = "Task"  # the key of the case's Task among its resources


def io_type(resource_io: Any) -> str | None:
    """The so-task-io code of one Task.input or Task.output, or None."""
    for coding in codings([resource_io.get("type") or {}]) if isinstance(resource_io, dict) else []:
        if coding.get("system") == term.CS_TASK_IO:
            code = coding.get("code")
            return code if isinstance(code, str) else None
    return None


def io_entry(kind: str, **value: Any) -> Resource:
    """One Task.input / Task.output of so-task-io ``kind`` with its ``value[x]``."""
    return {"type": term.TASK_IO[kind].concept(), **value}


def earlier_task_reference(case_id: str) -> Resource:
    """A logical reference to the Task of an earlier case (it lives on the same server, or did)."""
    return {"type": "Task", "identifier": identifier(term.SID_TASK, case_id)}


def task_to_fhir(case: Case, ref_for: RefFor) -> Resource:
    """The case's Task (the case must have a ``task`` part)."""
    task = case.task
    if task is None:
        raise ValueError("the case has no task part")
    owner = task.owner or case.performer
    resource: Resource = {
        "resourceType": "Task",
        "identifier": [identifier(term.SID_TASK, case.case_id)],
        "status": task.status,
    }
    if task.reason:
        resource["statusReason"] = {"text": task.reason}
    if task.business_status:
        resource["businessStatus"] = term.TASK_BUSINESS_STATUS[task.business_status].concept()
    resource |= {
        "intent": "order",
        "priority": case.priority,
        "code": term.TASK_FULFILL.concept(),
        "focus": reference(ref_for, SERVICE_REQUEST),
        "for": reference(ref_for, PATIENT),
        "authoredOn": task.authored,
    }
    if task.last_modified:
        resource["lastModified"] = task.last_modified
    resource["requester"] = reference(ref_for, party_key(case.requester))
    resource["owner"] = reference(ref_for, party_key(owner))
    if task.note:
        resource["note"] = [{"text": task.note}]
    inputs = [io_entry("earlier-task", valueReference=earlier_task_reference(task.earlier_task))] if task.earlier_task else []
    inputs += [io_entry("record", valueReference=reference(ref_for, record_key(r.id))) for r in case.records]
    if inputs:
        resource["input"] = inputs
    outputs = [io_entry("records-requested", valueCodeableConcept=term.RECORD_TYPES[k].concept()) for k in task.requested_kinds]
    if case.opinion is not None:
        outputs.append(io_entry("opinion", valueReference=reference(ref_for, OPINION)))
    if outputs:
        resource["output"] = outputs
    return with_profile(resource, term.SD_TASK)


def find_tasks(graph: Graph, request: Node) -> list[Node]:
    """The Tasks in the graph whose focus is ``request``."""
    return [n for n in graph.of_type("Task") if graph.points_to(n.resource.get("focus"), request)]


def requested_kind(concept: Any) -> str | None:
    """The record kind of a ``records-requested`` output's CodeableConcept (LOINC), or None."""
    for coding in codings([concept or {}]):
        if coding.get("system") == term.LOINC and coding.get("code") in term.RECORD_KIND_BY_LOINC:
            return term.RECORD_KIND_BY_LOINC[coding["code"]]
    return None


def task_from_fhir(node: Node, graph: Graph) -> dict[str, Any]:
    """The case's ``task`` part (a dict in the case file's shape) read from a Task."""
    res, where, source = node.resource, node.where, graph.source
    if not res.get("authoredOn"):
        raise InputError("the Task needs authoredOn", source=source, location=f"{where}.authoredOn")
    business = None
    for coding in codings([res.get("businessStatus") or {}]):
        if coding.get("system") == term.CS_TASK_STATUS:
            business = coding.get("code")
            if business not in term.TASK_BUSINESS_STATUS:
                raise InputError(f"unknown so-task-status code {business!r}", source=source, location=f"{where}.businessStatus")
    kinds: list[str] = []
    for i, out in enumerate(res.get("output") or []):
        if io_type(out) == "records-requested":
            kind = requested_kind(out.get("valueCodeableConcept"))
            if kind is None:
                raise InputError("a records-requested output needs a record kind's LOINC type", source=source,
                                 location=f"{where}.output[{i}].valueCodeableConcept")
            if kind not in kinds:
                kinds.append(kind)
    earlier = None
    for inp in res.get("input") or []:
        if io_type(inp) == "earlier-task":
            ident = (inp.get("valueReference") or {}).get("identifier") or {}
            if ident.get("system") == term.SID_TASK and ident.get("value"):
                earlier = ident["value"]
    owner = None
    if res.get("owner"):
        owner = party_from_fhir(graph.resolve(res["owner"], f"{where}.owner"), source)
    notes = [n.get("text") for n in res.get("note") or [] if isinstance(n, dict) and n.get("text")]
    return {
        "status": res.get("status"),
        "business_status": business,
        "authored": res["authoredOn"],
        "last_modified": res.get("lastModified"),
        "owner": owner,
        "requested_kinds": kinds,
        "note": notes[-1] if notes else None,
        "reason": (res.get("statusReason") or {}).get("text"),
        "earlier_task": earlier,
    }
