"""The referral's life: the second physician's steps on the case's Task, with no lost update.

A records-out transfer creates the Task on the second-opinion server (``requested``,
:func:`transfer_task_entry`); the second physician then moves it, one library call (and one
``fhir-so task`` command) per step::

    task_accept(client, case_id)                          requested/on-hold -> accepted
    task_decline(client, case_id, reason)                 -> rejected (statusReason = reason)
    task_ask(client, case_id, kinds, note)                -> on-hold, the record kinds asked for in Task.output
    task_start(client, case_id)                           -> in-progress
    task_complete(client, case_id, opinion)               in-progress -> completed, the DiagnosticReport
                                                          written in the same transaction (Task.output)

The allowed moves are ONE table, :data:`TRANSITIONS` (the FHIR Task state machine, narrowed to
what these steps do); a step the table does not allow is refused (:class:`TransitionRefused`,
exit 1) naming the statuses the Task may go to next and the commands that get there.

Every change is an update with ``If-Match`` on the version just read: when two clinicians race,
the server takes one update and answers the other 409/412, which becomes
:class:`VersionConflict` (exit 1) naming the newer version and its status; nothing is
overwritten. A Task is found by its identifier (:data:`fhir_so.terminology.SID_TASK` = the
case id) and then read by id, so a server that caches searches cannot hand out an old version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from fhir_so import terminology as term
from fhir_so.bundle import full_url, search_key
from fhir_so.case import Case, Opinion, RecordKind, TaskEvent
from fhir_so.case import Task as TaskPart
from fhir_so.client import FhirClient, TransactionResponse
from fhir_so.client.search import next_link
from fhir_so.client.urls import resource_path
from fhir_so.errors import CaseNotFoundError, InputError, NotFoundError, PreconditionFailed, ServerError, TransitionRefused, VersionConflict
from fhir_so.mapping.common import OPINION, PATIENT, SERVICE_REQUEST, first_identifier
from fhir_so.mapping.diagnostic_report import opinion_to_fhir
from fhir_so.mapping.narrative import with_narrative
from fhir_so.mapping.task import TASK, io_entry, io_type, task_to_fhir
from fhir_so.workflow.clock import Clock, instant, utc_now

__all__ = [
    "ACTIONS",
    "Action",
    "STEP_FOR",
    "TRANSITIONS",
    "TaskEntry",
    "TaskResult",
    "allowed_next",
    "check_transition",
    "find_task",
    "new_task",
    "task_accept",
    "task_ask",
    "task_complete",
    "task_decline",
    "task_events",
    "task_history",
    "task_start",
    "transfer_task_entry",
    "with_history",
]

Action = Literal["accept", "decline", "ask", "start", "complete"]

# Each step: the Task.status it moves to and the so-task-status businessStatus it sets.
ACTIONS: Mapping[Action, tuple[str, str]] = {
    "accept": ("accepted", "accepted"),
    "decline": ("rejected", "declined"),
    "ask": ("on-hold", "more-info-needed"),
    "start": ("in-progress", "in-progress"),
    "complete": ("completed", "completed"),
}

# THE state machine: from each Task.status, the statuses a step may move it to. A status not
# listed (completed, rejected, cancelled, failed, entered-in-error, draft, ready) is final here.
# FHIR R4 Task: requested -> accepted | rejected; accepted -> in-progress | on-hold | rejected;
# on-hold -> in-progress (resumed) or back to accepted; in-progress -> on-hold | completed.
# An ask before accepting is allowed (requested -> on-hold): a physician may need the imaging
# to decide whether to take the case. ``received`` (set by other systems) behaves as requested.
TRANSITIONS: Mapping[str, tuple[str, ...]] = {
    "requested": ("accepted", "rejected", "on-hold"),
    "received": ("accepted", "rejected", "on-hold"),
    "accepted": ("in-progress", "on-hold", "rejected"),
    "on-hold": ("in-progress", "accepted"),
    "in-progress": ("on-hold", "completed"),
}

# The step that moves a Task to each status (for messages and help: "on-hold (task ask)").
STEP_FOR: Mapping[str, Action] = {status: action for action, (status, _) in ACTIONS.items()}
_KINDS = frozenset(get_args(RecordKind))
_NO_CACHE = {"Cache-Control": "no-cache"}  # a server's cached search must not hide the Task just written
_MAX_HISTORY_PAGES = 50
_MAX_VERSIONS = 500  # a referral's Task changes a handful of times; more is not a second opinion's Task


def allowed_next(status: str) -> tuple[str, ...]:
    """The statuses a Task in ``status`` may move to (empty: final)."""
    return TRANSITIONS.get(status, ())


def _allowed_text(status: str) -> str:
    allowed = allowed_next(status)
    if not allowed:
        return f"none: {status} is final"
    return ", ".join(f"{s} (task {STEP_FOR[s]})" for s in allowed)


def check_transition(status: str, action: Action, case_id: str = "") -> str:
    """The status ``action`` moves a Task in ``status`` to; TransitionRefused when the table forbids it."""
    if action not in ACTIONS:
        raise InputError(f"unknown task step {action!r}; one of: {', '.join(ACTIONS)}")
    target = ACTIONS[action][0]
    if target not in allowed_next(status):
        what = f"case {case_id}: " if case_id else ""
        raise TransitionRefused(
            f"{what}cannot {action} a Task that is {status}; allowed next: {_allowed_text(status)}",
            status=status,
            allowed=allowed_next(status),
        )
    return target


@dataclass(frozen=True)
class TaskResult:
    """What one step did: the Task's status before and after, and its new version."""

    server: str
    case_id: str
    task_id: str
    action: Action
    previous: str
    status: str
    business_status: str
    version: str | None
    stat: bool = False
    opinion: str | None = None  # ``DiagnosticReport/id`` written by complete

    @property
    def reference(self) -> str:
        return f"Task/{self.task_id}"

    def lines(self) -> list[str]:
        out = [
            f"case {self.case_id}: Task/{self.task_id} {self.previous} -> {self.status} "
            f"({self.business_status}), version {self.version} on {self.server}"
        ]
        if self.stat:
            out.insert(0, "FLAG: stat request: an emergency must not wait for this opinion")
        if self.opinion:
            out.append(f"  opinion: {self.opinion} (Task.output)")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "case_id": self.case_id,
            "task": self.reference,
            "action": self.action,
            "previous": self.previous,
            "status": self.status,
            "business_status": self.business_status,
            "version": self.version,
            "stat": self.stat,
            "opinion": self.opinion,
        }


