"""fhir-so against the Java validator's expected outcomes on the official FHIR validator test suite.

Each step (a case's base or profile validation) must give Java's verdict, unless it is listed in
``expected_disagreements.json`` with fhir-so's verdict and the reason; a listed step that starts
to agree fails too, so the list stays true (regenerate it with ``scoreboard.py --write-expected``
and keep the reasons). Skipped steps say why; the counts are in SCOREBOARD.md.
"""

from __future__ import annotations

import pytest

from tests.conformance import suite as S
from tests.conformance.conftest import suite_path

_PATH = suite_path()
_STEPS = S.steps(_PATH) if _PATH is not None else []
_EXPECTED = S.load_expected()


@pytest.mark.parametrize("step", _STEPS, ids=[s.id for s in _STEPS])
def test_step(step: S.Step, suite_outcomes: dict[str, S.Outcome]) -> None:
    if step.category == "skip":
        pytest.skip(f"official suite: {step.reason.split(':')[0]}")
    outcome = suite_outcomes[step.id]
    assert not outcome.error.startswith("crash"), outcome.error
    known = _EXPECTED.get(step.id)
    if known is None:
        assert outcome.agrees, _explain(outcome)
    else:
        assert not outcome.agrees, f"{step.id} now agrees with Java: remove it from expected_disagreements.json"
        assert S.verdict(outcome) == known["verdict"], _explain(outcome)


def test_targets_on_core(suite_outcomes: dict[str, S.Outcome]) -> None:
    """The issue's targets where reached, and no step the Java validator reads ends in exit 2."""
    score = S.Score()
    for outcome in suite_outcomes.values():
        if outcome.step.category == "core":
            score.add(outcome)
    metrics = score.metrics
    assert score.steps >= 300
    floors = S.load_floors()
    for name in ("agreement", "caught", "same_path"):
        assert metrics[name] >= floors[name], score.lines()
    assert metrics["false_alarms"] <= floors["false_alarms"], score.lines()
    assert score.exit2 <= floors["exit2"], score.lines()


def test_expected_disagreements_name_real_steps() -> None:
    ids = {s.id for s in _STEPS}
    if not ids:
        pytest.skip("the FHIR validator test suite is not fetched")
    assert set(_EXPECTED) <= ids
    assert all(v.get("reason") and v.get("verdict") in ("valid", "invalid", "exit2") for v in _EXPECTED.values())
    assert not [k for k, v in _EXPECTED.items() if v["reason"] == "unexplained"], "write the reason of each new disagreement"


def _explain(outcome: S.Outcome) -> str:
    java = [f"{i.get('expression')}: {(i.get('details') or {}).get('text')}" for i in outcome.step.expected_errors]
    ours = [f"{i.expression}: {i.message}" for i in outcome.issues if i.is_error]
    return f"{outcome.step.id}: Java {'valid' if outcome.step.expected_valid else 'invalid'} {java[:5]}; fhir-so {S.verdict(outcome)} {ours[:5]} {outcome.error}"
