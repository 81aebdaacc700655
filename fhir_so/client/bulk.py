"""A FHIR Bulk Data Access (v2) export client: kick-off, status polling, the manifest, the files.

Every request goes through the :class:`~fhir_so.client.FhirClient` given (its one transport:
credentials only on the server's origin, retries, secret scrubbing, errors as
:mod:`fhir_so.errors`). What this module adds is the protocol, read as untrusted input:

* **kick-off** (:meth:`BulkClient.kick_off`): ``GET [base]/$export``, ``[base]/Patient/$export``
  or ``[base]/Group/[id]/$export`` with ``Prefer: respond-async``; a ``POST`` of a Parameters
  resource when patients are named (the ``patient`` parameter exists only in a POST). The
  answer must be ``202`` with a ``Content-Location`` on the server's origin (the status URL is
  polled with credentials).
* **polling** (:meth:`BulkClient.wait`): ``202`` is "still running" (``X-Progress`` is passed
  on for display); the wait is the server's ``Retry-After`` (seconds or an HTTP date) within
  :class:`PollPolicy`'s floor and ceiling, or an exponential backoff when it is absent or
  garbage; ``200`` carries the manifest; an error status is the transport's exception (a 404:
  the job is gone).
* **the manifest** (:meth:`Manifest.parse`): the required fields with their types; each
  ``output`` / ``error`` item a resource type, a URL, an optional non-negative ``count``;
  every URL on the server's origin unless its origin was explicitly allowed; no URL twice; at
  most :data:`MAX_FILES` files.
* **files** (:meth:`BulkClient.download` into an :class:`NdjsonSink`): streamed, never held in
  memory; credentials sent only when the manifest says ``requiresAccessToken: true`` *and* the
  file is on the server's origin; each line checked to be a JSON object of the declared type
  (a bad line names the file and the line), the size capped, the count compared with the
  manifest's.
"""

from __future__ import annotations

import email.utils
import hashlib
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, BinaryIO, Literal

import orjson

from fhir_so.client.fhir_client import FhirClient
from fhir_so.client.urls import Origin, check_id, check_type, origin_of, prepare, show_url
from fhir_so.errors import InputError, NotFoundError, ServerError, UnsafeUrlError, excerpt

__all__ = [
    "BulkClient",
    "ExportRequest",
    "MAX_FILES",
    "MAX_FILE_BYTES",
    "Manifest",
    "NDJSON",
    "NdjsonSink",
    "OutputFile",
    "PollPolicy",
    "Status",
]

NDJSON = "application/fhir+ndjson"
#: A manifest naming more files than this is refused (a hostile server cannot make the client loop for ever).
MAX_FILES = 10_000
#: One NDJSON line is one resource: the largest one read (an inline attachment at 20 MiB fits with room).
MAX_LINE_BYTES = 64 * 1024 * 1024
#: Default cap of one downloaded file; ``--max-file-size`` raises it.
MAX_FILE_BYTES = 8 * 1024**3
_LEVELS = ("system", "patient", "group")
_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})")
_DETAIL = 160


@dataclass(frozen=True)
class ExportRequest:
    """What to export: the level (system, patient, group), the types, ``_since``, the patients."""

    level: Literal["system", "patient", "group"] = "system"
    types: tuple[str, ...] = ()
    since: str | None = None
    patients: tuple[str, ...] = ()
    group: str | None = None

    def __post_init__(self) -> None:
        if self.level not in _LEVELS:
            raise InputError(f"the export level must be one of {', '.join(_LEVELS)}, got {self.level!r}")
        if (self.level == "group") != (self.group is not None):
            raise InputError("a group export needs the Group's id, and only a group export takes one")
        if self.group is not None:
            check_id(self.group)
        for t in self.types:
            check_type(t)
        for p in self.patients:
            check_id(p)
        if self.patients and self.level != "patient":
            # The spec allows it at Group level too, but HAPI 8.8 ignores it there and exports the
            # whole group: more than was asked. Refused rather than trusted.
            raise InputError("patients can be named only in a Patient-level export (not with a system or Group export)")
        if self.since is not None and not _INSTANT.fullmatch(self.since):
            raise InputError(f"_since must be a FHIR instant such as 2026-11-01T00:00:00Z, got {excerpt(self.since)}")

    @property
    def path(self) -> str:
        """The kick-off path under the base URL."""
        if self.level == "patient":
            return "Patient/$export"
        if self.level == "group":
            return f"Group/{self.group}/$export"
        return "$export"

    def query(self) -> list[tuple[str, str]]:
        """The kick-off parameters of a GET (no patients)."""
        params = [("_outputFormat", NDJSON)]
        if self.types:
            params.append(("_type", ",".join(self.types)))
        if self.since:
            params.append(("_since", self.since))
        return params

    def parameters(self) -> dict[str, Any]:
        """The kick-off Parameters resource of a POST (needed for ``patient``)."""
        parameter: list[dict[str, Any]] = [{"name": "_outputFormat", "valueString": NDJSON}]
        if self.types:
            parameter.append({"name": "_type", "valueString": ",".join(self.types)})
        if self.since:
            parameter.append({"name": "_since", "valueInstant": self.since})
        parameter.extend({"name": "patient", "valueReference": {"reference": f"Patient/{p}"}} for p in self.patients)
        return {"resourceType": "Parameters", "parameter": parameter}

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "group": self.group,
            "types": list(self.types),
            "since": self.since,
            "patients": list(self.patients),
        }


