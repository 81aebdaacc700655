"""The reference validator for tests and benchmarks: the HL7 FHIR validator engine, offline (``reference/``).

A test and benchmark tool, not a library feature: fhir-so's answers are compared with the HL7
engine's (``ca.uhn.hapi.fhir:org.hl7.fhir.validation``, the engine behind the official
validator_cli) on the same files. ``reference/`` is a small Java 17 program of the project's own
that sets the engine up without a terminology server, without web access, on the package cache
shared with fhir-so, and validates many inputs in one JVM start (start-up costs about 15 s of CPU
and 1.2-1.9 GiB, so: one JVM per run, never one per file).

    python tests/reference_validator.py build            # Maven build, skipped when up to date
    python tests/reference_validator.py validate [-ig NAME#VERSION] FILE|DIR...   # outcomes as NDJSON

From Python: :func:`build`, then :func:`run` -> :class:`RunResult` (one :class:`Outcome` per input,
with the engine's issues, the run's CPU time and peak memory).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhir_so.server import jar_is_stale

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIR = ROOT / "reference"
JAR = SOURCE_DIR / "target" / "fhir-so-reference.jar"
#: the engine holds core R4 and the loaded packages' snapshots in memory: 2 GiB is ample for IPS
DEFAULT_HEAP = "2g"


class ReferenceValidatorError(Exception):
    """The reference validator could not be built or could not run (not: it found errors)."""


def tools_missing() -> list[str]:
    """The tools the reference needs that are not on PATH (a JDK 17 and Maven)."""
    return [tool for tool in ("java", "javac", "mvn") if shutil.which(tool) is None]


def needs_build() -> bool:
    return jar_is_stale(JAR, SOURCE_DIR)


def build(*, force: bool = False, progress: Callable[[str], None] = lambda _: None) -> bool:
    """Build the jar with Maven when it is missing or older than its sources; True when it built."""
    if not force and not needs_build():
        return False
    missing = tools_missing()
    if missing:
        raise ReferenceValidatorError(f"building the reference validator needs {', '.join(missing)} (apt-get install openjdk-17-jdk-headless maven)")
    log = SOURCE_DIR / "target" / "maven-build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    progress("building the reference validator (HL7 validator engine) with Maven; the first build downloads about 150 MB")
    started = time.monotonic()
    with log.open("wb") as out:
        done = subprocess.run(["mvn", "-q", "-B", "package"], cwd=SOURCE_DIR, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0 or not JAR.is_file():
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:])
        raise ReferenceValidatorError(f"the Maven build of {SOURCE_DIR} failed (exit {done.returncode}); the end of {log}:\n{tail}")
    os.utime(JAR)  # an unchanged jar keeps its old time: mark it as built from the current sources
    progress(f"built {JAR} in {time.monotonic() - started:.0f} s")
    return True


def normalise(location: str) -> str:
    """The plain FHIRPath of a location: the engine writes ``Bundle.entry[0].resource/*Patient/x*/.name``."""
    loc = re.sub(r"/\*.*?\*/", "", location or "")
    loc = re.sub(r"\.ofType\((\w+)\)", "", loc)
    loc = re.sub(r"\.where\([^)]*\)", "", loc)
    return loc.replace("[x]", "")


@dataclass(frozen=True)
class Issue:
    """One message of the engine: severity (fatal, error, warning, information), location, message."""

    severity: str
    location: str
    message: str
    message_id: str | None = None
    line: int | None = None
    col: int | None = None

    @property
    def is_error(self) -> bool:
        return self.severity in ("error", "fatal")

    @property
    def path(self) -> str:
        return normalise(self.location)


@dataclass
class Outcome:
    """The engine's verdict on one input (a file, or one line of an NDJSON file)."""

    input: str
    line: int | None
    issues: list[Issue]

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.is_error]

    @property
    def valid(self) -> bool:
        return not self.errors


@dataclass
class RunResult:
    """Every outcome of one run, with what the run cost."""

    outcomes: list[Outcome]
    seconds: float
    cpu_seconds: float
    max_rss_kib: int
    stats: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def by_input(self) -> dict[str, Outcome]:
        return {o.input if o.line is None else f"{o.input}:{o.line}": o for o in self.outcomes}


