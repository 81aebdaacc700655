"""NPM package tarballs (``.tgz``): read one in memory, or unpack one safely into a folder.

A tarball from a registry is untrusted input. Only regular files under ``package/`` are taken; a member
with an absolute path, a ``..`` part, or a link, device or FIFO type makes the whole archive refused (a
registry never ships those); sizes are capped so a small download cannot unpack into a full disk.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from fhir_so.errors import ProfileError
from fhir_so.packages.model import IndexEntry, Package, is_resource_file, loads, read_manifest

# Far above any real FHIR package (core R4 unpacks to about 60 MB, hl7.terminology to a few hundred).
MAX_UNPACKED_BYTES = 2 * 1024**3
MAX_MEMBERS = 200_000


def _safe_members(tar: tarfile.TarFile, source: str) -> Iterator[tuple[str, tarfile.TarInfo]]:
    """(path below package/, member) of every regular file under package/; refuses hostile members."""
    total = 0
    for count, member in enumerate(tar, 1):
        name = member.name
        if count > MAX_MEMBERS:
            raise ProfileError(f"refused: more than {MAX_MEMBERS} files in the archive", source=source)
        if name.startswith("/") or name.startswith("\\") or (len(name) > 1 and name[1] == ":"):
            raise ProfileError(f"refused: absolute path in the archive ({name!r})", source=source)
        parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ProfileError(f"refused: '..' in a path of the archive ({name!r})", source=source)
        if member.issym() or member.islnk():
            raise ProfileError(f"refused: link in the archive ({name!r} -> {member.linkname!r})", source=source)
        if member.isdir():
            continue
        if not member.isfile():
            raise ProfileError(f"refused: special file in the archive ({name!r})", source=source)
        total += member.size
        if total > MAX_UNPACKED_BYTES:
            raise ProfileError(f"refused: the archive unpacks to more than {MAX_UNPACKED_BYTES} bytes", source=source)
        if len(parts) < 2 or parts[0] != "package":
            continue  # npm tarballs put everything under package/; anything else is not the package
        yield posixpath.join(*parts[1:]), member


def _open(fileobj: IO[bytes] | None, path: Path | None, source: str) -> tarfile.TarFile:
    try:
        return tarfile.open(name=path, fileobj=fileobj, mode="r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ProfileError(f"not a readable .tgz package: {exc}", source=source) from None


def _tgz_members(path: Path) -> dict[str, bytes]:
    """The files directly under package/ in an NPM tarball, by file name."""
    files: dict[str, bytes] = {}
    source = str(path)
    try:
        with _open(None, path, source) as tar:
            for rel, member in _safe_members(tar, source):
                if "/" in rel:
                    continue
                fh = tar.extractfile(member)
                if fh is not None:
                    files[rel] = fh.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ProfileError(f"not a readable .tgz package: {exc}", source=source) from None
    return files


def load_tgz(path: Path) -> Package:
    """Load a package from an NPM .tgz (files under package/), fully in memory."""
    files = _tgz_members(Path(path))
    if "package.json" not in files:
        raise ProfileError("not a FHIR package: no package/package.json in the archive", source=str(path))
    manifest = read_manifest(files["package.json"], f"{path}!package/package.json")
    pkg_source = f"{path}!package"
    entries = []
    for name in sorted(files):
        if is_resource_file(name):
            resource = loads(files[name], f"{pkg_source}/{name}")
            if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
                entries.append(IndexEntry.of(name, resource))
    return Package.from_manifest(manifest, entries, lambda name: files[name], pkg_source)


def unpack_package(data: bytes, folder: Path, source: str) -> dict[str, object]:
    """Unpack the package/ part of a tarball (bytes) into folder; return its checked package.json.

    ``folder`` must be a fresh, empty folder of the caller's (the cache's temporary folder), so no path
    written here can already be a link.
    """
    folder = Path(folder)
    try:
        with _open(io.BytesIO(data), None, source) as tar:
            for rel, member in _safe_members(tar, source):
                fh = tar.extractfile(member)
                if fh is None:
                    continue
                target = folder.joinpath(*rel.split("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as out:
                    while chunk := fh.read(1 << 20):
                        out.write(chunk)
                target.chmod(0o644)
    except (tarfile.TarError, EOFError) as exc:
        raise ProfileError(f"not a readable .tgz package: {exc}", source=source) from None
    except OSError as exc:  # e.g. a file and a folder of the same name in one archive
        raise ProfileError(f"cannot unpack the archive: {exc.strerror or exc}", source=source) from None
    manifest_path = folder / "package.json"
    if not manifest_path.is_file():
        raise ProfileError("not a FHIR package: no package/package.json in the archive", source=source)
    return read_manifest(manifest_path.read_bytes(), f"{source}!package/package.json")
