"""The compiled profiles package and fhir_so/terminology.py say the same thing: codes, displays, URLs, fixed codes.

The FSH in profiles/ is written by hand; this test is what keeps it from drifting away from the
one module that spells every code the mapping writes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from fhir_so import terminology as term
from fhir_so.packages import PackageCache
from fhir_so.profiles import examples
from tests.packages.package_helpers import ROOT

PROFILES = {
    term.SD_SERVICE_REQUEST: "ServiceRequest",
    term.SD_CONSENT_RECORDS: "Consent",
    term.SD_CONSENT_REPORT: "Consent",
    term.SD_DOCUMENT_REFERENCE: "DocumentReference",
    term.SD_DIAGNOSTIC_REPORT: "DiagnosticReport",
    term.SD_TASK: "Task",
}
VALUE_SETS = {
    term.VS_REASON: term.CS_REASON,
    term.VS_MODE: term.CS_MODE,
    term.VS_CONCORDANCE: term.CS_CONCORDANCE,
    term.VS_TREATMENT: term.CS_TREATMENT,
    term.VS_TASK_STATUS: term.CS_TASK_STATUS,
    term.VS_TASK_IO: term.CS_TASK_IO,
}


def of_type(resources: list[dict[str, Any]], resource_type: str) -> dict[str, dict[str, Any]]:
    return {r["url"]: r for r in resources if r["resourceType"] == resource_type}


def test_package_identity(profiles_cache: PackageCache) -> None:
    pkg = profiles_cache.load(f"{term.PACKAGE_NAME}#{term.PACKAGE_VERSION}")
    assert (pkg.name, pkg.version, pkg.canonical, pkg.fhir_versions) == (term.PACKAGE_NAME, term.PACKAGE_VERSION, term.CANONICAL, ["4.0.1"])
    config = (ROOT / "profiles" / "sushi-config.yaml").read_text(encoding="utf-8")
    assert re.search(rf"^canonical: {re.escape(term.CANONICAL)}$", config, re.M)
    assert re.search(rf"^version: {re.escape(term.PACKAGE_VERSION)}$", config, re.M)


def test_every_code_system_has_exactly_the_codes_and_displays_of_terminology(profiles_resources: list[dict[str, Any]]) -> None:
    code_systems = of_type(profiles_resources, "CodeSystem")
    assert set(code_systems) == set(term.project_code_systems())
    for url, codes in term.project_code_systems().items():
        cs = code_systems[url]
        assert {c["code"]: c.get("display") for c in cs["concept"]} == codes, url
        assert cs["content"] == "complete" and cs["caseSensitive"] is True


def test_every_value_set_includes_its_code_system(profiles_resources: list[dict[str, Any]]) -> None:
    value_sets = of_type(profiles_resources, "ValueSet")
    assert set(value_sets) == {*VALUE_SETS, term.VS_RECORD_TYPE}
    for vs_url, cs_url in VALUE_SETS.items():
        assert value_sets[vs_url]["compose"]["include"] == [{"system": cs_url}], vs_url
    record_types = value_sets[term.VS_RECORD_TYPE]["compose"]["include"]
    assert len(record_types) == 1 and record_types[0]["system"] == term.LOINC
    assert {c["code"]: c["display"] for c in record_types[0]["concept"]} == {c.code: c.display for c in term.RECORD_TYPES.values()}


def test_profile_urls_and_types(profiles_resources: list[dict[str, Any]]) -> None:
    sds = of_type(profiles_resources, "StructureDefinition")
    assert {url: sd["type"] for url, sd in sds.items()} == PROFILES
    for sd in sds.values():
        assert sd["derivation"] == "constraint" and sd["fhirVersion"] == "4.0.1" and sd["snapshot"]["element"]


def _codings(value: Any) -> Iterator[dict[str, Any]]:
    """Every Coding-like dict (has a system) inside a fixed or pattern value."""
    if isinstance(value, dict):
        if "system" in value and isinstance(value["system"], str):
            yield value
        for v in value.values():
            yield from _codings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _codings(v)


def _known_codes() -> set[tuple[str, str | None]]:
    """(system, code) of every code in terminology, and (system, None) for the project's own systems."""
    known: set[tuple[str, str | None]] = set()
    for value in vars(term).values():
        items = value.values() if isinstance(value, dict) else [value]
        for item in items:
            if isinstance(item, term.Code):
                known.add((item.system, item.code))
    known |= {(url, None) for url in term.project_code_systems()}
    known.add((term.RESOURCE_TYPES, "DocumentReference"))
    known.add((term.RESOURCE_TYPES, "DiagnosticReport"))
    return known


