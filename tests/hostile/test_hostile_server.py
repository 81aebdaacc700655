"""The client against hostile fake servers: every mode ends in a clear error, and no secret
reaches the foreign origin (counted by a second fake that records what it receives)."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fhir_so.auth import Auth, BasicAuth, BearerToken
from fhir_so.client import FhirClient, RetryPolicy
from fhir_so.errors import AuthError, HttpError, ServerError, TransportError, UnsafeUrlError
from tests.hostile.fake_server import FakeServer, Received
from tests.hostile.hostile_summary import HostileSummary, summary

ROOT = Path(__file__).resolve().parents[2]
# made per run, never written in the repo: what the tests look for is these values at the foreign origin
TOKEN = f"tok-HOSTILE-{secrets.token_hex(5)}"
USER, PASSWORD = "clinic", f"pw-HOSTILE-{secrets.token_hex(3)}"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
SECRETS = [TOKEN, PASSWORD, BASIC]
TRANSACTION = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {
            "fullUrl": "urn:uuid:6f1b3c52-0000-4000-8000-000000000001",
            "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "1"}]},
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:x|1"},
        }
    ],
}
AUTHS: dict[str, Callable[[], Auth]] = {"bearer": lambda: BearerToken(TOKEN), "basic": lambda: BasicAuth(USER, PASSWORD)}


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> HostileSummary:
    return summary(request.config)


@pytest.fixture
def foreign() -> Iterator[FakeServer]:
    with FakeServer("record") as server:
        yield server


def client_for(server: FakeServer, auth: str, *, attempts: int = 2, timeout: tuple[float, float] = (2.0, 5.0)) -> FhirClient:
    return FhirClient(server.base, auth=AUTHS[auth](), retries=RetryPolicy(attempts=attempts, sleep=lambda s: None), timeout=timeout)


def leaked(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def check_foreign(figures: HostileSummary, mode: str, foreign: FakeServer) -> list[Received]:
    carrying = foreign.requests_with(SECRETS)
    figures.record_mode(mode, len(foreign.received), len(carrying))
    return carrying


@pytest.mark.parametrize("auth", sorted(AUTHS))
@pytest.mark.parametrize("mode", ["userinfo-next", "backslash-next", "scheme-relative-next"])
def test_a_hostile_next_link_is_refused(mode: str, auth: str, foreign: FakeServer, figures: HostileSummary) -> None:
    with FakeServer(mode, foreign=foreign) as hostile, client_for(hostile, auth) as client:
        with pytest.raises(UnsafeUrlError) as info:
            list(client.search("Patient"))
        assert len(hostile.received) == 1, "the hostile link was never followed"
    assert check_foreign(figures, mode, foreign) == []
    assert foreign.received == []
    assert leaked(str(info.value)) == []


@pytest.mark.parametrize("auth", sorted(AUTHS))
def test_pages_that_loop_end_with_a_clear_error(auth: str, foreign: FakeServer, figures: HostileSummary) -> None:
    with FakeServer("loop-next", foreign=foreign) as hostile, client_for(hostile, auth) as client:
        started = time.monotonic()
        with pytest.raises(ServerError, match="paging loop"):
            list(client.search("Patient"))
        assert len(hostile.received) <= 3 and time.monotonic() - started < 5
    assert check_foreign(figures, "loop-next", foreign) == []


@pytest.mark.parametrize("auth", sorted(AUTHS))
@pytest.mark.parametrize("mode", ["redirect-302", "redirect-307"])
def test_a_redirect_to_another_origin_is_never_followed(mode: str, auth: str, foreign: FakeServer, figures: HostileSummary) -> None:
    with FakeServer(mode, foreign=foreign) as hostile, client_for(hostile, auth) as client:
        with pytest.raises(UnsafeUrlError, match="leaves the origin"):
            client.read("Patient", "1")
        with pytest.raises(HttpError, match="does not follow redirects of a POST"):
            client.transaction(TRANSACTION)
        posts = [r for r in hostile.received if r.method == "POST"]
        assert len(posts) == 1, "the Bundle was sent once, to its own server"
    assert check_foreign(figures, mode, foreign) == []
    assert foreign.received == [], "another origin's answer is never taken as the server's"


@pytest.mark.parametrize("auth", sorted(AUTHS))
def test_a_2xx_body_echoing_credentials_is_excerpted_without_them(auth: str, foreign: FakeServer, figures: HostileSummary) -> None:
    with FakeServer("echo-2xx", foreign=foreign) as hostile, client_for(hostile, auth) as client:
        with pytest.raises(ServerError, match="not JSON") as info:
            client.read("Patient", "1")
    message = str(info.value)
    assert leaked(message) == [] and "Authorization: ***" in message and len(message) < 500
    assert check_foreign(figures, "echo-2xx", foreign) == []


@pytest.mark.parametrize("auth", sorted(AUTHS))
def test_error_bodies_echoing_credentials_are_scrubbed(auth: str, foreign: FakeServer, figures: HostileSummary) -> None:
    with FakeServer("echo-error", foreign=foreign) as hostile, client_for(hostile, auth) as client:
        with pytest.raises(AuthError) as page:
            client.read("Patient", "1")
        with pytest.raises(HttpError) as outcome:
            client.transaction(TRANSACTION)
    for error in (page.value, outcome.value):
        text = f"{error} {error!r} {error.outcome} {error.issues}"
        assert leaked(text) == [], text
        assert len(str(error)) < 500
    assert check_foreign(figures, "echo-error", foreign) == []


@pytest.mark.parametrize("auth", sorted(AUTHS))
def test_a_truncated_body_is_a_transport_error_after_bounded_retries(auth: str, foreign: FakeServer, figures: HostileSummary) -> None:
    with FakeServer("truncated", foreign=foreign) as hostile, client_for(hostile, auth, attempts=3) as client:
        with pytest.raises(TransportError, match="dropped") as info:
            list(client.search("Patient"))
        assert len(hostile.received) == 3
    assert leaked(str(info.value)) == []
    assert check_foreign(figures, "truncated", foreign) == []


@pytest.mark.parametrize("auth", sorted(AUTHS))
def test_a_slow_body_times_out(auth: str, foreign: FakeServer, figures: HostileSummary) -> None:
    with FakeServer("slow", foreign=foreign) as hostile, client_for(hostile, auth, attempts=2, timeout=(2.0, 0.2)) as client:
        started = time.monotonic()
        with pytest.raises(TransportError):
            client.read("Patient", "1")
        assert time.monotonic() - started < 5, "a slow body does not hold the client for long"
        assert len(hostile.received) == 2
    assert check_foreign(figures, "slow", foreign) == []


@pytest.mark.parametrize("auth", sorted(AUTHS))
def test_a_huge_body_is_cut_off_at_the_limit(auth: str, foreign: FakeServer, figures: HostileSummary) -> None:
    with FakeServer("huge", foreign=foreign) as hostile, client_for(hostile, auth) as client:
        client._transport.max_body = 1 << 20
        with pytest.raises(ServerError, match="over the limit of 1048576 bytes"):
            client.read("Patient", "1")
        assert len(hostile.received) == 1, "not retried: the answer will not shrink"
    assert check_foreign(figures, "huge", foreign) == []


@pytest.mark.parametrize("mode", ["backslash-next", "redirect-302", "echo-2xx", "echo-error"])
def test_the_cli_ends_with_one_clear_line_and_exit_3(mode: str, foreign: FakeServer, figures: HostileSummary) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_SO_")}
    env.update(FHIR_SO_TOKEN=TOKEN, PYTHONPATH=str(ROOT))
    with FakeServer(mode, foreign=foreign) as hostile:
        done = subprocess.run(
            [sys.executable, "-c", "from fhir_so.cli import main; main()", "pull", "--server", hostile.base, "--case", "c-1"],
            env=env, capture_output=True, text=True, timeout=120,
        )
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr and leaked(done.stderr + done.stdout) == []
    assert len(done.stderr.strip().splitlines()) == 1 and len(done.stderr) < 600, done.stderr
    assert check_foreign(figures, mode, foreign) == []
