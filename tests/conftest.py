"""Shared fixtures: paths to the project's examples."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture
def example_cases() -> list[Path]:
    return sorted(EXAMPLES.glob("*.case.json"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Print the consent scenario figures (scenarios x violations) when those tests ran."""
    from tests.consent.figures import KEY

    if KEY in config.stash:
        for line in config.stash[KEY].lines():
            terminalreporter.write_line(line)
