"""The Bulk Data export protocol: kick-off, polling (Retry-After), the manifest as untrusted input, verified downloads."""

from __future__ import annotations

import email.utils
import io
import json
import secrets
from typing import Any

import pytest
import responses
from responses import matchers
from tests.client.client_helpers import BASE, outcome

from fhir_so.auth import BearerToken
from fhir_so.client import FhirClient, RetryPolicy
from fhir_so.client.bulk import BulkClient, ExportRequest, Manifest, NdjsonSink, OutputFile, PollPolicy
from fhir_so.client.urls import origin_of
from fhir_so.errors import InputError, NotFoundError, ServerError, UnsafeUrlError

TOKEN = f"tok-SECRET-{secrets.token_hex(5)}"
STATUS = f"{BASE}/$export-poll-status?_jobId=j1"
NOW = 1_700_000_000.0


def manifest(*outputs: dict[str, Any], errors: list[dict[str, Any]] | None = None, token: bool = True, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "transactionTime": "2026-11-29T10:00:00.000+00:00",
        "request": f"{BASE}/$export",
        "requiresAccessToken": token,
        "output": list(outputs),
        "error": errors or [],
    }
    data.update(extra)
    return data


def out(rtype: str, n: int, **extra: Any) -> dict[str, Any]:
    return {"type": rtype, "url": f"{BASE}/Binary/{rtype}-{n}", **extra}


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def bulk(client: FhirClient, waits: list[float]) -> BulkClient:
    return BulkClient(client, poll=PollPolicy(sleep=waits.append, clock=lambda: NOW, random=lambda: 0.5))


def authed(**kw: Any) -> FhirClient:
    return FhirClient(BASE, auth=BearerToken(TOKEN), retries=RetryPolicy(attempts=1), **kw)


# -- kick-off -----------------------------------------------------------------------------


def test_system_kick_off_is_an_async_get_with_the_parameters(rsps: responses.RequestsMock, bulk: BulkClient) -> None:
    rsps.get(
        f"{BASE}/$export",
        status=202,
        headers={"Content-Location": STATUS},
        match=[matchers.query_param_matcher({"_outputFormat": "application/fhir+ndjson", "_type": "Patient,Consent", "_since": "2026-11-01T00:00:00Z"})],
    )
    url = bulk.kick_off(ExportRequest(types=("Patient", "Consent"), since="2026-11-01T00:00:00Z"))
    assert url == STATUS
    sent = rsps.calls[0].request.headers
    assert sent["Prefer"] == "respond-async"
    assert sent["Accept"] == "application/fhir+json"


def test_patient_kick_off_with_patients_is_a_post_of_parameters(rsps: responses.RequestsMock, bulk: BulkClient) -> None:
    rsps.post(f"{BASE}/Patient/$export", status=202, headers={"Content-Location": "$export-poll-status?_jobId=j1"})
    url = bulk.kick_off(ExportRequest(level="patient", patients=("p1", "p2"), types=("Patient",)))
    assert url == STATUS  # a relative Content-Location is taken under the base URL
    body = json.loads(rsps.calls[0].request.body)
    assert body["resourceType"] == "Parameters"
    assert [p["valueReference"]["reference"] for p in body["parameter"] if p["name"] == "patient"] == ["Patient/p1", "Patient/p2"]


def test_group_kick_off_path(rsps: responses.RequestsMock, bulk: BulkClient) -> None:
    rsps.get(f"{BASE}/Group/g-1/$export", status=202, headers={"Content-Location": STATUS})
    assert bulk.kick_off(ExportRequest(level="group", group="g-1")) == STATUS