@dataclass(frozen=True)
class PollPolicy:
    """How long to wait between status polls.

    The server's ``Retry-After`` (seconds, or an HTTP date) is honoured within ``[floor,
    ceiling]``; without one (or with garbage) the waits are ``first * 2**n`` up to
    ``backoff_cap``, with a little jitter. ``deadline`` (seconds, None = none) bounds the whole
    wait; the job is then left on the server for a later run to resume.
    """

    floor: float = 1.0
    ceiling: float = 60.0
    first: float = 1.0
    backoff_cap: float = 30.0
    deadline: float | None = None
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def delay(self, polls: int, retry_after: str | None) -> float:
        """Seconds to wait after poll number ``polls`` (1-based) answered 202 with this Retry-After."""
        seconds = self.parse_retry_after(retry_after)
        if seconds is None:
            base = min(self.backoff_cap, self.first * 2 ** max(0, polls - 1))
            seconds = base * (0.9 + 0.2 * self.random())
        return min(max(seconds, self.floor), self.ceiling)

    def parse_retry_after(self, value: str | None) -> float | None:
        """Seconds from a Retry-After value, or None when it is neither delta-seconds nor an HTTP date."""
        if not value:
            return None
        value = value.strip()
        if value.isdigit() and len(value) <= 9:
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        try:
            return when.timestamp() - self.clock()
        except (ValueError, OverflowError, OSError):
            return None


@dataclass(frozen=True)
class OutputFile:
    """One file of the manifest: ``output`` (resources of ``type``) or ``error`` (OperationOutcomes)."""

    kind: Literal["output", "error"]
    type: str
    url: str
    count: int | None
    index: int

    @property
    def where(self) -> str:
        return f"{self.kind}[{self.index}]"


