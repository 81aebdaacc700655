"""Definitions: the conformance resources of a set of loaded packages, indexed by canonical URL (and version)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from fhir_so.packages.folder import INDEX_FILE
from fhir_so.packages.model import FHIR_BASE_SD, IndexEntry, Package


class Definitions:
    """The conformance resources of some packages and their dependencies (core R4 always), indexed by URL.

    When two packages define the same URL, the first in ``packages`` wins: the packages asked for come
    first, then their dependencies, core R4 last.
    """

    def __init__(self, packages: Sequence[Package], warnings: Sequence[str] = ()) -> None:
        self.packages: list[Package] = list(packages)
        # what assembling this set had to bend (a dependency at another version, one on no registry)
        self.warnings: list[str] = list(warnings)
        # built per resource type on first use: most calls look up StructureDefinitions only
        self._by_url: dict[str, dict[str, tuple[Package, IndexEntry]]] = {}
        self._by_url_version: dict[str, dict[tuple[str, str], tuple[Package, IndexEntry]]] = {}

    def _maps(self, resource_type: str) -> tuple[dict[str, tuple[Package, IndexEntry]], dict[tuple[str, str], tuple[Package, IndexEntry]]]:
        by_url = self._by_url.get(resource_type)
        if by_url is None:
            by_url = {}
            by_version: dict[tuple[str, str], tuple[Package, IndexEntry]] = {}
            for pkg in self.packages:
                for entry in pkg.entries:
                    if entry.resourceType == resource_type and entry.url:
                        by_url.setdefault(entry.url, (pkg, entry))
                        if entry.version:
                            by_version.setdefault((entry.url, entry.version), (pkg, entry))
            self._by_url[resource_type] = by_url
            self._by_url_version[resource_type] = by_version
        return by_url, self._by_url_version[resource_type]

    @property
    def fingerprint(self) -> str:
        """A short string that changes when the set of packages or their files change (a key for derived caches)."""
        parts = []
        for pkg in self.packages:
            stamp = ""
            if pkg.path is not None:
                try:
                    stamp = str((pkg.path / INDEX_FILE).stat().st_mtime_ns)
                except OSError:
                    stamp = "?"
            parts.append(f"{pkg.spec}@{stamp}:{len(pkg.entries)}")
        return ";".join(parts)

    def locate(self, resource_type: str, url: str) -> tuple[Package, IndexEntry] | None:
        """The package and index entry of a canonical URL ('url' or 'url|version'), or None."""
        by_url, by_version = self._maps(resource_type)
        base, _, version = url.partition("|")
        if version:
            hit = by_version.get((base, version))
            if hit is not None:
                return hit
            # A versioned reference to a definition present in another version is resolved leniently,
            # as HAPI does (it warns): core R4 binds many HL7 v2/v3 ValueSets with |4.0.1.
        return by_url.get(base)

    def resource(self, resource_type: str, url: str) -> dict[str, Any] | None:
        """The conformance resource of that type and canonical URL, or None."""
        hit = self.locate(resource_type, url)
        return hit[0].read(hit[1].filename) if hit else None

    def structure_definition(self, url: str) -> dict[str, Any] | None:
        """A StructureDefinition by canonical URL (or 'url|version'), or by core type name such as 'Patient'."""
        if "/" not in url and ":" not in url:
            url = FHIR_BASE_SD + url
        return self.resource("StructureDefinition", url)

    def value_set(self, url: str) -> dict[str, Any] | None:
        """A ValueSet by canonical URL (or 'url|version')."""
        return self.resource("ValueSet", url)

    def code_system(self, url: str) -> dict[str, Any] | None:
        """A CodeSystem by canonical URL (or 'url|version')."""
        return self.resource("CodeSystem", url)

    def entries_of_type(self, resource_type: str) -> Iterator[tuple[Package, IndexEntry]]:
        """Index entries of one resource type, first definition of each URL only, without parsing them."""
        seen: set[str] = set()
        for pkg in self.packages:
            for entry in pkg.entries:
                if entry.resourceType != resource_type:
                    continue
                if entry.url:
                    if entry.url in seen:
                        continue
                    seen.add(entry.url)
                yield pkg, entry

    def resources_of_type(self, resource_type: str) -> Iterator[dict[str, Any]]:
        """Every resource of one type (first definition of each URL only), parsed on the way."""
        for pkg, entry in self.entries_of_type(resource_type):
            yield pkg.read(entry.filename)

    def profiles_for_type(self, type_name: str) -> list[str]:
        """URLs of the constraining StructureDefinitions (profiles) on one type, e.g. 'ServiceRequest'."""
        return [
            e.url
            for _, e in self.entries_of_type("StructureDefinition")
            # a package's own .index.json may lack derivation: then any non-base definition of the type
            if e.type == type_name and e.url
            and (e.derivation == "constraint" or (e.derivation is None and e.url != FHIR_BASE_SD + type_name))
        ]
