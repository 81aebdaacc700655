"""Helpers for the package-cache tests: tiny packages written on the fly."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def write_package(folder: Path, name: str, version: str, resources: list[dict[str, Any]], dependencies: dict[str, str] | None = None) -> Path:
    """A package folder (folder/package/...) with the given resources; returns folder."""
    pkg = folder / "package"
    pkg.mkdir(parents=True, exist_ok=True)
    manifest = {"name": name, "version": version, "fhirVersions": ["4.0.1"], "dependencies": dependencies or {}}
    (pkg / "package.json").write_text(json.dumps(manifest), encoding="utf-8")
    for r in resources:
        (pkg / f"{r['resourceType']}-{r['id']}.json").write_text(json.dumps(r), encoding="utf-8")
    return folder


def make_tgz(folder: Path, target: Path) -> Path:
    """An NPM tarball of a package folder made by write_package."""
    with tarfile.open(target, "w:gz") as tar:
        tar.add(folder / "package", arcname="package")
    return target


def value_set(vid: str, url: str, version: str | None = None) -> dict[str, Any]:
    vs: dict[str, Any] = {"resourceType": "ValueSet", "id": vid, "url": url, "status": "active"}
    if version:
        vs["version"] = version
    return vs
