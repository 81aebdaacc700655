"""What is retried, and how long to wait (see :class:`RetryPolicy` and the package docstring)."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus

import requests
import urllib3.exceptions

__all__ = ["RETRY_ANY", "RETRY_IDEMPOTENT", "RetryPolicy", "classify_failure"]

RETRY_IDEMPOTENT = frozenset(
    {
        HTTPStatus.TOO_MANY_REQUESTS,
        HTTPStatus.INTERNAL_SERVER_ERROR,
        HTTPStatus.BAD_GATEWAY,
        HTTPStatus.SERVICE_UNAVAILABLE,
        HTTPStatus.GATEWAY_TIMEOUT,
    }
)
# The server refused before doing anything: safe whatever the method.
RETRY_ANY = frozenset({HTTPStatus.TOO_MANY_REQUESTS})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry (see the package docstring for *what* is retried).

    ``attempts`` counts every try, the first included (1 = never retry). The wait before
    retry *n* is ``backoff * 2**(n-1)``, capped at ``max_backoff``, of which a random half
    is jitter; a Retry-After header replaces it, capped at ``max_retry_after``. ``sleep``,
    ``random`` and ``clock`` are injectable for tests.
    """

    attempts: int = 4
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 120.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    def delay(self, retry: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        if retry_after:
            seconds = self._parse_retry_after(retry_after)
            if seconds is not None:
                return min(max(seconds, 0.0), self.max_retry_after)
        ceiling = min(self.max_backoff, self.backoff * 2 ** (retry - 1))
        return ceiling / 2 + self.random() * ceiling / 2

    def _parse_retry_after(self, value: str) -> float | None:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return when.timestamp() - self.clock()


def classify_failure(exc: requests.RequestException) -> tuple[str, bool]:
    """A short description of a transport failure, and whether the request may have been sent."""
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS failed", False
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connection timed out", False
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "timed out waiting for the answer", True
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return "connection dropped while reading the answer", True
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)
        if isinstance(reason, urllib3.exceptions.NewConnectionError):
            return "could not connect", False
        return "connection failed or dropped", True
    return "request failed", True