def test_every_fixed_or_pattern_code_is_one_terminology_defines(profiles_resources: list[dict[str, Any]]) -> None:
    known = _known_codes()
    seen = set()
    for sd in of_type(profiles_resources, "StructureDefinition").values():
        for element in sd["differential"]["element"]:
            for key, value in element.items():
                if key.startswith(("fixed", "pattern")):
                    for coding in _codings(value):
                        pair = (coding["system"], coding.get("code"))
                        assert pair in known, f"{sd['id']} {element['id']}: {pair} is not in fhir_so/terminology.py"
                        seen.add(pair)
    # the codes the mapping always writes are all pinned by some profile
    for code in (
        term.CONSULTATION, term.CONFIRMATORY_CONSULTATION, term.SECOND_OPINION, term.CONSENT_SCOPE_PRIVACY,
        term.CONSENT_CATEGORY, term.CONSENT_POLICY_RULE, term.ACTION_DISCLOSE, term.PURPOSE_TREATMENT,
        term.ROLE_RECIPIENT, term.CONSULT_NOTE, term.TASK_FULFILL, *term.TASK_IO.values(),
    ):
        assert (code.system, code.code) in seen, code


def test_identifier_slices_fix_the_systems_the_mapping_writes(profiles_resources: list[dict[str, Any]]) -> None:
    expected = {
        term.SD_SERVICE_REQUEST: term.SID_CASE,
        term.SD_CONSENT_RECORDS: term.SID_CONSENT,
        term.SD_CONSENT_REPORT: term.SID_CONSENT,
        term.SD_DOCUMENT_REFERENCE: term.SID_RECORD,
        term.SD_DIAGNOSTIC_REPORT: term.SID_OPINION,
        term.SD_TASK: term.SID_TASK,
    }
    for url, sd in of_type(profiles_resources, "StructureDefinition").items():
        fixed = [e["fixedUri"] for e in sd["differential"]["element"] if e["path"].endswith(".identifier.system") and "fixedUri" in e]
        assert fixed == [expected[url]], url


def test_bindings_point_at_the_project_value_sets(profiles_resources: list[dict[str, Any]]) -> None:
    bound = {
        (sd["id"], e["id"]): (e["binding"]["valueSet"], e["binding"]["strength"])
        for sd in of_type(profiles_resources, "StructureDefinition").values()
        for e in sd["differential"]["element"]
        if "binding" in e
    }
    assert bound == {
        ("so-service-request", "ServiceRequest.orderDetail:mode.coding:soMode"): (term.VS_MODE, "required"),
        ("so-service-request", "ServiceRequest.reasonCode:reason"): (term.VS_REASON, "required"),
        ("so-consent-records", "Consent.provision.code"): (term.VS_RECORD_TYPE, "extensible"),
        ("so-document-reference", "DocumentReference.type"): (term.VS_RECORD_TYPE, "extensible"),
        ("so-diagnostic-report", "DiagnosticReport.conclusionCode:concordance"): (term.VS_CONCORDANCE, "required"),
        ("so-diagnostic-report", "DiagnosticReport.conclusionCode:treatment"): (term.VS_TREATMENT, "required"),
        ("so-task", "Task.businessStatus"): (term.VS_TASK_STATUS, "required"),
        ("so-task", "Task.output:recordsRequested.value[x]"): (term.VS_RECORD_TYPE, "extensible"),
    }


def test_one_example_per_profile_using_terminology_codes(profiles_cache: PackageCache) -> None:
    found = examples(profiles_cache.load(f"{term.PACKAGE_NAME}#{term.PACKAGE_VERSION}"))
    profiled = {p for r in found for p in (r.get("meta") or {}).get("profile", [])}
    assert profiled == set(PROFILES)
    sids = {term.SID_CASE, term.SID_OPINION, term.SID_CONSENT, term.SID_RECORD, term.SID_TASK, term.SID_LOCAL, term.SID_NPI}
    known_systems = {s for s, _ in _known_codes()} | sids | {term.SNOMED}
    text = json.dumps(found)
    for system in set(re.findall(r'"system": "([^"]+)"', text)):
        assert system in known_systems, system


@pytest.mark.parametrize("fsh", sorted((ROOT / "profiles" / "input" / "fsh").glob("*.fsh")), ids=lambda p: p.name)
def test_fsh_spells_project_urls_only_under_the_canonical_base(fsh: Path) -> None:
    for url in re.findall(r"https://[^\s\"]+", fsh.read_text(encoding="utf-8")):
        assert url.startswith(term.CANONICAL + "/"), f"{fsh.name}: {url}"
