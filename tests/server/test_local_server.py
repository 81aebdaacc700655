"""fhir_so.server without Java: configuration, pid files, stale jars, busy ports, missing tools, stop."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import responses
from click.testing import CliRunner

from fhir_so.cli import cli
from fhir_so.errors import LocalServerError, ToolMissingError
from fhir_so.server import JAR_NAME, LocalServer, ServerConfig, find_server_dir, jar_is_stale, port_in_use

REPO_SERVER = Path(__file__).resolve().parents[2] / "server"


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    """A stand-in for server/: a pom.xml and one source file, no jar."""
    src = tmp_path / "server"
    (src / "src" / "main" / "java").mkdir(parents=True)
    (src / "pom.xml").write_text("<project/>")
    (src / "src" / "main" / "java" / "App.java").write_text("class App {}")
    return src


@pytest.fixture
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def listener() -> Iterator[int]:
    """Something else listening on a port (not a fhir-so server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def make_server(source_dir: Path, tmp_path: Path, port: int | None = None, **overrides: object) -> LocalServer:
    # Never a real port by default: status and stop find any fhir-so server on their port.
    port = port or _unused_port()
    return LocalServer(ServerConfig(source_dir=source_dir, data_dir=tmp_path / "data", port=port, **overrides))  # type: ignore[arg-type]


def set_mtime(path: Path, when: float) -> None:
    os.utime(path, (when, when))


# -- configuration -------------------------------------------------------------------------


def test_server_dir_defaults_to_the_checkout_and_can_be_overridden(tmp_path: Path) -> None:
    assert find_server_dir({}) == REPO_SERVER
    (tmp_path / "pom.xml").write_text("<project/>")
    assert find_server_dir({"FHIR_SO_SERVER_DIR": str(tmp_path)}) == tmp_path


def test_server_dir_without_pom_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LocalServerError, match="FHIR_SO_SERVER_DIR") as caught:
        find_server_dir({"FHIR_SO_SERVER_DIR": str(tmp_path)})
    assert caught.value.exit_code == 3


def test_data_folder_per_port_under_var_or_fhir_so_data(source_dir: Path, tmp_path: Path) -> None:
    env = {"FHIR_SO_SERVER_DIR": str(source_dir)}
    config = ServerConfig.resolve(env, port=8091)
    assert config.data_dir == source_dir.parent / "var" / "hapi-8091"
    assert config.base_url == "http://127.0.0.1:8091/fhir"
    assert config.pid_file == config.data_dir / "server.pid"
    assert ServerConfig.resolve({**env, "FHIR_SO_DATA": str(tmp_path / "d")}).data_dir == tmp_path / "d" / "hapi-8090"
    assert ServerConfig.resolve(env, data_dir=tmp_path / "mine").data_dir == tmp_path / "mine"


# -- stale jar ----------------------------------------------------------------------------


def test_jar_is_stale_when_missing_or_older_than_any_source(source_dir: Path) -> None:
    jar = source_dir / "target" / JAR_NAME
    assert jar_is_stale(jar, source_dir)
    jar.parent.mkdir()
    jar.write_bytes(b"jar")
    now = time.time()
    for path in (source_dir / "pom.xml", source_dir / "src" / "main" / "java" / "App.java"):
        set_mtime(path, now - 100)
    set_mtime(jar, now - 50)
    assert not jar_is_stale(jar, source_dir)
    set_mtime(source_dir / "src" / "main" / "java" / "App.java", now)
    assert jar_is_stale(jar, source_dir)
    set_mtime(source_dir / "src" / "main" / "java" / "App.java", now - 100)
    set_mtime(source_dir / "pom.xml", now)
    assert jar_is_stale(jar, source_dir)