@dataclass(frozen=True)
class Manifest:
    """A complete export's manifest, checked (see the module docstring)."""

    transaction_time: str
    request: str
    requires_access_token: bool
    outputs: tuple[OutputFile, ...]
    errors: tuple[OutputFile, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def files(self) -> tuple[OutputFile, ...]:
        return self.outputs + self.errors

    @classmethod
    def parse(cls, data: Any, origin: Origin, allowed: Iterable[Origin] = (), *, source: str = "the export manifest") -> Manifest:
        """Check a manifest read from the server; ServerError (or UnsafeUrlError) naming the field otherwise."""
        allowed_set = frozenset(allowed)

        def bad(where: str, what: str) -> ServerError:
            return ServerError(f"{source}: at {where}: {what}")

        if not isinstance(data, dict):
            raise bad("$", "not a JSON object")
        when = data.get("transactionTime")
        if not isinstance(when, str) or not _INSTANT.fullmatch(when.strip()):
            raise bad("transactionTime", f"missing or not a FHIR instant: {excerpt(when)}")
        request = data.get("request", "")
        if not isinstance(request, str):
            raise bad("request", f"not a string: {excerpt(request)}")
        token = data.get("requiresAccessToken")
        if not isinstance(token, bool):
            raise bad("requiresAccessToken", f"missing or not true/false: {excerpt(token)}")
        seen: set[str] = set()
        lists: dict[str, tuple[OutputFile, ...]] = {}
        for kind in ("output", "error"):
            items = data.get(kind, [] if kind == "error" else None)
            if not isinstance(items, list):
                raise bad(kind, f"missing or not a list: {excerpt(items)}")
            if len(items) + len(seen) > MAX_FILES:
                raise bad(kind, f"more than {MAX_FILES} files")
            found = []
            for i, item in enumerate(items):
                where = f"{kind}[{i}]"
                if not isinstance(item, dict):
                    raise bad(where, "not a JSON object")
                rtype = item.get("type")
                try:
                    check_type(rtype if isinstance(rtype, str) else "")
                except InputError:
                    raise bad(f"{where}.type", f"not a resource type: {excerpt(rtype)}") from None
                url = item.get("url")
                if not isinstance(url, str) or not url:
                    raise bad(f"{where}.url", f"missing or not a string: {excerpt(url)}")
                try:
                    prepared, target = prepare(url)
                except UnsafeUrlError as exc:
                    raise UnsafeUrlError(f"{source}: at {where}.url: {exc}") from None
                if target != origin and target not in allowed_set:
                    raise UnsafeUrlError(
                        f"{source}: at {where}.url: {show_url(url)} is outside the server's origin {origin}; "
                        "allow its origin explicitly (--allow-origin) to download it (without credentials)"
                    )
                if prepared in seen:
                    raise bad(f"{where}.url", f"the same file is listed twice: {show_url(url)}")
                seen.add(prepared)
                count = item.get("count")
                if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
                    raise bad(f"{where}.count", f"not a non-negative integer: {excerpt(count)}")
                found.append(OutputFile(kind, str(rtype), prepared, count, i))
            lists[kind] = tuple(found)
        return cls(when.strip(), request, token, lists["output"], lists["error"], data)


@dataclass(frozen=True)
class Status:
    """One status poll: finished (with the manifest) or still running (with the server's hints)."""

    manifest: Manifest | None
    progress: str | None = None
    retry_after: str | None = None

    @property
    def done(self) -> bool:
        return self.manifest is not None


class NdjsonSink:
    """A :class:`~fhir_so.client.transport.BodySink` that checks NDJSON line by line as it streams to a file.

    Each non-blank line must be a JSON object whose ``resourceType`` is ``expected_type``
    (OperationOutcome for an error file); a line longer than :data:`MAX_LINE_BYTES` or a file
    over ``max_bytes`` stops the download. Secrets of the client are blanked in what is written.
    ``name`` (the local file name) and the line number are in every message.
    """

    def __init__(
        self,
        fh: BinaryIO,
        *,
        name: str,
        expected_type: str,
        max_bytes: int = MAX_FILE_BYTES,
        scrub: Callable[[bytes], bytes] = lambda b: b,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        self.fh = fh
        self.name = name
        self.expected_type = expected_type
        self.max_bytes = max_bytes
        self.scrub = scrub
        self.on_bytes = on_bytes
        self.reset()

    def reset(self) -> None:
        self.fh.seek(0)
        self.fh.truncate()
        self.size = 0
        self.lines = 0
        self.resources = 0
        self._pending = b""
        self._digest = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise ServerError(f"{self.name}: the file is over the limit of {self.max_bytes:,} bytes (--max-file-size)")
        if self.on_bytes is not None:
            self.on_bytes(len(chunk))
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > MAX_LINE_BYTES:
            raise ServerError(f"{self.name}: line {self.lines + len(lines) + 1}: longer than {MAX_LINE_BYTES:,} bytes")
        for line in lines:
            self._line(line)

    def finish(self) -> None:
        """The last line (a file need not end with a newline); call once the body has arrived."""
        if self._pending:
            line, self._pending = self._pending, b""
            self._line(line)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def _line(self, line: bytes) -> None:
        self.lines += 1
        if not line.strip():
            return
        where = f"{self.name}: line {self.lines}"
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ServerError(f"{where}: not JSON ({str(exc).split(':')[0]}): {excerpt(line[:200].decode('utf-8', 'replace'))}") from None
        if not isinstance(value, dict):
            raise ServerError(f"{where}: not a JSON object (a FHIR resource)")
        found = value.get("resourceType")
        if found != self.expected_type:
            raise ServerError(f"{where}: resourceType {excerpt(found)} where the manifest declares {self.expected_type}")
        out = self.scrub(line.rstrip(b"\r")) + b"\n"
        self._digest.update(out)
        self.fh.write(out)
        self.resources += 1


class BulkClient:
    """The Bulk Data export protocol over one :class:`FhirClient` (which owns every request)."""

    def __init__(
        self,
        client: FhirClient,
        *,
        allowed_origins: Sequence[str] = (),
        poll: PollPolicy | None = None,
    ) -> None:
        self.client = client
        self.origin = origin_of(client.base_url)
        self.allowed: tuple[Origin, ...] = tuple(_allowed_origin(o) for o in allowed_origins)
        self.poll = poll or PollPolicy()

    def kick_off(self, request: ExportRequest) -> str:
        """Start an export; the status URL (on the server's origin)."""
        headers = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
        if request.patients:
            answer = self.client.request("POST", request.path, json=request.parameters(), headers=headers, idempotent=False)
        else:
            answer = self.client.request("GET", request.path, params=request.query(), headers=headers, idempotent=False)
        shown = f"{answer.method} {answer.url}"
        if answer.status != HTTPStatus.ACCEPTED:
            raise ServerError(f"{shown}: expected 202 Accepted for an asynchronous export, got {answer.status}")
        location = answer.headers.get("Content-Location", "").strip()
        if not location:
            raise ServerError(f"{shown}: the 202 answer has no Content-Location (the status URL)")
        return self.status_url(location, shown)

    def status_url(self, location: str, shown: str = "the export") -> str:
        """The status URL, checked: absolute or relative to the base URL, on the server's origin."""
        try:
            url, _ = prepare(location if "://" in location else f"{self.client.base_url}/{location.lstrip('/')}")
            if origin_of(url) != self.origin:
                raise UnsafeUrlError(f"{show_url(location)} is outside the server's origin {self.origin}")
        except UnsafeUrlError as exc:
            raise UnsafeUrlError(f"{shown}: refusing the status URL: {exc}") from None
        return url

    def status(self, status_url: str) -> Status:
        """Poll once."""
        answer = self.client.request("GET", status_url, headers={"Accept": "application/json"})
        if answer.status == HTTPStatus.ACCEPTED:
            progress = answer.headers.get("X-Progress")
            return Status(None, _printable(progress) if progress else None, answer.headers.get("Retry-After"))
        if answer.status != HTTPStatus.OK:
            raise ServerError(f"GET {answer.url}: expected 200 (done) or 202 (running), got {answer.status}")
        data = answer.json()
        return Status(Manifest.parse(data, self.origin, self.allowed, source=f"the export manifest from {answer.url}"))

    def wait(self, status_url: str, on_poll: Callable[[Status, float], None] | None = None) -> Manifest:
        """Poll until the export is done; the manifest. ``on_poll(status, wait)`` sees each 202."""
        started = self.poll.clock()
        polls = 0
        while True:
            polls += 1
            status = self.status(status_url)
            if status.manifest is not None:
                return status.manifest
            wait = self.poll.delay(polls, status.retry_after)
            if self.poll.deadline is not None and self.poll.clock() + wait - started > self.poll.deadline:
                raise ServerError(
                    f"the export did not finish within {self.poll.deadline:.0f} s; it is left running on the server "
                    "(run the same command again to resume)"
                )
            if on_poll is not None:
                on_poll(status, wait)
            self.poll.sleep(wait)

    def cancel(self, status_url: str) -> bool:
        """DELETE the status URL (cancel a running export, or release a finished one's files).

        True when the server took it; False when it answered 404/410 (already gone, or a
        server that releases nothing, as HAPI for a completed job).
        """
        try:
            self.client.request("DELETE", status_url, headers={"Accept": "application/json"})
        except NotFoundError:
            return False
        return True

    def download(self, file: OutputFile, sink: NdjsonSink, *, requires_access_token: bool) -> None:
        """Stream one file into the sink, credentials only where the manifest and the origin allow."""
        same_origin = origin_of(file.url) == self.origin
        if not same_origin and origin_of(file.url) not in self.allowed:
            raise UnsafeUrlError(f"refusing {show_url(file.url)}: outside the server's origin {self.origin}")
        self.client.request(
            "GET",
            file.url,
            headers={"Accept": NDJSON},
            allow_foreign=not same_origin,
            credentials=requires_access_token and same_origin,
            sink=sink,
        )
        sink.finish()
        if file.count is not None and sink.resources != file.count:
            raise ServerError(
                f"{sink.name}: {sink.resources} resources where the manifest's {file.where}.count says {file.count}"
            )


def _allowed_origin(url: str) -> Origin:
    try:
        return origin_of(url)
    except UnsafeUrlError as exc:
        raise InputError(f"--allow-origin {show_url(url)}: {exc}") from None


def _printable(text: str) -> str:
    text = " ".join(text.split())
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= _DETAIL else text[: _DETAIL - 1] + "…"
