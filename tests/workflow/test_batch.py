"""transfer_all and ``fhir-so transfer --all`` on two in-memory fake servers (served through
``responses``): selection, bounded concurrency, one state file that resumes, refusals, exit codes."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import responses
from click.testing import CliRunner
from tests.workflow.conftest import BASE, OTHER, quick_policy
from tests.workflow.fake_fhir import FakeFhir, Killed, Tripwire, serve_with_responses

import fhir_so
from fhir_so.case import Case, Party
from fhir_so.cli import cli
from fhir_so.client import FhirClient
from fhir_so.errors import InputError
from fhir_so.workflow.batch import BatchState, CaseResult, select_cases, transfer_all
from fhir_so.workflow.pull import pull
from fhir_so.workflow.push import push

NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.timezone.utc)


def clock() -> dt.datetime:
    return NOW


class Server(FakeFhir):
    """The fake, made safe for the batch's threads, counting how many requests are in flight at once;
    it also knows ``status`` and the chained ``based-on:ServiceRequest.identifier`` the batch searches by."""

    def __init__(self, base: str, **kwargs: Any) -> None:
        super().__init__(base, page_size=3, **kwargs)
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.delay = 0.0

    def handle(self, method: str, url: str, body: Any, headers: Mapping[str, str]) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)  # lets other workers' requests overlap this one
            with self.lock:
                # served through responses, the adapter's send (and its tripwire) is bypassed: trip here
                self.tripwire.count += 1
                number = self.tripwire.count
                kill = self.tripwire.at == number
                if kill and not self.tripwire.after:
                    self.tripwire.fire(f"killed before request {number}: {method} {url}")
                answer = super().handle(method, url, body, headers)
                if kill:
                    self.tripwire.fire(f"killed after request {number} was applied: {method} {url}")
                return answer
        finally:
            with self.lock:
                self.in_flight -= 1

    def _match(self, rtype: str, resource: dict[str, Any], name: str, value: str) -> bool:
        if name == "status":
            return resource.get("status") in value.split(",")
        if name == "based-on:ServiceRequest.identifier":
            refs = [b.get("reference", "") for b in resource.get("basedOn") or []]
            targets = [self.store.get("ServiceRequest", {}).get(r.split("/")[-1]) for r in refs]
            return any(t is not None and self._match("ServiceRequest", t, "identifier", value) for t in targets)
        return super()._match(rtype, resource, name, value)


def variant(case: Case, n: int, *, refuse: bool = False) -> Case:
    """Case number ``n``: its own case id and patient; with ``refuse`` its records consent is revoked."""
    patient = case.patient.model_copy(update={"identifier": case.patient.identifier.model_copy(update={"value": f"MRN-{n:04d}"})})
    update: dict[str, Any] = {"case_id": f"so-batch-{n:04d}", "patient": patient}
    if refuse:
        consent = case.records_consent
        assert consent is not None
        update["records_consent"] = consent.model_copy(update={"status": "revoked"})
    return case.model_copy(update=update)


def case_ids(fake: FakeFhir) -> list[str]:
    from fhir_so import terminology as term

    return sorted(i["value"] for r in fake.all("ServiceRequest") for i in r.get("identifier") or [] if i.get("system") == term.SID_CASE)


class World:
    """Two fake servers with cases on the clinic's; by default they answer ``_revinclude`` as HAPI does."""

    def __init__(
        self, rsps: responses.RequestsMock, cases: list[Case], *, tripwire: Tripwire | None = None, revinclude: bool = True
    ) -> None:
        self.wire = Tripwire()
        self.clinic = Server(BASE, tripwire=self.wire, revinclude=revinclude)
        self.expert = Server(OTHER, tripwire=self.wire, revinclude=revinclude)
        serve_with_responses(rsps, self.clinic, self.expert)
        self.src = FhirClient(BASE, retries=quick_policy())
        self.dst = FhirClient(OTHER, retries=quick_policy())
        self.request_ids = {c.case_id: str(push(self.src, c).request_id) for c in cases}
        self.clinic.requests.clear()
        self.expert.requests.clear()


@pytest.fixture
def first_case(urology: Case) -> Case:
    return urology.model_copy(update={"opinion": None})


@pytest.fixture
def mixed(first_case: Case) -> list[Case]:
    """Seven cases; numbers 2 and 5 refused by their revoked consent."""
    return [variant(first_case, n, refuse=n in (2, 5)) for n in range(7)]


