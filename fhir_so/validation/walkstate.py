"""What one resource walk carries along: its findings, the resource and its root, the Bundle index.

Its own module so that the element walker (:mod:`profile`) and the slice matcher (:mod:`slicing`)
share it without importing each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fhir_so.validation.findings import Issue
from fhir_so.validation.primitives import as_list

_REF_TYPE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?$")


@dataclass(slots=True)
class BundleIndex:
    """A Bundle's entries by fullUrl (and by ``Type/id``), to resolve references inside it."""

    by_url: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``Type/id`` held by more than one entry: a relative reference to it is ambiguous
    ambiguous: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, bundle: dict[str, Any]) -> "BundleIndex":
        index = cls()
        for entry in as_list(bundle.get("entry"), []):
            if not isinstance(entry, dict):
                continue
            res = entry.get("resource")
            if not isinstance(res, dict):
                continue
            full = entry.get("fullUrl")
            if isinstance(full, str):
                index.by_url[full] = res
            rt, rid = res.get("resourceType"), res.get("id")
            if isinstance(rt, str) and isinstance(rid, str):
                key = f"{rt}/{rid}"
                if key in index.by_url and index.by_url[key] is not res:
                    index.ambiguous.add(key)
                index.by_url.setdefault(key, res)
        return index

    def resolve(self, ref: str) -> dict[str, Any] | None:
        """The entry resource a reference points to, if it is in the Bundle."""
        hit = self.by_url.get(ref)
        if hit is None and not ref.startswith("urn:"):
            m = _REF_TYPE.search(ref)
            if m:
                hit = self.by_url.get(ref[m.start():].lstrip("/").split("/_history/")[0])
        return hit


@dataclass(slots=True)
class WalkState:
    """State of one resource walk (shared by the element walker and the slice matcher)."""

    sink: list[Issue]
    resource: dict[str, Any]
    root: dict[str, Any]
    bundle: BundleIndex | None
    contained: dict[str, str]
    #: invariants to evaluate once the resource is walked: (constraints, stripped value, type path, location)
    pending: list[tuple[Any, Any, str, str]] = field(default_factory=list)
    stripped: bool = False
    #: where the extensions being walked sit: (element path, type code, url of a parent extension)
    ext_parent: tuple[str, str, str | None] = ("", "", None)
    #: set by a primitive's ``_x``: the primitive element, which the Element walk would not know
    primitive_parent: tuple[str, str, str | None] | None = None
