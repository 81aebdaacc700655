"""The one consent policy against the scenario table: named scenarios and every combination.

Each scenario's Consents are written as FHIR into the base case's Bundle (linked ones, with a
reference from ``ServiceRequest.supportingInfo``) or handed over as the server's search would
(unlinked ones); the records the policy lets move are compared with the oracle of
tests/consent/scenarios.py. A record that moves where the oracle refuses it is a violation.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from fhir_so import terminology as term
from fhir_so.bundle import build_bundle
from fhir_so.consent import item_kind, period_contains, records_verdict, report_verdict

from tests.consent.figures import figures
from tests.consent.scenarios import EVERY, NAMED, NOW, Refs, Scenario, base_case, combinations, consent_json, oracle

BASE = build_bundle(base_case())


def _refs(bundle: dict[str, Any]) -> Refs:
    sr = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest")
    performer = base_case().performer.identifier
    records = {e["resource"]["identifier"][0]["value"].split("/", 1)[1]: {"reference": e["fullUrl"]}
               for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference"}
    return Refs(sr["subject"], sr["performer"][0], sr["requester"], {"system": performer.system, "value": performer.value}, records)


def setup(scenario: Scenario) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The scenario's bundle (linked Consents inside) and its unlinked Consents (as a server search gives them)."""
    bundle = copy.deepcopy(BASE)
    refs = _refs(bundle)
    sr = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest")
    unlinked = []
    patient_ident = base_case().patient.identifier
    for i, spec in enumerate(scenario.consents):
        resource = consent_json(spec, i, scenario.name, refs, {"system": patient_ident.system, "value": patient_ident.value})
        if spec.linked:
            url = f"urn:uuid:00000000-0000-4000-8000-{i:012d}"
            bundle["entry"].append({"fullUrl": url, "resource": resource})
            sr.setdefault("supportingInfo", []).append({"reference": url})
        else:
            unlinked.append({**resource, "id": f"unlinked-{i}"})
    for rid, codings in scenario.codings:
        doc = next(e["resource"] for e in bundle["entry"] if e["resource"].get("identifier", [{}])[0].get("value", "").endswith(f"/{rid}"))
        doc["type"] = {"coding": [{"system": s, "code": c} for s, c in codings]}
    return bundle, unlinked


def moved(scenario: Scenario) -> frozenset[str] | None:
    bundle, unlinked = setup(scenario)
    verdict = records_verdict(bundle, NOW, consents=unlinked)
    return frozenset(verdict.moves) if verdict.allowed else None


def violations(got: frozenset[str] | None, allowed: frozenset[str] | None) -> int:
    """Records moved that the oracle does not allow."""
    return len((got or frozenset()) - (allowed or frozenset()))


# Hand-written expectations for the named scenarios: they check the oracle as much as the policy.
EXPECTED: dict[str, frozenset[str] | None] = {
    "plain-permit": EVERY,
    "nested-deny-for-a-kind": EVERY - {"tumor-markers"},
    "nested-deny-for-everything": None,
    "two-linked-deny-then-permit": None,
    "two-linked-permit-then-deny": None,
    "consent-of-another-patient": None,
    "purpose-research": None,
    "purpose-marketing": None,
    "action-access": None,
    "active-deny-not-linked": None,
    "lab-first-imaging-second-under-lab-only": frozenset({"tumor-markers"}),
    "revoked": None,
    "draft": None,
    "entered-in-error-deny-is-void": EVERY,
    "expired": None,
    "not-yet-valid": None,
    "bare-end-date-covers-the-day": EVERY,
    "end-second-included": EVERY,
    "end-second-passed": None,
    "wrong-recipient": None,
    "recipient-by-identifier-only": EVERY,
    "recipient-unreadable": None,
    "actor-role-not-ircp-on-a-deny": None,
    "provision-type-missing": None,
    "deny-with-permit-exception": EVERY,
    "unlinked-permit-counts": EVERY,
    "unlinked-deny-for-another-recipient": EVERY,
    "nested-deny-expired-has-no-effect": EVERY,
    "deny-for-continuity-of-care": None,
    "deny-for-research-only": EVERY,
    "report-consent-class-only": None,
    "foreign-purpose-permit": None,
    "deny-restricted-label": EVERY - {"plan"},
    "deny-one-record-instance": EVERY - {"questions"},
    "permit-only-imaging-and-lab": frozenset({"tumor-markers", "us-scrotum"}),
    "record-with-a-snomed-coding": EVERY - {"tumor-markers"},
    "research-scope-consent-ignored": EVERY,
    "permit-for-another-request-of-the-patient": None,
    "deny-for-another-request-of-the-patient": EVERY,
}


def test_every_named_scenario_has_a_hand_written_expectation() -> None:
    assert {s.name for s in NAMED} == set(EXPECTED)
    assert len(NAMED) >= 22


@pytest.mark.parametrize("scenario", NAMED, ids=[s.name for s in NAMED])
def test_named_scenario(scenario: Scenario, request: pytest.FixtureRequest) -> None:
    got, want = moved(scenario), EXPECTED[scenario.name]
    figures(request.config).add("unit named", 1, violations(got, want), int(got != want))
    assert oracle(scenario) == want, "the oracle disagrees with the hand-written expectation"
    assert got == want