@pytest.mark.parametrize(
    ("status", "headers", "error", "message"),
    [
        (200, {}, ServerError, "expected 202"),
        (202, {}, ServerError, "no Content-Location"),
        (202, {"Content-Location": "https://evil.example.net/status/1"}, UnsafeUrlError, "outside the server's origin"),
        (202, {"Content-Location": "http://user@fhir.example.org/x"}, UnsafeUrlError, "user@"),
    ],
    ids=["not-202", "no-location", "foreign-status-url", "userinfo"],
)
def test_a_bad_kick_off_answer_is_refused(
    rsps: responses.RequestsMock, bulk: BulkClient, status: int, headers: dict[str, str], error: type[Exception], message: str
) -> None:
    rsps.get(f"{BASE}/$export", status=status, headers=headers, json={} if status == 200 else None)
    with pytest.raises(error, match=message):
        bulk.kick_off(ExportRequest())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"level": "system", "patients": ("p1",)},
        {"level": "group", "group": "g", "patients": ("p1",)},
        {"level": "group"},
        {"level": "system", "group": "g"},
        {"types": ("not a type",)},
        {"since": "yesterday"},
        {"level": "patient", "patients": ("bad id!",)},
    ],
    ids=["patients-at-system-level", "patients-at-group-level", "group-without-id", "id-without-group", "bad-type", "bad-since", "bad-patient-id"],
)
def test_bad_export_requests_are_input_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        ExportRequest(**kwargs)


# -- polling ------------------------------------------------------------------------------


def test_polling_honours_retry_after_and_passes_x_progress_on(rsps: responses.RequestsMock, bulk: BulkClient, waits: list[float]) -> None:
    rsps.get(STATUS, status=202, headers={"Retry-After": "3", "X-Progress": "50% done"})
    http_date = email.utils.formatdate(NOW + 7, usegmt=True)
    rsps.get(STATUS, status=202, headers={"Retry-After": http_date, "X-Progress": "90%\x1b[2J done"})
    rsps.get(STATUS, json=manifest(out("Patient", 1)))
    seen: list[tuple[str | None, float]] = []
    found = bulk.wait(STATUS, lambda status, wait: seen.append((status.progress, wait)))
    assert waits == [3.0, 7.0]
    assert seen == [("50% done", 3.0), ("90%?[2J done", 7.0)]  # a control character cannot reach the terminal
    assert [f.type for f in found.outputs] == ["Patient"]
    assert rsps.calls[0].request.headers["Accept"] == "application/json"


@pytest.mark.parametrize(
    ("retry_after", "polls", "expected"),
    [
        (None, 1, 1.0),
        (None, 3, 4.0),
        (None, 10, 30.0),
        ("soon", 2, 2.0),
        ("-5", 1, 1.0),
        ("0", 1, 1.0),
        ("99999999999999999999", 1, 1.0),
        ("86400", 1, 60.0),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 1, 1.0),
        ("Mon, 99 Foo 2026 99:99:99 GMT", 2, 2.0),
    ],
    ids=["absent", "absent-backoff", "absent-cap", "garbage", "negative", "zero", "too-many-digits", "a-day", "past-date", "bad-date"],
)
def test_poll_waits_stay_within_floor_and_ceiling(retry_after: str | None, polls: int, expected: float) -> None:
    policy = PollPolicy(clock=lambda: NOW, random=lambda: 0.5)
    assert policy.delay(polls, retry_after) == pytest.approx(expected)


def test_a_status_404_says_the_job_is_gone(rsps: responses.RequestsMock, bulk: BulkClient) -> None:
    rsps.get(STATUS, status=404, json=outcome("Job instance <j1> not found", "not-found"))
    with pytest.raises(NotFoundError, match="404"):
        bulk.wait(STATUS)


def test_a_failed_job_is_a_server_error_with_the_outcome(rsps: responses.RequestsMock, client: FhirClient) -> None:
    bulk = BulkClient(FhirClient(BASE, retries=RetryPolicy(attempts=1)), poll=PollPolicy(sleep=lambda s: None))
    rsps.get(STATUS, status=500, json=outcome("export failed: disk full"))
    with pytest.raises(ServerError, match="disk full"):
        bulk.wait(STATUS)


def test_the_deadline_stops_polling(rsps: responses.RequestsMock, client: FhirClient) -> None:
    clock = [NOW]
    bulk = BulkClient(client, poll=PollPolicy(deadline=10, sleep=lambda s: clock.__setitem__(0, clock[0] + s), clock=lambda: clock[0]))
    rsps.get(STATUS, status=202, headers={"Retry-After": "4"})
    with pytest.raises(ServerError, match="did not finish within 10 s.*resume"):
        bulk.wait(STATUS)


