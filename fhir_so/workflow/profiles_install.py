"""Upload the project's terminology and profiles to a FHIR server, idempotently.

Each CodeSystem, ValueSet and StructureDefinition of ``fhir-so.profiles`` is read first and
written (PUT Type/id) only when missing or different, so a re-run sends no writes and changes
nothing on any server (HAPI would also no-op an identical update, other servers might not).
Terminology goes first, so a server that checks bindings on upload finds the ValueSets.
"""

from __future__ import annotations

from typing import Any

from fhir_so import terminology as term
from fhir_so.client import FhirClient
from fhir_so.errors import NotFoundError
from fhir_so.packages import Package, PackageCache
from fhir_so.profiles import upload_order

# What a server adds or may rewrite on its own, ignored when comparing.
_SERVER_OWNED = ("meta", "text")


def _same(local: dict[str, Any], remote: dict[str, Any]) -> bool:
    strip = lambda r: {k: v for k, v in r.items() if k not in _SERVER_OWNED}  # noqa: E731
    return strip(local) == strip(remote)


def install_package(client: FhirClient, package: Package) -> dict[str, Any]:
    """PUT every CodeSystem, ValueSet and StructureDefinition of the package that the server lacks or holds differently."""
    rows = []
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    for resource in upload_order(package):
        rtype, rid = str(resource["resourceType"]), str(resource["id"])
        try:
            current: dict[str, Any] | None = client.read(rtype, rid)
        except NotFoundError:
            current = None
        if current is not None and _same(resource, current):
            outcome = "unchanged"
        else:
            result = client.update(resource)
            outcome = "created" if result.created or current is None else "updated"
        counts[outcome] += 1
        rows.append({"resourceType": rtype, "id": rid, "url": resource.get("url"), "outcome": outcome})
    return {"server": client.base_url, "package": package.spec, "resources": rows, **counts}


def install_profiles(client: FhirClient, cache: PackageCache) -> dict[str, Any]:
    """Install the project's compiled package (fhir-so.profiles, built by `fhir-so profiles build`) on the server."""
    package = cache.load(f"{term.PACKAGE_NAME}#{term.PACKAGE_VERSION}")
    return install_package(client, package)
