"""A package on disk: load a package folder through its standard ``.index.json``, rebuilt when missing or stale.

Loading is cheap: the index lists filename, resourceType, id, url, version, kind, type per file, so a
resource file is parsed only when first asked for. Loading core R4 thus reads two small files, not 4,400.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from fhir_so.errors import InputError, ProfileError
from fhir_so.jsonio import write_atomic
from fhir_so.packages.model import IndexEntry, Package, entries_from_rows, is_resource_file, loads, read_manifest

INDEX_FILE = ".index.json"


def build_index(folder: Path, source: str) -> list[IndexEntry]:
    """Parse every resource file of a package folder into index entries (slow path: reads all files)."""
    entries = []
    for name in sorted(os.listdir(folder)):
        if not is_resource_file(name):
            continue
        path = folder / name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ProfileError(f"cannot read: {exc.strerror or exc}", source=f"{source}/{name}") from None
        resource = loads(data, f"{source}/{name}")
        if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
            entries.append(IndexEntry.of(name, resource))
    return entries


def write_index(folder: Path, entries: Sequence[IndexEntry]) -> None:
    """Write the standard .index.json of a package folder."""
    doc = {"index-version": 2, "files": [e.as_json() for e in entries]}
    write_atomic(folder / INDEX_FILE, orjson.dumps(doc))
    (folder / INDEX_FILE).chmod(0o644)


def _entries_from_index(doc: Any) -> list[IndexEntry] | None:
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        return None
    return entries_from_rows(doc["files"])


def _folder_entries(folder: Path, source: str) -> list[IndexEntry]:
    """The folder's index, from .index.json when it lists exactly the folder's resource files; else rebuilt (and saved)."""
    names = set(os.listdir(folder))
    if INDEX_FILE in names:
        try:
            entries = _entries_from_index(orjson.loads((folder / INDEX_FILE).read_bytes()))
        except (OSError, orjson.JSONDecodeError):
            entries = None
        if entries is not None:
            listed = {e.filename for e in entries}
            # stale when it lists a file that is gone, or misses a resource file that is there
            if listed <= names and not any(is_resource_file(n) for n in names - listed):
                return entries
    entries = build_index(folder, source)
    try:
        write_index(folder, entries)
    except InputError:
        pass  # a read-only cache still works, only slower
    return entries


def load_folder(folder: Path) -> Package:
    """Load a package from a folder holding package.json (the folder itself or its package/ subfolder)."""
    folder = Path(folder)
    if not (folder / "package.json").is_file() and (folder / "package" / "package.json").is_file():
        folder = folder / "package"
    manifest_path = folder / "package.json"
    if not folder.is_dir():
        raise ProfileError("no such package folder", source=str(folder))
    if not manifest_path.is_file():
        raise ProfileError("not a FHIR package: no package.json", source=str(folder))
    try:
        manifest = read_manifest(manifest_path.read_bytes(), str(manifest_path))
    except OSError as exc:
        raise ProfileError(f"cannot read: {exc.strerror or exc}", source=str(manifest_path)) from None
    entries = _folder_entries(folder, str(folder))
    return Package.from_manifest(manifest, entries, lambda name: (folder / name).read_bytes(), str(folder), path=folder)
