"""CLI command: validate — offline against core R4 and profiles, or through a server's $validate."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any

import click

from fhir_so.cli.app import App, pass_app
from fhir_so.cli.common import info, server_option, timeout_option, translate_errors
from fhir_so.cli.params import PackageRef
from fhir_so.cli.packages import registry_factory, registry_option
from fhir_so.errors import InputError
from fhir_so.workflow.scale_out import DEFAULT_CHUNK_SIZE, validate_parallel

if TYPE_CHECKING:
    from fhir_so.validation.outcome import ResultLike


@click.command("validate")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--profile", "profiles", multiple=True, metavar="URL", help="Check every resource against this profile too (repeatable).")
@click.option("--package", "packages", multiple=True, type=PackageRef(), metavar="DIR|NAME#VER|TGZ", help="Load definitions from this FHIR package (repeatable).")
@registry_option
@click.option("--rules", "rule_set", type=click.Choice(["transfer"]), default=None,
              help="Also judge the domain's policy (consent, stat flag) with the consent policy the transfer uses; conformance alone by default.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "junit"]), default="text", show_default=True, help="Report format.")
@server_option
@timeout_option
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the report here (atomically) instead of stdout.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Validate in N local processes; the report is the same, in the same order.")
@click.option("--scheduler", metavar="ADDRESS",
              help="Validate on a Dask distributed cluster (tcp://HOST:PORT of its scheduler, reached and given a worker within --timeout); needs fhir-so[dask] here and on the workers.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=DEFAULT_CHUNK_SIZE, show_default=True,
              help="Inputs per task with --jobs or --scheduler.")
@pass_app
@click.pass_context
@translate_errors
def validate_command(
    ctx: click.Context,
    app: App,
    paths: tuple[str, ...],
    profiles: tuple[str, ...],
    packages: tuple[str, ...],
    registries: tuple[str, ...],
    rule_set: str | None,
    fmt: str,
    server: str | None,
    timeout: float,
    output: str | None,
    jobs: int,
    scheduler: str | None,
    chunk_size: int,
) -> None:
    """Validate FHIR R4 resources: files, directories, Bundles, NDJSON.

    \b
    Offline by default (core R4, the project's profiles, any --package); with --server URL,
    each resource goes to that server's $validate instead. Conformance only, unless
    --rules transfer adds the business rules (so-consent-*, so-stat-flagged, so-record-withheld).
    A --package NAME#VERSION that is not in the cache is installed from the package registries
    first (once; offline afterwards). Hand-written JSON (a comment, a comma too many) is read as
    the HL7 validator reads it, each departure an error at its place.
    Exit codes: 0 all valid, 1 some invalid, 2 bad input (an unreadable file, or not JSON even
    read leniently), 3 a package could not be downloaded, or the Dask scheduler could not be
    reached, or a worker died.

    \b
    Scaling out: --jobs N splits the inputs into chunks (--chunk-size) validated by N local
    processes; --scheduler tcp://HOST:PORT sends the chunks to a Dask cluster's workers (each
    with fhir-so installed and its own package cache; the inputs travel from here). Reports are
    the same as a single process's, byte for byte.
    """
    from fhir_so.validation.outcome import write_report, write_report_file
    from fhir_so.workflow.run_validation import validate

    if server and rule_set:
        raise InputError("--rules judges offline; it cannot be combined with --server")
    if server and (jobs > 1 or scheduler):
        raise InputError("--jobs and --scheduler validate offline; they cannot be combined with --server")
    if scheduler and jobs > 1:
        raise InputError("--jobs runs local processes, --scheduler a Dask cluster: give one of them")
    results: Iterable[ResultLike]
    # NAME#VERSION not yet in the cache is installed from the registries on first use; later runs are offline
    common: dict[str, Any] = {
        "profiles": profiles,
        "packages": packages,
        "business_rules": rule_set == "transfer",
        "registry": registry_factory(registries),
        "on_warning": lambda warning: info(f"warning: {warning}"),
    }
    if jobs > 1 or scheduler:
        results = validate_parallel(
            paths, jobs=None if scheduler else jobs, scheduler=scheduler, chunk_size=chunk_size, timeout=timeout, **common
        )
    else:
        results = validate(paths, client=app.client(server, timeout=timeout) if server else None, **common)
    # progress only on a terminal, and only when the report does not go to that same terminal
    progress = _progress if sys.stderr.isatty() and (output or not sys.stdout.isatty()) else None
    if output:
        summary = write_report_file(results, fmt, output, on_bad_input=info, on_progress=progress)
    else:
        out: IO[bytes] = sys.stdout.buffer
        summary = write_report(results, fmt, out, on_bad_input=info if fmt != "text" else None, on_progress=progress)
        out.flush()
    if progress is not None:
        click.echo("", err=True)
    info(summary.line())
    ctx.exit(summary.exit_code)


def _progress(count: int) -> None:
    click.echo(f"\r{count:,} inputs validated", err=True, nl=False)


COMMANDS: list[click.Command] = [validate_command]
