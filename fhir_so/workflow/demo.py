"""The whole story of a second opinion, end to end, on two FHIR servers (``fhir-so demo``).

From the seeds' urology story (``examples/urology-second-opinion.case.json`` then
``examples/urology-third-opinion.case.json``):

1. the first physician asks for an opinion: the request goes to the clinic's server;
2. no records move before the patient consents (the check is shown refusing); the patient
   consents, but not to the imaging;
3. the records go out to the second-opinion server as far as the consent allows (the imaging
   stays behind), and the referral's Task is created there (requested);
4. the second physician accepts, and asks for the imaging the consent withheld (the Task goes
   on hold); answering is refused while the consent leaves imaging out, and the refusal names
   the consent and the provision;
5. the patient widens the consent; the records follow, and the Task goes back to accepted;
6. the second physician starts, and completes the Task with the opinion (one transaction);
   it goes back to the first physician under the separate report consent;
7. the opinions disagree, so a third opinion is requested: a new request that carries the
   earlier opinion, sent and answered the same way, with a new Task that links the earlier one.

Every step is one library call; the clock is the story's own (each step at the time it
happens in the case files), so the consent checks give the same verdicts whenever the demo
runs. Re-running it on the same servers duplicates nothing and says so: every write is
conditional, and each step of the Task (and each change of consent) is taken only when the
servers show it has not been taken yet; a step an earlier run took is reported as such.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhir_so.case import Case, Opinion, load_case, parse_when
from fhir_so.client import FhirClient
from fhir_so.errors import CaseNotFoundError, ConsentError, InputError
from fhir_so.mapping.task import io_type
from fhir_so.workflow.pull import find_request_id, pull
from fhir_so.workflow.push import PushResult, push
from fhir_so.workflow.task import TaskResult, find_task, task_accept, task_ask, task_complete, task_start
from fhir_so.workflow.transfer import AskAnswer, TransferResult, transfer

__all__ = ["DemoResult", "find_examples", "run_demo"]

SECOND = "urology-second-opinion.case.json"
THIRD = "urology-third-opinion.case.json"
# What the second physician asks for, and what the patient first leaves out of the consent.
ASKED = "imaging"
ASK_NOTE = "Please send the scrotal ultrasound itself: the report alone does not settle infection against tumour."

Say = Callable[[str], None]


def find_examples(folder: Path | None = None) -> Path:
    """The folder with the urology example cases: ``folder``, or this checkout's ``examples/``."""
    found = folder if folder is not None else Path(__file__).resolve().parents[2] / "examples"
    if not (found / SECOND).is_file():
        raise InputError("the urology example cases are not here; give --examples DIR", source=str(found))
    return found


@dataclass
class DemoResult:
    """What the demo did: each transfer and Task step, the refusals shown, what an earlier run had done."""

    transfers: list[TransferResult] = field(default_factory=list)
    pushes: list[PushResult] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    task_steps: list[TaskResult] = field(default_factory=list)
    asks: list[AskAnswer] = field(default_factory=list)
    #: steps skipped because the servers show an earlier run took them
    done_before: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def wrote_nothing_new(self) -> bool:
        """True when this run changed nothing on either server (a re-run of a finished story)."""
        pushed = [*self.pushes, *(t.push for t in self.transfers if t.push is not None)]
        return not self.task_steps and all(not p.changed for p in pushed)


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


class _Story:
    """One opinion's story on the two servers; each step checks what the servers already show."""

    def __init__(self, clinic: FhirClient, expert: FhirClient, case: Case, state_dir: Path, say: Say, result: DemoResult) -> None:
        self.clinic, self.expert, self.case = clinic, expert, case
        self.state_dir, self.say, self.result = state_dir, say, result
        self.request_id = ""  # the request's id on the clinic's server, once written

    def task(self) -> dict[str, Any] | None:
        return find_task(self.expert, self.case.case_id, required=False)

    def earlier(self, what: str) -> None:
        self.result.done_before.append(f"{self.case.case_id}: {what}")
        self.say(f"   already done by an earlier run: {what}")

    def step(self, result: TaskResult) -> None:
        self.result.task_steps.append(result)
        self.say(f"   Task/{result.task_id}: {result.previous} -> {result.status} ({result.business_status}), version {result.version}")

    def records_out(self, minutes: int, label: str) -> TransferResult:
        out = _transferred(self.say, transfer(self.clinic, self.expert, self.request_id,
                                              state=self.state_dir / f"{self.case.case_id}-records-{label}.json",
                                              clock=_at(self.case.requested, minutes)))
        self.result.transfers.append(out)
        if out.ask is not None:
            self.result.asks.append(out.ask)
        return out

    def consent_kinds(self) -> list[str] | None:
        """The record kinds the records consent on the clinic's server covers ([] = every kind; None = no consent yet)."""
        consent = pull(self.clinic, case_id=self.case.case_id).records_consent
        return None if consent is None else list(consent.record_kinds)


