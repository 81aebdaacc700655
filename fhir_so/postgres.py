"""A local PostgreSQL for one local HAPI server (``fhir-so server start --db postgres``).

One :class:`LocalPostgres` per server instance, all of it in one folder (``var/hapi-PORT/pg``):
the cluster (``data/``, made by ``initdb``), the unix socket, the log (``postgres.log``), the
generated password (``password``, mode 0600) and the TCP port it listens on (``port``). It listens
on 127.0.0.1 only; the password is read from its file by whoever needs it and is never logged,
put on a command line or in an error message.

The programs (``initdb``, ``pg_ctl``, ``createdb``) are Debian's (``apt-get install postgresql``):
``$FHIR_SO_PG_BIN``, else the newest ``/usr/lib/postgresql/N/bin``, else the same folder unpacked
under ``~/.cache/fhir-so/postgresql`` (``./run`` unpacks the packages there when it cannot
install them system-wide).

PostgreSQL refuses to run as root. Run by root, the programs run in a user namespace where
root's files belong to an unprivileged user (``unshare --user --map-user``), so the data stays
root's under the server's data folder; where user namespaces are not allowed, they run as the
``postgres`` user (``runuser``) and the folder is handed to that user.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from fhir_so.errors import LocalServerError, ToolMissingError
from fhir_so.processes import pid_alive, port_in_use

__all__ = [
    "DATABASE",
    "LocalPostgres",
    "PostgresConfig",
    "PostgresStatus",
    "USER",
    "find_pg_bin",
]

USER = "hapi"
DATABASE = "hapi"
PROGRAMS = ("initdb", "pg_ctl", "createdb", "postgres")
# Settings for a database that serves one local test server: localhost only, a socket of its
# own, few connections, and commits that do not wait for the disk (a crash loses at most the
# last moments, never the consistency).
SERVER_SETTINGS = (
    ("listen_addresses", "127.0.0.1"),
    ("max_connections", "40"),
    ("synchronous_commit", "off"),
    ("shared_buffers", "64MB"),
)
# The unprivileged uid and gid root's files are mapped to inside the user namespace.
NOBODY = "65534"


def cache_root(env: Mapping[str, str]) -> Path:
    """Where ``./run`` unpacks Debian's PostgreSQL packages when it cannot install them."""
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path(env.get("HOME", "~")).expanduser() / ".cache"
    return base / "fhir-so" / "postgresql"


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(p) for p in path.parent.name.split(".") if p.isdigit())


def find_pg_bin(env: Mapping[str, str]) -> Path:
    """The folder holding PostgreSQL's server programs; ToolMissingError naming how to install them."""
    configured = env.get("FHIR_SO_PG_BIN")
    candidates = [Path(configured)] if configured else []
    # A configured folder is the only one looked at: a wrong setting is an error, not a fallback.
    for root in () if configured else (Path("/usr/lib/postgresql"), cache_root(env) / "usr" / "lib" / "postgresql"):
        candidates += sorted(root.glob("*/bin"), key=_version_key, reverse=True)
    for folder in candidates:
        if all((folder / name).is_file() for name in PROGRAMS):
            return folder
    where = f"FHIR_SO_PG_BIN={configured}" if configured else "/usr/lib/postgresql/*/bin"
    raise ToolMissingError(
        f"PostgreSQL's programs (initdb, pg_ctl) are needed for --db postgres but are not in {where}; "
        "install Debian's packages (apt-get install postgresql), or run ./run setup, which installs them"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class PostgresConfig:
    """One PostgreSQL of one local server: its folder, its port (None: the one it had, or a free one)."""

    folder: Path
    port: int | None = None
    host: str = "127.0.0.1"
    start_timeout: float = 120.0
    stop_timeout: float = 60.0

    @property
    def cluster_dir(self) -> Path:
        return self.folder / "data"

    @property
    def password_file(self) -> Path:
        return self.folder / "password"

    @property
    def port_file(self) -> Path:
        return self.folder / "port"

    @property
    def log_file(self) -> Path:
        return self.folder / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        return self.folder


@dataclass
class PostgresStatus:
    running: bool
    port: int | None
    pid: int | None
    folder: Path
    already_running: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"running": self.running, "port": self.port, "pid": self.pid, "folder": str(self.folder)}


