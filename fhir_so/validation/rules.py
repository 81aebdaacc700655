"""The project's business rules (the domain's ethics), checked across the resources of one Bundle.

Each rule is a small generator with one signature, ``rule(case) -> Iterator[Issue]``, held in
the table of a :class:`BusinessRules` instance (no global registry), with its own rule id:

=====================  ========  ===============================================================
rule id                severity  what it checks
=====================  ========  ===============================================================
so-consent-records     error     a second-opinion ServiceRequest has a records Consent in the case
so-consent-active      error     that Consent is active, permits, covers now, and names the
                                 ServiceRequest's performer as recipient (IRCP)
so-consent-report      error     an opinion (DiagnosticReport) has a report-back Consent: active,
                                 permit, covering now, naming the requester as recipient
so-stat-flagged        warning   a stat request is allowed but flagged, never silently queued
so-record-withheld     warning   a record whose kind the records Consent does not permit (or with
                                 no active records Consent) will be withheld
=====================  ========  ===============================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from fhir_so import terminology as t
from fhir_so.validation.findings import BUSINESS_RULE, Issue
from fhir_so.validation.native import when as _when

Located = tuple[str, dict[str, Any]]


@dataclass
class Case:
    """The resources of one Bundle with their locations, and the time the rules are judged at."""

    now: datetime
    entries: list[Located] = field(default_factory=list)
    by_url: dict[str, Located] = field(default_factory=dict)

    @classmethod
    def of(cls, bundle: dict[str, Any], loc: str, now: datetime) -> "Case":
        case = cls(now)
        for i, entry in enumerate(_list(bundle.get("entry"))):
            if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
                continue
            item = (f"{loc}.entry[{i}].resource", entry["resource"])
            case.entries.append(item)
            if isinstance(entry.get("fullUrl"), str):
                case.by_url[entry["fullUrl"]] = item
            res = entry["resource"]
            if isinstance(res.get("id"), str):
                case.by_url.setdefault(f"{res.get('resourceType')}/{res['id']}", item)
        return case

    def of_type(self, resource_type: str) -> list[Located]:
        return [e for e in self.entries if e[1].get("resourceType") == resource_type]

    def resolve(self, ref: Any) -> Located | None:
        if isinstance(ref, dict):
            ref = ref.get("reference")
        return self.by_url.get(ref) if isinstance(ref, str) else None

    def consents(self, kind: str) -> list[Located]:
        """The case's Consents of one kind: 'records' (DocumentReference out) or 'report' (the opinion back)."""
        return [c for c in self.of_type("Consent") if consent_kind(c[1]) == kind]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _codings(concept: Any) -> list[dict[str, Any]]:
    if isinstance(concept, dict) and isinstance(concept.get("coding"), list):
        return [c for c in concept["coding"] if isinstance(c, dict)]
    return []


def _has(concept: Any, code: t.Code) -> bool:
    return any(c.get("system") == code.system and c.get("code") == code.code for c in _codings(concept))


def consent_kind(consent: dict[str, Any]) -> str | None:
    """'records' or 'report' from the profile, the provision class, or the identifier suffix."""
    profiles = _list(_dict(consent.get("meta")).get("profile"))
    if t.SD_CONSENT_RECORDS in profiles:
        return "records"
    if t.SD_CONSENT_REPORT in profiles:
        return "report"
    provision = _dict(consent.get("provision"))
    for cls in _list(provision.get("class")):
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


