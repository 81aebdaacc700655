"""The second-opinion case: one request for an opinion, its consents, records and the opinion.

A case is a JSON file checked by ``schemas/case.schema.json`` (generated from these models
by ``python -m fhir_so.case --write-schema``; a test keeps the two in step). Loading checks
the schema first, so every error names the file and the JSON path, then builds the typed
model. ``Case`` is what the mapping turns into FHIR and what parsing a bundle gives back.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import re
import sys
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import jsonschema
from jsonschema.exceptions import best_match
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from fhir_so.errors import InputError, excerpt, one_line
from fhir_so.fhirtypes import FHIR_ID
from fhir_so.jsonio import dumps, load_json, parse_json, read_limited

Reason = Literal[
    "serious-diagnosis",
    "rare-condition",
    "uncertain-diagnosis",
    "major-surgery",
    "high-risk-treatment",
    "treatment-not-working",
    "several-options",
    "insurer-required",
    "patient-wish",
    "discordant-opinions",
]
Mode = Literal["in-person", "record-review", "telehealth"]
Priority = Literal["routine", "urgent", "asap", "stat"]
RequestStatus = Literal["draft", "active", "on-hold", "revoked", "completed"]
ConsentStatus = Literal["draft", "proposed", "active", "rejected", "revoked"]
RecordKind = Literal[
    "lab-report",
    "pathology",
    "surgical-pathology",
    "imaging",
    "operative-note",
    "discharge-summary",
    "treatment-plan",
    "medication-list",
    "patient-questions",
    "consult-note",
]
OpinionStatus = Literal["preliminary", "final", "amended"]
# FHIR R4 Task.status (required binding); the commands move through the few in fhir_so.workflow.task.
TaskStatus = Literal[
    "draft",
    "requested",
    "received",
    "accepted",
    "rejected",
    "ready",
    "cancelled",
    "in-progress",
    "on-hold",
    "failed",
    "completed",
    "entered-in-error",
]
# The project's so-task-status codes (Task.businessStatus), named after HL7 BSeR's.
BusinessStatus = Literal["received", "accepted", "declined", "more-info-needed", "in-progress", "completed"]
Concordance = Literal["confirmed", "refined", "different", "inconclusive"]

# FHIR id characters, so a case id can be part of identifiers and URLs without escaping.
CASE_ID_PATTERN = f"^{FHIR_ID}$"
# An attachment inline in a case may not exceed this; larger files are sent by URL.
MAX_INLINE_BYTES = 20 * 1024 * 1024



def _real_date(value: str) -> str:
    """Reject dates that match the pattern but do not exist (2023-02-30)."""
    try:
        dt.date.fromisoformat(value[:10])
        if len(value) > 10:
            dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not a real date or time") from None
    return value


Text = Annotated[str, Field(min_length=1, max_length=10_000)]
Date = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD"), AfterValidator(_real_date)]
DateTime = Annotated[
    str,
    AfterValidator(_real_date),
    Field(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$",
        description="ISO 8601 date and time with a time zone, e.g. 2024-03-01T09:30:00Z",
    ),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Identifier(_Model):
    """A business identifier: the key a server's conditional create looks up."""

    system: Annotated[str, Field(min_length=1, max_length=500, pattern=r"^\S+$")]
    value: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S(.*\S)?$")]


class Coding(_Model):
    """A code from a code system (SNOMED CT, ICD-10, ...), e.g. a diagnosis."""

    system: Annotated[str, Field(min_length=1, pattern=r"^\S+$")]
    code: Annotated[str, Field(min_length=1, pattern=r"^\S(.*\S)?$")]
    display: Text | None = None


class Person(_Model):
    """A person's name."""

    family: Text
    given: list[Text] = Field(default_factory=list)
    prefix: list[Text] = Field(default_factory=list)


class Patient(_Model):
    """The patient seeking the opinion."""

    identifier: Identifier
    name: Person
    birth_date: Date | None = None
    gender: Literal["male", "female", "other", "unknown"] | None = None


