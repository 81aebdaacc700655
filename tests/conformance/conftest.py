"""The official validator suite: its outcomes computed once per session, the scoreboard printed at the end."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conformance import fetch_suite
from tests.conformance import suite as S

_OUTCOMES = pytest.StashKey[dict[str, S.Outcome]]()
_SKIPPED = pytest.StashKey[list[S.Step]]()


def suite_path() -> Path | None:
    """The fetched suite, or None when it is not there (fetched by ``./run setup``)."""
    return fetch_suite.suite_dir() if fetch_suite.is_fetched() else None


@pytest.fixture(scope="session")
def suite_outcomes(request: pytest.FixtureRequest) -> dict[str, S.Outcome]:
    """Every non-skipped step run once (about 20 s of CPU), by step id."""
    path = suite_path()
    if path is None:
        message = "the FHIR validator test suite is not fetched (run: python tests/conformance/fetch_suite.py)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    steps = S.steps(path)
    runner = S.Runner(path)
    outcomes = {s.id: runner.run(s) for s in steps if s.category != "skip"}
    request.config.stash[_OUTCOMES] = outcomes
    request.config.stash[_SKIPPED] = [s for s in steps if s.category == "skip"]
    return outcomes


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    outcomes = config.stash.get(_OUTCOMES, None)
    if outcomes is None:
        return
    terminalreporter.section("FHIR validator test suite (R4 JSON) scoreboard")
    causes = False  # the list of causes is long: it stays in SCOREBOARD.md
    for line in S.scoreboard(list(outcomes.values()), config.stash.get(_SKIPPED, [])).splitlines():
        if line.startswith("## "):
            causes = "by cause" in line
        if line and not causes and not line.startswith(("Written by", "`org.hl7")):
            terminalreporter.write_line(line)