def _outcome(doc: dict[str, Any]) -> Outcome:
    issues = [
        Issue(i.get("severity", "error"), i.get("location") or "", i.get("message") or "", i.get("messageId"), i.get("line"), i.get("col"))
        for i in doc.get("issues", [])
    ]
    return Outcome(doc["input"], doc.get("line"), issues)


def command(inputs: Sequence[Path | str], *, igs: Sequence[str] = (), profiles: Sequence[str] = (), cache: Path | None = None,
            heap: str = DEFAULT_HEAP, stats: Path | None = None) -> list[str]:
    """The java command line of one run."""
    cmd = ["java", f"-Xmx{heap}", "-jar", str(JAR)]
    for ig in igs:
        cmd += ["-ig", ig]
    for url in profiles:
        cmd += ["-profile", url]
    if cache is not None:
        cmd += ["-cache", str(cache)]
    if stats is not None:
        cmd += ["-stats", str(stats)]
    return cmd + [str(p) for p in inputs]


def default_cache() -> Path:
    """The package cache fhir-so uses: $FHIR_SO_PACKAGES, else ~/.fhir/packages."""
    env = os.environ.get("FHIR_SO_PACKAGES")
    return Path(env).expanduser() if env else Path.home() / ".fhir" / "packages"


def run(inputs: Sequence[Path | str], *, igs: Sequence[str] = (), profiles: Sequence[str] = (), cache: Path | None = None,
        heap: str = DEFAULT_HEAP, timeout: float = 3600.0) -> RunResult:
    """Validate the inputs (files, folders, NDJSON) in one engine run; the jar must be built (see :func:`build`)."""
    if not JAR.is_file():
        raise ReferenceValidatorError(f"{JAR} is not built: run `python tests/reference_validator.py build`")
    with tempfile.TemporaryDirectory(prefix="fhir-so-reference-run-") as tmp:
        folder = Path(tmp)
        out_path, err_path, stats_path = folder / "out.ndjson", folder / "err.txt", folder / "stats.json"
        cmd = command(inputs, igs=igs, profiles=profiles, cache=cache or default_cache(), heap=heap, stats=stats_path)
        started = time.perf_counter()
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
            deadline = started + timeout
            while True:  # wait4 gives the child's own CPU time and peak RSS, which a benchmark needs
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() > deadline:
                    proc.kill()
                    proc.wait()
                    raise ReferenceValidatorError(f"the reference validator did not finish within {timeout:.0f} s")
                time.sleep(0.05)
            proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        stderr = err_path.read_text(encoding="utf-8", errors="replace")
        if proc.returncode != 0:
            raise ReferenceValidatorError(f"the reference validator failed (exit {proc.returncode}): {stderr.strip()[-3000:]}")
        outcomes = [_outcome(json.loads(line)) for line in out_path.read_text(encoding="utf-8").splitlines() if line.strip()]
        stats = json.loads(stats_path.read_text(encoding="utf-8")) if stats_path.is_file() else {}
    warnings = [line for line in stderr.splitlines() if line.startswith("reference: warning:")]
    return RunResult(outcomes, seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, stats, warnings)


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] not in ("build", "validate"):
        print("usage: python tests/reference_validator.py build | validate [-ig NAME#VERSION]... [-profile URL]... FILE|DIR...", file=sys.stderr)
        return 2
    try:
        if argv[0] == "build":
            built = build(progress=lambda msg: print(f"==> {msg}", file=sys.stderr))
            if not built:
                print(f"==> the reference validator is up to date ({JAR})", file=sys.stderr)
            return 0
        build(progress=lambda msg: print(f"==> {msg}", file=sys.stderr))
        args = list(argv[1:])
        if "-cache" not in args:
            args = ["-cache", str(default_cache()), *args]
        done = subprocess.run(["java", f"-Xmx{DEFAULT_HEAP}", "-jar", str(JAR), *args], check=False)
        return done.returncode
    except ReferenceValidatorError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
