"""Installing packages by name from registries: fallback order, integrity, nearest versions, cycles, hostile tarballs.

HTTP is mocked with ``responses``: a URL nobody registered fails like an unreachable host.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
import responses
from click.testing import CliRunner

from fhir_so.cli import cli
from fhir_so.errors import ProfileError, ServerError, TransportError
from fhir_so.packages import STUB_VERSION, PackageCache, RegistryClient, install_from_registry, nearest_version, registries_from_env

FHIR = "https://packages.example.org"
NPM = "https://npm.example.org"


def tgz(name: str, version: str, deps: dict[str, str] | None = None, *, extra: list[tarfile.TarInfo] | None = None,
        files: dict[str, bytes] | None = None) -> bytes:
    """An npm tarball of a tiny FHIR package (one ValueSet), with optional extra (hostile) members."""
    manifest = {"name": name, "version": version, "fhirVersions": ["4.0.1"], "dependencies": deps or {}}
    vs = {"resourceType": "ValueSet", "id": name.replace(".", "-"), "url": f"http://example.org/ValueSet/{name}", "status": "active", "version": version}
    members = {"package/package.json": json.dumps(manifest).encode(), f"package/ValueSet-{vs['id']}.json": json.dumps(vs).encode(),
               "package/example/Patient-p.json": b'{"resourceType": "Patient"}', **(files or {})}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, data in members.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return buf.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def publish(rsps: responses.RequestsMock, registry: str, name: str, versions: dict[str, bytes], *, deps: dict[str, dict[str, str]] | None = None,
            checksum: str = "integrity") -> None:
    """Register a package listing and its tarballs on a mocked registry."""
    listing: dict[str, Any] = {"name": name, "versions": {}}
    for version, data in versions.items():
        dist: dict[str, str] = {"tarball": f"{registry}/{name}/-/{name}-{version}.tgz"}
        if checksum == "integrity":
            dist["integrity"] = integrity(data)
        elif checksum == "shasum":
            dist["shasum"] = hashlib.sha1(data).hexdigest()
        listing["versions"][version] = {"name": name, "version": version, "dist": dist, "dependencies": (deps or {}).get(version, {})}
        rsps.get(dist["tarball"], body=data, content_type="application/octet-stream")
    rsps.get(f"{registry}/{name}", json=listing)



def added(cache: PackageCache) -> list[str]:
    """What is in the cache besides core R4 (temporary folders included)."""
    return sorted(p.name for p in cache.root.iterdir() if p.name != "hl7.fhir.r4.core#4.0.1")


@pytest.fixture
def rsps() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def client(*registries: str) -> RegistryClient:
    return RegistryClient(list(registries) or [FHIR, NPM])


def test_the_first_registry_down_falls_back_to_the_next_once_with_a_note(cache: PackageCache, rsps: Any) -> None:
    publish(rsps, NPM, "ex.top", {"1.0.0": tgz("ex.top", "1.0.0", {"ex.dep": "2.0.0"})}, deps={"1.0.0": {"ex.dep": "2.0.0"}})
    publish(rsps, NPM, "ex.dep", {"2.0.0": tgz("ex.dep", "2.0.0")})
    with client() as reg:
        result = install_from_registry(cache, "ex.top#1.0.0", reg)
        notes = reg.notes
    assert result.downloaded == ["ex.top#1.0.0", "ex.dep#2.0.0"] and result.warnings == []
    assert [n for n in notes if "not reachable" in n] == [f"package registry {FHIR} is not reachable (ConnectionError); trying the next one"]
    assert sum(1 for c in rsps.calls if c.request.url.startswith(FHIR)) == 1  # a dead registry is asked once, not per package
    assert all(c.request.req_kwargs["timeout"] for c in rsps.calls)  # every request has a timeout
    installed = cache.package_dir("ex.top", "1.0.0") / "package"
    assert (installed / "package.json").is_file() and (installed / ".index.json").is_file() and (installed / "example" / "Patient-p.json").is_file()
    assert added(cache) == ["ex.dep#2.0.0", "ex.top#1.0.0"]  # no temporary folder left


def test_a_registry_without_the_package_falls_back_and_the_order_is_kept(cache: PackageCache, rsps: Any) -> None:
    rsps.get(f"{FHIR}/ex.top", status=404)
    publish(rsps, NPM, "ex.top", {"1.0.0": tgz("ex.top", "1.0.0")})
    publish(rsps, FHIR, "ex.other", {"1.0.0": tgz("ex.other", "1.0.0")})
    publish(rsps, NPM, "ex.other", {"1.0.0": b"never asked"})
    with client() as reg:
        assert install_from_registry(cache, "ex.top#1.0.0", reg).downloaded == ["ex.top#1.0.0"]
        install_from_registry(cache, "ex.other#1.0.0", reg)
    assert not any(c.request.url.startswith(f"{NPM}/ex.other") for c in rsps.calls)  # the first registry that has it wins
    assert json.loads((cache.package_dir("ex.other", "1.0.0") / ".fhir-so-install").read_text())["registry"] == FHIR


@pytest.mark.parametrize("checksum", ["integrity", "shasum"])
def test_a_tarball_that_fails_its_checksum_installs_nothing(cache: PackageCache, rsps: Any, checksum: str) -> None:
    good = tgz("ex.top", "1.0.0")
    publish(rsps, NPM, "ex.top", {"1.0.0": good}, checksum=checksum)
    rsps.replace(responses.GET, f"{NPM}/ex.top/-/ex.top-1.0.0.tgz", body=good[:-1] + b"!")
    with client(NPM) as reg, pytest.raises(ServerError, match="does not match its") as err:
        install_from_registry(cache, "ex.top#1.0.0", reg)
    assert err.value.exit_code == 3 and "ex.top#1.0.0" in str(err.value)
    assert added(cache) == []


def test_a_tarball_without_checksum_installs_with_a_note(cache: PackageCache, rsps: Any) -> None:
    publish(rsps, NPM, "ex.top", {"1.0.0": tgz("ex.top", "1.0.0")}, checksum="none")
    with client(NPM) as reg:
        install_from_registry(cache, "ex.top#1.0.0", reg)
        assert any("lists no checksum" in n for n in reg.notes)


@pytest.mark.parametrize(
    ("wanted", "available", "chosen"),
    [
        ("6.5.0", ["7.0.1"], "7.0.1"),  # only a later one: the lowest above
        ("5.2.0", ["5.1.0", "5.2.1", "5.3.0-ballot-tc1", "6.0.0"], "5.2.1"),  # same major.minor first
        ("5.2.0", ["5.1.0", "5.1.3", "6.0.0"], "5.1.3"),  # else the highest below
        ("5.2.0", ["5.3.0-ballot-tc1", "5.3.0", "6.0.0"], "5.3.0-ballot-tc1"),  # else the lowest above (a pre-release first)
        ("1.0.0", ["1.0.0", "2.0.0"], "1.0.0"),
        ("1.x", ["1.2.0", "1.10.0", "2.0.0"], "1.10.0"),
        ("latest", ["1.0.0", "2.0.0-ballot", "1.5.0"], "2.0.0-ballot"),
        ("1.0.0", [], None),
    ],
)
def test_nearest_version(wanted: str, available: list[str], chosen: str | None) -> None:
    assert nearest_version(wanted, available) == chosen


def test_a_missing_dependency_version_takes_the_nearest_with_a_warning(cache: PackageCache, rsps: Any) -> None:
    publish(rsps, NPM, "ex.top", {"1.0.0": tgz("ex.top", "1.0.0", {"ex.dep": "6.5.0", "ex.gone": "1.1.0"})},
            deps={"1.0.0": {"ex.dep": "6.5.0", "ex.gone": "1.1.0"}})
    publish(rsps, NPM, "ex.dep", {"7.0.1": tgz("ex.dep", "7.0.1"), "5.0.0": tgz("ex.dep", "5.0.0")})
    rsps.get(f"{NPM}/ex.gone", status=404)
    with client(NPM) as reg:
        result = install_from_registry(cache, "ex.top#1.0.0", reg)
    assert result.downloaded == ["ex.top#1.0.0", "ex.dep#5.0.0"]  # the highest below 6.5.0
    assert result.warnings == [
        "ex.top#1.0.0 depends on ex.dep#6.5.0, which is on no package registry; using ex.dep#5.0.0 instead",
        "ex.top#1.0.0 depends on ex.gone#1.1.0, which is on no package registry: left out",
    ]
    defs = cache.definitions(["ex.top#1.0.0"])  # offline, following the install record, with the same story
    assert [p.spec for p in defs.packages][:2] == ["ex.top#1.0.0", "ex.dep#5.0.0"]
    assert any("ex.gone#1.1.0" in w and "missing" in w for w in defs.warnings) and any("using ex.dep#5.0.0" in w for w in defs.warnings)


def test_the_package_asked_for_must_exist_at_that_version(cache: PackageCache, rsps: Any) -> None:
    publish(rsps, NPM, "ex.top", {"2.0.0": tgz("ex.top", "2.0.0")})
    rsps.get(f"{NPM}/ex.none", status=404)
    with client(NPM) as reg:
        with pytest.raises(ProfileError, match=r"ex.top#2.0.9 is not on any package registry; the nearest version there is 2.0.0"):
            install_from_registry(cache, "ex.top#2.0.9", reg)
        with pytest.raises(ProfileError, match="ex.none#1.0.0 is on no package registry"):
            install_from_registry(cache, "ex.none#1.0.0", reg)
        with pytest.raises(ProfileError, match="not a package reference"):
            install_from_registry(cache, "ex.top", reg)


def test_dependency_cycles_across_versions_terminate(cache: PackageCache, rsps: Any) -> None:
    # terminology -> extensions -> terminology at another version, as hl7.terminology.r4 and hl7.fhir.uv.extensions.r4 do
    publish(rsps, NPM, "ex.term", {"7.0.1": tgz("ex.term", "7.0.1", {"ex.ext": "5.2.0"})}, deps={"7.0.1": {"ex.ext": "5.2.0"}})
    publish(rsps, NPM, "ex.ext", {"5.3.0-ballot-tc1": tgz("ex.ext", "5.3.0-ballot-tc1", {"ex.term": "6.5.0"})}, deps={"5.3.0-ballot-tc1": {"ex.term": "6.5.0"}})
    with client(NPM) as reg:
        result = install_from_registry(cache, "ex.term#7.0.1", reg)
    assert result.downloaded == ["ex.term#7.0.1", "ex.ext#5.3.0-ballot-tc1"]
    assert len([c for c in rsps.calls if c.request.url.endswith(".tgz")]) == 2
    assert [p.spec for p in cache.definitions(["ex.term#7.0.1"]).packages][:2] == ["ex.term#7.0.1", "ex.ext#5.3.0-ballot-tc1"]


def test_a_cache_hit_sends_no_request(cache: PackageCache, rsps: Any) -> None:
    publish(rsps, NPM, "ex.top", {"1.0.0": tgz("ex.top", "1.0.0", {"ex.dep": "1.0.0"})}, deps={"1.0.0": {"ex.dep": "1.0.0"}})
    publish(rsps, NPM, "ex.dep", {"1.1.0": tgz("ex.dep", "1.1.0")})
    with client(NPM) as reg:
        install_from_registry(cache, "ex.top#1.0.0", reg)
    before = len(rsps.calls)
    with client("http://127.0.0.1:9") as reg:  # nothing answers there: a request would show as a note
        again = install_from_registry(PackageCache(cache.root), "ex.top#1.0.0", reg)
        assert reg.notes == []
    assert len(rsps.calls) == before and again.downloaded == [] and again.cached == ["ex.top#1.0.0", "ex.dep#1.1.0"]


def test_a_real_version_beats_a_stub_and_the_stub_stays_for_sushi(cache: PackageCache, rsps: Any) -> None:
    cache.seed_stub("hl7.terminology.r4")
    publish(rsps, NPM, "ex.ig", {"1.0.0": tgz("ex.ig", "1.0.0", {"hl7.terminology.r4": "6.5.0"})}, deps={"1.0.0": {"hl7.terminology.r4": "6.5.0"}})
    publish(rsps, NPM, "hl7.terminology.r4", {"7.0.1": tgz("hl7.terminology.r4", "7.0.1")})
    with client(NPM) as reg:
        result = install_from_registry(cache, "ex.ig#1.0.0", reg)
    assert result.downloaded == ["ex.ig#1.0.0", "hl7.terminology.r4#7.0.1"]
    assert cache.resolve_version("hl7.terminology.r4", "latest") == "7.0.1"
    assert cache.resolve_version("hl7.terminology.r4", STUB_VERSION) == STUB_VERSION  # what sushi-config.yaml names


def test_all_registries_down_is_a_network_error(cache: PackageCache, rsps: Any) -> None:
    with client() as reg, pytest.raises(TransportError, match="no package registry answered") as err:
        install_from_registry(cache, "ex.top#1.0.0", reg)
    assert err.value.exit_code == 3


def test_a_tarball_holding_another_package_is_refused(cache: PackageCache, rsps: Any) -> None:
    publish(rsps, NPM, "ex.top", {"1.0.0": tgz("ex.evil", "1.0.0")})
    with client(NPM) as reg, pytest.raises(ServerError, match="holds ex.evil#1.0.0"):
        install_from_registry(cache, "ex.top#1.0.0", reg)
    assert added(cache) == []


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", size: int = 1) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = size if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_member("/etc/evil"), "absolute path"),
        (_member("package/../../evil"), "'..'"),
        (_member("package/sub/../../../evil"), "'..'"),
        (_member("package/link", tarfile.SYMTYPE, "/etc/passwd"), "link"),
        (_member("package/hard", tarfile.LNKTYPE, "package/package.json"), "link"),
        (_member("package/dev", tarfile.CHRTYPE), "special file"),
        (_member("package/fifo", tarfile.FIFOTYPE), "special file"),
    ],
    ids=["absolute", "dotdot", "nested-dotdot", "symlink", "hardlink", "device", "fifo"],
)
def test_hostile_tarballs_are_refused_and_write_nothing(cache: PackageCache, rsps: Any, tmp_path: Path, member: tarfile.TarInfo, message: str) -> None:
    publish(rsps, NPM, "ex.top", {"1.0.0": tgz("ex.top", "1.0.0", extra=[member])})
    with client(NPM) as reg, pytest.raises(ProfileError, match=message):
        install_from_registry(cache, "ex.top#1.0.0", reg)
    assert added(cache) == [] and not (tmp_path / "evil").exists()


def test_a_file_and_a_folder_of_one_name_fail_clearly(cache: PackageCache, rsps: Any) -> None:
    publish(rsps, NPM, "ex.top", {"1.0.0": tgz("ex.top", "1.0.0", files={"package/a": b"x", "package/a/b.json": b"{}"})})
    with client(NPM) as reg, pytest.raises(ProfileError, match="cannot unpack"):
        install_from_registry(cache, "ex.top#1.0.0", reg)
    assert added(cache) == []


def test_files_outside_package_are_ignored(cache: PackageCache, rsps: Any) -> None:
    publish(rsps, NPM, "ex.top", {"1.0.0": tgz("ex.top", "1.0.0", files={"other/readme.txt": b"x", "package/other/spec.json": b"{}"})})
    with client(NPM) as reg:
        pkg = install_from_registry(cache, "ex.top#1.0.0", reg).package
    assert pkg.path is not None and (pkg.path / "other" / "spec.json").is_file()
    assert not (pkg.path.parent / "other").exists()


def test_registries_come_from_the_environment() -> None:
    assert registries_from_env({}) == ["https://packages.fhir.org", "https://registry.npmjs.org"]
    assert registries_from_env({"FHIR_SO_PACKAGE_REGISTRIES": "https://a.example/ , https://b.example"}) == ["https://a.example", "https://b.example"]
    with pytest.raises(ProfileError, match="not a registry URL"):
        RegistryClient(["ftp://x"])


def test_cli_install_by_name_exit_codes_and_no_traceback(cache: PackageCache, rsps: Any) -> None:
    publish(rsps, NPM, "ex.top", {"1.0.0": tgz("ex.top", "1.0.0")})
    rsps.get(f"{NPM}/ex.none", status=404)
    runner = CliRunner()
    base = ["packages", "install", "--cache", str(cache.root), "--registry", FHIR, "--registry", NPM]
    ok = runner.invoke(cli, [*base, "--json", "ex.top#1.0.0"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["downloaded"] == ["ex.top#1.0.0"] and f"{FHIR} is not reachable" in ok.stderr
    missing = runner.invoke(cli, [*base, "ex.none#1.0.0"])
    assert missing.exit_code == 2 and "ex.none#1.0.0" in missing.stderr and "Traceback" not in missing.output
    down = runner.invoke(cli, ["packages", "install", "--cache", str(cache.root), "--registry", FHIR, "ex.x#1.0.0"])
    assert down.exit_code == 3 and "ex.x#1.0.0" in down.stderr and "Traceback" not in down.output
    bad = runner.invoke(cli, [*base, "not-a-spec"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_cli_validate_installs_a_package_on_first_use(cache: PackageCache, rsps: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    publish(rsps, NPM, "ex.top", {"1.0.0": tgz("ex.top", "1.0.0")})
    monkeypatch.setenv("FHIR_SO_PACKAGES", str(cache.root))
    monkeypatch.setenv("FHIR_SO_PACKAGE_REGISTRIES", NPM)
    patient = tmp_path / "p.json"
    patient.write_text(json.dumps({"resourceType": "Patient", "id": "p"}), encoding="utf-8")
    first = CliRunner().invoke(cli, ["validate", "--package", "ex.top#1.0.0", str(patient)])
    assert first.exit_code == 0, first.output
    assert (cache.package_dir("ex.top", "1.0.0") / "package" / "package.json").is_file()
    calls = len(rsps.calls)
    again = CliRunner().invoke(cli, ["validate", "--package", "ex.top#1.0.0", str(patient)])
    assert again.exit_code == 0 and len(rsps.calls) == calls  # offline afterwards