def test_cancel_deletes_the_status_url_and_tolerates_404(rsps: responses.RequestsMock, bulk: BulkClient) -> None:
    rsps.delete(STATUS, status=202)
    assert bulk.cancel(STATUS) is True
    rsps.replace(responses.DELETE, STATUS, status=404, json=outcome("already completed"))
    assert bulk.cancel(STATUS) is False


# -- the manifest -------------------------------------------------------------------------

ORIGIN = origin_of(BASE)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        ([], ServerError, r"at \$: not a JSON object"),
        (manifest(out("Patient", 1), transactionTime=None), ServerError, "transactionTime"),
        ({k: v for k, v in manifest().items() if k != "requiresAccessToken"}, ServerError, "requiresAccessToken"),
        (manifest(requiresAccessToken="yes"), ServerError, "requiresAccessToken"),
        ({k: v for k, v in manifest().items() if k != "output"}, ServerError, "at output: missing"),
        (manifest({"type": "Patient"}), ServerError, r"output\[0\].url: missing"),
        (manifest({"type": "patient!", "url": f"{BASE}/Binary/1"}), ServerError, r"output\[0\].type"),
        (manifest(out("Patient", 1, count=-1)), ServerError, r"output\[0\].count"),
        (manifest(out("Patient", 1, count="12")), ServerError, r"output\[0\].count"),
        (manifest(out("Patient", 1), out("Patient", 1)), ServerError, "listed twice"),
        (manifest({"type": "Patient", "url": "https://evil.example.net/steal"}), UnsafeUrlError, r"output\[0\].url.*outside the server's origin"),
        (manifest(errors=[{"type": "OperationOutcome", "url": "http://fhir.example.org/r4/e"}]), UnsafeUrlError, r"error\[0\].url"),
        (manifest({"type": "Patient", "url": "file:///etc/passwd"}), UnsafeUrlError, "only http and https"),
        (manifest({"type": "Patient", "url": "https://fhir.example.org\\@evil.example.net/x"}), UnsafeUrlError, "backslash"),
        (manifest(*[out("Patient", i) for i in range(10_001)]), ServerError, "more than 10000 files"),
    ],
    ids=[
        "not-object", "no-transaction-time", "no-requires-access-token", "token-not-bool", "no-output", "no-url",
        "bad-type", "negative-count", "string-count", "duplicate-url", "foreign-origin", "foreign-error-file",
        "file-scheme", "backslash-trick", "too-many-files",
    ],
)
def test_hostile_manifests_are_refused(data: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        Manifest.parse(data, ORIGIN)


def test_an_explicitly_allowed_origin_is_accepted() -> None:
    data = manifest({"type": "Patient", "url": "https://files.example.net/b/1.ndjson", "count": 2})
    found = Manifest.parse(data, ORIGIN, [origin_of("https://files.example.net")])
    assert found.outputs[0].count == 2 and found.errors == ()


# -- downloads ----------------------------------------------------------------------------


def sink(name: str = "Patient.1.ndjson", rtype: str = "Patient", **kw: Any) -> NdjsonSink:
    return NdjsonSink(io.BytesIO(), name=name, expected_type=rtype, **kw)


def ndjson(*resources: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in resources)


def test_download_sends_the_token_only_when_the_manifest_requires_it(rsps: responses.RequestsMock) -> None:
    body = ndjson({"resourceType": "Patient", "id": "1"})
    rsps.get(f"{BASE}/Binary/Patient-1", body=body)
    with authed() as c:
        bulk = BulkClient(c)
        for required in (True, False):
            target = sink()
            bulk.download(OutputFile("output", "Patient", f"{BASE}/Binary/Patient-1", 1, 0), target, requires_access_token=required)
            assert target.fh.getvalue() == body  # type: ignore[attr-defined]
    assert rsps.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert rsps.calls[0].request.headers["Accept"] == "application/fhir+ndjson"
    assert "Authorization" not in rsps.calls[1].request.headers


def test_a_file_on_an_allowed_origin_never_gets_the_token(rsps: responses.RequestsMock) -> None:
    url = "https://files.example.net/b/1.ndjson"
    rsps.get(url, body=ndjson({"resourceType": "Patient", "id": "1"}))
    with authed() as c:
        BulkClient(c, allowed_origins=["https://files.example.net"]).download(
            OutputFile("output", "Patient", url, None, 0), sink(), requires_access_token=True
        )
        with pytest.raises(UnsafeUrlError):
            BulkClient(c).download(OutputFile("output", "Patient", url, None, 0), sink(), requires_access_token=True)
    assert "Authorization" not in rsps.calls[0].request.headers
    assert len(rsps.calls) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"resourceType": "Patient", "id": "1"}\n{"resourceType": "Patient", "id": \n', r"Patient.1.ndjson: line 2: not JSON"),
        (b'{"resourceType": "Patient"}\n[1, 2]\n', r"Patient.1.ndjson: line 2: not a JSON object"),
        (b'\n{"resourceType": "Observation"}\n', r"Patient.1.ndjson: line 2: resourceType 'Observation' where the manifest declares Patient"),
        (b'{"resourceType": "Patient"}\n' * 3, r"3 resources where the manifest's output\[0\].count says 2"),
    ],
    ids=["bad-json", "not-object", "wrong-type", "count-mismatch"],
)
def test_a_bad_file_names_the_file_and_line(rsps: responses.RequestsMock, bulk: BulkClient, body: bytes, message: str) -> None:
    rsps.get(f"{BASE}/Binary/Patient-1", body=body)
    with pytest.raises(ServerError, match=message):
        bulk.download(OutputFile("output", "Patient", f"{BASE}/Binary/Patient-1", 2, 0), sink(), requires_access_token=False)


