"""Server profiles (tuned, public) and databases (h2, postgres) without Java: options, command line, conflicts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import responses
from click.testing import CliRunner

from fhir_so.cli import cli
from fhir_so.errors import InputError
from fhir_so.server import JAR_NAME, LocalServer, ServerConfig, launch_options
from tests.server.test_local_server import _unused_port, built, source_dir  # noqa: F401  (fixture)

CAPABILITY = {"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1", "software": {"name": "HAPI FHIR Server", "version": "8.8.0"}}


def fake_server(port: int, *args: str) -> subprocess.Popen[bytes]:
    """A process whose command line looks like a server's started with ``args``."""
    code = "import time\nwhile True: time.sleep(0.1)"
    return subprocess.Popen([sys.executable, "-c", code, f"/x/target/{JAR_NAME}", f"--server.port={port}", *args])


@pytest.fixture
def public_server(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = _unused_port()
    proc = fake_server(port, f"--fhirso.data={tmp_path / 'data'}", "--spring.profiles.active=public", "--fhirso.db.kind=h2")
    time.sleep(0.3)  # let it exec, so /proc shows its arguments
    try:
        yield port, proc
    finally:
        proc.kill()
        proc.wait()


def make(source: Path, tmp_path: Path, port: int, **overrides: object) -> LocalServer:
    return LocalServer(ServerConfig(source_dir=source, data_dir=tmp_path / "data", port=port, **overrides), {})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("profile", "stock", "unknown server profile 'stock'; choose one of tuned, public"),
     ("database", "mysql", "unknown server database 'mysql'; choose one of h2, postgres")],
    ids=["profile", "database"],
)
def test_unknown_profile_or_database_is_bad_input(tmp_path: Path, field: str, value: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        ServerConfig(source_dir=tmp_path, data_dir=tmp_path, **{field: value})  # type: ignore[arg-type]


def test_defaults_are_tuned_on_h2_and_postgres_lives_in_the_data_folder(tmp_path: Path) -> None:
    config = ServerConfig(source_dir=tmp_path, data_dir=tmp_path / "hapi-8090")
    assert (config.profile, config.database) == (None, None)  # not asked: any running server is fine
    assert (config.start_profile, config.start_database) == ("tuned", "h2")
    assert config.postgres_dir == tmp_path / "hapi-8090" / "pg"
    assert config.postgres({}).config.folder == config.postgres_dir


@pytest.mark.parametrize(
    ("args", "expected"),
    [([], ("tuned", "h2")),
     (["--spring.profiles.active=public"], ("public", "h2")),
     (["--spring.profiles.active=tuned", "--fhirso.db.kind=postgres"], ("tuned", "postgres"))],
    ids=["started-before-profiles", "public", "tuned-postgres"],
)
def test_launch_options_read_from_the_command_line(args: list[str], expected: tuple[str, str]) -> None:
    assert launch_options(["java", "-jar", JAR_NAME, *args]) == expected


def test_the_server_command_line_names_profile_and_database(source_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    built(source_dir)
    record = tmp_path / "args.json"
    java = tmp_path / "java"
    java.write_text(f"#!{sys.executable}\nimport json, sys\njson.dump(sys.argv[1:], open({str(record)!r}, 'w'))\nsys.exit(1)\n")
    java.chmod(0o755)
    server = make(source_dir, tmp_path, _unused_port(), java=str(java), profile="public")
    with pytest.raises(Exception, match="exited during start-up"):
        server.start()
    args = json.loads(record.read_text())
    assert "--spring.profiles.active=public" in args and "--fhirso.db.kind=h2" in args
    assert not any("password" in a.lower() for a in args)


@responses.activate
def test_status_says_which_profile_runs(source_dir: Path, tmp_path: Path, public_server: tuple[int, subprocess.Popen[bytes]]) -> None:  # noqa: F811
    port, proc = public_server
    responses.get(f"http://127.0.0.1:{port}/fhir/metadata", json=CAPABILITY)
    status = make(source_dir, tmp_path, port).status()
    assert status.running and status.pid == proc.pid
    assert status.to_dict()["profile"] == "public" and status.to_dict()["database"] == "h2"
    assert status.postgres is None


@responses.activate
def test_start_with_another_profile_on_the_same_port_is_refused(source_dir: Path, tmp_path: Path, public_server: tuple[int, subprocess.Popen[bytes]]) -> None:  # noqa: F811
    port, proc = public_server
    responses.get(f"http://127.0.0.1:{port}/fhir/metadata", json=CAPABILITY)
    with pytest.raises(InputError, match=f"runs with profile public, not profile tuned as asked; stop it first \\(fhir-so server stop --port {port}\\)"):
        make(source_dir, tmp_path, port, profile="tuned").start()
    with pytest.raises(InputError, match="runs with database h2, not database postgres"):
        make(source_dir, tmp_path, port, database="postgres").start()
    assert proc.poll() is None  # refused, not restarted
    # the same profile, or none asked for: reused
    assert make(source_dir, tmp_path, port, profile="public").start().already_running
    reused = make(source_dir, tmp_path, port).start()
    assert reused.already_running and reused.profile == "public"


def test_cli_conflict_exits_2_and_status_text_names_the_profile(source_dir: Path, tmp_path: Path, public_server: tuple[int, subprocess.Popen[bytes]]) -> None:  # noqa: F811
    port, _ = public_server
    env = {"FHIR_SO_SERVER_DIR": str(source_dir), "FHIR_SO_DATA": str(tmp_path)}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.get(f"http://127.0.0.1:{port}/fhir/metadata", json=CAPABILITY)
        result = CliRunner().invoke(cli, ["server", "start", "--port", str(port), "--profile", "tuned"], env=env)
        status = CliRunner().invoke(cli, ["server", "status", "--port", str(port)], env=env)
    assert result.exit_code == 2, result.output
    assert "runs with profile public, not profile tuned" in result.output
    assert "Traceback" not in result.output
    assert "profile public, database h2" in status.output


def test_cli_rejects_an_unknown_profile(source_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    env = {"FHIR_SO_SERVER_DIR": str(source_dir), "FHIR_SO_DATA": str(tmp_path)}
    result = CliRunner().invoke(cli, ["server", "start", "--profile", "stock"], env=env)
    assert result.exit_code == 2
    assert "'stock' is not one of 'tuned', 'public'" in result.output


def test_the_public_profile_properties_undo_the_tuned_choices() -> None:
    """application-public.properties sets every key the tuned profile (application.properties) decides."""
    resources = Path(__file__).resolve().parents[2] / "server" / "src" / "main" / "resources"

    def read(name: str) -> dict[str, str]:
        pairs = (line.split("=", 1) for line in (resources / name).read_text().splitlines() if "=" in line and not line.startswith("#"))
        return {k.strip(): v.strip() for k, v in pairs}

    tuned, public = read("application.properties"), read("application-public.properties")
    decided = {k for k in tuned if k.startswith("fhirso.") and k not in ("fhirso.data", "fhirso.db.kind")}
    assert decided <= set(public), decided - set(public)
    assert tuned["fhirso.search.reuse-cached-results-millis"] == ""  # off
    assert public["fhirso.search.reuse-cached-results-millis"] == "60000"
    assert public["fhirso.profile"] == "public" and tuned["fhirso.profile"] == "tuned"
    assert (public["fhirso.paging.default-size"], public["fhirso.paging.max-size"]) == ("20", "200")
