"""Live-test fixtures: the local HAPI FHIR servers, started through ``fhir-so server start`` (or reused).

Every test under tests/live/ gets the ``live`` marker, so ``pytest -m "not live"`` runs the unit
tests alone. The servers listen on ``$FHIR_SO_LIVE_PORT`` (default 8090, the source) and the
port after it (the destination), each with its own data folder (var/hapi-PORT). A server that
is already running is reused and left running; the ones this session started are stopped at
its end unless ``FHIR_SO_KEEP_SERVERS=1`` (quicker local reruns).
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
SOURCE_PORT = int(os.environ.get("FHIR_SO_LIVE_PORT", "8090"))
DESTINATION_PORT = SOURCE_PORT + 1
PAIR_FIXTURE = "fhir_server_pair"


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
    """``fhir-so server start --port P --json`` for every port at once; the JSON status of each."""
    procs = {
        port: subprocess.Popen(
            [*fhir_so_command(), "server", "start", "--port", str(port), "--json", *extra],
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
        elif answers_fhir_r4(base_url(port)):
            # The port is taken by a FHIR R4 server this checkout did not start (another
            # checkout's instance, say): reuse it, and leave it running.
            statuses[port] = {"alreadyRunning": True}
        else:
            pytest.fail(f"fhir-so server start --port {port} failed (exit {proc.returncode}):\n{err}", pytrace=False)
    return statuses


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
