"""The project's business rules (the domain's ethics) over one case Bundle: policy, not conformance.

``fhir-so validate`` judges conformance only; these rules run when asked for
(``fhir-so validate --rules transfer``, ``ValidatorOptions(business_rules=True)``) and answer
with the one consent policy (:mod:`fhir_so.consent`), the same one the transfer, the
report-back and their dry runs use. Each rule is a small generator with one signature,
``rule(case) -> Iterator[Issue]``, held in the table of a :class:`BusinessRules` instance (no
global registry), with its own rule id:

=====================  ========  ===============================================================
rule id                severity  what it checks
=====================  ========  ===============================================================
so-consent-records     error     a second-opinion ServiceRequest has a records Consent in the case
so-consent-active      error     the case's Consents permit sending records to the ServiceRequest's
                                 performer now, for treatment (the policy's verdict for the step)
so-consent-report      error     an opinion (DiagnosticReport) has a report-back Consent, and the
                                 Consents permit sending it to the requester now
so-stat-flagged        warning   a stat request is allowed but flagged, never silently queued
so-record-withheld     warning   a record the Consents do not permit (or whose codings disagree)
                                 will be withheld
=====================  ========  ===============================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from fhir_so import terminology as t
from fhir_so.consent import Verdict, records_verdict, report_verdict
from fhir_so.validation.findings import BUSINESS_RULE, Issue

Located = tuple[str, dict[str, Any]]

RULE_SET = "transfer"  # the name ``--rules`` takes


@dataclass
class Case:
    """One Bundle as the rules see it: its location, its resources, and the time they are judged at."""

    bundle: dict[str, Any]
    loc: str
    now: datetime

    def of_type(self, resource_type: str) -> list[Located]:
        out = []
        for i, entry in enumerate(_list(self.bundle.get("entry"))):
            res = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(res, dict) and res.get("resourceType") == resource_type:
                out.append((f"{self.loc}.entry[{i}].resource", res))
        return out

    def at(self, where: str | None, fallback: str) -> str:
        """A policy location (``Bundle.entry[3].resource...``) placed under this Bundle's location."""
        if where is None or not where.startswith("Bundle."):
            return fallback
        return self.loc + where[len("Bundle"):]

    def consents(self, kind: str) -> list[Located]:
        """The case's Consents of one kind: 'records' (DocumentReference out) or 'report' (the opinion back)."""
        return [c for c in self.of_type("Consent") if consent_kind(c[1]) == kind]

    @cached_property
    def records(self) -> Verdict:
        return records_verdict(self.bundle, self.now)

    @cached_property
    def report(self) -> Verdict:
        return report_verdict(self.bundle, self.now)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _has(concept: Any, code: t.Code) -> bool:
    codings = _list(_dict(concept).get("coding"))
    return any(isinstance(c, dict) and c.get("system") == code.system and c.get("code") == code.code for c in codings)


def consent_kind(consent: dict[str, Any]) -> str | None:
    """'records' or 'report' from the profile, the provision class, or the identifier suffix."""
    profiles = _list(_dict(consent.get("meta")).get("profile"))
    if t.SD_CONSENT_RECORDS in profiles:
        return "records"
    if t.SD_CONSENT_REPORT in profiles:
        return "report"
    for cls in _list(_dict(consent.get("provision")).get("class")):
        if isinstance(cls, dict) and cls.get("system") == t.RESOURCE_TYPES:
            if cls.get("code") == "DocumentReference":
                return "records"
            if cls.get("code") == "DiagnosticReport":
                return "report"
    for ident in _list(consent.get("identifier")):
        value = ident.get("value") if isinstance(ident, dict) else None
        if isinstance(value, str) and value.endswith("-records"):
            return "records"
        if isinstance(value, str) and value.endswith("-report"):
            return "report"
    return None


def is_second_opinion(sr: dict[str, Any]) -> bool:
    """A ServiceRequest for a second (or third) opinion: the project's profile or reasonCode v2-0336 S."""
    if t.SD_SERVICE_REQUEST in _list(_dict(sr.get("meta")).get("profile")):
        return True
    return any(_has(rc, t.SECOND_OPINION) for rc in _list(sr.get("reasonCode")))


def _requests(case: Case) -> list[Located]:
    return [(loc, sr) for loc, sr in case.of_type("ServiceRequest") if is_second_opinion(sr)]


def rule_consent_records(case: Case) -> Iterator[Issue]:
    for loc, _ in _requests(case):
        if not case.consents("records"):
            yield Issue("error", BUSINESS_RULE, loc, "no records can be sent: the case has no Consent to share records with the second physician (add a records Consent)", "so-consent-records")


def rule_consent_active(case: Case) -> Iterator[Issue]:
    if not _requests(case) or not case.consents("records"):
        return
    verdict = case.records
    if not verdict.allowed:
        yield Issue("error", BUSINESS_RULE, case.at(verdict.where, case.consents("records")[0][0]), f"records must not be sent: {verdict.reason}", "so-consent-active")


def rule_consent_report(case: Case) -> Iterator[Issue]:
    requests = _requests(case)
    for loc, report in case.of_type("DiagnosticReport"):
        if not (_has(report.get("code"), t.CONSULT_NOTE) or requests):
            continue
        if not case.consents("report"):
            yield Issue("error", BUSINESS_RULE, loc, "the opinion must not go back: the case has no Consent to send the report to the first physician (add a report Consent)", "so-consent-report")
            continue
        verdict = case.report
        if not verdict.allowed:
            yield Issue("error", BUSINESS_RULE, case.at(verdict.where, case.consents("report")[0][0]), f"the opinion must not go back: {verdict.reason}", "so-consent-report")
        return  # one verdict covers every opinion of the case


def rule_stat_flagged(case: Case) -> Iterator[Issue]:
    for loc, sr in case.of_type("ServiceRequest"):
        if sr.get("priority") == "stat":
            yield Issue("warning", BUSINESS_RULE, f"{loc}.priority", "a stat (emergency) request: treat the emergency now, do not wait for the second opinion or for missing records", "so-stat-flagged")


def rule_record_withheld(case: Case) -> Iterator[Issue]:
    if not case.consents("records"):
        return
    verdict = case.records
    if not verdict.allowed:
        for loc, _ in case.of_type("DocumentReference"):
            yield Issue("warning", BUSINESS_RULE, loc, "this record will be withheld: no consent permits sending records to the second physician", "so-record-withheld")
        return
    for w in verdict.withheld:
        yield Issue("warning", BUSINESS_RULE, case.at(w.where, case.loc), f"this record will be withheld: {w.reason}", "so-record-withheld")


RuleFn = Callable[[Case], Iterator[Issue]]


class BusinessRules:
    """The table of business rules (rule id -> generator), judged at ``now`` (default: the current time)."""

    def __init__(self, now: datetime | None = None, *, rules: dict[str, RuleFn] | None = None) -> None:
        self.now = now
        self.rules: dict[str, RuleFn] = dict(rules) if rules is not None else {
            "so-consent-records": rule_consent_records,
            "so-consent-active": rule_consent_active,
            "so-consent-report": rule_consent_report,
            "so-stat-flagged": rule_stat_flagged,
            "so-record-withheld": rule_record_withheld,
        }

    def check(self, bundle: dict[str, Any], loc: str = "Bundle") -> Iterator[Issue]:
        """Every business-rule finding for one Bundle (a case); other resources are not judged alone."""
        if bundle.get("resourceType") != "Bundle":
            return
        case = Case(bundle, loc, self.now or datetime.now(timezone.utc))
        for rule in self.rules.values():
            yield from rule(case)
