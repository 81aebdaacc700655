"""Hostile files git cannot hold, made here in tmp: FIFOs, devices, /proc, symbolic links out of the
root, attachments and inline data over 20 MiB; the ``-o`` writer (symlinks, mode, signals); and a
sample of the bad inputs run as real subprocesses (real exit codes, real tracebacks, real signals).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fhir_so.case import MAX_INLINE_BYTES, load_case
from fhir_so.cli import cli
from fhir_so.errors import InputError
from fhir_so.jsonio import read_bytes, write_atomic
from tests.hostile.inputs_summary import CLEAN_ENV, InputsSummary, check_run, session_summary
from tests.hostile.make_inputs import ATTACHMENT_TEXT, FULL_CASE

ROOT = Path(__file__).resolve().parent.parent.parent
INPUTS = Path(__file__).resolve().parent / "inputs"


@pytest.fixture
def summary(request: pytest.FixtureRequest) -> InputsSummary:
    return session_summary(request.config)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env=CLEAN_ENV)


def case_with_file(folder: Path, name: str, *, report: bool = False) -> Path:
    """FULL_CASE with records[2] (or the opinion's report) read from ``name``, written in ``folder``."""
    case = json.loads(json.dumps(FULL_CASE))
    if report:
        case["opinion"]["report"] = {"content_type": "text/plain", "file": name}
    else:
        case["records"][2]["content"]["file"] = name
    (folder / "attachment.txt").write_bytes(ATTACHMENT_TEXT)
    path = folder / "case.json"
    path.write_text(json.dumps(case), encoding="utf-8")
    return path


def run_refused(summary: InputsSummary, runner: CliRunner, case: Path, name: str, *extra: str) -> str:
    """build and push of ``case`` must both refuse it (exit 2, one line, file and place, nothing written)."""
    out_dir = case.parent / "out"
    out_dir.mkdir(exist_ok=True)
    messages = []
    for command, args in (("build", ["build", str(case), "-o", str(out_dir / "b.json"), *extra]), ("push", ["push", str(case), "--server", "http://127.0.0.1:9/fhir", *extra])):
        result = runner.invoke(cli, args)
        problems = check_run(summary, command, f"tmp:{name}", str(case), result, allowed={2}, located=True, out_dir=out_dir)
        assert not problems, problems
        messages.append(result.stderr)
    return messages[0]


# --- attachment files: only regular files inside the root ---------------------------------------


@pytest.mark.parametrize("report", [False, True], ids=["records-file", "report-file"])
def test_fifo_attachment_is_refused_without_hanging(summary: InputsSummary, runner: CliRunner, tmp_path: Path, report: bool) -> None:
    os.mkfifo(tmp_path / "pipe")
    started = time.monotonic()
    message = run_refused(summary, runner, case_with_file(tmp_path, "pipe", report=report), "fifo-attachment")
    assert "FIFO" in message and time.monotonic() - started < 10


def test_symlink_out_of_the_root_is_refused(summary: InputsSummary, runner: CliRunner, tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("TOKEN=hunter2")
    root = tmp_path / "case"
    root.mkdir()
    (root / "link.txt").symlink_to(secret)
    message = run_refused(summary, runner, case_with_file(root, "link.txt"), "symlink-out")
    assert "outside the files folder" in message and "hunter2" not in message


def test_symlink_inside_the_root_is_followed(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_bytes(b"inside")
    (tmp_path / "link.txt").symlink_to("real.txt")
    case = load_case(case_with_file(tmp_path, "link.txt"))
    assert case.records[[r.id for r in case.records].index("note-1")].content.content() == b"inside"


def test_symlink_loop_is_refused(summary: InputsSummary, runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    run_refused(summary, runner, case_with_file(tmp_path, "a"), "symlink-loop")


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom", "/proc/self/environ", "/proc/self/mem", "/etc/passwd"])
def test_devices_proc_and_absolute_paths_are_refused_even_under_files_root(
    summary: InputsSummary, runner: CliRunner, tmp_path: Path, target: str
) -> None:
    """With --files-root / every path is "inside": devices and /proc are still refused; /etc/passwd then reads."""
    case = case_with_file(tmp_path, target)
    started = time.monotonic()
    if target == "/etc/passwd":
        result = runner.invoke(cli, ["build", str(case), "--files-root", "/"])
        assert result.exit_code == 0, result.stderr
        message = run_refused(summary, runner, case, "absolute-without-root")  # without --files-root: outside
        assert "outside the files folder" in message
        return
    message = run_refused(summary, runner, case, f"device {target}", "--files-root", "/")
    assert "kernel or device state" in message
    assert time.monotonic() - started < 10


def test_files_root_is_the_only_folder_read(runner: CliRunner, tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "q.txt").write_bytes(b"from scans")
    cases = tmp_path / "cases"
    cases.mkdir()
    case = case_with_file(cases, "q.txt")
    assert runner.invoke(cli, ["build", str(case)]).exit_code == 2  # not in the case's folder
    result = runner.invoke(cli, ["build", str(case), "--files-root", str(scans)])
    assert result.exit_code == 0, result.stderr
    assert base64.b64encode(b"from scans").decode() in result.stdout


def test_attachment_over_the_limit_is_refused_without_reading_it_all(summary: InputsSummary, runner: CliRunner, tmp_path: Path) -> None:
    with (tmp_path / "big.bin").open("wb") as fh:
        fh.truncate(MAX_INLINE_BYTES + 1)  # sparse: no disk used
    message = run_refused(summary, runner, case_with_file(tmp_path, "big.bin"), "attachment-over-limit")
    assert "over the inline limit" in message


def test_attachment_at_the_limit_is_read(tmp_path: Path) -> None:
    with (tmp_path / "big.bin").open("wb") as fh:
        fh.truncate(MAX_INLINE_BYTES)
    case = load_case(case_with_file(tmp_path, "big.bin"))
    assert max(len(r.content.content() or b"") for r in case.records) == MAX_INLINE_BYTES


def test_inline_data_over_the_limit_is_refused(summary: InputsSummary, runner: CliRunner, tmp_path: Path) -> None:
    case = json.loads(json.dumps(FULL_CASE))
    case["records"][0]["content"]["data"] = base64.b64encode(b"\0" * (MAX_INLINE_BYTES + 3)).decode()
    (tmp_path / "attachment.txt").write_bytes(ATTACHMENT_TEXT)
    path = tmp_path / "case.json"
    path.write_text(json.dumps(case))
    message = run_refused(summary, runner, path, "inline-data-over-limit")
    assert "over the inline limit" in message and "$.records[0].content" in message
    assert len(message) < 500


# --- input files on the command line ------------------------------------------------------------


@pytest.mark.parametrize("command", ["build", "parse", "push", "validate"])
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory", "ndjson-fifo"])
def test_input_file_that_is_not_a_regular_file(summary: InputsSummary, runner: CliRunner, tmp_path: Path, command: str, kind: str) -> None:
    if kind == "fifo":
        path = tmp_path / "case.json"
        os.mkfifo(path)
    elif kind == "ndjson-fifo":
        path = tmp_path / "data.ndjson"
        os.mkfifo(path)
    elif kind == "directory":
        path = tmp_path / "dir.json"
        path.mkdir()
    else:
        path = Path("/dev/zero")
    args = [command, str(path)] + (["--server", "http://127.0.0.1:9/fhir"] if command == "push" else [])
    started = time.monotonic()
    result = runner.invoke(cli, args)
    assert time.monotonic() - started < 20
    if command == "validate" and kind == "directory":
        assert result.exit_code == 0  # an empty folder: nothing to validate
        return
    problems = check_run(summary, command, f"tmp:{kind}", str(path), result, allowed={2}, located=False)
    assert not problems, problems
    assert "not a regular file" in result.output or "kernel or device state" in result.output


def test_json_input_over_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b'{"a": "' + b"x" * 2000 + b'"}')
    with pytest.raises(InputError, match="larger than the limit of 1,000 bytes"):
        read_bytes(path, limit=1000)


def test_file_name_with_nul_and_too_long(summary: InputsSummary, runner: CliRunner, tmp_path: Path) -> None:
    for name in ("x" * 256 + ".json", "a" * 5000):
        for command in ("build", "parse", "validate"):
            result = runner.invoke(cli, [command, str(tmp_path / name)])
            problems = check_run(summary, command, "tmp:long-name", str(tmp_path)[:100], result, allowed={2}, located=False)
            assert not problems, problems


# --- -o: through symlinks, with the umask's mode, never a temp file left ------------------------


def test_output_writes_through_a_symlink(runner: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "real.json"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target.name)
    result = runner.invoke(cli, ["build", str(ROOT / "examples" / "urology-second-opinion.case.json"), "-o", str(link)])
    assert result.exit_code == 0, result.stderr
    assert link.is_symlink() and json.loads(target.read_text())["resourceType"] == "Bundle"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # an existing file keeps its mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]


def test_new_output_gets_the_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640  # 0666 & ~027, not tempfile's 0600


def test_output_onto_a_device_or_directory_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.json")
    for target in (tmp_path / "pipe.json", tmp_path):
        with pytest.raises(InputError, match="not a regular file"):
            write_atomic(target, "{}")


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    from fhir_so.jsonio import atomic_writer

    with pytest.raises(RuntimeError):
        with atomic_writer(tmp_path / "out.json") as fh:
            fh.write(b"partial")
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("tmpfile", [True, False], ids=["O_TMPFILE", "named-temp"])
def test_sigterm_during_a_write_removes_the_temp_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tmpfile: bool) -> None:
    """Where O_TMPFILE is missing the temp file has a name: a SIGTERM must still remove it."""
    from fhir_so.jsonio import atomic_writer

    if not tmpfile:
        monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    old = os.umask(0o022)
    try:
        with pytest.raises(SystemExit) as stopped:
            with atomic_writer(tmp_path / "out.json") as fh:
                fh.write(b"partial")
                assert tmpfile or [p.name for p in tmp_path.iterdir()][0].endswith(".tmp")
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler raises before this ends
        assert stopped.value.code == 128 + signal.SIGTERM
        assert list(tmp_path.iterdir()) == []
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored
        write_atomic(tmp_path / "new.json", "{}")
        assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o644
    finally:
        os.umask(old)


# --- real processes: exit codes, tracebacks, signals ---------------------------------------------


def _cli(*args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_SO_")}
    env["PYTHONPATH"] = str(ROOT)
    code = "from fhir_so.cli import main; main()"
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, **kwargs)


SAMPLE = [
    n
    for n in ("int-5000-digits.json", "lone-surrogate.json", "resourceType-null.json", "bundle-entry-nulls.json")
]


@pytest.mark.parametrize("name", SAMPLE)
def test_subprocess_sample(summary: InputsSummary, name: str) -> None:
    """The same inputs in a real process: exit 2 (validate: 1 or 2), no traceback, one short line."""
    rel = next(r for r in json.loads((INPUTS / "MANIFEST.json").read_text()) if r.endswith("-" + name))
    for command in ("build", "parse", "push", "validate"):
        args = [command, str(INPUTS / rel)] + (["--server", "http://127.0.0.1:9/fhir"] if command == "push" else [])
        proc = _cli(*args)
        out, err = proc.communicate(timeout=120)
        text = err.decode("utf-8", "replace")
        assert "Traceback" not in text, text[-2000:]
        assert proc.returncode in ({1, 2} if command == "validate" else {2}), text
        assert all(len(line) <= 500 for line in text.splitlines())
        summary.record(f"{command}*", rel, proc.returncode, traceback="Traceback" in text, problems=[])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["TERM", "INT", "KILL"])
def test_killed_validate_leaves_no_temp_file(tmp_path: Path, sig: signal.Signals) -> None:
    """A validate writing its report (-o) is killed mid-run: no report, no .tmp file next to it."""
    data = tmp_path / "many.ndjson"
    line = json.dumps({"resourceType": "Patient", "id": "p", "gender": "female"}).encode() + b"\n"
    data.write_bytes(line * 200_000)
    out = tmp_path / "report" / "out.json"
    out.parent.mkdir()
    proc = _cli("validate", str(data), "--format", "json", "-o", str(out))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if _writing(proc.pid, out.parent):
            break
    assert proc.poll() is None, "validate ended before it could be killed"
    time.sleep(0.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err
    assert list(out.parent.iterdir()) == [], "a killed validate left a file"


def _writing(pid: int, folder: Path) -> bool:
    """Whether the process has its report file open (named or, with O_TMPFILE, unnamed in ``folder``)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            return True
    return False


@pytest.mark.parametrize("variable", ["FHIR_SO_TOKEN", "FHIR_SO_TO_TOKEN"])
@pytest.mark.parametrize("token", ["tök€n-secret", "two words", "line\nbreak"], ids=["non-latin-1", "space", "newline"])
def test_a_token_that_cannot_be_a_header_is_refused_unshown(summary: InputsSummary, tmp_path: Path, variable: str, token: str) -> None:
    """The CLI refuses a bearer token an HTTP header cannot carry: exit 2, one line, the value never shown."""
    runner = CliRunner(env={**CLEAN_ENV, variable: token})
    case = str(ROOT / "examples" / "urology-second-opinion.case.json")
    if variable == "FHIR_SO_TOKEN":
        args = ["push", case, "--server", "http://127.0.0.1:9/fhir"]
    else:
        args = ["transfer", "--from", "http://127.0.0.1:9/fhir", "--to", "http://127.0.0.1:9/fhir", "--request", "1"]
    result = runner.invoke(cli, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    assert variable in result.stderr and token not in result.output and "secret" not in result.output
    assert len(result.stderr.splitlines()) == 1
    summary.record("token", f"tmp:{variable}:{token[:5]}", result.exit_code, traceback=False, problems=[])
