"""What one resource walk carries along: its findings, the resource and its root, the Bundle index
(the one index of :mod:`fhir_so.references`).

Its own module so that the element walker (:mod:`profile`) and the slice matcher (:mod:`slicing`)
share it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_so.references import BundleIndex
from fhir_so.validation.findings import Issue



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
