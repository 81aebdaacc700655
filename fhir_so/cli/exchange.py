"""``fhir-so push``, ``pull``, ``transfer`` and ``demo``: moving a case between FHIR servers.

Each command parses options, gets its clients from the application object
(:class:`fhir_so.cli.app.App`: credentials from the environment, one timeout policy, closed
when the command ends) and calls one library function of :mod:`fhir_so.workflow`; errors
become exit codes through ``translate_errors``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import click

from fhir_so.case import Case
from fhir_so.cli.app import App, pass_app
from fhir_so.cli.batch import FhirDate, run_batch
from fhir_so.cli.common import emit_json, files_root_option, info, json_option, server_option, timeout_option, translate_errors, write_or_echo
from fhir_so.cli.params import ServerUrl
from fhir_so.errors import CaseNotFoundError, InputError
from fhir_so.jsonio import dumps, write_atomic
from fhir_so.workflow import case_with_history, pull_bundle, pull_patient, pull_patient_bundle, push, transfer
from fhir_so.workflow.push import load_push_input


@click.command("push")
@click.argument("path", metavar="BUNDLE.json|CASE.json", type=click.Path(path_type=str))
@server_option
@timeout_option
@json_option
@files_root_option
@pass_app
@translate_errors
def push_command(app: App, path: str, server: str | None, timeout: float, as_json: bool, files_root: str | None) -> None:
    """Send a case (a case file, or its transaction Bundle) to a server as ONE transaction.

    \b
    Idempotent: every entry is conditional on its identifier (parties are created only
    when missing; the case's own resources are conditional updates), so pushing the same
    case again creates nothing new, and says so. Prints the server ids assigned.

    \b
    Examples:
      fhir-so push examples/urology-second-opinion.case.json --server http://127.0.0.1:8090/fhir
      fhir-so push bundle.json --json | jq .request_id
    """
    # a bad file is bad input (exit 2, one line naming the file and place), not a usage error
    payload = load_push_input(path, files_root=files_root)
    result = push(app.client(server, timeout=timeout), payload)
    if result.stat:
        info(f"FLAG: case {result.case_id} is a stat request: an emergency must not wait for the opinion")
    if as_json:
        emit_json(result.to_json())
        return
    click.echo(result.summary())
    for e in result.entries:
        click.echo(f"  {e.outcome:<9} {e.resource_type}/{e.id} (version {e.version})  {e.identifier or ''}".rstrip())


@click.command("pull")
@server_option
@click.option("--request", "request_id", metavar="ID", help="The ServiceRequest's server id.")
@click.option("--case", "case_id", metavar="CASE-ID", help="The case id (the ServiceRequest's identifier).")
@click.option("--patient", "patient_id", metavar="ID", help="Every case of this Patient (server id).")
@click.option("--as", "as_", type=click.Choice(["case", "bundle"]), default="case", show_default=True, help="Write a case file or the collection Bundle.")
@click.option("-o", "--output", type=click.Path(path_type=str), help="Write here (atomically) instead of stdout; with --patient --as case: a directory.")
@timeout_option
@pass_app
@translate_errors
def pull_command(
    app: App,
    server: str | None, request_id: str | None, case_id: str | None, patient_id: str | None, as_: str, output: str | None, timeout: float
) -> None:
    """Fetch a case: the request with its parties, consents, records and opinion.

    \b
    Every page of every search is followed. --as case writes the canonical case (what
    was pushed, server ids aside); --as bundle the collection Bundle as the server has it.
    With --patient and --as case, -o names a directory that gets one CASE-ID.case.json
    per case; with --as bundle all the patient's cases go in one Bundle.

    \b
    Examples:
      fhir-so pull --server http://127.0.0.1:8090/fhir --case so-2026-uro-0417 -o case.json
      fhir-so pull --server http://127.0.0.1:8090/fhir --request 123 --as bundle
      fhir-so pull --server http://127.0.0.1:8090/fhir --patient 7 -o cases/
    """
    chosen = [n for n, v in (("--request", request_id), ("--case", case_id), ("--patient", patient_id)) if v is not None]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --request, --case or --patient" + (f" (got {', '.join(chosen)})" if chosen else ""))
    if patient_id is not None and as_ == "case" and not output:
        raise click.UsageError("--patient with --as case writes one file per case: give -o DIRECTORY")
    client = app.client(server, timeout=timeout)
    if patient_id is None:
        bundle = pull_bundle(client, request_id=request_id, case_id=case_id)
        write_or_echo(dumps(bundle) if as_ == "bundle" else case_with_history(client, bundle).to_json(), output)
    elif as_ == "bundle":
        write_or_echo(dumps(pull_patient_bundle(client, patient_id)), output)
    else:
        folder = Path(str(output))
        if folder.exists() and not folder.is_dir():
            raise InputError("with --patient --as case, -o must be a directory", source=str(folder))
        folder.mkdir(parents=True, exist_ok=True)
        count = 0
        for case in pull_patient(client, patient_id):
            target = folder / f"{case.case_id}.case.json"
            write_atomic(target, case.to_json())
            info(f"wrote {target}")
            count += 1
        if count == 0:
            raise CaseNotFoundError(f"{client.base_url} has no second-opinion case for Patient/{patient_id}", server=client.base_url)


@click.command("transfer")
@click.option("--from", "from_url", type=ServerUrl(), envvar="FHIR_SO_FROM", show_envvar=True, metavar="URL", help="The server the case is on.")
@click.option("--to", "to_url", type=ServerUrl(), envvar="FHIR_SO_TO", show_envvar=True, metavar="URL", help="The server to copy it to.")
@click.option("--request", "request_id", metavar="ID", help="The ServiceRequest's id on the --from server.")
@click.option("--case", "case_id", metavar="CASE-ID", help="Or the case id (the ServiceRequest's identifier) on the --from server.")
@click.option("--all", "all_cases", is_flag=True, help="Every case on --from (with --report-back: every completed opinion); needs --state.")
@click.option("--patient", "patient_id", metavar="ID", help="With --all: only this Patient's cases (server id on --from).")
@click.option("--since", type=FhirDate(), metavar="DATE", help="With --all: only cases changed since DATE (_lastUpdated).")
@click.option("--status", metavar="S", help="With --all: only requests with this status (with --report-back: opinions; default final,amended,corrected).")
@click.option("--jobs", type=click.IntRange(min=1, max=64), default=4, show_default=True, help="With --all: cases in flight at once.")
@click.option("--report-back", is_flag=True, help="Send the opinion back (second-opinion server -> first physician's server).")
@click.option("--state", type=click.Path(dir_okay=False, path_type=str), metavar="FILE", help="Progress file: a killed run started again with it resumes.")
@click.option("--dry-run", is_flag=True, help="Print the plan (what moves, what is withheld, why); write nothing.")
@timeout_option
@json_option
@click.pass_context
@pass_app
@translate_errors
def transfer_command(
    app: App,
    ctx: click.Context,
    from_url: str | None,
    to_url: str | None,
    request_id: str | None,
    case_id: str | None,
    all_cases: bool,
    patient_id: str | None,
    since: str | None,
    status: str | None,
    jobs: int,
    report_back: bool,
    state: str | None,
    dry_run: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Copy a case to a second-opinion server, or its opinion back, as far as consent allows.

    \b
    Records out (default): --from is the first physician's server, --to the second
    opinion's. Nothing moves without the patient's consent: every active privacy Consent
    of the patient on --from (linked from the request or not) is read by the one consent
    policy (docs/workflows.md): deny wins, nested provisions count, only disclosure to the
    request's performer for treatment, now. Records it does not permit are listed as
    withheld. The opinion never goes out this way.
    Report back (--report-back): --from is the second-opinion server, --to the first
    physician's. Only the opinion moves, and only with the report Consent (recipient: the
    requester) on both servers. Either way, name the case on --from by --request (the
    ServiceRequest's id there) or by --case (the case id).

    \b
    Batch (--all): every case on --from whose ServiceRequest carries the case identifier
    (narrowed by --patient, --since, --status), each under its own consent check, --jobs
    at a time, one --state FILE for the batch: a run killed at any moment and started
    again with it finishes the cases in flight, skips the finished ones, does the rest.
    A progress bar on a terminal; one JSON line per case in a pipe or with --json, then a
    summary. Exit 0 all moved, 1 some refused by consent, 3 a server failed after retries.

    \b
    The ask (records out): when the case's Task on --to is on hold because the second
    physician asked for more records, the transfer sends the kinds asked for that the
    consent now allows and the Task goes back to accepted / in-progress. A kind the
    consent still does not allow is named with the consent and the provision that left
    it behind; the rest goes, and the command exits 1.

    \b
    A refused consent exits 1 with the reason, and nothing is written. Ids are remapped
    (conditional writes keyed by identifiers: a repeat creates nothing new); each transfer
    writes a Provenance on the destination. With --state FILE, a run that was killed
    resumes where it stopped: no record lost, none duplicated. A state file belongs to one
    transfer: use a new one for another transfer.
    Credentials: FHIR_SO_FROM_* and FHIR_SO_TO_* (e.g. FHIR_SO_TO_TOKEN) for each side;
    otherwise FHIR_SO_* goes to both servers.

    \b
    Examples:
      fhir-so transfer --from http://127.0.0.1:8090/fhir --to http://127.0.0.1:8091/fhir --request 12 --dry-run
      fhir-so transfer --from http://127.0.0.1:8090/fhir --to http://127.0.0.1:8091/fhir --request 12 --state t.json
      fhir-so transfer --from http://127.0.0.1:8090/fhir --to http://127.0.0.1:8091/fhir --case so-2026-uro-0417
      fhir-so transfer --from http://127.0.0.1:8091/fhir --to http://127.0.0.1:8090/fhir --request 5 --report-back
      fhir-so transfer --from http://127.0.0.1:8090/fhir --to http://127.0.0.1:8091/fhir --all --jobs 8 --state batch.json
    """
    narrowing = [n for n, v in (("--patient", patient_id), ("--since", since), ("--status", status)) if v is not None]
    if all_cases:
        if request_id is not None or case_id is not None:
            raise click.UsageError("--all transfers every case: give it without --request or --case")
        if dry_run:
            raise click.UsageError("--dry-run plans one case: give --request or --case instead of --all")
        if not state:
            raise click.UsageError("--all needs --state FILE: the batch's progress, so a killed run resumes")
        source = app.client(from_url, timeout=timeout, side="from", what="--from")
        destination = app.client(to_url, timeout=timeout, side="to", what="--to")
        code = run_batch(source, destination, state=state, jobs=jobs, patient=patient_id, since=since, status=status,
                         report_back=report_back, as_json=as_json)
        ctx.exit(code)
    if narrowing:
        raise click.UsageError(f"{', '.join(narrowing)} narrow a batch: give them with --all")
    if (request_id is None) == (case_id is None):
        raise click.UsageError("give exactly one of --request or --case")
    source = app.client(from_url, timeout=timeout, side="from", what="--from")
    destination = app.client(to_url, timeout=timeout, side="to", what="--to")
    result = transfer(source, destination, request_id, case_id=case_id, state=state, dry_run=dry_run, report_back=report_back)
    if as_json:
        emit_json(result.to_json())
    else:
        for line in result.lines():
            click.echo(line)
    if result.plan.stat:
        info(f"FLAG: case {result.case_id} is a stat request: an emergency must not wait for the opinion")
    if result.ask is not None and not result.ask.answered:
        # the permitted records went; the part of the ask the consent does not allow is a refusal
        for unmet in result.ask.unmet:
            info(f"the ask is not answered for {unmet.kind}: {unmet.reason}")
        ctx.exit(1)


@click.command("demo")
@click.option("--server", type=ServerUrl(), envvar="FHIR_SO_SERVER", show_envvar=True, metavar="URL", help="The first physician's server (default: a local server on port 8090, started if needed).")
@click.option("--second-server", type=ServerUrl(), envvar="FHIR_SO_SECOND_SERVER", show_envvar=True, metavar="URL", help="The second-opinion server (default: a local server on port 8091, started if needed).")
@click.option("--examples", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None, help="Folder with the urology example cases (default: this checkout's examples/).")
@timeout_option
@pass_app
@translate_errors
def demo_command(app: App, server: str | None, second_server: str | None, examples: Path | None, timeout: float) -> None:
    """Tell the whole story: request, consent, records out, the Task, the ask, report back, third opinion.

    \b
    On two FHIR servers: the first physician's and the second-opinion service's. Without
    --server / --second-server, two local HAPI servers are started (ports 8090 and 8091;
    the first start builds and boots them, which takes a few minutes) and left running for
    the next run (`fhir-so server stop --port N` ends them). Each step prints what was
    checked: consent verdicts, server ids, counts. The second physician accepts, asks for
    the imaging the consent withheld; the patient widens the consent and it follows; the
    opinion completes the Task; a third opinion's Task links the earlier one. Re-running
    it duplicates nothing: each step found done on the servers is said so.
    """
    from fhir_so.workflow.demo import find_examples, run_demo

    folder = find_examples(examples)
    ports = [p for p, url in ((8090, server), (8091, second_server)) if not url]
    if ports:
        from fhir_so.server import start_servers

        started = start_servers(app.env, ports, progress=info)
        for status in started.values():
            if status.already_running:
                info(f"using the local server already running on {status.url}")
            else:
                info(f"started the local server on {status.url} in {status.seconds or 0:.0f} s")
        server = started[8090].url if 8090 in started else server
        second_server = started[8091].url if 8091 in started else second_server
    clinic = app.client(server, timeout=timeout)
    expert = app.client(second_server, timeout=timeout, what="--second-server")
    with tempfile.TemporaryDirectory(prefix="fhir-so-demo-") as state_dir:
        run_demo(clinic, expert, examples=folder, state_dir=Path(state_dir), say=click.echo)
    if ports:
        stops = " and ".join("fhir-so server stop" + ("" if p == 8090 else f" --port {p}") for p in ports)
        info(f"the local servers keep running, with the story's data, for a look or the next run; {stops} ends them")


COMMANDS: list[click.Command] = [push_command, pull_command, transfer_command, demo_command]
