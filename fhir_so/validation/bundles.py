"""Rules of a Bundle that no invariant of core R4 states, checked as the HL7 validator does.

- ``fullUrl`` is an absolute URL (with a scheme: ``urn:uuid:...``, ``http(s)://...``), never ``Patient/1``;
- a resource's ``fullUrl`` that is a RESTful URL ends with the resource's type and id;
- each ``link`` relation in (``self``, ``first``, ``previous``/``prev``, ``next``, ``last``) occurs once.

Each finding names the entry or link at fault.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from fhir_so.validation.findings import INVALID, STRUCTURE, Issue

# a scheme first: http(s)://..., urn:uuid:..., or SMART Health Cards' resource:0
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+$")
_ONCE = ("self", "first", "previous", "prev", "next", "last")


def bundle_issues(bundle: dict[str, Any], loc: str) -> Iterator[Issue]:
    """The Bundle-level findings of one Bundle at ``loc``."""
    entries = bundle.get("entry")
    if isinstance(entries, list):
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            full = entry.get("fullUrl")
            if not isinstance(full, str):
                continue
            at = f"{loc}.entry[{i}]"
            if not _ABSOLUTE.match(full):
                yield Issue("error", INVALID, at, f"the fullUrl must be an absolute URL (not {full!r})", "bundle-fullurl")
                continue
            res = entry.get("resource")
            if full.startswith("http") and isinstance(res, dict):
                rt, rid = res.get("resourceType"), res.get("id")
                tail = full.split("/_history/")[0].rstrip("/")
                if isinstance(rt, str) and isinstance(rid, str) and "/" + rt + "/" in tail and not tail.endswith(f"/{rt}/{rid}"):
                    yield Issue("error", INVALID, at, f"the fullUrl {full!r} does not match the resource's type and id ({rt}/{rid})", "bundle-fullurl")
    links = bundle.get("link")
    if isinstance(links, list):
        seen: set[str] = set()
        for i, link in enumerate(links):
            rel = link.get("relation") if isinstance(link, dict) else None
            if isinstance(rel, str) and rel in _ONCE:
                if rel in seen:
                    yield Issue("error", STRUCTURE, f"{loc}.link[{i}]", f"the link relation {rel!r} can only occur once", "bundle-link")
                seen.add(rel)
