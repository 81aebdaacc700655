"""Build, start, stop, inspect and reset the local HAPI FHIR server (``server/``: Java 17, Maven, H2 or PostgreSQL).

One :class:`LocalServer` per instance, configured by a :class:`ServerConfig` (port, data folder,
profile, database, heap, paths to the sources and the tools). An instance keeps everything of
its own under its data folder: the H2 database (``h2/``) or its PostgreSQL (``pg/``, see
:mod:`fhir_so.postgres`), the log (``server.log``) and the pid file (``server.pid``). Two
instances on two ports with two data folders are two independent servers (a transfer's source
and destination).

Two profiles (``PROFILES``): ``tuned``, the project's own settings (no cached-search reuse, so a
search sees the writes made just before it), and ``public``, the defaults of HAPI's JPA starter
that HAPI's public test server runs (search results reused for 60 s, page sizes of the starter,
narratives generated, external references refused). The Java side reads them as a Spring
profile (``server/src/main/resources/application-public.properties``). Which profile and which
database a running server has is read from its command line, so ``status`` tells, and a start
that asks for another one on the same port is refused instead of silently reusing it.

The server runs detached from the process that started it (its own session), so
``fhir-so server start`` returns once ``/fhir/metadata`` answers, and ``stop`` ends exactly the
pid written in the pid file, after checking that this pid is still that server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import requests

from fhir_so.errors import InputError, LocalServerError, ToolMissingError
from fhir_so.jsonio import write_atomic
from fhir_so.processes import cmdline as _cmdline
from fhir_so.processes import pid_alive as _pid_alive
from fhir_so.processes import port_in_use
from fhir_so.postgres import LocalPostgres, PostgresConfig, PostgresStatus

__all__ = [
    "DATABASES",
    "DEFAULT_DATABASE",
    "DEFAULT_HEAP",
    "DEFAULT_PORT",
    "DEFAULT_PROFILE",
    "JAR_NAME",
    "LocalServer",
    "PROFILES",
    "ServerConfig",
    "ServerStatus",
    "find_server_dir",
    "jar_is_stale",
    "launch_options",
    "port_in_use",
]

DEFAULT_PORT = 8090
# HAPI JPA with H2 idles at about 0.6-0.9 GB resident with this heap; 1 GB of heap is plenty for
# the demo and the tests and keeps two instances (source and destination) well within 4 GB.
DEFAULT_HEAP = "1g"
JAR_NAME = "fhir-so-server.jar"
# C1 only and the serial collector: HAPI starts about a third faster and uses fewer threads on
# a small machine; the server's peak throughput does not matter for a local test server.
JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xss512k")
# The server profiles: the project's tuned settings, and HAPI's JPA starter defaults (the public test server's).
PROFILES = ("tuned", "public")
DEFAULT_PROFILE = "tuned"
DATABASES = ("h2", "postgres")
DEFAULT_DATABASE = "h2"
# The Java side's names for them, on the server's command line (and read back from it).
PROFILE_ARG = "--spring.profiles.active="
DATABASE_ARG = "--fhirso.db.kind="
# The PostgreSQL password reaches the server in its environment (Spring reads it as fhirso.db.password).
PASSWORD_VARIABLE = "FHIRSO_DB_PASSWORD"

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    """A progress sink that says nothing."""


def find_server_dir(env: Mapping[str, str]) -> Path:
    """The folder holding the server's ``pom.xml``: ``$FHIR_SO_SERVER_DIR`` or ``server/`` of this checkout."""
    configured = env.get("FHIR_SO_SERVER_DIR")
    candidate = Path(configured) if configured else Path(__file__).resolve().parent.parent / "server"
    if not (candidate / "pom.xml").is_file():
        where = "FHIR_SO_SERVER_DIR" if configured else "this fhir-so checkout"
        raise LocalServerError(
            f"the server sources (pom.xml) are not in {candidate} ({where}); "
            "set FHIR_SO_SERVER_DIR to the folder holding server/pom.xml"
        )
    return candidate


