"""The push / pull / transfer commands: output, --json, and exit codes (0 done, 1 consent, 2 bad input, 3 server)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import responses
from click.testing import CliRunner
from tests.workflow.conftest import BASE, EXAMPLES, OTHER
from tests.workflow.fake_fhir import FakeFhir, serve_with_responses

from fhir_so.case import load_case, with_defaults
from fhir_so.cli import cli

UROLOGY = EXAMPLES / "urology-second-opinion.case.json"


@pytest.fixture
def servers(rsps: responses.RequestsMock) -> Iterator[tuple[FakeFhir, FakeFhir]]:
    clinic, expert = FakeFhir(BASE), FakeFhir(OTHER)
    serve_with_responses(rsps, clinic, expert)
    yield clinic, expert


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("FHIR_SO_SERVER", "FHIR_SO_TOKEN", "FHIR_SO_FROM", "FHIR_SO_TO", "FHIR_SO_USERNAME", "FHIR_SO_PASSWORD", "FHIR_SO_CLIENT_ID", "FHIR_SO_PRIVATE_KEY"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def run(runner: CliRunner, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_push_prints_ids_then_nothing_new(runner: CliRunner, servers: tuple[FakeFhir, FakeFhir]) -> None:
    code, out, _ = run(runner, "push", str(UROLOGY), "--server", BASE)
    assert code == 0
    assert "13 created" in out and "ServiceRequest/5" in out
    code, out, _ = run(runner, "push", str(UROLOGY), "--server", BASE, "--json")
    data = json.loads(out)
    assert code == 0 and data["changed"] is False and data["counts"]["unchanged"] == 13  # with the Task the example carries
    assert data["request_id"] == "5"


def test_push_a_bundle_and_flag_stat(runner: CliRunner, servers: tuple[FakeFhir, FakeFhir], tmp_path: Path) -> None:
    code, _, err = run(runner, "push", str(EXAMPLES / "stat-request.bundle.json"), "--server", BASE)
    assert code == 0 and "FLAG" in err and "stat" in err


def test_push_uses_the_server_from_the_environment(runner: CliRunner, servers: tuple[FakeFhir, FakeFhir], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIR_SO_SERVER", BASE)
    monkeypatch.setenv("FHIR_SO_TOKEN", "s3cret-token")
    code, out, err = run(runner, "push", str(UROLOGY))
    assert code == 0
    assert "s3cret-token" not in out + err


@pytest.mark.parametrize(
    ("content", "fragment"),
    [("{", "malformed JSON"), ('{"case_id": 1}', "bad.json: at $: 'requested' is a required property"), ('{"resourceType": "Bundle", "type": "batch"}', "bad.json: at Bundle.type: expected a transaction Bundle")],
    ids=["malformed", "bad-case", "not-a-transaction"],
)
def test_push_bad_input_exits_2(runner: CliRunner, servers: tuple[FakeFhir, FakeFhir], tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    code, _, err = run(runner, "push", str(path), "--server", BASE)
    assert code == 2 and fragment in err and "Traceback" not in err


def test_push_without_a_server_exits_2(runner: CliRunner) -> None:
    code, _, err = run(runner, "push", str(UROLOGY))
    assert code == 2 and "--server" in err


def test_push_to_a_server_that_is_down_exits_3(runner: CliRunner, rsps: responses.RequestsMock) -> None:
    code, _, err = run(runner, "push", str(UROLOGY), "--server", "http://127.0.0.1:9/fhir")
    assert code == 3 and "Traceback" not in err


def test_pull_case_and_bundle(runner: CliRunner, servers: tuple[FakeFhir, FakeFhir], tmp_path: Path) -> None:
    run(runner, "push", str(UROLOGY), "--server", BASE)
    code, out, _ = run(runner, "pull", "--server", BASE, "--case", "so-2026-uro-0417")
    assert code == 0
    from fhir_so.case import case_from_dict

    assert case_from_dict(json.loads(out)) == with_defaults(load_case(UROLOGY))
    target = tmp_path / "b.json"
    code, _, _ = run(runner, "pull", "--server", BASE, "--request", "5", "--as", "bundle", "-o", str(target))
    bundle = json.loads(target.read_text())
    assert code == 0 and bundle["type"] == "collection" and bundle["entry"][0]["fullUrl"] == f"{BASE}/ServiceRequest/5"


def test_pull_patient_writes_one_file_per_case(runner: CliRunner, servers: tuple[FakeFhir, FakeFhir], tmp_path: Path) -> None:
    run(runner, "push", str(UROLOGY), "--server", BASE)
    run(runner, "push", str(EXAMPLES / "urology-third-opinion.case.json"), "--server", BASE)
    code, _, err = run(runner, "pull", "--server", BASE, "--patient", "1")
    assert code == 2 and "-o DIRECTORY" in err
    code, _, _ = run(runner, "pull", "--server", BASE, "--patient", "1", "-o", str(tmp_path / "cases"))
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "cases").iterdir()) == ["so-2026-uro-0417-3.case.json", "so-2026-uro-0417.case.json"]


@pytest.mark.parametrize(
    "args",
    [["--request", "1", "--case", "x"], [], ["--request", "../x"], ["--case", "missing"]],
    ids=["two-keys", "no-key", "hostile-id", "missing-case"],
)
def test_pull_bad_input_exits_2(runner: CliRunner, servers: tuple[FakeFhir, FakeFhir], args: list[str]) -> None:
    code, _, err = run(runner, "pull", "--server", BASE, *args)
    assert code == 2 and "Traceback" not in err


def test_transfer_dry_run_then_real_then_report_back(runner: CliRunner, servers: tuple[FakeFhir, FakeFhir], tmp_path: Path) -> None:
    clinic, expert = servers
    case = load_case(UROLOGY)
    first = tmp_path / "first.case.json"
    first.write_text(case.model_copy(update={"opinion": None}).to_json())
    run(runner, "push", str(first), "--server", BASE)
    code, out, _ = run(runner, "transfer", "--from", BASE, "--to", OTHER, "--request", "5", "--dry-run")
    assert code == 0 and out.startswith("plan (dry run") and expert.store == {}
    state = tmp_path / "state.json"
    code, out, _ = run(runner, "transfer", "--from", BASE, "--to", OTHER, "--request", "5", "--state", str(state), "--json")
    data = json.loads(out)
    assert code == 0 and data["provenance"].startswith("Provenance/") and json.loads(state.read_text())["steps"]["done"]
    # The second physician writes the opinion on the expert server, then it goes back.
    pulled = tmp_path / "expert.case.json"
    run(runner, "pull", "--server", OTHER, "--case", case.case_id, "-o", str(pulled))
    with_opinion = json.loads(pulled.read_text()) | {"opinion": json.loads(case.model_dump_json(exclude_defaults=True))["opinion"]}
    pulled.write_text(json.dumps(with_opinion))
    run(runner, "push", str(pulled), "--server", OTHER)
    code, out, _ = run(runner, "transfer", "--from", OTHER, "--to", BASE, "--request", data["destination_request_id"], "--report-back")
    assert code == 0 and "report back" in out and clinic.count("DiagnosticReport") == 1


def test_transfer_names_the_case_by_its_case_id(runner: CliRunner, servers: tuple[FakeFhir, FakeFhir], tmp_path: Path) -> None:
    clinic, expert = servers
    case = load_case(UROLOGY)
    first = tmp_path / "first.case.json"
    first.write_text(case.updated(opinion=None).to_json())
    run(runner, "push", str(first), "--server", BASE)
    code, out, _ = run(runner, "transfer", "--from", BASE, "--to", OTHER, "--case", case.case_id, "--json")
    assert code == 0 and json.loads(out)["request_id"] == "5" and expert.count("ServiceRequest") == 1
    code, _, err = run(runner, "transfer", "--from", BASE, "--to", OTHER, "--case", "not-there")
    assert code == 2 and "has no ServiceRequest with case id not-there" in err
    code, _, err = run(runner, "transfer", "--from", BASE, "--to", OTHER, "--case", case.case_id, "--request", "5")
    assert code == 2 and "exactly one of --request or --case" in err


def test_transfer_refused_by_consent_exits_1(runner: CliRunner, servers: tuple[FakeFhir, FakeFhir], tmp_path: Path) -> None:
    clinic, expert = servers
    case = load_case(UROLOGY)
    consent = case.records_consent
    assert consent is not None
    path = tmp_path / "revoked.case.json"
    path.write_text(case.model_copy(update={"records_consent": consent.model_copy(update={"status": "revoked"})}).to_json())
    run(runner, "push", str(path), "--server", BASE)
    code, _, err = run(runner, "transfer", "--from", BASE, "--to", OTHER, "--request", "5", "--state", str(tmp_path / "s.json"))
    assert code == 1 and "revoked" in err and "nothing was sent" in err
    assert expert.store == {} and not (tmp_path / "s.json").exists()


def test_transfer_needs_both_servers(runner: CliRunner) -> None:
    code, _, err = run(runner, "transfer", "--from", BASE, "--request", "5")
    assert code == 2 and "--to" in err


def test_transfer_help_documents_report_back(runner: CliRunner) -> None:
    code, out, _ = run(runner, "transfer", "--help")
    assert code == 0 and "--report-back" in out and "--dry-run" in out and "--state" in out


def test_demo_on_given_servers(runner: CliRunner, servers: tuple[FakeFhir, FakeFhir]) -> None:
    code, out, _ = run(runner, "demo", "--server", BASE, "--second-server", OTHER)
    assert code == 0
    assert "REFUSED" in out and "third opinion" in out and out.rstrip().endswith("nothing is duplicated.")


def test_demo_with_a_folder_missing_the_examples_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    code, _, err = run(runner, "demo", "--server", BASE, "--second-server", OTHER, "--examples", str(tmp_path))
    assert code == 2 and "urology example" in err


def test_each_side_of_a_transfer_gets_only_its_own_credentials(
    runner: CliRunner, servers: tuple[FakeFhir, FakeFhir], monkeypatch: pytest.MonkeyPatch
) -> None:
    clinic, expert = servers
    run(runner, "push", str(UROLOGY), "--server", BASE)
    monkeypatch.setenv("FHIR_SO_FROM_TOKEN", "clinic-secret")
    monkeypatch.setenv("FHIR_SO_TO_TOKEN", "expert-secret")
    clinic.authorizations.clear()
    code, out, err = run(runner, "transfer", "--from", BASE, "--to", OTHER, "--request", "5")
    assert code == 0
    assert set(clinic.authorizations) == {"Bearer clinic-secret"}
    assert set(expert.authorizations) == {"Bearer expert-secret"}
    assert "secret" not in out + err


def test_pull_patient_as_one_bundle(runner: CliRunner, servers: tuple[FakeFhir, FakeFhir]) -> None:
    run(runner, "push", str(UROLOGY), "--server", BASE)
    run(runner, "push", str(EXAMPLES / "urology-third-opinion.case.json"), "--server", BASE)
    code, out, _ = run(runner, "pull", "--server", BASE, "--patient", "1", "--as", "bundle")
    bundle = json.loads(out)
    requests_ = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest"]
    assert code == 0 and len(requests_) == 2
    assert len({e["fullUrl"] for e in bundle["entry"]}) == len(bundle["entry"])
