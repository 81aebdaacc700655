"""The consent rules, exhaustively, as pure functions over the case model (no server)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from fhir_so.case import Identifier, Party, Period, load_case
from fhir_so.errors import ConsentError
from fhir_so.workflow.consent import check_records_consent, check_report_consent, require

ROOT = Path(__file__).resolve().parents[2]
CASE = load_case(ROOT / "examples" / "urology-second-opinion.case.json")
NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.timezone.utc)
STRANGER = Party(identifier=Identifier(system="http://hl7.org/fhir/sid/us-npi", value="9999999999"), name="Dr. Nobody")


def with_records_consent(**changes: object):  # type: ignore[no-untyped-def]
    base = CASE.records_consent
    assert base is not None
    return CASE.model_copy(update={"records_consent": base.model_copy(update=changes)})


def test_full_consent_moves_every_record() -> None:
    verdict = check_records_consent(CASE, NOW)
    assert verdict.allowed
    assert set(verdict.moves) == {r.id for r in CASE.records}
    assert verdict.withheld == ()
    assert "every record kind" in verdict.reason


def test_partial_consent_withholds_other_kinds() -> None:
    case = with_records_consent(record_kinds=["imaging", "lab-report"])
    verdict = check_records_consent(case, NOW)
    assert verdict.allowed
    assert set(verdict.moves) == {"us-scrotum", "tumor-markers"}
    assert {(w.record_id, w.kind) for w in verdict.withheld} == {("plan", "treatment-plan"), ("questions", "patient-questions")}
    assert all("does not cover" in w.reason for w in verdict.withheld)


def test_partial_consent_covering_no_record_of_the_case_moves_only_the_request() -> None:
    case = with_records_consent(record_kinds=["discharge-summary"])
    verdict = check_records_consent(case, NOW)
    assert verdict.allowed and verdict.moves == ()
    assert len(verdict.withheld) == len(CASE.records)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"status": "revoked"}, "revoked"),
        ({"status": "draft"}, "draft, not active"),
        ({"status": "proposed"}, "proposed, not active"),
        ({"status": "rejected"}, "rejected, not active"),
        ({"decision": "deny"}, "denies"),
        ({"period": Period(start="2026-12-01")}, "not yet valid"),
        ({"period": Period(start="2026-11-01T12:00:01Z")}, "not yet valid"),
        ({"period": Period(end="2026-10-31")}, "expired"),
        ({"period": Period(end="2026-11-01T11:59:59Z")}, "expired"),
        ({"recipient": STRANGER}, "Dr. Nobody"),
    ],
    ids=["revoked", "draft", "proposed", "rejected", "deny", "not-yet-date", "not-yet-instant", "expired-date", "expired-instant", "wrong-recipient"],
)
def test_records_consent_refusals(changes: dict[str, object], fragment: str) -> None:
    verdict = check_records_consent(with_records_consent(**changes), NOW)
    assert not verdict.allowed
    assert fragment in verdict.reason
    assert verdict.moves == () and verdict.withheld == ()


def test_missing_records_consent_refuses() -> None:
    verdict = check_records_consent(CASE.model_copy(update={"records_consent": None}), NOW)
    assert not verdict.allowed and "no consent" in verdict.reason


def test_a_bare_end_date_covers_that_whole_day() -> None:
    case = with_records_consent(period=Period(start="2026-11-01", end="2026-11-01"))
    assert check_records_consent(case, NOW).allowed
    assert check_records_consent(case, dt.datetime(2026, 11, 1, 23, 59, 59, tzinfo=dt.timezone.utc)).allowed
    assert not check_records_consent(case, dt.datetime(2026, 11, 2, 0, 0, tzinfo=dt.timezone.utc)).allowed


def test_period_bounds_with_offsets() -> None:
    case = with_records_consent(period=Period(start="2026-11-01T08:00:00-05:00"))  # 13:00 UTC
    assert not check_records_consent(case, NOW).allowed
    assert check_records_consent(case, NOW + dt.timedelta(hours=1)).allowed


def test_open_period_never_expires() -> None:
    case = with_records_consent(period=Period())
    assert check_records_consent(case, dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc)).allowed


def test_records_consent_is_not_report_consent() -> None:
    case = CASE.model_copy(update={"report_consent": None})
    assert check_records_consent(case, NOW).allowed
    verdict = check_report_consent(case, NOW)
    assert not verdict.allowed and "report back" in verdict.reason


def test_report_consent_recipient_must_be_the_requester() -> None:
    assert check_report_consent(CASE, NOW).allowed
    report = CASE.report_consent
    assert report is not None
    wrong = CASE.model_copy(update={"report_consent": report.model_copy(update={"recipient": CASE.performer})})
    verdict = check_report_consent(wrong, NOW)
    assert not verdict.allowed and CASE.performer.name in verdict.reason


@pytest.mark.parametrize("status", ["revoked", "draft"])
def test_report_consent_status(status: str) -> None:
    report = CASE.report_consent
    assert report is not None
    case = CASE.model_copy(update={"report_consent": report.model_copy(update={"status": status})})
    assert not check_report_consent(case, NOW).allowed


def test_report_consent_expired() -> None:
    report = CASE.report_consent
    assert report is not None
    case = CASE.model_copy(update={"report_consent": report.model_copy(update={"period": Period(end="2026-10-15")})})
    verdict = check_report_consent(case, NOW)
    assert not verdict.allowed and "expired" in verdict.reason


def test_require_raises_consent_error_with_exit_code_1() -> None:
    verdict = check_records_consent(with_records_consent(status="revoked"), NOW)
    with pytest.raises(ConsentError) as caught:
        require(verdict, CASE.case_id)
    assert caught.value.exit_code == 1
    assert CASE.case_id in str(caught.value) and "revoked" in str(caught.value)
    allowed = check_records_consent(CASE, NOW)
    assert require(allowed, CASE.case_id) is allowed


def test_naive_clock_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        check_records_consent(CASE, dt.datetime(2026, 11, 1))


def test_verdict_survives_json() -> None:
    from fhir_so.workflow.consent import Verdict

    verdict = check_records_consent(with_records_consent(record_kinds=["imaging"]), NOW)
    assert Verdict.from_json(verdict.to_json()) == verdict
