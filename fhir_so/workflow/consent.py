"""The rules of the domain about consent, as pure functions over the case model.

Two consents gate the two directions of a second opinion (DESIGN.md, "Rules of the domain"):

* records out, first physician -> second: the case's ``records_consent`` must be active, a
  permit, in its period at ``now``, and name the case's performer as recipient; only the
  record kinds it lists move (an empty list means every kind), the others are withheld;
* the report back, second physician -> first: the ``report_consent`` must be active, a
  permit, in period, and name the requester as recipient. Consent to send records out is
  not consent to send the report back.

Nothing here does I/O; the transfer workflow calls these and raises :class:`ConsentError`
on a refusal, before it writes anything.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any, Literal

from fhir_so.case import Case, Consent, Party, parse_when
from fhir_so.errors import ConsentError

__all__ = ["Verdict", "Withheld", "check_records_consent", "check_report_consent", "consent_problem", "require"]

Purpose = Literal["records", "report"]

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Withheld:
    """A record that stays behind, and why."""

    record_id: str
    kind: str
    reason: str


@dataclass(frozen=True)
class Verdict:
    """What a consent allows for one step: allowed or not, why, and which records move."""

    purpose: Purpose
    allowed: bool
    reason: str
    moves: tuple[str, ...] = ()
    withheld: tuple[Withheld, ...] = field(default_factory=tuple)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        """The inverse of :meth:`to_json` (a verdict kept in a state file)."""
        return cls(
            purpose="report" if data.get("purpose") == "report" else "records",
            allowed=bool(data.get("allowed")),
            reason=str(data.get("reason", "")),
            moves=tuple(data.get("moves") or ()),
            withheld=tuple(Withheld(w["record"], w["kind"], w["reason"]) for w in data.get("withheld") or ()),
        )

    def to_json(self) -> dict[str, Any]:
        """A plain-JSON view for ``--json`` output and state files."""
        return {
            "purpose": self.purpose,
            "allowed": self.allowed,
            "reason": self.reason,
            "moves": list(self.moves),
            "withheld": [{"record": w.record_id, "kind": w.kind, "reason": w.reason} for w in self.withheld],
        }


def _period_end(value: str) -> dt.datetime:
    """The first instant after the period: a bare end date covers that whole day."""
    when = parse_when(value)
    return when + dt.timedelta(days=1) if _DATE_ONLY.fullmatch(value) else when


def _who(party: Party) -> str:
    return f"{party.name} ({party.identifier.system}|{party.identifier.value})"


def consent_problem(consent: Consent | None, recipient: Party, now: dt.datetime, what: str) -> str | None:
    """Why ``consent`` does not let ``what`` go to ``recipient`` at ``now``; None when it does."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if consent is None:
        return f"no consent for {what}: the patient has not given one"
    if consent.status == "revoked":
        return f"the consent for {what} was revoked"
    if consent.status != "active":
        return f"the consent for {what} is {consent.status}, not active"
    if consent.decision != "permit":
        return f"the consent for {what} denies it (provision.type {consent.decision})"
    start, end = consent.period.start, consent.period.end
    if start is not None and now < parse_when(start):
        return f"the consent for {what} is not yet valid: its period starts {start}"
    if end is not None and now >= _period_end(end):
        return f"the consent for {what} expired: its period ended {end}"
    if consent.recipient is not None and consent.recipient.key() != recipient.key():
        return f"the consent for {what} names {_who(consent.recipient)} as recipient, not {_who(recipient)}"
    return None


def check_records_consent(case: Case, now: dt.datetime) -> Verdict:
    """May the case's records go to its performer at ``now``, and which of them."""
    consent = case.records_consent
    problem = consent_problem(consent, case.performer, now, f"sending records to {case.performer.name}")
    if problem is not None or consent is None:
        return Verdict("records", False, problem or "no records consent")
    kinds = set(consent.record_kinds)
    moves = tuple(r.id for r in case.records if not kinds or r.kind in kinds)
    withheld = tuple(
        Withheld(r.id, r.kind, f"the consent does not cover {r.kind} records")
        for r in case.records
        if kinds and r.kind not in kinds
    )
    scope = "every record kind" if not kinds else "record kinds " + ", ".join(sorted(kinds))
    reason = f"records consent active, permit, in period, recipient {case.performer.name}; covers {scope}"
    return Verdict("records", True, reason, moves, withheld)


def check_report_consent(case: Case, now: dt.datetime) -> Verdict:
    """May the opinion go back to the case's requester at ``now``."""
    problem = consent_problem(case.report_consent, case.requester, now, f"sending the report back to {case.requester.name}")
    if problem is not None:
        return Verdict("report", False, problem)
    return Verdict("report", True, f"report consent active, permit, in period, recipient {case.requester.name}")


def require(verdict: Verdict, case_id: str) -> Verdict:
    """The verdict when it allows the step; ConsentError (exit 1) naming the case when it does not."""
    if not verdict.allowed:
        raise ConsentError(f"case {case_id}: nothing was sent: {verdict.reason}")
    return verdict