class Party(_Model):
    """A physician (``practitioner``) or a service (``organization``)."""

    kind: Literal["practitioner", "organization"] = "practitioner"
    identifier: Identifier
    name: Text = Field(description="Full name of the person (e.g. 'Dr. Ana Ruiz') or the organization.")
    specialty: Text | None = None

    def key(self) -> tuple[str, str, str]:
        """What makes two parties the same: kind and identifier."""
        return (self.kind, self.identifier.system, self.identifier.value)


class Period(_Model):
    """A time span; an open end means 'until revoked'."""

    start: DateTime | Date | None = None
    end: DateTime | Date | None = None


class Consent(_Model):
    """The patient's consent to disclose: records out to the second physician, or the report back."""

    status: ConsentStatus = "active"
    decision: Literal["permit", "deny"] = "permit"
    date: DateTime
    period: Period = Field(default_factory=Period)
    recipient: Party | None = Field(
        default=None,
        description="Who may receive; default: the second physician for records, the first for the report.",
    )
    record_kinds: list[RecordKind] = Field(
        default_factory=list, description="Record kinds allowed out; empty means every kind (records consent only)."
    )


class Attachment(_Model):
    """A document's content: inline bytes (``data`` base64, or ``file`` read at load time) or a ``url``."""

    content_type: Annotated[str, Field(pattern=r"^[\w.+-]+/[\w.+-]+(;.*)?$")]
    data: str | None = Field(default=None, description="Base64 bytes.")
    file: str | None = Field(default=None, description="Path relative to the case file; read into data at load time.")
    url: Annotated[str, Field(pattern=r"^(https?|ftp|urn):\S+$")] | None = None
    title: Text | None = None
    size: Annotated[int, Field(ge=0)] | None = Field(default=None, description="Bytes, for a url attachment.")
    hash: Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]{27}=$")] | None = Field(
        default=None, description="SHA-1 of the bytes, base64 (28 characters), for a url attachment."
    )

    @model_validator(mode="after")
    def _one_source(self) -> Attachment:
        given = [n for n in ("data", "file", "url") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of data, file or url (got {', '.join(given) or 'none'})")
        if self.data is not None:
            size = _decoded_size(self.data)
            if size > MAX_INLINE_BYTES:
                raise ValueError(
                    f"data decodes to {size:,} bytes, over the inline limit of {MAX_INLINE_BYTES:,}; send it by url"
                )
            try:
                base64.b64decode(self.data, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("data is not valid base64") from None
        return self

    def content(self) -> bytes | None:
        """The inline bytes, or None for a url attachment."""
        return base64.b64decode(self.data) if self.data is not None else None


def _decoded_size(data: str) -> int:
    """The byte count base64 text decodes to, without decoding it (a 1 GB string costs nothing)."""
    length = len(data.rstrip("="))
    return length * 3 // 4


class Record(_Model):
    """One record sent to the second physician."""

    id: Annotated[str, Field(pattern=CASE_ID_PATTERN, description="Key of the record within the case.")]
    kind: RecordKind
    title: Text
    date: DateTime
    author: Party | None = Field(default=None, description="Default: the first physician.")
    content: Attachment
    restricted: bool = Field(default=False, description="Sensitive: carries the security label R (restricted).")


class Insurance(_Model):
    """The payer that requires (reason ``insurer-required``) or pays for the opinion."""

    payer: Party
    member_id: Text


class Opinion(_Model):
    """The second physician's report."""

    status: OpinionStatus
    issued: DateTime
    conclusion: Text
    diagnoses: list[Coding] = Field(default_factory=list)
    concordance: Concordance
    treatment_changed: bool
    report: Attachment | None = Field(default=None, description="The signed report (e.g. a PDF).")


class EarlierOpinion(_Model):
    """An opinion already given in an earlier case, carried by a third opinion."""

    case_id: Annotated[str, Field(pattern=CASE_ID_PATTERN)]
    summary: Text | None = None


class TaskEvent(_Model):
    """One version of the Task as the server recorded it (its ``_history``)."""

    status: TaskStatus
    business_status: BusinessStatus | None = None
    time: DateTime = Field(description="When the server stored this version (meta.lastUpdated).")
    version: Annotated[str, Field(pattern=CASE_ID_PATTERN, description="The server's versionId.")]


class Task(_Model):
    """The referral's life on the second-opinion server: a FHIR Task beside the request.

    A records-out transfer creates it (``requested``); the second physician's commands move it
    (see :mod:`fhir_so.workflow.task`). ``history`` is the server's record of its versions, like
    server ids and meta: a pull reads it from the Task's ``_history``, a case file keeps it, but
    building a bundle writes none of it (a server keeps its own history) and it does not make two
    cases different, so ``parse(build(case)) == case`` and ``pull(push(case)) == case`` still hold.
    """

    status: TaskStatus = "requested"
    business_status: BusinessStatus | None = None
    authored: DateTime = Field(description="When the Task was made (authoredOn).")
    last_modified: DateTime | None = None
    owner: Party | None = Field(default=None, description="Who is to give the opinion; default: the performer.")
    requested_kinds: list[RecordKind] = Field(default_factory=list, description="Record kinds the second physician asked for.")
    note: Text | None = Field(default=None, description="The second physician's note with the last request for records.")
    reason: Text | None = Field(default=None, description="Why the referral was declined (statusReason).")
    earlier_task: Annotated[str, Field(pattern=CASE_ID_PATTERN)] | None = Field(
        default=None, description="The case id of the earlier opinion's Task (a third opinion)."
    )
    history: list[TaskEvent] = Field(default_factory=list, description="Read only: the Task's versions on the server.")

    def _compared(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "history"}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Task):
            return NotImplemented
        return self._compared() == other._compared()

    def __hash__(self) -> int:
        return hash(tuple((k, repr(v)) for k, v in sorted(self._compared().items())))


class Case(_Model):
    """One second (or third) opinion, from request to report."""

    case_id: Annotated[str, Field(pattern=CASE_ID_PATTERN, description="The idempotency key of the whole case.")]
    status: RequestStatus = "active"
    requested: DateTime
    patient: Patient
    requester: Party = Field(description="The first physician, who asks for the opinion.")
    performer: Party = Field(description="The second physician or second-opinion service.")
    reasons: Annotated[list[Reason], Field(min_length=1)]
    conditions: list[Coding] = Field(default_factory=list, description="The diagnoses under review.")
    priority: Priority = "routine"
    mode: Mode
    questions: list[Text] = Field(default_factory=list, description="The patient's own questions.")
    insurance: Insurance | None = None
    records_consent: Consent | None = Field(default=None, description="Consent to send records to the performer.")
    report_consent: Consent | None = Field(default=None, description="Consent for the report to go back to the requester.")
    records: list[Record] = Field(default_factory=list)
    opinion: Opinion | None = None
    earlier_opinions: list[EarlierOpinion] = Field(default_factory=list)
    task: Task | None = Field(default=None, description="The referral's Task on the second-opinion server.")

    @model_validator(mode="after")
    def _check(self) -> Case:
        self._make_canonical()
        ids = [r.id for r in self.records]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"record ids must be unique within a case: {', '.join(dupes)}")
        if self.report_consent is not None and self.report_consent.record_kinds:
            raise ValueError("report_consent.record_kinds must be empty: it covers the report only")
        seen: dict[tuple[str, str, str], Party] = {}
        for party in self.parties():
            other = seen.setdefault(party.key(), party)
            if other != party:
                raise ValueError(
                    f"two parties share the identifier {party.identifier.system}|{party.identifier.value} "
                    f"but differ ({other.name!r} and {party.name!r}); one identifier is one party"
                )
        return self

    def _make_canonical(self) -> None:
        """Make implicit parties explicit and put records in id order, once, while the model is built.

        So every Case is in canonical form by construction: a case built in code, loaded from a
        file, parsed from a bundle or pulled from a server compares equal to the same case
        however it was written. The model is frozen: these writes happen inside validation,
        before anyone holds the instance (pydantic's ``model_copy`` would skip validation).
        """
        self.__dict__.update(self._canonical_updates())

    def _canonical_updates(self) -> dict[str, Any]:
        updates: dict[str, Any] = {}
        if self.records_consent is not None and self.records_consent.recipient is None:
            updates["records_consent"] = self.records_consent.model_copy(update={"recipient": self.performer})
        if self.report_consent is not None and self.report_consent.recipient is None:
            updates["report_consent"] = self.report_consent.model_copy(update={"recipient": self.requester})
        if self.task is not None and self.task.owner is None:
            updates["task"] = self.task.model_copy(update={"owner": self.performer})
        records = sorted(self.records, key=lambda r: r.id)  # a server returns records in no set order
        if any(r.author is None for r in records) or records != self.records:
            updates["records"] = [r if r.author else r.model_copy(update={"author": self.requester}) for r in records]
        return updates

    # -- changes: each returns a new, validated, canonical case ---------------------------------

    def updated(self, **changes: Any) -> Case:
        """A new case with ``changes`` to its top-level fields, validated like a loaded case.

        Values may be models (``Opinion(...)``) or plain dicts/lists in the case file's shape.
        A value that breaks the model raises :class:`~fhir_so.errors.InputError` (exit 2) naming
        the field; the case itself is never changed (cases are immutable).
        Unlike pydantic's ``model_copy(update=...)``, this validates.
        """
        unknown = sorted(set(changes) - set(type(self).model_fields))
        if unknown:
            raise InputError(f"unknown case field(s): {', '.join(unknown)}", source=f"case {self.case_id}")
        data = {name: getattr(self, name) for name in type(self).model_fields}
        data.update(changes)
        try:
            return type(self).model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            message = first["msg"].removeprefix("Value error, ")
            raise InputError(message, source=f"case {self.case_id}", location=_json_path(first["loc"])) from None

    def revoke_records_consent(self, date: str | None = None) -> Case:
        """The case with its records Consent revoked (``date``: when, default kept); no records move after this."""
        return self.updated(records_consent=self._revoked(self.records_consent, "records_consent", date))

    def revoke_report_consent(self, date: str | None = None) -> Case:
        """The case with its report-back Consent revoked: the opinion no longer goes back."""
        return self.updated(report_consent=self._revoked(self.report_consent, "report_consent", date))

    def _revoked(self, consent: Consent | None, name: str, date: str | None) -> dict[str, Any]:
        if consent is None:
            raise InputError(f"the case has no {name} to revoke", source=f"case {self.case_id}", location=f"$.{name}")
        revoked = consent.model_dump()
        revoked["status"] = "revoked"
        if date is not None:
            revoked["date"] = date
        return revoked

    def with_opinion(self, opinion: Opinion | dict[str, Any]) -> Case:
        """The case with the second physician's opinion (a new one, or one replacing the last)."""
        return self.updated(opinion=opinion)

    def with_task(self, task: Task | dict[str, Any] | None) -> Case:
        """The case with its Task part (or without one, given None)."""
        return self.updated(task=task)

    def with_record(self, record: Record | dict[str, Any]) -> Case:
        """The case with one more record (its ``id`` must be new within the case)."""
        return self.updated(records=[*self.records, record])

    def without_record(self, record_id: str) -> Case:
        """The case without the record ``record_id`` (an error when there is none)."""
        if not any(r.id == record_id for r in self.records):
            raise InputError(f"no record {record_id!r} in the case", source=f"case {self.case_id}", location="$.records")
        return self.updated(records=[r for r in self.records if r.id != record_id])

    def parties(self) -> list[Party]:
        """Every physician, service and payer the case names, in order, repeats included."""
        found = [self.requester, self.performer]
        for consent in (self.records_consent, self.report_consent):
            if consent is not None and consent.recipient is not None:
                found.append(consent.recipient)
        found += [r.author for r in self.records if r.author is not None]
        if self.insurance is not None:
            found.append(self.insurance.payer)
        if self.task is not None and self.task.owner is not None:
            found.append(self.task.owner)
        return found

    @property
    def is_stat(self) -> bool:
        """An emergency: allowed, but flagged, never queued behind missing records."""
        return self.priority == "stat"

    def to_json(self) -> str:
        """Canonical JSON text of the case (fields left at their defaults omitted)."""
        return dumps(self.model_dump(mode="json", exclude_defaults=True))