def test_every_case_moves_or_is_refused_with_its_reason(rsps: responses.RequestsMock, mixed: list[Case], tmp_path: Path) -> None:
    w = World(rsps, mixed)
    seen: list[CaseResult] = []
    totals: list[int] = []
    result = transfer_all(w.src, w.dst, state=tmp_path / "b.json", jobs=3, on_result=seen.append, on_total=totals.append, clock=clock)
    assert totals == [7]
    assert sorted(c.case_id or "" for c in result.moved) == [f"so-batch-{n:04d}" for n in (0, 1, 3, 4, 6)]
    assert sorted(c.request_id for c in result.refused) == sorted(w.request_ids[f"so-batch-{n:04d}"] for n in (2, 5))
    assert all("revoked" in (c.reason or "") and c.exit_code == 1 for c in result.refused)
    assert sorted(str(c.case_id) for c in result.refused) == ["so-batch-0002", "so-batch-0005"]
    assert result.exit_code == 1 and not result.failed
    assert seen == list(result.cases)  # (equality leaves .result aside)
    assert all(c.result is not None for c in seen if c.outcome == "moved")
    assert all(c.result is None for c in result.cases)  # the batch keeps a few fields per case
    assert case_ids(w.expert) == [f"so-batch-{n:04d}" for n in (0, 1, 3, 4, 6)]
    assert w.expert.count("Provenance") == 5
    for c in result.moved:
        assert pull(w.dst, case_id=str(c.case_id)).case_id == c.case_id
    assert result.summary()[0].endswith("7 cases: 5 moved, 2 refused, 0 failed")


def test_all_moved_is_exit_0_and_the_python_face_exports_it(rsps: responses.RequestsMock, first_case: Case) -> None:
    w = World(rsps, [variant(first_case, n) for n in range(3)])
    result = fhir_so.transfer_all(w.src, w.dst, jobs=2, clock=clock)
    assert result.exit_code == 0 and len(result.moved) == 3


def test_concurrency_is_bounded_by_jobs(rsps: responses.RequestsMock, first_case: Case) -> None:
    w = World(rsps, [variant(first_case, n) for n in range(8)])
    w.clinic.delay = w.expert.delay = 0.01
    transfer_all(w.src, w.dst, jobs=3, clock=clock)
    most = max(w.clinic.most_in_flight, w.expert.most_in_flight)
    # cases really run side by side, and never more than --jobs (one request per case at a time; +1: the selection's page)
    assert 2 <= most <= 4
    w2 = World(rsps, [])
    assert w2.clinic.most_in_flight == 0


def test_jobs_1_runs_one_case_at_a_time(rsps: responses.RequestsMock, first_case: Case) -> None:
    w = World(rsps, [variant(first_case, n) for n in range(4)])
    w.expert.delay = 0.005
    transfer_all(w.src, w.dst, jobs=1, clock=clock)
    assert w.expert.most_in_flight == 1


