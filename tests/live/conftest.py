"""Live-test fixtures: the local HAPI FHIR servers, started through ``fhir-so server start`` (or reused).

Every test under tests/live/ gets the ``live`` marker, so ``pytest -m "not live"`` runs the unit
tests alone. The session runs against one server variant: ``$FHIR_SO_LIVE_PROFILE`` (tuned, the
default, or public: HAPI's JPA starter defaults) on ``$FHIR_SO_LIVE_DB`` (h2, the default, or
postgres). ``./run test`` runs pytest once per variant (see VARIANTS there), so every test here
runs on every variant without knowing it.

Each variant has its own port pair, so the servers of two variants never meet: the source on
``$FHIR_SO_LIVE_PORT`` (default 8090) plus the variant's offset (tuned/h2 0, public/h2 2,
tuned/postgres 4, public/postgres 6), the destination on the port after it, each with its own
data folder (var/hapi-PORT); ``$FHIR_SO_LIVE_PG_PORT`` fixes the PostgreSQL ports (that one and
the next), else PostgreSQL takes free ones. A server that is already running is reused only
when its CapabilityStatement names the variant's profile and database, and left running; the
ones this session started are stopped at its end unless ``FHIR_SO_KEEP_SERVERS=1``.

The terminal summary says which variant ran and its pass counts (and appends them as one JSON
line to ``$FHIR_SO_LIVE_SUMMARY`` when set, for ``./run test``'s table of all variants).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

LIVE_DIR = Path(__file__).resolve().parent
PROFILES = ("tuned", "public")
DATABASES = ("h2", "postgres")
PORT_OFFSETS = {("tuned", "h2"): 0, ("public", "h2"): 2, ("tuned", "postgres"): 4, ("public", "postgres"): 6}
PROFILE = os.environ.get("FHIR_SO_LIVE_PROFILE") or "tuned"
DATABASE = os.environ.get("FHIR_SO_LIVE_DB") or "h2"
VARIANT = f"{PROFILE}/{DATABASE}"
BASE_PORT = int(os.environ.get("FHIR_SO_LIVE_PORT", "8090"))
SOURCE_PORT = BASE_PORT + PORT_OFFSETS.get((PROFILE, DATABASE), 0)
DESTINATION_PORT = SOURCE_PORT + 1
PG_BASE_PORT = int(os.environ["FHIR_SO_LIVE_PG_PORT"]) if os.environ.get("FHIR_SO_LIVE_PG_PORT") else None
PAIR_FIXTURE = "fhir_server_pair"


def check_variant() -> None:
    """An unknown profile or database is a usage error of the whole session, not a skip."""
    if PROFILE not in PROFILES or DATABASE not in DATABASES:
        raise pytest.UsageError(
            f"FHIR_SO_LIVE_PROFILE={PROFILE!r} / FHIR_SO_LIVE_DB={DATABASE!r}: "
            f"the profile is one of {', '.join(PROFILES)}, the database one of {', '.join(DATABASES)}"
        )


def variant_options(port: int) -> tuple[str, ...]:
    """The ``fhir-so server start`` options of this session's variant for the server on ``port``."""
    options = ("--profile", PROFILE, "--db", DATABASE)
    if DATABASE == "postgres" and PG_BASE_PORT is not None:
        options += ("--pg-port", str(PG_BASE_PORT + (port - SOURCE_PORT)))
    return options


def implementation_description(url: str) -> str:
    """CapabilityStatement.implementation.description: a fhir-so server names its profile and database there."""
    try:
        capability = requests.get(f"{url}/metadata", headers={"Accept": "application/fhir+json"}, timeout=10).json()
    except (requests.RequestException, ValueError):
        return ""
    return str(((capability or {}).get("implementation") or {}).get("description") or "")


def fhir_so_command() -> list[str]:
    """The fhir-so command of this environment (the console script next to this Python)."""
    script = Path(sys.executable).parent / "fhir-so"
    return [str(script)] if script.exists() else [sys.executable, "-c", "from fhir_so.cli import main; main()"]


