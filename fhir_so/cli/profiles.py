"""CLI commands: ``fhir-so profiles build|install`` (the project's FHIR package)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from fhir_so.cli.common import auth_from_environment, emit_json, info, json_option, server_option, translate_errors
from fhir_so.cli.packages import cache_option
from fhir_so.client import FhirClient
from fhir_so.errors import InputError
from fhir_so.packages import PackageCache
from fhir_so.profiles import build_profiles
from fhir_so.workflow.profiles_install import install_profiles


@click.group("profiles")
def profiles_group() -> None:
    """The project's FHIR package: profiles, code systems and value sets (profiles/, FSH)."""


@profiles_group.command("build")
@cache_option
@click.option(
    "--project",
    "project_root",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The fhir-so checkout holding profiles/ and tools/ (default: found from the current folder).",
)
@click.option("--force", is_flag=True, help="Run SUSHI even when nothing changed.")
@json_option
@translate_errors
def build_command(cache_dir: Path | None, project_root: Path | None, force: bool, as_json: bool) -> None:
    """Compile profiles/ with SUSHI (offline) and install fhir-so.profiles#0.1.0 in the package cache."""
    result = build_profiles(PackageCache(cache_dir), project_root, force=force)
    if as_json:
        emit_json(
            {
                "package": str(result.package_dir),
                "installed": str(result.installed_dir),
                "built": result.built,
                "seconds": round(result.seconds, 3),
                "resources": result.resources,
                "examples": result.examples,
            }
        )
    else:
        verb = "built" if result.built else "up to date:"
        info(f"profiles {verb} {result.resources} resources, {result.examples} examples in {result.installed_dir} ({result.seconds:.1f} s)")


@profiles_group.command("install")
@server_option
@cache_option
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for each answer.")
@json_option
@translate_errors
def install_command(server: str | None, cache_dir: Path | None, timeout: float, as_json: bool) -> None:
    """Upload the project's CodeSystems, ValueSets and StructureDefinitions to a FHIR server.

    Each is read first and written (PUT Type/id) only when missing or different: a re-run changes
    nothing. Credentials come from the environment (FHIR_SO_TOKEN, ...). Build first: fhir-so profiles build.
    """
    if not server:
        raise InputError("give --server URL (or set FHIR_SO_SERVER)")
    with FhirClient(server, auth=auth_from_environment(os.environ), timeout=(5.0, timeout)) as client:
        report = install_profiles(client, PackageCache(cache_dir))
    if as_json:
        emit_json(report)
    else:
        for row in report["resources"]:
            info(f"{row['outcome']:9} {row['resourceType']}/{row['id']}")
        info(
            f"{len(report['resources'])} resources on {server}: "
            f"{report['created']} created, {report['updated']} updated, {report['unchanged']} unchanged"
        )


COMMANDS: list[click.Command] = [profiles_group]
