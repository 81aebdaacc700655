"""`fhir-so profiles install`: terminology first, then profiles; PUT only what the server lacks or holds differently."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import responses
from click.testing import CliRunner

from fhir_so import terminology as term
from fhir_so.cli import cli
from fhir_so.client import FhirClient, RetryPolicy
from fhir_so.packages import PackageCache
from fhir_so.workflow.profiles_install import install_profiles

BASE = "http://fhir.test/fhir"


class FakeServer:
    """Stores what is PUT; GET answers 404 until then. Counts writes."""

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.store: dict[str, dict[str, Any]] = {}
        self.puts: list[str] = []
        pattern = re.compile(rf"{BASE}/(CodeSystem|ValueSet|StructureDefinition)/[^/]+")
        mock.add_callback(responses.GET, pattern, callback=self.get)
        mock.add_callback(responses.PUT, pattern, callback=self.put)

    def key(self, request: Any) -> str:
        return request.url.removeprefix(BASE + "/")

    def get(self, request: Any) -> tuple[int, dict[str, str], str]:
        found = self.store.get(self.key(request))
        if found is None:
            return 404, {}, json.dumps({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]})
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(found)

    def put(self, request: Any) -> tuple[int, dict[str, str], str]:
        key = self.key(request)
        self.puts.append(key)
        body = json.loads(request.body)
        status = 200 if key in self.store else 201
        self.store[key] = {**body, "meta": {"versionId": str(self.puts.count(key)), "lastUpdated": "2026-01-01T00:00:00Z"}}
        return status, {"Content-Type": "application/fhir+json"}, json.dumps(self.store[key])


@pytest.fixture
def client() -> FhirClient:
    return FhirClient(BASE, retries=RetryPolicy(attempts=1))


def test_install_is_idempotent_and_terminology_goes_first(profiles_cache: PackageCache, client: FhirClient) -> None:
    with responses.RequestsMock() as mock:
        server = FakeServer(mock)
        first = install_profiles(client, profiles_cache)
        assert first["created"] == 19 and first["updated"] == first["unchanged"] == 0
        kinds = [k.split("/")[0] for k in server.puts]
        assert kinds == sorted(kinds, key=["CodeSystem", "ValueSet", "StructureDefinition"].index)
        assert "StructureDefinition/so-service-request" in server.puts

        second = install_profiles(client, profiles_cache)
        assert second["unchanged"] == 19 and len(server.puts) == 19  # no write on a re-run

        server.store["ValueSet/so-mode"]["title"] = "edited on the server"
        third = install_profiles(client, profiles_cache)
        assert third["updated"] == 1 and server.puts[-1] == "ValueSet/so-mode"
        assert server.store["ValueSet/so-mode"]["url"] == term.VS_MODE


def test_cli_install_needs_a_server_and_reports_json(profiles_cache: PackageCache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FHIR_SO_SERVER", raising=False)
    runner = CliRunner()
    missing = runner.invoke(cli, ["profiles", "install", "--cache", str(profiles_cache.root)])
    assert missing.exit_code == 2 and "--server" in missing.output
    with responses.RequestsMock() as mock:
        FakeServer(mock)
        answer = runner.invoke(cli, ["profiles", "install", "--server", BASE, "--cache", str(profiles_cache.root), "--json"])
    assert answer.exit_code == 0, answer.output
    report = json.loads(answer.stdout)
    assert report["created"] == 19 and {r["resourceType"] for r in report["resources"]} == {"CodeSystem", "ValueSet", "StructureDefinition"}