def run_fhir_so(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``fhir-so ARGS`` and return the finished process (stdout, stderr, returncode)."""
    return subprocess.run([*fhir_so_command(), *args], capture_output=True, text=True, timeout=timeout, check=False)


def base_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/fhir"


def start_servers(*ports: int, extra: tuple[str, ...] = ()) -> dict[int, dict[str, Any]]:
    """``fhir-so server start --port P --json`` (this session's variant) for every port at once; the JSON status of each."""
    procs = {
        port: subprocess.Popen(
            [*fhir_so_command(), "server", "start", "--port", str(port), "--json", *variant_options(port), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for port in ports
    }
    statuses = {}
    for port, proc in procs.items():
        out, err = proc.communicate(timeout=900)
        if proc.returncode == 0:
            statuses[port] = json.loads(out)
        elif proc.returncode != 2 and answers_fhir_r4(base_url(port)) and is_this_variant(base_url(port)):
            # The port is taken by a FHIR R4 server this checkout did not start (another
            # checkout's instance of the same variant, say): reuse it, and leave it running.
            statuses[port] = {"alreadyRunning": True}
        else:
            pytest.fail(f"fhir-so server start --port {port} failed (exit {proc.returncode}):\n{err}", pytrace=False)
    return statuses


def is_this_variant(url: str) -> bool:
    return f"profile {PROFILE}, database {DATABASE}" in implementation_description(url)


def answers_fhir_r4(url: str) -> bool:
    """True when a FHIR R4 server answers at url/metadata."""
    try:
        capability = requests.get(f"{url}/metadata", headers={"Accept": "application/fhir+json"}, timeout=10).json()
    except (requests.RequestException, ValueError):
        return False
    return isinstance(capability, dict) and capability.get("fhirVersion") == "4.0.1"


class LiveServers:
    """The servers of this test session: which ports run, and which of them this session started."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.running: set[int] = set()

    def ensure(self, *ports: int) -> None:
        wanted = [p for p in ports if p not in self.running]
        if not wanted:
            return
        for port, status in start_servers(*wanted).items():
            self.running.add(port)
            if not status["alreadyRunning"]:
                self.started.append(port)

    def stop_started(self) -> None:
        for port in self.started:
            run_fhir_so("server", "stop", "--port", str(port), timeout=120)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if LIVE_DIR in item.path.parents:
            item.add_marker(pytest.mark.live)


def pytest_configure(config: pytest.Config) -> None:
    check_variant()
    if config.pluginmanager.get_plugin(LiveSummary.NAME) is None:
        config.pluginmanager.register(LiveSummary(), LiveSummary.NAME)


class LiveSummary:
    """Pass counts of the live tests of this session's variant, in the terminal summary (and $FHIR_SO_LIVE_SUMMARY)."""

    NAME = "fhir-so-live-summary"

    def __init__(self) -> None:
        self.outcomes: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if "live" not in report.keywords:
            return
        if report.when == "call" or report.outcome != "passed":
            # a failed setup or teardown counts the test as failed (errors), a skip as skipped
            if report.outcome == "failed" or report.nodeid not in self.outcomes:
                self.outcomes[report.nodeid] = "xfailed" if hasattr(report, "wasxfail") else report.outcome

    def counts(self) -> dict[str, int]:
        counts = {"passed": 0, "failed": 0, "skipped": 0, "xfailed": 0}
        for outcome in self.outcomes.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.outcomes:
            return
        counts = self.counts()
        line = (
            f"live suite on profile {PROFILE}, database {DATABASE} (ports {SOURCE_PORT}/{DESTINATION_PORT}): "
            + ", ".join(f"{n} {k}" for k, n in counts.items() if n or k in ("passed", "failed"))
        )
        terminalreporter.section("live server variant")
        terminalreporter.write_line(line)
        failed = sorted(nodeid for nodeid, outcome in self.outcomes.items() if outcome == "failed")
        for nodeid in failed:
            terminalreporter.write_line(f"  failed on {VARIANT}: {nodeid}")
        target = os.environ.get("FHIR_SO_LIVE_SUMMARY")
        if target:
            record = {"variant": VARIANT, "ports": [SOURCE_PORT, DESTINATION_PORT], **counts, "failedTests": failed}
            with open(target, "a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")


@pytest.fixture(scope="session")
def live_servers(request: pytest.FixtureRequest) -> Iterator[LiveServers]:
    servers = LiveServers()
    yield servers
    if os.environ.get("FHIR_SO_KEEP_SERVERS") != "1":
        servers.stop_started()


@pytest.fixture(scope="session")
def fhir_server(request: pytest.FixtureRequest, live_servers: LiveServers) -> str:
    """The base URL of the first local server, e.g. http://127.0.0.1:8090/fhir."""
    # When the session also needs the destination, start both now: two starts in parallel
    # take little longer than one.
    needs_pair = any(PAIR_FIXTURE in getattr(item, "fixturenames", ()) for item in request.session.items)
    live_servers.ensure(*((SOURCE_PORT, DESTINATION_PORT) if needs_pair else (SOURCE_PORT,)))
    return base_url(SOURCE_PORT)


@pytest.fixture(scope="session")
def fhir_server_pair(fhir_server: str, live_servers: LiveServers) -> tuple[str, str]:
    """(source URL, destination URL): two independent local servers for transfers."""
    live_servers.ensure(SOURCE_PORT, DESTINATION_PORT)
    return fhir_server, base_url(DESTINATION_PORT)
