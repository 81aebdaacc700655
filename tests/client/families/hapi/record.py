"""Record the HAPI fixtures of this folder from a running local server (``fhir-so server start``).

    python tests/client/families/hapi/record.py http://127.0.0.1:8090/fhir

Each answer is written as it came (status, the headers the client reads, body), with the
server's base URL replaced by ``https://hapi.example.org/fhir``. Run it against an empty
server (a fresh ``--data`` folder): the fixtures' ids are what that server assigns.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).parent
BASE = "https://hapi.example.org/fhir"
KEPT = ("Location", "Content-Location", "ETag", "Last-Modified", "Content-Type", "X-Cache")
JSON = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}


def rebase(value: Any, server: str) -> Any:
    return json.loads(json.dumps(value).replace(server, BASE))


def record(name: str, server: str, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    answer = requests.request(method, url, json=body, headers={**JSON, **(headers or {})}, timeout=60)
    data = answer.json() if answer.content.strip() else None
    fixture = {
        "source": "recorded from the project's local HAPI FHIR JPA server (tests/client/families/hapi/record.py)",
        "request": {"method": method, "url": url.replace(server, BASE), "headers": headers or {}},
        "response": {
            "status": answer.status_code,
            "headers": {k: answer.headers[k] for k in KEPT if k in answer.headers},
            "body": data,
        },
    }
    fixture = rebase(fixture, server)
    (HERE / f"{name}.json").write_text(json.dumps(fixture, indent=2) + "\n")
    return data or {}


def main(server: str) -> None:
    server = server.rstrip("/")
    bundle = json.loads((HERE.parent / "push-bundle.json").read_text())
    first = record("push-first", server, "POST", server, bundle)
    record("push-again", server, "POST", server, bundle)
    patient = first["entry"][0]["response"]["location"].split("/_history")[0]
    request_id = first["entry"][2]["response"]["location"].split("/")[1]
    for n in range(2, 6):
        requests.post(
            f"{server}/ServiceRequest",
            json={"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": {"reference": patient},
                  "identifier": [{"system": "https://fhir-so.example.org/sid/case", "value": f"fam-case-{n}"}]},
            headers=JSON,
            timeout=60,
        ).raise_for_status()
    page = record("search-1", server, "GET", f"{server}/ServiceRequest?subject={patient}&_count=2", headers={"Cache-Control": "no-cache"})
    for n in range(2, 10):
        link = next((lk["url"] for lk in page.get("link", []) if lk["relation"] == "next"), None)
        if link is None:
            break
        page = record(f"search-{n}", server, "GET", link, headers={"Cache-Control": "no-cache"})
    patient_body = bundle["entry"][0]["resource"]
    record("create-match", server, "POST", f"{server}/Patient", patient_body,
           {"If-None-Exist": bundle["entry"][0]["request"]["ifNoneExist"], "Prefer": "return=representation"})
    current = requests.get(f"{server}/ServiceRequest/{request_id}", headers=JSON, timeout=60).json()
    record("update-conflict", server, "PUT", f"{server}/ServiceRequest/{request_id}", current,
           {"If-Match": 'W/"0"', "Prefer": "return=representation"})
    record("error", server, "POST", f"{server}/Patient", {"resourceType": "Patient", "gender": "sometimes"},
           {"Prefer": "return=representation"})
    record("create-minimal", server, "POST", f"{server}/Practitioner",
           {"resourceType": "Practitioner", "name": [{"family": "Minimal"}]}, {"Prefer": "return=minimal"})


def expect(name: str, value: Any) -> None:
    path = HERE / f"{name}.json"
    fixture = json.loads(path.read_text())
    fixture["expect"] = value
    path.write_text(json.dumps(fixture, indent=2) + "\n")


def add_expectations() -> None:
    """What the client must read from each answer (the tests compare its typed results to these)."""
    first = json.loads((HERE / "push-first.json").read_text())["response"]["body"]
    ids = [e["response"]["location"].split("/")[1] for e in first["entry"]]
    types = ["Patient", "Practitioner", "ServiceRequest"]
    expect("push-first", [[t, i, "1", "created"] for t, i in zip(types, ids)])
    # HAPI sees an identical conditional update as a no-op: version 1 stays.
    expect("push-again", [[t, i, "1", "unchanged"] for t, i in zip(types, ids)])
    for page in sorted(HERE.glob("search-*.json")):
        body = json.loads(page.read_text())["response"]["body"]
        expect(page.stem, [e["resource"]["id"] for e in body.get("entry", [])])
    expect("create-match", {"created": False, "id": ids[0], "version": "1"})
    expect("update-conflict", {"status": 409, "version": "0", "contains": "HAPI-0989: Trying to update"})
    expect("error", {"status": 400, "contains": "Unknown AdministrativeGender code 'sometimes'"})
    location = json.loads((HERE / "create-minimal.json").read_text())["response"]["headers"]["Location"]
    expect("create-minimal", {"id": location.split("/")[-3], "version": "1"})


if __name__ == "__main__":
    main(sys.argv[1])
    add_expectations()
