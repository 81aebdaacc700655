"""A corpus with a manifest: valid resources, mutations that each break one rule, and business-rule bundles.

Complements ``make_corpus.py`` (the agreement test's corpus): every input here is described in
``manifest.json`` with the rule kind, the FHIRPath where the error is expected, the expected verdict
and whether HAPI's ``$validate`` can judge it. Measured on the local HAPI server (profiles installed),
on the inputs drawn from the profile examples and two example bundles: 836 of 859 verdicts as
expected; the 23 others were all wrong reference target types on references HAPI cannot resolve
(``Group/g1``), which HAPI does not check: those are marked ``hapi: false``.

Bases are the example instances of the compiled profiles package (``fhir-so.profiles#0.1.0`` in the
package cache) and every resource of ``examples/*.bundle.json``. Each base is written as is (expected
valid), then once per applicable mutation. A mutation breaks one kind of rule:

    cardinality   a required element removed (from the profile's snapshot), a single element made a list
    type          a string given as a number, an object as a string, a boolean as the string "true"
    format        an impossible date, an instant without a time zone, an id with bad characters
    structure     an unknown property
    fixed         a fixed value changed (ServiceRequest.intent, DocumentReference.status, identifier system)
    pattern       a pattern code changed (category, code, scope, policyRule, ...)
    binding       a code outside a required ValueSet (core or the project's); an extensible one (warning)
    slicing       a required slice removed, a max-1 slice repeated
    reference     a reference to a resource type the profile does not allow
    invariant     ele-1, ext-1, dom-2, dom-3, dom-4, dom-5, ref-1, and the project's so-att-1 / so-att-2
    valid         changes that keep the resource valid (optional elements removed, extra identifiers)
    business      whole Bundles that break a domain rule (consent missing, inactive, expired, wrong
                  recipient; report consent missing; stat priority; a record kind not consented)

Usage::

    python tests/corpus/make_manifest_corpus.py [--out DIR] [--cache DIR]

The output folder gets one JSON file per input and ``manifest.json``: a list of
``{file, base, kind, rule, expression, expect, hapi, description}`` where ``expect`` is ``valid``,
``warning`` (valid, with a warning) or ``error``, and ``hapi`` says whether HAPI's ``$validate`` can
be expected to judge it (business rules are fhir-so's own). The output is deterministic.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fhir_so import terminology as term  # noqa: E402
from fhir_so.packages import Definitions, PackageCache  # noqa: E402
from fhir_so.profiles import examples  # noqa: E402

Resource = dict[str, Any]
PROFILES_SPEC = f"{term.PACKAGE_NAME}#{term.PACKAGE_VERSION}"


@dataclass(frozen=True)
class Mutation:
    """One corpus input derived from a base: what it breaks and what a validator should say."""

    kind: str
    rule: str
    expression: str
    expect: str
    description: str
    resource: Resource
    hapi: bool = True


@dataclass(frozen=True)
class Entry:
    """One manifest row."""

    file: str
    base: str
    kind: str
    rule: str
    expression: str
    expect: str
    hapi: bool
    description: str


def _error(kind: str, rule: str, expression: str, description: str, resource: Resource) -> Mutation:
    # HAPI checks a reference's target type only when it can resolve the reference (measured)
    return Mutation(kind, rule, expression, "error", description, resource, hapi=kind != "reference")


# --- bases ---------------------------------------------------------------------------------------


def bases(definitions: Definitions, examples_dir: Path) -> Iterator[tuple[str, Resource]]:
    """(base name, resource) for every profile example and every resource of the example bundles."""
    for resource in examples(definitions.packages[0]):
        yield f"profile-example/{resource['id']}", resource
    for path in sorted(examples_dir.glob("*.bundle.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        for i, entry in enumerate(bundle.get("entry") or []):
            resource = entry["resource"]
            yield f"{path.name.removesuffix('.bundle.json')}/{i}-{resource['resourceType']}", resource


# --- generic mutations (any resource) ----------------------------------------------------------

# A string-valued top-level element per type, for type and format mutations.
STRING_FIELD = {
    "ServiceRequest": "authoredOn",
    "Consent": "dateTime",
    "DocumentReference": "description",
    "DiagnosticReport": "conclusion",
    "Patient": "birthDate",
    "Coverage": "subscriberId",
}
DATE_FIELD = {"ServiceRequest": "authoredOn", "Consent": "dateTime", "Patient": "birthDate"}
INSTANT_FIELD = {"DocumentReference": "date", "DiagnosticReport": "issued"}
REFERENCE_FIELD = {
    "ServiceRequest": "subject",
    "Consent": "patient",
    "DocumentReference": "subject",
    "DiagnosticReport": "subject",
    "Coverage": "beneficiary",
}


def generic(resource: Resource) -> Iterator[Mutation]:
    rtype = resource["resourceType"]
    field = STRING_FIELD.get(rtype)
    if field and field in resource:
        r = copy.deepcopy(resource)
        r[field] = 12345
        yield _error("type", "type", f"{rtype}.{field}", f"{field} given as a JSON number", r)
    ref = REFERENCE_FIELD.get(rtype)
    if ref and ref in resource:
        r = copy.deepcopy(resource)
        r[ref] = "Patient/123"
        yield _error("type", "type", f"{rtype}.{ref}", f"{ref} (a Reference) given as a string", r)
        r = copy.deepcopy(resource)
        r[ref] = {"reference": "#not-contained"}
        yield _error("invariant", "ref-1", f"{rtype}.{ref}", "a local reference (#id) to no contained resource", r)
    if rtype in ("Patient", "Practitioner", "Organization"):
        r = copy.deepcopy(resource)
        r["active"] = "true"
        yield _error("type", "type", f"{rtype}.active", "a boolean given as the string \"true\"", r)
        r = copy.deepcopy(resource)
        if "name" in r:
            r["name"] = "Jane Doe" if rtype != "Organization" else ["Acme"]
            yield _error("type", "type", f"{rtype}.name", "name given with the wrong JSON shape", r)
    date_field = DATE_FIELD.get(rtype)
    if date_field and date_field in resource:
        r = copy.deepcopy(resource)
        r[date_field] = "2026-02-30" if rtype == "Patient" else "2026-02-30T10:00:00Z"
        yield _error("format", "date", f"{rtype}.{date_field}", "a date that does not exist (February 30)", r)
    instant = INSTANT_FIELD.get(rtype)
    if instant and instant in resource:
        r = copy.deepcopy(resource)
        r[instant] = "2026-03-01T10:00:00"
        yield _error("format", "instant", f"{rtype}.{instant}", "an instant without a time zone", r)
    r = copy.deepcopy(resource)
    r["id"] = "bad id!"
    yield _error("format", "id", f"{rtype}.id", "an id with a space and a '!'", r)
    r = copy.deepcopy(resource)
    r["colour"] = "blue"
    yield _error("structure", "unknown-element", f"{rtype}.colour", "a property R4 does not define", r)
    r = copy.deepcopy(resource)
    r.setdefault("identifier", []).append({})
    yield _error("invariant", "ele-1", f"{rtype}.identifier[{len(r['identifier']) - 1}]", "an empty identifier object", r)
    r = copy.deepcopy(resource)
    r["extension"] = [{"url": "http://example.org/fhir/StructureDefinition/note"}]
    yield _error("invariant", "ext-1", f"{rtype}.extension[0]", "an extension with neither a value nor extensions", r)
    contained = {"resourceType": "Basic", "id": "extra", "code": {"text": "unused"}}
    r = copy.deepcopy(resource)
    r["contained"] = [contained]
    yield _error("invariant", "dom-3", f"{rtype}.contained[0]", "a contained resource nothing refers to", r)
    if ref and ref in resource:
        target = {"resourceType": "Patient", "id": "p1"} if rtype != "Coverage" else {"resourceType": "Patient", "id": "p1"}
        for rule, change, what in (
            ("dom-2", {"contained": [{"resourceType": "Basic", "id": "inner", "code": {"text": "x"}}]}, "a contained resource that contains another"),
            ("dom-4", {"meta": {"versionId": "1"}}, "a contained resource with meta.versionId"),
            ("dom-5", {"meta": {"security": [term.RESTRICTED.coding()]}}, "a contained resource with meta.security"),
        ):
            r = copy.deepcopy(resource)
            r["contained"] = [{**target, **change}]
            r[ref] = {"reference": "#p1"}
            yield _error("invariant", rule, f"{rtype}.contained[0]", what, r)
        r = copy.deepcopy(resource)
        r["contained"] = [target]
        r[ref] = {"reference": "#p1"}
        yield Mutation("valid", "contained", f"{rtype}.contained[0]", "valid", "the subject as a contained resource, referred to", r)
    if "status" in resource:
        r = copy.deepcopy(resource)
        r["status"] = "bogus"
        yield _error("binding", "required-core", f"{rtype}.status", "a status outside the required core ValueSet", r)
    if rtype == "Patient":
        r = copy.deepcopy(resource)
        r["gender"] = "robot"
        yield _error("binding", "required-core", "Patient.gender", "a gender outside administrative-gender", r)
    r = copy.deepcopy(resource)
    r.setdefault("identifier", []).append({"system": "http://example.org/sid/other", "value": "x-1"})
    yield Mutation("valid", "extra-identifier", f"{rtype}.identifier", "valid", "an extra identifier of another system (open slicing)", r)


# --- profile-driven mutations ------------------------------------------------------------------


def required_elements(definitions: Definitions, resource: Resource) -> Iterator[Mutation]:
    """Remove, one at a time, each top-level element the resource's profile (or core type) requires."""
    rtype = resource["resourceType"]
    url = ((resource.get("meta") or {}).get("profile") or [rtype])[0]
    sd = definitions.structure_definition(url)
    if sd is None:
        return
    for element in sd["snapshot"]["element"]:
        path = element["path"]
        if path.count(".") != 1 or ":" in element["id"] or element.get("min", 0) < 1:
            continue
        name = path.split(".", 1)[1]
        if name.endswith("[x]"):
            present = [k for k in resource if k.startswith(name[:-3]) and k != name[:-3]]
        else:
            present = [name] if name in resource else []
        if not present:
            continue
        r = copy.deepcopy(resource)
        for key in present:
            del r[key]
            r.pop(f"_{key}", None)
        yield _error("cardinality", "min", path, f"required {name} removed ({sd['id']} says min {element['min']})", r)
    for element in sd["snapshot"]["element"]:
        path = element["path"]
        name = path.split(".", 1)[-1]
        if path.count(".") != 1 or ":" in element["id"] or element.get("max") != "1" or name.endswith("[x]"):
            continue
        if isinstance(resource.get(name), dict) and name not in ("meta", "text"):
            r = copy.deepcopy(resource)
            r[name] = [resource[name], resource[name]]
            yield _error("cardinality", "max", path, f"{name} (max 1) given as a list of two", r)
            break


