"""Shared fixtures: paths to the project's examples."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture
def example_cases() -> list[Path]:
    return sorted(EXAMPLES.glob("*.case.json"))
