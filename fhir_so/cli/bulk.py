"""``fhir-so export`` and ``fhir-so import``: FHIR Bulk Data out of a server into a folder, and NDJSON into a server.

On a terminal: a progress line while the export job runs (the server's ``X-Progress``) and a
bar while files download or transactions go (tqdm, on stderr), then the summary on stdout.
With ``--json``: the result as one JSON document on stdout. Ctrl-C cancels a running export
(``DELETE`` of its status URL) and exits 130, without a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from fhir_so.client.bulk import MAX_FILE_BYTES, ExportRequest, PollPolicy
from fhir_so.cli.app import App, pass_app
from fhir_so.cli.batch import FhirDate
from fhir_so.cli.common import emit_json, info, json_option, server_option, timeout_option, translate_errors
from fhir_so.errors import InputError
from fhir_so.workflow.bulk_export import ExportCancelled, ExportEvents, export
from fhir_so.workflow.bulk_import import DEFAULT_BATCH, ImportEvents, import_ndjson

__all__ = ["COMMANDS"]

EXIT_INTERRUPTED = 130


class _ExportBars(ExportEvents):
    """Progress on stderr when it is a terminal; nothing otherwise."""

    def __init__(self, show: bool) -> None:
        self.show = show
        self.bar: tqdm[Any] | None = None

    def kicked_off(self, status_url: str, resumed: bool) -> None:
        if self.show:
            info(("resuming the export job " if resumed else "export job started: ") + status_url)

    def job_gone(self, status_url: str) -> None:
        info(f"the earlier export job is gone from the server ({status_url}); starting a new one")

    def polled(self, progress: str | None, wait: float) -> None:
        if self.show:
            if self.bar is None:
                self.bar = tqdm(desc="export running", bar_format="{desc}: {elapsed} {postfix}", file=sys.stderr, dynamic_ncols=True)
            self.bar.set_postfix_str(f"{progress or 'in progress'} (next poll in {wait:.0f} s)")

    def file_started(self, name: str, index: int, total: int) -> None:
        self.close()
        if self.show:
            self.bar = tqdm(desc=f"[{index}/{total}] {name}", unit="B", unit_scale=True, file=sys.stderr, dynamic_ncols=True, leave=False)

    def file_bytes(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def file_done(self, name: str, resources: int, skipped: bool) -> None:
        self.close()
        if self.show:
            info(f"{name}: {resources} resources" + (" (downloaded by an earlier run)" if skipped else ""))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _ImportBar(ImportEvents):
    def __init__(self, show: bool) -> None:
        self.show = show
        self.bar: tqdm[Any] | None = None

    def planned(self, resources: int, batches: int) -> None:
        if self.show:
            self.bar = tqdm(total=resources, desc=f"importing ({batches} transactions)", unit="res", file=sys.stderr, dynamic_ncols=True)

    def batch_done(self, resources: int) -> None:
        if self.bar is not None:
            self.bar.update(resources)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _split_types(value: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in value.split(",") if t.strip()) if value else ()


@click.command("export")
@server_option
@click.option("--type", "types", metavar="T,...", help="Only these resource types (_type), comma-separated.")
@click.option("--since", type=FhirDate(), metavar="INSTANT", help="Only resources changed after this instant (_since), e.g. 2026-11-01T00:00:00Z.")
@click.option("--patient", "patients", multiple=True, metavar="ID", help="A Patient-level export of this patient (repeatable; not with --group).")
@click.option("--group", metavar="ID", help="A Group-level export: the members of Group/ID.")
@click.option("-o", "--output", "folder", required=True, type=click.Path(file_okay=False, path_type=str), metavar="DIR", help="The folder for the NDJSON files, the manifest and the state file.")
@click.option("--keep-job", is_flag=True, help="Do not delete the job on the server after the download.")
@click.option("--allow-origin", "allow_origins", multiple=True, metavar="URL", help="Also download files from this origin (without credentials); repeatable.")
@click.option("--max-poll-interval", type=click.FloatRange(min=0.1), default=60.0, show_default=True, metavar="SECONDS", help="The longest wait between status polls, whatever Retry-After says.")
@click.option("--max-wait", type=click.FloatRange(min=1), metavar="SECONDS", help="Give up polling after this long (the job stays on the server; rerun to resume).")
@click.option("--max-file-size", type=click.IntRange(min=1), default=MAX_FILE_BYTES, show_default=True, metavar="BYTES", help="Refuse a file larger than this.")
@timeout_option
@json_option
@pass_app
@click.pass_context
@translate_errors
def export_command(
    ctx: click.Context,
    app: App,
    server: str | None,
    types: str | None,
    since: str | None,
    patients: tuple[str, ...],
    group: str | None,
    folder: str,
    keep_job: bool,
    allow_origins: tuple[str, ...],
    max_poll_interval: float,
    max_wait: float | None,
    max_file_size: int,
    timeout: float,
    as_json: bool,
) -> None:
    """Export a server's data with FHIR Bulk Data ($export) into DIR as NDJSON.

    \b
    System level by default; --patient ID for a Patient-level export of those patients,
    --group ID for a Group's members. The job is polled as the server's Retry-After says
    (between 1 s and --max-poll-interval), each file is checked (every line a resource of the
    declared type; counts as the manifest says) and written whole or not at all. Resumable:
    run the same command again after a crash and it polls the same job and skips the files
    already there. Ctrl-C cancels the job on the server (exit 130). Exit 3 also when the
    server's error files report errors (they are saved under DIR/errors/).

    \b
    Examples:
      fhir-so export --server http://127.0.0.1:8090/fhir -o export/
      fhir-so export --server URL --type Patient,ServiceRequest --since 2026-11-01T00:00:00Z -o out/
      fhir-so export --server URL --patient 1000 -o patient-1000/
    """
    if since is not None and "T" not in since:
        raise InputError(f"--since must be an instant with a time and zone, e.g. {since}T00:00:00Z")
    level = "group" if group else ("patient" if patients else "system")
    request = ExportRequest(level=level, types=_split_types(types), since=since, patients=patients, group=group)  # type: ignore[arg-type]
    client = app.client(server, timeout=timeout)
    events = _ExportBars(not as_json and sys.stderr.isatty())
    poll = PollPolicy(ceiling=max_poll_interval, floor=min(1.0, max_poll_interval), deadline=max_wait)
    try:
        result = export(
            client, request, folder, keep_job=keep_job, allowed_origins=allow_origins, poll=poll,
            max_file_bytes=max_file_size, events=events,
        )
    except KeyboardInterrupt as exc:
        events.close()
        problem = exc.problem if isinstance(exc, ExportCancelled) else None
        info(f"export interrupted: {problem}" if problem else "export cancelled: the job was deleted on the server and the files of this export removed")
        ctx.exit(EXIT_INTERRUPTED)
    finally:
        events.close()
    if as_json:
        emit_json(result.to_json())
    else:
        for line in result.summary():
            click.echo(line)
    ctx.exit(result.exit_code)


@click.command("import")
@click.argument("path", metavar="DIR|FILE.ndjson", type=click.Path(path_type=str))
@server_option
@click.option("--batch-size", type=click.IntRange(min=1, max=5000), default=DEFAULT_BATCH, show_default=True, metavar="N", help="Resources per transaction.")
@click.option("--source", metavar="NAME", help="Where the NDJSON came from (default: the request base in DIR/manifest.json); part of the import tag.")
@click.option("--state", "state_file", type=click.Path(dir_okay=False, path_type=str), metavar="FILE", help="The state file (default: DIR/.fhir-so-import-HASH.json, one per server).")
@timeout_option
@json_option
@pass_app
@click.pass_context
@translate_errors
def import_command(
    ctx: click.Context,
    app: App,
    path: str,
    server: str | None,
    batch_size: int,
    source: str | None,
    state_file: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Load NDJSON files (a Bulk Data export, or any) into a server as transactions.

    \b
    References are rewritten to the new ids (inside a transaction as urn:uuid, across
    transactions from the map kept in the state file); resources are sent in dependency
    order. Idempotent like push: each resource is a conditional create on its identifier,
    or on the import tag fhir-so adds (meta.tag import-source SOURCE/Type/id), so a second
    import creates nothing new. Resumable with its state file.

    \b
    Examples:
      fhir-so import export/ --server http://127.0.0.1:8091/fhir
      fhir-so import Patient.1.ndjson --server URL --source clinic-a --batch-size 500
    """
    client = app.client(server, timeout=timeout)
    bar = _ImportBar(not as_json and sys.stderr.isatty())
    try:
        result = import_ndjson(client, Path(path), batch_size=batch_size, source=source, state_file=state_file, events=bar)
    except KeyboardInterrupt:
        bar.close()
        info("import interrupted: run the same command again to resume")
        ctx.exit(EXIT_INTERRUPTED)
    finally:
        bar.close()
    if as_json:
        emit_json(result.to_json())
    else:
        for line in result.summary():
            click.echo(line)


COMMANDS = (export_command, import_command)
