"""batch: transfer every matching case between two servers, a bounded number at a time, resumably.

Selection is one paged search on the source:

* records out: every ``ServiceRequest`` that carries the project's case identifier system
  (``identifier=SID_CASE|``), narrowed by ``patient``, ``status`` (the request's) and
  ``since`` (``_lastUpdated=geSINCE``: cases changed since then);
* report back (``report_back=True``): every completed opinion, a ``DiagnosticReport`` with
  status final, amended or corrected (or ``status``) whose ``basedOn`` request carries the
  case identifier (a chained search), narrowed the same way; each request once.

Each case goes through :func:`fhir_so.workflow.transfer.transfer`, so each case gets its own
consent check under the one policy, its own Provenance and its own step-by-step resume. At
most ``jobs`` cases are in flight (a thread pool; the servers are the bottleneck, so threads
waiting on sockets are what is needed). ``FhirClient`` is not shared between threads: each
worker gets its own pair of clients, made like the ones given (same class, credentials,
timeouts, retries, TLS check).

One state file holds the whole batch, rewritten atomically (:func:`fhir_so.jsonio.write_atomic`)
when a case has pushed and when it finishes (the steps in between ride along; writes that fall
due together are one: see :class:`_CaseSlot` and :class:`BatchState`)::

    {"format": "fhir-so-batch-state/1",
     "batch": {"direction": ..., "source": URL, "destination": URL, "patient": ..., "since": ..., "status": ...},
     "cases": {"<source request id>": {"outcome": "moved"|"refused", ...}       finished: never redone
                                      | {"running": <a transfer's state>}}}    resumes like a single transfer

A run killed at any moment and started again with the same file skips the finished cases,
resumes the ones in flight from their last written step (a case's push is written before its
Provenance; see :class:`_CaseSlot`) (every write is conditional on
identifiers and the Provenance on its transfer id, so a step redone after the kill adds
nothing), and does the rest. A failed case (server error after retries) is not finished: the
next run tries it again. A refusal is a finished answer: give a new state file to ask again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from fhir_so import terminology as term
from fhir_so.client import FhirClient
from fhir_so.errors import ConsentError, FhirSoError, InputError, PreconditionFailed
from fhir_so.jsonio import write_atomic
from fhir_so.workflow.state import read_state_file
from fhir_so.workflow.transfer import Clock, TransferResult, transfer, utc_now

__all__ = ["BATCH_FORMAT", "BatchResult", "BatchState", "CaseResult", "Outcome", "select_cases", "transfer_all"]

BATCH_FORMAT = "fhir-so-batch-state/1"
Outcome = Literal["moved", "refused", "failed"]
#: Opinion statuses that count as completed for ``report_back`` (FHIR R4 DiagnosticReport.status).
COMPLETED_OPINION = "final,amended,corrected"
_PAGE = 100
# A batch may have far more pages than the client's default cap on one search.
_MAX_PAGES = 1_000_000
#: Attempts at a case whose transaction lost a race (409/412; see ``transfer_all``), and the first wait.
CONFLICT_ATTEMPTS = 4
_CONFLICT_WAIT = 0.2


@dataclass(frozen=True)
class CaseResult:
    """What happened to one case: moved (now or by an earlier run), refused with the reason, or failed."""

    request_id: str
    outcome: Outcome
    case_id: str | None = None
    reason: str | None = None
    exit_code: int = 0
    earlier_run: bool = False
    transfer_id: str | None = None
    provenance: str | None = None
    destination_request_id: str | None = None
    withheld: int = 0
    result: TransferResult | None = dataclasses.field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "result"}

    def to_state(self) -> dict[str, Any]:
        keep = ("outcome", "case_id", "reason", "transfer_id", "provenance", "destination_request_id", "withheld")
        return {k: v for k, v in self.to_json().items() if k in keep and v not in (None, 0)}

    @classmethod
    def from_state(cls, request_id: str, data: Mapping[str, Any]) -> CaseResult:
        outcome = data.get("outcome")
        if outcome not in ("moved", "refused"):
            raise ValueError(f"unknown outcome {outcome!r}")
        return cls(
            request_id,
            outcome,
            case_id=data.get("case_id"),
            reason=data.get("reason"),
            exit_code=1 if outcome == "refused" else 0,
            earlier_run=True,
            transfer_id=data.get("transfer_id"),
            provenance=data.get("provenance"),
            destination_request_id=data.get("destination_request_id"),
            withheld=int(data.get("withheld") or 0),
        )


@dataclass(frozen=True)
class BatchResult:
    """Every case of a batch, in the order they finished, and the batch's exit code."""

    direction: str
    source: str
    destination: str
    cases: tuple[CaseResult, ...]

    def _with(self, outcome: Outcome) -> list[CaseResult]:
        return [c for c in self.cases if c.outcome == outcome]

    @property
    def moved(self) -> list[CaseResult]:
        return self._with("moved")

    @property
    def refused(self) -> list[CaseResult]:
        return self._with("refused")

    @property
    def failed(self) -> list[CaseResult]:
        return self._with("failed")

    @property
    def exit_code(self) -> int:
        """0 all moved; 1 some refused by consent; 2 some case unusable (bad data); 3 a server failed after retries."""
        codes = {c.exit_code for c in self.cases}
        for code in (3, 2, 1):
            if code in codes:
                return code
        return 0

    def summary(self) -> list[str]:
        """The final summary a person reads: counts, then each refusal and failure with its reason."""
        earlier = sum(1 for c in self.cases if c.earlier_run)
        what = "records out" if self.direction == "records" else "reports back"
        out = [
            f"batch transfer ({what}) {self.source} -> {self.destination}: {len(self.cases)} cases: "
            f"{len(self.moved)} moved, {len(self.refused)} refused, {len(self.failed)} failed"
            + (f" ({earlier} finished by an earlier run, not redone)" if earlier else "")
        ]
        out += [f"  refused: {c.case_id or 'request ' + c.request_id}: {c.reason}" for c in self.refused]
        out += [f"  failed: {c.case_id or 'request ' + c.request_id}: {c.reason}" for c in self.failed]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "source": self.source,
            "destination": self.destination,
            "total": len(self.cases),
            "moved": len(self.moved),
            "refused": len(self.refused),
            "failed": len(self.failed),
            "exit_code": self.exit_code,
            "refusals": [{"request_id": c.request_id, "case_id": c.case_id, "reason": c.reason} for c in self.refused],
            "failures": [{"request_id": c.request_id, "case_id": c.case_id, "reason": c.reason} for c in self.failed],
        }