def fake_maven(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-mvn"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_build_runs_maven_once_extracts_then_skips_while_fresh(source_dir: Path, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    tools = tmp_path / "tools"
    tools.mkdir()
    java = fake_maven(tools, f'shift 4; [ "$1" = --destination ] && mkdir -p "$2" && echo app > "$2/{JAR_NAME}"')
    mvn = fake_maven(tmp_path, f'echo "$@" >> {calls}\nmkdir -p target && echo jar > target/{JAR_NAME}')
    server = make_server(source_dir, tmp_path, mvn=mvn, javac=sys.executable, java=java)
    old = source_dir / "target" / "app" / "lib" / "old.jar"
    old.parent.mkdir(parents=True)
    old.write_text("from an older build")
    lines: list[str] = []
    assert server.build(progress=lines.append) is True
    assert calls.read_text().split() == ["-q", "-B", "package", "-DskipTests"]
    assert lines and "Maven" in lines[0]
    assert server.config.app_jar.read_text() == "app\n"
    assert not old.exists()  # the extracted tree is replaced whole
    assert server.build() is False
    assert len(calls.read_text().splitlines()) == 1


def test_failed_maven_build_shows_the_end_of_its_log(source_dir: Path, tmp_path: Path) -> None:
    mvn = fake_maven(tmp_path, 'echo "[ERROR] cannot resolve ca.uhn.hapi.fhir:hapi-fhir-jpaserver-base"; exit 1')
    with pytest.raises(LocalServerError, match="hapi-fhir-jpaserver-base") as caught:
        make_server(source_dir, tmp_path, mvn=mvn, javac=sys.executable, java=sys.executable).build()
    assert "exit 1" in str(caught.value)


@pytest.mark.parametrize(
    ("missing", "named"),
    [("mvn", "Maven"), ("javac", "JDK"), ("java", "Java")],
    ids=["no-maven", "no-jdk", "no-java"],
)
def test_build_without_maven_or_jdk_says_which(source_dir: Path, tmp_path: Path, missing: str, named: str) -> None:
    tools = {"mvn": sys.executable, "javac": sys.executable, "java": sys.executable, missing: "no-such-tool-fhir-so"}
    with pytest.raises(ToolMissingError, match=named) as caught:
        make_server(source_dir, tmp_path, **tools).build()
    assert caught.value.exit_code == 2
    assert "no-such-tool-fhir-so" in str(caught.value)


@responses.activate
def test_start_without_java_says_so(source_dir: Path, tmp_path: Path, free_port: int) -> None:
    with pytest.raises(ToolMissingError, match="Java") as caught:
        make_server(source_dir, tmp_path, port=free_port, java="no-such-java-fhir-so").start()
    assert caught.value.exit_code == 2


# -- busy port ------------------------------------------------------------------------------


@responses.activate
def test_start_on_a_port_taken_by_another_program(source_dir: Path, tmp_path: Path, listener: int) -> None:
    assert port_in_use("127.0.0.1", listener)
    server = make_server(source_dir, tmp_path, port=listener)
    with pytest.raises(LocalServerError, match=f"port {listener} .* already in use") as caught:
        server.start()
    assert caught.value.exit_code == 3
    assert "--port N" in str(caught.value)
    assert not server.config.pid_file.exists()


@responses.activate
def test_busy_port_with_a_fhir_server_suggests_using_it(source_dir: Path, tmp_path: Path, listener: int) -> None:
    url = f"http://127.0.0.1:{listener}/fhir"
    responses.get(f"{url}/metadata", json={"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"})
    with pytest.raises(LocalServerError, match=f"--server {url}"):
        make_server(source_dir, tmp_path, port=listener).start()


def test_cli_start_on_a_busy_port_exits_3_with_the_message(source_dir: Path, tmp_path: Path, listener: int) -> None:
    env = {"FHIR_SO_SERVER_DIR": str(source_dir), "FHIR_SO_DATA": str(tmp_path)}
    with responses.RequestsMock():  # no network: the port's owner does not answer HTTP
        result = CliRunner().invoke(cli, ["server", "start", "--port", str(listener)], env=env)
    assert result.exit_code == 3
    assert "already in use" in result.output
    assert "Traceback" not in result.output


# -- pid file --------------------------------------------------------------------------------


def write_pid_file(server: LocalServer, content: str) -> None:
    server.config.pid_file.parent.mkdir(parents=True, exist_ok=True)
    server.config.pid_file.write_text(content)


@pytest.mark.parametrize("content", ["", "not json", '{"pid": "12"}', '{"pid": -4}', "[1]"], ids=repr)
def test_unreadable_pid_file_means_not_running(source_dir: Path, tmp_path: Path, content: str) -> None:
    server = make_server(source_dir, tmp_path)
    write_pid_file(server, content)
    assert server.read_pid() is None
    assert server.stop() is None


def test_pid_of_a_process_that_is_not_the_server_is_stale(source_dir: Path, tmp_path: Path) -> None:
    """A reused pid (here: this test's own process) is never signalled; the stale file goes."""
    server = make_server(source_dir, tmp_path)
    write_pid_file(server, json.dumps({"pid": os.getpid()}))
    assert server.read_pid() == os.getpid()
    assert server.running_pid() is None
    assert not server.config.pid_file.exists()
    assert server.stop() is None


def test_pid_of_a_process_that_has_exited_is_stale(source_dir: Path, tmp_path: Path) -> None:
    server = make_server(source_dir, tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    write_pid_file(server, json.dumps({"pid": proc.pid}))
    status = server.status()
    assert status.running is False and status.pid is None
    assert not server.config.pid_file.exists()


def fake_server_process(port: int) -> subprocess.Popen[bytes]:
    """A process whose command line looks like the server's (jar name and port), that obeys SIGTERM."""
    code = "import time\nwhile True: time.sleep(0.1)"
    return subprocess.Popen([sys.executable, "-c", code, f"/x/target/{JAR_NAME}", f"--server.port={port}"])


@responses.activate
def test_stop_ends_exactly_the_recorded_pid_and_waits(source_dir: Path, tmp_path: Path) -> None:
    server = make_server(source_dir, tmp_path, port=8099)
    bystander = fake_server_process(8098)  # same jar, another port: must survive
    target = fake_server_process(8099)
    try:
        time.sleep(0.3)  # let both exec, so /proc shows their arguments
        write_pid_file(server, json.dumps({"pid": target.pid}))
        status = server.status()
        assert status.running and status.pid == target.pid and not status.responding
        assert server.stop() == target.pid
        assert target.wait(timeout=5) is not None
        assert bystander.poll() is None
        assert not server.config.pid_file.exists()
    finally:
        for proc in (bystander, target):
            proc.kill()
            proc.wait()


@responses.activate
def test_start_when_running_says_already_running(source_dir: Path, tmp_path: Path) -> None:
    server = make_server(source_dir, tmp_path, port=8097)
    fake = fake_server_process(8097)
    responses.get(
        "http://127.0.0.1:8097/fhir/metadata",
        json={"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1", "software": {"name": "HAPI FHIR Server", "version": "8.8.0"}},
    )
    try:
        time.sleep(0.3)
        write_pid_file(server, json.dumps({"pid": fake.pid}))
        status = server.start()
        assert status.already_running and status.pid == fake.pid
        assert status.to_dict()["fhirVersion"] == "4.0.1"
        assert status.software == "HAPI FHIR Server 8.8.0"
    finally:
        fake.kill()
        fake.wait()


# -- reset ---------------------------------------------------------------------------------


def test_reset_removes_database_and_log_only(source_dir: Path, tmp_path: Path) -> None:
    server = make_server(source_dir, tmp_path)
    cfg = server.config
    (cfg.database_dir).mkdir(parents=True)
    (cfg.database_dir / "fhir.mv.db").write_bytes(b"db")
    cfg.log_file.write_text("log")
    keep = cfg.data_dir / "notes.txt"
    keep.write_text("mine")
    pid, removed = server.reset()
    assert pid is None
    assert removed == [cfg.database_dir, cfg.log_file]
    assert not cfg.database_dir.exists() and not cfg.log_file.exists()
    assert keep.read_text() == "mine"
    assert server.reset() == (None, [])


def test_cli_status_json_when_not_running(source_dir: Path, tmp_path: Path) -> None:
    env = {"FHIR_SO_SERVER_DIR": str(source_dir), "FHIR_SO_DATA": str(tmp_path)}
    result = CliRunner().invoke(cli, ["server", "status", "--port", "8123", "--json"], env=env)
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["running"] is False
    assert status["url"] == "http://127.0.0.1:8123/fhir"
    assert status["dataDir"] == str(tmp_path / "hapi-8123")


# -- start without a real server ----------------------------------------------------------


def built(source_dir: Path) -> None:
    """Pretend the jar was built from the current sources (so start does not call Maven)."""
    app_jar = source_dir / "target" / "app" / JAR_NAME
    app_jar.parent.mkdir(parents=True)
    app_jar.write_text("app")
    past = time.time() - 100
    for path in (source_dir / "pom.xml", source_dir / "src" / "main" / "java" / "App.java"):
        set_mtime(path, past)


def test_server_that_exits_during_start_up_shows_its_log(source_dir: Path, tmp_path: Path, free_port: int) -> None:
    built(source_dir)
    java = fake_maven(tmp_path, 'echo "APPLICATION FAILED TO START: no database"; exit 1')
    server = make_server(source_dir, tmp_path, port=free_port, java=java)
    with pytest.raises(LocalServerError, match="exited during start-up \\(exit 1\\)") as caught:
        server.start()
    assert "APPLICATION FAILED TO START" in str(caught.value)
    assert not server.config.pid_file.exists()


def test_server_that_never_answers_is_stopped_after_the_timeout(source_dir: Path, tmp_path: Path, free_port: int) -> None:
    built(source_dir)
    java = fake_maven(tmp_path, "echo starting; exec sleep 60")
    server = make_server(source_dir, tmp_path, port=free_port, java=java, start_timeout=1.5)
    with pytest.raises(LocalServerError, match="did not answer .* within 2 s and was stopped"):
        server.start()
    assert server._process is not None and server._process.poll() is not None  # ended, not left behind
    assert not server.config.pid_file.exists()


@responses.activate
def test_second_start_waits_for_a_server_still_starting(source_dir: Path, tmp_path: Path) -> None:
    url = "http://127.0.0.1:8096/fhir/metadata"
    responses.get(url, body=requests.ConnectionError("not yet"))
    responses.get(url, body=requests.ConnectionError("not yet"))
    responses.get(url, json={"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"})
    server = make_server(source_dir, tmp_path, port=8096)
    fake = fake_server_process(8096)
    try:
        time.sleep(0.3)
        write_pid_file(server, json.dumps({"pid": fake.pid}))
        status = server.start()
        assert status.already_running and status.responding and status.fhir_version == "4.0.1"
        assert len(responses.calls) == 3
    finally:
        fake.kill()
        fake.wait()


def test_cli_rejects_a_heap_size_java_would_not_take(source_dir: Path, tmp_path: Path) -> None:
    env = {"FHIR_SO_SERVER_DIR": str(source_dir), "FHIR_SO_DATA": str(tmp_path)}
    result = CliRunner().invoke(cli, ["server", "start", "--heap", "1gb"], env=env)
    assert result.exit_code == 2
    assert "not a Java heap size" in result.output


def test_status_and_stop_find_a_server_started_with_another_data_folder(source_dir: Path, tmp_path: Path) -> None:
    port = _unused_port()
    elsewhere = tmp_path / "elsewhere"
    code = "import time\nwhile True: time.sleep(0.1)"
    other = subprocess.Popen([sys.executable, "-c", code, f"/x/target/{JAR_NAME}", f"--server.port={port}", f"--fhirso.data={elsewhere}"])
    bystander = fake_server_process(_unused_port())
    try:
        time.sleep(0.3)  # let it exec, so /proc shows its arguments
        server = make_server(source_dir, tmp_path, port=port)  # data folder tmp_path/data: no pid file there
        with responses.RequestsMock() as mocked:
            mocked.get(f"http://127.0.0.1:{port}/fhir/metadata", status=503)
            status = server.status()
        assert status.running and status.pid == other.pid and status.data_dir == elsewhere
        assert server.reset() == (None, [])  # reset clears its own folder only: the other server lives
        assert other.poll() is None
        assert server.stop() == other.pid
        assert other.wait(timeout=5) is not None
        assert bystander.poll() is None
    finally:
        for proc in (other, bystander):
            proc.kill()
            proc.wait()
