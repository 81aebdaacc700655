"""fhir_so.postgres: finding Debian's programs, and a real PostgreSQL made, started, stopped and removed (no Java)."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_so.errors import LocalServerError, ToolMissingError
from fhir_so.postgres import PROGRAMS, LocalPostgres, PostgresConfig, find_pg_bin, free_port
from fhir_so.server import LocalServer, ServerConfig
from tests.prerequisites import need


def fake_bin(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in PROGRAMS:
        (folder / name).write_text("#!/bin/sh\n")
    return folder


def test_find_pg_bin_takes_the_configured_folder_first(tmp_path: Path) -> None:
    folder = fake_bin(tmp_path / "pg" / "bin")
    assert find_pg_bin({"FHIR_SO_PG_BIN": str(folder)}) == folder


def test_find_pg_bin_takes_the_newest_unpacked_version_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache" / "fhir-so" / "postgresql" / "usr" / "lib" / "postgresql"
    fake_bin(cache / "9.6" / "bin")
    newest = fake_bin(cache / "15" / "bin")
    monkeypatch.setattr("fhir_so.postgres.Path.glob", _only_under(tmp_path))
    assert find_pg_bin({"XDG_CACHE_HOME": str(tmp_path / "cache")}) == newest


def _only_under(root: Path):  # type: ignore[no-untyped-def]
    """Path.glob that sees nothing outside ``root`` (so the machine's own /usr/lib/postgresql is ignored)."""
    original = Path.glob

    def glob(self: Path, pattern: str):  # type: ignore[no-untyped-def]
        return original(self, pattern) if root in self.parents or self == root else iter(())

    return glob


def test_missing_programs_name_how_to_install_them(tmp_path: Path) -> None:
    with pytest.raises(ToolMissingError, match="apt-get install postgresql") as caught:
        find_pg_bin({"FHIR_SO_PG_BIN": str(tmp_path / "nothing")})
    assert caught.value.exit_code == 2


def test_free_port_is_free() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # would raise if taken


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[LocalPostgres]:
    try:
        find_pg_bin(os.environ)
    except ToolMissingError as exc:
        need(str(exc))
    database = LocalPostgres(PostgresConfig(folder=tmp_path / "hapi-1" / "pg"), os.environ)
    try:
        yield database
    finally:
        database.stop()


def test_a_real_postgres_is_made_started_reused_stopped_and_removed(postgres: LocalPostgres) -> None:
    cfg = postgres.config
    assert postgres.status().running is False
    status = postgres.start()
    assert status.running and status.port and status.pid
    assert postgres.initialised and postgres.recorded_port() == status.port
    # the password: generated, readable by its owner only, in no log
    assert stat.S_IMODE(cfg.password_file.stat().st_mode) == 0o600
    password = postgres.password()
    assert len(password) >= 24
    assert password not in cfg.log_file.read_text(errors="replace")
    # listening on localhost, with its socket in its own folder
    with socket.create_connection(("127.0.0.1", status.port), timeout=5):
        pass
    assert (cfg.socket_dir / f".s.PGSQL.{status.port}").exists()
    assert postgres.jdbc_url(status.port) == f"jdbc:postgresql://127.0.0.1:{status.port}/hapi"
    again = postgres.start()
    assert again.already_running and again.pid == status.pid
    assert postgres.stop() == status.pid
    assert postgres.status().running is False
    # a second start keeps the cluster, the password and the port
    restarted = postgres.start()
    assert restarted.port == status.port and postgres.password() == password
    assert postgres.remove() is True
    assert not cfg.folder.exists()


def test_server_stop_stops_its_postgres_even_without_the_server(postgres: LocalPostgres, tmp_path: Path) -> None:
    """A server that died leaves its PostgreSQL running: stop ends it all the same."""
    port = _port()
    config = ServerConfig(source_dir=tmp_path, data_dir=tmp_path / "hapi-1", port=port)
    assert config.postgres_dir == postgres.config.folder
    pid = postgres.start().pid
    assert LocalServer(config, os.environ).stop() is None  # no server ran
    assert postgres.status().running is False and pid is not None


def test_asking_for_another_port_while_running_is_refused(postgres: LocalPostgres) -> None:
    running = postgres.start()
    other = LocalPostgres(PostgresConfig(folder=postgres.config.folder, port=_port()), os.environ)
    with pytest.raises(LocalServerError, match=f"already runs on port {running.port}"):
        other.start()
    assert postgres.password() not in str(running.to_dict())


def _port() -> int:
    return free_port()
