"""Loading packages from the cache, a folder or a .tgz, with their dependencies; broken packages fail clearly."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fhir_so.cli import cli
from fhir_so.errors import ProfileError
from fhir_so.packages import CORE_SPEC, Definitions, PackageCache
from tests.packages.package_helpers import make_tgz, value_set, write_package



def test_core_definitions_by_url_type_name_and_version(cache: PackageCache) -> None:
    defs = cache.definitions()
    assert [p.spec for p in defs.packages] == [CORE_SPEC]
    patient = defs.structure_definition("Patient")
    assert patient is not None and patient["url"] == "http://hl7.org/fhir/StructureDefinition/Patient"
    assert defs.structure_definition("http://hl7.org/fhir/StructureDefinition/Patient|4.0.1") is patient
    assert defs.structure_definition("NoSuchType") is None
    gender = defs.value_set("http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1")
    assert gender is not None and gender["id"] == "administrative-gender"
    cs = defs.code_system("http://terminology.hl7.org/CodeSystem/v2-0336")
    assert cs is not None and {c["code"] for c in cs["concept"]} >= {"S"}
    assert defs.code_system("http://hl7.org/fhir/ValueSet/administrative-gender") is None  # kinds are kept apart
    searches = list(defs.resources_of_type("SearchParameter"))
    assert len(searches) >= 1300 and all(s["resourceType"] == "SearchParameter" for s in searches[:20])
    assert "http://hl7.org/fhir/StructureDefinition/vitalsigns" in defs.profiles_for_type("Observation")


def test_core_loads_fast_from_its_index(cache: PackageCache) -> None:
    # a guard against losing the index (parsing every file takes seconds), not a benchmark
    best = min(_timed(lambda: PackageCache(cache.root).definitions().structure_definition("Patient")) for _ in range(3))
    assert best < 1.0


def _timed(fn: object) -> float:
    started = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - started


def test_load_by_name_folder_and_tgz(cache: PackageCache, tmp_path: Path) -> None:
    folder = write_package(tmp_path / "a", "example.a", "1.0.0", [value_set("a", "http://ex.org/ValueSet/a")])
    for spec in (str(folder), str(folder / "package"), str(make_tgz(folder, tmp_path / "a.tgz"))):
        pkg = PackageCache(cache.root).load(spec)
        assert (pkg.name, pkg.version, pkg.fhir_versions) == ("example.a", "1.0.0", ["4.0.1"])
        assert [r["url"] for r in pkg.resources] == ["http://ex.org/ValueSet/a"]
    installed = cache.install(str(tmp_path / "a.tgz"))
    assert installed.path == cache.package_dir("example.a", "1.0.0") / "package"
    assert PackageCache(cache.root).load("example.a#1.0.0").resources[0]["id"] == "a"
    assert ("example.a", "1.0.0") in cache.installed()


def test_dependencies_resolve_recursively_and_the_first_definition_wins(cache: PackageCache, tmp_path: Path) -> None:
    write_package(tmp_path / "c", "example.c", "3.0.0", [value_set("c", "http://ex.org/ValueSet/c"), value_set("shared", "http://ex.org/ValueSet/shared", "c")])
    cache.install(str(tmp_path / "c"))
    write_package(tmp_path / "b", "example.b", "2.1.0", [value_set("b", "http://ex.org/ValueSet/b")], {"example.c": "3.0.0", "hl7.fhir.r4.core": "4.0.1"})
    cache.install(str(tmp_path / "b"))
    top = write_package(
        tmp_path / "top", "example.top", "0.1.0", [value_set("shared", "http://ex.org/ValueSet/shared", "top")], {"example.b": "2.1.x"}
    )
    defs = cache.definitions([str(top)])
    assert [p.spec for p in defs.packages] == ["example.top#0.1.0", "example.b#2.1.0", "example.c#3.0.0", CORE_SPEC]
    assert defs.value_set("http://ex.org/ValueSet/c") is not None
    assert defs.value_set("http://ex.org/ValueSet/shared")["version"] == "top"  # type: ignore[index]
    assert defs.value_set("http://ex.org/ValueSet/shared|c")["version"] == "c"  # type: ignore[index]
    assert defs.structure_definition("Patient") is not None


def test_a_stale_index_is_rebuilt(cache: PackageCache, tmp_path: Path) -> None:
    folder = write_package(tmp_path / "a", "example.a", "1.0.0", [value_set("a", "http://ex.org/ValueSet/a")])
    assert len(PackageCache(cache.root).load(str(folder)).entries) == 1
    (folder / "package" / "ValueSet-new.json").write_text(json.dumps(value_set("new", "http://ex.org/ValueSet/new")), encoding="utf-8")
    defs = PackageCache(cache.root).definitions([str(folder)])
    assert defs.value_set("http://ex.org/ValueSet/new") is not None


def test_definitions_is_usable_without_a_cache(tmp_path: Path) -> None:
    folder = write_package(tmp_path / "a", "example.a", "1.0.0", [value_set("a", "http://ex.org/ValueSet/a")])
    defs = Definitions([PackageCache(tmp_path).load(str(folder))])
    assert defs.value_set("http://ex.org/ValueSet/a") is not None and defs.structure_definition("Patient") is None


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: (d / "package").mkdir(parents=True), "no package.json"),
        (lambda d: _write(d / "package" / "package.json", "{not json"), "malformed JSON"),
        (lambda d: _write(d / "package" / "package.json", '{"name": "x"}'), "no 'version'"),
        (lambda d: _write(d / "package" / "package.json", '{"name": "x", "version": "1", "dependencies": {"nowhere.pkg": "9.9.9"}}'), "nowhere.pkg#9.9.9"),
    ],
    ids=["no-package-json", "bad-json", "no-version", "unknown-dependency"],
)
def test_broken_packages_fail_with_a_clear_message(cache: PackageCache, tmp_path: Path, setup: object, message: str) -> None:
    folder = tmp_path / "broken"
    setup(folder)  # type: ignore[operator]
    with pytest.raises(ProfileError, match=message) as err:
        cache.definitions([str(folder)])
    assert str(folder) in str(err.value) or "package x#1" in str(err.value)
    result = CliRunner().invoke(cli, ["packages", "install", "--cache", str(cache.root), str(folder)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_a_broken_resource_file_names_package_and_file(cache: PackageCache, tmp_path: Path) -> None:
    folder = write_package(tmp_path / "a", "example.a", "1.0.0", [value_set("a", "http://ex.org/ValueSet/a")])
    pkg = PackageCache(cache.root).load(str(folder))
    (folder / "package" / "ValueSet-a.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(ProfileError) as err:
        pkg.read("ValueSet-a.json")
    assert "example.a#1.0.0" in str(err.value) and "ValueSet-a.json" in str(err.value)


def test_unknown_names_and_paths(cache: PackageCache, tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="not in the package cache"):
        cache.load("hl7.fhir.us.core#5.0.1")
    with pytest.raises(ProfileError, match="no such package"):
        cache.load(str(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(ProfileError, match="expected a folder"):
        cache.load(str(tmp_path / "notes.txt"))
    (tmp_path / "bad.tgz").write_bytes(b"not a tarball")
    with pytest.raises(ProfileError, match="not a readable .tgz"):
        cache.load(str(tmp_path / "bad.tgz"))


def test_cli_list_and_install(cache: PackageCache, tmp_path: Path) -> None:
    tgz = make_tgz(write_package(tmp_path / "a", "example.a", "1.0.0", [value_set("a", "http://ex.org/ValueSet/a")]), tmp_path / "a.tgz")
    runner = CliRunner()
    result = runner.invoke(cli, ["packages", "install", "--cache", str(cache.root), "--json", str(tgz)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["resources"] == 1
    listed = runner.invoke(cli, ["packages", "list", "--cache", str(cache.root)])
    assert listed.exit_code == 0 and listed.stdout.split() == ["example.a#1.0.0", CORE_SPEC]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_versions_resolve_exact_wildcard_and_latest_but_never_to_a_stub(cache: PackageCache, tmp_path: Path) -> None:
    for version in ("1.2.0", "1.10.0", "2.0.0"):
        cache.install(str(write_package(tmp_path / version, "example.v", version, [])))
    cache.seed_stub("example.stubbed")
    assert cache.resolve_version("example.v", "1.2.0") == "1.2.0"
    assert cache.resolve_version("example.v", "1.x") == "1.10.0"
    assert cache.resolve_version("example.v", "latest") == "2.0.0"
    assert cache.resolve_version("example.v", "3.0.0") is None
    assert cache.resolve_version("example.stubbed", "latest") is None
    assert cache.resolve_version("example.stubbed", "0.0.0-fhir-so-stub") == "0.0.0-fhir-so-stub"
