"""Fixtures of the scale-out tests: the official validator suite's folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scale.inputs import suite_dir


@pytest.fixture(scope="session")
def suite() -> Path:
    return suite_dir()