# --- loading -------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def case_schema() -> dict[str, Any]:
    """The case JSON Schema shipped with the package."""
    text = resources.files("fhir_so").joinpath("schemas/case.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = parse_json(text.encode("utf-8"), "case.schema.json")
    return schema


@lru_cache(maxsize=1)
def _schema_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(case_schema())


def _json_path(path: Any) -> str:
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_]\w*", str(part)):  # skip pydantic's union-branch labels
            out += f".{part}"
    return out


def case_from_dict(
    data: Any, source: str = "<case>", base_dir: Path | None = None, *, files_root: str | os.PathLike[str] | None = None
) -> Case:
    """Check ``data`` against the case schema and build the model; errors name source and JSON path.

    ``records[].content.file`` and ``opinion.report.file`` are read from inside ``files_root``
    (default ``base_dir``, else the current folder) and nowhere else: see :func:`read_attachment_file`.
    """
    _check_depth(data, source)
    error = best_match(_schema_validator().iter_errors(data))
    if error is not None:
        raise InputError(_schema_message(error), source=source, location=_json_path(error.absolute_path))
    root = Path(files_root) if files_root is not None else (base_dir or Path("."))
    data = _resolve_files(data, source, root)
    try:
        case = Case.model_validate(data)
    except ValidationError as exc:
        raise InputError(_pydantic_message(exc), source=source, location=_json_path(exc.errors()[0]["loc"])) from None
    return case


