"""The server variant of this session does what its profile and database say (plain requests).

Runs on every variant (tests/live/conftest.py): the CapabilityStatement names the profile and
the database; the public profile reuses a search's results for 60 s (unless the request says
``Cache-Control: no-cache``), pages by 20 up to 200, generates narratives and refuses external
references, where the tuned profile answers every search fresh and pages by 10 up to 50; a
PostgreSQL server reports its database, and its password is in no log.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import requests

from tests.live.conftest import DATABASE, PROFILE, SOURCE_PORT, run_fhir_so

FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
NO_CACHE = {**FHIR_JSON, "Cache-Control": "no-cache"}
TIMEOUT = 60
SYSTEM = "https://fhir-so.example.org/sid/live-variant"
# (default page size, maximum page size) of each profile
PAGES = {"tuned": (10, 50), "public": (20, 200)}


def search(url: str, query: str, headers: dict[str, str] = FHIR_JSON) -> dict[str, Any]:
    response = requests.get(f"{url}/{query}", headers=headers, timeout=TIMEOUT)
    assert response.status_code == 200, response.text[:500]
    body: dict[str, Any] = response.json()
    return body


def basics(count: int, value: str) -> dict[str, Any]:
    """A transaction creating ``count`` Basic resources that share one identifier value."""
    entry = {
        "resource": {"resourceType": "Basic", "identifier": [{"system": SYSTEM, "value": value}], "code": {"text": "live variant"}},
        "request": {"method": "POST", "url": "Basic"},
    }
    return {"resourceType": "Bundle", "type": "transaction", "entry": [entry] * count}


def post(url: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(url if body["resourceType"] == "Bundle" else f"{url}/{body['resourceType']}", json=body, headers=FHIR_JSON, timeout=TIMEOUT)


def test_the_capability_statement_names_profile_and_database(fhir_server: str) -> None:
    capability = search(fhir_server, "metadata")
    assert capability["implementation"]["description"].endswith(f"profile {PROFILE}, database {DATABASE}")


def test_a_repeated_search_after_a_write_is_fresh_only_where_the_profile_says(fhir_server: str) -> None:
    value = uuid.uuid4().hex
    query = f"Basic?identifier={SYSTEM}|{value}"
    assert search(fhir_server, query)["total"] == 0
    assert post(fhir_server, basics(1, value)).status_code == 200
    again = search(fhir_server, query)
    if PROFILE == "public":
        # HAPI's default: the same search within 60 s returns the earlier (now stale) result.
        assert again.get("total", 0) == 0 and not again.get("entry")
    else:
        assert again["total"] == 1
    # Cache-Control: no-cache makes HAPI search again on every profile (what the client sends where it matters).
    assert len(search(fhir_server, query, NO_CACHE)["entry"]) == 1


def test_page_sizes_of_the_profile(fhir_server: str) -> None:
    default, maximum = PAGES[PROFILE]
    value = uuid.uuid4().hex
    assert post(fhir_server, basics(maximum + 5, value)).status_code == 200
    first = search(fhir_server, f"Basic?identifier={SYSTEM}|{value}", NO_CACHE)
    assert len(first["entry"]) == default
    assert any(link["relation"] == "next" for link in first["link"])
    capped = search(fhir_server, f"Basic?identifier={SYSTEM}|{value}&_count=1000", NO_CACHE)
    assert len(capped["entry"]) == maximum


def test_narratives_are_generated_only_on_the_public_profile(fhir_server: str) -> None:
    created = post(fhir_server, {"resourceType": "Patient", "name": [{"family": "Variant", "given": ["Live"]}], "gender": "female"})
    assert created.status_code == 201, created.text[:500]
    read = requests.get(f"{fhir_server}/Patient/{created.json()['id']}", headers=FHIR_JSON, timeout=TIMEOUT).json()
    if PROFILE == "public":
        assert read["text"]["status"] == "generated" and "VARIANT" in read["text"]["div"].upper()
    else:
        assert "text" not in read


def test_external_references_are_refused_only_on_the_public_profile(fhir_server: str) -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "live variant"},
        "subject": {"reference": "https://elsewhere.example.org/fhir/Patient/1"},
    }
    created = post(fhir_server, observation)
    assert created.status_code == (400 if PROFILE == "public" else 201), created.text[:500]


def test_status_reports_the_database_and_no_log_holds_a_password(fhir_server: str) -> None:
    done = run_fhir_so("server", "status", "--port", str(SOURCE_PORT), "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert (status["profile"], status["database"]) == (PROFILE, DATABASE)
    if DATABASE == "h2":
        assert status["postgres"] is None
        return
    postgres = status["postgres"]
    assert postgres["running"] is True and isinstance(postgres["port"], int)
    folder = Path(postgres["folder"])
    assert folder == Path(status["dataDir"]) / "pg"
    password = (folder / "password").read_text().strip()
    for log in (folder / "postgres.log", folder.parent / "server.log"):
        assert password not in log.read_text(errors="replace"), log
    assert password not in done.stdout + done.stderr
