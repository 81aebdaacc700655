"""The package model: a FHIR NPM package's manifest, the index of its resources, lazy access to their files.

A package is ``package.json`` plus one JSON file per conformance resource. :class:`Package` knows its
manifest and its :class:`IndexEntry` rows; it reads a file only when first asked for, through a byte
reader given by whoever loaded it (a folder on disk, a tarball in memory).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from fhir_so.errors import ProfileError

CORE_NAME = "hl7.fhir.r4.core"
CORE_VERSION = "4.0.1"
CORE_SPEC = f"{CORE_NAME}#{CORE_VERSION}"
CORE_CANONICAL = "http://hl7.org/fhir"
FHIR_BASE_SD = "http://hl7.org/fhir/StructureDefinition/"

INDEX_FIELDS = ("resourceType", "id", "url", "version", "kind", "type", "derivation", "baseDefinition")


def loads(data: bytes, source: str) -> Any:
    """Parse JSON, or raise a ProfileError naming the source."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProfileError(f"malformed JSON: {exc}", source=source) from None


def is_core_dependency(name: str) -> bool:
    """Whether a dependency names the core R4 package (always loaded, never installed as a dependency)."""
    return name == CORE_NAME or (name.startswith("hl7.fhir.r4.") and name.endswith(".core"))


class IndexEntry(NamedTuple):
    """One conformance resource file of a package, as listed in its index."""

    filename: str
    resourceType: str
    id: str | None = None
    url: str | None = None
    version: str | None = None
    kind: str | None = None
    type: str | None = None
    derivation: str | None = None
    baseDefinition: str | None = None

    @classmethod
    def of(cls, filename: str, resource: dict[str, Any]) -> IndexEntry:
        """The entry describing one parsed resource file."""
        rest = [_str_or_none(resource.get(k)) for k in INDEX_FIELDS[1:]]
        return cls._make([filename, str(resource.get("resourceType")), *rest])

    def as_json(self) -> dict[str, str]:
        """The entry as a .index.json row (fields that are set only)."""
        return {k: v for k, v in self._asdict().items() if v is not None}


def entries_from_rows(rows: list[Any]) -> list[IndexEntry] | None:
    """Index entries from the 'files' rows of a .index.json; None when a row is malformed."""
    entries = []
    make = IndexEntry._make
    try:
        for row in rows:
            g = row.get
            # unrolled on purpose: this runs for every file of core R4 on every load
            entry = make((g("filename"), g("resourceType"), g("id"), g("url"), g("version"), g("kind"), g("type"), g("derivation"), g("baseDefinition")))
            if not isinstance(entry.filename, str) or not isinstance(entry.resourceType, str):
                return None
            entries.append(entry)
    except AttributeError:  # a row that is not an object
        return None
    return entries


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def is_resource_file(name: str) -> bool:
    """Whether a file of a package folder is a resource (JSON, not the manifest, not a dot-file)."""
    return name.endswith(".json") and not name.startswith(".") and name != "package.json"


def read_manifest(data: bytes, source: str) -> dict[str, Any]:
    """A package.json, checked: an object with a name, a version and string-valued dependencies."""
    manifest = loads(data, source)
    if not isinstance(manifest, dict):
        raise ProfileError("package.json must be a JSON object", source=source)
    for key in ("name", "version"):
        if not isinstance(manifest.get(key), str) or not manifest[key]:
            raise ProfileError(f"package.json has no {key!r}", source=source)
    deps = manifest.get("dependencies") or {}
    if not isinstance(deps, dict) or not all(isinstance(v, str) for v in deps.values()):
        raise ProfileError("'dependencies' must map package names to versions", source=source)
    return manifest


def _fhir_versions(manifest: dict[str, Any]) -> list[str]:
    versions = manifest.get("fhirVersions") or manifest.get("fhir-version-list") or []
    if isinstance(versions, str):
        versions = [versions]
    return [v for v in versions if isinstance(v, str)]


class Package:
    """One loaded FHIR NPM package: its manifest, an index of its resources, and lazy access to them."""

    def __init__(
        self,
        *,
        name: str,
        version: str,
        fhir_versions: list[str],
        canonical: str | None,
        dependencies: dict[str, str],
        entries: list[IndexEntry],
        reader: Callable[[str], bytes],
        source: str,
        path: Path | None = None,
        manifest: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.fhir_versions = fhir_versions
        self.canonical = canonical
        self.dependencies = dependencies
        self.entries = entries
        self.source = source
        self.path = path  # the package/ folder on disk; None for a package read from a .tgz in memory
        self.manifest = manifest or {}
        self._reader = reader
        self._parsed: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_manifest(
        cls,
        manifest: dict[str, Any],
        entries: list[IndexEntry],
        reader: Callable[[str], bytes],
        source: str,
        path: Path | None = None,
    ) -> Package:
        """A package described by its (checked) package.json."""
        canonical = manifest.get("canonical")
        return cls(
            name=manifest["name"],
            version=manifest["version"],
            fhir_versions=_fhir_versions(manifest),
            canonical=canonical if isinstance(canonical, str) else None,
            dependencies=dict(manifest.get("dependencies") or {}),
            entries=entries,
            reader=reader,
            source=source,
            path=path,
            manifest=manifest,
        )

    @property
    def spec(self) -> str:
        """'name#version'."""
        return f"{self.name}#{self.version}"

    def __repr__(self) -> str:
        return f"Package({self.spec!r}, {len(self.entries)} resources, from {self.source!r})"

    def read_bytes(self, filename: str) -> bytes:
        """The raw bytes of one file of this package (to copy it elsewhere unparsed)."""
        try:
            return self._reader(filename)
        except OSError as exc:
            raise ProfileError(f"cannot read: {exc.strerror or exc}", source=f"package {self.spec}: {self.source}/{filename}") from None

    def read(self, filename: str) -> dict[str, Any]:
        """One resource file of this package, parsed once and kept."""
        found = self._parsed.get(filename)
        if found is None:
            where = f"package {self.spec}: {self.source}/{filename}"
            found = loads(self.read_bytes(filename), where)
            if not isinstance(found, dict) or "resourceType" not in found:
                raise ProfileError("not a FHIR resource (no resourceType)", source=where)
            self._parsed[filename] = found
        return found

    @property
    def resources(self) -> list[dict[str, Any]]:
        """Every conformance resource of the package (parses all files: use the Definitions lookups when you can)."""
        return [self.read(e.filename) for e in self.entries]
