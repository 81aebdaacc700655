"""Pieces every resource mapping shares: keys, references, codings, attachments, R4B checks."""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Callable, Mapping

from pydantic import ValidationError

from fhir_so import terminology as term
from fhir_so.case import Attachment, Coding, Identifier, Party
from fhir_so.errors import InputError, excerpt, one_line

Resource = dict[str, Any]
RefFor = Callable[[str], str]
"""Gives the reference string (e.g. ``urn:uuid:...``) of a resource from its key."""

# Keys name each resource of a case; the bundle turns them into urn:uuid fullUrls.
PATIENT = "Patient"
SERVICE_REQUEST = "ServiceRequest"
OPINION = "DiagnosticReport"
COVERAGE = "Coverage"
RECORDS_CONSENT = "Consent/records"
REPORT_CONSENT = "Consent/report"


def party_key(party: Party) -> str:
    """One key per distinct party, so a physician named twice becomes one resource."""
    kind, system, value = party.key()
    return f"{kind}|{system}|{value}"


def record_key(record_id: str) -> str:
    return f"DocumentReference/{record_id}"


def reference(ref_for: RefFor, key: str) -> dict[str, str]:
    return {"reference": ref_for(key)}


def identifier(system: str, value: str) -> dict[str, str]:
    return {"system": system, "value": value}


def identifier_of(ident: Identifier) -> dict[str, str]:
    return identifier(ident.system, ident.value)


def coding_of(coding: Coding) -> dict[str, str]:
    out = {"system": coding.system, "code": coding.code}
    if coding.display:
        out["display"] = coding.display
    return out


def coding_from(data: Mapping[str, Any]) -> Coding:
    return Coding(system=data["system"], code=data["code"], display=data.get("display"))


def sha1_b64(raw: bytes) -> str:
    """FHIR Attachment.hash: the SHA-1 of the bytes, base64-encoded."""
    return base64.b64encode(hashlib.sha1(raw).digest()).decode("ascii")


def attachment_to_fhir(att: Attachment) -> Resource:
    """Inline bytes get size and SHA-1 hash computed from them; a url keeps what the case gave."""
    out: Resource = {"contentType": att.content_type}
    raw = att.content()
    if raw is not None:
        out["data"] = att.data
    else:
        out["url"] = att.url
    if att.title:
        out["title"] = att.title
    if raw is not None:
        out["size"] = len(raw)
        out["hash"] = sha1_b64(raw)
    else:
        if att.size is not None:
            out["size"] = att.size
        if att.hash is not None:
            out["hash"] = att.hash
    return out


def attachment_from_fhir(data: Mapping[str, Any], where: str, source: str) -> Attachment:
    """The inverse; refuses inline data whose hash or size does not match (a corrupted transfer)."""
    if "data" in data:
        try:
            raw = base64.b64decode(data["data"], validate=True)
        except (ValueError, TypeError):
            raise InputError("attachment data is not valid base64", source=source, location=f"{where}.data") from None
        if "hash" in data and data["hash"] != sha1_b64(raw):
            raise InputError("attachment hash does not match its data", source=source, location=f"{where}.hash")
        if "size" in data and data["size"] != len(raw):
            raise InputError("attachment size does not match its data", source=source, location=f"{where}.size")
        return Attachment(content_type=data.get("contentType", "application/octet-stream"), data=data["data"], title=data.get("title"))
    if "url" not in data:
        raise InputError("attachment has neither data nor url", source=source, location=where)
    return Attachment(
        content_type=data.get("contentType", "application/octet-stream"),
        url=data["url"],
        title=data.get("title"),
        size=data.get("size"),
        hash=data.get("hash"),
    )


def codings(concepts: Any) -> list[dict[str, Any]]:
    """Every coding of a list of CodeableConcepts, flattened."""
    return [c for concept in concepts or [] for c in (concept.get("coding") or [])]


def first_identifier(resource: Resource, system: str) -> str | None:
    for ident in resource.get("identifier") or []:
        if ident.get("system") == system:
            value = ident.get("value")
            return value if isinstance(value, str) else None
    return None


def with_profile(resource: Resource, profile: str) -> Resource:
    """Declare the project's profile, so validators check the resource against it."""
    return {"resourceType": resource["resourceType"], "meta": {"profile": [profile]}, **{k: v for k, v in resource.items() if k != "resourceType"}}


def r4_model(resource_type: str) -> Any:
    """The fhir.resources R4B model class of a resource type (R4B is wire-compatible with R4 here)."""
    from fhir.resources.R4B import get_fhir_model_class

    return get_fhir_model_class(resource_type)


def check_r4(resource: Resource, where: str, source: str) -> None:
    """Check one resource with its fhir.resources R4B model; errors name the place in the file."""
    resource_type = resource.get("resourceType")
    try:
        if not isinstance(resource_type, str):
            raise ValueError(resource_type)
        model = r4_model(resource_type)
    except (KeyError, ValueError, TypeError, AttributeError):
        raise InputError(f"unknown resourceType {excerpt(resource_type)}", source=source, location=f"{where}.resourceType") from None
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        err = errors[0]
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"] if not str(p).startswith("function"))
        more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
        raise InputError(
            f"not a valid R4 {resource_type}: {one_line(str(err['msg']), 300)}{more}", source=source, location=f"{where}{path}"
        ) from None


def mode_codes(mode: str) -> list[dict[str, str]]:
    out = [term.MODES[mode].coding()]
    if mode == "telehealth":
        out.append(term.TELEHEALTH.coding())
    return out
