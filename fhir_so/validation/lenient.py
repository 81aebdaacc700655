"""A forgiving JSON reader for input that strict JSON rejects, so such input still gets located findings.

The HL7 validator reads JSON the way people write it by hand and reports what is wrong as
validation errors rather than refusing the file: comments (``//``, ``/* */``), names and
values without quotes, a missing comma, a comma too many before ``]`` or ``}``. This reader
accepts exactly those, returns the parsed value and one finding per departure, located at the
object or array where it happened (``Patient.name[0]``). Anything else (a wrong closing
bracket, a truncated file) raises :class:`LenientError`, and the input stays unreadable.

It is only used after the strict parser (orjson) failed, so valid JSON never pays for it.
"""

from __future__ import annotations

import json
import re
from typing import Any

_MAX_NUMBER_CHARS = 1000
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_STRING = re.compile(rb'"(?:[^"\\\x00-\x1f]|\\.)*"', re.S)
_BARE = re.compile(rb"[A-Za-z_$][A-Za-z0-9_$\-.]*")
_WS = b" \t\r\n"


class LenientError(ValueError):
    """The text is not even hand-written JSON (a wrong closing bracket, a truncated file...)."""


class _Reader:
    def __init__(self, data: bytes, allow_comments: bool) -> None:
        self.data = data
        self.pos = 0
        self.allow_comments = allow_comments
        #: (path segments, message): paths are filled in once the resource type is known
        self.findings: list[tuple[tuple[str | int, ...], str]] = []
        self.comment_at: set[tuple[str | int, ...]] = set()

    def fail(self, what: str) -> LenientError:
        line = self.data.count(b"\n", 0, self.pos) + 1
        return LenientError(f"{what} at line {line}")

    def skip(self, path: tuple[str | int, ...]) -> None:
        data, n = self.data, len(self.data)
        while self.pos < n:
            c = data[self.pos]
            if c in _WS:
                self.pos += 1
            elif data.startswith(b"//", self.pos):
                end = data.find(b"\n", self.pos)
                self.pos = n if end < 0 else end + 1
                self._comment(path)
            elif data.startswith(b"/*", self.pos):
                end = data.find(b"*/", self.pos + 2)
                if end < 0:
                    raise self.fail("unterminated comment")
                self.pos = end + 2
                self._comment(path)
            else:
                return

    def _comment(self, path: tuple[str | int, ...]) -> None:
        if not self.allow_comments and path not in self.comment_at:
            self.comment_at.add(path)
            self.findings.append((path, "comments are not allowed in JSON"))

    def peek(self) -> int:
        return self.data[self.pos] if self.pos < len(self.data) else -1

    def value(self, path: tuple[str | int, ...], name: str) -> Any:
        self.skip(path)
        c = self.peek()
        if c == ord("{"):
            return self.obj(path)
        if c == ord("["):
            return self.arr(path, name)
        if c == ord('"'):
            return self.string()
        m = _NUMBER.match(self.data, self.pos)
        if m and c != -1:
            self.pos = m.end()
            text = m.group().decode()
            if len(text) > _MAX_NUMBER_CHARS:  # Python refuses to convert such integers; no FHIR number is near
                raise self.fail(f"a number of {len(text):,} characters")
            try:
                return json.loads(text)
            except ValueError as exc:
                raise self.fail(f"bad number ({exc})") from None
        m = _BARE.match(self.data, self.pos)
        if m:
            self.pos = m.end()
            word = m.group().decode()
            if word in ("true", "false", "null"):
                return {"true": True, "false": False, "null": None}[word]
            self.findings.append((path, f"the JSON property {name!r} has no quotes around its value {word!r}"))
            return word
        raise self.fail("unexpected content" if c != -1 else "unexpected end of file")

    def string(self) -> str:
        m = _STRING.match(self.data, self.pos)
        if not m:
            raise self.fail("unterminated string")
        self.pos = m.end()
        try:
            return str(json.loads(m.group().decode("utf-8")))
        except (UnicodeDecodeError, ValueError) as exc:
            raise self.fail(f"bad string ({exc})") from None

    def obj(self, path: tuple[str | int, ...]) -> dict[str, Any]:
        self.pos += 1
        out: dict[str, Any] = {}
        first = True
        while True:
            self.skip(path)
            c = self.peek()
            if c == ord("}"):
                self.pos += 1
                return out
            if not first:
                if c == ord(","):
                    self.pos += 1
                    self.skip(path)
                    if self.peek() == ord("}"):
                        self.findings.append((path, "there is an extra comma at the end of the object"))
                        self.pos += 1
                        return out
                elif c in (ord('"'),) or _BARE.match(self.data, self.pos):
                    self.findings.append((path, "a comma is missing in the JSON"))
                else:
                    raise self.fail(f"unexpected {chr(c) if c >= 0 else 'end of file'!r} in an object")
            first = False
            self.skip(path)
            if self.peek() == ord('"'):
                key = self.string()
            else:
                m = _BARE.match(self.data, self.pos)
                if not m:
                    raise self.fail("expected a property name")
                self.pos = m.end()
                key = m.group().decode()
                self.findings.append((path, f"the JSON property {key!r} has no quotes around its name"))
            self.skip(path)
            if self.peek() != ord(":"):
                raise self.fail("expected ':'")
            self.pos += 1
            out[key] = self.value(path + (key,), key)

    def arr(self, path: tuple[str | int, ...], name: str) -> list[Any]:
        self.pos += 1
        out: list[Any] = []
        while True:
            self.skip(path)
            c = self.peek()
            if c == ord("]"):
                self.pos += 1
                return out
            if out:
                if c == ord(","):
                    self.pos += 1
                    self.skip(path)
                    if self.peek() == ord("]"):
                        self.findings.append((path, "there is an extra comma at the end of the array"))
                        self.pos += 1
                        return out
                elif c in (ord('"'), ord("{"), ord("[")) or _BARE.match(self.data, self.pos) or _NUMBER.match(self.data, self.pos):
                    self.findings.append((path, "a comma is missing in the JSON"))
                else:
                    raise self.fail(f"unexpected {chr(c) if c >= 0 else 'end of file'!r} in an array")
            out.append(self.value(path + (len(out),), name))


def _fhirpath(root: str, path: tuple[str | int, ...]) -> str:
    out = root
    for seg in path:
        out += f"[{seg}]" if isinstance(seg, int) else f".{seg}"
    return out


def parse_lenient(data: bytes, *, allow_comments: bool = False) -> tuple[Any, list[tuple[str, str]]]:
    """Parse hand-written JSON; returns the value and (FHIRPath location, message) per departure from JSON."""
    reader = _Reader(data, allow_comments)
    value = reader.value((), "")
    reader.skip(())
    if reader.pos != len(data):
        raise reader.fail("unexpected content after the end of the JSON value")
    root = value.get("resourceType") if isinstance(value, dict) else None
    root_name = root if isinstance(root, str) else "$"
    return value, [(_fhirpath(root_name, p), msg) for p, msg in reader.findings]
