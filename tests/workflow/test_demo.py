"""The demo's story on two in-memory fake servers: every step runs, consent refuses before it is given, reruns duplicate nothing."""

from __future__ import annotations

from pathlib import Path

from tests.workflow.conftest import BASE, EXAMPLES, OTHER, quick_policy
from tests.workflow.fake_fhir import FakeFhir, session_for

from fhir_so.client import FhirClient
from fhir_so.workflow.demo import run_demo


def test_the_story_runs_and_reruns_without_duplicates(tmp_path: Path) -> None:
    clinic, expert = FakeFhir(BASE), FakeFhir(OTHER)
    session = session_for(clinic, expert)
    lines: list[str] = []
    with FhirClient(BASE, session=session, retries=quick_policy()) as a, FhirClient(OTHER, session=session, retries=quick_policy()) as b:
        result = run_demo(a, b, examples=EXAMPLES, state_dir=tmp_path, say=lines.append)
        assert len(result.transfers) == 4 and len(result.refusals) == 2
        assert all("no consent" in r for r in result.refusals)
        text = "\n".join(lines)
        assert "third opinion" in text and "concordance confirmed" in text and "withheld" not in text.replace("would stay behind", "")
        counts = ({t: clinic.count(t) for t in clinic.store}, {t: expert.count(t) for t in expert.store})
        assert clinic.count("DiagnosticReport") == 2 and expert.count("DiagnosticReport") == 2
        assert expert.count("Provenance") == 2 and clinic.count("Provenance") == 2
        assert expert.count("ServiceRequest") == 2
        (tmp_path / "again").mkdir()
        again_lines: list[str] = []
        again = run_demo(a, b, examples=EXAMPLES, state_dir=tmp_path / "again", say=again_lines.append)
        assert ({t: clinic.count(t) for t in clinic.store}, {t: expert.count(t) for t in expert.store}) == counts
        # the consent the first run wrote is still the patient's: the re-run says so instead of a refusal
        assert not again.refusals
        assert sum("permitted by the patient's consent an earlier run left" in line for line in again_lines) == 2
        assert all(not t.push.counts()["created"] for t in again.transfers if t.push)