class LocalPostgres:
    """initdb, start, stop and status of one server's PostgreSQL (see the module docstring)."""

    def __init__(self, config: PostgresConfig, env: Mapping[str, str]) -> None:
        self.config = config
        self.env = env
        self._wrapper: list[str] | None = None

    # -- what it is -----------------------------------------------------------------------

    @property
    def initialised(self) -> bool:
        return (self.config.cluster_dir / "PG_VERSION").is_file()

    def password(self) -> str:
        """The generated password (for the server's environment; never for a log)."""
        try:
            return self.config.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise LocalServerError(f"cannot read the PostgreSQL password file {self.config.password_file}: {exc.strerror}") from None

    def recorded_port(self) -> int | None:
        try:
            port = int(self.config.port_file.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None
        return port if 0 < port < 65536 else None

    def jdbc_url(self, port: int) -> str:
        return f"jdbc:postgresql://{self.config.host}:{port}/{DATABASE}"

    def running_pid(self) -> int | None:
        """The postmaster's pid from ``postmaster.pid``, when that process is alive."""
        try:
            first = (self.config.cluster_dir / "postmaster.pid").read_text(encoding="utf-8").split("\n", 1)[0]
            pid = int(first.strip())
        except (OSError, ValueError):
            return None
        return pid if pid > 0 and pid_alive(pid) else None

    def status(self) -> PostgresStatus:
        pid = self.running_pid()
        return PostgresStatus(running=pid is not None, port=self.recorded_port(), pid=pid, folder=self.config.folder)

    # -- running the programs ---------------------------------------------------------------

    def _bin(self, name: str) -> str:
        return str(find_pg_bin(self.env) / name)

    def _as_unprivileged(self) -> list[str]:
        """The command prefix that runs PostgreSQL's programs as a user other than root ([] when not root)."""
        if self._wrapper is not None:
            return self._wrapper
        wrapper: list[str] = []
        if os.geteuid() == 0:
            unshare = shutil.which("unshare")
            probe = [unshare, "--user", f"--map-user={NOBODY}", f"--map-group={NOBODY}", "true"] if unshare else None
            if probe and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
                wrapper = probe[:-1]
            elif (runuser := shutil.which("runuser")) is not None and _user_exists("postgres"):
                wrapper = [runuser, "-u", "postgres", "--"]
            else:
                raise LocalServerError(
                    "PostgreSQL cannot run as root, and neither a user namespace (unshare --user) nor the "
                    "postgres user (runuser) is available to run it as another user"
                )
        self._wrapper = wrapper
        return wrapper

    def _run(self, args: list[str], *, what: str, env: Mapping[str, str] | None = None, timeout: float = 120.0) -> None:
        """Run one PostgreSQL program; LocalServerError with its output (never the password) when it fails."""
        command = [*self._as_unprivileged(), *args]
        child_env = {**os.environ, **(env or {})}
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False, env=child_env,
                cwd=self.config.folder, stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise LocalServerError(f"{what} did not finish within {timeout:.0f} s") from None
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip()[-1500:]
            raise LocalServerError(f"{what} failed (exit {done.returncode}): {output}")

    def _hand_over(self) -> None:
        """Under runuser, the folder must belong to the postgres user."""
        if self._as_unprivileged()[:1] and Path(self._as_unprivileged()[0]).name == "runuser":
            shutil.chown(self.config.folder, user="postgres")
            for path in self.config.folder.rglob("*"):
                shutil.chown(path, user="postgres")

    # -- init / start / stop ----------------------------------------------------------------

    def initialise(self) -> bool:
        """initdb the cluster with a generated password, once; True when it was made now."""
        cfg = self.config
        if self.initialised:
            return False
        cfg.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(cfg.folder, 0o700)
        # A half-made cluster from an interrupted initdb is not worth keeping.
        shutil.rmtree(cfg.cluster_dir, ignore_errors=True)
        if not cfg.password_file.is_file():
            # Made with its final permissions: it is never readable by others, not even for a moment.
            fd = os.open(cfg.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(secrets.token_urlsafe(24) + "\n")
        self._hand_over()
        self._run(
            [
                self._bin("initdb"), "-D", str(cfg.cluster_dir), "-U", USER, f"--pwfile={cfg.password_file}",
                "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
                "--no-instructions",
            ],
            what="initdb",
            timeout=300.0,
        )
        return True

    def _choose_port(self) -> int:
        port = self.config.port or self.recorded_port()
        if port is None or (self.config.port is None and port_in_use(self.config.host, port)):
            port = free_port(self.config.host)
        return port

    def start(self) -> PostgresStatus:
        """Initialise (first time), start and make the server's database; reuse a running one."""
        cfg = self.config
        self.initialise()
        pid = self.running_pid()
        if pid is not None:
            running = self.recorded_port()
            if cfg.port is not None and running != cfg.port:
                raise LocalServerError(
                    f"the PostgreSQL of {cfg.folder} already runs on port {running}, not {cfg.port}; "
                    "stop the server first (fhir-so server stop)"
                )
            return PostgresStatus(running=True, port=running, pid=pid, folder=cfg.folder, already_running=True)
        port = self._choose_port()
        if port_in_use(cfg.host, port):
            raise LocalServerError(f"port {port} for PostgreSQL is already in use; choose another with --pg-port N")
        settings = " ".join(f"-c {k}={v}" for k, v in SERVER_SETTINGS)
        options = f"-p {port} -k {shlex.quote(str(cfg.socket_dir))} {settings}"
        cfg.port_file.write_text(f"{port}\n", encoding="utf-8")
        self._hand_over()
        self._run(
            [
                self._bin("pg_ctl"), "-D", str(cfg.cluster_dir), "-l", str(cfg.log_file), "-w",
                "-t", str(int(cfg.start_timeout)), "-o", options, "start",
            ],
            what=f"starting PostgreSQL (log: {cfg.log_file})",
            timeout=cfg.start_timeout + 30,
        )
        self._create_database(port)
        pid = self.running_pid()
        return PostgresStatus(running=pid is not None, port=port, pid=pid, folder=cfg.folder)

    def _create_database(self, port: int) -> None:
        marker = self.config.folder / "database-created"
        if marker.is_file():
            return
        # Through the socket; the password travels in the child's environment only.
        self._run(
            [self._bin("createdb"), "-h", str(self.config.socket_dir), "-p", str(port), "-U", USER, DATABASE],
            what="createdb",
            env={"PGPASSWORD": self.password()},
        )
        marker.write_text("yes\n", encoding="utf-8")

    def stop(self) -> int | None:
        """Fast shutdown (SIGINT: sessions are ended, the data is consistent); the pid stopped, or None."""
        pid = self.running_pid()
        if pid is None:
            return None
        for sig, wait in ((signal.SIGINT, self.config.stop_timeout), (signal.SIGQUIT, 10.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return pid
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not pid_alive(pid):
                    return pid
                time.sleep(0.2)
        raise LocalServerError(f"PostgreSQL (pid {pid}) of {self.config.folder} did not stop")

    def remove(self) -> bool:
        """Delete the whole folder (cluster, password, log), after stopping; True when there was one."""
        self.stop()
        if not self.config.folder.exists():
            return False
        shutil.rmtree(self.config.folder)
        return True


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
