"""`fhir-so profiles install` against the real local HAPI server: idempotent, and the installed profiles judge as designed."""

from __future__ import annotations

import copy
import json
from typing import Any

import requests

from fhir_so import terminology as term
from fhir_so.packages import PackageCache
from fhir_so.profiles import examples
from tests.live.conftest import run_fhir_so


def _validate(base: str, resource: dict[str, Any]) -> list[str]:
    answer = requests.post(
        f"{base}/{resource['resourceType']}/$validate",
        data=json.dumps(resource),
        headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"},
        timeout=120,
    )
    outcome = answer.json()
    return [i.get("diagnostics", "") for i in outcome.get("issue", []) if i.get("severity") in ("error", "fatal")]


def test_install_twice_changes_nothing_the_second_time(fhir_server: str) -> None:
    first = run_fhir_so("profiles", "install", "--server", fhir_server, "--json")
    assert first.returncode == 0, first.stderr
    second = run_fhir_so("profiles", "install", "--server", fhir_server, "--json")
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert report["unchanged"] == len(report["resources"]) == 19  # 6 profiles, 6 CodeSystems, 7 ValueSets
    sd = requests.get(f"{fhir_server}/StructureDefinition?url={term.SD_SERVICE_REQUEST}", timeout=30).json()
    assert len(sd.get("entry", [])) == 1  # updated in place, never duplicated


def test_hapi_accepts_the_examples_and_refuses_a_broken_one(fhir_server: str) -> None:
    assert run_fhir_so("profiles", "install", "--server", fhir_server).returncode == 0
    found = examples(PackageCache().load(f"{term.PACKAGE_NAME}#{term.PACKAGE_VERSION}"))
    profiled = [r for r in found if (r.get("meta") or {}).get("profile")]
    assert len(profiled) == 6  # one per profile, the Task too
    for resource in profiled:
        assert _validate(fhir_server, resource) == [], resource["id"]
    request = next(r for r in profiled if r["resourceType"] == "ServiceRequest")
    broken = copy.deepcopy(request)
    broken["reasonCode"] = [c for c in broken["reasonCode"] if c["coding"][0]["system"] != term.V2_0336]
    assert any("secondOpinion" in e or "reasonCode" in e for e in _validate(fhir_server, broken))