# -- the batch's state file ---------------------------------------------------------------


class _CaseSlot:
    """One case's transfer state inside the batch file (a :class:`fhir_so.workflow.state.StateStore`).

    A step is written to the file before the transfer goes on only when it must outlive a kill:
    the push, until its Provenance is written (a resumed run then writes that Provenance for
    what moved, without planning again, even if the consent changed meanwhile). The other steps
    reach the file with the next write: the ones before the push are redone by a resumed run
    (reads, and a plan whose transfer id comes from its content), the ones after it are written
    with the case's finish; every write of a transfer is conditional, so redoing one adds nothing.
    """

    def __init__(self, batch: BatchState, request_id: str) -> None:
        self._batch = batch
        self._request_id = request_id

    def load(self) -> dict[str, Any] | None:
        return self._batch.running(self._request_id)

    def save(self, data: dict[str, Any]) -> None:
        steps = data.get("steps") or {}
        self._batch.save_running(self._request_id, data, write="pushed" in steps and "provenance" not in steps)


class BatchState:
    """The state of a whole batch; with no path it lives in memory only. Safe to use from many threads.

    Writes are grouped: a step waits for a write of the file that holds it, and whoever writes
    next writes every change made so far, so under load one write carries the steps of
    several cases (and a case writes only the steps that must outlive a kill: see
    :class:`_CaseSlot`). Every write is atomic and synced to disk (a reader, or a run started
    after a kill or a power cut, sees the old file or the new one).
    """

    def __init__(self, path: Path | None, key: dict[str, Any], data: dict[str, Any] | None = None) -> None:
        self.path = path
        self.key = key
        self.data: dict[str, Any] = data or {"format": BATCH_FORMAT, "batch": key, "cases": {}}
        self._lock = threading.Lock()  # guards data and the change counter
        self._write_lock = threading.Lock()  # one writer of the file at a time
        self._changes = 0  # changes made to data so far
        self._written = 0  # ... of which the file holds this many

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None, key: dict[str, Any]) -> BatchState:
        """Load the state of this batch, or start a fresh one when the file does not exist yet."""
        if path is None:
            return cls(None, key)
        p = Path(path)
        return cls(p, key, read_state_file(p, fmt=BATCH_FORMAT, kind="batch", items="cases", key=key, describe=_describe))

    def finished(self, request_id: str) -> CaseResult | None:
        """The result an earlier run recorded for this case, or None when it still has to run."""
        with self._lock:
            held = self.data["cases"].get(request_id)
        if not isinstance(held, dict) or "outcome" not in held:
            return None
        try:
            return CaseResult.from_state(request_id, held)
        except (TypeError, ValueError) as exc:
            raise InputError(f"the state file is damaged ({exc}); start over with a new --state file",
                             source=str(self.path), location=f"$.cases[{request_id!r}]") from None

    def slot(self, request_id: str) -> _CaseSlot:
        return _CaseSlot(self, request_id)

    def running(self, request_id: str) -> dict[str, Any] | None:
        with self._lock:
            held = self.data["cases"].get(request_id)
        found = held.get("running") if isinstance(held, dict) else None
        return found if isinstance(found, dict) else None

    def save_running(self, request_id: str, data: dict[str, Any], *, write: bool = True) -> None:
        """Keep a running case's state; with ``write``, in the file (atomically) before returning."""
        # a copy: the transfer goes on changing its own dict while another thread writes the file
        self._put(request_id, {"running": {**data, "steps": dict(data.get("steps") or {})}}, write=write)

    def finish(self, result: CaseResult) -> None:
        """Record a finished case in a few fields (its transfer's steps are no longer needed)."""
        self._put(result.request_id, result.to_state(), write=True)

    def _put(self, request_id: str, value: dict[str, Any], *, write: bool) -> None:
        with self._lock:
            self.data["cases"][request_id] = value
            self._changes += 1
            mine = self._changes
        if self.path is None or not write:
            return
        with self._write_lock:
            if self._written >= mine:
                return  # a write made while this thread waited holds this change already
            with self._lock:
                # compact orjson: the file is rewritten whole
                text = orjson.dumps(self.data) + b"\n"
                upto = self._changes
            write_atomic(self.path, text)
            self._written = upto