# -- finding and reading ---------------------------------------------------------------------


def _task_for(client: FhirClient, case_id: str) -> dict[str, Any] | None:
    # A fresh search (no-cache, checked by the client) returns the current version: no read by id after it.
    search = client.search("Task", identifier=f"{term.SID_TASK}|{case_id}").with_headers(_NO_CACHE)
    found = {str(r.get("id")): r for r in search if r.get("id")}
    if len(found) > 1:
        raise InputError(f"{client.base_url} has several Tasks for case {case_id} ({', '.join(sorted(found))}); one case has one Task")
    return next(iter(found.values()), None)


def find_task(client: FhirClient, case_id: str, *, required: bool = True) -> dict[str, Any] | None:
    """The case's Task as the server holds it now (one fresh identifier search).

    CaseNotFoundError (exit 2) when there is none and ``required``; else None.
    """
    task = _task_for(client, case_id)
    if task is None:
        if not required:
            return None
        raise CaseNotFoundError(
            f"{client.base_url} has no Task for case {case_id} (a records-out transfer creates it)",
            server=client.base_url,
            case_id=case_id,
        )
    return task


def _current_task(client: FhirClient, case_id: str) -> dict[str, Any]:
    """The case's Task now; CaseNotFoundError when there is none."""
    task = find_task(client, case_id)
    if task is None:  # find_task raises instead; this keeps the type checker informed
        raise CaseNotFoundError(f"{client.base_url} has no Task for case {case_id}", server=client.base_url, case_id=case_id)
    return task


