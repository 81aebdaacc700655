"""CLI commands: ``fhir-so server build|start|stop|status|reset`` (the local HAPI FHIR server)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import click

from fhir_so.cli.app import App, pass_app
from fhir_so.cli.common import emit_json, info, json_option, translate_errors
from fhir_so.server import DATABASES, DEFAULT_HEAP, DEFAULT_PORT, PROFILES, LocalServer, ServerConfig, ServerStatus

port_option = click.option(
    "--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True, help="TCP port on 127.0.0.1."
)
data_option = click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="This instance's data folder (database, log, pid file). Default: var/hapi-PORT, or $FHIR_SO_DATA/hapi-PORT.",
)


def _server(app: App, port: int, data_dir: Path | None, **overrides: Any) -> LocalServer:
    return LocalServer(ServerConfig.resolve(app.env, port=port, data_dir=data_dir, **overrides), app.env)


def _describe(status: ServerStatus) -> str:
    if not status.running:
        return f"not running ({status.url}, data {status.data_dir})"
    what = f"FHIR {status.fhir_version}, {status.software}" if status.responding else "not answering yet"
    database = status.database or "h2"
    if status.postgres is not None and status.postgres.port:
        database += f" on port {status.postgres.port}" if status.postgres.running else " (not running)"
    return (
        f"running at {status.url} ({what}), profile {status.profile}, database {database}, "
        f"pid {status.pid}, data {status.data_dir}"
    )


def _check_heap(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not re.fullmatch(r"[1-9][0-9]*[kKmMgG]?", value):
        raise click.BadParameter(f"{value!r} is not a Java heap size such as 768m or 1g", ctx=ctx, param=param)
    return value


def _instance_command(func: Callable[..., None]) -> Callable[..., None]:
    """The options every instance command shares."""
    for option in (json_option, data_option, port_option):
        func = option(func)
    return func


@click.group("server")
def server_group() -> None:
    """The local HAPI FHIR R4 server (server/: Java 17, Maven; H2 on disk or PostgreSQL) for the demo and the tests.

    \b
    Two instances on two ports are two independent servers, e.g. a transfer's
    source and destination:
      fhir-so server start                # http://127.0.0.1:8090/fhir
      fhir-so server start --port 8091    # http://127.0.0.1:8091/fhir, data in var/hapi-8091
    \b
    Two profiles: tuned (the default: no cached-search reuse, a search sees the
    writes just before it) and public (HAPI's JPA starter defaults, as on HAPI's
    public test server: search results reused for 60 s, its page sizes,
    narratives); two databases: h2 (the default) and postgres (a local
    PostgreSQL under the data folder, stopped with the server):
      fhir-so server start --port 8092 --profile public --db postgres
    See docs/server.md.
    """


@server_group.command("build")
@click.option("--force", is_flag=True, help="Build even when the jar is newer than its sources.")
@pass_app
@translate_errors
def build_command(app: App, force: bool) -> None:
    """Build the server jar with Maven, once: only when it is missing or older than its sources."""
    server = _server(app, DEFAULT_PORT, None)
    if not server.build(force=force, progress=info):
        info(f"server jar up to date: {server.config.app_jar}")


@server_group.command("start")
@_instance_command
@click.option("--heap", default=DEFAULT_HEAP, show_default=True, callback=_check_heap, help="Java heap limit (-Xmx), e.g. 768m, 1g.")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds to wait for /fhir/metadata.")
@click.option(
    "--profile",
    type=click.Choice(PROFILES),
    default=None,
    help="tuned (default): the project's settings; public: HAPI's JPA starter defaults, as on HAPI's public test server.",
)
@click.option(
    "--db",
    "database",
    type=click.Choice(DATABASES),
    default=None,
    help="h2 (default): H2 on disk; postgres: a local PostgreSQL (Debian's packages) started for the server, data in DATA/pg.",
)
@click.option("--pg-port", type=click.IntRange(1, 65535), default=None, help="PostgreSQL's port with --db postgres (default: the one it had, else a free one).")
@pass_app
@translate_errors
def start_command(
    app: App, port: int, data_dir: Path | None, as_json: bool, heap: str, timeout: float,
    profile: str | None, database: str | None, pg_port: int | None,
) -> None:
    """Start the server in the background (building it if needed); return once /fhir/metadata answers.

    A server already running on the port is reused when it has the --profile and --db asked for
    (or none was given); one with another profile or database is an error (exit 2): stop it first.
    """
    overrides: dict[str, Any] = {"heap": heap, "start_timeout": timeout, "profile": profile, "database": database, "pg_port": pg_port}
    status = _server(app, port, data_dir, **overrides).start(progress=info)
    if as_json:
        emit_json(status.to_dict())
    elif status.already_running:
        info(f"already {_describe(status)}")
    else:
        info(f"started in {status.seconds:.0f} s: {_describe(status)}")


@server_group.command("stop")
@_instance_command
@pass_app
@translate_errors
def stop_command(app: App, port: int, data_dir: Path | None, as_json: bool) -> None:
    """Stop the fhir-so server on this port (and its PostgreSQL), and wait until it has exited.

    The one of this data folder, or else one started with another --data (found by its port).
    """
    server = _server(app, port, data_dir)
    pid = server.stop()
    if as_json:
        emit_json({"stopped": pid is not None, "pid": pid, "url": server.config.base_url})
    else:
        info(f"stopped the server at {server.config.base_url} (pid {pid})" if pid else f"not running: {server.config.base_url}")


@server_group.command("status")
@_instance_command
@pass_app
@translate_errors
def status_command(app: App, port: int, data_dir: Path | None, as_json: bool) -> None:
    """Say whether a fhir-so server runs on this port: URL, FHIR version, profile, database, pid, data folder."""
    status = _server(app, port, data_dir).status()
    if as_json:
        emit_json(status.to_dict())
    else:
        click.echo(_describe(status))


@server_group.command("reset")
@_instance_command
@pass_app
@translate_errors
def reset_command(app: App, port: int, data_dir: Path | None, as_json: bool) -> None:
    """Stop the server if it runs and delete its database (H2 or PostgreSQL) and log (the next start begins empty)."""
    server = _server(app, port, data_dir)
    pid, removed = server.reset()
    if as_json:
        emit_json({"stopped": pid, "removed": [str(p) for p in removed], "dataDir": str(server.config.data_dir)})
        return
    if pid:
        info(f"stopped the server (pid {pid})")
    info(f"cleared {server.config.data_dir}" if removed else f"nothing to clear in {server.config.data_dir}")


COMMANDS: list[click.Command] = [server_group]