# A case is at most about six levels deep; far deeper input is hostile and would exhaust
# Python's recursion in the schema check and in messages (repr of a 1,000-deep list).
MAX_CASE_DEPTH = 32


def _check_depth(data: Any, source: str) -> None:
    """Refuse nesting deeper than MAX_CASE_DEPTH, walking without recursion."""
    stack: list[tuple[Any, int, str]] = [(data, 0, "$")]
    while stack:
        value, depth, where = stack.pop()
        if depth > MAX_CASE_DEPTH:
            raise InputError(f"nested more than {MAX_CASE_DEPTH} levels deep", source=source, location=where)
        if isinstance(value, dict):
            stack += [(v, depth + 1, f"{where}.{k}" if isinstance(k, str) and k.isidentifier() else where) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(v, depth + 1, f"{where}[{i}]") for i, v in enumerate(value)]


def load_case(path: str | os.PathLike[str], *, files_root: str | os.PathLike[str] | None = None) -> Case:
    """Read a case file: JSON, schema-checked, attachment files read from its folder (or ``files_root``)."""
    p = Path(path)
    return case_from_dict(load_json(p), str(p), p.parent, files_root=files_root)


def _pydantic_message(exc: ValidationError) -> str:
    """A pydantic ValidationError as one line: the first error, and how many more there are."""
    errors = exc.errors(include_url=False)
    text = one_line(str(errors[0]["msg"]).removeprefix("Value error, "), 300)
    return text + (f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else "")


