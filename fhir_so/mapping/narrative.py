"""A generated narrative for every resource the mapping builds, so dom-6 holds.

Each resource gets ``text`` with ``status`` ``generated`` and a small XHTML ``div``: one line
per field a reader looks for first (what it is, its identifier, status, who, when). Only
``div``, ``p`` and ``b`` are used and every value is escaped, so the narrative is safe by
construction (txt-1: only allowed XHTML, no scripts, no attributes but the namespace;
txt-2: it has text). Parsing never reads it: the data is in the structured fields.
"""

from __future__ import annotations

from html import escape
from typing import Any, Callable

Resource = dict[str, Any]
XHTML = "http://www.w3.org/1999/xhtml"


def _text(concept: Any) -> str | None:
    """The readable side of a CodeableConcept (text, else displays, else codes)."""
    if not isinstance(concept, dict):
        return None
    if isinstance(concept.get("text"), str):
        return str(concept["text"])
    codings = [c for c in concept.get("coding") or [] if isinstance(c, dict)]
    shown = [str(c.get("display") or c.get("code")) for c in codings if c.get("display") or c.get("code")]
    return ", ".join(shown) or None


def _texts(concepts: Any) -> str | None:
    found = [t for t in (_text(c) for c in concepts or []) if t]
    return "; ".join(found) or None


def _name(resource: Resource) -> str | None:
    name = resource.get("name")
    if isinstance(name, str):
        return name
    if isinstance(name, list) and name and isinstance(name[0], dict):
        human = name[0]
        return str(human.get("text") or " ".join([*human.get("prefix", []), *human.get("given", []), human.get("family", "")]).strip()) or None
    return None


def _ident(resource: Resource) -> str | None:
    idents = [i for i in resource.get("identifier") or [] if isinstance(i, dict)]
    return str(idents[0].get("value")) if idents and idents[0].get("value") else None


def _period(period: Any) -> str | None:
    if not isinstance(period, dict) or not (period.get("start") or period.get("end")):
        return None
    return f"{period.get('start') or '…'} to {period.get('end') or 'open'}"


def _patient(r: Resource) -> list[tuple[str, Any]]:
    return [("Patient", _name(r)), ("Born", r.get("birthDate")), ("Gender", r.get("gender"))]


def _party(r: Resource) -> list[tuple[str, Any]]:
    return [(r["resourceType"], _name(r))]


def _service_request(r: Resource) -> list[tuple[str, Any]]:
    return [("Request", _text(r.get("code"))), ("Status", r.get("status")), ("Priority", r.get("priority")),
            ("Reasons", _texts(r.get("reasonCode"))), ("Requested", r.get("authoredOn"))]


def _consent(r: Resource) -> list[tuple[str, Any]]:
    provision = r.get("provision") or {}
    classes = ", ".join(str(c.get("code")) for c in provision.get("class") or [] if isinstance(c, dict))
    return [("Consent", _text(r.get("scope"))), ("Status", r.get("status")), ("Decision", provision.get("type")),
            ("Period", _period(provision.get("period"))), ("Covers", classes or None), ("Kinds", _texts(provision.get("code"))),
            ("Given", r.get("dateTime"))]


def _coverage(r: Resource) -> list[tuple[str, Any]]:
    return [("Coverage", _text(r.get("type"))), ("Status", r.get("status"))]


def _document(r: Resource) -> list[tuple[str, Any]]:
    return [("Record", _text(r.get("type"))), ("Title", r.get("description")), ("Date", r.get("date")), ("Status", r.get("status"))]


def _report(r: Resource) -> list[tuple[str, Any]]:
    return [("Opinion", _text(r.get("code"))), ("Status", r.get("status")), ("Issued", r.get("issued")),
            ("Conclusion", r.get("conclusion"))]


def _task(r: Resource) -> list[tuple[str, Any]]:
    flag = "STAT (an emergency: must not wait)" if r.get("priority") == "stat" else r.get("priority")
    return [("Task", _text(r.get("code"))), ("Status", r.get("status")), ("Business status", _text(r.get("businessStatus"))),
            ("Priority", flag), ("Reason", _text(r.get("statusReason"))), ("Authored", r.get("authoredOn"))]


_SUMMARY: dict[str, Callable[[Resource], list[tuple[str, Any]]]] = {
    "Patient": _patient,
    "Practitioner": _party,
    "Organization": _party,
    "ServiceRequest": _service_request,
    "Consent": _consent,
    "Coverage": _coverage,
    "DocumentReference": _document,
    "DiagnosticReport": _report,
    "Task": _task,
}


def narrative(resource: Resource) -> dict[str, str]:
    """The ``text`` element of a resource: status generated and an escaped XHTML summary."""
    summary = _SUMMARY.get(resource["resourceType"], lambda r: [(r["resourceType"], None)])(resource)
    lines = [(label, value) for label, value in [*summary, ("Identifier", _ident(resource))] if value]
    if not lines:
        lines = [(resource["resourceType"], "no details")]
    body = "".join(f"<p><b>{escape(label)}</b>: {escape(str(value))}</p>" for label, value in lines)
    return {"status": "generated", "div": f'<div xmlns="{XHTML}">{body}</div>'}


def with_narrative(resource: Resource) -> Resource:
    """The resource with its generated narrative, placed where FHIR JSON puts it (after meta)."""
    head: Resource = {k: resource[k] for k in ("resourceType", "id", "meta") if k in resource}
    rest = {k: v for k, v in resource.items() if k not in head and k != "text"}
    return {**head, "text": narrative(resource), **rest}
