"""validate --jobs: the same report as one process, byte for byte, in every format, on inputs the project did not write.

Small chunks make many of them, so that workers finish out of order and the client has to put
the findings back in input order. Bad inputs keep the project's rules: one message naming the
file and the place, exit 2 (3 when the cluster fails), never a traceback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from fhir_so.cli import cli
from fhir_so.errors import ProfileError, ToolMissingError
from fhir_so.validation.sources import Raw
from fhir_so.workflow import validate
from fhir_so.workflow.scale_out import ClusterError, ValidatorSpec, _ProcessEngine, _stream, validate_parallel
from tests.corpus import make_corpus
from tests.scale.crash import CrashingSpec
from tests.scale.inputs import EXAMPLES, ROOT, ndjson_lines, real_resources, reports

FHIR_SO = str(Path(sys.executable).with_name("fhir-so"))

# lines the NDJSON reader must name by file:line: not JSON, not an object, a blank line (skipped), a resource that is not one
BAD_LINES = [b"{not json\n", b"[1, 2]\n", b"\n", b'{"resourceType": 5}\n']


@pytest.fixture(scope="module")
def mixed_ndjson(suite: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 real resources with fresh ids, and bad lines among them."""
    path = tmp_path_factory.mktemp("ndjson") / "mixed.ndjson"
    lines = list(ndjson_lines(real_resources(suite), 300))
    for i, bad in enumerate(BAD_LINES):
        lines.insert(40 + 70 * i, bad)
    path.write_bytes(b"".join(lines))
    return path


