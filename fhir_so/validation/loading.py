"""Which definitions a validation run uses: core R4, the project's profiles when installed, and any --package."""

from __future__ import annotations

from typing import Sequence

from fhir_so.packages import Definitions, PackageCache
from fhir_so.terminology import PACKAGE_NAME, PACKAGE_VERSION

PROJECT_PACKAGE = f"{PACKAGE_NAME}#{PACKAGE_VERSION}"


def load_definitions(cache: PackageCache, specs: Sequence[str] = ()) -> Definitions:
    """Core R4 plus ``specs``, plus the project's own package when it is in the cache."""
    wanted = list(specs)
    if PROJECT_PACKAGE not in wanted and (PACKAGE_NAME, PACKAGE_VERSION) in cache.installed():
        wanted.append(PROJECT_PACKAGE)
    return cache.definitions(wanted)