def test_round_trips_per_case(rsps: responses.RequestsMock, first_case: Case) -> None:
    """What a moved case costs: two reads of the source (the request with its records, opinions and
    parties; the patient's privacy consents with their actors), one fresh search for the case's Task
    on the destination and two transactions there (the case with its Task; its Provenance).
    Beyond that, per batch: the selection's pages and at most one CapabilityStatement per server
    (the workers' clients share it)."""
    n, jobs = 6, 2
    w = World(rsps, [variant(first_case, i) for i in range(n)])
    w.src, w.dst = FhirClient(BASE, retries=quick_policy()), FhirClient(OTHER, retries=quick_policy())  # nothing cached
    result = transfer_all(w.src, w.dst, jobs=jobs, clock=clock)
    assert len(result.moved) == n

    def kinds(fake: Server) -> dict[str, int]:
        out: dict[str, int] = {}
        for method, url in fake.requests:
            path = url.split("/fhir", 1)[1].split("?")[0] or "/"
            out[f"{method} {path}"] = out.get(f"{method} {path}", 0) + 1
        return out

    selection_pages = -(-n // 100)
    source, destination = kinds(w.clinic), kinds(w.expert)
    assert source.pop("GET /ServiceRequest") == n + selection_pages
    assert source.pop("GET /Consent") == n
    assert source.pop("GET /metadata", 0) <= 1 and not source  # nothing else: no read by _id
    assert destination.pop("POST /") == 2 * n
    assert destination.pop("GET /Task") == n  # no ask can be open on a Task created by this transfer: no second look
    assert destination.pop("GET /metadata", 0) <= 1 and not destination


def test_selection_narrows_by_patient_and_status(rsps: responses.RequestsMock, first_case: Case) -> None:
    cases = [variant(first_case, n) for n in range(4)]
    cases[3] = cases[3].model_copy(update={"status": "on-hold"})
    w = World(rsps, cases)
    patient = w.clinic.all("Patient")[1]["id"]
    assert list(select_cases(w.src, patient=patient)) == [w.request_ids["so-batch-0001"]]
    assert list(select_cases(w.src, status="on-hold")) == [w.request_ids["so-batch-0003"]]
    assert sorted(select_cases(w.src)) == sorted(w.request_ids.values())
    query = w.clinic.requests[-1][1]
    assert "identifier=https" in query and "_elements=identifier" in query and "_count=100" in query
    result = transfer_all(w.src, w.dst, patient=patient, clock=clock)
    assert [c.case_id for c in result.cases] == ["so-batch-0001"]
    assert case_ids(w.expert) == ["so-batch-0001"]


def test_since_is_sent_as_last_updated(rsps: responses.RequestsMock, first_case: Case) -> None:
    w = World(rsps, [variant(first_case, 0)])
    list(select_cases(w.src, since=dt.date(2026, 10, 1)))
    assert "_lastUpdated=ge2026-10-01" in w.clinic.requests[-1][1]


def test_a_finished_batch_is_not_redone(rsps: responses.RequestsMock, mixed: list[Case], tmp_path: Path) -> None:
    w = World(rsps, mixed)
    state = tmp_path / "b.json"
    first = transfer_all(w.src, w.dst, state=state, jobs=2, clock=clock)
    writes = w.expert.writes()
    w.clinic.requests.clear()
    again = transfer_all(w.src, w.dst, state=state, jobs=2, clock=clock)
    assert w.expert.writes() == writes  # nothing written again
    assert all(m == "GET" and "ServiceRequest?" in u for m, u in w.clinic.requests)  # only the selection was read
    assert all(c.earlier_run for c in again.cases)
    assert {(c.request_id, c.outcome, c.provenance) for c in again.cases} == {(c.request_id, c.outcome, c.provenance) for c in first.cases}
    assert again.exit_code == 1
    saved = json.loads(state.read_text())
    assert saved["format"] == "fhir-so-batch-state/1" and len(saved["cases"]) == 7


def _expected(rsps: responses.RequestsMock, cases: list[Case], revinclude: bool) -> tuple[int, dict[str, int]]:
    w = World(rsps, cases, revinclude=revinclude)
    w.wire.count = 0
    transfer_all(w.src, w.dst, jobs=1, clock=clock)
    return w.wire.count, {t: w.expert.count(t) for t in sorted(w.expert.store)}


@pytest.mark.parametrize("revinclude", [True, False], ids=["one-search", "separate-searches"])
@pytest.mark.parametrize("after", [False, True], ids=["before-applied", "after-applied"])
def test_killed_at_every_request_then_resumed_loses_and_duplicates_nothing(
    first_case: Case, tmp_path: Path, after: bool, revinclude: bool
) -> None:
    cases = [variant(first_case, n, refuse=n == 1) for n in range(3)]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        total, expected = _expected(rsps, cases, revinclude)
    assert total >= 10  # every step of every case is a place to be killed at
    for n in range(1, total + 1, 2 if after else 1):
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            w = World(rsps, cases, revinclude=revinclude)
            state = tmp_path / f"b-{n}-{after}.json"
            w.wire.count, w.wire.at, w.wire.after = 0, n, after
            with pytest.raises(Killed):
                transfer_all(w.src, w.dst, state=state, jobs=1, clock=clock)
            w.wire.at = None
            done_before = json.loads(state.read_text())["cases"] if state.exists() else {}
            finished = {rid for rid, c in done_before.items() if "outcome" in c}
            w.expert.requests.clear()
            result = transfer_all(w.src, w.dst, state=state, jobs=1, clock=clock)
            assert {t: w.expert.count(t) for t in sorted(w.expert.store)} == expected, f"killed at request {n}"
            assert len(result.moved) == 2 and len(result.refused) == 1, f"killed at request {n}"
            assert {c.request_id for c in result.cases if c.earlier_run} == finished
            # a finished case made no request on the resumed run
            moved_before = {c.destination_request_id for c in result.moved if c.earlier_run}
            assert not any(f"ServiceRequest/{rid}" in u for rid in moved_before for _, u in w.expert.requests)


def test_the_state_file_is_written_in_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each change is in the file when the call returns; changes that fall due while a write is
    under way go out together in the next one."""
    batch_module = importlib.import_module("fhir_so.workflow.batch")
    real = batch_module.write_atomic
    writes: list[set[str]] = []

    def slow_write(path: Path, text: bytes) -> None:
        time.sleep(0.003)  # a disk: lets other threads' changes pile up meanwhile
        writes.append({rid for rid, c in json.loads(text)["cases"].items() if "outcome" in c})
        real(path, text)

    monkeypatch.setattr(batch_module, "write_atomic", slow_write)
    path = tmp_path / "b.json"
    state = BatchState.open(path, {"k": 1})
    cases, steps = 8, 4

    def one(i: int) -> None:
        rid = str(i)
        for step in range(steps):
            state.save_running(rid, {"steps": {f"s{step}": {}}})
            assert json.loads(path.read_text())["cases"][rid] == {"running": {"steps": {f"s{step}": {}}}}
        state.finish(CaseResult(rid, "moved", case_id=f"c{i}"))
        assert json.loads(path.read_text())["cases"][rid] == {"outcome": "moved", "case_id": f"c{i}"}
        assert any(rid in done for done in list(writes))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(cases)))
    assert len(writes) < cases * (steps + 1)  # grouped
    reopened = BatchState.open(path, {"k": 1})
    assert all(reopened.finished(str(i)) is not None for i in range(cases))


def test_a_case_writes_the_file_twice_its_push_and_its_finish(
    rsps: responses.RequestsMock, first_case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only what must outlive a kill is written at once: the push (until its Provenance is written),
    and the finished case; a refused case only its finish."""
    batch_module = importlib.import_module("fhir_so.workflow.batch")
    real = batch_module.write_atomic
    written: list[dict[str, Any]] = []

    def record(path: Path, text: bytes) -> None:
        written.append(json.loads(text)["cases"])
        real(path, text)

    monkeypatch.setattr(batch_module, "write_atomic", record)
    w = World(rsps, [variant(first_case, n, refuse=n == 1) for n in range(3)])
    result = transfer_all(w.src, w.dst, state=tmp_path / "b.json", jobs=1, clock=clock)
    assert len(result.moved) == 2 and len(result.refused) == 1
    assert len(written) == 2 * 2 + 1
    steps = [sorted(c["running"]["steps"]) for cases in written for c in cases.values() if "running" in c]
    assert steps == [["pulled", "pushed"]] * 2  # the push, written before the Provenance
    finished = [sorted(rid for rid, c in cases.items() if "outcome" in c) for cases in written]
    assert [len(f) for f in finished] == [0, 1, 2, 2, 3]  # each finish


def test_a_server_failure_is_exit_3_and_the_next_run_retries_it(rsps: responses.RequestsMock, first_case: Case, tmp_path: Path) -> None:
    w = World(rsps, [variant(first_case, n) for n in range(3)])
    state = tmp_path / "b.json"
    healthy = Server.handle

    def flaky(self: Server, method: str, url: str, body: Any, headers: Mapping[str, str]) -> tuple[int, Any, dict[str, str]]:
        if method == "POST" and "so-batch-0001" in json.dumps(body):
            return 503, None, {}
        return healthy(self, method, url, body, headers)

    w.expert.handle = flaky.__get__(w.expert)  # type: ignore[method-assign]
    first = transfer_all(w.src, w.dst, state=state, jobs=2, clock=clock)
    assert first.exit_code == 3
    assert [c.case_id for c in first.failed] == ["so-batch-0001"] and "503" in (first.failed[0].reason or "")
    assert len(first.moved) == 2
    del w.expert.handle
    again = transfer_all(w.src, w.dst, state=state, jobs=2, clock=clock)
    assert again.exit_code == 0
    assert [c.case_id for c in again.cases if not c.earlier_run] == ["so-batch-0001"]
    assert case_ids(w.expert) == ["so-batch-0000", "so-batch-0001", "so-batch-0002"]


@pytest.mark.parametrize("conflicts", [1, 99], ids=["lost-a-race-once", "always"])
def test_a_conflict_409_is_tried_again_from_the_recorded_step(rsps: responses.RequestsMock, first_case: Case, conflicts: int) -> None:
    w = World(rsps, [variant(first_case, n) for n in range(2)])
    healthy = Server.handle
    left = {"n": conflicts}

    def racing(self: Server, method: str, url: str, body: Any, headers: Mapping[str, str]) -> tuple[int, Any, dict[str, str]]:
        if method == "POST" and "so-batch-0001" in json.dumps(body) and left["n"] > 0:
            left["n"] -= 1
            return 409, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing",
                                                                         "diagnostics": "HAPI-0550: Unique index violation"}]}, {}
        return healthy(self, method, url, body, headers)

    w.expert.handle = racing.__get__(w.expert)  # type: ignore[method-assign]
    waits: list[float] = []
    result = transfer_all(w.src, w.dst, jobs=2, clock=clock, sleep=waits.append)
    if conflicts == 1:
        assert result.exit_code == 0 and len(result.moved) == 2 and len(waits) == 1
        assert case_ids(w.expert) == ["so-batch-0000", "so-batch-0001"]
    else:
        assert result.exit_code == 3 and len(waits) == 3
        assert "409" in (result.failed[0].reason or "")