def _version(task: Mapping[str, Any]) -> str:
    version = (task.get("meta") or {}).get("versionId")
    if not isinstance(version, str) or not version:
        raise ServerError(f"Task/{task.get('id')}: the server gave no meta.versionId, which every update is made against")
    return version


def _event(resource: Mapping[str, Any]) -> TaskEvent | None:
    meta = resource.get("meta") or {}
    version, when = meta.get("versionId"), meta.get("lastUpdated")
    if resource.get("resourceType") != "Task" or not isinstance(version, str) or not isinstance(when, str):
        return None  # a deleted version has no resource
    business = next(
        (c.get("code") for c in (resource.get("businessStatus") or {}).get("coding") or [] if c.get("system") == term.CS_TASK_STATUS),
        None,
    )
    return TaskEvent.model_validate({"status": resource.get("status"), "business_status": business, "time": when, "version": version})


def task_history(client: FhirClient, task_id: str, current: str | None = None) -> list[TaskEvent]:
    """The Task's versions, oldest first, from ``Task/ID/_history`` (every page).

    A server may answer ``_history`` from a cached count (HAPI keeps a history's count for a
    while: a Task updated since shows only as many versions as before, and ``Cache-Control:
    no-cache`` does not reach that cache) or cap its pages. So versions up to ``current`` (the
    Task's versionId; read when not given) that the answer left out are read one by one (vread).
    """
    answer = client.request("GET", resource_path("Task", task_id, "_history"), headers=_NO_CACHE).resource()
    versions: dict[str, TaskEvent] = {}
    for _ in range(_MAX_HISTORY_PAGES):
        for entry in answer.get("entry") or []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            event = _event(resource) if isinstance(resource, dict) else None
            if event is not None:
                versions[event.version] = event
        following = next_link(answer)
        if following is None:
            break
        answer = client.request("GET", following, headers=_NO_CACHE).resource()
    if current is None:
        current = _version(client.read("Task", task_id))
    if current.isdigit() and all(v.isdigit() for v in versions):
        for missing in range(1, min(int(current), _MAX_VERSIONS) + 1):
            if str(missing) in versions:
                continue
            try:
                event = _event(client.vread("Task", task_id, str(missing)))
            except NotFoundError:  # a version deleted or expunged: not part of the history any more
                continue
            if event is not None:
                versions[event.version] = event
    return sorted(versions.values(), key=lambda e: (int(e.version) if e.version.isdigit() else 0, e.version))


def with_history(client: FhirClient, case: Case, task_id: str | None = None, current: str | None = None) -> Case:
    """The case with its Task's history read from the server (unchanged when it has no Task).

    ``current``: the Task's versionId as just read (saves reading it again).
    """
    if case.task is None:
        return case
    if task_id is None:
        found = _task_for(client, case.case_id)
        if found is None:
            return case
        task_id, current = str(found.get("id")), current or _version(found)
    return case.with_task(case.task.model_copy(update={"history": task_history(client, task_id, current)}))


# -- the steps --------------------------------------------------------------------------------


def _moved(task: Mapping[str, Any], action: Action, case_id: str, now: str) -> tuple[dict[str, Any], str]:
    """The Task after ``action`` (status, businessStatus, lastModified): (resource, previous status)."""
    previous = str(task.get("status"))
    target = check_transition(previous, action, case_id)
    moved = {k: v for k, v in task.items() if k != "text"}
    moved["status"] = target
    moved["businessStatus"] = term.TASK_BUSINESS_STATUS[ACTIONS[action][1]].concept()
    moved["lastModified"] = now
    if action != "decline":
        moved.pop("statusReason", None)
    return moved, previous