def _concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _set_code(r: Resource, path: list[Any], code: str) -> None:
    node: Any = r
    for step in path:
        node = node[step]
    node["code"] = code
    node.pop("display", None)


def _index_of(items: list[dict[str, Any]], system: str, code: str | None = None) -> int | None:
    for i, concept in enumerate(items):
        for coding in concept.get("coding") or []:
            if coding.get("system") == system and (code is None or coding.get("code") == code):
                return i
    return None


def service_request(resource: Resource) -> Iterator[Mutation]:
    sr = "ServiceRequest"
    r = copy.deepcopy(resource)
    r["intent"] = "plan"
    yield _error("fixed", "fixed", f"{sr}.intent", "intent is fixed to order", r)
    r = copy.deepcopy(resource)
    r["identifier"][0]["system"] = "http://example.org/sid/case"
    yield _error("fixed", "slice-min", f"{sr}.identifier", "no identifier with the case-id system", r)
    r = copy.deepcopy(resource)
    _set_code(r, ["category", 0, "coding", 0], "409063005")
    yield _error("pattern", "slice-min", f"{sr}.category", "no Consultation category (pattern)", r)
    r = copy.deepcopy(resource)
    _set_code(r, ["code", "coding", 0], "11429006")
    yield _error("pattern", "pattern", f"{sr}.code", "code is not SNOMED 77406008 (pattern)", r)
    i = _index_of(resource["orderDetail"], term.CS_MODE)
    if i is not None:
        r = copy.deepcopy(resource)
        _set_code(r, ["orderDetail", i, "coding", 0], "carrier-pigeon")
        yield _error("binding", "required", f"{sr}.orderDetail[{i}]", "an so-mode code that does not exist", r)
    s = _index_of(resource["reasonCode"], term.V2_0336, "S")
    if s is not None:
        r = copy.deepcopy(resource)
        del r["reasonCode"][s]
        yield _error("slicing", "slice-min", f"{sr}.reasonCode", "no v2-0336 S Second Opinion reason", r)
        r = copy.deepcopy(resource)
        r["reasonCode"].append(copy.deepcopy(resource["reasonCode"][s]))
        yield _error("slicing", "slice-max", f"{sr}.reasonCode", "the S reason twice (slice max 1)", r)
    i = _index_of(resource["reasonCode"], term.CS_REASON)
    if i is not None:
        r = copy.deepcopy(resource)
        _set_code(r, ["reasonCode", i, "coding", 0], "boredom")
        yield _error("binding", "required", f"{sr}.reasonCode[{i}]", "an so-reason code that does not exist", r)
        r = copy.deepcopy(resource)
        r["reasonCode"] = [c for c in r["reasonCode"] if _index_of([c], term.CS_REASON) is None]
        yield _error("slicing", "slice-min", f"{sr}.reasonCode", "no so-reason code at all", r)
    r = copy.deepcopy(resource)
    r["subject"] = {"reference": "Group/g1"}
    yield _error("reference", "target-type", f"{sr}.subject", "subject refers to a Group (profile: Patient only)", r)
    r = copy.deepcopy(resource)
    r["performer"] = [{"reference": "Device/d1"}]
    yield _error("reference", "target-type", f"{sr}.performer[0]", "performer refers to a Device", r)
    r = copy.deepcopy(resource)
    r["reasonCode"].append(_concept(term.SNOMED, "73211009"))
    yield Mutation("valid", "extra-reason", f"{sr}.reasonCode", "valid", "one more condition under review", r)
    for optional in ("note", "supportingInfo", "insurance"):
        if optional in resource:
            r = copy.deepcopy(resource)
            del r[optional]
            yield Mutation("valid", "optional-removed", f"{sr}.{optional}", "valid", f"optional {optional} removed", r)