def test_every_combination(request: pytest.FixtureRequest) -> None:
    table = combinations()
    bad, wrong = [], []
    for scenario in table:
        got, want = moved(scenario), oracle(scenario)
        if violations(got, want):
            bad.append(f"{scenario.name}: moved {sorted(got or ())}, allowed {sorted(want or ())}")
        elif got != want:
            wrong.append(f"{scenario.name}: moved {sorted(got or ())}, expected {sorted(want or ())}")
    figures(request.config).add("unit combinations", len(table), len(bad), len(wrong) + len(bad))
    assert len(table) >= 1000
    assert not bad, "\n".join(bad[:20])
    assert not wrong, "\n".join(wrong[:20])


def test_refusals_say_why() -> None:
    by_name = {s.name: s for s in NAMED}
    for name, fragment in [("revoked", "revoked"), ("expired", "expired"), ("purpose-research", "HRESCH"),
                           ("action-access", "access"), ("consent-of-another-patient", "another patient"),
                           ("active-deny-not-linked", "denies"), ("provision-type-missing", "cannot be read"),
                           ("recipient-unreadable", "cannot be read as a permit")]:
        bundle, unlinked = setup(by_name[name])
        verdict = records_verdict(bundle, NOW, consents=unlinked)
        assert not verdict.allowed and fragment in verdict.reason, (name, verdict.reason)


def test_withheld_record_says_its_codings_disagree() -> None:
    bundle, unlinked = setup(next(s for s in NAMED if s.name.startswith("lab-first")))
    verdict = records_verdict(bundle, NOW, consents=unlinked)
    (imaging,) = [w for w in verdict.withheld if w.record_id == "us-scrotum"]
    assert "disagree" in imaging.reason and imaging.kind == "unknown"


@pytest.mark.parametrize(
    ("end", "now", "inside"),
    [
        ("2026-11-01", "2026-11-01T23:59:59.999999+00:00", True),
        ("2026-11-01", "2026-11-02T00:00:00+00:00", False),
        ("2026-11", "2026-11-30T23:59:59+00:00", True),
        ("2026-11", "2026-12-01T00:00:00+00:00", False),
        ("2026", "2026-12-31T23:59:59+00:00", True),
        ("2026-11-01T12:00:00Z", "2026-11-01T12:00:00.999+00:00", True),
        ("2026-11-01T12:00:00Z", "2026-11-01T12:00:01+00:00", False),
        ("2026-11-01T12:00:00.500Z", "2026-11-01T12:00:00.500+00:00", True),
        ("2026-11-01T12:00:00.500Z", "2026-11-01T12:00:00.501+00:00", False),
    ],
)
def test_one_definition_of_the_end_of_a_period(end: str, now: str, inside: bool) -> None:
    ok, _ = period_contains({"end": end}, dt.datetime.fromisoformat(now))
    assert ok is inside


def test_unreadable_period_is_not_a_permit() -> None:
    assert period_contains({"end": "soon"}, NOW)[0] is None


@pytest.mark.parametrize(
    ("codings", "kind"),
    [
        ([(term.LOINC, "11502-2")], "lab-report"),
        ([(term.LOINC, "11502-2"), (term.LOINC, "11502-2")], "lab-report"),
        ([(term.LOINC, "11502-2"), (term.LOINC, "18748-4")], None),
        ([(term.LOINC, "18748-4"), (term.LOINC, "11502-2")], None),
        ([(term.LOINC, "11502-2"), (term.SNOMED, "4241000179101")], None),
        ([], None),
    ],
)
def test_a_records_kind_comes_from_all_its_codings(codings: list[tuple[str, str]], kind: str | None) -> None:
    doc = {"resourceType": "DocumentReference", "type": {"coding": [{"system": s, "code": c} for s, c in codings]}}
    assert item_kind(doc)[0] == kind


def test_report_back_reads_the_same_rules() -> None:
    case = base_case()
    assert report_verdict(build_bundle(case), NOW).allowed
    bundle = copy.deepcopy(build_bundle(case))
    report = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Consent")
    report["provision"]["provision"] = [{"type": "deny", "class": [{"system": term.RESOURCE_TYPES, "code": "DiagnosticReport"}]}]
    verdict = report_verdict(bundle, NOW)
    assert not verdict.allowed and "denies" in verdict.reason
    research = copy.deepcopy(build_bundle(case))
    next(e["resource"] for e in research["entry"] if e["resource"]["resourceType"] == "Consent")["provision"]["purpose"] = [
        {"system": term.V3_ACT_REASON, "code": "HRESCH"}]
    assert not report_verdict(research, NOW).allowed


def test_provisions_nested_too_deep_are_refused_not_a_traceback() -> None:
    bundle, unlinked = setup(NAMED[0])
    consent = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Consent" and e["fullUrl"].startswith("urn:uuid:00000000"))
    inner = consent["provision"]
    for _ in range(5000):
        inner["provision"] = [{"type": "permit"}]
        inner = inner["provision"][0]
    verdict = records_verdict(bundle, NOW, consents=unlinked)
    assert not verdict.allowed and "deep" in verdict.reason
