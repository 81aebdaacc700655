"""Business rules across a case Bundle: each rule fails on a broken case and passes on a good one."""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_so.validation.rules import BusinessRules

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _case() -> dict[str, Any]:
    return orjson.loads((EXAMPLES / "urology-second-opinion.bundle.json").read_bytes())


def _of(bundle: dict[str, Any], rt: str, kind: str | None = None) -> dict[str, Any]:
    for e in bundle["entry"]:
        r = e["resource"]
        if r["resourceType"] == rt and (kind is None or any(i["value"].endswith(kind) for i in r.get("identifier", []))):
            return r
    raise LookupError(rt)


def found(bundle: dict[str, Any]) -> set[str]:
    return {i.rule for i in BusinessRules(NOW).check(bundle)}


def test_the_story_passes_every_rule() -> None:
    assert found(_case()) == set()


def _drop_consent(kind: str) -> Any:
    def change(b: dict[str, Any]) -> None:
        b["entry"] = [e for e in b["entry"] if not (e["resource"]["resourceType"] == "Consent" and e["resource"]["identifier"][0]["value"].endswith(kind))]
    return change


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        (_drop_consent("-records"), "so-consent-records"),
        (lambda b: _of(b, "Consent", "-records").update(status="inactive"), "so-consent-active"),
        (lambda b: _of(b, "Consent", "-records")["provision"].update(type="deny"), "so-consent-active"),
        (lambda b: _of(b, "Consent", "-records")["provision"].update(period={"start": "2020-01-01", "end": "2021-01-01"}), "so-consent-active"),
        (lambda b: _of(b, "Consent", "-records")["provision"]["actor"][0].update(reference={"reference": "urn:uuid:00000000-0000-4000-8000-000000000000"}), "so-consent-active"),
        (_drop_consent("-report"), "so-consent-report"),
        (lambda b: _of(b, "Consent", "-report").update(status="proposed"), "so-consent-report"),
        (lambda b: _of(b, "ServiceRequest").update(priority="stat"), "so-stat-flagged"),
        (lambda b: _of(b, "Consent", "-records")["provision"].update(code=[{"coding": [{"system": "http://loinc.org", "code": "51855-5"}]}]), "so-record-withheld"),
    ],
    ids=["no-records-consent", "records-consent-inactive", "records-consent-deny", "records-consent-expired", "wrong-recipient",
         "no-report-consent", "report-consent-not-active", "stat", "record-kind-not-permitted"],
)
def test_rule_fails(change: Any, rule: str) -> None:
    bundle = copy.deepcopy(_case())
    change(bundle)
    assert rule in found(bundle)


def test_severities_and_locations() -> None:
    bundle = copy.deepcopy(_case())
    _of(bundle, "ServiceRequest").update(priority="stat")
    _of(bundle, "Consent", "-records").update(status="inactive")
    issues = {i.rule: i for i in BusinessRules(NOW).check(bundle)}
    assert issues["so-stat-flagged"].severity == "warning" and issues["so-stat-flagged"].expression.endswith(".priority")
    assert issues["so-consent-active"].severity == "error" and issues["so-consent-active"].expression.startswith("Bundle.entry[")
    assert issues["so-record-withheld"].severity == "warning"


def test_rules_only_judge_bundles() -> None:
    assert list(BusinessRules(NOW).check(_of(_case(), "ServiceRequest"))) == []


def test_a_rule_table_is_per_instance() -> None:
    only_stat = BusinessRules(NOW, rules={"so-stat-flagged": BusinessRules().rules["so-stat-flagged"]})
    bundle = copy.deepcopy(_case())
    _drop_consent("-records")(bundle)
    assert {i.rule for i in only_stat.check(bundle)} == set()
