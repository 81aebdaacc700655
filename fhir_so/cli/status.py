"""``fhir-so status``: the first physician's view of a case, a timeline from both servers.

The command parses options and calls :func:`fhir_so.workflow.status.case_timeline` (and
:func:`fhir_so.workflow.status.watch` with ``--watch``); rendering is the timeline's own.
"""

from __future__ import annotations

import json

import click

from fhir_so.cli.app import App, pass_app
from fhir_so.cli.common import emit_json, info, json_option, server_option, timeout_option, translate_errors
from fhir_so.cli.params import ServerUrl
from fhir_so.workflow.status import Event, Timeline, case_timeline, watch


@click.command("status")
@server_option
@click.option("--case", "case_id", required=True, metavar="CASE-ID", help="The case id (the ServiceRequest's identifier).")
@click.option("--expert", "expert_url", type=ServerUrl(), envvar="FHIR_SO_EXPERT", show_envvar=True, metavar="URL",
              help="The second-opinion server: adds the records sent, the Task's states and the opinion.")
@click.option("--watch", "every", type=click.FloatRange(min=0.1), metavar="SECONDS",
              help="Read again every SECONDS and print only the new events, until Ctrl-C.")
@timeout_option
@json_option
@pass_app
@translate_errors
def status_command(app: App, server: str | None, case_id: str, expert_url: str | None, every: float | None, timeout: float, as_json: bool) -> None:
    """Show a case's timeline: request, consents, records sent and withheld, the Task, the opinion.

    \b
    --server is the first physician's server; --expert the second-opinion server (the
    Task, the records that arrived and the opinion live there). Each event shows the
    time the server recorded it (UTC), the server, its kind, what happened and the
    resource version it comes from. A record withheld shows the consent policy's reason
    as of the transfer that left it behind. A stat request is flagged.
    --json prints one JSON document (docs/workflows.md); with --watch, one JSON line per
    new event. Exit 0; 2 the case is not on --server (or bad input); 3 a server failed.

    \b
    Examples:
      fhir-so status --server http://127.0.0.1:8090/fhir --case so-2026-uro-0417
      fhir-so status --server http://127.0.0.1:8090/fhir --expert http://127.0.0.1:8091/fhir --case so-2026-uro-0417 --json
      fhir-so status --server http://127.0.0.1:8090/fhir --expert http://127.0.0.1:8091/fhir --case so-2026-uro-0417 --watch 10
    """
    first = app.client(server, timeout=timeout)
    expert = app.client(expert_url, timeout=timeout, what="--expert") if expert_url else None

    def read() -> Timeline:
        return case_timeline(first, case_id, expert=expert)

    if every is None:
        timeline = read()
        if as_json:
            emit_json(timeline.to_json())
        else:
            for line in timeline.lines():
                click.echo(line)
        if timeline.stat:
            info(f"FLAG: case {case_id} is a stat request: an emergency must not wait for the opinion")
        return

    def show(timeline: Timeline, new: list[Event]) -> None:
        if as_json:
            for event in new:
                click.echo(json.dumps(event.to_json(), ensure_ascii=False))
            return
        lines = timeline.lines() if not shown else [f"  {e.line()}" for e in new]
        if not shown:
            shown.append(True)
        for line in lines:
            click.echo(line)

    shown: list[bool] = []
    try:
        watch(read, every, show)
    except KeyboardInterrupt:
        info("stopped watching")


COMMANDS: list[click.Command] = [status_command]
