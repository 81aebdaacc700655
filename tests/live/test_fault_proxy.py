"""Push, transfer and report-back through a fault proxy in front of the real local HAPI servers.

Each seeded run sends one case through :class:`tests.hostile.fault_proxy.FaultProxy` on both
servers (delays, drops before and after the server acted, resets, 429 with Retry-After,
500/503, 502 after the server acted, truncated bodies) and resumes each step from its state
file until it completes, as a script would. Then, read directly from the servers: every
resource of the case exists exactly once (0 duplicates, 0 losses), each transfer wrote one
Provenance, and the case pulled back equals the case sent. The figures (faults x
duplicates/losses) print in the terminal summary.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from fhir_so import terminology as term
from fhir_so.bundle import build_bundle
from fhir_so.case import Case, load_case, with_defaults
from fhir_so.client import FhirClient, RetryPolicy
from fhir_so.errors import ServerError
from fhir_so.workflow import pull, push, transfer
from tests.hostile.fault_proxy import FaultProxy
from tests.hostile.hostile_summary import HostileSummary, summary

ROOT = Path(__file__).resolve().parents[2]
UROLOGY = ROOT / "examples" / "urology-second-opinion.case.json"
RUN = uuid.uuid4().hex[:8]
SEEDS = range(1, 21)  # about 4 s each on 2 cores
RESUMES = 8  # a step that keeps failing after this many fresh starts fails the test
NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.timezone.utc)
T = TypeVar("T")


def clock() -> dt.datetime:
    return NOW


# Few, quick retries, so some steps fail and are resumed from their state file; a 429's
# Retry-After (1 s) is honoured up to 0.2 s.
FAST = RetryPolicy(attempts=3, backoff=0.02, max_backoff=0.1, max_retry_after=0.2)


def until_done(step: Callable[[], T], failures: list[str]) -> T:
    """Run a step again (as a script would, from its state file) until it completes."""
    for _ in range(RESUMES):
        try:
            return step()
        except ServerError as exc:
            failures.append(type(exc).__name__)
    return step()


def copies(client: FhirClient, case: Case) -> dict[str, int]:
    """How many resources the server holds under each identifier of the case's bundle."""
    found = {}
    for entry in build_bundle(case)["entry"]:
        resource = entry["resource"]
        ident = resource["identifier"][0]
        key = f"{resource['resourceType']}|{ident['value']}"
        found[key] = client.search(resource["resourceType"], identifier=f"{ident['system']}|{ident['value']}").count()
    return found


def provenances(client: FhirClient, transfer_id: str) -> int:
    return client.search("Provenance", _tag=f"{term.TAG_TRANSFER}|{transfer_id}").count()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> HostileSummary:
    return summary(request.config)


@pytest.mark.parametrize("seed", SEEDS)
def test_faults_lose_and_duplicate_nothing(
    seed: int, fhir_server_pair: tuple[str, str], tmp_path: Path, figures: HostileSummary
) -> None:
    source_url, destination_url = fhir_server_pair
    whole = load_case(UROLOGY)
    case = whole.model_copy(update={"opinion": None, "task": None, "case_id": f"{whole.case_id}-fault{seed}-{RUN}"[:64]})
    failures: list[str] = []
    with (
        FaultProxy(source_url, seed) as source_proxy,
        FaultProxy(destination_url, seed + 1000) as destination_proxy,
        FhirClient(source_proxy.base, retries=FAST, timeout=(5.0, 60.0)) as src,
        FhirClient(destination_proxy.base, retries=FAST, timeout=(5.0, 60.0)) as dst,
    ):
        request_id = str(until_done(lambda: push(src, case), failures).request_id)
        sent = until_done(lambda: transfer(src, dst, request_id, state=tmp_path / "records.json", clock=clock), failures)
        on_expert = until_done(lambda: pull(dst, case_id=case.case_id), failures)
        answered = on_expert.model_copy(update={"opinion": whole.opinion})
        expert_request = str(until_done(lambda: push(dst, answered), failures).request_id)
        back = until_done(
            lambda: transfer(dst, src, expert_request, report_back=True, state=tmp_path / "report.json", clock=clock),
            failures,
        )
        injected = source_proxy.injected + destination_proxy.injected
    with FhirClient(source_url) as direct_src, FhirClient(destination_url) as direct_dst:
        full = case.model_copy(update={"opinion": whole.opinion})
        counts = list(copies(direct_dst, full).values()) + list(copies(direct_src, full).values())
        duplicates = sum(n - 1 for n in counts if n > 1)
        losses = sum(1 for n in counts if n == 0)
        provenance_counts = [provenances(direct_dst, str(sent.transfer_id)), provenances(direct_src, str(back.transfer_id))]
        figures.runs += 1
        figures.operations += 5
        figures.resumes += len(failures)
        figures.faults.update(injected)
        figures.duplicates += duplicates
        figures.losses += losses
        figures.provenance_errors += sum(1 for n in provenance_counts if n != 1)
        assert sum(injected.values()) > 0, "the seed injected no fault at all"
        assert (duplicates, losses) == (0, 0), f"seed {seed}: {counts}"
        assert provenance_counts == [1, 1]
        assert pull(direct_dst, case_id=case.case_id).updated(task=None) == with_defaults(full)  # the transfer made a Task there
        assert pull(direct_src, case_id=case.case_id) == with_defaults(full)
