"""The clock the workflows stamp times with (tests inject their own), and how a time is written."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """The real clock (tests inject their own)."""
    return dt.datetime.now(dt.timezone.utc)


def instant(when: dt.datetime) -> str:
    """A FHIR instant in UTC to the second: ``2026-03-02T10:00:00Z``."""
    return when.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