def _describe(key: Any) -> str:
    if not isinstance(key, dict):
        return "unknown"
    narrowed = ", ".join(f"{k}={key[k]}" for k in ("patient", "since", "status") if key.get(k))
    return f"{key.get('direction')} from {key.get('source')} to {key.get('destination')}" + (f" ({narrowed})" if narrowed else "")


# -- selection -----------------------------------------------------------------------------


def _since(since: str | dt.date | dt.datetime | None) -> str | None:
    if since is None or isinstance(since, str):
        return since
    return since.isoformat()


def _selection(
    *, patient: str | None, since: str | dt.date | dt.datetime | None, status: str | None, report_back: bool
) -> tuple[str, dict[str, str]]:
    """The resource type and search parameters that find a batch's cases (see the module's docstring)."""
    params: dict[str, str] = {}
    when = _since(since)
    if when:
        params["_lastUpdated"] = f"ge{when}"
    if patient:
        params["subject"] = patient if "/" in patient else f"Patient/{patient}"
    if report_back:
        params["status"] = status or COMPLETED_OPINION
        params["based-on:ServiceRequest.identifier"] = f"{term.SID_CASE}|"
        return "DiagnosticReport", params
    params["identifier"] = f"{term.SID_CASE}|"
    if status:
        params["status"] = status
    return "ServiceRequest", params