@dataclass(frozen=True)
class ServerConfig:
    """Everything one local server instance needs: where it listens, where it keeps its data, how it runs."""

    source_dir: Path
    data_dir: Path
    port: int = DEFAULT_PORT
    host: str = "127.0.0.1"
    heap: str = DEFAULT_HEAP
    start_timeout: float = 300.0
    stop_timeout: float = 60.0
    java: str = "java"
    javac: str = "javac"
    mvn: str = "mvn"
    maven_args: tuple[str, ...] = ()
    jvm_options: tuple[str, ...] = JVM_OPTIONS
    # None: the default (tuned, h2) when starting, and whatever runs when reusing a running server.
    profile: str | None = None
    database: str | None = None
    # The PostgreSQL port (--db postgres); None: the one it had, else a free one.
    pg_port: int | None = None

    def __post_init__(self) -> None:
        if self.profile is not None and self.profile not in PROFILES:
            raise InputError(f"unknown server profile {self.profile!r}; choose one of {', '.join(PROFILES)}")
        if self.database is not None and self.database not in DATABASES:
            raise InputError(f"unknown server database {self.database!r}; choose one of {', '.join(DATABASES)}")

    @property
    def start_profile(self) -> str:
        return self.profile or DEFAULT_PROFILE

    @property
    def start_database(self) -> str:
        return self.database or DEFAULT_DATABASE

    @classmethod
    def resolve(
        cls,
        env: Mapping[str, str],
        *,
        port: int | None = None,
        data_dir: Path | None = None,
        **overrides: Any,
    ) -> ServerConfig:
        """Fill in the defaults: sources from the checkout, data under ``var/hapi-PORT`` (or ``$FHIR_SO_DATA/hapi-PORT``)."""
        source_dir = overrides.pop("source_dir", None) or find_server_dir(env)
        port = port or DEFAULT_PORT
        if data_dir is None:
            root = Path(env["FHIR_SO_DATA"]) if env.get("FHIR_SO_DATA") else source_dir.parent / "var"
            data_dir = root / f"hapi-{port}"
        return cls(source_dir=Path(source_dir), data_dir=Path(data_dir).absolute(), port=port, **overrides)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/fhir"

    @property
    def jar(self) -> Path:
        """The executable jar Maven builds (nested jars inside)."""
        return self.source_dir / "target" / JAR_NAME

    @property
    def app_jar(self) -> Path:
        """The jar that runs: the Maven jar extracted to plain jars, which starts a quarter faster."""
        return self.source_dir / "target" / "app" / JAR_NAME

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "server.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def database_dir(self) -> Path:
        return self.data_dir / "h2"

    @property
    def postgres_dir(self) -> Path:
        return self.data_dir / "pg"

    def postgres(self, env: Mapping[str, str], data_dir: Path | None = None) -> LocalPostgres:
        """The PostgreSQL of this instance (of ``data_dir`` when the running server has another folder)."""
        folder = (data_dir / "pg") if data_dir is not None else self.postgres_dir
        return LocalPostgres(PostgresConfig(folder=folder, port=self.pg_port, host=self.host), env)

    def with_port(self, port: int) -> ServerConfig:
        return replace(self, port=port)


@dataclass
class ServerStatus:
    """What ``status`` reports: whether the instance runs, answers, and what it is."""

    running: bool
    url: str
    port: int
    data_dir: Path
    pid: int | None = None
    responding: bool = False
    fhir_version: str | None = None
    software: str | None = None
    already_running: bool = False
    seconds: float | None = None
    notes: list[str] = field(default_factory=list)
    # What the running server was started with (None when it does not run).
    profile: str | None = None
    database: str | None = None
    postgres: PostgresStatus | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "responding": self.responding,
            "url": self.url,
            "port": self.port,
            "pid": self.pid,
            "profile": self.profile,
            "database": self.database,
            "postgres": None if self.postgres is None else self.postgres.to_dict(),
            "fhirVersion": self.fhir_version,
            "software": self.software,
            "dataDir": str(self.data_dir),
            "alreadyRunning": self.already_running,
            "seconds": None if self.seconds is None else round(self.seconds, 1),
        }