def _ordered(task: Mapping[str, Any]) -> dict[str, Any]:
    """The Task with its fields in the mapping's order and a fresh narrative (the status changed)."""
    order = ["resourceType", "id", "meta", "identifier", "status", "statusReason", "businessStatus", "intent", "priority", "code",
             "focus", "for", "authoredOn", "lastModified", "requester", "owner", "note", "input", "output"]
    head = {k: task[k] for k in order if k in task}
    return with_narrative({**head, **{k: v for k, v in task.items() if k not in head}})


def _conflict(client: FhirClient, task_id: str, version: str, case_id: str, exc: PreconditionFailed) -> VersionConflict:
    try:
        now = client.read("Task", task_id)
        newer, status = (now.get("meta") or {}).get("versionId"), now.get("status")
    except ServerError:
        newer = status = None
    held = f"version {newer} ({status})" if newer else "a newer version"
    return VersionConflict(
        f"case {case_id}: Task/{task_id} changed since version {version} was read: the server holds {held}; "
        f"nothing was written; read it again and decide (HTTP {exc.status})",
        version=version,
        newer=str(newer) if newer else None,
        status=str(status) if status else None,
    )


def _read_for_update(client: FhirClient, case_id: str, expected_version: str | None) -> tuple[dict[str, Any], str]:
    """The Task now and the version to update against; VersionConflict when it moved past ``expected_version``.

    Judging the step against a newer Task than the caller saw would answer the wrong question
    (a clinician who lost the race to accept would be told "cannot accept an accepted Task").
    """
    task = _current_task(client, case_id)
    current = _version(task)
    if expected_version is not None and expected_version != current:
        task_id = str(task.get("id"))
        raise VersionConflict(
            f"case {case_id}: Task/{task_id} changed since version {expected_version} was read: the server holds "
            f"version {current} ({task.get('status')}); nothing was written; read it again and decide",
            version=expected_version,
            newer=current,
            status=str(task.get("status")),
        )
    return task, current


def _step(
    client: FhirClient,
    case_id: str,
    action: Action,
    change: Any = None,
    *,
    clock: Clock,
    expected_version: str | None = None,
) -> TaskResult:
    task, version = _read_for_update(client, case_id, expected_version)
    task_id = str(task.get("id"))
    moved, previous = _moved(task, action, case_id, instant(clock()))
    if change is not None:
        change(moved)
    try:
        written = client.update(_ordered(moved), if_match=version)
    except PreconditionFailed as exc:
        raise _conflict(client, task_id, version, case_id, exc) from None
    return TaskResult(client.base_url, case_id, task_id, action, previous, moved["status"], ACTIONS[action][1],
                      written.version_id, task.get("priority") == "stat")


def task_accept(client: FhirClient, case_id: str, *, clock: Clock = utc_now, expected_version: str | None = None) -> TaskResult:
    """The second physician takes the case: the Task goes to ``accepted``.

    ``expected_version``: update against this version instead of the one just read (a caller
    that showed the Task to a person makes the update against what the person saw).
    """
    return _step(client, case_id, "accept", clock=clock, expected_version=expected_version)


def task_decline(
    client: FhirClient, case_id: str, reason: str, *, clock: Clock = utc_now, expected_version: str | None = None
) -> TaskResult:
    """The second physician declines: the Task goes to ``rejected`` with ``reason`` as its statusReason."""
    if not isinstance(reason, str) or not reason.strip():
        raise InputError("a decline needs a reason (--reason TEXT)")

    def change(task: dict[str, Any]) -> None:
        task["statusReason"] = {"text": reason.strip()}

    return _step(client, case_id, "decline", change, clock=clock, expected_version=expected_version)


