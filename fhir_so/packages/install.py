"""Installing packages by name from the registries, with their dependencies, into the cache.

The package asked for must exist at that version (or tag). Its dependencies install recursively, each package
expanded once (they refer back to each other across versions). A dependency whose exact version is on no
registry takes the nearest version of the same package (:func:`~fhir_so.packages.versions.nearest_version`),
one on no registry at all is left out: both with a warning, and both recorded next to the dependent package so
that :meth:`PackageCache.definitions` follows the same choices offline. What the cache has is never fetched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from fhir_so.errors import InputError, ProfileError, ServerError
from fhir_so.jsonio import write_atomic
from fhir_so.packages.archive import unpack_package
from fhir_so.packages.cache import INSTALL_RECORD, PackageCache
from fhir_so.packages.folder import load_folder
from fhir_so.packages.model import Package, is_core_dependency
from fhir_so.packages.registry import Release, RegistryClient
from fhir_so.packages.versions import match_version, parse_spec


@dataclass
class InstallResult:
    """What an install by name did: the package asked for, what was downloaded, what the cache had, the warnings."""

    package: Package
    downloaded: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def install_from_registry(cache: PackageCache, spec: str, registry: RegistryClient) -> InstallResult:
    """Install 'name#version' and its dependencies (recursively) from the registries; what is cached is reused.

    A cache hit all the way down sends no request at all.
    """
    named = parse_spec(spec)
    if named is None:
        raise ProfileError(f"not a package reference: {spec!r} (expected NAME#VERSION, e.g. hl7.fhir.uv.ips#2.0.0)")
    name, version = named
    if is_core_dependency(name):
        raise ProfileError(f"{spec}: core R4 is not installed from a registry (run: fhir-so packages seed)")
    return _Installer(cache, registry).run(name, version)


def ensure_installed(cache: PackageCache, specs: Sequence[str], registry_factory: Callable[[], RegistryClient]) -> list[str]:
    """Install from the registries each 'name#version' of specs that is not in the cache; return the warnings.

    Folders and .tgz files are left to :meth:`PackageCache.load`; the registry client is made only when something
    is missing.
    """
    warnings: list[str] = []
    missing = [s for s in specs if parse_spec(s) and not Path(s).expanduser().exists() and not cache.is_cached(s)]
    if not missing:
        return warnings
    with registry_factory() as registry:
        for spec in missing:
            warnings.extend(install_from_registry(cache, spec, registry).warnings)
    return warnings


class _Installer:
    """One install: the cache, the registry client, and what has been done so far."""

    def __init__(self, cache: PackageCache, registry: RegistryClient) -> None:
        self.cache = cache
        self.registry = registry
        self.downloaded: list[str] = []
        self.cached: list[str] = []
        self.warnings: list[str] = []

    def run(self, name: str, version: str) -> InstallResult:
        top = self._obtain(name, version, substitute=False)
        visited: set[str] = set()
        queue = [top]
        while queue:
            pkg = queue.pop(0)
            if pkg.spec in visited:
                continue
            visited.add(pkg.spec)  # dependencies refer back to each other across versions: each is expanded once
            rows: dict[str, dict[str, str | None]] = {}
            for dep_name, dep_version in pkg.dependencies.items():
                if is_core_dependency(dep_name):
                    continue
                dep = self._dependency(pkg, dep_name, dep_version)
                rows[dep_name] = {"wanted": dep_version, "installed": dep.version if dep else None}
                if dep is not None:
                    queue.append(dep)
            self._write_dependency_record(pkg, rows)
        return InstallResult(top, self.downloaded, self.cached, self.warnings)

    def _dependency(self, pkg: Package, name: str, version: str) -> Package | None:
        cached = self.cache.resolve_version(name, version)
        if cached is None:
            recorded, chosen = self.cache.recorded_dependency(pkg, name, version)
            if recorded and chosen is None:
                self.warnings.append(f"{pkg.spec} depends on {name}#{version}, which is on no package registry: left out")
                return None
            cached = chosen
        if cached is not None:
            dep = self.cache.load(f"{name}#{cached}")
            if dep.spec not in self.cached and dep.spec not in self.downloaded:
                self.cached.append(dep.spec)
            if cached != version and match_version(version, [cached]) is None:
                self.warnings.append(f"{pkg.spec} depends on {name}#{version}; using {name}#{cached} instead")
            return dep
        try:
            return self._obtain(name, version, substitute=True, dependent=pkg.spec)
        except _NotOnAnyRegistry:
            self.warnings.append(f"{pkg.spec} depends on {name}#{version}, which is on no package registry: left out")
            return None

    def _obtain(self, name: str, version: str, *, substitute: bool, dependent: str = "") -> Package:
        """The package from the cache, or downloaded; a dependency may get a substitute version."""
        cached = self.cache.resolve_version(name, version)
        if cached is not None:
            pkg = self.cache.load(f"{name}#{cached}")
            self.cached.append(pkg.spec)
            return pkg
        found = self.registry.resolve(name, version)
        if found is None:
            if substitute:
                raise _NotOnAnyRegistry(name)
            raise ProfileError(f"package {name}#{version} is on no package registry ({self.registry.consulted()})")
        release, other = found
        if other and not substitute:
            raise ProfileError(
                f"package {name}#{version} is not on any package registry; the nearest version there is {release.version}"
                f" (ask for {name}#{release.version})"
            )
        if other:
            self.warnings.append(f"{dependent} depends on {name}#{version}, which is on no package registry; using {release.spec} instead")
        if self.cache.resolve_version(name, release.version) is None:
            self._install_release(release)
            self.downloaded.append(release.spec)
        else:
            self.cached.append(release.spec)
        return self.cache.load(release.spec)

    def _install_release(self, release: Release) -> None:
        data = self.registry.download(release)  # integrity checked before anything touches the cache
        source = release.tarball

        def build(folder: Path) -> None:
            manifest = unpack_package(data, folder, source)
            if (manifest["name"], manifest["version"]) != (release.name, release.version):
                raise ServerError(
                    f"package {release.spec}: the tarball from {release.registry} holds "
                    f"{manifest['name']}#{manifest['version']}; nothing was installed"
                )
            load_folder(folder)  # writes .index.json now, so the package is complete when it appears

        record = {"registry": release.registry, "tarball": release.tarball, "integrity": release.integrity, "shasum": release.shasum}
        self.cache.replace_package(release.name, release.version, build, record=record)

    def _write_dependency_record(self, pkg: Package, rows: dict[str, dict[str, str | None]]) -> None:
        if pkg.path is None or pkg.path.parent != self.cache.package_dir(pkg.name, pkg.version):
            return
        record = self.cache.install_record(pkg.name, pkg.version)
        if record.get("dependencies") == rows:
            return  # unchanged: a cache hit writes nothing
        record["dependencies"] = rows
        try:
            write_atomic(pkg.path.parent / INSTALL_RECORD, orjson.dumps(record, option=orjson.OPT_INDENT_2))
            (pkg.path.parent / INSTALL_RECORD).chmod(0o644)  # a shared cache: readable by the other tools
        except InputError:
            pass  # a read-only cache: the next load resolves by nearest version instead, with the same warnings


class _NotOnAnyRegistry(Exception):
    """A dependency that no registry lists at any version (internal: becomes a warning)."""