def consent(resource: Resource) -> Iterator[Mutation]:
    c = "Consent"
    report = term.SD_CONSENT_REPORT in (resource.get("meta") or {}).get("profile", [])
    for path, code, what in (
        (["scope", "coding", 0], "research", "scope is not patient-privacy (pattern)"),
        (["policyRule", "coding", 0], "cric", "policyRule is not hipaa-auth (pattern)"),
    ):
        r = copy.deepcopy(resource)
        _set_code(r, path, code)
        yield _error("pattern", "pattern", f"{c}.{path[0]}", what, r)
    r = copy.deepcopy(resource)
    _set_code(r, ["category", 0, "coding", 0], "64292-6")
    yield _error("pattern", "slice-min", f"{c}.category", "no LOINC 59284-0 category", r)
    r = copy.deepcopy(resource)
    r["identifier"][0]["system"] = "http://example.org/sid/consent"
    yield _error("fixed", "slice-min", f"{c}.identifier", "no identifier with the consent-id system", r)
    provision = resource.get("provision") or {}
    if provision.get("actor"):
        r = copy.deepcopy(resource)
        _set_code(r, ["provision", "actor", 0, "role", "coding", 0], "PRCP")
        yield _error("slicing", "slice-min", f"{c}.provision.actor", "no actor with role IRCP (the recipient)", r)
        r = copy.deepcopy(resource)
        r["provision"]["actor"][0]["reference"] = {"reference": "Patient/p1"}
        yield _error("reference", "target-type", f"{c}.provision.actor[0].reference", "the recipient is a Patient", r)
    if provision.get("action"):
        r = copy.deepcopy(resource)
        _set_code(r, ["provision", "action", 0, "coding", 0], "access")
        yield _error("slicing", "slice-min", f"{c}.provision.action", "no disclose action", r)
    if provision.get("purpose"):
        r = copy.deepcopy(resource)
        _set_code(r, ["provision", "purpose", 0], "HRESCH")
        yield _error("slicing", "slice-min", f"{c}.provision.purpose", "no TREAT purpose", r)
    if provision.get("class"):
        r = copy.deepcopy(resource)
        _set_code(r, ["provision", "class", 0], "Observation")
        yield _error("slicing", "slice-min", f"{c}.provision.class", "the provision covers another resource type", r)
    if "provision" in resource:
        r = copy.deepcopy(resource)
        r["provision"]["type"] = "maybe"
        yield _error("binding", "required-core", f"{c}.provision.type", "provision.type outside consent-provision-type", r)
        r = copy.deepcopy(resource)
        r["provision"]["period"] = {"start": "2026-05-01", "end": "2026-04-01"}
        yield _error("invariant", "per-1", f"{c}.provision.period", "a period that ends before it starts", r)
    if report:
        r = copy.deepcopy(resource)
        _set_code(r, ["provision", "code", 0, "coding", 0], "11506-3")
        yield _error("slicing", "slice-min", f"{c}.provision.code", "the report consent does not name the consult note", r)
    elif provision.get("code"):
        r = copy.deepcopy(resource)
        _set_code(r, ["provision", "code", 0, "coding", 0], "34133-9")
        yield Mutation("binding", "extensible", f"{c}.provision.code[0]", "warning", "a LOINC document type outside so-record-type (extensible)", r)
        r = copy.deepcopy(resource)
        del r["provision"]["code"]
        yield Mutation("valid", "optional-removed", f"{c}.provision.code", "valid", "no record-kind limit (every kind)", r)


