"""``fhir-so transfer --all`` on the two local HAPI servers: a batch of 20 cases with mixed consents,
killed (SIGKILL) in the middle and resumed: nothing lost, nothing duplicated, finished cases not redone."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tests.live.conftest import fhir_so_command

from fhir_so import terminology as term
from fhir_so.bundle import build_bundle
from fhir_so.case import Case, load_case
from fhir_so.client import FhirClient
from fhir_so.workflow import push

ROOT = Path(__file__).resolve().parents[2]
RUN = uuid.uuid4().hex[:8]
CASES = 20
REFUSED = {3, 8, 13, 18}  # records consent revoked


def variant(case: Case, n: int) -> Case:
    patient = case.patient.model_copy(update={"identifier": case.patient.identifier.model_copy(update={"value": f"B-{RUN}-{n:03d}"})})
    update: dict[str, Any] = {"case_id": f"so-batch-{RUN}-{n:03d}", "patient": patient}
    if n in REFUSED:
        assert case.records_consent is not None
        update["records_consent"] = case.records_consent.model_copy(update={"status": "revoked"})
    return case.model_copy(update=update)


def copies(client: FhirClient, case: Case) -> dict[str, int]:
    """How many resources the server holds under each identifier of the case's bundle."""
    found = {}
    for entry in build_bundle(case)["entry"]:
        rtype = entry["resource"]["resourceType"]
        if rtype in ("Practitioner", "Organization"):
            continue  # shared by every case (and by other tests)
        ident = entry["resource"]["identifier"][0]
        found[f"{rtype}|{ident['value']}"] = client.search(rtype, identifier=f"{ident['system']}|{ident['value']}").count()
    return found


def test_a_batch_killed_in_the_middle_resumes_without_loss_or_duplicates(
    fhir_server_pair: tuple[str, str], tmp_path: Path
) -> None:
    source_url, destination_url = fhir_server_pair
    first = load_case(ROOT / "examples" / "urology-second-opinion.case.json").model_copy(update={"opinion": None, "task": None})
    cases = [variant(first, n) for n in range(CASES)]
    # --since keeps other tests' cases on the shared server out of this batch
    start = dt.datetime.now(dt.timezone.utc)
    since = dt.datetime.fromtimestamp(math.ceil(start.timestamp()) + 1, dt.timezone.utc)
    time.sleep((since - start).total_seconds())
    with FhirClient(source_url) as src:
        for case in cases:
            push(src, case)
    state = tmp_path / "batch.json"
    command = [*fhir_so_command(), "transfer", "--from", source_url, "--to", destination_url, "--all", "--jobs", "4",
               "--since", since.strftime("%Y-%m-%dT%H:%M:%SZ"), "--state", str(state), "--json"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    first_lines = []
    for line in child.stdout:
        first_lines.append(json.loads(line))
        if len(first_lines) == 8:
            break
    child.send_signal(signal.SIGKILL)  # mid-batch: other cases are in flight
    child.wait(timeout=60)
    child.stdout.close()
    assert child.stderr is not None
    child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    saved = json.loads(state.read_text())["cases"]
    finished_first = {rid for rid, c in saved.items() if "outcome" in c}
    assert {x["request_id"] for x in first_lines if x["outcome"] != "failed"} <= finished_first
    assert len(finished_first) < CASES

    resumed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 1, resumed.stderr  # some cases refused by consent
    lines = [json.loads(x) for x in resumed.stdout.splitlines()]
    summary = lines.pop()["summary"]
    assert (summary["total"], summary["moved"], summary["refused"], summary["failed"]) == (CASES, CASES - len(REFUSED), len(REFUSED), 0)
    # finished cases were not redone: the resumed run reports them from the state file
    assert {x["request_id"] for x in lines if x["earlier_run"]} == finished_first
    assert all(x["earlier_run"] for x in lines if x["request_id"] in finished_first)
    assert sorted(x["case_id"] for x in lines if x["outcome"] == "moved") == sorted(
        c.case_id for n, c in enumerate(cases) if n not in REFUSED)
    assert all("revoked" in x["reason"] for x in lines if x["outcome"] == "refused")

    with FhirClient(destination_url) as dst:
        for n, case in enumerate(cases):
            found = copies(dst, case)
            if n in REFUSED:
                assert set(found.values()) == {0}, f"refused case {n} reached the destination: {found}"
            else:
                # no loss, no duplicate: exactly one of each of the case's resources (withheld none)
                assert set(found.values()) == {1}, f"case {n}: {found}"
        # one Provenance per moved case, written once, by the run that moved it
        final = json.loads(state.read_text())["cases"]
        for x in lines:
            if x["outcome"] != "moved":
                continue
            assert final[x["request_id"]]["transfer_id"] == x["transfer_id"]
            tagged = dst.search("Provenance", _tag=f"{term.TAG_TRANSFER}|{x['transfer_id']}").count()
            assert tagged == 1, x["case_id"]

    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 1
    assert all(json.loads(x).get("earlier_run", True) for x in again.stdout.splitlines())