def task_ask(
    client: FhirClient,
    case_id: str,
    kinds: Sequence[str],
    note: str | None = None,
    *,
    clock: Clock = utc_now,
    expected_version: str | None = None,
) -> TaskResult:
    """The second physician needs more records: the Task goes ``on-hold`` (more-info-needed).

    Each record kind asked for becomes a ``records-requested`` Task.output (the LOINC type the
    records carry), kinds asked before are kept; ``note`` becomes the Task's note.
    """
    kinds = list(dict.fromkeys(kinds))
    if not kinds:
        raise InputError("an ask names at least one record kind (--records KIND...)")
    unknown = [k for k in kinds if k not in _KINDS]
    if unknown:
        raise InputError(f"unknown record kind(s): {', '.join(unknown)}; one of: {', '.join(sorted(_KINDS))}")
    if note is not None and not note.strip():
        note = None

    def change(task: dict[str, Any]) -> None:
        outputs = list(task.get("output") or [])
        asked = {o.get("valueCodeableConcept", {}).get("coding", [{}])[0].get("code") for o in outputs if io_type(o) == "records-requested"}
        for kind in kinds:
            if term.RECORD_TYPES[kind].code not in asked:
                outputs.append(io_entry("records-requested", valueCodeableConcept=term.RECORD_TYPES[kind].concept()))
        task["output"] = outputs
        if note is not None:
            task["note"] = [{"text": note.strip()}]

    return _step(client, case_id, "ask", change, clock=clock, expected_version=expected_version)


def task_start(client: FhirClient, case_id: str, *, clock: Clock = utc_now, expected_version: str | None = None) -> TaskResult:
    """The second physician starts the review: the Task goes ``in-progress``."""
    return _step(client, case_id, "start", clock=clock, expected_version=expected_version)


def task_complete(
    client: FhirClient, case_id: str, opinion: Opinion, *, clock: Clock = utc_now, expected_version: str | None = None
) -> TaskResult:
    """The opinion is written: the DiagnosticReport and the ``completed`` Task in ONE transaction.

    The DiagnosticReport is a conditional update on the opinion's identifier (the case id), based
    on the Task's focus, about its patient, by its owner; it becomes the Task's ``opinion`` output.
    The Task entry carries ``ifMatch``, so a concurrent change fails the whole transaction: either
    both are written or neither.
    """
    task, version = _read_for_update(client, case_id, expected_version)
    task_id = str(task.get("id"))
    moved, previous = _moved(task, "complete", case_id, instant(clock()))
    refs = {SERVICE_REQUEST: task.get("focus"), PATIENT: task.get("for"), "owner": task.get("owner")}
    for key, ref in refs.items():
        if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
            field = {SERVICE_REQUEST: "focus", PATIENT: "for"}.get(key, key)
            raise InputError(f"Task/{task_id} has no {field} reference: the opinion cannot be written against it",
                             source=client.base_url, location=f"Task.{field}")
    report_url = full_url(case_id, OPINION)
    report = with_narrative(opinion_to_fhir(opinion, case_id, "owner", lambda key: str(refs[key]["reference"])))  # type: ignore[index]
    outputs = [o for o in moved.get("output") or [] if io_type(o) != "opinion"]
    outputs.append(io_entry("opinion", valueReference={"reference": report_url}))
    moved["output"] = outputs
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": report_url,
                "resource": report,
                "request": {"method": "PUT", "url": f"DiagnosticReport?{search_key(term.SID_OPINION, case_id)}"},
            },
            {
                "fullUrl": f"{client.base_url}/Task/{task_id}",
                "resource": _ordered(moved),
                "request": {"method": "PUT", "url": f"Task/{task_id}", "ifMatch": f'W/"{version}"'},
            },
        ],
    }
    try:
        answer = TransactionResponse.read(client.base_url, bundle, client.transaction(bundle))
    except PreconditionFailed as exc:
        raise _conflict(client, task_id, version, case_id, exc) from None
    report_answer, task_answer = answer.responses
    for part in (report_answer, task_answer):
        if not part.ok:
            raise ServerError(f"{client.base_url}: the transaction-response has an entry with status {part.status_text!r}")
    written = f"DiagnosticReport/{report_answer.id}" if report_answer.id else None
    return TaskResult(client.base_url, case_id, task_id, "complete", previous, "completed", "completed",
                      task_answer.version, task.get("priority") == "stat", written)


# -- created by a records-out transfer ----------------------------------------------------------