def select_cases(
    source: FhirClient,
    *,
    patient: str | None = None,
    since: str | dt.date | dt.datetime | None = None,
    status: str | None = None,
    report_back: bool = False,
) -> Iterator[str]:
    """The source's ServiceRequest ids of every matching case, page by page (lazily; each id once)."""
    for rid, _ in _select(source, patient=patient, since=since, status=status, report_back=report_back):
        yield rid


def _select(
    source: FhirClient, *, patient: str | None, since: str | dt.date | dt.datetime | None, status: str | None, report_back: bool
) -> Iterator[tuple[str, str | None]]:
    """(request id, case id when the search shows it) of every matching case."""
    rtype, params = _selection(patient=patient, since=since, status=status, report_back=report_back)
    # only the references are needed here: each transfer pulls its own case
    params["_elements"] = "basedOn" if report_back else "identifier"
    seen: set[str] = set()
    for found in source.search(rtype, params).page_size(_PAGE).page_limit(_MAX_PAGES):
        hits: list[tuple[str, str | None]]
        if report_back:
            refs = [b.get("reference") for b in found.get("basedOn") or [] if isinstance(b, dict)]
            hits = [(r.split("/")[1], None) for r in refs if isinstance(r, str) and r.startswith("ServiceRequest/")]
        elif isinstance(found.get("id"), str):
            hits = [(found["id"], _case_id_of(found))]
        else:
            hits = []
        for rid, case_id in hits:
            if rid not in seen:
                seen.add(rid)
                yield rid, case_id


def _case_id_of(request: Mapping[str, Any]) -> str | None:
    for ident in request.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == term.SID_CASE and isinstance(ident.get("value"), str):
            return str(ident["value"])
    return None


# -- running ---------------------------------------------------------------------------------


def _clone(client: FhirClient) -> FhirClient:
    """A client like ``client`` for another thread (a FhirClient is not shared between threads)."""
    return client.clone()


def _moved(request_id: str, result: TransferResult) -> CaseResult:
    return CaseResult(
        request_id,
        "moved",
        case_id=result.case_id,
        transfer_id=result.transfer_id,
        provenance=result.provenance,
        destination_request_id=result.destination_request_id,
        withheld=len(result.plan.withheld),
        result=result,
    )


