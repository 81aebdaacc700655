"""The CLI's application object and parameter types: bad values are usage errors (exit 2), clients close."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
import responses
from click.testing import CliRunner

from fhir_so.auth import BearerToken
from fhir_so.cli import cli
from fhir_so.cli.app import App
from fhir_so.client import FhirClient

BASE = "https://clinic.example.org/fhir"
CASE = str(Path(__file__).resolve().parents[2] / "examples" / "urology-second-opinion.case.json")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["push", CASE, "--server", "ftp://clinic.example.org/fhir"], "must be http(s)://host"),
        (["pull", "--server", "clinic.example.org", "--case", "x"], "must be http(s)://host"),
        (["push", CASE, "--server", "https://user:s3cret@clinic.example.org/fhir"], "credentials in the auth options"),
        (["push", CASE, "--server", "https://clinic.example.org/fhir?access_token=s3cret"], "must not have a query"),
        (["transfer", "--from", "nope", "--to", BASE, "--request", "1"], "Invalid value for '--from'"),
        (["validate", "--package", "not a package", CASE], "is not NAME#VERSION"),
        (["validate", "--package", CASE, CASE], "not a FHIR package"),
        (["packages", "install", "hl7.fhir.us.core"], "is not NAME#VERSION"),
        (["build", "/no/such/case.json"], "no such file"),
        (["push", "/no/such/case.json", "--server", BASE], "no such file"),
        (["transfer", "--from", BASE, "--to", "https://expert.example.org/fhir"], "exactly one of --request or --case"),
        (["push", CASE, "--server", BASE, "--timeout", "0"], "--timeout"),
    ],
    ids=[
        "ftp-url", "no-scheme", "credentials-in-url", "token-in-query", "transfer-from", "package-spec", "package-file",
        "install-spec", "build-missing-case", "push-missing-case", "transfer-no-case", "zero-timeout",
    ],
)
def test_bad_values_are_usage_errors(runner: CliRunner, args: list[str], message: str) -> None:
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "s3cret" not in result.output
    assert "Traceback" not in result.output


def test_a_bad_case_file_names_the_file_and_the_place(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "case.json"
    bad.write_text('{"case_id": "x y"}', encoding="utf-8")
    result = runner.invoke(cli, ["push", str(bad), "--server", BASE])
    assert result.exit_code == 2
    # bad input, not a usage error: one line naming the file and the place
    assert result.stderr.count("\n") == 1 and str(bad) in result.stderr and "at $" in result.stderr


class Recording(FhirClient):
    """A client that records what it was built with and whether it was closed."""

    made: list[Recording] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closed = False
        Recording.made.append(self)

    def close(self) -> None:
        self.closed = True
        super().close()


@responses.activate
@pytest.mark.parametrize("env_timeout", [None, "7"], ids=["flag-default", "env"])
def test_every_client_gets_the_one_timeout_policy_and_is_closed(runner: CliRunner, env_timeout: str | None) -> None:
    responses.get(f"{BASE}/ServiceRequest", json={"resourceType": "Bundle", "type": "searchset", "entry": []})
    Recording.made.clear()
    option_env = {"FHIR_SO_TIMEOUT": env_timeout} if env_timeout else {}  # options read the process environment
    app = App(env={"FHIR_SO_TOKEN": "tok"}, client_class=Recording)
    result = runner.invoke(cli, ["pull", "--server", BASE, "--case", "absent-case"], obj=app, env=option_env)
    assert result.exit_code == 2, result.output  # not on the server: CaseNotFoundError
    assert "has no ServiceRequest with case id absent-case" in result.stderr
    (client,) = Recording.made
    assert client.closed, "the context closes every client it made, also when the command fails"
    assert client.timeout == ((7.0, 7.0) if env_timeout else (10.0, 30.0))
    assert isinstance(client.auth, BearerToken)


def test_each_side_of_a_transfer_reads_its_own_credentials() -> None:
    app = App(env={"FHIR_SO_TOKEN": "both", "FHIR_SO_TO_TOKEN": "expert"})
    assert isinstance(app.auth("to"), BearerToken) and isinstance(app.auth("from"), BearerToken)
    assert app.auth("to") != app.auth("from")
    assert App(env={}).auth("from") is None


def test_a_client_without_a_url_is_a_clear_error() -> None:
    with click.Context(click.Command("x")):
        with pytest.raises(Exception, match="--from"):
            App(env={}).client(None, what="--from")