def _first_ref(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        return str(value["reference"])
    return None


def _consent_problems(case: Case, loc: str, consent: dict[str, Any], recipient: str | None, who: str) -> Iterator[tuple[str, str]]:
    """(location, message) for each way a Consent fails to allow the step."""
    if consent.get("status") != "active":
        yield f"{loc}.status", f"the consent is {consent.get('status')!r}, not 'active'"
    provision = _dict(consent.get("provision"))
    if provision.get("type") != "permit":
        yield f"{loc}.provision.type", f"the consent's provision type is {provision.get('type')!r}, not 'permit'"
    period = _dict(provision.get("period"))
    start, end = _when(period.get("start")), _when(period.get("end"))
    if start is not None and start[1] > case.now:
        yield f"{loc}.provision.period.start", f"the consent starts on {period['start']}, in the future"
    if end is not None and _period_end(period["end"], end) < case.now:
        yield f"{loc}.provision.period.end", f"the consent ended on {period['end']}"
    actors = [a for a in _list(provision.get("actor")) if isinstance(a, dict) and _has(a.get("role"), t.ROLE_RECIPIENT)]
    if recipient is not None:
        if not any(_first_ref(a.get("reference")) == recipient for a in actors):
            yield f"{loc}.provision.actor", f"the consent does not name {who} ({recipient}) as recipient (role IRCP)"


def _period_end(text: str, when: tuple[int, datetime]) -> datetime:
    """The last instant a partial end date covers (an end of 2024-05 lasts the whole of May)."""
    precision, moment = when
    if precision == 1:
        return moment.replace(year=moment.year + 1)
    if precision == 2:
        return moment.replace(year=moment.year + (moment.month == 12), month=moment.month % 12 + 1)
    if precision == 3:
        return moment.replace(hour=23, minute=59, second=59)
    return moment


def rule_consent_records(case: Case) -> Iterator[Issue]:
    for loc, sr in case.of_type("ServiceRequest"):
        if is_second_opinion(sr) and not case.consents("records"):
            yield Issue("error", BUSINESS_RULE, loc, "no records can be sent: the case has no Consent to share records with the second physician (add a records Consent)", "so-consent-records")


def rule_consent_active(case: Case) -> Iterator[Issue]:
    for _, sr in case.of_type("ServiceRequest"):
        if not is_second_opinion(sr):
            continue
        performer = _first_ref(sr.get("performer"))
        for loc, consent in case.consents("records"):
            for at, msg in _consent_problems(case, loc, consent, performer, "the second physician (the ServiceRequest's performer)"):
                yield Issue("error", BUSINESS_RULE, at, f"records must not be sent: {msg}", "so-consent-active")


def rule_consent_report(case: Case) -> Iterator[Issue]:
    requests = [sr for _, sr in case.of_type("ServiceRequest") if is_second_opinion(sr)]
    requester = _first_ref(requests[0].get("requester")) if requests else None
    for loc, report in case.of_type("DiagnosticReport"):
        if not (_has(report.get("code"), t.CONSULT_NOTE) or requests):
            continue
        consents = case.consents("report")
        if not consents:
            yield Issue("error", BUSINESS_RULE, loc, "the opinion must not go back: the case has no Consent to send the report to the first physician (add a report Consent)", "so-consent-report")
            continue
        for cloc, consent in consents:
            for at, msg in _consent_problems(case, cloc, consent, requester, "the first physician (the ServiceRequest's requester)"):
                yield Issue("error", BUSINESS_RULE, at, f"the opinion must not go back: {msg}", "so-consent-report")


def rule_stat_flagged(case: Case) -> Iterator[Issue]:
    for loc, sr in case.of_type("ServiceRequest"):
        if sr.get("priority") == "stat":
            yield Issue("warning", BUSINESS_RULE, f"{loc}.priority", "a stat (emergency) request: treat the emergency now, do not wait for the second opinion or for missing records", "so-stat-flagged")


def rule_record_withheld(case: Case) -> Iterator[Issue]:
    consents = case.consents("records")
    if not consents:
        return
    allowed: set[str] | None = set()
    active = False
    for _, consent in consents:
        provision = _dict(consent.get("provision"))
        if consent.get("status") != "active" or provision.get("type") != "permit":
            continue
        active = True
        codes = [c.get("code") for cc in _list(provision.get("code")) for c in _codings(cc)]
        if not codes:
            allowed = None
        elif allowed is not None:
            allowed |= {c for c in codes if isinstance(c, str)}
    for loc, doc in case.of_type("DocumentReference"):
        kinds = {c.get("code") for c in _codings(doc.get("type")) if isinstance(c.get("code"), str)}
        if not active:
            yield Issue("warning", BUSINESS_RULE, loc, "this record will be withheld: no active records Consent permits sending it", "so-record-withheld")
        elif allowed is not None and not kinds & allowed:
            yield Issue("warning", BUSINESS_RULE, f"{loc}.type", f"this record will be withheld: its kind {sorted(k for k in kinds if k)} is not among those the Consent permits {sorted(allowed)}", "so-record-withheld")


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
        case = Case.of(bundle, loc, self.now or datetime.now(timezone.utc))
        for rule in self.rules.values():
            yield from rule(case)
