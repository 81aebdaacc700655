"""The demo's story on two in-memory fake servers: every step runs, consent refuses before it is given,
the imaging the consent withheld is asked for and follows once the consent is widened, a third opinion's
Task links the earlier one, and a re-run duplicates nothing and says so."""

from __future__ import annotations

from pathlib import Path

from tests.workflow.conftest import BASE, EXAMPLES, OTHER, quick_policy
from tests.workflow.fake_fhir import session_for
from tests.workflow.history_fake import HistoryFake, Ticker

from fhir_so import terminology as term
from fhir_so.client import FhirClient
from fhir_so.workflow.demo import run_demo


def test_the_story_runs_and_reruns_without_duplicates(tmp_path: Path) -> None:
    ticker = Ticker()
    clinic, expert = HistoryFake(BASE, ticker), HistoryFake(OTHER, ticker)
    session = session_for(clinic, expert)
    lines: list[str] = []
    with FhirClient(BASE, session=session, retries=quick_policy()) as a, FhirClient(OTHER, session=session, retries=quick_policy()) as b:
        result = run_demo(a, b, examples=EXAMPLES, state_dir=tmp_path, say=lines.append)
        text = "\n".join(lines)
        # records out twice for the second opinion (before and after the ask), once for the third; two reports back
        assert len(result.transfers) == 5
        assert [(s.action, s.status) for s in result.task_steps] == [
            ("accept", "accepted"), ("ask", "on-hold"), ("start", "in-progress"), ("complete", "completed"),
            ("accept", "accepted"), ("start", "in-progress"), ("complete", "completed"),
        ]
        # refused before consent (twice), and the ask refused while the consent leaves the imaging out
        assert len(result.refusals) == 3 and sum("no consent" in r for r in result.refusals) == 2
        assert "REFUSED for imaging: record(s) us-scrotum withheld: the consent does not cover imaging records" in text
        assert "decided at Consent/" in text
        assert "withheld: record us-scrotum (imaging)" in text
        assert len(result.asks) == 1 and result.asks[0].answered and result.asks[0].resumed == "accepted"
        assert "ask: answered; Task/" in text and "went back to accepted" in text
        assert "third opinion" in text and "concordance confirmed" in text
        assert "it links the earlier opinion's Task (so-2026-uro-0417)" in text

        assert clinic.count("Task") == 0, "the referral's Task lives on the second-opinion server only"
        tasks = {t["identifier"][0]["value"]: t for t in expert.all("Task")}
        assert set(tasks) == {"so-2026-uro-0417", "so-2026-uro-0417-3"}
        assert all(t["status"] == "completed" for t in tasks.values())
        second = tasks["so-2026-uro-0417"]
        records = [i for i in second["input"] if i["type"]["coding"][0]["code"] == "record"]
        assert len(records) == 4, "the imaging followed the ask into the Task's input"
        third_inputs = [i for i in tasks["so-2026-uro-0417-3"]["input"] if i["type"]["coding"][0]["code"] == "earlier-task"]
        assert third_inputs[0]["valueReference"]["identifier"] == {"system": term.SID_TASK, "value": "so-2026-uro-0417"}
        assert clinic.count("DiagnosticReport") == 2 and expert.count("DiagnosticReport") == 2
        assert expert.count("ServiceRequest") == 2
        assert not result.wrote_nothing_new
        counts = ({t: clinic.count(t) for t in clinic.store}, {t: expert.count(t) for t in expert.store})
        versions = {k: len(v) for k, v in {**clinic.versions, **{f"x-{k}": v for k, v in expert.versions.items()}}.items()}

        (tmp_path / "again").mkdir()
        again_lines: list[str] = []
        again = run_demo(a, b, examples=EXAMPLES, state_dir=tmp_path / "again", say=again_lines.append)
        assert ({t: clinic.count(t) for t in clinic.store}, {t: expert.count(t) for t in expert.store}) == counts
        assert {k: len(v) for k, v in {**clinic.versions, **{f"x-{k}": v for k, v in expert.versions.items()}}.items()} == versions, \
            "a re-run writes no new version of anything"
        assert again.wrote_nothing_new and not again.task_steps
        again_text = "\n".join(again_lines)
        assert "An earlier run had told this story: nothing was written, nothing duplicated" in again_text
        assert again_text.count("already done by an earlier run") == len(again.done_before) >= 8
        # the consent the first run wrote is still the patient's: the re-run says so instead of a refusal
        assert sum("permitted by the patient's consent an earlier run left" in line for line in again_lines) == 2