def test_a_state_file_of_another_batch_is_refused(rsps: responses.RequestsMock, first_case: Case, tmp_path: Path) -> None:
    w = World(rsps, [variant(first_case, 0)])
    state = tmp_path / "b.json"
    transfer_all(w.src, w.dst, state=state, clock=clock)
    with pytest.raises(InputError, match="another batch"):
        transfer_all(w.src, w.dst, state=state, status="active", clock=clock)
    single = tmp_path / "single.json"
    single.write_text(json.dumps({"format": "fhir-so-transfer-state/1", "steps": {}}))
    with pytest.raises(InputError, match="not a fhir-so batch state file"):
        BatchState.open(single, {})


def test_a_damaged_finished_entry_is_bad_input(rsps: responses.RequestsMock, first_case: Case, tmp_path: Path) -> None:
    w = World(rsps, [variant(first_case, 0)])
    state = tmp_path / "b.json"
    transfer_all(w.src, w.dst, state=state, clock=clock)
    data = json.loads(state.read_text())
    rid = next(iter(data["cases"]))
    data["cases"][rid]["outcome"] = "teleported"
    state.write_text(json.dumps(data))
    with pytest.raises(InputError, match="damaged") as caught:
        transfer_all(w.src, w.dst, state=state, clock=clock)
    assert caught.value.exit_code == 2


