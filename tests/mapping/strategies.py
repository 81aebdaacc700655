"""Hypothesis strategies that generate valid second-opinion cases."""

from __future__ import annotations

import base64
import string

from hypothesis import assume
from hypothesis import strategies as st
from pydantic import ValidationError

from fhir_so.case import (
    Attachment,
    Case,
    Coding,
    Consent,
    EarlierOpinion,
    Identifier,
    Insurance,
    Opinion,
    Party,
    Patient,
    Period,
    Person,
    Record,
    Task,
    TaskEvent,
)
from fhir_so.terminology import MODES, REASONS, RECORD_TYPES, TASK_BUSINESS_STATUS

_id_chars = string.ascii_letters + string.digits + "-."
ids = st.text(_id_chars, min_size=1, max_size=20)
words = st.text(string.ascii_letters + " äéß'", min_size=1, max_size=30).map(str.strip).filter(bool)
systems = st.sampled_from(["urn:oid:1.2.3", "http://hl7.org/fhir/sid/us-npi", "https://clinic.example.org/sid/x"])
identifiers = st.builds(Identifier, system=systems, value=ids)
dates = st.dates(min_value=__import__("datetime").date(1920, 1, 1)).map(lambda d: d.isoformat())
datetimes = st.datetimes(timezones=st.just(__import__("datetime").timezone.utc)).map(
    lambda d: d.replace(microsecond=0).isoformat().replace("+00:00", "Z")
)
parties = st.builds(
    Party,
    kind=st.sampled_from(["practitioner", "organization"]),
    identifier=identifiers,
    name=words,
    specialty=st.none() | words,
)
codings = st.builds(Coding, system=st.sampled_from(["http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10"]), code=ids, display=st.none() | words)
inline = st.binary(max_size=64).map(lambda b: Attachment(content_type="application/pdf", data=base64.b64encode(b).decode()))
by_url = st.builds(Attachment, content_type=st.just("image/png"), url=ids.map(lambda i: f"https://files.example.org/{i}"), size=st.none() | st.integers(0, 10**9))
attachments = inline | by_url
consents = st.builds(
    Consent,
    status=st.sampled_from(["draft", "proposed", "active", "rejected", "revoked"]),
    decision=st.sampled_from(["permit", "deny"]),
    date=datetimes,
    period=st.builds(Period, start=st.none() | dates, end=st.none() | datetimes),
    recipient=st.none() | parties,
    record_kinds=st.lists(st.sampled_from(sorted(RECORD_TYPES)), unique=True, max_size=3),
)

task_events = st.builds(
    TaskEvent,
    status=st.sampled_from(["requested", "accepted", "on-hold", "in-progress", "completed", "rejected"]),
    business_status=st.none() | st.sampled_from(sorted(TASK_BUSINESS_STATUS)),
    time=datetimes,
    version=st.integers(1, 99).map(str),
)
# History is the server's record: building leaves it out and equality ignores it (fhir_so.case.Task),
# so generated cases carry one and still round-trip.
tasks = st.builds(
    Task,
    status=st.sampled_from(["draft", "requested", "received", "accepted", "rejected", "ready", "cancelled", "in-progress", "on-hold",
                            "failed", "completed", "entered-in-error"]),
    business_status=st.none() | st.sampled_from(sorted(TASK_BUSINESS_STATUS)),
    authored=datetimes,
    last_modified=st.none() | datetimes,
    owner=st.none() | parties,
    requested_kinds=st.lists(st.sampled_from(sorted(RECORD_TYPES)), unique=True, max_size=3),
    note=st.none() | words,
    reason=st.none() | words,
    earlier_task=st.none() | ids,
    history=st.lists(task_events, max_size=2),
)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    requester = draw(parties)
    records = draw(
        st.lists(
            st.builds(Record, id=ids, kind=st.sampled_from(sorted(RECORD_TYPES)), title=words, date=datetimes, author=st.none() | parties, content=attachments, restricted=st.booleans()),
            max_size=3,
            unique_by=lambda r: r.id,
        )
    )
    report_consent = draw(st.none() | consents)
    if report_consent is not None:
        report_consent = report_consent.model_copy(update={"record_kinds": []})
    try:
        return _case(draw, requester, records, report_consent)
    except ValidationError:
        assume(False)  # two parties drawn with one identifier but different names
        raise


def _case(draw: st.DrawFn, requester: Party, records: list[Record], report_consent: Consent | None) -> Case:
    return Case(
        case_id=draw(ids),
        status=draw(st.sampled_from(["draft", "active", "on-hold", "revoked", "completed"])),
        requested=draw(datetimes),
        patient=Patient(identifier=draw(identifiers), name=Person(family=draw(words), given=draw(st.lists(words, max_size=2))), birth_date=draw(st.none() | dates), gender=draw(st.none() | st.sampled_from(["male", "female", "other", "unknown"]))),
        requester=requester,
        performer=draw(parties),
        reasons=draw(st.lists(st.sampled_from(sorted(REASONS)), min_size=1, max_size=3, unique=True)),
        conditions=draw(st.lists(codings, max_size=2)),
        priority=draw(st.sampled_from(["routine", "urgent", "asap", "stat"])),
        mode=draw(st.sampled_from(sorted(MODES))),
        questions=draw(st.lists(words, max_size=2)),
        insurance=draw(st.none() | st.builds(Insurance, payer=parties, member_id=ids)),
        records_consent=draw(st.none() | consents),
        report_consent=report_consent,
        records=records,
        opinion=draw(st.none() | st.builds(Opinion, status=st.sampled_from(["preliminary", "final", "amended"]), issued=datetimes, conclusion=words, diagnoses=st.lists(codings, max_size=2), concordance=st.sampled_from(["confirmed", "refined", "different", "inconclusive"]), treatment_changed=st.booleans(), report=st.none() | attachments)),
        earlier_opinions=draw(st.lists(st.builds(EarlierOpinion, case_id=ids, summary=st.none() | words), max_size=2)),
        task=draw(st.none() | tasks),
    )
