"""Figures of the bad-input suite (inputs x runs x tracebacks), printed in pytest's terminal summary.

test_bad_inputs.py registers one :class:`InputsSummary` as a plugin for the session (no
conftest needed); each run of a command on an input is counted here, and the figures are
printed at the end of the test run, so CI logs show them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any


class InputsSummary:
    """Counters filled by the tests; ``pytest_terminal_summary`` prints them."""

    def __init__(self) -> None:
        self.inputs: set[str] = set()
        self.runs: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.tracebacks: list[str] = []
        self.violations: list[str] = []

    def record(self, command: str, name: str, exit_code: int, *, traceback: bool, problems: list[str]) -> None:
        self.inputs.add(name)
        self.runs[command] += 1
        (self.accepted if exit_code == 0 else self.refused)[command] += 1
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
            )
        for line in (self.tracebacks + self.violations)[:20]:
            tr.write_line(f"  ! {line[:300]}")