def new_task(case: Case, now: str) -> TaskPart:
    """The Task a first transfer writes: requested, received by the second-opinion server.

    A third opinion (a case carrying earlier opinions) links the Task of the last earlier one.
    """
    earlier = case.earlier_opinions[-1].case_id if case.earlier_opinions else None
    return TaskPart(status="requested", business_status="received", authored=now, owner=case.performer, earlier_task=earlier)


def _bundle_records(bundle: Mapping[str, Any]) -> dict[str, str]:
    """{record identifier value: fullUrl} of the DocumentReferences in a transaction Bundle."""
    found = {}
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "DocumentReference":
            value = first_identifier(resource, term.SID_RECORD)
            if value and isinstance(entry.get("fullUrl"), str):
                found[value] = entry["fullUrl"]
    return found


def _input_record_identifiers(client: FhirClient, task: Mapping[str, Any]) -> set[str]:
    """The record identifiers of the DocumentReferences the Task already lists as inputs."""
    ids = set()
    for inp in task.get("input") or []:
        if io_type(inp) != "record":
            continue
        ref = (inp.get("valueReference") or {}).get("reference")
        if isinstance(ref, str) and ref.startswith("DocumentReference/"):
            ids.add(ref.split("/")[1].split("/_history")[0])
    if not ids:
        return set()
    found = set()
    for resource in client.search("DocumentReference", _id=",".join(sorted(ids))).with_headers(_NO_CACHE):
        value = first_identifier(resource, term.SID_RECORD)
        if value:
            found.add(value)
    return found


@dataclass(frozen=True)
class TaskEntry:
    """The Task entry a transfer adds to its transaction, and what it says in the plan."""

    entry: dict[str, Any] | None
    line: str | None
    # the status of the Task already on the destination (None: none yet), read while planning
    found_status: str | None = None


def transfer_task_entry(destination: FhirClient, outgoing: Case, bundle: Mapping[str, Any], now: str) -> TaskEntry:
    """The Task entry for a records-out transaction to ``destination`` (reads only).

    No Task there yet: a conditional create (``ifNoneExist`` on the case's task identifier) of a
    ``requested`` Task whose inputs are the records in ``bundle``. A Task already there (a re-run,
    or records sent after an ask): an update with ``ifMatch`` that adds the records not yet among
    its inputs, and nothing when there are none; its status is never touched, so a re-run
    cannot undo an accept.
    """
    case_id = outgoing.case_id
    existing = find_task(destination, case_id, required=False)
    records = _bundle_records(bundle)
    if existing is None:
        with_task = outgoing.with_task(new_task(outgoing, now))
        resource = with_narrative(task_to_fhir(with_task, lambda key: full_url(case_id, key)))
        entry = {
            "fullUrl": full_url(case_id, TASK),
            "resource": resource,
            "request": {"method": "POST", "url": "Task", "ifNoneExist": search_key(term.SID_TASK, case_id)},
        }
        owner = outgoing.performer.name
        return TaskEntry(entry, f"Task (new: requested, owner {owner}, {len(records)} record(s) as input)")
    present = _input_record_identifiers(destination, existing)
    new = [url for value, url in sorted(records.items()) if value not in present]
    task_id = str(existing.get("id"))
    if not new:
        return TaskEntry(None, None, existing.get("status"))
    updated = {k: v for k, v in existing.items() if k != "text"}
    updated["input"] = [*(existing.get("input") or []), *(io_entry("record", valueReference={"reference": u}) for u in new)]
    updated["lastModified"] = now
    entry = {
        "fullUrl": f"{destination.base_url}/Task/{task_id}",
        "resource": _ordered(updated),
        "request": {"method": "PUT", "url": f"Task/{task_id}", "ifMatch": f'W/"{_version(existing)}"'},
    }
    return TaskEntry(entry, f"Task/{task_id} ({existing.get('status')}): {len(new)} more record(s) as input", existing.get("status"))


def task_events(events: Iterable[TaskEvent]) -> list[dict[str, Any]]:
    """History events as JSON (for --json outputs)."""
    return [e.model_dump(mode="json") for e in events]
