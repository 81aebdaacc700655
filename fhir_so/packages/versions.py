"""Package references and versions: 'NAME#VERSION', version ordering, and the nearest available version.

When the exact version a package asks for is on no registry, the HL7 tools (``FilesystemPackageCacheManager
.loadFromPackageServer``) try the latest patch of the same major.minor (``MAJ.MIN.x``) and otherwise give up.
fhir-so goes one step further so that an implementation guide whose dependencies were never published at the
exact version still loads: the same major.minor first, else the highest version below, else the lowest above.
Every substitution is reported as a warning by the caller.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_SPEC_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)#(?P<version>[A-Za-z0-9][A-Za-z0-9._+-]*)$")
_LATEST = frozenset({"latest", "current", "dev", "*", ""})

VersionKey = tuple[tuple[int, int | str], ...]


def parse_spec(spec: str) -> tuple[str, str] | None:
    """Split 'name#version' into (name, version); None when spec is not of that form."""
    m = _SPEC_RE.match(spec.strip())
    return (m["name"], m["version"]) if m else None


def version_key(version: str) -> VersionKey:
    """A sort key for package versions: numeric parts compare as numbers ('1.10.0' after '1.2.0')."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.+-]", version))


def _release_key(version: str) -> tuple[VersionKey, int]:
    """Like version_key, but a pre-release ('5.3.0-ballot') sorts before its release ('5.3.0'), as in SemVer."""
    core, dash, _ = version.partition("-")
    return version_key(core), (0 if dash else 1)


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.partition("-")[0].split(".")[:2])


def match_version(wanted: str, available: Iterable[str]) -> str | None:
    """The version that satisfies a dependency exactly: the same string, 'latest'-like tags, or 'X.Y.x' wildcards."""
    versions = list(available)
    if wanted in versions:
        return wanted
    if wanted in _LATEST:
        return max(versions, key=_release_key) if versions else None
    if wanted.endswith(".x") or wanted.endswith(".*"):
        prefix = wanted[:-1]
        matching = [v for v in versions if v.startswith(prefix)]
        return max(matching, key=_release_key) if matching else None
    return None


def nearest_version(wanted: str, available: Iterable[str]) -> str | None:
    """The exact match, else the nearest: the highest of the same major.minor, else the highest below, else the lowest above."""
    versions = list(available)
    exact = match_version(wanted, versions)
    if exact is not None or not versions:
        return exact
    same = [v for v in versions if _major_minor(v) == _major_minor(wanted)]
    if same:
        return max(same, key=_release_key)
    below = [v for v in versions if _release_key(v) < _release_key(wanted)]
    if below:
        return max(below, key=_release_key)
    return min(versions, key=_release_key)
