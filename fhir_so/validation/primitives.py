"""Primitive FHIR values: the JSON type each one needs and the lexical form it must have.

Stricter than the R4 JSON schema on purpose: dates must exist (``2023-02-30`` fails), a
dateTime with a time needs a time zone, integers are range-checked, ``"true"`` is not a
boolean. Each checker returns None when the value is fine, else a message.
"""

from __future__ import annotations

import binascii
import calendar
import re
from typing import Any, Callable

from fhir_so.fhirtypes import FHIR_ID_RE as _ID_RE

Checker = Callable[[Any], "str | None"]

_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_DATE_RE = re.compile(rf"{_YEAR}(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?")
_TZ = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_DATETIME_RE = re.compile(
    rf"{_YEAR}(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T{_TIME}{_TZ})?)?)?"
)
_INSTANT_RE = re.compile(rf"{_YEAR}-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T{_TIME}{_TZ}")
_TIME_RE = re.compile(_TIME)
_CODE_RE = re.compile(r"[^\s]+( [^\s]+)*")
_URI_RE = re.compile(r"\S*")
_OID_RE = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")
_UUID_RE = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_BASE64_RE = re.compile(r"[A-Za-z0-9+/=\s]*")
_INT32 = (-(2**31), 2**31 - 1)


#: the R4 size limit of a string ("strings SHALL NOT exceed 1 MB")
_MAX_STRING = 1024 * 1024


def _string(v: Any) -> str | None:
    if not isinstance(v, str):
        return f"expected a JSON string, found {_json_type(v)}"
    if not v.strip():
        return "a string must not be empty or only whitespace (omit the element instead)"
    if len(v) > _MAX_STRING:
        return "the value is longer than the permitted maximum length of 1 MB (1048576 bytes)"
    return None


def _matcher(pattern: re.Pattern[str], what: str) -> Checker:
    def check(v: Any) -> str | None:
        if not isinstance(v, str):
            return f"expected a JSON string ({what}), found {_json_type(v)}"
        if pattern.fullmatch(v) is None:
            return f"{v!r} is not a valid {what}"
        return None

    return check


def _uri_like(what: str) -> Checker:
    """uri, url, canonical: no whitespace; a ``urn:uuid:`` one must hold a valid lower-case UUID (as Java checks)."""
    plain = _matcher(_URI_RE, what)

    def check(v: Any) -> str | None:
        problem = plain(v)
        if problem is None and v.startswith("urn:uuid:") and _UUID_RE.fullmatch(v) is None:
            return f"UUIDs must be valid and lowercase ({v[9:]})"
        return problem

    return check


def _date_exists(v: str) -> bool:
    if len(v) < 10:
        return True
    year, month, day = int(v[0:4]), int(v[5:7]), int(v[8:10])
    return day <= calendar.monthrange(year, month)[1]


def _temporal(pattern: re.Pattern[str], what: str, form: str, hint: Callable[[str], str] | None = None) -> Checker:
    """A checker for date, dateTime or instant: the lexical form, then that the date exists."""

    def check(v: Any) -> str | None:
        if not isinstance(v, str):
            return f"expected a JSON string ({what}), found {_json_type(v)}"
        if pattern.fullmatch(v) is None:
            return f"{v!r} is not a valid {what}{hint(v) if hint else ''} ({form})"
        if not _date_exists(v):
            return f"{v!r} is not a date that exists"
        return None

    return check


def _time_hint(v: str) -> str:
    return ": a time needs seconds and a time zone" if "T" in v else ""


_date = _temporal(_DATE_RE, "date", "YYYY, YYYY-MM or YYYY-MM-DD")
_datetime = _temporal(_DATETIME_RE, "dateTime", "e.g. 2024-05-01 or 2024-05-01T10:00:00Z", _time_hint)
_instant = _temporal(_INSTANT_RE, "instant", "full date, time with seconds and a time zone, e.g. 2024-05-01T10:00:00Z")


def _boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"expected a JSON boolean (true or false), found {_json_type(v)}"


def _int_range(low: int, what: str) -> Checker:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer():
                return f"{v!r} is not a valid {what}: write it without a decimal point"
            return f"expected a JSON integer ({what}), found {_json_type(v)}"
        if not low <= v <= _INT32[1]:
            return f"{v} is out of range for {what} ({low}..{_INT32[1]})"
        return None

    return check


