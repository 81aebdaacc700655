"""Bulk Data round trip on the two local HAPI servers: ``fhir-so export`` from A (system, Patient and Group
level), ``fhir-so import`` into B; same counts per type, the same cases read back (ids aside, every
reference pointing at the right resource), and a second import that creates nothing."""

from __future__ import annotations

import datetime as dt
import json
import math
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from tests.live.conftest import run_fhir_so

from fhir_so.bundle import build_bundle
from fhir_so.case import Case, case_from_dict, with_defaults
from fhir_so.client import FhirClient
from fhir_so.workflow import pull, push

ROOT = Path(__file__).resolve().parents[2]
RUN = uuid.uuid4().hex[:8]
EXAMPLES = ("urology-second-opinion", "cancer-remote-review", "telehealth-opinion")
LOCAL = "https://fhir-so.org/fhir/sid/local"


def fresh_identifiers(value: Any, n: int) -> Any:
    """The case JSON with every identifier made new to this run (NPIs move to a local system)."""
    if isinstance(value, dict):
        ident = value.get("identifier")
        if isinstance(ident, dict) and isinstance(ident.get("value"), str):
            value = dict(value, identifier={"system": LOCAL, "value": f"{ident['value']}-{RUN}-{n}"})
        return {k: fresh_identifiers(v, n) for k, v in value.items()}
    if isinstance(value, list):
        return [fresh_identifiers(v, n) for v in value]
    return value


def variant(name: str, n: int) -> Case:
    """An example case whose every party is new to this run, so an export since its push holds it whole."""
    path = ROOT / "examples" / f"{name}.case.json"
    data = fresh_identifiers(json.loads(path.read_text()), n)
    data["case_id"] = f"so-bulk-{RUN}-{n}"
    return case_from_dict(data, str(path), path.parent)


def expected_counts(cases: list[Case]) -> Counter[str]:
    """Resources per type on the server after pushing the cases: parties are created once per identifier."""
    distinct = {
        (e["resource"]["resourceType"], json.dumps(e["resource"].get("identifier")))
        for case in cases
        for e in build_bundle(case)["entry"]
    }
    return Counter(rtype for rtype, _ in distinct)


def cli_json(*args: str) -> dict[str, Any]:
    # polls at least every 2 s whatever Retry-After a server profile sends (stock HAPI says 120 s)
    extra = ("--max-poll-interval", "2") if args[0] == "export" else ()
    done = run_fhir_so(*args, *extra, "--json", timeout=180)
    assert done.returncode == 0, f"fhir-so {' '.join(args)} exited {done.returncode}:\n{done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_export_from_one_server_and_import_into_the_other(fhir_server_pair: tuple[str, str], tmp_path: Path) -> None:
    source_url, destination_url = fhir_server_pair
    cases = [variant(name, n) for n, name in enumerate(EXAMPLES)]
    # _since keeps what other tests wrote on the shared server out of this export
    start = dt.datetime.now(dt.timezone.utc)
    since = dt.datetime.fromtimestamp(math.ceil(start.timestamp()) + 1, dt.timezone.utc)
    time.sleep((since - start).total_seconds())
    with FhirClient(source_url) as src:
        pushed = [push(src, case) for case in cases]
        patient_id = pushed[0].of_type("Patient")[0].id
        group = src.create({"resourceType": "Group", "type": "person", "actual": True, "member": [{"entity": {"reference": f"Patient/{patient_id}"}}]})
    types = sorted(expected_counts(cases))
    since_text = since.strftime("%Y-%m-%dT%H:%M:%SZ")

    system = cli_json("export", "--server", source_url, "--type", ",".join(types), "--since", since_text, "-o", str(tmp_path / "system"))
    assert system["counts"] == dict(expected_counts(cases))
    assert system["errorFiles"] == []

    imported = cli_json("import", str(tmp_path / "system"), "--server", destination_url, "--batch-size", "10")
    assert imported["created"] == dict(expected_counts(cases)), imported
    assert imported["batches"] >= 3  # references crossed transactions

    with FhirClient(destination_url) as dst:
        for case in cases:
            # the whole case read back through its references: each points at the right resource
            assert pull(dst, case_id=case.case_id) == with_defaults(case)

    # a Patient-level export of one patient, with the patient parameter (a POST kick-off)
    patient = cli_json(
        "export", "--server", source_url, "--patient", patient_id, "--type", "Patient,ServiceRequest,Consent,DocumentReference",
        "-o", str(tmp_path / "patient"),
    )
    one = expected_counts(cases[:1])
    assert patient["counts"] == {t: one[t] for t in ("Patient", "ServiceRequest", "Consent", "DocumentReference") if one[t]}
    # its requester and performer are not in these files: found on B by the import tag of the first import
    again = cli_json("import", str(tmp_path / "patient"), "--server", destination_url)
    assert again["created"] == {} and sum(again["existing"].values()) == sum(patient["counts"].values())

    grouped = cli_json("export", "--server", source_url, "--group", str(group.id), "--type", "Patient", "-o", str(tmp_path / "group"))
    assert grouped["counts"] == {"Patient": 1}

    # idempotent without the state file too: conditional creates find every resource
    for state in (tmp_path / "system").glob(".fhir-so-import-*.json"):
        state.unlink()
    second = cli_json("import", str(tmp_path / "system"), "--server", destination_url)
    assert second["created"] == {} and second["existing"] == dict(expected_counts(cases))