def document_reference(resource: Resource) -> Iterator[Mutation]:
    d = "DocumentReference"
    r = copy.deepcopy(resource)
    r["status"] = "superseded"
    yield _error("fixed", "fixed", f"{d}.status", "status is fixed to current", r)
    r = copy.deepcopy(resource)
    r["identifier"][0]["system"] = "http://example.org/sid/record"
    yield _error("fixed", "slice-min", f"{d}.identifier", "no identifier with the record-id system", r)
    r = copy.deepcopy(resource)
    _set_code(r, ["type", "coding", 0], "34133-9")
    yield Mutation("binding", "extensible", f"{d}.type", "warning", "a LOINC document type outside so-record-type (extensible)", r)
    attachment = resource["content"][0]["attachment"]
    where = f"{d}.content[0].attachment"
    r = copy.deepcopy(resource)
    for key in ("data", "url"):
        r["content"][0]["attachment"].pop(key, None)
    r["content"][0]["attachment"].pop("size", None)
    r["content"][0]["attachment"].pop("hash", None)
    yield _error("invariant", "so-att-1", where, "an attachment with neither data nor url", r)
    if "data" in attachment:
        r = copy.deepcopy(resource)
        del r["content"][0]["attachment"]["hash"]
        yield _error("invariant", "so-att-2", where, "inline data without its SHA-1 hash", r)
        r = copy.deepcopy(resource)
        r["content"][0]["attachment"]["data"] = "not base64!"
        yield _error("format", "base64", f"{where}.data", "attachment data that is not base64", r)
    r = copy.deepcopy(resource)
    del r["content"][0]["attachment"]["contentType"]
    yield _error("cardinality", "min", f"{where}.contentType", "an attachment without contentType", r)
    r = copy.deepcopy(resource)
    r["content"].append(copy.deepcopy(resource["content"][0]))
    yield _error("cardinality", "max", f"{d}.content", "two contents (profile: max 1)", r)
    r = copy.deepcopy(resource)
    r["context"]["related"] = [{"reference": "Observation/o1"}]
    yield _error("reference", "target-type", f"{d}.context.related[0]", "related refers to an Observation", r)
    if "securityLabel" not in resource:
        r = copy.deepcopy(resource)
        r["securityLabel"] = [term.RESTRICTED.concept()]
        yield Mutation("valid", "restricted", f"{d}.securityLabel", "valid", "a restricted record", r)


