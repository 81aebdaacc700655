"""Reading JSON files with errors that name the file and place, and writing files atomically."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from fhir_so.errors import InputError


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """Read a file's bytes, turning every OS error into an InputError naming the file."""
    p = Path(path)
    try:
        if p.is_dir():
            raise InputError("is a directory, not a file", source=str(p))
        return p.read_bytes()
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError("no such file", source=str(p)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=str(p)) from None


def parse_json(data: bytes, source: str) -> Any:
    """Parse JSON bytes (UTF-8, BOM allowed) with a message giving line and column on error."""
    if not data.strip():
        raise InputError("the file is empty; expected a JSON object", source=source)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not valid UTF-8 (byte offset {exc.start})", source=source) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"malformed JSON: {exc.msg}", source=source, location=f"line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InputError("malformed JSON: nested too deeply", source=source) from None


def load_json(path: str | os.PathLike[str]) -> Any:
    """Read and parse a JSON file; every failure is an InputError naming the file."""
    return parse_json(read_bytes(path), str(path))


def load_json_object(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Like load_json, but the top level must be a JSON object."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise InputError(f"expected a JSON object at the top level, found {type(data).__name__}", source=str(path), location="$")
    return data


def dumps(obj: Any) -> str:
    """Canonical JSON text: two-space indent, keys in the given order, UTF-8, trailing newline."""
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


@contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` only when the block ends without error.

    It is written as a temp file in the same folder, then renamed: a reader never sees it
    half-written, and a failure leaves nothing behind. Errors raised inside the block pass
    through as they are; creating, syncing or renaming the file fails as an InputError.
    """
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _cannot_write(p, exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            try:
                fh.flush()
                os.fsync(fh.fileno())
                os.replace(tmp, p)
            except OSError as exc:
                raise _cannot_write(p, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cannot_write(path: Path, exc: OSError) -> InputError:
    return InputError(f"cannot write: {exc.strerror or exc}", source=str(path))


def write_atomic(path: str | os.PathLike[str], text: str | bytes) -> None:
    """Write a whole file atomically (see :func:`atomic_writer`)."""
    p = Path(path)
    with atomic_writer(p) as fh:
        try:
            fh.write(text.encode("utf-8") if isinstance(text, str) else text)
        except OSError as exc:
            raise _cannot_write(p, exc) from None
