"""The local HAPI FHIR server does what the rest of fhir-so relies on (plain requests, no FhirClient).

Transactions from every example bundle, read-back and search by case id, $validate against a
profile uploaded as a differential only, two independent servers, and the stop / start /
reset life cycle of an instance of its own.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from fhir_so.terminology import SID_CASE
from tests.live.bundles import with_unique_identifiers
from tests.live.conftest import DATABASE, PROFILE, run_fhir_so

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
CASE_ID_SYSTEM = SID_CASE  # the project's case-id system: the ServiceRequest's idempotency key
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
TIMEOUT = 120


def transaction_bundles() -> list[Path]:
    """Every example bundle, plus the hand-written one that keeps this test real without examples."""
    return sorted((ROOT / "examples").glob("*.bundle.json")) + [DATA / "minimal-case.bundle.json"]


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def case_identifier(bundle: dict[str, Any]) -> str:
    """The ServiceRequest's case id in the bundle (the project's idempotency key)."""
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "ServiceRequest":
            for ident in resource.get("identifier", []):
                if ident.get("system") == CASE_ID_SYSTEM:
                    return str(ident["value"])
    raise AssertionError("the bundle has no ServiceRequest with a case id")


def test_capability_statement(fhir_server: str) -> None:
    response = requests.get(f"{fhir_server}/metadata", headers=FHIR_JSON, timeout=TIMEOUT)
    assert response.status_code == 200
    capability = response.json()
    assert capability["resourceType"] == "CapabilityStatement"
    assert capability["fhirVersion"] == "4.0.1"
    rest = capability["rest"][0]
    assert "transaction" in {i["code"] for i in rest["interaction"]}
    resources = {r["type"]: r for r in rest["resource"]}
    for kind in ("ServiceRequest", "Consent", "DocumentReference", "DiagnosticReport"):
        assert kind in resources, kind
        assert "validate" in {op["name"] for op in resources[kind].get("operation", [])}, kind
    assert "snapshot" in {op["name"] for op in resources["StructureDefinition"].get("operation", [])}


@pytest.mark.parametrize("path", transaction_bundles(), ids=lambda p: p.name.removesuffix(".bundle.json"))
def test_transaction_is_stored_readable_and_searchable(fhir_server: str, path: Path) -> None:
    bundle = with_unique_identifiers(load(path), uuid.uuid4().hex[:12])
    response = requests.post(fhir_server, json=bundle, headers=FHIR_JSON, timeout=TIMEOUT)
    assert response.status_code == 200, response.text[:2000]
    reply = response.json()
    assert reply["type"] == "transaction-response"
    assert len(reply["entry"]) == len(bundle["entry"])
    assert [e["response"]["status"].split()[0] for e in reply["entry"]] == ["201"] * len(bundle["entry"])

    for sent, got in zip(bundle["entry"], reply["entry"]):
        location = got["response"]["location"].split("/_history")[0]
        read = requests.get(f"{fhir_server}/{location}", headers=FHIR_JSON, timeout=TIMEOUT)
        assert read.status_code == 200, location
        assert read.json()["resourceType"] == sent["resource"]["resourceType"]

    found = requests.get(
        f"{fhir_server}/ServiceRequest",
        params={"identifier": f"{CASE_ID_SYSTEM}|{case_identifier(bundle)}"},
        # a search right after a write: a stock HAPI (the public profile) may answer it from its cache otherwise
        headers={**FHIR_JSON, "Cache-Control": "no-cache"},
        timeout=TIMEOUT,
    ).json()
    matches = [e for e in found.get("entry", []) if e.get("search", {}).get("mode", "match") == "match"]
    assert len(matches) == 1


def test_validate_uses_an_uploaded_profile_without_snapshot(fhir_server: str) -> None:
    profile = load(DATA / "patient-birthdate.profile.json")
    assert "snapshot" not in profile
    put = requests.put(f"{fhir_server}/StructureDefinition/{profile['id']}", json=profile, headers=FHIR_JSON, timeout=TIMEOUT)
    assert put.status_code in (200, 201), put.text[:2000]

    def validate(patient: dict[str, Any]) -> list[dict[str, Any]]:
        response = requests.post(
            f"{fhir_server}/Patient/$validate",
            params={"profile": profile["url"]},
            json=patient,
            headers=FHIR_JSON,
            timeout=TIMEOUT,
        )
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        return [i for i in outcome["issue"] if i["severity"] in ("error", "fatal")]

    errors = validate({"resourceType": "Patient", "name": [{"family": "Nobirth"}]})
    assert len(errors) == 1, errors
    assert "Patient.birthDate" in errors[0]["diagnostics"]
    assert errors[0]["expression"] == ["Patient"]  # the element that lacks its required child

    assert validate({"resourceType": "Patient", "name": [{"family": "Born"}], "birthDate": "1971-04-12"}) == []

    snapshot = requests.get(
        f"{fhir_server}/StructureDefinition/$snapshot", params={"url": profile["url"]}, headers=FHIR_JSON, timeout=TIMEOUT
    )
    assert snapshot.status_code == 200
    elements = {e["path"]: e for e in snapshot.json()["snapshot"]["element"]}
    assert elements["Patient.birthDate"]["min"] == 1 and "Patient.gender" in elements


def test_source_and_destination_are_independent(fhir_server_pair: tuple[str, str]) -> None:
    source, destination = fhir_server_pair
    assert source != destination
    patient_id = f"independent-{uuid.uuid4().hex[:12]}"
    patient = {"resourceType": "Patient", "id": patient_id, "name": [{"family": "OnlyOnSource"}]}
    put = requests.put(f"{source}/Patient/{patient_id}", json=patient, headers=FHIR_JSON, timeout=TIMEOUT)
    assert put.status_code == 201, put.text[:2000]
    assert requests.get(f"{source}/Patient/{patient_id}", headers=FHIR_JSON, timeout=TIMEOUT).status_code == 200
    assert requests.get(f"{destination}/Patient/{patient_id}", headers=FHIR_JSON, timeout=TIMEOUT).status_code == 404


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_stop_start_keeps_data_and_reset_clears_it(tmp_path: Path) -> None:
    """A server of its own (a free port, its own data folder; the session's profile and database): stop, start, reset."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    data = tmp_path / "hapi"
    instance = ("--port", port, "--data", str(data))
    variant = ("--profile", PROFILE, "--db", DATABASE)
    url = f"http://127.0.0.1:{port}/fhir"
    try:
        first = run_fhir_so("server", "start", *instance, *variant, "--json")
        assert first.returncode == 0, first.stderr
        pid = json.loads(first.stdout)["pid"]
        assert (json.loads(first.stdout)["profile"], json.loads(first.stdout)["database"]) == (PROFILE, DATABASE)
        postgres_pid = (json.loads(first.stdout)["postgres"] or {}).get("pid")
        assert (postgres_pid is not None) == (DATABASE == "postgres")
        put = requests.put(f"{url}/Patient/kept-1", json={"resourceType": "Patient", "id": "kept-1"}, headers=FHIR_JSON, timeout=TIMEOUT)
        assert put.status_code == 201, put.text[:2000]

        again = run_fhir_so("server", "start", *instance, "--json")
        assert again.returncode == 0 and json.loads(again.stdout)["alreadyRunning"] is True

        stop = run_fhir_so("server", "stop", *instance, "--json")
        assert stop.returncode == 0 and json.loads(stop.stdout) == {"stopped": True, "pid": pid, "url": url}
        assert not pid_alive(pid)
        assert postgres_pid is None or not pid_alive(postgres_pid)  # stop ends the server's PostgreSQL too
        assert not (data / "server.pid").exists()
        status = json.loads(run_fhir_so("server", "status", *instance, "--json").stdout)
        assert status["running"] is False

        second = run_fhir_so("server", "start", *instance, *variant, "--json")
        assert second.returncode == 0, second.stderr
        assert requests.get(f"{url}/Patient/kept-1", headers=FHIR_JSON, timeout=TIMEOUT).status_code == 200
        second_pid = json.loads(second.stdout)["pid"]

        reset = run_fhir_so("server", "reset", *instance, "--json")
        assert reset.returncode == 0, reset.stderr
        assert json.loads(reset.stdout)["stopped"] == second_pid
        assert not pid_alive(second_pid)
        assert not (data / "h2").exists() and not (data / "pg").exists()
    finally:
        run_fhir_so("server", "stop", *instance)