def diagnostic_report(resource: Resource) -> Iterator[Mutation]:
    d = "DiagnosticReport"
    r = copy.deepcopy(resource)
    _set_code(r, ["code", "coding", 0], "11506-3")
    yield _error("pattern", "pattern", f"{d}.code", "code is not LOINC 11488-4 Consult note", r)
    r = copy.deepcopy(resource)
    r["identifier"][0]["system"] = "http://example.org/sid/opinion"
    yield _error("fixed", "slice-min", f"{d}.identifier", "no identifier with the opinion-id system", r)
    codes = resource["conclusionCode"]
    i = _index_of(codes, term.CS_CONCORDANCE)
    if i is not None:
        r = copy.deepcopy(resource)
        del r["conclusionCode"][i]
        yield _error("slicing", "slice-min", f"{d}.conclusionCode", "no concordance code", r)
        r = copy.deepcopy(resource)
        other = "refined" if codes[i]["coding"][0]["code"] != "refined" else "confirmed"
        r["conclusionCode"].append(term.CONCORDANCE[other].concept())
        yield _error("slicing", "slice-max", f"{d}.conclusionCode", "two concordance codes (exactly one allowed)", r)
        r = copy.deepcopy(resource)
        _set_code(r, ["conclusionCode", i, "coding", 0], "partly")
        yield _error("binding", "required", f"{d}.conclusionCode[{i}]", "an so-concordance code that does not exist", r)
    t = _index_of(codes, term.CS_TREATMENT)
    if t is not None:
        r = copy.deepcopy(resource)
        del r["conclusionCode"][t]
        yield _error("slicing", "slice-min", f"{d}.conclusionCode", "no treatment-change code", r)
        r = copy.deepcopy(resource)
        _set_code(r, ["conclusionCode", t, "coding", 0], "maybe")
        yield _error("binding", "required", f"{d}.conclusionCode[{t}]", "an so-treatment code that does not exist", r)
    r = copy.deepcopy(resource)
    r["basedOn"] = [{"reference": "CarePlan/c1"}]
    yield _error("reference", "target-type", f"{d}.basedOn[0]", "basedOn refers to a CarePlan (profile: ServiceRequest)", r)
    if resource.get("presentedForm"):
        r = copy.deepcopy(resource)
        form = r["presentedForm"][0]
        for key in ("data", "url", "size", "hash"):
            form.pop(key, None)
        yield _error("invariant", "so-att-1", f"{d}.presentedForm[0]", "a presented form with neither data nor url", r)
        r = copy.deepcopy(resource)
        del r["presentedForm"]
        yield Mutation("valid", "optional-removed", f"{d}.presentedForm", "valid", "no signed report attached", r)
    r = copy.deepcopy(resource)
    r["conclusionCode"].append(_concept(term.ICD10, "N45.3"))
    yield Mutation("valid", "extra-diagnosis", f"{d}.conclusionCode", "valid", "one more diagnosis code", r)


