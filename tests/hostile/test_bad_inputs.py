"""The bad-input suite: every file under tests/hostile/inputs/ through build, parse, push and validate.

The rules every run must keep (issue 10):
- no traceback, ever; exit 0 (accepted), 2 (bad input), or for validate 1 (invalid FHIR);
  an input the manifest marks ``bad`` is refused (validate: exit 1 or 2, never 0);
- every line on stderr is at most 500 characters; an error is ONE line that names the input
  file, and the place in it (a JSON path or a line) when the file is JSON;
- push refuses bad input before any request (a ``responses`` mock counts the requests);
- nothing is written on failure: no output file, no temp file.

The committed files (tests/hostile/make_inputs.py writes them) are run in-process through
click's CliRunner; what git cannot hold (FIFOs, devices, symbolic links out of the root, files
over 20 MiB) is made here in tmp; a sample also runs as real subprocesses, for real exit codes,
real tracebacks and signals.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

import orjson
import pytest
import responses
from click.testing import CliRunner

from fhir_so.cli import cli
from fhir_so.validation.lenient import LenientError, parse_lenient
from tests.hostile.inputs_summary import CLEAN_ENV, MAX_LINE, InputsSummary, check_run, session_summary

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
INPUTS = HERE / "inputs"
MANIFEST: dict[str, dict[str, str]] = json.loads((INPUTS / "MANIFEST.json").read_text(encoding="utf-8"))
BASE = "http://127.0.0.1:9/fhir"


@pytest.fixture
def summary(request: pytest.FixtureRequest) -> InputsSummary:
    return session_summary(request.config)


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner(env=CLEAN_ENV)


@pytest.fixture
def server() -> Iterator[responses.RequestsMock]:
    """Every request to the fake server gets a 400: a push that got this far exits 3, at once."""
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid", "diagnostics": "no"}]}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        for method in (responses.GET, responses.POST, responses.PUT):
            rsps.add(method, re.compile(r"http://127\.0\.0\.1:9/.*"), json=outcome, status=400)
        yield rsps


def _run_all(summary: InputsSummary, runner: CliRunner, server: responses.RequestsMock, tmp_path: Path, rel: str) -> list[str]:
    entry = MANIFEST[rel]
    path = INPUTS / rel
    source = str(path)
    bad = entry["expect"] == "bad"
    json_ok = entry["kind"] in ("case", "bundle", "resource")  # parseable JSON: errors must give a place
    problems = []
    for command, args, allowed in (
        ("build", ["build", source], {2} if bad or entry["kind"] != "case" else {0, 2}),
        ("parse", ["parse", source], {2} if bad or entry["kind"] != "bundle" else {0, 2}),
        ("push", ["push", source, "--server", BASE], {2} if bad or entry["kind"] not in ("case", "bundle") else {0, 2, 3}),
    ):
        out_dir = tmp_path / command
        out_dir.mkdir()
        calls_before = len(server.calls)
        result = runner.invoke(cli, [*args, "-o", str(out_dir / "out.json")] if command != "push" else args)
        problems += check_run(summary, command, rel, source, result, allowed=allowed, located=json_ok, out_dir=out_dir)
        if command == "push" and result.exit_code == 2 and len(server.calls) != calls_before:
            problems.append(f"push sent {len(server.calls) - calls_before} requests for input it refused")
            summary.violations.append(f"push {rel}: requests before refusing")
    return problems


@pytest.mark.parametrize("rel", sorted(MANIFEST), ids=lambda r: r.split("/", 1)[1][:60])
def test_committed_input(summary: InputsSummary, runner: CliRunner, server: responses.RequestsMock, tmp_path: Path, rel: str) -> None:
    problems = _run_all(summary, runner, server, tmp_path, rel)
    assert not problems, problems


def test_suite_is_large_and_deterministic() -> None:
    """At least 500 committed inputs, every manifest entry on disk, every file in the manifest."""
    on_disk = {str(p.relative_to(INPUTS)) for p in INPUTS.rglob("*") if p.is_file() and p.name not in ("MANIFEST.json", "attachment.txt")}
    assert len(MANIFEST) >= 500
    assert on_disk == set(MANIFEST)
    kinds = {e["kind"] for e in MANIFEST.values()}
    assert kinds == {"case", "bundle", "resource", "ndjson", "raw"}


@pytest.mark.parametrize("kind", ["bundle", "resource", "ndjson", "raw", "case"])
def test_validate_each_folder(summary: InputsSummary, runner: CliRunner, tmp_path: Path, kind: str) -> None:
    """One validate run per folder (the validator loads its definitions once): every input gets a verdict,
    and every line of the text report (one per finding) is at most 500 characters."""
    report = tmp_path / "report.txt"
    result = runner.invoke(cli, ["validate", str(INPUTS / kind), "-o", str(report)])
    problems = check_run(summary, "validate", f"{kind}/", str(INPUTS / kind), result, allowed={1, 2}, located=False)
    assert not problems, problems
    assert report.is_file() and [p.name for p in tmp_path.iterdir()] == ["report.txt"]
    lines = report.read_text(encoding="utf-8").splitlines()
    judged = {line.split(": ", 1)[0] for line in lines if line.startswith(str(INPUTS))}
    assert len(judged) >= sum(1 for rel in MANIFEST if rel.startswith(kind + "/")), "an input got no verdict"
    too_long = [line[:200] for line in lines if len(line) > MAX_LINE]
    assert not too_long, too_long


def _is_json_object(data: bytes) -> bool:
    """Whether validate can judge the file at all (an object: valid or invalid FHIR); else it is bad input.

    Like the HL7 validator, validate reads hand-written JSON (comments, a comma too many, NaN)
    leniently and reports each departure as a located error: such a file gets a verdict (exit 1).
    """
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        return isinstance(orjson.loads(data), dict)
    except orjson.JSONDecodeError:
        pass
    try:
        return isinstance(parse_lenient(data)[0], dict)
    except (LenientError, RecursionError):
        return False


@pytest.mark.parametrize("rel", sorted(r for r, e in MANIFEST.items() if e["kind"] in ("raw", "ndjson")), ids=lambda r: r.split("/", 1)[1])
def test_validate_broken_file(summary: InputsSummary, runner: CliRunner, tmp_path: Path, rel: str) -> None:
    """A file that is not JSON (or breaks NDJSON) is bad input for validate (exit 2), unless it is read leniently (exit 1); one line per input."""
    out = tmp_path / "report.txt"
    result = runner.invoke(cli, ["validate", str(INPUTS / rel), "-o", str(out)])
    allowed = {0, 1, 2} if MANIFEST[rel]["kind"] == "ndjson" or _is_json_object((INPUTS / rel).read_bytes()) else {2}
    problems = check_run(summary, "validate", rel, str(INPUTS / rel), result, allowed=allowed, located=False)
    assert not problems, problems
