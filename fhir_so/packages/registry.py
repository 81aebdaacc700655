"""Package registries: find a FHIR package's versions by name, and download its tarball with its integrity checked.

Both registries speak the npm registry protocol: ``GET {registry}/{name}`` lists the versions, each with
``dist.tarball`` and its checksums (``dist.integrity``, an SRI ``sha512-…``, and/or ``dist.shasum``, SHA-1
hex). The registries are tried in order (``FHIR_SO_PACKAGE_REGISTRIES``, default: the FHIR package registry,
then the npm registry); one that cannot be reached is noted once and skipped for the rest of the client's
life, so a registry that is down costs one failed connection, not one per package.

Errors: a package on no registry is a :class:`~fhir_so.errors.ProfileError` (exit 2, bad spec); no registry
reachable, or a tarball that fails its checksum, is a :class:`~fhir_so.errors.ServerError` (exit 3).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from fhir_so.errors import ProfileError, ServerError, TransportError
from fhir_so.packages.versions import match_version, nearest_version

FHIR_REGISTRY = "https://packages.fhir.org"
NPM_REGISTRY = "https://registry.npmjs.org"
DEFAULT_REGISTRIES = (FHIR_REGISTRY, NPM_REGISTRY)
REGISTRIES_ENV = "FHIR_SO_PACKAGE_REGISTRIES"
# (connect, read) seconds: a registry that does not answer must not hold up the fallback.
DEFAULT_TIMEOUT = (5.0, 60.0)
MAX_TARBALL_BYTES = 1024**3
# npm's abbreviated metadata: versions with dist and dependencies only (a fraction of the full document).
_ACCEPT = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8"


def registries_from_env(env: Mapping[str, str]) -> list[str]:
    """The registry list from $FHIR_SO_PACKAGE_REGISTRIES (comma or space separated), else the default."""
    raw = env.get(REGISTRIES_ENV, "")
    found = [r.strip().rstrip("/") for r in raw.replace(",", " ").split() if r.strip()]
    return found or list(DEFAULT_REGISTRIES)


@dataclass(frozen=True)
class Release:
    """One version of a package as a registry lists it."""

    name: str
    version: str
    registry: str
    tarball: str
    integrity: str | None = None
    shasum: str | None = None
    dependencies: dict[str, str] = field(default_factory=dict)

    @property
    def spec(self) -> str:
        """'name#version'."""
        return f"{self.name}#{self.version}"


class RegistryClient:
    """Looks packages up on an ordered list of registries and downloads them; one HTTP session, closed with the client."""

    def __init__(
        self,
        registries: Sequence[str] = DEFAULT_REGISTRIES,
        *,
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        on_note: Callable[[str], None] | None = None,
    ) -> None:
        self.registries = [r.rstrip("/") for r in registries]
        for url in self.registries:
            if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
                raise ProfileError(f"not a registry URL (expected http(s)://host[/path]): {url!r}", source=REGISTRIES_ENV)
        if not self.registries:
            raise ProfileError("no package registry configured", source=REGISTRIES_ENV)
        self._own_session = session is None
        self.session = session if session is not None else requests.Session()
        self.timeout = timeout
        self.notes: list[str] = []
        self._on_note = on_note
        self._unreachable: set[str] = set()
        self._listings: dict[tuple[str, str], dict[str, Release] | None] = {}

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session (only when this client made it)."""
        if self._own_session:
            self.session.close()

    @property
    def unreachable(self) -> list[str]:
        """The registries that could not be reached so far (skipped from then on)."""
        return [r for r in self.registries if r in self._unreachable]

    def consulted(self) -> str:
        """Which registries a 'not found' covers, for messages: the ones that answered, and the ones that did not."""
        answered = [r for r in self.registries if r not in self._unreachable]
        text = ", ".join(answered)
        if self._unreachable:
            text += f"; not reachable: {', '.join(self.unreachable)}"
        return text

    def _note(self, message: str) -> None:
        self.notes.append(message)
        if self._on_note is not None:
            self._on_note(message)

    # --- looking up ----------------------------------------------------------------------------

    def _listing(self, registry: str, name: str) -> dict[str, Release] | None:
        """The versions of a package on one registry; None when that registry cannot tell (down, broken answer)."""
        key = (registry, name)
        if key in self._listings:
            return self._listings[key]
        listing: dict[str, Release] | None = None
        if registry not in self._unreachable:
            listing = self._fetch_listing(registry, name)
        self._listings[key] = listing
        return listing

    def _fetch_listing(self, registry: str, name: str) -> dict[str, Release] | None:
        url = f"{registry}/{quote(name, safe='@')}"
        try:
            resp = self.session.get(url, headers={"Accept": _ACCEPT}, timeout=self.timeout)
        except requests.RequestException as exc:
            self._unreachable.add(registry)
            self._note(f"package registry {registry} is not reachable ({type(exc).__name__}); trying the next one")
            return None
        if resp.status_code == 404:
            return {}
        if resp.status_code != 200:
            self._note(f"package registry {registry} answered {resp.status_code} for {name}; trying the next one")
            return None
        try:
            doc = resp.json()
        except ValueError:
            self._note(f"package registry {registry} sent an unreadable answer for {name}; trying the next one")
            return None
        return _releases(doc, registry, name)

    def resolve(self, name: str, version: str) -> tuple[Release, bool] | None:
        """The release to install for name#version, and whether it is a substitute (another version).

        The exact version (or 'latest', 'X.Y.x') from the first registry that has it; else the nearest version
        over all registries (see :func:`~fhir_so.packages.versions.nearest_version`); None when no registry
        knows the package at all. Raises TransportError when no registry could be asked.
        """
        merged: dict[str, Release] = {}
        answered = False
        for registry in self.registries:
            listing = self._listing(registry, name)
            if listing is None:
                continue
            answered = True
            for v, release in listing.items():
                merged.setdefault(v, release)
            exact = match_version(version, listing)
            if exact is not None:
                return listing[exact], False
        if not answered:
            raise TransportError(
                f"cannot look up package {name}#{version}: no package registry answered ({', '.join(self.registries)})"
            )
        chosen = nearest_version(version, merged)
        if chosen is None:
            return None
        return merged[chosen], chosen != version

    # --- downloading ---------------------------------------------------------------------------

    def download(self, release: Release) -> bytes:
        """The release's tarball, its integrity checked against the registry's checksums."""
        if urlsplit(release.tarball).scheme not in ("http", "https"):
            raise ServerError(f"package {release.spec}: registry {release.registry} gave a tarball URL that is not http(s)")
        try:
            with self.session.get(release.tarball, timeout=self.timeout, stream=True) as resp:
                if resp.status_code != 200:
                    raise ServerError(f"package {release.spec}: downloading {release.tarball} failed with HTTP {resp.status_code}")
                chunks = []
                size = 0
                for chunk in resp.iter_content(1 << 20):
                    size += len(chunk)
                    if size > MAX_TARBALL_BYTES:
                        raise ServerError(f"package {release.spec}: the tarball is larger than {MAX_TARBALL_BYTES} bytes")
                    chunks.append(chunk)
        except requests.RequestException as exc:
            raise TransportError(f"package {release.spec}: downloading {release.tarball} failed ({type(exc).__name__})") from None
        data = b"".join(chunks)
        check_integrity(release, data)
        if release.integrity is None and release.shasum is None:
            self._note(f"package {release.spec}: registry {release.registry} lists no checksum; installed unchecked")
        return data