def launch_options(args: Sequence[str]) -> tuple[str, str]:
    """(profile, database) of a server from its command line; a server started without them is tuned on H2."""
    profile = next((a.removeprefix(PROFILE_ARG) for a in args if a.startswith(PROFILE_ARG)), DEFAULT_PROFILE)
    database = next((a.removeprefix(DATABASE_ARG) for a in args if a.startswith(DATABASE_ARG)), DEFAULT_DATABASE)
    return profile, database


def jar_is_stale(jar: Path, source_dir: Path) -> bool:
    """True when the jar is missing or older than ``pom.xml`` or any file under ``src/``."""
    if not jar.is_file():
        return True
    built = jar.stat().st_mtime
    sources = [source_dir / "pom.xml", *(p for p in (source_dir / "src").rglob("*") if p.is_file())]
    return any(p.stat().st_mtime > built for p in sources if p.exists())


def _tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def find_port_owner(port: int) -> tuple[int, Path] | None:
    """(pid, data folder) of a fhir-so server listening on ``port``, whatever its data folder (Linux /proc).

    ``status`` and ``stop`` use it when the pid file of the expected folder names no server:
    an instance started with another ``--data`` (or ``$FHIR_SO_DATA``) is still found by its port.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        args = _cmdline(int(entry.name))
        if not args or not any(a.endswith(JAR_NAME) for a in args) or f"--server.port={port}" not in args:
            continue
        data = next((a.split("=", 1)[1] for a in args if a.startswith("--fhirso.data=")), None)
        if data and _pid_alive(int(entry.name)):
            return int(entry.name), Path(data)
    return None


class LocalServer:
    """One local HAPI FHIR server instance: build its jar, start, stop, status, reset."""

    def __init__(self, config: ServerConfig, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        # Where PostgreSQL's programs are looked up ($FHIR_SO_PG_BIN, $HOME); the process's own by default.
        self.env: Mapping[str, str] = os.environ if env is None else env
        self._process: subprocess.Popen[bytes] | None = None

    # -- build ----------------------------------------------------------------------------

    def needs_build(self) -> bool:
        return jar_is_stale(self.config.app_jar, self.config.source_dir)

    def build(self, *, force: bool = False, progress: Progress = _quiet) -> bool:
        """Build the jar with Maven when it is missing or older than its sources, and extract it; True when it built."""
        cfg = self.config
        if not force and not self.needs_build():
            return False
        mvn = self._require_tool(cfg.mvn, "Maven (mvn)", "apt-get install maven")
        self._require_tool(cfg.javac, "a JDK 17 or newer (javac)", "apt-get install openjdk-17-jdk-headless")
        java = self._require_tool(cfg.java, "Java (a JDK or JRE 17 or newer)", "apt-get install openjdk-17-jdk-headless")
        log = cfg.source_dir / "target" / "maven-build.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        command = [mvn, "-q", "-B", "package", "-DskipTests", *cfg.maven_args]
        progress(
            "building the HAPI FHIR server jar with Maven "
            "(the first build downloads about 350 MB into the Maven cache and takes a few minutes)"
        )
        started = time.monotonic()
        with log.open("wb") as out:
            process = subprocess.Popen(command, cwd=cfg.source_dir, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            next_note = 30.0
            while process.poll() is None:
                time.sleep(0.5)
                elapsed = time.monotonic() - started
                if elapsed >= next_note:
                    progress(f"  Maven still working ({elapsed:.0f} s)")
                    next_note += 30.0
        if process.returncode != 0:
            raise LocalServerError(f"the Maven build failed (exit {process.returncode}); the end of {log}:\n{_tail(log)}")
        if not cfg.jar.is_file():
            raise LocalServerError(f"Maven succeeded but did not make {cfg.jar}; see {log}")
        self._extract(java)
        # An unchanged jar may keep its old time: mark the result as built from the current sources.
        os.utime(cfg.app_jar)
        progress(f"built {cfg.app_jar} in {time.monotonic() - started:.0f} s")
        return True

    def _extract(self, java: str) -> None:
        """Extract the Maven jar (Spring Boot's jarmode tools) into target/app, replacing the old one whole.

        The new tree is made beside the old and swapped in, so a server still running from the
        old files keeps them (open files outlive their unlinking).
        """
        app = self.config.app_jar.parent
        fresh = app.with_name("app.new")
        shutil.rmtree(fresh, ignore_errors=True)
        done = subprocess.run(
            [java, "-Djarmode=tools", "-jar", str(self.config.jar), "extract", "--destination", str(fresh)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not (fresh / JAR_NAME).is_file():
            raise LocalServerError(f"extracting {self.config.jar} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
        shutil.rmtree(app, ignore_errors=True)
        fresh.rename(app)

    # -- pid file ---------------------------------------------------------------------------

    def read_pid(self) -> int | None:
        """The pid recorded in the pid file, or None (no file, or a file that is not ours)."""
        try:
            record = json.loads(self.config.pid_file.read_text(encoding="utf-8"))
            pid = record["pid"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return pid if isinstance(pid, int) and pid > 0 else None

    def _write_pid(self, pid: int) -> None:
        record = {
            "pid": pid,
            "port": self.config.port,
            "url": self.config.base_url,
            "profile": self.config.start_profile,
            "database": self.config.start_database,
            "jar": str(self.config.app_jar),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_atomic(self.config.pid_file, json.dumps(record, indent=2) + "\n")

    def _clear_pid(self) -> None:
        self.config.pid_file.unlink(missing_ok=True)

    def is_our_process(self, pid: int) -> bool:
        """True when pid is alive and is this instance's server (not a reused pid)."""
        if self._process is not None and self._process.pid == pid:
            return self._process.poll() is None
        if not _pid_alive(pid):
            return False
        args = _cmdline(pid)
        if args is None:  # no /proc: trust the pid file
            return True
        return any(a.endswith(JAR_NAME) for a in args) and f"--server.port={self.config.port}" in args

    def running_pid(self) -> int | None:
        """The pid of this instance's running server; a stale pid file is removed."""
        pid = self.read_pid()
        if pid is None:
            return None
        if self.is_our_process(pid):
            return pid
        self._clear_pid()
        return None

    # -- status -----------------------------------------------------------------------------

    def fetch_metadata(self, timeout: float = 3.0) -> dict[str, Any] | None:
        """The CapabilityStatement at /fhir/metadata, or None when nothing (FHIR) answers."""
        try:
            response = requests.get(
                self.config.base_url + "/metadata", headers={"Accept": "application/fhir+json"}, timeout=timeout
            )
            body = response.json() if response.ok else None
        except (requests.RequestException, ValueError):
            return None
        return body if isinstance(body, dict) and body.get("resourceType") == "CapabilityStatement" else None

    def _running(self) -> tuple[int | None, Path]:
        """(pid, data folder) of the server on this port: this folder's first, else one from any folder."""
        pid = self.running_pid()
        if pid is None and (found := find_port_owner(self.config.port)) is not None:
            return found
        return pid, self.config.data_dir

    def status(self) -> ServerStatus:
        cfg = self.config
        pid, data_dir = self._running()
        status = ServerStatus(running=pid is not None, url=cfg.base_url, port=cfg.port, data_dir=data_dir, pid=pid)
        if pid is not None:
            self._fill_launch_options(status, pid, data_dir)
            self._fill_from_metadata(status, self.fetch_metadata())
        return status

    def _fill_launch_options(self, status: ServerStatus, pid: int, data_dir: Path) -> None:
        args = _cmdline(pid)
        if args is None:
            # No /proc: the pid file says what was asked for.
            try:
                record = json.loads((data_dir / self.config.pid_file.name).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                record = {}
            args = [PROFILE_ARG + str(record.get("profile", DEFAULT_PROFILE)), DATABASE_ARG + str(record.get("database", DEFAULT_DATABASE))]
        status.profile, status.database = launch_options(args)
        if status.database == "postgres":
            status.postgres = self.config.postgres(self.env, data_dir).status()

    @staticmethod
    def _fill_from_metadata(status: ServerStatus, capability: dict[str, Any] | None) -> None:
        if capability is None:
            return
        status.responding = True
        status.fhir_version = capability.get("fhirVersion")
        software = capability.get("software") or {}
        status.software = " ".join(str(software[k]) for k in ("name", "version") if software.get(k)) or None

    # -- start / stop -------------------------------------------------------------------------

    def start(self, *, progress: Progress = _quiet) -> ServerStatus:
        """Start the server in the background (building it first if needed) and wait for /metadata."""
        cfg = self.config
        current = self.status()
        if current.running:
            self._check_same_options(current)
            if not current.responding and current.pid is not None:
                # Another start is still waiting for this server: wait with it.
                waited = self._wait_until_ready(current.pid, time.monotonic(), progress)
                waited.profile, waited.database, waited.postgres = current.profile, current.database, current.postgres
                current = waited
            current.already_running = True
            return current
        if port_in_use(cfg.host, cfg.port):
            raise LocalServerError(self._port_taken_message())
        java = self._require_tool(cfg.java, "Java (a JDK or JRE 17 or newer)", "apt-get install openjdk-17-jdk-headless")
        self.build(progress=progress)
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            java,
            f"-Xmx{cfg.heap}",
            *cfg.jvm_options,
            "-jar",
            str(cfg.app_jar),
            f"--server.port={cfg.port}",
            f"--server.address={cfg.host}",
            f"--fhirso.data={cfg.data_dir}",
            PROFILE_ARG + cfg.start_profile,
            DATABASE_ARG + cfg.start_database,
        ]
        child_env = dict(os.environ)
        postgres: PostgresStatus | None = None
        if cfg.start_database == "postgres":
            database = cfg.postgres(self.env)
            progress(f"starting PostgreSQL for the server (data {database.config.folder})")
            postgres = database.start()
            assert postgres.port is not None
            command += [f"--fhirso.db.url={database.jdbc_url(postgres.port)}", "--fhirso.db.user=hapi"]
            child_env[PASSWORD_VARIABLE] = database.password()
        else:
            child_env.pop(PASSWORD_VARIABLE, None)
        progress(
            f"starting the HAPI FHIR server on {cfg.base_url} (profile {cfg.start_profile}, database {cfg.start_database}, "
            f"heap {cfg.heap}, data {cfg.data_dir})"
        )
        started = time.monotonic()
        with cfg.log_file.open("wb") as log:
            # Its own session: the server outlives this process and ignores the terminal's Ctrl-C.
            self._process = subprocess.Popen(
                command, cwd=cfg.data_dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=child_env,
            )
        pid = self._process.pid
        self._write_pid(pid)
        try:
            status = self._wait_until_ready(pid, started, progress)
        except (KeyboardInterrupt, LocalServerError):
            # Interrupted or failed while waiting: leave no half-started server (nor its database) behind.
            if self.is_our_process(pid):
                self._end(pid)
            self._clear_pid()
            if postgres is not None and not postgres.already_running:
                cfg.postgres(self.env).stop()
            raise
        status.seconds = time.monotonic() - started
        status.profile, status.database, status.postgres = cfg.start_profile, cfg.start_database, postgres
        return status

    def _check_same_options(self, current: ServerStatus) -> None:
        """A running server is reused only when it has the profile and database asked for (when asked)."""
        cfg = self.config
        wanted = {"profile": cfg.profile, "database": cfg.database}
        running = {"profile": current.profile, "database": current.database}
        differ = [k for k in ("profile", "database") if wanted[k] is not None and running[k] != wanted[k]]
        if not differ:
            return
        asked = ", ".join(f"{k} {wanted[k]}" for k in differ)
        has = ", ".join(f"{k} {running[k]}" for k in differ)
        raise InputError(
            f"the local server on port {cfg.port} (pid {current.pid}) runs with {has}, not {asked} as asked; "
            f"stop it first (fhir-so server stop --port {cfg.port}) or start the other one on another port (--port N)"
        )

    def _wait_until_ready(self, pid: int, started: float, progress: Progress) -> ServerStatus:
        """Poll /metadata until the server answers; stop it and explain when it exits or takes too long."""
        cfg = self.config
        deadline = started + cfg.start_timeout
        next_note = started + 30.0
        while True:
            if not self.is_our_process(pid):
                self._clear_pid()
                code = self._process.returncode if self._process is not None and self._process.pid == pid else None
                how = f" (exit {code})" if code is not None else ""
                raise LocalServerError(
                    f"the server exited during start-up{how}; the end of {cfg.log_file}:\n{_tail(cfg.log_file)}"
                )
            capability = self.fetch_metadata(timeout=2.0)
            if capability is not None:
                status = ServerStatus(running=True, url=cfg.base_url, port=cfg.port, data_dir=cfg.data_dir, pid=pid)
                self._fill_from_metadata(status, capability)
                return status
            now = time.monotonic()
            if now >= deadline:
                self._end(pid)
                self._clear_pid()
                raise LocalServerError(
                    f"the server did not answer {cfg.base_url}/metadata within {cfg.start_timeout:.0f} s and was stopped; "
                    f"the end of {cfg.log_file}:\n{_tail(cfg.log_file)}"
                )
            if now >= next_note:
                progress(f"  still starting ({now - started:.0f} s; HAPI takes about a minute on 2 cores)")
                next_note += 30.0
            time.sleep(1.0)

    def _stop_own(self) -> int | None:
        """Stop only this data folder's server (reset must never end another folder's)."""
        pid = self.running_pid()
        if pid is not None:
            self._end(pid)
            self._clear_pid()
        self.config.postgres(self.env).stop()
        return pid

    def stop(self) -> int | None:
        """Stop the server on this port and wait until it has exited; returns its pid, None if none was running.

        The server of this data folder, or else a fhir-so server on this port started with another one.
        """
        pid, data_dir = self._running()
        if pid is not None:
            self._end(pid)
            (data_dir / self.config.pid_file.name).unlink(missing_ok=True)
        # After the server (which holds connections to it): its PostgreSQL, if it has one running.
        self.config.postgres(self.env, data_dir).stop()
        return pid

    def _end(self, pid: int) -> None:
        """SIGTERM (Spring closes H2 cleanly), then SIGKILL if it has not exited in time."""
        for sig, wait in ((signal.SIGTERM, self.config.stop_timeout), (signal.SIGKILL, 10.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            if self._wait_exit(pid, wait):
                break
        else:
            raise LocalServerError(f"the server (pid {pid}) did not exit after SIGKILL")

    def _wait_exit(self, pid: int, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._process is not None and self._process.pid == pid:
                if self._process.poll() is not None:
                    return True
            elif not _pid_alive(pid):
                return True
            time.sleep(0.2)
        return False

    def reset(self) -> tuple[int | None, list[Path]]:
        """Stop the server if it runs and delete its database and log; returns (stopped pid, removed paths)."""
        pid = self._stop_own()
        removed = []
        for path in (self.config.database_dir, self.config.postgres_dir, self.config.log_file):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            else:
                continue
            removed.append(path)
        return pid, removed

    # -- helpers ----------------------------------------------------------------------------

    def _port_taken_message(self) -> str:
        cfg = self.config
        message = f"port {cfg.port} on {cfg.host} is already in use by another program (not the fhir-so server of {cfg.data_dir})"
        capability = self.fetch_metadata(timeout=2.0)
        if capability is not None:
            message += f"; a FHIR server answers at {cfg.base_url}: use it with --server {cfg.base_url}, or"
        else:
            message += ";"
        return message + " choose another port with --port N"

    @staticmethod
    def _require_tool(name: str, what: str, hint: str) -> str:
        path = shutil.which(name)
        if path is None:
            raise ToolMissingError(f"{what} is needed for the local FHIR server but '{name}' is not on PATH (e.g. {hint})")
        return path


def start_servers(
    env: Mapping[str, str], ports: Sequence[int], *, progress: Progress = _quiet, **options: Any
) -> dict[int, ServerStatus]:
    """Start local servers on ``ports`` (reusing running ones): one jar build, then all boot at once.

    HAPI spends most of its minute of start-up on one core, so two instances started together
    are ready in little more than the time of one. ``options`` go to every ServerConfig (profile,
    database); without them a running server is reused whatever its profile.
    """
    servers = [LocalServer(ServerConfig.resolve(env, port=port, **options), env) for port in ports]
    if not servers:
        return {}
    servers[0].build(progress=progress)
    with ThreadPoolExecutor(max_workers=len(servers)) as pool:
        statuses = list(pool.map(lambda server: server.start(progress=progress), servers))
    return dict(zip(ports, statuses))