BY_TYPE: dict[str, Callable[[Resource], Iterator[Mutation]]] = {
    "ServiceRequest": service_request,
    "Consent": consent,
    "DocumentReference": document_reference,
    "DiagnosticReport": diagnostic_report,
}


# --- business rules (whole bundles) ----------------------------------------------------------


def _entries(bundle: Resource, rtype: str) -> list[dict[str, Any]]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def _consent_entry(bundle: Resource, profile: str) -> dict[str, Any] | None:
    for e in _entries(bundle, "Consent"):
        if profile in (e["resource"].get("meta") or {}).get("profile", []):
            return e
    return None


def _business(rule: str, expression: str, expect: str, description: str, bundle: Resource) -> Mutation:
    return Mutation("business", rule, expression, expect, description, bundle, hapi=False)


def _permits_now(entry: dict[str, Any] | None) -> bool:
    if entry is None:
        return False
    consent = entry["resource"]
    end = (consent.get("provision") or {}).get("period", {}).get("end")
    now = datetime.now(timezone.utc).isoformat()
    return consent.get("status") == "active" and consent["provision"].get("type") == "permit" and (end is None or end > now)


def business(bundle: Resource) -> Iterator[Mutation]:
    records = _consent_entry(bundle, term.SD_CONSENT_RECORDS)
    report = _consent_entry(bundle, term.SD_CONSENT_REPORT)
    requests = _entries(bundle, "ServiceRequest")
    # a mutation expected to warn only needs a base that breaks no business rule already
    clean = _permits_now(records) and (not _entries(bundle, "DiagnosticReport") or _permits_now(report))
    if records is not None and records["resource"]["status"] == "active":
        b = copy.deepcopy(bundle)
        b["entry"] = [e for e in b["entry"] if e["fullUrl"] != records["fullUrl"]]
        for e in _entries(b, "ServiceRequest"):
            e["resource"]["supportingInfo"] = [s for s in e["resource"].get("supportingInfo", []) if s.get("reference") != records["fullUrl"]]
            if not e["resource"]["supportingInfo"]:
                del e["resource"]["supportingInfo"]
        yield _business("records-consent-missing", "Bundle.entry.resource.where(resourceType='ServiceRequest')", "error", "no records consent for the request", b)
        b = copy.deepcopy(bundle)
        _consent_entry(b, term.SD_CONSENT_RECORDS)["resource"]["status"] = "inactive"  # type: ignore[index]
        yield _business("records-consent-inactive", "Consent.status", "error", "the records consent is inactive (revoked)", b)
        b = copy.deepcopy(bundle)
        _consent_entry(b, term.SD_CONSENT_RECORDS)["resource"]["provision"]["period"] = {"start": "2020-01-01", "end": "2020-12-31"}  # type: ignore[index]
        yield _business("records-consent-expired", "Consent.provision.period", "error", "the records consent period has ended", b)
        b = copy.deepcopy(bundle)
        _consent_entry(b, term.SD_CONSENT_RECORDS)["resource"]["provision"]["actor"][0]["reference"] = copy.deepcopy(  # type: ignore[index]
            requests[0]["resource"]["requester"]
        )
        yield _business("records-consent-recipient", "Consent.provision.actor", "error", "the records consent names someone other than the performer", b)
        b = copy.deepcopy(bundle)
        _consent_entry(b, term.SD_CONSENT_RECORDS)["resource"]["provision"]["type"] = "deny"  # type: ignore[index]
        yield _business("records-consent-deny", "Consent.provision.type", "error", "the records consent denies disclosure", b)
        kinds = {c["coding"][0]["code"] for e in _entries(bundle, "DocumentReference") for c in [e["resource"]["type"]]}
        if len(kinds) > 1 and clean:
            b = copy.deepcopy(bundle)
            keep = sorted(kinds)[0]
            _consent_entry(b, term.SD_CONSENT_RECORDS)["resource"]["provision"]["code"] = [_concept(term.LOINC, keep)]  # type: ignore[index]
            yield _business("record-kind-not-consented", "DocumentReference.type", "warning", "records of kinds the consent does not allow", b)
    if report is not None and _entries(bundle, "DiagnosticReport"):
        b = copy.deepcopy(bundle)
        b["entry"] = [e for e in b["entry"] if e["fullUrl"] != report["fullUrl"]]
        for e in _entries(b, "ServiceRequest"):
            e["resource"]["supportingInfo"] = [s for s in e["resource"].get("supportingInfo", []) if s.get("reference") != report["fullUrl"]]
            if not e["resource"]["supportingInfo"]:
                del e["resource"]["supportingInfo"]
        yield _business("report-consent-missing", "Bundle.entry.resource.where(resourceType='DiagnosticReport')", "error", "an opinion without a report-back consent", b)
    if clean and requests and requests[0]["resource"].get("priority") != "stat":
        b = copy.deepcopy(bundle)
        _entries(b, "ServiceRequest")[0]["resource"]["priority"] = "stat"
        yield _business("stat-flagged", "ServiceRequest.priority", "warning", "a stat request (allowed, flagged)", b)


