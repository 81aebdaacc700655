"""The embedding API as a health IT team uses it: canonical cases, validating changes, case ids everywhere."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from tests.workflow.conftest import BASE, EXAMPLES, OTHER, quick_policy
from tests.workflow.fake_fhir import FakeFhir, session_for

import fhir_so
from fhir_so.case import Case, Opinion, Record, case_from_dict, load_case
from fhir_so.client import FhirClient
from fhir_so.errors import CaseNotFoundError, ConsentError, InputError
from fhir_so.workflow import find_request_id, pull, push, transfer

NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.timezone.utc)
UROLOGY = EXAMPLES / "urology-second-opinion.case.json"


def raw(case: Case) -> dict[str, object]:
    return json.loads(case.to_json())


def test_a_case_is_canonical_however_it_was_written(urology: Case) -> None:
    data = raw(urology)
    data["records_consent"].pop("recipient")  # type: ignore[union-attr]
    data["records"] = list(reversed(data["records"]))  # type: ignore[arg-type]
    for record in data["records"]:  # type: ignore[union-attr]
        if record.get("author") == data["requester"]:
            record.pop("author")  # the default author is the first physician
    short = Case.model_validate(data)
    assert short == urology
    assert short.records_consent is not None and short.records_consent.recipient == urology.performer
    assert [r.id for r in short.records] == sorted(r.id for r in urology.records)
    assert fhir_so.parse_bundle(fhir_so.build_bundle(short)) == short


def test_changes_validate_and_return_new_cases(urology: Case) -> None:
    assert urology.records_consent is not None
    revoked = urology.revoke_records_consent("2026-11-02T08:00:00Z")
    assert revoked.records_consent is not None and revoked.records_consent.status == "revoked"
    assert revoked.records_consent.date == "2026-11-02T08:00:00Z"
    assert urology.records_consent.status == "active", "the original case is unchanged"
    assert revoked.revoke_report_consent().report_consent.status == "revoked"  # type: ignore[union-attr]

    assert urology.opinion is not None
    bare = urology.updated(opinion=None)
    assert bare.opinion is None
    assert bare.with_opinion(urology.opinion) == urology
    assert bare.with_opinion(urology.opinion.model_dump()) == urology

    first = urology.records[0]
    fewer = urology.without_record(first.id)
    assert first.id not in [r.id for r in fewer.records]
    assert fewer.with_record(first) == urology
    assert fewer.with_record({**first.model_dump(exclude_none=True), "author": None}) == urology  # the author is filled in


@pytest.mark.parametrize(
    ("change", "message", "where"),
    [
        (lambda c: c.updated(mode="video"), "Input should be", "$.mode"),
        (lambda c: c.updated(colour="red"), "unknown case field", None),
        (lambda c: c.with_record(c.records[0]), "record ids must be unique", None),
        (lambda c: c.with_opinion({"status": "final"}), "Field required", "$.opinion.issued"),
        (lambda c: c.without_record("no-such-record"), "no record", "$.records"),
        (lambda c: c.updated(records_consent=None).revoke_records_consent(), "no records_consent", "$.records_consent"),
    ],
    ids=["bad-mode", "unknown-field", "duplicate-record", "incomplete-opinion", "absent-record", "nothing-to-revoke"],
)
def test_a_bad_change_is_an_input_error_naming_the_place(urology: Case, change, message: str, where: str | None) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=message) as caught:
        change(urology)
    assert caught.value.exit_code == 2
    assert caught.value.source == f"case {urology.case_id}"
    if where:
        assert caught.value.location == where


def test_models_are_exported_for_building_a_case_in_code() -> None:
    assert fhir_so.Opinion is Opinion and fhir_so.Record is Record and fhir_so.CaseNotFoundError is CaseNotFoundError
    assert case_from_dict(raw(load_case(UROLOGY))) == load_case(UROLOGY)


@pytest.fixture
def servers() -> tuple[FakeFhir, FakeFhir, FhirClient, FhirClient]:
    clinic, expert = FakeFhir(BASE), FakeFhir(OTHER)
    session = session_for(clinic, expert)
    return clinic, expert, FhirClient(BASE, session=session, retries=quick_policy()), FhirClient(OTHER, session=session, retries=quick_policy())


def test_pull_and_transfer_take_the_case_id(servers, urology: Case) -> None:  # type: ignore[no-untyped-def]
    _, _, src, dst = servers
    first = urology.updated(opinion=None, task=None)  # the Task is made on the expert's server
    pushed = push(src, first)
    assert pull(src, case_id=first.case_id) == first  # no with_defaults needed: canonical by construction
    assert find_request_id(src, first.case_id) == pushed.request_id
    result = transfer(src, dst, case_id=first.case_id, clock=lambda: NOW)
    assert result.request_id == pushed.request_id
    arrived = pull(dst, case_id=first.case_id)
    assert arrived.updated(task=None) == first  # and the transfer made the referral's Task there
    assert arrived.task is not None and (arrived.task.status, arrived.task.business_status) == ("requested", "received")
    assert [e.version for e in arrived.task.history] == ["1"]
    with pytest.raises(InputError, match="exactly one"):
        transfer(src, dst, pushed.request_id, case_id=first.case_id, clock=lambda: NOW)


def test_a_case_not_on_the_server_is_a_not_found_error(servers) -> None:  # type: ignore[no-untyped-def]
    _, _, src, dst = servers
    for call in (lambda: pull(src, case_id="no-such-case"), lambda: pull(src, request_id="404"),
                 lambda: transfer(src, dst, case_id="no-such-case"), lambda: find_request_id(src, "no-such-case")):
        with pytest.raises(CaseNotFoundError, match="no-such-case|ServiceRequest/404") as caught:
            call()
        assert caught.value.exit_code == 2 and caught.value.server == BASE


def test_a_revoked_consent_stops_a_transfer_by_case_id(servers, urology: Case) -> None:  # type: ignore[no-untyped-def]
    _, expert, src, dst = servers
    push(src, urology.updated(opinion=None).revoke_records_consent())
    with pytest.raises(ConsentError):
        transfer(src, dst, case_id=urology.case_id, clock=lambda: NOW)
    assert not expert.all("ServiceRequest")