def _decimal(v: Any) -> str | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return f"expected a JSON number (decimal), found {_json_type(v)}"
    return None


def _base64(v: Any) -> str | None:
    if not isinstance(v, str):
        return f"expected a JSON string (base64Binary), found {_json_type(v)}"
    if _BASE64_RE.fullmatch(v) is None:
        return "not valid base64: only A-Z a-z 0-9 + / = are allowed"
    compact = "".join(v.split())
    try:
        binascii.a2b_base64(compact.encode("ascii"), strict_mode=True)
    except (binascii.Error, ValueError):
        return "not valid base64: the length or the padding is wrong"
    return None


def _xhtml(v: Any) -> str | None:
    if not isinstance(v, str):
        return f"expected a JSON string (xhtml), found {_json_type(v)}"
    text = v.lstrip()
    if not text.startswith("<div"):
        return "the narrative must be an XHTML <div> element"
    if 'xmlns="http://www.w3.org/1999/xhtml"' not in text[: text.find(">") + 1]:
        return 'the narrative <div> must declare xmlns="http://www.w3.org/1999/xhtml"'
    return None


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


json_type = _json_type


def as_dict(value: Any, default: Any) -> Any:
    """The value when it is a JSON object, else the default."""
    return value if isinstance(value, dict) else default


def as_list(value: Any, default: Any) -> Any:
    """The value when it is a JSON array, else the default."""
    return value if isinstance(value, list) else default

#: checker per primitive type code
CHECKERS: dict[str, Checker] = {
    "boolean": _boolean,
    "integer": _int_range(_INT32[0], "integer"),
    "positiveInt": _int_range(1, "positiveInt"),
    "unsignedInt": _int_range(0, "unsignedInt"),
    "decimal": _decimal,
    "string": _string,
    "markdown": _string,
    "code": _matcher(_CODE_RE, "code (no leading, trailing or double spaces)"),
    "id": _matcher(_ID_RE, "id (1 to 64 of A-Z a-z 0-9 - .)"),
    "uri": _uri_like("uri (no whitespace)"),
    "url": _uri_like("url (no whitespace)"),
    "canonical": _uri_like("canonical (no whitespace)"),
    "oid": _matcher(_OID_RE, "oid (urn:oid:1.2.3)"),
    "uuid": _matcher(_UUID_RE, "uuid (urn:uuid: and lower-case hex)"),
    "date": _date,
    "dateTime": _datetime,
    "instant": _instant,
    "time": _matcher(_TIME_RE, "time (hh:mm:ss)"),
    "base64Binary": _base64,
    "xhtml": _xhtml,
}

# FHIRPath system types used for the id/url/value of elements in the R4 snapshots
SYSTEM_TYPES: dict[str, str] = {
    "http://hl7.org/fhirpath/System.String": "string",
    "http://hl7.org/fhirpath/System.Boolean": "boolean",
    "http://hl7.org/fhirpath/System.Integer": "integer",
    "http://hl7.org/fhirpath/System.Decimal": "decimal",
    "http://hl7.org/fhirpath/System.Date": "date",
    "http://hl7.org/fhirpath/System.DateTime": "dateTime",
    "http://hl7.org/fhirpath/System.Time": "time",
}


def _no_example(check: Checker) -> Checker:
    def no_example(v: Any) -> str | None:
        problem = check(v)
        if problem is None and ("example.org" in v or "acme.com" in v):
            return f"Example URLs are not allowed in this context ({v})"
        return problem

    return no_example


def checkers(*, allow_examples: bool = True) -> dict[str, Checker]:
    """The checkers to use: with ``allow_examples=False`` (an IG's own resources, not its examples)
    a uri, url or canonical at example.org or acme.com is an error, as the Java validator says."""
    if allow_examples:
        return CHECKERS
    return {**CHECKERS, **{code: _no_example(CHECKERS[code]) for code in ("uri", "url", "canonical")}}


def is_primitive(type_code: str) -> bool:
    """True for FHIR primitive type codes (lower-case first letter)."""
    return type_code in CHECKERS
