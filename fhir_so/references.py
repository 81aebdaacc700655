"""Finding, rewriting and resolving the ``reference`` strings inside FHIR JSON.

Bundle checks, pulls, transfers and the client's batch fallback all walk resources for
their references; they share these functions. :class:`BundleIndex` is the one index of a
Bundle's resources: parsing a case (:mod:`fhir_so.mapping.graph`) and the validator resolve
references through it, so both agree on what a reference inside a Bundle points to.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fhir_so.fhirtypes import RESOURCE_REF_RE

Resource = dict[str, Any]


def iter_references(value: Any, where: str = "", *, skip_contained: bool = False) -> Iterator[tuple[str, str]]:
    """Every ``reference`` string under ``value``, with its location below ``where``.

    ``skip_contained`` leaves out contained resources, whose references may be local (``#id``).
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                yield item, f"{where}.reference"
            elif not (skip_contained and key == "contained"):
                yield from iter_references(item, f"{where}.{key}", skip_contained=skip_contained)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from iter_references(item, f"{where}[{i}]", skip_contained=skip_contained)


def rewrite_references(value: Any, mapping: Mapping[str, str]) -> Any:
    """A copy of ``value`` whose ``reference`` strings found in ``mapping`` are replaced."""
    if isinstance(value, dict):
        return {k: (mapping.get(v, v) if k == "reference" and isinstance(v, str) else rewrite_references(v, mapping)) for k, v in value.items()}
    if isinstance(value, list):
        return [rewrite_references(v, mapping) for v in value]
    return value


@dataclass(frozen=True)
class Entry:
    """One resource of a Bundle and where it stands in the input (a FHIRPath-like location)."""

    resource: Resource
    where: str
    full_url: str | None = None


class BundleIndex:
    """A Bundle's resources by every name a reference may use for them.

    The names of an entry: its ``fullUrl``; for an absolute ``http(s)`` fullUrl also its
    ``Type/id`` tail (a relative reference resolves against the entry's base, FHIR R4
    Bundle 2.36.4.1); and ``Type/id`` of the resource. The first entry to claim a name keeps it.
    """

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self._by_name: dict[str, Entry] = {}
        #: ``Type/id`` names held by more than one entry: a relative reference to one is ambiguous
        self.ambiguous: set[str] = set()
        for entry in entries:
            for name in _names(entry):
                held = self._by_name.setdefault(name, entry)
                if held is not entry and held.resource is not entry.resource and not name.startswith(("urn:", "http://", "https://")):
                    self.ambiguous.add(name)

    @classmethod
    def of(cls, bundle: Mapping[str, Any], where: str = "Bundle") -> BundleIndex:
        """The index of a Bundle as it is: entries without a resource object are left out."""
        entries = bundle.get("entry")
        found = []
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                full = entry.get("fullUrl")
                found.append(Entry(entry["resource"], f"{where}.entry[{i}].resource", full if isinstance(full, str) else None))
        return cls(found)

    def of_type(self, resource_type: str) -> Iterator[Entry]:
        """The entries holding a resource of this type, in Bundle order."""
        return (e for e in self.entries if e.resource.get("resourceType") == resource_type)

    def find(self, ref: Any) -> Entry | None:
        """The entry a reference (a string or a Reference object) points to, or None.

        Exact names first; then, for anything but ``urn:``, the ``Type/id`` at the end of the
        reference with any ``/_history/vid`` dropped (``http://x/fhir/Patient/1/_history/2``).
        """
        if isinstance(ref, dict):
            ref = ref.get("reference")
        if not isinstance(ref, str):
            return None
        hit = self._by_name.get(ref)
        if hit is None and not ref.startswith("urn:"):
            m = RESOURCE_REF_RE.search(ref)
            if m:
                hit = self._by_name.get(f"{m.group(1)}/{m.group(2)}")
        return hit


def _names(entry: Entry) -> list[str]:
    names = []
    if entry.full_url:
        names.append(entry.full_url)
        if entry.full_url.startswith(("http://", "https://")):
            m = RESOURCE_REF_RE.search(entry.full_url)
            if m:
                names.append(f"{m.group(1)}/{m.group(2)}")
    rtype, rid = entry.resource.get("resourceType"), entry.resource.get("id")
    if isinstance(rtype, str) and isinstance(rid, str):
        names.append(f"{rtype}/{rid}")
    return names
