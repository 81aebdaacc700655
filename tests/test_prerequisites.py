"""Under CI=true a missing prerequisite (an empty FHIR package cache) fails the run; elsewhere it skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.prerequisites import need

ROOT = Path(__file__).resolve().parent.parent
A_VALIDATION_TEST = "tests/validation/test_structure.py::test_a_good_patient_has_no_error"


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)], ids=["ci", "developer"])
def test_need_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="cache"):
        need("the package cache is empty")


@pytest.mark.parametrize(("ci", "code", "word"), [("true", 1, "error"), ("", 0, "skipped")], ids=["ci", "developer"])
def test_an_empty_package_cache_fails_validation_tests_in_ci(tmp_path: Path, ci: str, code: int, word: str) -> None:
    env = {**os.environ, "CI": ci, "FHIR_SO_PACKAGES": str(tmp_path / "empty-cache")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", A_VALIDATION_TEST],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == code, done.stdout + done.stderr
    assert f"1 {word}" in done.stdout and "core R4 package not seeded" in done.stdout