_JSON_KINDS = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer", float: "a number"}


def _kind(value: Any) -> str:
    return "null" if value is None else _JSON_KINDS.get(type(value), type(value).__name__)


def _schema_message(error: jsonschema.ValidationError) -> str:
    """One short line per schema error; the offending value is excerpted, never echoed whole."""
    value = error.instance
    rule = error.validator
    if rule == "additionalProperties" and isinstance(value, dict):
        known = set((error.schema.get("properties") or {}))
        unknown = [k for k in value if k not in known]
        return "unknown field: " + ", ".join(excerpt(k, 60) for k in unknown[:3]) + (" ..." if len(unknown) > 3 else "")
    if rule == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return f"{excerpt(value)} is not one of the allowed values ({one_line(allowed, 300)})"
    if rule == "type":
        shown = "" if value is None or isinstance(value, bool) else f" {excerpt(value)}"
        return f"expected {error.validator_value}, found {_kind(value)}{shown}"
    if rule == "pattern":
        return f"{excerpt(value)} does not have the expected form {excerpt(error.validator_value, 80)}"
    if rule in ("minLength", "maxLength", "minItems", "maxItems") and hasattr(value, "__len__"):
        size = "at least" if rule.startswith("min") else "at most"
        unit = "characters" if rule.endswith("Length") else "items"
        if not len(value):
            return f"{_kind(value)} that is empty; it should be non-empty"
        return f"{_kind(value)} of {len(value):,} {unit} {excerpt(value, 40)}; expected {size} {error.validator_value} {unit}"
    if rule in ("anyOf", "oneOf"):
        return f"{_kind(value)} {excerpt(value)} matches none of the allowed forms"
    return one_line(error.message, 200)


