"""The validation corpus: every example, and mutations of them that break one rule each.

``cases()`` yields :class:`Case` objects (name, resource, the rule kind the mutation breaks, or
``None`` for inputs meant to be valid). Deterministic: the same corpus every run. Run as a
script to write it as files (one JSON per case) for ``fhir-so validate`` and benchmarks::

    python tests/corpus/make_corpus.py OUT_DIR
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PROFILE_EXAMPLES = ROOT / "profiles" / "fsh-generated" / "resources"

Res = dict[str, Any]
Mutation = Callable[[Res], Any]

XHTML = '<div xmlns="http://www.w3.org/1999/xhtml">text</div>'


@dataclass(frozen=True)
class Case:
    """One corpus input: its name, the resource, and which rule kind it breaks (None: meant to be valid)."""

    name: str
    resource: Res
    breaks: str | None


def _examples() -> list[tuple[str, Res]]:
    """Every resource of the example bundles (each once, named after the first bundle holding it)."""
    seen: set[bytes] = set()
    out: list[tuple[str, Res]] = []
    for path in sorted(EXAMPLES.glob("*.bundle.json")):
        bundle = orjson.loads(path.read_bytes())
        stem = path.name.split(".")[0]
        for i, entry in enumerate(bundle.get("entry", [])):
            res = entry["resource"]
            key = orjson.dumps(res, option=orjson.OPT_SORT_KEYS)
            if key not in seen:
                seen.add(key)
                out.append((f"{stem}-{i:02d}-{res['resourceType']}", res))
    return out


def _bundles() -> list[tuple[str, Res]]:
    return [(p.name.split(".")[0], orjson.loads(p.read_bytes())) for p in sorted(EXAMPLES.glob("*.bundle.json"))]


# --- hand-made core resources (no project profile) ----------------------------------------------------
OBSERVATION: Res = {
    "resourceType": "Observation", "id": "obs1", "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "2857-1", "display": "PSA"}]},
    "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-09-01T08:00:00Z",
    "valueQuantity": {"value": 4.2, "unit": "ng/mL", "system": "http://unitsofmeasure.org", "code": "ng/mL"},
    "referenceRange": [{"high": {"value": 4.0, "unit": "ng/mL", "system": "http://unitsofmeasure.org", "code": "ng/mL"}}],
}
CONDITION: Res = {
    "resourceType": "Condition", "id": "c1",
    "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
    "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "363449006"}]}, "subject": {"reference": "Patient/p1"},
    "onsetDateTime": "2026-08-01",
}
ALLERGY: Res = {
    "resourceType": "AllergyIntolerance", "id": "a1", "patient": {"reference": "Patient/p1"},
    "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
    "code": {"text": "penicillin"},
}


# --- mutations ------------------------------------------------------------------------------------------
def _set(path: str, value: Any) -> Mutation:
    def change(r: Res) -> None:
        *parents, last = path.split(".")
        cur: Any = r
        for p in parents:
            cur = cur[int(p)] if p.isdigit() else cur[p]
        if isinstance(cur, list):
            cur[int(last)] = value
        else:
            cur[last] = value
    return change


def _drop(path: str) -> Mutation:
    def change(r: Res) -> None:
        *parents, last = path.split(".")
        cur: Any = r
        for p in parents:
            cur = cur[int(p)] if p.isdigit() else cur[p]
        del cur[last]
    return change


def _has(r: Res, path: str) -> bool:
    cur: Any = r
    for p in path.split("."):
        try:
            cur = cur[int(p)] if p.isdigit() else cur[p]
        except (KeyError, IndexError, TypeError, ValueError):
            return False
    return True


GENERIC: list[tuple[str, str, Mutation, str | None]] = [
    # (name, needs path, mutation, rule kind broken or None)
    ("unknown-element", "", _set("colour", "red"), "structure"),
    ("bad-id", "", _set("id", "bad_id!"), "format"),
    ("id-too-long", "", _set("id", "x" * 65), "format"),
    ("empty-meta", "", _set("meta", {}), "ele-1"),
    ("language-as-array", "", _set("language", ["en"]), "structure"),
    ("language-empty-string", "", _set("language", ""), "format"),
    ("valid-language", "", _set("language", "en"), None),
    ("ext-1-both", "", _set("extension", [{"url": "http://example.org/x", "valueString": "a", "extension": [{"url": "y", "valueString": "b"}]}]), "ext-1"),
    ("ext-no-url", "", _set("extension", [{"valueString": "a"}]), "cardinality"),
    ("unknown-extension", "", _set("extension", [{"url": "http://example.org/fhir/StructureDefinition/note", "valueString": "a"}]), None),
    ("narrative-ok", "", _set("text", {"status": "generated", "div": XHTML}), None),
    ("narrative-no-xmlns", "", _set("text", {"status": "generated", "div": "<div>text</div>"}), "format"),
    ("narrative-bad-status", "", _set("text", {"status": "bogus", "div": XHTML}), "binding"),
    ("narrative-no-div", "", _set("text", {"status": "generated"}), "cardinality"),
    ("contained-orphan", "", _set("contained", [{"resourceType": "Organization", "id": "o1", "name": "Clinic"}]), "dom-3"),
    ("contained-no-id", "", _set("contained", [{"resourceType": "Organization", "name": "Clinic"}]), None),  # dom-3 is empty, so passes
    ("meta-bad-instant", "", _set("meta", {"lastUpdated": "2026-01-01"}), "format"),
    ("meta-bad-profile-uri", "", _set("meta", {"source": "has space"}), "format"),
    ("implicitRules-number", "", _set("implicitRules", 5), "format"),
]

# per resource type: (name, path that must exist or "" , mutation, rule kind broken or None)
TYPED: dict[str, list[tuple[str, str, Mutation, str | None]]] = {
    "ServiceRequest": [
        ("drop-status", "status", _drop("status"), "cardinality"),
        ("status-bogus", "status", _set("status", "bogus"), "binding"),
        ("intent-bogus", "intent", _set("intent", "bogus"), "binding"),
        ("intent-plan", "intent", _set("intent", "plan"), "fixed"),
        ("drop-subject", "subject", _drop("subject"), "cardinality"),
        ("subject-wrong-type", "subject", _set("subject", {"reference": "Medication/m1"}), "reference"),
        ("authoredOn-not-a-date", "authoredOn", _set("authoredOn", "2023-02-30T10:00:00Z"), "format"),
        ("authoredOn-no-tz", "authoredOn", _set("authoredOn", "2026-10-02T09:15:00"), "format"),
        ("authoredOn-date-only", "authoredOn", _set("authoredOn", "2026-10-02"), None),
        ("priority-bogus", "priority", _set("priority", "soon"), "binding"),
        ("drop-second-opinion-reason", "reasonCode", lambda r: r.__setitem__("reasonCode", r["reasonCode"][1:]), "slicing"),
        ("code-changed", "code", _set("code", {"coding": [{"system": "http://snomed.info/sct", "code": "11429006"}]}), "pattern"),
        ("category-changed", "category", _set("category", [{"coding": [{"system": "http://snomed.info/sct", "code": "77406008"}]}]), "slicing"),
        ("mode-not-in-valueset", "orderDetail", _set("orderDetail.0.coding.0.code", "by-pigeon"), "binding"),
        ("drop-identifier", "identifier", _drop("identifier"), "cardinality"),
        ("drop-requester", "requester", _drop("requester"), "cardinality"),
        ("performer-wrong-type", "performer", _set("performer", [{"reference": "Medication/m1"}]), "reference"),
        ("note-as-object", "note", lambda r: r.__setitem__("note", r["note"][0]), "structure"),
        ("reasonCode-as-object", "reasonCode", lambda r: r.__setitem__("reasonCode", r["reasonCode"][0]), "structure"),
        ("occurrence-period-reversed", "", _set("occurrencePeriod", {"start": "2026-12-01", "end": "2026-11-01"}), "per-1"),
        ("occurrence-two-types", "", lambda r: r.update(occurrenceDateTime="2026-12-01", occurrencePeriod={"start": "2026-12-01"}), "structure"),
        ("quantity-code-no-system", "", _set("quantityQuantity", {"value": 1, "code": "mg"}), "qty-3"),
        ("orderDetail-without-code", "code", _drop("code"), "cardinality"),
        ("asNeeded-string", "", _set("asNeededBoolean", "true"), "format"),
    ],
    "Consent": [
        ("drop-status", "status", _drop("status"), "cardinality"),
        ("status-bogus", "status", _set("status", "bogus"), "binding"),
        ("scope-changed", "scope", _set("scope", {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}]}), "pattern"),
        ("drop-patient", "patient", _drop("patient"), "cardinality"),
        ("dateTime-bad", "dateTime", _set("dateTime", "2026-13-01T10:00:00Z"), "format"),
        ("period-reversed", "provision.period", _set("provision.period", {"start": "2026-12-01", "end": "2026-01-01"}), "per-1"),
        ("provision-type-bogus", "provision.type", _set("provision.type", "allow"), "binding"),
        ("drop-policyRule", "policyRule", _drop("policyRule"), "cardinality"),
        ("drop-actor", "provision.actor", _drop("provision.actor"), "cardinality"),
        ("actor-role-changed", "provision.actor", _set("provision.actor.0.role", {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "AUT"}]}), "slicing"),
        ("purpose-changed", "provision.purpose", _set("provision.purpose", [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}]), "slicing"),
        ("action-changed", "provision.action", _set("provision.action", [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}]), "slicing"),
        ("category-loinc-bad-form", "category", _set("category.0.coding.0.code", "not-loinc"), "code"),
        ("performer-wrong-type", "performer", _set("performer", [{"reference": "Medication/m1"}]), "reference"),
        ("provision-empty", "provision", _set("provision", {}), "ele-1"),
    ],
    "DocumentReference": [
        ("status-bogus", "status", _set("status", "final"), "binding"),
        ("drop-content", "content", _drop("content"), "cardinality"),
        ("data-bad-base64", "content.0.attachment.data", _set("content.0.attachment.data", "not base64!"), "format"),
        ("data-without-contentType", "content.0.attachment.data", _drop("content.0.attachment.contentType"), "att-1"),
        ("size-negative", "content.0.attachment.size", _set("content.0.attachment.size", -1), "format"),
        ("size-as-string", "content.0.attachment.size", _set("content.0.attachment.size", "12"), "format"),
        ("date-not-instant", "date", _set("date", "2026-10-01"), "format"),
        ("type-loinc-bad-form", "type", _set("type.coding.0.code", "x-1-2"), "code"),
        ("drop-subject", "subject", _drop("subject"), "cardinality"),
        ("subject-wrong-type", "subject", _set("subject", {"reference": "Medication/m1"}), "reference"),
        ("no-data-no-url", "content.0.attachment", lambda r: [r["content"][0]["attachment"].pop(k, None) for k in ("data", "url", "size", "hash")], "so-att-1"),
        ("data-without-size", "content.0.attachment.data", _drop("content.0.attachment.size"), "so-att-2"),
        ("contentType-bogus", "content.0.attachment.contentType", _set("content.0.attachment.contentType", "not a mime type"), "binding"),
        ("attachment-url-space", "content.0.attachment.url", _set("content.0.attachment.url", "has space"), "format"),
        ("drop-identifier", "identifier", _drop("identifier"), "cardinality"),
    ],
    "DiagnosticReport": [
        ("status-bogus", "status", _set("status", "done"), "binding"),
        ("drop-code", "code", _drop("code"), "cardinality"),
        ("code-changed", "code", _set("code", {"coding": [{"system": "http://loinc.org", "code": "11502-2"}]}), "pattern"),
        ("basedOn-wrong-type", "basedOn", _set("basedOn", [{"reference": "Patient/p1"}]), "reference"),
        ("issued-not-instant", "issued", _set("issued", "2026-10-01"), "format"),
        ("drop-conclusionCode", "conclusionCode", _drop("conclusionCode"), "cardinality"),
        ("presentedForm-no-contentType", "presentedForm", lambda r: r["presentedForm"][0].pop("contentType"), "att-1"),
        ("effective-period-reversed", "", _set("effectivePeriod", {"start": "2026-12-01", "end": "2026-01-01"}), "per-1"),
    ],
    "Patient": [
        ("gender-bogus", "", _set("gender", "f"), "binding"),
        ("birthDate-not-a-date", "", _set("birthDate", "2023-02-30"), "format"),
        ("birthDate-bad-form", "", _set("birthDate", "1970-1-1"), "format"),
        ("birthDate-leap-ok", "", _set("birthDate", "2024-02-29"), None),
        ("active-string", "", _set("active", "true"), "format"),
        ("name-as-object", "name", lambda r: r.__setitem__("name", r["name"][0]), "structure"),
        ("telecom-system-bogus", "", _set("telecom", [{"system": "pager2", "value": "1"}]), "binding"),
        ("contact-empty-details", "", _set("contact", [{"gender": "male"}]), "pat-1"),
        ("deceased-two-types", "", lambda r: r.update(deceasedBoolean=False, deceasedDateTime="2020-01-01"), "structure"),
        ("multipleBirth-integer-float", "", _set("multipleBirthInteger", 1.5), "format"),
        ("deceased-ok", "", _set("deceasedBoolean", False), None),
        ("link-without-other", "", _set("link", [{"type": "seealso"}]), "cardinality"),
    ],
    "Practitioner": [
        ("gender-bogus", "", _set("gender", "x"), "binding"),
        ("qualification-without-code", "", _set("qualification", [{"issuer": {"display": "x"}}]), "cardinality"),
        ("birthDate-ok", "", _set("birthDate", "1970-05-05"), None),
    ],
    "Organization": [
        ("org-1-no-identifier-no-name", "", lambda r: [r.pop(k, None) for k in ("identifier", "name")], "org-1"),
        ("org-3-home-telecom", "", _set("telecom", [{"system": "phone", "value": "1", "use": "home"}]), "org-3"),
        ("telecom-ok", "", _set("telecom", [{"system": "phone", "value": "1", "use": "work"}]), None),
    ],
    "Coverage": [
        ("status-bogus", "status", _set("status", "open"), "binding"),
        ("drop-beneficiary", "beneficiary", _drop("beneficiary"), "cardinality"),
        ("drop-payor", "payor", _drop("payor"), "cardinality"),
        ("payor-wrong-type", "payor", _set("payor", [{"reference": "Medication/m1"}]), "reference"),
    ],
    "Observation": [
        ("obs-6-value-and-absent", "", _set("dataAbsentReason", {"text": "n/a"}), "obs-6"),
        ("qty-3-code-no-system", "", _drop("valueQuantity.system"), "qty-3"),
        ("drop-status", "", _drop("status"), "cardinality"),
        ("value-as-string", "", _set("valueQuantity.value", "4.2"), "format"),
        ("effective-period-reversed", "", lambda r: (r.pop("effectiveDateTime"), r.update(effectivePeriod={"start": "2026-12-01", "end": "2026-01-01"})), "per-1"),
        ("obs-3-empty-range", "", _set("referenceRange", [{"type": {"text": "normal"}}]), "obs-3"),
        ("component-without-code", "", _set("component", [{"valueString": "x"}]), "cardinality"),
        ("category-unknown-code", "", _set("category", [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "nonsense"}]}]), "code"),
        ("status-bogus", "", _set("status", "done"), "binding"),
        ("valueString-ok", "", lambda r: (r.pop("valueQuantity"), r.update(valueString="high")), None),
    ],
    "Condition": [
        ("clinicalStatus-bogus", "", _set("clinicalStatus.coding.0.code", "gone"), "binding"),
        ("drop-subject", "", _drop("subject"), "cardinality"),
        ("onset-not-a-date", "", _set("onsetDateTime", "2026-02-31"), "format"),
        ("con-3-no-clinical-status-ok", "", _drop("clinicalStatus"), None),
    ],
    "AllergyIntolerance": [
        ("clinicalStatus-bogus", "", _set("clinicalStatus.coding.0.code", "gone"), "binding"),
        ("drop-patient", "", _drop("patient"), "cardinality"),
        ("criticality-bogus", "", _set("criticality", "very"), "binding"),
    ],
}

BASES_PER_TYPE = 3


def _entry(bundle: Res, rt: str) -> Res:
    return next(e for e in bundle["entry"] if e["resource"]["resourceType"] == rt)


def _bundle_mutations() -> list[tuple[str, Callable[[Res], Any], str | None]]:
    """Mutations of a whole case Bundle: references resolved inside it, entry rules, bdl-* invariants."""
    def subject_to_practitioner(b: Res) -> None:
        _entry(b, "ServiceRequest")["resource"]["subject"] = {"reference": _entry(b, "Practitioner")["fullUrl"]}

    def dangling_urn(b: Res) -> None:
        _entry(b, "ServiceRequest")["resource"]["subject"] = {"reference": "urn:uuid:00000000-0000-4000-8000-000000000000"}

    def drop_request(b: Res) -> None:
        del b["entry"][0]["request"]

    def history_fullurl(b: Res) -> None:
        b["entry"][0]["fullUrl"] = "http://example.org/fhir/Patient/1/_history/1"

    def duplicate_fullurl(b: Res) -> None:
        b["entry"][1]["fullUrl"] = b["entry"][0]["fullUrl"]

    def empty_entry(b: Res) -> None:
        b["entry"].append({})

    def total_on_transaction(b: Res) -> None:
        b["total"] = 3

    def request_method_bogus(b: Res) -> None:
        b["entry"][0]["request"]["method"] = "FETCH"

    def entry_resource_invalid(b: Res) -> None:
        _entry(b, "Patient")["resource"]["birthDate"] = "1970-02-30"

    def consent_patient_to_org(b: Res) -> None:
        _entry(b, "Consent")["resource"]["patient"] = {"reference": _entry(b, "Organization")["fullUrl"]}

    def as_collection(b: Res) -> None:
        b["type"] = "collection"
        for e in b["entry"]:
            e.pop("request", None)

    def type_bogus(b: Res) -> None:
        b["type"] = "pile"

    return [
        ("subject-resolves-to-practitioner", subject_to_practitioner, "reference"),
        ("dangling-urn-uuid", dangling_urn, "reference"),
        ("entry-without-request", drop_request, "bdl-3"),
        ("fullUrl-with-history", history_fullurl, "bdl-8"),
        ("duplicate-fullUrl", duplicate_fullurl, "bdl-7"),
        ("empty-entry", empty_entry, "ele-1"),
        ("total-on-transaction", total_on_transaction, "bdl-1"),
        ("request-method-bogus", request_method_bogus, "binding"),
        ("entry-resource-invalid", entry_resource_invalid, "format"),
        ("consent-patient-resolves-to-organization", consent_patient_to_org, "reference"),
        ("as-collection-ok", as_collection, None),
        ("type-bogus", type_bogus, "binding"),
    ]


def cases() -> Iterator[Case]:
    """The whole corpus, in a stable order."""
    named = _examples() + [("core-Observation", OBSERVATION), ("core-Condition", CONDITION), ("core-AllergyIntolerance", ALLERGY)]
    examples = [res for _, res in named]
    for name, res in named:
        yield Case(f"example-{name}", res, None)
    bundles = _bundles()
    for name, bundle in bundles:
        yield Case(f"bundle-{name}", bundle, None)
    for name, bundle in bundles[:2]:
        for mname, mutate, breaks in _bundle_mutations():
            res = copy.deepcopy(bundle)
            mutate(res)
            yield Case(f"bundle-{name}-{mname}", res, breaks)
    by_type: dict[str, list[Res]] = {}
    for res in examples:
        by_type.setdefault(res["resourceType"], []).append(res)
    for rt, bases in by_type.items():
        for b, base in enumerate(bases[:BASES_PER_TYPE]):
            for name, needs, mutate, breaks in TYPED.get(rt, []):
                if needs and not _has(base, needs):
                    continue
                res = copy.deepcopy(base)
                mutate(res)
                yield Case(f"{rt}-{b}-{name}", res, breaks)
        base = bases[0]
        for name, needs, mutate, breaks in GENERIC:
            res = copy.deepcopy(base)
            mutate(res)
            yield Case(f"{rt}-generic-{name}", res, breaks)


def write(out: Path) -> int:
    """Write the corpus as one JSON file per case; returns how many."""
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for case in cases():
        (out / f"{case.name}.json").write_bytes(orjson.dumps(case.resource, option=orjson.OPT_INDENT_2))
        n += 1
    return n


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_corpus.py OUT_DIR")
    print(write(Path(sys.argv[1])), "cases written to", sys.argv[1])
