"""fhir-so import: dependency order, references rewritten across transactions, idempotent, resumable, bad lines named."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import responses
from tests.client.client_helpers import BASE, capability_statement, outcome

from fhir_so import terminology as term
from fhir_so.client import FhirClient, RetryPolicy
from fhir_so.errors import InputError, ServerError
from fhir_so.workflow.bulk_import import import_ndjson

SOURCE = "http://source.example.org/fhir"


class FakeServer:
    """Conditional creates by If-None-Exist: the same condition finds the same resource."""

    def __init__(self) -> None:
        self.by_condition: dict[str, str] = {}
        self.bundles: list[dict[str, Any]] = []
        self.next_id = 100
        self.fail_at: int | None = None
        self.by_tag: dict[str, str] = {}

    def transaction(self, request: Any) -> tuple[int, dict[str, str], str]:
        bundle = json.loads(request.body)
        self.bundles.append(bundle)
        if self.fail_at is not None and len(self.bundles) == self.fail_at:
            return 500, {}, json.dumps(outcome("database went away"))
        entries = []
        for entry in bundle["entry"]:
            rtype = entry["request"]["url"]
            condition = f"{rtype}?{entry['request']['ifNoneExist']}"
            if condition in self.by_condition:
                status, rid = "200 OK", self.by_condition[condition]
            else:
                self.next_id += 1
                status, rid = "201 Created", str(self.next_id)
                self.by_condition[condition] = rid
                for tag in entry["resource"]["meta"]["tag"]:
                    self.by_tag[f"{rtype}?{tag['system']}|{tag['code']}"] = rid
            entries.append({"response": {"status": status, "location": f"{rtype}/{rid}/_history/1"}})
        return 200, {}, json.dumps({"resourceType": "Bundle", "type": "transaction-response", "entry": entries})

    def search(self, request: Any) -> tuple[int, dict[str, str], str]:
        rtype = request.path_url.split("?")[0].rsplit("/", 1)[-1]
        query = dict(parse_qsl(request.path_url.split("?", 1)[1]))
        rid = self.by_tag.get(f"{rtype}?{query['_tag']}")
        entry = [{"resource": {"resourceType": rtype, "id": rid}}] if rid else []
        return 200, {}, json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": entry})

    def sent(self) -> list[dict[str, Any]]:
        return [e for b in self.bundles for e in b["entry"]]


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(f"{BASE}/metadata", json=capability_statement("transaction"))
        mock.add_callback(responses.POST, BASE, callback=fake.transaction)
        mock.add_callback(responses.GET, f"{BASE}/Practitioner", callback=fake.search)
        yield fake


def client() -> FhirClient:
    return FhirClient(BASE, retries=RetryPolicy(attempts=1))


def write(folder: Path, name: str, *resources: dict[str, Any] | str) -> Path:
    path = folder / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in resources))
    return path


PATIENT = {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "3", "lastUpdated": "2026-01-01T00:00:00Z", "source": "#x"},
           "identifier": [{"system": "urn:mrn", "value": "42"}]}
DOCTOR = {"resourceType": "Practitioner", "id": "d1", "name": [{"family": "Who"}]}
REQUEST = {"resourceType": "ServiceRequest", "id": "sr1", "status": "active", "intent": "order",
           "subject": {"reference": "Patient/p1"}, "requester": {"reference": f"{SOURCE}/Practitioner/d1"},
           "performer": [{"reference": "http://elsewhere.example.org/fhir/Practitioner/d1"}]}
REPORT = {"resourceType": "DiagnosticReport", "id": "dr1", "status": "final", "code": {"text": "x"},
          "basedOn": [{"reference": "ServiceRequest/sr1/_history/2"}], "subject": {"reference": "Patient/p1"}}


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    # files in an order that is not the dependency order: the import must sort it out
    write(tmp_path, "DiagnosticReport.1.ndjson", REPORT)
    write(tmp_path, "ServiceRequest.1.ndjson", REQUEST)
    write(tmp_path, "Patient.1.ndjson", PATIENT)
    write(tmp_path, "Practitioner.1.ndjson", DOCTOR)
    (tmp_path / "manifest.json").write_text(json.dumps({"request": f"{SOURCE}/$export?_type=Patient"}))
    (tmp_path / "errors").mkdir()
    write(tmp_path / "errors", "OperationOutcome.1.ndjson", outcome("not imported"))
    return tmp_path


def test_resources_go_in_dependency_order_with_references_rewritten_across_transactions(server: FakeServer, export_dir: Path) -> None:
    result = import_ndjson(client(), export_dir, batch_size=1)
    assert result.batches == 4 and result.created == {"Patient": 1, "Practitioner": 1, "ServiceRequest": 1, "DiagnosticReport": 1}
    sent = server.sent()
    assert [e["resource"]["resourceType"] for e in sent] == ["Patient", "Practitioner", "ServiceRequest", "DiagnosticReport"]
    by_type = {e["resource"]["resourceType"]: e for e in sent}
    request = by_type["ServiceRequest"]["resource"]
    assert request["subject"]["reference"] == "Patient/101"
    assert request["requester"]["reference"] == "Practitioner/102"  # absolute on the source: rewritten
    assert request["performer"][0]["reference"] == "http://elsewhere.example.org/fhir/Practitioner/d1"  # another server's: kept
    assert by_type["DiagnosticReport"]["resource"]["basedOn"][0]["reference"] == "ServiceRequest/103"
    patient = by_type["Patient"]
    assert "id" not in patient["resource"]
    assert patient["resource"]["meta"] == {"tag": [{"system": term.CS_IMPORT_SOURCE, "code": patient["resource"]["meta"]["tag"][0]["code"]}]}
    assert patient["resource"]["meta"]["tag"][0]["code"].endswith("/Patient/p1")
    assert patient["request"] == {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn%3Amrn%7C42"}
    assert by_type["Practitioner"]["request"]["ifNoneExist"].startswith("_tag=" + term.CS_IMPORT_SOURCE.replace(":", "%3A").replace("/", "%2F"))
    state = json.loads(Path(result.state).read_text())
    assert state["map"] == {"Patient/p1": "Patient/101", "Practitioner/d1": "Practitioner/102", "ServiceRequest/sr1": "ServiceRequest/103",
                            "DiagnosticReport/dr1": "DiagnosticReport/104"}


def test_inside_one_transaction_references_are_urn_uuids(server: FakeServer, export_dir: Path) -> None:
    import_ndjson(client(), export_dir, batch_size=100)
    (bundle,) = server.bundles
    urn = {e["resource"]["resourceType"]: e["fullUrl"] for e in bundle["entry"]}
    request = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest")
    assert request["subject"]["reference"] == urn["Patient"] and urn["Patient"].startswith("urn:uuid:")


def test_a_second_import_creates_nothing_new_even_without_the_state_file(server: FakeServer, export_dir: Path, tmp_path: Path) -> None:
    first = import_ndjson(client(), export_dir, batch_size=2)
    Path(first.state).unlink()
    again = import_ndjson(client(), export_dir, batch_size=2)
    assert not again.changed and sum(again.existing.values()) == 4
    assert again.summary()[-1].startswith("nothing new")


def test_a_rerun_with_the_state_file_sends_nothing(server: FakeServer, export_dir: Path) -> None:
    import_ndjson(client(), export_dir, batch_size=2)
    sent = len(server.bundles)
    again = import_ndjson(client(), export_dir, batch_size=2)
    assert len(server.bundles) == sent and again.resumed == 4 and again.batches == 0


def test_a_failed_import_resumes_where_it_stopped(server: FakeServer, export_dir: Path) -> None:
    server.fail_at = 3
    with pytest.raises(ServerError, match="database went away"):
        import_ndjson(client(), export_dir, batch_size=1)
    server.fail_at = None
    result = import_ndjson(client(), export_dir, batch_size=1)
    assert result.resumed == 2 and result.batches == 2
    assert [e["resource"]["resourceType"] for e in server.bundles[-1]["entry"]] == ["DiagnosticReport"]
    assert server.bundles[-1]["entry"][0]["resource"]["subject"]["reference"] == "Patient/101"  # from the saved map


def test_a_reference_cycle_travels_in_one_transaction(server: FakeServer, tmp_path: Path) -> None:
    a = {"resourceType": "Observation", "id": "a", "status": "final", "code": {"text": "a"}, "hasMember": [{"reference": "Observation/b"}]}
    b = {"resourceType": "Observation", "id": "b", "status": "final", "code": {"text": "b"}, "hasMember": [{"reference": "Observation/a"}]}
    write(tmp_path, "Observation.1.ndjson", a, b)
    import_ndjson(client(), tmp_path, batch_size=1, source="lab")
    (bundle,) = server.bundles
    urn = {e["resource"]["code"]["text"]: e["fullUrl"] for e in bundle["entry"]}
    refs = {e["resource"]["code"]["text"]: e["resource"]["hasMember"][0]["reference"] for e in bundle["entry"]}
    assert refs == {"a": urn["b"], "b": urn["a"]}


def test_a_target_outside_the_files_is_found_by_its_import_tag(server: FakeServer, export_dir: Path, tmp_path: Path) -> None:
    import_ndjson(client(), export_dir)
    subset = tmp_path / "subset"
    subset.mkdir()
    write(subset, "ServiceRequest.1.ndjson", dict(REQUEST, id="sr2", subject={"reference": "Practitioner/d1"}))
    result = import_ndjson(client(), subset, source=SOURCE)
    assert result.created == {"ServiceRequest": 1}
    assert server.bundles[-1]["entry"][0]["resource"]["subject"]["reference"] == "Practitioner/102"


def test_a_target_nowhere_stops_the_import_with_its_name(server: FakeServer, tmp_path: Path) -> None:
    write(tmp_path, "ServiceRequest.1.ndjson", dict(REQUEST, requester={"reference": "Practitioner/ghost"}, subject={"reference": "Practitioner/ghost"}))
    with pytest.raises(InputError, match="ServiceRequest/sr1 references Practitioner/ghost, which is neither in the files"):
        import_ndjson(client(), tmp_path, source=SOURCE)
    assert server.bundles == []


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([json.dumps(PATIENT), '{"resourceType": "Patient", "id": '], r"Patient.1.ndjson: at line 2: not JSON"),
        (["[1]"], r"Patient.1.ndjson: at line 1: not a JSON object"),
        (['{"id": "x"}'], r"Patient.1.ndjson: at line 1: no resourceType"),
        (['{"resourceType": "Patient", "id": "bad id!"}'], r"Patient.1.ndjson: at line 1: id: not a FHIR id"),
        ([json.dumps(PATIENT), "", json.dumps(PATIENT)], r"Patient.1.ndjson: at line 3: Patient/p1 is in the files twice .*line 1"),
    ],
    ids=["bad-json", "not-object", "no-type", "bad-id", "duplicate"],
)
def test_a_bad_line_stops_the_import_before_anything_is_sent(server: FakeServer, tmp_path: Path, lines: list[str], message: str) -> None:
    write(tmp_path, "Patient.1.ndjson", *lines)
    with pytest.raises(InputError, match=message):
        import_ndjson(client(), tmp_path)
    assert server.bundles == []


def test_a_state_file_of_another_server_is_refused(server: FakeServer, export_dir: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"format": "fhir-so-import-state/1", "import": {"server": "http://other/fhir", "source": SOURCE}, "map": {}}))
    with pytest.raises(InputError, match="another import"):
        import_ndjson(client(), export_dir, state_file=state)


def test_an_empty_folder_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no \*.ndjson file"):
        import_ndjson(client(), tmp_path)
