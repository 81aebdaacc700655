"""The FHIR R4 id and reference forms, written once for every layer that checks them (the server URL rule
is the client's: :func:`fhir_so.client.urls.check_base_url`, with the parser that sends).

``id``: 1 to 64 of ``A-Z a-z 0-9 - .`` (FHIR R4 datatypes, ``id``). A case id, a record's key
in a case, a server id read from a Location header, a ``Type/id`` reference: all are checked
against :data:`FHIR_ID`, so a value that passes here can be part of a URL without escaping.
"""

from __future__ import annotations

import re

__all__ = ["FHIR_ID", "FHIR_ID_RE", "RESOURCE_REF_RE", "is_fhir_id"]

#: The character class and length of a FHIR id, without anchors (to compose larger patterns).
FHIR_ID = r"[A-Za-z0-9\-.]{1,64}"
FHIR_ID_RE = re.compile(FHIR_ID)
#: ``Type/id`` or ``Type/id/_history/vid`` at the end of a reference or Location (absolute or relative);
#: groups: type, id, version. (A Location header may end in '/': strip it first.)
RESOURCE_REF_RE = re.compile(rf"(?:^|/)([A-Z][A-Za-z]+)/({FHIR_ID})(?:/_history/({FHIR_ID}))?$")


def is_fhir_id(value: object) -> bool:
    """True when ``value`` is a string of FHIR id form."""
    return isinstance(value, str) and FHIR_ID_RE.fullmatch(value) is not None