def _consent_with(case: Case, kinds: list[str], date: str | None = None) -> Case:
    consent = case.records_consent
    if consent is None:
        raise ValueError("the demo's example cases carry the patient's records consent")
    # the first physician's copy: no opinion yet, and no Task (the referral's Task lives on the expert's server)
    return case.updated(opinion=None, task=None, records_consent={**consent.model_dump(), "record_kinds": kinds, **({"date": date} if date else {})})


def _ask_loop(story: _Story, step: int) -> int:
    """Accept, ask for what the consent withheld, refused answer, wider consent, records follow. Returns the next step."""
    case, say = story.case, story.say
    task = story.task()
    say(f"{step}. {case.performer.name} accepts the referral and asks for the {ASKED} the consent withheld:")
    if task is not None and task.get("status") == "requested":
        story.step(task_accept(story.expert, case.case_id, clock=_at(case.requested, 24 * 60)))
    else:
        story.earlier(f"the Task was accepted (it is {task.get('status') if task else 'missing'} now)")
    task = story.task()
    asked = any(io_type(o) == "records-requested" for o in (task or {}).get("output") or [])
    if task is not None and task.get("status") == "accepted" and not asked:
        story.step(task_ask(story.expert, case.case_id, [ASKED], ASK_NOTE, clock=_at(case.requested, 24 * 60 + 30)))
        say(f"   note: {ASK_NOTE}")
    else:
        story.earlier(f"the {ASKED} was asked for")
    say(f"{step + 1}. The first physician answers the ask: checked before the patient widens the consent:")
    if story.consent_kinds():
        dry = transfer(story.clinic, story.expert, story.request_id, dry_run=True, clock=_at(case.requested, 24 * 60 + 45))
        if dry.ask is not None and not dry.ask.answered:
            for unmet in dry.ask.unmet:
                story.result.refusals.append(unmet.reason)
                say(f"   REFUSED for {unmet.kind}: {unmet.reason}")
        widened = _consent_with(case, [], date=(parse_when(case.requested) + dt.timedelta(days=1, hours=1)).isoformat())
        story.result.pushes.append(_pushed(say, push(story.clinic, widened), "the patient widens the consent to every kind; request updated"))
    else:
        story.earlier("the patient widened the consent to every record kind")
    say(f"{step + 2}. The records follow, and the Task goes back to where it was:")
    story.records_out(24 * 60 + 60, "answer")
    return step + 3


