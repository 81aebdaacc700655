"""Reading JSON files with errors that name the file and place, and writing files atomically."""

from __future__ import annotations

import errno
import json
import os
import secrets
import signal
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from fhir_so.errors import InputError

# The largest JSON file (a case, a Bundle, one resource) read whole: a case with several inline
# attachments at their 20 MiB limit fits; /dev/zero or a runaway file stops here, not at MemoryError.
MAX_JSON_FILE_BYTES = 256 * 1024 * 1024
# Kernel file systems whose "regular files" are live process or device state, never input.
_KERNEL_ROOTS = ("/proc", "/sys", "/dev")
_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFLNK: "a symbolic link",
}


def _os_error(exc: OSError | ValueError, source: str, location: str | None, what: str = "cannot read") -> InputError:
    if isinstance(exc, ValueError):  # os functions refuse a path with a NUL byte this way
        return InputError("the file name contains a NUL byte", source=source, location=location)
    if isinstance(exc, FileNotFoundError):
        return InputError("no such file", source=source, location=location)
    if exc.errno == errno.ELOOP:
        return InputError(f"{what}: a symbolic link where none is allowed (or a link loop)", source=source, location=location)
    return InputError(f"{what}: {exc.strerror or exc}", source=source, location=location)


def open_regular(
    path: str | os.PathLike[str], *, source: str | None = None, location: str | None = None, follow_symlinks: bool = True
) -> int:
    """Open a regular file for reading and return its descriptor; anything else is an InputError.

    Opened non-blocking, so a FIFO cannot hang the open, then checked with ``fstat`` on the
    descriptor itself (no race between a check and the open): devices, FIFOs, sockets and
    directories are refused before a byte is read, and so is anything under /proc, /sys or /dev.
    """
    name = source if source is not None else str(path)
    try:
        real = os.path.realpath(path)
    except (OSError, ValueError) as exc:
        raise _os_error(exc, name, location) from None
    if any(real == root or real.startswith(root + "/") for root in _KERNEL_ROOTS):
        raise InputError(f"refused: {real} is kernel or device state, not a file", source=name, location=location)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError) as exc:
        raise _os_error(exc, name, location) from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        os.close(fd)
        raise _os_error(exc, name, location) from None
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise InputError(f"is {kind}, not a regular file", source=name, location=location)
    return fd


def read_limited(
    path: str | os.PathLike[str],
    limit: int,
    *,
    source: str | None = None,
    location: str | None = None,
    follow_symlinks: bool = True,
) -> bytes:
    """A regular file's bytes, at most ``limit`` of them: reads ``limit + 1`` and refuses a longer file.

    The size the file system states is never trusted (/proc files say 0, a file may grow).
    """
    name = source if source is not None else str(path)
    fd = open_regular(path, source=name, location=location, follow_symlinks=follow_symlinks)
    try:
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise _os_error(exc, name, location) from None
    if len(data) > limit:
        raise InputError(f"larger than the limit of {limit:,} bytes", source=name, location=location)
    return data


def read_bytes(path: str | os.PathLike[str], limit: int = MAX_JSON_FILE_BYTES) -> bytes:
    """Read a regular file's bytes (at most ``limit``), turning every OS error into an InputError naming the file."""
    return read_limited(path, limit)


def parse_json(data: bytes, source: str) -> Any:
    """Parse JSON bytes (UTF-8, BOM allowed) with a message giving line and column on error.

    orjson is strict where the standard library is not: lone surrogates, NaN and Infinity,
    numbers that overflow a double, and nesting deeper than 1,024 levels are errors, not values
    that break later (the standard library also raises a bare ValueError on 5,000-digit integers).
    """
    if not data.strip():
        raise InputError("the file is empty; expected a JSON object", source=source)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as uexc:
            raise InputError(f"not valid UTF-8 (byte offset {uexc.start})", source=source) from None
        raise InputError(
            f"malformed JSON: {exc.msg}", source=source, location=f"line {exc.lineno} column {exc.colno}"
        ) from None


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

    - ``path`` a symbolic link: the link's target is written (the link stays a link).
    - Mode: an existing file keeps its mode; a new one gets what the umask gives (0666 & ~umask).
    - Where the OS allows, the temp file has no name until the rename (Linux ``O_TMPFILE``):
      even a SIGKILL leaves nothing; otherwise a SIGTERM or SIGINT during the write removes it.
    - Only regular files are replaced: a directory, device or FIFO at ``path`` is refused.
    """
    p = _write_target(Path(path))
    mode = _existing_mode(p)
    folder = p.parent if str(p.parent) else Path(".")
    fd, tmp, named = _create_temp(folder, p)
    restore = _raise_on_sigterm()
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)
        except OSError as exc:
            raise _cannot_write(p, exc) from None
        with os.fdopen(fd, "wb") as fh:
            yield fh
            try:
                fh.flush()
                os.fsync(fh.fileno())
                if not named:
                    _link_unnamed(fh.fileno(), tmp)
                    named = True
                os.replace(tmp, p)
            except OSError as exc:
                raise _cannot_write(p, exc) from None
    except BaseException:
        if named:
            Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        restore()


def _write_target(p: Path) -> Path:
    """Where writing ``p`` lands: through a symbolic link to its target; refuses non-regular files."""
    try:
        if p.is_symlink():
            try:
                p = Path(os.path.realpath(p, strict=True))
            except FileNotFoundError:  # a dangling link: create its target
                p = Path(os.path.realpath(p))
        st = p.stat() if p.exists() else None
    except (OSError, ValueError) as exc:
        raise _os_error(exc, str(p), None, "cannot write") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise InputError(f"cannot write: is {kind}, not a regular file", source=str(p))
    return p


def _existing_mode(p: Path) -> int | None:
    try:
        return stat.S_IMODE(p.stat().st_mode)
    except OSError:
        return None


def _create_temp(folder: Path, target: Path) -> tuple[int, str, bool]:
    """(fd, temp path, whether that path exists yet). Mode 0666: the kernel applies the umask."""
    tmp = str(folder / f".{target.name[:200]}.{secrets.token_hex(6)}.tmp")
    o_tmpfile = getattr(os, "O_TMPFILE", 0)
    if o_tmpfile and os.path.isdir("/proc/self/fd"):
        try:
            return os.open(folder, o_tmpfile | os.O_WRONLY | os.O_CLOEXEC, 0o666), tmp, False
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise _cannot_write(target, exc) from None
    try:
        return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o666), tmp, True
    except (OSError, ValueError) as exc:
        raise _os_error(exc, str(target), None, "cannot write") from None


def _link_unnamed(fd: int, name: str) -> None:
    """Give an ``O_TMPFILE`` file a name: linkat(/proc/self/fd/N, AT_SYMLINK_FOLLOW), as the man page shows."""
    proc = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.link(str(fd), name, src_dir_fd=proc, follow_symlinks=True)
    finally:
        os.close(proc)


def _raise_on_sigterm() -> Any:
    """While a temp file exists, SIGTERM unwinds like Ctrl-C (so it is removed); returns the undo."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return lambda: None

    def _handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _handler)
    return lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL)


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
