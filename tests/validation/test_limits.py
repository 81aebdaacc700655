"""minValue[x] / maxValue[x]: numbers, dates on their common precision, Quantities across metric prefixes, Durations from now."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from fhir_so.validation.limits import violation

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
KG0 = {"value": 0, "system": "http://unitsofmeasure.org", "code": "kg"}


@pytest.mark.parametrize(
    ("kind", "limit_type", "limit", "type_code", "value", "bad"),
    [
        ("min", "integer", 3, "integer", 2, True),
        ("min", "integer", 3, "integer", 3, False),
        ("max", "decimal", 1.5, "decimal", 1.51, True),
        ("min", "date", "2025-01-01", "date", "2024-12-31", True),
        ("min", "date", "2025-01-01", "date", "2025", False),  # compared on the common precision
        ("max", "time", "03:00:00", "time", "03:00:01", True),
        ("min", "Quantity", KG0, "Quantity", {"value": -1, "code": "g"}, True),
        ("max", "Quantity", KG0, "Quantity", {"value": 11000, "code": "g"}, True),
        ("max", "Quantity", {"value": 1, "code": "kg"}, "Quantity", {"value": 999, "code": "g"}, False),
        ("max", "Quantity", {"value": 1, "code": "kg"}, "Quantity", {"value": 5, "code": "cm"}, False),  # not comparable
        ("max", "Duration", {"value": 10, "code": "a"}, "date", "2100-01-01", True),
        ("max", "Duration", {"value": 10, "code": "a"}, "date", "2030-01-01", False),
        ("min", "Duration", {"value": 100, "code": "a"}, "date", "1850-01-01", True),
    ],
)
def test_limits(kind: str, limit_type: str, limit: object, type_code: str, value: object, bad: bool) -> None:
    assert (violation(kind, limit_type, limit, type_code, value, NOW) is not None) is bad
