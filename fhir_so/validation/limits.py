"""minValue[x] / maxValue[x] of an ElementDefinition, checked against a value.

Numbers compare as numbers; dates, date-times, instants and times compare on their common
precision (``2025`` against ``2025-01-01`` compares the year); a Quantity compares with a limit in
the same unit, or in a unit that differs by a UCUM metric prefix only (``g`` against ``kg``); a
``Duration`` limit on a date (as the HL7 validator accepts) is relative to now: ``maxValueDuration``
10 ``a`` means no later than ten years from now. Anything else is not compared (no false error).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

_PREFIX = {"Y": 24, "Z": 21, "E": 18, "P": 15, "T": 12, "G": 9, "M": 6, "k": 3, "h": 2, "da": 1, "": 0, "d": -1, "c": -2, "m": -3, "u": -6, "n": -9, "p": -12, "f": -15}
_METRIC = ("g", "m", "l", "L", "s", "mol", "Pa", "J", "W", "N", "Hz", "V", "A", "K", "eq", "U")
_DURATION_DAYS = {"a": 365.25, "mo": 30.4375, "wk": 7.0, "d": 1.0, "h": 1 / 24, "min": 1 / 1440, "s": 1 / 86400}


def _number(v: Any) -> Decimal | None:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        return None
    try:
        return Decimal(str(v))
    except InvalidOperation:
        return None


def _split_metric(code: str) -> tuple[int, str] | None:
    for base in sorted(_METRIC, key=len, reverse=True):
        if code.endswith(base):
            prefix = code[: -len(base)]
            if prefix in _PREFIX:
                return _PREFIX[prefix], base
    return None


def _quantity_value(q: Any, unit_of: Any) -> Decimal | None:
    """q's value expressed in the unit of ``unit_of`` (both Quantities), or None when not comparable."""
    if not isinstance(q, dict) or not isinstance(unit_of, dict):
        return None
    value = _number(q.get("value"))
    if value is None:
        return None
    code, target = q.get("code") or q.get("unit"), unit_of.get("code") or unit_of.get("unit")
    if code == target or target is None:
        return value
    if not isinstance(code, str) or not isinstance(target, str):
        return None
    a, b = _split_metric(code), _split_metric(target)
    if a is None or b is None or a[1] != b[1]:
        return None
    return value.scaleb(a[0] - b[0])


def _relative(limit: Any, now: datetime, sign: int) -> str | None:
    """A Duration limit as an ISO date-time relative to now (sign +1 after, -1 before)."""
    if not isinstance(limit, dict):
        return None
    value, unit = _number(limit.get("value")), limit.get("code") or limit.get("unit")
    if value is None or unit not in _DURATION_DAYS:
        return None
    moment = now + sign * timedelta(days=float(value) * _DURATION_DAYS[str(unit)])
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def _compare_text(a: str, b: str) -> int:
    n = min(len(a), len(b))
    x, y = a[:n], b[:n]
    return (x > y) - (x < y)


def violation(kind: str, limit_type: str, limit: Any, type_code: str, value: Any, now: datetime | None = None) -> str | None:
    """A message when ``value`` (of ``type_code``) is beyond the ``kind`` ("min"/"max") limit, else None."""
    if limit_type == "Quantity" and type_code in ("Quantity", "Age", "Duration", "Distance", "Count", "SimpleQuantity", "MoneyQuantity"):
        ours, theirs = _quantity_value(value, limit), _number(limit.get("value")) if isinstance(limit, dict) else None
        if ours is None or theirs is None:
            return None
        cmp = (ours > theirs) - (ours < theirs)
        shown = f"{value.get('value')} {value.get('code') or value.get('unit') or ''}".strip()
        bound = f"{limit.get('value')} {limit.get('code') or limit.get('unit') or ''}".strip()
    elif limit_type in ("integer", "decimal", "positiveInt", "unsignedInt", "integer64"):
        ours, theirs = _number(value), _number(limit)
        if ours is None or theirs is None:
            return None
        cmp = (ours > theirs) - (ours < theirs)
        shown, bound = str(value), str(limit)
    elif limit_type in ("date", "dateTime", "instant", "time"):
        if not isinstance(value, str) or not isinstance(limit, str):
            return None
        cmp, shown, bound = _compare_text(value, limit), value, limit
    elif limit_type == "Duration" and type_code in ("date", "dateTime", "instant") and isinstance(value, str):
        when = now or datetime.now(timezone.utc)
        relative = _relative(limit, when, 1 if kind == "max" else -1)
        if relative is None:
            return None
        cmp = _compare_text(value, relative)
        shown = value
        bound = f"{limit.get('value')} {limit.get('code') or limit.get('unit')} {'after' if kind == 'max' else 'before'} now ({relative[:10]})"
    else:
        return None
    if kind == "min" and cmp < 0:
        return f"the value {shown} is less than the minimum value {bound}"
    if kind == "max" and cmp > 0:
        return f"the value {shown} is greater than the maximum value {bound}"
    return None
