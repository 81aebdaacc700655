"""The whole story of a second opinion, end to end, on two FHIR servers (``fhir-so demo``).

From the seeds' urology story (``examples/urology-second-opinion.case.json`` then
``examples/urology-third-opinion.case.json``):

1. the first physician asks for an opinion: the request goes to the clinic's server;
2. no records move before the patient consents (the check is shown refusing), then the
   patient consents;
3. the records go out to the second-opinion server, as far as the consent allows;
4. the second physician writes the opinion there, and it goes back to the first physician
   under the separate report consent;
5. the opinions disagree, so a third opinion is requested: a new request that carries the
   earlier opinion, sent and answered the same way.

Every step is one library call; the clock is the story's own (each step at the time it
happens in the case files), so the consent checks give the same verdicts whenever the demo
runs. Re-running it on the same servers changes nothing new: every write is conditional.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fhir_so.case import Case, Opinion, load_case, parse_when
from fhir_so.client import FhirClient
from fhir_so.errors import ConsentError, InputError
from fhir_so.workflow.consent import check_records_consent
from fhir_so.workflow.pull import pull
from fhir_so.workflow.push import PushResult, push
from fhir_so.workflow.transfer import TransferResult, transfer

__all__ = ["DemoResult", "find_examples", "run_demo"]

SECOND = "urology-second-opinion.case.json"
THIRD = "urology-third-opinion.case.json"

Say = Callable[[str], None]


def find_examples(folder: Path | None = None) -> Path:
    """The folder with the urology example cases: ``folder``, or this checkout's ``examples/``."""
    found = folder if folder is not None else Path(__file__).resolve().parents[2] / "examples"
    if not (found / SECOND).is_file():
        raise InputError("the urology example cases are not here; give --examples DIR", source=str(found))
    return found


@dataclass
class DemoResult:
    """What the demo did: each transfer, and how long it took."""

    transfers: list[TransferResult] = field(default_factory=list)
    pushes: list[PushResult] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _at(value: str, minutes: int = 0) -> Callable[[], dt.datetime]:
    when = parse_when(value) + dt.timedelta(minutes=minutes)
    return lambda: when


def _pushed(say: Say, result: PushResult, who: str) -> PushResult:
    c = result.counts()
    say(f"   {who}: ServiceRequest/{result.request_id} on {result.server} "
        f"({c['created']} created, {c['updated']} updated, {c['unchanged']} unchanged)")
    return result


def _transferred(say: Say, result: TransferResult) -> TransferResult:
    for line in result.lines()[1:]:
        if not line.startswith("    "):  # per-entry lines are for the CLI's own transfer output
            say("   " + line.strip())
    return result


def _one_opinion(
    clinic: FhirClient, expert: FhirClient, case: Case, opinion: Opinion, state_dir: Path, say: Say, result: DemoResult, label: str, step: int
) -> int:
    """Request -> consent check -> records out -> opinion written -> report back; returns the next step number."""
    without_consent = case.updated(opinion=None, records_consent=None, report_consent=None)
    say(f"{step}. The first physician ({case.requester.name}) asks {case.performer.name} for a {label}:")
    first = _pushed(say, push(clinic, without_consent), "request")
    result.pushes.append(first)
    if first.stat:
        say("   FLAG: stat request: an emergency must not wait for this opinion")
    say(f"{step + 1}. Consent: nothing moves before the patient consents.")
    try:
        transfer(clinic, expert, str(first.request_id), dry_run=True, clock=_at(case.requested, 5))
    except ConsentError as refused:
        result.refusals.append(str(refused))
        say(f"   checked before consent: REFUSED: {refused}")
    else:
        # the policy reads every active Consent of the patient on the server, linked or not: the
        # one an earlier run wrote still permits (a re-run writes nothing new)
        say("   checked before consent: permitted by the patient's consent an earlier run left on the server")
    consented = case.updated(opinion=None)
    records_consent = case.records_consent
    if records_consent is not None and not records_consent.record_kinds and case.records:
        kinds = sorted({r.kind for r in case.records})[:2]
        limited = consented.updated(records_consent={**records_consent.model_dump(), "record_kinds": kinds})
        what_if = check_records_consent(limited, _at(case.requested, 5)())
        held = ", ".join(f"{w.record_id} ({w.kind})" for w in what_if.withheld)
        say(f"   (had the patient limited the consent to {' and '.join(kinds)}, these would stay behind: {held})")
    result.pushes.append(_pushed(say, push(clinic, consented), "the patient consents; request updated"))
    say(f"{step + 2}. Records go out to the second-opinion server ({expert.base_url}):")
    out = _transferred(say, transfer(clinic, expert, str(first.request_id), state=state_dir / f"{case.case_id}-records.json",
                                     clock=_at(case.requested, 10)))
    result.transfers.append(out)
    say(f"{step + 3}. {case.performer.name} writes the opinion ({opinion.concordance}: {opinion.conclusion[:70]}...)")
    on_expert = pull(expert, case_id=case.case_id)
    written = _pushed(say, push(expert, on_expert.with_opinion(opinion)), "opinion")
    result.pushes.append(written)
    say("   and it goes back to the first physician, under the separate report consent:")
    back = _transferred(say, transfer(expert, clinic, str(written.request_id), report_back=True,
                                      state=state_dir / f"{case.case_id}-report.json", clock=_at(opinion.issued, 30)))
    result.transfers.append(back)
    home = pull(clinic, case_id=case.case_id)
    say(f"   on the first physician's server the case now has {len(home.records)} records and the opinion "
        f"({home.opinion.status if home.opinion else 'missing'}, concordance {home.opinion.concordance if home.opinion else '-'})")
    return step + 4


def run_demo(clinic: FhirClient, expert: FhirClient, *, examples: Path, state_dir: Path, say: Say) -> DemoResult:
    """Tell the urology story on ``clinic`` (first physician) and ``expert`` (second-opinion service)."""
    started = time.monotonic()
    result = DemoResult()
    second = load_case(examples / SECOND)
    third = load_case(examples / THIRD)
    if second.opinion is None or third.opinion is None:
        raise ValueError("the demo's example cases carry the opinions the physicians write")
    say(f"The patient: {' '.join(second.patient.name.given)} {second.patient.name.family}; "
        f"reasons: {', '.join(second.reasons)}; mode: {second.mode}")
    say(f"First physician's server: {clinic.base_url}; second-opinion server: {expert.base_url}")
    say("")
    step = _one_opinion(clinic, expert, second, second.opinion, state_dir, say, result, "second opinion", 1)
    say("")
    say(f"{step}. The opinions disagree ({second.opinion.concordance}): the patient asks for a third opinion, "
        f"a new request ({third.case_id}) that carries the earlier one ({', '.join(e.case_id for e in third.earlier_opinions)}).")
    _one_opinion(clinic, expert, third, third.opinion, state_dir, say, result, "third opinion", step + 1)
    result.seconds = time.monotonic() - started
    say("")
    say(f"Done in {result.seconds:.1f} s: {len(result.transfers)} transfers, each with a Provenance on its destination; "
        f"{len(result.refusals)} transfers refused before consent. Run it again: nothing is duplicated.")
    return result
