"""``fhir-so task accept|decline|ask|start|complete``: the second physician's steps on the referral's Task.

Each command names the case on the second-opinion server (``--server``, ``--case``), calls one
function of :mod:`fhir_so.workflow.task` and prints what changed. Exit codes: 0 done; 1 refused
(the Task's state does not allow the step, or someone changed it first: the message names the
newer version); 2 bad input (no such case or Task on the server, a bad option); 3 the server failed.
"""

from __future__ import annotations

import base64
import mimetypes
import os
from pathlib import Path
from typing import Any, Callable, get_args

import click
from pydantic import ValidationError

from fhir_so.case import Coding, Concordance, Opinion, OpinionStatus, RecordKind, read_attachment_file
from fhir_so.cli.app import App, pass_app
from fhir_so.cli.common import emit_json, files_root_option, info, json_option, server_option, timeout_option, translate_errors
from fhir_so.errors import InputError, one_line
from fhir_so.workflow.clock import instant, utc_now
from fhir_so.workflow.task import STEP_FOR, TRANSITIONS, TaskResult, task_accept, task_ask, task_complete, task_decline, task_start

case_option = click.option("--case", "case_id", required=True, metavar="CASE-ID", help="The case id (the Task's identifier).")
version_option = click.option(
    "--expect-version",
    "expected_version",
    metavar="VERSION",
    help="Change the Task only if it is still at this version (the one you looked at); else exit 1 naming the newer one.",
)


def _render(result: TaskResult, as_json: bool) -> None:
    if result.stat:
        info(f"FLAG: case {result.case_id} is a stat request: an emergency must not wait for the opinion")
    if as_json:
        emit_json(result.to_json())
        return
    for line in result.lines():
        if not line.startswith("FLAG"):
            click.echo(line)


def _plain_step(name: str, step: Callable[..., TaskResult], help_text: str) -> click.Command:
    """A step that takes nothing but the case (accept, start): one command each, one body."""

    @click.command(name, help=help_text)
    @server_option
    @case_option
    @version_option
    @timeout_option
    @json_option
    @pass_app
    @translate_errors
    def command(app: App, server: str | None, case_id: str, expected_version: str | None, timeout: float, as_json: bool) -> None:
        _render(step(app.client(server, timeout=timeout), case_id, expected_version=expected_version), as_json)

    return command


accept_command = _plain_step(
    "accept",
    task_accept,
    """The second physician takes the case: requested (or on-hold) -> accepted.

    \b
    Example:
      fhir-so task accept --server http://127.0.0.1:8091/fhir --case so-2026-uro-0417
    """,
)
start_command = _plain_step(
    "start",
    task_start,
    """The second physician starts the review: accepted (or on-hold) -> in-progress.

    \b
    Example:
      fhir-so task start --server http://127.0.0.1:8091/fhir --case so-2026-uro-0417
    """,
)


@click.command("decline")
@server_option
@case_option
@version_option
@click.option("--reason", required=True, metavar="TEXT", help="Why the referral is declined (Task.statusReason).")
@timeout_option
@json_option
@pass_app
@translate_errors
def decline_command(
    app: App, server: str | None, case_id: str, expected_version: str | None, reason: str, timeout: float, as_json: bool
) -> None:
    """The second physician declines the referral: -> rejected, with the reason.

    \b
    Example:
      fhir-so task decline --server http://127.0.0.1:8091/fhir --case so-2026-uro-0417 \\
        --reason "Outside my specialty: please refer to a uro-oncologist"
    """
    _render(task_decline(app.client(server, timeout=timeout), case_id, reason, expected_version=expected_version), as_json)


class RecordKinds(click.ParamType):
    """One or more record kinds, comma-separated (the option may also be repeated)."""

    name = "KIND[,KIND...]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[str]:
        if isinstance(value, list):
            return value
        kinds = [k.strip() for k in str(value).split(",") if k.strip()]
        known = get_args(RecordKind)
        bad = [k for k in kinds if k not in known]
        if bad or not kinds:
            self.fail(f"{one_line(', '.join(bad) or repr(value), 80)} is not a record kind; one of: {', '.join(known)}", param, ctx)
        return kinds


@click.command("ask")
@server_option
@case_option
@version_option
@click.option("--records", "records", type=RecordKinds(), multiple=True, required=True,
              help="The record kinds needed (e.g. imaging,operative-note); repeatable.")
@click.option("--note", metavar="TEXT", help="What the second physician needs and why (Task.note).")
@timeout_option
@json_option
@pass_app
@translate_errors
def ask_command(
    app: App, server: str | None, case_id: str, expected_version: str | None, records: tuple[list[str], ...], note: str | None,
    timeout: float, as_json: bool,
) -> None:
    """The second physician needs more records: -> on-hold (more-info-needed), the kinds in Task.output.

    \b
    The first physician's `fhir-so transfer` then sends the kinds asked for, as far as the
    patient's consent allows.

    \b
    Example:
      fhir-so task ask --server http://127.0.0.1:8091/fhir --case so-2026-uro-0417 \\
        --records imaging --note "Please send the MRI of the pelvis"
    """
    kinds = [k for group in records for k in group]
    _render(task_ask(app.client(server, timeout=timeout), case_id, kinds, note, expected_version=expected_version), as_json)