def _one_opinion(
    clinic: FhirClient, expert: FhirClient, case: Case, opinion: Opinion, state_dir: Path, say: Say, result: DemoResult, label: str, step: int,
    *, withhold: bool,
) -> int:
    """Request -> consent check -> records out -> the Task's life -> opinion -> report back; returns the next step number.

    ``withhold``: the patient first consents to every kind but the imaging, and the second
    physician's ask brings it (the second opinion); otherwise the consent covers every kind.
    """
    story = _Story(clinic, expert, case, state_dir, say, result)
    without_consent = case.updated(opinion=None, task=None, records_consent=None, report_consent=None)
    say(f"{step}. The first physician ({case.requester.name}) asks {case.performer.name} for a {label}:")
    try:
        story.request_id = find_request_id(clinic, case.case_id)
    except CaseNotFoundError:
        first = _pushed(say, push(clinic, without_consent), "request")
        result.pushes.append(first)
        story.request_id = str(first.request_id)
    else:
        # pushing the request without its consents again would unlink them: an update, not a re-run
        story.earlier(f"the request was written (ServiceRequest/{story.request_id} on {clinic.base_url})")
    if case.is_stat:
        say("   FLAG: stat request: an emergency must not wait for this opinion")
    say(f"{step + 1}. Consent: nothing moves before the patient consents.")
    try:
        transfer(clinic, expert, story.request_id, dry_run=True, clock=_at(case.requested, 5))
    except ConsentError as refused:
        result.refusals.append(str(refused))
        say(f"   checked before consent: REFUSED: {refused}")
    else:
        # the policy reads every active Consent of the patient on the server, linked or not: the
        # one an earlier run wrote still permits (a re-run writes nothing new)
        say("   checked before consent: permitted by the patient's consent an earlier run left on the server")
    kinds: list[str] = sorted({r.kind for r in case.records if r.kind != ASKED}) if withhold else []
    now = story.consent_kinds()
    if now is None:
        consented = _consent_with(case, kinds)
        what = f"to {', '.join(kinds)}, not the {ASKED}" if kinds else "to every record kind"
        result.pushes.append(_pushed(say, push(clinic, consented), f"the patient consents {what}; request updated"))
    else:
        story.earlier(f"the patient consented (to {', '.join(now) or 'every record kind'} on the server now)")
    say(f"{step + 2}. Records go out to the second-opinion server ({expert.base_url}), and the referral's Task is made there:")
    story.records_out(10, "first")
    task = story.task()
    if task is not None:
        earlier = [i for i in task.get("input") or [] if "earlier-task" in str(i.get("type"))]
        linked = f"; it links the earlier opinion's Task ({earlier[0]['valueReference']['identifier']['value']})" if earlier else ""
        say(f"   Task/{task['id']} on {expert.base_url}: {task.get('status')}{linked}")
    step += 3
    if withhold:
        step = _ask_loop(story, step)
    say(f"{step}. {case.performer.name} reviews the records and writes the opinion "
        f"({opinion.concordance}: {opinion.conclusion[:60]}...):")
    task = story.task()
    status = task.get("status") if task else None
    if status in ("requested", "received"):
        story.step(task_accept(expert, case.case_id, clock=_at(opinion.issued, -4 * 60)))
        status = "accepted"
    if status == "accepted":
        story.step(task_start(expert, case.case_id, clock=_at(opinion.issued, -2 * 60)))
        status = "in-progress"
    if status == "in-progress":
        done = task_complete(expert, case.case_id, opinion, clock=_at(opinion.issued))
        story.step(done)
        say(f"   the opinion {done.opinion} and the completed Task, in one transaction")
    else:
        story.earlier(f"the Task was completed with the opinion (it is {status} now)")
    say("   and it goes back to the first physician, under the separate report consent:")
    on_expert = pull(expert, case_id=case.case_id)
    back = _transferred(say, transfer(expert, clinic, case_id=on_expert.case_id, report_back=True,
                                      state=state_dir / f"{case.case_id}-report.json", clock=_at(opinion.issued, 30)))
    result.transfers.append(back)
    home = pull(clinic, case_id=case.case_id)
    say(f"   on the first physician's server the case now has {len(home.records)} records and the opinion "
        f"({home.opinion.status if home.opinion else 'missing'}, concordance {home.opinion.concordance if home.opinion else '-'})")
    return step + 1


def run_demo(clinic: FhirClient, expert: FhirClient, *, examples: Path, state_dir: Path, say: Say) -> DemoResult:
    """Tell the urology story on ``clinic`` (first physician) and ``expert`` (second-opinion service)."""
    started = time.monotonic()
    result = DemoResult()
    second = load_case(examples / SECOND)
    third = load_case(examples / THIRD)
    if second.opinion is None or third.opinion is None:
        raise ValueError("the demo's example cases carry the opinions the physicians write")
    if not any(r.kind == ASKED for r in second.records):
        raise ValueError(f"the second opinion's example case carries the {ASKED} the second physician asks for")
    say(f"The patient: {' '.join(second.patient.name.given)} {second.patient.name.family}; "
        f"reasons: {', '.join(second.reasons)}; mode: {second.mode}")
    say(f"First physician's server: {clinic.base_url}; second-opinion server: {expert.base_url}")
    say("")
    step = _one_opinion(clinic, expert, second, second.opinion, state_dir, say, result, "second opinion", 1, withhold=True)
    say("")
    say(f"{step}. The opinions disagree ({second.opinion.concordance}): the patient asks for a third opinion, "
        f"a new request ({third.case_id}) that carries the earlier one ({', '.join(e.case_id for e in third.earlier_opinions)}); "
        f"its Task links the earlier Task.")
    _one_opinion(clinic, expert, third, third.opinion, state_dir, say, result, "third opinion", step + 1, withhold=False)
    result.seconds = time.monotonic() - started
    say("")
    say(f"Done in {result.seconds:.1f} s: {len(result.transfers)} transfers, each with a Provenance on its destination; "
        f"{len(result.task_steps)} Task steps; {len(result.refusals)} refusals shown.")
    if result.wrote_nothing_new:
        say(f"An earlier run had told this story: nothing was written, nothing duplicated ({len(result.done_before)} steps found done).")
    else:
        say("Run it again: nothing is duplicated.")
    return result
