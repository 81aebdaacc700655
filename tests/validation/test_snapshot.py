"""Snapshot generation checked against SUSHI: the project's profiles with their snapshots removed are
regenerated from the differential, and must match SUSHI's snapshots element by element."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fhir_so import terminology as t
from fhir_so.packages import PackageCache
from fhir_so.validation.snapshot import SnapshotGenerator
from tests.prerequisites import need

PROFILES = [t.SD_SERVICE_REQUEST, t.SD_CONSENT_RECORDS, t.SD_CONSENT_REPORT, t.SD_DOCUMENT_REFERENCE, t.SD_DIAGNOSTIC_REPORT]
COMPARED = ("min", "max", "sliceName", "fixedUri", "fixedCode", "fixedString", "patternCodeableConcept", "patternCoding", "patternIdentifier")


@pytest.fixture(scope="module")
def project_definitions() -> Any:
    cache = PackageCache()
    if (t.PACKAGE_NAME, t.PACKAGE_VERSION) not in cache.installed():
        need("the project's profiles are not built (fhir-so profiles build)")
    return cache.definitions([f"{t.PACKAGE_NAME}#{t.PACKAGE_VERSION}"])


def _summary(el: dict[str, Any]) -> dict[str, Any]:
    out = {k: el.get(k) for k in COMPARED}
    out["type"] = [(ty.get("code"), tuple(ty.get("profile") or ()), tuple(ty.get("targetProfile") or ())) for ty in el.get("type") or []]
    binding = el.get("binding") or {}
    out["binding"] = (binding.get("strength"), binding.get("valueSet"))
    out["discriminator"] = (el.get("slicing") or {}).get("discriminator")
    out["constraints"] = sorted(c.get("key") for c in el.get("constraint") or [])
    return out


@pytest.mark.parametrize("url", PROFILES, ids=lambda u: u.rsplit("/", 1)[1])
def test_generated_snapshot_matches_sushi(project_definitions: Any, url: str) -> None:
    sd = copy.deepcopy(project_definitions.structure_definition(url))
    sushi = [(e["id"], _summary(e)) for e in sd.pop("snapshot")["element"]]
    ours = [(e["id"], _summary(e)) for e in SnapshotGenerator(project_definitions).elements(sd)]
    assert [i for i, _ in ours] == [i for i, _ in sushi]
    assert ours == sushi