def _resolve_files(data: Any, source: str, root: Path) -> Any:
    """Replace every ``content.file`` / ``report.file`` by its bytes as base64 ``data``."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    records = []
    for i, record in enumerate(out.get("records") or []):
        content = record.get("content") if isinstance(record, dict) else None
        if isinstance(content, dict) and content.get("file") is not None:
            record = {**record, "content": _read_attachment(content, source, root, f"$.records[{i}].content.file")}
        records.append(record)
    if records:
        out["records"] = records
    opinion = out.get("opinion")
    if isinstance(opinion, dict) and isinstance(opinion.get("report"), dict) and opinion["report"].get("file") is not None:
        out["opinion"] = {**opinion, "report": _read_attachment(opinion["report"], source, root, "$.opinion.report.file")}
    return out


def read_attachment_file(name: str, root: str | os.PathLike[str], *, source: str = "<case>", location: str | None = None) -> bytes:
    """The bytes of attachment file ``name``, which must resolve inside the folder ``root``.

    Relative names are taken from ``root``; every symbolic link is resolved first, and the
    result must still lie inside ``root`` (``../``, absolute paths and links out are refused).
    Only a regular file is read (not a device, FIFO, socket or anything under /proc, /sys or
    /dev), and at most ``MAX_INLINE_BYTES`` of it: the size the file system states is not trusted.
    """
    if not isinstance(name, str) or not name.strip():
        raise InputError("the attachment file name is empty", source=source, location=location)
    try:
        real_root = os.path.realpath(root)
        real = os.path.realpath(os.path.join(real_root, name))
    except (OSError, ValueError):
        raise InputError(f"cannot read attachment {excerpt(name)}: the file name contains a NUL byte", source=source, location=location) from None
    if os.path.commonpath([real_root, real]) != real_root or real == real_root:
        raise InputError(
            f"refused: attachment {excerpt(name)} is outside the files folder {excerpt(str(root), 120)} "
            "(give --files-root DIR to read from another folder)",
            source=source,
            location=location,
        )
    try:
        return read_limited(real, MAX_INLINE_BYTES, source=source, location=location, follow_symlinks=False)
    except InputError as err:
        why = err.detail
        if why.startswith("larger than the limit"):
            why = f"over the inline limit of {MAX_INLINE_BYTES:,} bytes; send it by url"
        raise InputError(f"cannot read attachment {excerpt(name)}: {why}", source=source, location=location) from None


def _read_attachment(content: dict[str, Any], source: str, root: Path, where: str) -> dict[str, Any]:
    name = content["file"]
    raw = read_attachment_file(name, root, source=source, location=where)
    resolved = {k: v for k, v in content.items() if k != "file"}
    resolved["data"] = base64.b64encode(raw).decode("ascii")
    resolved.setdefault("title", Path(name).name[:10_000] or "attachment")
    return resolved


def with_defaults(case: Case) -> Case:
    """The canonical form: implicit parties made explicit, records in id order.

    Every validated Case is already canonical (see ``Case._make_canonical``); this stays for
    callers of earlier versions and for a case made with ``model_copy``, which skips validation.
    """
    return case.model_copy(update=updates) if (updates := case._canonical_updates()) else case


def parse_when(value: str) -> dt.datetime:
    """A case date or dateTime as an aware datetime (a bare date is midnight UTC)."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.timezone.utc)
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def generated_schema() -> dict[str, Any]:
    """The JSON Schema as generated from the models (what schemas/case.schema.json must equal)."""
    schema = Case.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://fhir-so.org/schemas/case.schema.json",
        **schema,
    }


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-schema"]:
        target = Path(__file__).with_name("schemas") / "case.schema.json"
        target.write_text(dumps(generated_schema()), encoding="utf-8")
        print(f"wrote {target}")
    else:
        print("usage: python -m fhir_so.case --write-schema", file=sys.stderr)
        sys.exit(2)
