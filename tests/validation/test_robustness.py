"""Hostile input never becomes a traceback: random JSON put anywhere in real resources gives findings, not exceptions."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_so.validation import Validator

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "urology-second-opinion.bundle.json"
BUNDLE: dict[str, Any] = orjson.loads(EXAMPLE.read_bytes())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["url", "reference", "coding", "value", "x", "id", "extension"]), inner, max_size=3),
    max_leaves=6,
)


def _paths(obj: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*here, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*here, i))
    return out


PATHS = _paths(BUNDLE)[1:]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(PATHS), json_values), min_size=1, max_size=3))
def test_random_values_anywhere_give_findings_not_exceptions(validator: Validator, changes: list[tuple[tuple[Any, ...], Any]]) -> None:
    assert_findings_not_exceptions(validator, BUNDLE, changes)


def assert_findings_not_exceptions(validator: Validator, base: dict[str, Any], changes: list[tuple[tuple[Any, ...], Any]]) -> None:
    """Put each value at its path in a copy of ``base``: validating it gives well-formed findings, no exception."""
    bundle = copy.deepcopy(base)
    for path, value in changes:
        cur: Any = bundle
        try:
            for key in path[:-1]:
                cur = cur[key]
            cur[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    issues = list(validator.iter_issues(bundle))
    assert all(i.severity in ("fatal", "error", "warning", "information") and i.message for i in issues)
