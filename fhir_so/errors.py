"""The exception hierarchy of fhir-so, and the exit code each one maps to.

Every error the library raises on purpose derives from :class:`FhirSoError`; the CLI turns
it into a message and its ``exit_code`` (0 done, 1 refused, 2 bad input, 3 server failed)::

    FhirSoError                      exit 3 unless a subclass says otherwise
    ├── InputError                   exit 2: bad file, bad JSON, breaks a schema; names file and place
    │   ├── CaseNotFoundError        the server has no such case (pull, transfer): exit 2
    │   ├── ProfileError             a StructureDefinition or package that cannot be used
    │   └── ToolMissingError         a JDK, Maven or npm needed for a step is not installed
    ├── RefusedError                 exit 1: the step is not allowed
    │   ├── ConsentError             consent is missing, expired, revoked or does not cover the step
    │   ├── TransitionRefused        the Task's state does not allow the step (names the allowed ones)
    │   ├── VersionConflict          the Task changed since it was read (names the newer version)
    │   └── ValidationFailed         a resource failed validation (carries the OperationOutcome)
    └── ServerError                  exit 3: the FHIR server or the network failed
        ├── TransportError           connection refused or dropped, timeout, TLS (after retries)
        ├── CapabilityError          the server cannot do what is asked (no transaction, not R4)
        ├── LocalServerError         the local HAPI server did not build, start or stop
        └── HttpError                a non-2xx answer; carries status, url and OperationOutcome
            ├── AuthError            401 / 403
            ├── NotFoundError        404 / 410
            ├── PreconditionFailed   409 / 412: a concurrent change (ETag mismatch)
            └── UnsafeUrlError       a URL outside the configured server's origin was refused

Messages never contain secrets: the client builds them from the method, the URL without its
query string's credentials, the status and the OperationOutcome's text.
"""

from __future__ import annotations

import re
import reprlib
from typing import Any

# An InputError is shown as one line of at most this many characters (file, place and reason).
MAX_MESSAGE_CHARS = 500
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def one_line(text: str, limit: int) -> str:
    """``text`` as one printable line of at most ``limit`` characters.

    Line breaks, control characters, bidi overrides and lone surrogates become ``\\uXXXX``
    (a hostile file cannot rewrite the terminal or forge a second message line); a longer
    text keeps its head and tail around an ellipsis, so the place and the reason both show.
    """
    text = _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", str(text))
    if len(text) <= limit:
        return text
    head = max(1, limit * 2 // 3)
    tail = max(0, limit - head - 5)
    return text[:head] + " ... " + (text[-tail:] if tail else "")


def excerpt(value: Any, limit: int = 60) -> str:
    """A short printable repr of an offending value, for messages (never the whole 3 MB string).

    ``reprlib`` stops at a few levels and items, so a value nested 1,000 deep costs nothing.
    """
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother = 3, max(limit, 10), max(limit, 10)
    short.maxlist = short.maxdict = short.maxtuple = short.maxset = 4
    return one_line(short.repr(value), limit)


class FhirSoError(Exception):
    """Base of every error fhir-so raises on purpose."""

    exit_code: int = 3

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(FhirSoError):
    """Bad input: the message names the file and the place in it (a JSON path)."""

    exit_code = 2

    def __init__(self, message: str, *, source: str | None = None, location: str | None = None) -> None:
        self.source = source
        self.location = location
        where = ""
        if source:
            where += f"{one_line(source, 160)}: "
        if location:
            where += f"at {one_line(location, 120)}: "
        # room for the CLI's "Error: " in front: the line a user sees stays within MAX_MESSAGE_CHARS
        super().__init__(where + one_line(message, MAX_MESSAGE_CHARS - 10 - len(where)))
        self.detail = message


class CaseNotFoundError(InputError):
    """The server has no case with this case id, ServiceRequest id or patient (exit 2).

    An :class:`InputError` because the name given does not lead to a case; catch this class to
    tell "not there (yet)" from a malformed case.
    """

    def __init__(self, message: str, *, server: str, case_id: str | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.server = server
        self.case_id = case_id
        self.request_id = request_id


class ProfileError(InputError):
    """A profile, StructureDefinition or FHIR package that cannot be used."""


class ToolMissingError(InputError):
    """An external program needed for a step (java, mvn, npm) is not installed."""


class RefusedError(FhirSoError):
    """The step is not allowed (exit 1)."""

    exit_code = 1


class ConsentError(RefusedError):
    """Consent is missing, inactive, expired, revoked, or does not cover the step."""


class TransitionRefused(RefusedError):
    """The Task's current status does not allow the step; ``allowed`` are the statuses it may go to."""

    def __init__(self, message: str, *, status: str, allowed: tuple[str, ...]) -> None:
        super().__init__(message)
        self.status = status
        self.allowed = allowed


class VersionConflict(RefusedError):
    """Someone changed the Task first: the update was made against ``version``, the server holds ``newer``."""

    def __init__(self, message: str, *, version: str, newer: str | None, status: str | None = None) -> None:
        super().__init__(message)
        self.version = version
        self.newer = newer
        self.status = status


class ValidationFailed(RefusedError):
    """Validation found errors; ``outcome`` is the OperationOutcome as a dict."""

    def __init__(self, message: str, *, outcome: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome


class ServerError(FhirSoError):
    """The FHIR server or the network failed (exit 3)."""

    exit_code = 3


class TransportError(ServerError):
    """No usable answer: connection refused or dropped, timeout, TLS failure."""


class CapabilityError(ServerError):
    """The server cannot do what is asked (not FHIR R4, no transaction support, ...)."""


class LocalServerError(ServerError):
    """The local HAPI FHIR server did not build, start or stop."""


class HttpError(ServerError):
    """A non-2xx answer. Carries the status, method, URL and the server's OperationOutcome."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        method: str = "",
        url: str = "",
        outcome: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.method = method
        self.url = url
        self.outcome = outcome
        super().__init__(message)

    @property
    def issues(self) -> list[str]:
        """The OperationOutcome's issues as lines of text (severity, location, diagnostics)."""
        return outcome_lines(self.outcome)


class AuthError(HttpError):
    """401 or 403: credentials missing, wrong or not allowed."""


class NotFoundError(HttpError):
    """404 or 410."""


class PreconditionFailed(HttpError):
    """409 or 412: the resource changed since it was read (ETag mismatch) or a conflict."""


class UnsafeUrlError(ServerError):
    """A URL outside the configured server's origin was refused (credentials would leak)."""


def outcome_lines(outcome: dict[str, Any] | None) -> list[str]:
    """Render an OperationOutcome's issues as short lines a person can read."""
    if not isinstance(outcome, dict):
        return []
    lines = []
    for issue in outcome.get("issue") or []:
        if not isinstance(issue, dict):
            continue
        where = ", ".join(issue.get("expression") or issue.get("location") or [])
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or issue.get("code", "")
        prefix = f"{issue.get('severity', 'error')}"
        lines.append(f"{prefix}: {where}: {text}" if where else f"{prefix}: {text}")
    return lines