# --- writing ---------------------------------------------------------------------------------


def generate(out: Path, cache: PackageCache, examples_dir: Path) -> list[Entry]:
    """Write every input and the manifest into ``out`` (replaced); return the manifest rows."""
    definitions = cache.definitions([PROFILES_SPEC])
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rows: list[Entry] = []

    def write(base: str, m: Mutation) -> None:
        name = f"{len(rows):04d}-{m.resource['resourceType']}-{m.kind}-{m.rule}.json"
        (out / name).write_text(json.dumps(m.resource, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        rows.append(Entry(name, base, m.kind, m.rule, m.expression, m.expect, m.hapi, m.description))

    for base, resource in bases(definitions, examples_dir):
        rtype = resource["resourceType"]
        write(base, Mutation("valid", "base", rtype, "valid", "the base resource, unchanged", resource))
        for m in generic(resource):
            write(base, m)
        for m in required_elements(definitions, resource):
            write(base, m)
        specific = BY_TYPE.get(rtype)
        if specific is not None:
            for m in specific(resource):
                write(base, m)
    for path in sorted(examples_dir.glob("*.bundle.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        base = path.name.removesuffix(".bundle.json")
        for m in business(bundle):
            write(f"{base}/bundle", m)
    manifest = {"generator": "tests/corpus/make_manifest_corpus.py", "count": len(rows), "inputs": [asdict(r) for r in rows]}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "corpus-manifest")
    parser.add_argument("--cache", type=Path, default=None, help="FHIR package cache (default: $FHIR_SO_PACKAGES or ~/.fhir/packages)")
    parser.add_argument("--examples", type=Path, default=ROOT / "examples")
    args = parser.parse_args(argv)
    rows = generate(args.out, PackageCache(args.cache), args.examples)
    by_kind: dict[str, int] = {}
    for row in rows:
        by_kind[row.kind] = by_kind.get(row.kind, 0) + 1
    print(f"{len(rows)} inputs in {args.out}: " + ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
