"""CLI command: validate — offline against core R4 and profiles, or through a server's $validate."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO

import click

from fhir_so.cli.common import info, server_option, translate_errors
from fhir_so.cli.packages import registry_factory, registry_option
from fhir_so.errors import InputError
from fhir_so.packages import PackageCache, ensure_installed


@click.command("validate")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--profile", "profiles", multiple=True, metavar="URL", help="Check every resource against this profile too (repeatable).")
@click.option("--package", "packages", multiple=True, metavar="DIR|NAME#VER|TGZ", help="Load definitions from this FHIR package (repeatable).")
@registry_option
@click.option("--format", "fmt", type=click.Choice(["text", "json", "junit"]), default="text", show_default=True, help="Report format.")
@server_option
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the report here (atomically) instead of stdout.")
@translate_errors
def validate_command(paths: tuple[str, ...], profiles: tuple[str, ...], packages: tuple[str, ...], registries: tuple[str, ...], fmt: str, server: str | None, output: str | None) -> None:
    """Validate FHIR R4 resources: files, directories, Bundles, NDJSON.

    \b
    Offline by default (core R4, the project's profiles, any --package); with --server URL,
    each resource goes to that server's $validate instead. A --package NAME#VERSION that is not in
    the cache is installed from the package registries first (once; offline afterwards).
    Exit codes: 0 all valid, 1 some invalid, 2 bad input (unreadable file, malformed JSON),
    3 a package could not be downloaded.
    """
    from fhir_so.validation.outcome import write_report, write_report_file

    for p in paths:
        if not Path(p).exists():
            raise InputError("no such file or directory", source=p)
    if server:
        from fhir_so.auth import auth_from_env
        from fhir_so.client import FhirClient
        from fhir_so.workflow.remote_validate import RemoteValidator

        client = FhirClient(server, auth=auth_from_env(os.environ))
        results = RemoteValidator(client, profiles).validate_paths(paths)
    else:
        from fhir_so.validation import Validator, ValidatorOptions
        from fhir_so.validation.loading import load_definitions

        cache = PackageCache()
        options = ValidatorOptions(json_schema=cache.r4_json_schema_path())
        # NAME#VERSION not yet in the cache is installed from the registries on first use; later runs are offline
        ensure_installed(cache, packages, registry_factory(registries))
        definitions = load_definitions(cache, packages)
        for warning in definitions.warnings:
            info(f"warning: {warning}")
        validator = Validator(definitions, profiles, options)
        validator.check_profiles()
        results = validator.validate_paths(paths)
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
    if summary.exit_code:
        sys.exit(summary.exit_code)


def _progress(count: int) -> None:
    click.echo(f"\r{count:,} inputs validated", err=True, nl=False)


COMMANDS: list[click.Command] = [validate_command]