def _coding(text: str) -> Coding:
    parts = text.split("|")
    if len(parts) not in (2, 3) or not all(p.strip() for p in parts[:2]):
        raise InputError(f"--diagnosis {one_line(text, 80)!r}: expected SYSTEM|CODE or SYSTEM|CODE|DISPLAY", location="--diagnosis")
    try:
        return Coding(system=parts[0].strip(), code=parts[1].strip(), display=parts[2].strip() if len(parts) == 3 else None)
    except ValidationError as exc:
        raise InputError(f"--diagnosis {one_line(text, 80)!r}: {exc.errors()[0]['msg']}", location="--diagnosis") from None


def _report(path: str, files_root: str | None) -> dict[str, Any]:
    root = files_root if files_root is not None else os.getcwd()
    raw = read_attachment_file(path, root, source=path, location="--report")
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return {"content_type": content_type, "data": base64.b64encode(raw).decode("ascii"), "title": Path(path).name[:200] or "report"}


@click.command("complete")
@server_option
@case_option
@version_option
@click.option("--conclusion", required=True, metavar="TEXT", help="The opinion in words (DiagnosticReport.conclusion).")
@click.option("--concordance", required=True, type=click.Choice(get_args(Concordance)), help="How it compares with the first diagnosis.")
@click.option("--treatment-changed/--treatment-unchanged", "treatment_changed", required=True, default=None,
              help="Whether the opinion changes the treatment plan.")
@click.option("--diagnosis", "diagnoses", multiple=True, metavar="SYSTEM|CODE[|DISPLAY]", help="A diagnosis code; repeatable.")
@click.option("--status", "opinion_status", type=click.Choice(get_args(OpinionStatus)), default="final", show_default=True,
              help="The report's status.")
@click.option("--issued", metavar="DATETIME", help="When the opinion was issued (default: now), e.g. 2026-11-30T09:00:00Z.")
@click.option("--report", "report", metavar="FILE.pdf", help="The signed report, attached (read from inside --files-root).")
@files_root_option
@timeout_option
@json_option
@pass_app
@translate_errors
def complete_command(
    app: App,
    server: str | None,
    case_id: str,
    expected_version: str | None,
    conclusion: str,
    concordance: str,
    treatment_changed: bool,
    diagnoses: tuple[str, ...],
    opinion_status: str,
    issued: str | None,
    report: str | None,
    files_root: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """The opinion is written: in-progress -> completed; the DiagnosticReport in the same transaction.

    \b
    The report becomes the Task's output; --files-root (default: the current folder) confines
    the --report file like every file input.

    \b
    Example:
      fhir-so task complete --server http://127.0.0.1:8091/fhir --case so-2026-uro-0417 \\
        --conclusion "Low-risk disease: active surveillance is appropriate" \\
        --concordance refined --treatment-changed \\
        --diagnosis "SYSTEM|399068003|Malignant tumor of prostate" --report opinion.pdf

    \b
    SYSTEM is the code system's URI (SNOMED CT's, ICD-10's, ...).
    """
    data: dict[str, Any] = {
        "status": opinion_status,
        "issued": issued or instant(utc_now()),
        "conclusion": conclusion,
        "diagnoses": [_coding(d) for d in diagnoses],
        "concordance": concordance,
        "treatment_changed": treatment_changed,
    }
    if report is not None:
        data["report"] = _report(report, files_root)
    try:
        opinion = Opinion.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "the opinion"
        raise InputError(f"{where}: {one_line(str(first['msg']), 200)}", location=where) from None
    _render(task_complete(app.client(server, timeout=timeout), case_id, opinion, expected_version=expected_version), as_json)


def _machine() -> str:
    """The state machine as help text, from the one table (fhir_so.workflow.task.TRANSITIONS)."""
    rows = [
        f"  {status:<11} -> " + " | ".join(f"{to} ({STEP_FOR[to]})" for to in allowed)
        for status, allowed in TRANSITIONS.items()
        if status != "received"
    ]
    return "\n".join(rows)


_GROUP_HELP = (
    "The second physician's steps on the referral's Task: accept, decline, ask, start, complete.\n\n"
    "\b\nThe Task follows the FHIR Task state machine (a records-out transfer creates it, requested):\n"
    + _machine()
    + "\n\ncompleted and rejected are final. Every step is an update against the version just read "
    "(If-Match): when two clinicians race, one wins and the other is refused (exit 1) with the "
    "newer version named; nothing is overwritten."
)


@click.group("task", help=_GROUP_HELP)
def task_group() -> None:
    pass


for _command in (accept_command, decline_command, ask_command, start_command, complete_command):
    task_group.add_command(_command)

COMMANDS: list[click.Command] = [task_group]