def test_report_back_all_sends_every_completed_opinion(rsps: responses.RequestsMock, urology: Case, first_case: Case) -> None:
    cases = [variant(first_case, n) for n in range(3)]
    w = World(rsps, cases)
    transfer_all(w.src, w.dst, clock=clock)
    # the second physician writes opinions for cases 0 and 2 (case 2's still preliminary)
    for n, status in ((0, "final"), (2, "preliminary")):
        on_expert = pull(w.dst, case_id=f"so-batch-{n:04d}")
        assert urology.opinion is not None
        push(w.dst, on_expert.model_copy(update={"opinion": urology.opinion.model_copy(update={"status": status})}))
    back = transfer_all(w.dst, w.src, report_back=True, jobs=2, clock=clock)
    assert [c.case_id for c in back.moved] == ["so-batch-0000"] and back.exit_code == 0
    assert w.clinic.count("DiagnosticReport") == 1
    prelim = transfer_all(w.dst, w.src, report_back=True, status="preliminary", clock=clock)
    assert [c.case_id for c in prelim.moved] == ["so-batch-0002"]


# -- the command line ----------------------------------------------------------------------------


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["transfer", "--from", BASE, "--to", OTHER, *args], catch_exceptions=False)


def test_cli_prints_one_json_line_per_case_and_exits_1_on_refusals(rsps: responses.RequestsMock, mixed: list[Case], tmp_path: Path) -> None:
    World(rsps, mixed)
    out = run("--all", "--state", str(tmp_path / "b.json"), "--jobs", "2")
    assert out.exit_code == 1
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == 8 and lines[-1]["summary"]["moved"] == 5 and lines[-1]["summary"]["refused"] == 2
    assert sorted(x["outcome"] for x in lines[:-1]) == ["moved"] * 5 + ["refused"] * 2
    assert "5 moved, 2 refused, 0 failed" in out.stderr
    again = run("--all", "--state", str(tmp_path / "b.json"), "--json")
    assert again.exit_code == 1 and all(json.loads(x).get("earlier_run", True) for x in again.stdout.splitlines())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--all"], "--all needs --state"),
        (["--all", "--state", "s.json", "--case", "x"], "without --request or --case"),
        (["--all", "--state", "s.json", "--dry-run"], "--dry-run plans one case"),
        (["--case", "x", "--patient", "7"], "--patient narrow a batch"),
        (["--all", "--state", "s.json", "--since", "yesterday"], "not a FHIR date"),
        (["--all", "--state", "s.json", "--jobs", "0"], "--jobs"),
    ],
    ids=["no-state", "with-case", "dry-run", "patient-alone", "bad-since", "zero-jobs"],
)
def test_cli_usage_errors(args: list[str], message: str) -> None:
    out = CliRunner().invoke(cli, ["transfer", "--from", BASE, "--to", OTHER, *args])
    assert out.exit_code == 2 and message in out.output
