"""Inputs to validate, streamed: files, directories (recursively), Bundles and NDJSON, one resource at a time.

NDJSON is read line by line, so memory stays flat in the input size. A file that cannot be
read or parsed becomes an :class:`Input` carrying an :class:`~fhir_so.errors.InputError`
that names the file and the line and column, and the stream goes on with the next input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

import orjson

from fhir_so.errors import InputError
from fhir_so.jsonio import MAX_JSON_FILE_BYTES, open_regular, read_limited
from fhir_so.validation.findings import STRUCTURE, Issue
from fhir_so.validation.lenient import LenientError, parse_lenient

NDJSON_SUFFIXES = (".ndjson", ".jsonl")
JSON_SUFFIXES = (".json",)
# One NDJSON line is one resource: one with an attachment at the 20 MiB inline limit fits.
MAX_NDJSON_LINE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Input:
    """One resource to validate (or the error that kept it from being read) and where it came from."""

    source: str
    resource: Any = None
    error: InputError | None = None
    line: int | None = None
    #: what was wrong in how the JSON was written (comments, missing quotes or commas) when it could still be read
    issues: tuple[Issue, ...] = ()

    @property
    def uri(self) -> str:
        """A URI naming the input: file:///abs/path, with #line=N for an NDJSON line."""
        path = Path(self.source.split(":", 1)[0] if self.line is not None else self.source)
        uri = path.resolve().as_uri() if self.source != "-" else "urn:stdin"
        return f"{uri}#line={self.line}" if self.line is not None else uri


def parse(data: bytes, source: str, *, line: int | None = None) -> Any:
    """Parse JSON bytes with orjson; a failure is an InputError naming the source, line and column."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if line is None:
            where = f"line {exc.lineno} column {exc.colno}"
        else:
            where = f"line {line} column {exc.colno}"
        if not data.strip():
            raise InputError("the file is empty; expected a JSON object", source=source) from None
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as uexc:
            raise InputError(f"not valid UTF-8 (byte offset {uexc.start})", source=source, location=f"line {line}" if line else None) from None
        raise InputError(f"malformed JSON: {exc.msg}", source=source, location=where) from None


def _object(value: Any, source: str, location: str | None) -> Any:
    if not isinstance(value, dict):
        kind = type(value).__name__ if value is not None else "null"
        raise InputError(f"expected a FHIR resource (a JSON object), found {kind}", source=source, location=location)
    return value


def _lines(fh: BinaryIO, limit: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) of each line; None for a line longer than ``limit`` (skipped, not held)."""
    n = 0
    while True:
        raw = fh.readline(limit + 1)
        if not raw:
            return
        n += 1
        if len(raw) > limit and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # drain the rest of the long line in bounded chunks
                raw = fh.readline(1 << 20)
            yield n, None
            continue
        yield n, raw


@dataclass(frozen=True, slots=True)
class Raw:
    """One input as read from disk, not yet parsed: a JSON file's bytes, one NDJSON line's, or why it could not be read.

    Reading (:func:`iter_raw`) and parsing (:func:`parse_raw`) are apart so that a process that
    reads the files can hand the bytes to other processes (``validate --jobs``/``--scheduler``) that
    parse and validate them exactly as a single process does.
    """

    file: str
    data: bytes | None = None
    #: the NDJSON line number (None: a whole JSON file)
    line: int | None = None
    error: InputError | None = None

    @property
    def source(self) -> str:
        """How reports name the input: the file, or ``file:line`` for an NDJSON line."""
        return f"{self.file}:{self.line}" if self.line is not None else self.file


def iter_raw_file(path: Path) -> Iterator[Raw]:
    """The inputs of one file, unparsed: a .ndjson/.jsonl file line by line (blank lines skipped), any other file whole.

    Only regular files are read (a device, FIFO or socket is an input error, before any read);
    a JSON file of more than ``MAX_JSON_FILE_BYTES`` and an NDJSON line of more than
    ``MAX_NDJSON_LINE_BYTES`` are refused without being held in memory.
    """
    source = str(path)
    if path.name.lower().endswith(NDJSON_SUFFIXES):
        try:
            fh = os.fdopen(open_regular(path, source=source), "rb")
        except InputError as err:
            yield Raw(source, error=err)
            return
        with fh:
            try:
                for n, raw in _lines(fh, MAX_NDJSON_LINE_BYTES):
                    if raw is None:
                        too_long = InputError(f"line longer than the limit of {MAX_NDJSON_LINE_BYTES:,} bytes", source=source, location=f"line {n}")
                        yield Raw(source, line=n, error=too_long)
                        continue
                    if raw.strip():
                        yield Raw(source, raw, line=n)
            except OSError as exc:
                yield Raw(source, error=InputError(f"cannot read: {exc.strerror or exc}", source=source))
        return
    try:
        yield Raw(source, read_limited(path, MAX_JSON_FILE_BYTES, source=source))
    except InputError as err:
        yield Raw(source, error=err)


def parse_raw(raw: Raw, *, allow_comments: bool = False) -> Input:
    """The :class:`Input` of one raw input: parsed, or carrying the error that kept it from being parsed.

    A JSON file that strict JSON rejects is read again leniently (comments, names or values without
    quotes, a comma missing or too many): when that succeeds the resource is validated and each such
    departure is an error finding (comments are accepted with ``allow_comments``); otherwise the
    file is bad input. An NDJSON line is read strictly.
    """
    source = raw.source
    if raw.error is not None or raw.data is None:
        return Input(source, error=raw.error or InputError("nothing was read", source=source), line=raw.line)
    if raw.line is not None:
        try:
            return Input(source, _object(parse(raw.data, raw.file, line=raw.line), raw.file, f"line {raw.line}"), line=raw.line)
        except InputError as err:
            return Input(source, error=err, line=raw.line)
    data = raw.data
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return Input(source, _object(parse(data, source), source, "$"))
    except InputError as err:
        try:
            value, departures = parse_lenient(data, allow_comments=allow_comments)
        except (LenientError, RecursionError):
            return Input(source, error=err)
        if not isinstance(value, dict):
            return Input(source, error=err)
        found = tuple(Issue("error", STRUCTURE, where, f"not valid JSON: {msg}", "json") for where, msg in departures)
        return Input(source, value, issues=found)


def iter_file(path: Path, *, allow_comments: bool = False) -> Iterator[Input]:
    """The resources of one file: a .ndjson/.jsonl file line by line, any other file as one JSON resource.

    Reading as :func:`iter_raw_file`, parsing as :func:`parse_raw` (lenient JSON for whole files).
    """
    for raw in iter_raw_file(path):
        yield parse_raw(raw, allow_comments=allow_comments)


def iter_raw(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Raw]:
    """Every input under the given paths, unparsed; directories are walked for *.json and *.ndjson in name order."""
    for p in paths:
        path = Path(p)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and not any(part.startswith(".") for part in child.relative_to(path).parts):
                    if child.name.lower().endswith(JSON_SUFFIXES + NDJSON_SUFFIXES):
                        yield from iter_raw_file(child)
        else:
            yield from iter_raw_file(path)


def iter_inputs(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Input]:
    """Every resource under the given paths; directories are walked for *.json and *.ndjson in name order."""
    for raw in iter_raw(paths):
        yield parse_raw(raw)
