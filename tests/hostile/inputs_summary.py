"""Figures of the bad-input suite (inputs x runs x tracebacks), printed in pytest's terminal summary.

test_bad_inputs.py registers one :class:`InputsSummary` as a plugin for the session (no
conftest needed); each run of a command on an input is counted here, and the figures are
printed at the end of the test run, so CI logs show them.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.hostile.plugins import session_plugin

MAX_LINE = 500
# The CLI must not pick up a server or credentials from the developer's environment.
CLEAN_ENV: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FHIR_SO_")}


class InputsSummary:
    """Counters filled by the tests; ``pytest_terminal_summary`` prints them."""

    def __init__(self) -> None:
        self.inputs: set[str] = set()
        self.runs: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        self.tracebacks: list[str] = []
        self.violations: list[str] = []

    def record(self, command: str, name: str, exit_code: int, *, traceback: bool, problems: list[str]) -> None:
        self.inputs.add(name)
        self.runs[command] += 1
        (self.accepted if exit_code == 0 else self.sent if exit_code == 3 else self.refused)[command] += 1
        if traceback:
            self.tracebacks.append(f"{command} {name}")
        self.violations += [f"{command} {name}: {p}" for p in problems]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.runs:
            return
        tr = terminalreporter
        tr.section("bad-input suite (tests/hostile/inputs)")
        tr.write_line(
            f"{len(self.inputs)} inputs, {sum(self.runs.values())} runs, "
            f"{len(self.tracebacks)} tracebacks, {len(self.violations)} rule violations"
        )
        for command in sorted(self.runs):
            tr.write_line(
                f"  {command:<9} {self.runs[command]:>5} runs: {self.refused[command]:>5} refused, {self.accepted[command]:>5} accepted"
                + (f", {self.sent[command]:>5} accepted and sent (the mock server answered 400)" if self.sent[command] else "")
            )
        for line in (self.tracebacks + self.violations)[:20]:
            tr.write_line(f"  ! {line[:300]}")


def session_summary(config: pytest.Config) -> InputsSummary:
    """The one InputsSummary of this pytest session, registered as a plugin on first use."""
    return session_plugin(config, "hostile-inputs-summary", InputsSummary)


def check_run(
    summary: InputsSummary,
    command: str,
    name: str,
    source: str,
    result: Any,
    *,
    allowed: set[int],
    located: bool,
    out_dir: Path | None = None,
) -> list[str]:
    """The rules of the module docstring for one run; returns (and records) what broke them."""
    problems: list[str] = []
    stderr = result.stderr
    traceback = "Traceback" in result.output or not (result.exception is None or isinstance(result.exception, SystemExit))
    if traceback:
        problems.append(f"traceback: {result.exception!r}")
    if result.exit_code not in allowed:
        problems.append(f"exit {result.exit_code}, expected one of {sorted(allowed)}: {stderr[:300]!r}")
    for line in stderr.splitlines():
        if len(line) > MAX_LINE:
            problems.append(f"a stderr line of {len(line)} characters: {line[:120]!r}")
    if command == "validate":
        # validate reports many inputs: one line per unreadable input, naming it, then one summary line
        lines = stderr.splitlines()
        if len(lines) == 1 and lines[0].startswith(f"Error: {source}"):
            pass  # refused before reading any input (a path that cannot exist)
        elif not lines or not re.match(r"^\d[\d,]* inputs?: ", lines[-1]):
            problems.append(f"no summary line: {stderr[-300:]!r}")
        for line in lines[:-1]:
            if not line.startswith(source):
                problems.append(f"a line that names no input: {line[:300]!r}")
    elif result.exit_code == 2:
        errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
        if len(errors) != 1 or len(stderr.splitlines()) != 1:
            problems.append(f"not one error line: {stderr[:300]!r}")
        elif source not in errors[0] and command != "validate":
            problems.append(f"the error does not name the input file: {errors[0][:300]!r}")
        elif located and not re.search(r": at (\$|Bundle|line \d)", errors[0]):
            problems.append(f"the error names no place: {errors[0][:300]!r}")
    if result.exit_code != 0 and out_dir is not None and any(out_dir.iterdir()):
        problems.append(f"written on failure: {sorted(p.name for p in out_dir.iterdir())}")
    summary.record(command, name, result.exit_code, traceback=traceback, problems=problems)
    return problems