def _releases(doc: Any, registry: str, name: str) -> dict[str, Release]:
    versions = doc.get("versions") if isinstance(doc, dict) else None
    if not isinstance(versions, dict):
        return {}
    out: dict[str, Release] = {}
    for version, meta in versions.items():
        if not isinstance(version, str) or not isinstance(meta, dict):
            continue
        dist: dict[str, Any] = meta["dist"] if isinstance(meta.get("dist"), dict) else {}
        deps: dict[str, Any] = meta["dependencies"] if isinstance(meta.get("dependencies"), dict) else {}
        tarball = dist.get("tarball")
        if not isinstance(tarball, str):
            tarball = f"{registry}/{quote(name, safe='@')}/{quote(version)}"  # the FHIR registry's own URL scheme
        out[version] = Release(
            name=name,
            version=version,
            registry=registry,
            tarball=tarball,
            integrity=dist.get("integrity") if isinstance(dist.get("integrity"), str) else None,
            shasum=dist.get("shasum") if isinstance(dist.get("shasum"), str) else None,
            dependencies={k: v for k, v in deps.items() if isinstance(k, str) and isinstance(v, str)},
        )
    return out


def check_integrity(release: Release, data: bytes) -> None:
    """Raise ServerError when the tarball does not match the registry's SRI integrity or SHA-1 shasum."""
    if release.integrity:
        # SRI: space-separated "algo-base64" options; any supported one that matches is enough (W3C SRI)
        options = [o.partition("-") for o in release.integrity.split()]
        supported = [(algo, digest) for algo, _, digest in options if algo in ("sha512", "sha384", "sha256", "sha1")]
        if supported:
            if not any(base64.b64encode(hashlib.new(algo, data).digest()).decode() == digest for algo, digest in supported):
                raise ServerError(
                    f"package {release.spec}: the tarball from {release.registry} does not match its integrity "
                    f"{supported[0][0]} checksum (corrupted or tampered download); nothing was installed"
                )
            return
    if release.shasum and hashlib.sha1(data).hexdigest() != release.shasum.lower():
        raise ServerError(
            f"package {release.spec}: the tarball from {release.registry} does not match its SHA-1 shasum "
            "(corrupted or tampered download); nothing was installed"
        )
