"""`fhir-so profiles build`: SUSHI offline into the cache, skipped when nothing changed; SUSHI errors are clear."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from fhir_so import terminology as term
from fhir_so.cli import cli
from fhir_so.errors import ProfileError
from fhir_so.packages import PackageCache
from fhir_so.profiles import _sushi_errors, build_profiles, source_stamp
from tests.packages.package_helpers import ROOT


def test_build_installs_the_package_with_snapshots_and_examples(profiles_cache: PackageCache) -> None:
    pkg = profiles_cache.load(f"{term.PACKAGE_NAME}#{term.PACKAGE_VERSION}")
    assert pkg.path == profiles_cache.package_dir(term.PACKAGE_NAME, term.PACKAGE_VERSION) / "package"
    sds = [r for r in pkg.resources if r["resourceType"] == "StructureDefinition"]
    assert len(sds) == 6 and all(len(sd["snapshot"]["element"]) > 20 for sd in sds)
    assert {e.resourceType for e in pkg.entries} == {"StructureDefinition", "CodeSystem", "ValueSet"}
    assert len(list((pkg.path / "example").glob("*.json"))) >= 5  # type: ignore[operator]
    defs = profiles_cache.definitions([pkg.spec])
    assert defs.structure_definition(term.SD_SERVICE_REQUEST) is not None
    assert defs.structure_definition("ServiceRequest") is not None  # core comes along


def test_a_second_build_is_skipped(profiles_cache: PackageCache) -> None:
    result = build_profiles(profiles_cache, ROOT)
    assert not result.built and result.seconds < 5
    runner = CliRunner()
    answer = runner.invoke(cli, ["profiles", "build", "--cache", str(profiles_cache.root), "--project", str(ROOT), "--json"])
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.stdout)["built"] is False


def test_the_stamp_follows_the_sources(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "profiles", project / "profiles", ignore=shutil.ignore_patterns("fsh-generated"))
    sushi = ROOT / "tools" / "node_modules" / ".bin" / "sushi"
    before = source_stamp(project / "profiles", sushi)
    assert source_stamp(project / "profiles", sushi) == before
    fsh = project / "profiles" / "input" / "fsh" / "terminology.fsh"
    fsh.write_text(fsh.read_text(encoding="utf-8") + "\n// changed\n", encoding="utf-8")
    assert source_stamp(project / "profiles", sushi) != before


def test_sushi_errors_are_collected_with_file_and_line() -> None:
    log = "info  Importing FSH text...\nerror Element ServiceRequest.nope not found\n  File: /p/input/fsh/x.fsh\n  Line: 3\nwarn  something\n"
    assert _sushi_errors(log) == ["error Element ServiceRequest.nope not found File: /p/input/fsh/x.fsh Line: 3"]


def test_broken_fsh_fails_with_the_sushi_error_and_exit_2(profiles_cache: PackageCache, tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "profiles", project / "profiles", ignore=shutil.ignore_patterns("fsh-generated"))
    (project / "tools" / "node_modules").mkdir(parents=True)
    (project / "tools" / "node_modules" / ".bin").symlink_to(ROOT / "tools" / "node_modules" / ".bin")
    broken = project / "profiles" / "input" / "fsh" / "broken.fsh"
    broken.write_text("Profile: Broken\nParent: ServiceRequest\nId: broken\n* noSuchElement 1..1\n", encoding="utf-8")
    cache = PackageCache(tmp_path / "cache")
    cache.root.mkdir()
    (cache.root / "hl7.fhir.r4.core#4.0.1").symlink_to(profiles_cache.package_dir("hl7.fhir.r4.core", "4.0.1"))
    with pytest.raises(ProfileError, match="noSuchElement") as err:
        build_profiles(cache, project)
    assert "broken.fsh" in str(err.value)
    assert not (cache.package_dir(term.PACKAGE_NAME, term.PACKAGE_VERSION)).exists()  # nothing half-installed


def test_build_without_core_names_the_fix(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "profiles", project / "profiles", ignore=shutil.ignore_patterns("fsh-generated"))
    (project / "tools" / "node_modules").mkdir(parents=True)
    (project / "tools" / "node_modules" / ".bin").symlink_to(ROOT / "tools" / "node_modules" / ".bin")
    answer = CliRunner().invoke(cli, ["profiles", "build", "--cache", str(tmp_path / "empty"), "--project", str(project)])
    assert answer.exit_code == 2 and "fhir-so packages seed" in answer.output