@pytest.fixture(scope="module")
def inputs(suite: Path, mixed_ndjson: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The suite's R4 inputs (its top folder: valid, invalid, unreadable), the corpus, the examples, the NDJSON."""
    corpus = tmp_path_factory.mktemp("corpus")
    make_corpus.write(corpus)
    return [*sorted(str(p) for p in suite.glob("*.json")), str(corpus), str(EXAMPLES), str(mixed_ndjson)]


def test_jobs_report_is_the_single_process_report_in_every_format(inputs: list[str]) -> None:
    single = reports(validate(inputs))
    parallel = reports(validate_parallel(inputs, jobs=2, chunk_size=16))
    for fmt in ("text", "json", "junit"):
        assert parallel[fmt][1:] == single[fmt][1:], fmt  # the summary line and the exit code
        assert parallel[fmt][0] == single[fmt][0], fmt
    text = single["text"][0].decode()
    # what was compared is what it should be: well over a thousand inputs of every kind, bad lines named by place
    assert single["text"][1].startswith(tuple(f"{n}" for n in range(1200, 10_000)))
    assert " invalid, " in single["text"][1] and single["text"][2] == 2
    assert "mixed.ndjson:41: BAD INPUT: " in text and "at line 41 column" in text
    assert "mixed.ndjson:111: BAD INPUT: " in text and "expected a FHIR resource (a JSON object), found list" in text
    assert "mixed.ndjson:181:" not in text  # the blank line is no input
    assert "mixed.ndjson:251: INVALID" in text  # a resourceType that is not a string: invalid, not unreadable
    assert "bad-json-close-1.json: BAD INPUT" in text


def test_cli_jobs_on_ndjson_writes_the_same_report(mixed_ndjson: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = {}
    for name, extra in (("single", []), ("jobs", ["--jobs", "2", "--chunk-size", "40"])):
        out = tmp_path / f"{name}.xml"
        proc = subprocess.run(
            [FHIR_SO, "validate", str(mixed_ndjson), "--format", "junit", "-o", str(out), *extra],
            capture_output=True, text=True, env=env, timeout=300,
        )
        runs[name] = (proc.returncode, proc.stderr, out.read_bytes())
    assert runs["jobs"] == runs["single"]
    code, stderr, report = runs["jobs"]
    assert code == 2 and "Traceback" not in stderr
    assert f"{mixed_ndjson}: at line 41 column 2: malformed JSON" in stderr
    assert stderr.splitlines()[-1].startswith("303 inputs: ")  # 300 resources and 3 bad lines (the blank one is no input)
    assert report.count(b"<testcase ") == 303


def test_no_input_and_an_empty_ndjson_give_the_single_process_report(tmp_path: Path) -> None:
    empty = tmp_path / "empty.ndjson"
    empty.write_bytes(b"\n\n")
    assert reports(validate_parallel([empty], jobs=2)) == reports(validate([empty]))


def test_a_broken_profile_fails_before_any_result(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="http://example.org/no-such-profile"):
        validate_parallel([EXAMPLES], jobs=2, profiles=["http://example.org/no-such-profile"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["validate", "no-such-file.ndjson", "--jobs", "2"], "no-such-file.ndjson: no such file or directory"),
        (["validate", str(EXAMPLES), "--jobs", "2", "--scheduler", "tcp://127.0.0.1:18786"], "give one of them"),
        (["validate", str(EXAMPLES), "--jobs", "2", "--server", "http://127.0.0.1:9/fhir"], "cannot be combined with --server"),
        (["validate", str(EXAMPLES), "--jobs", "0"], "0 is not in the range x>=1"),
        (["validate", str(EXAMPLES), "--jobs", "2", "--profile", "http://example.org/nope"], "http://example.org/nope"),
    ],
    ids=["missing-path", "jobs-and-scheduler", "jobs-and-server", "zero-jobs", "unknown-profile"],
)
def test_bad_options_and_inputs_are_exit_2_with_one_message(args: list[str], message: str, tmp_path: Path) -> None:
    out = tmp_path / "report.txt"
    result = CliRunner().invoke(cli, [*args, "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not out.exists()  # nothing half-written


def _closed_port() -> int:
    """A loopback port in this project's Dask range with nothing listening on it."""
    for port in range(18799, 18785, -1):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    pytest.fail("every port of 18786-18799 is taken")


def test_a_scheduler_that_cannot_be_reached_is_exit_3(tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{_closed_port()}"
    result = CliRunner().invoke(cli, ["validate", str(EXAMPLES), "--scheduler", address, "--timeout", "1", "-o", str(tmp_path / "r")])
    assert result.exit_code == 3, result.output
    assert f"cannot reach the Dask scheduler at {address}" in result.output
    assert "Traceback" not in result.output


def test_scheduler_without_dask_installed_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # what a missing package looks like to an import
    with pytest.raises(ToolMissingError, match=r"pip install 'fhir-so\[dask\]'"):
        validate_parallel([EXAMPLES], scheduler="tcp://127.0.0.1:18786")


def test_a_worker_process_that_dies_fails_the_run_clearly() -> None:
    chunks = iter([(Raw("a.ndjson", b"{}", line=1),), (Raw("a.ndjson", b"{}", line=2),)])
    results = _stream(_ProcessEngine(1), CrashingSpec(), chunks, None)
    with pytest.raises(ClusterError, match=r"a worker process died while validating a.ndjson:1; the report is incomplete"):
        list(results)


def test_a_worker_keeps_its_validator_for_the_next_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    from fhir_so.workflow import scale_out
    from fhir_so.workflow.scale_out import validate_chunk

    monkeypatch.setattr(scale_out, "_WORKER_VALIDATOR", {})  # this test process is the worker here; leave it as it was
    spec = ValidatorSpec()
    warnings_first, first = validate_chunk(spec, (Raw("x.ndjson", orjson.dumps({"resourceType": "Patient", "gender": "x"}), line=7),))
    _, again = validate_chunk(spec, (Raw("x.ndjson", b"[]", line=8),))
    assert first[0].input.source == "x.ndjson:7" and first[0].input.resource is None  # findings travel back, not resources
    assert any(i.is_error for i in first[0].issues)
    assert again[0].input.error is not None and "line 8" in str(again[0].input.error)
    assert len(scale_out._WORKER_VALIDATOR) == 1  # one validator, built once
    assert isinstance(warnings_first, list)


@pytest.mark.parametrize("name", ["ext-example-nl-ext3.json", "bug824/bug824-resource.json"], ids=["eld-2", "rng-2"])
def test_an_inputs_findings_do_not_depend_on_the_inputs_before_it(suite: Path, name: str) -> None:
    """What makes a split run's report equal one process's: an invariant fhirpathpy fails on is said for each input, every time."""
    from fhir_so.workflow import offline_validator

    path = suite / name
    if not path.is_file():
        pytest.fail(f"{path} is not in the suite any more: pick another input whose invariant fhirpathpy cannot evaluate")
    resource = orjson.loads(path.read_bytes())
    validator = offline_validator()
    first = list(validator.iter_issues(resource))
    again = list(validator.iter_issues(resource))
    assert any(i.rule == "invariant-skipped" and "fhirpathpy failed to evaluate it" in i.message for i in first)
    assert again == first