def transfer_all(
    source: FhirClient,
    destination: FhirClient,
    *,
    state: str | os.PathLike[str] | None = None,
    jobs: int = 4,
    patient: str | None = None,
    since: str | dt.date | dt.datetime | None = None,
    status: str | None = None,
    report_back: bool = False,
    on_result: Callable[[CaseResult], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    clock: Clock = utc_now,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchResult:
    """Transfer every matching case from ``source`` to ``destination`` (or, with ``report_back``,
    every completed opinion back), at most ``jobs`` at a time; see the module's docstring.

    ``state`` is the batch's state file: a run killed at any moment and started again with it
    loses nothing, duplicates nothing and does not redo finished cases. ``on_result`` is called
    (from the calling thread) with each case's :class:`CaseResult` as it finishes, including
    cases an earlier run finished; only there does a moved case carry its whole
    :class:`TransferResult` (``.result``: the plan, the push's entries), so that the returned
    batch stays small however many cases it holds; ``on_total`` once with the number of matching cases, when
    the server reports it. Refusals and failures of single cases do not stop the batch; they
    are in the result (``BatchResult.exit_code``). Selection failing is raised (ServerError).
    A case whose write loses a race with another case's (409/412: two cases creating the same
    new party at once) is tried again from its recorded step, up to ``CONFLICT_ATTEMPTS`` times,
    waiting with ``sleep``.
    """
    if jobs < 1:
        raise InputError(f"jobs must be at least 1, not {jobs}")
    if source.base_url == destination.base_url:
        raise InputError("the source and destination servers are the same: a transfer copies between two servers")
    direction = "report" if report_back else "records"
    key = {"direction": direction, "source": source.base_url, "destination": destination.base_url,
           "patient": patient, "since": _since(since), "status": status}
    batch = BatchState.open(state, key)
    # Validate the file's finished entries before any work (a damaged file is exit 2 up front).
    for rid in list(batch.data["cases"]):
        batch.finished(rid)

    if jobs > 1:
        # read once here, each worker's client starts with it (rather than one /metadata per worker)
        for client in (source, destination):
            try:
                client.capabilities()
            except FhirSoError:
                pass  # a worker that needs it asks again, and reports the failure in its case
    local = threading.local()
    made: list[FhirClient] = []
    made_lock = threading.Lock()

    def clients() -> tuple[FhirClient, FhirClient]:
        if jobs == 1:
            return source, destination
        pair = getattr(local, "pair", None)
        if pair is None:
            pair = (_clone(source), _clone(destination))
            local.pair = pair
            with made_lock:
                made.extend(pair)
        return pair

    def attempt(request_id: str) -> TransferResult:
        src, dst = clients()
        for n in range(1, CONFLICT_ATTEMPTS):
            try:
                return transfer(src, dst, request_id, state=batch.slot(request_id), report_back=report_back, clock=clock)
            except PreconditionFailed:
                # Two cases in flight that name the same new Practitioner or Organization both
                # create it conditionally; HAPI lets one win and answers the other 409 (its unique
                # index on the conditional URL), rolling that transaction back whole. The case
                # resumes from its recorded step; by then the party exists.
                sleep(_CONFLICT_WAIT * n * (1 + random.random()))
        return transfer(src, dst, request_id, state=batch.slot(request_id), report_back=report_back, clock=clock)

    def one(request_id: str, case_id: str | None) -> CaseResult:
        try:
            result = attempt(request_id)
        except ConsentError as exc:
            refused = CaseResult(request_id, "refused", case_id=case_id, reason=str(exc), exit_code=exc.exit_code)
            batch.finish(refused)
            return refused
        except FhirSoError as exc:
            # not finished: a later run with the same state file tries this case again
            return CaseResult(request_id, "failed", case_id=case_id, reason=str(exc), exit_code=exc.exit_code)
        moved = _moved(request_id, result)
        batch.finish(moved)
        return moved

    if on_total is not None:
        try:
            total = _count(source, patient=patient, since=since, status=status, report_back=report_back)
        except FhirSoError:
            total = None  # a progress total is a nicety; the selection itself reports real failures
        if total is not None:
            on_total(total)

    results: list[CaseResult] = []

    def done(result: CaseResult) -> None:
        if on_result is not None:
            on_result(result)
        # the batch keeps a few fields per case, not the case's plan and Bundle: memory stays flat
        results.append(dataclasses.replace(result, result=None))

    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="fhir-so-transfer")
    try:
        in_flight: set[Future[CaseResult]] = set()
        for request_id, case_id in _select(source, patient=patient, since=since, status=status, report_back=report_back):
            earlier = batch.finished(request_id)
            if earlier is not None:
                done(earlier)
                continue
            # bounded: the selection is read no further ahead than the pool can take
            while len(in_flight) >= jobs * 2:
                finished, in_flight = _wait_some(in_flight)
                for f in finished:
                    done(f.result())
            in_flight.add(pool.submit(one, request_id, case_id))
        while in_flight:
            finished, in_flight = _wait_some(in_flight)
            for f in finished:
                done(f.result())
    finally:
        # on Ctrl-C or an error: cases not started yet are dropped (the state file says they
        # have not run); the ones in flight finish their current step
        pool.shutdown(wait=True, cancel_futures=True)
        for client in made:
            client.close()
    return BatchResult(direction, source.base_url, destination.base_url, tuple(results))


def _wait_some(futures: set[Future[CaseResult]]) -> tuple[set[Future[CaseResult]], set[Future[CaseResult]]]:
    finished, pending = wait(futures, return_when=FIRST_COMPLETED)
    return set(finished), set(pending)


def _count(
    source: FhirClient, *, patient: str | None, since: str | dt.date | dt.datetime | None, status: str | None, report_back: bool
) -> int | None:
    """How many cases the selection matches, as the server counts them (for a progress bar's total);
    None when it does not say (a stock server may not): no pages are read just for a progress bar."""
    rtype, params = _selection(patient=patient, since=since, status=status, report_back=report_back)
    # a progress bar's total: a cached count misleads no one
    return source.search(rtype, params).cached().total()