def test_a_huge_file_is_stopped_at_the_limit(rsps: responses.RequestsMock, bulk: BulkClient) -> None:
    rsps.get(f"{BASE}/Binary/Patient-1", body=b'{"resourceType": "Patient"}\n' * 10_000)
    with pytest.raises(ServerError, match="over the limit of 1,000 bytes"):
        bulk.download(OutputFile("output", "Patient", f"{BASE}/Binary/Patient-1", None, 0), sink(max_bytes=1000), requires_access_token=False)


def test_a_line_without_end_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    import fhir_so.client.bulk as bulk_module

    monkeypatch.setattr(bulk_module, "MAX_LINE_BYTES", 100)
    target = sink()
    with pytest.raises(ServerError, match="line 1: longer than 100 bytes"):
        for _ in range(10):
            target.write(b"x" * 50)


def test_the_last_line_needs_no_newline_and_blank_lines_are_skipped() -> None:
    target = sink()
    target.write(b'{"resourceType": "Patient", "id": "1"}\n\n{"resourceType"')
    target.write(b': "Patient", "id": "2"}')
    target.finish()
    assert target.resources == 2
    assert target.fh.getvalue().count(b"\n") == 2  # type: ignore[attr-defined]


def test_secrets_the_server_echoes_are_blanked_in_the_file(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/Binary/Patient-1", body=ndjson({"resourceType": "Patient", "note": f"saw {TOKEN}"}))
    with authed() as c:
        target = sink(scrub=c.data_scrubber())
        BulkClient(c).download(OutputFile("output", "Patient", f"{BASE}/Binary/Patient-1", None, 0), target, requires_access_token=True)
    assert TOKEN.encode() not in target.fh.getvalue()  # type: ignore[attr-defined]


def test_a_dropped_download_is_retried_from_the_start(rsps: responses.RequestsMock, client: FhirClient) -> None:
    import requests

    rsps.get(f"{BASE}/Binary/Patient-1", body=requests.exceptions.ChunkedEncodingError("dropped"))
    rsps.get(f"{BASE}/Binary/Patient-1", body=ndjson({"resourceType": "Patient", "id": "1"}))
    target = sink()
    BulkClient(client).download(OutputFile("output", "Patient", f"{BASE}/Binary/Patient-1", 1, 0), target, requires_access_token=False)
    assert target.resources == 1
