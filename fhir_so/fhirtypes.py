"""The FHIR R4 id and reference forms and a server's base URL, written once for every layer that checks them.

``id``: 1 to 64 of ``A-Z a-z 0-9 - .`` (FHIR R4 datatypes, ``id``). A case id, a record's key
in a case, a server id read from a Location header, a ``Type/id`` reference: all are checked
against :data:`FHIR_ID`, so a value that passes here can be part of a URL without escaping.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from fhir_so.errors import InputError

__all__ = ["FHIR_ID", "FHIR_ID_RE", "RESOURCE_REF_RE", "check_base_url", "is_fhir_id"]

#: The character class and length of a FHIR id, without anchors (to compose larger patterns).
FHIR_ID = r"[A-Za-z0-9\-.]{1,64}"
FHIR_ID_RE = re.compile(FHIR_ID)
#: ``Type/id`` or ``Type/id/_history/vid`` at the end of a reference or Location (absolute or relative);
#: groups: type, id, version. (A Location header may end in '/': strip it first.)
RESOURCE_REF_RE = re.compile(rf"(?:^|/)([A-Z][A-Za-z]+)/({FHIR_ID})(?:/_history/({FHIR_ID}))?$")


def is_fhir_id(value: object) -> bool:
    """True when ``value`` is a string of FHIR id form."""
    return isinstance(value, str) and FHIR_ID_RE.fullmatch(value) is not None


def check_base_url(base_url: str) -> str:
    """A FHIR server's base URL in canonical form (no trailing slash); InputError (exit 2) when unusable.

    http(s) with a host, no credentials (they belong in the auth options), no query or fragment.
    The message never repeats a URL that may carry a secret (user:password, a token parameter).
    """
    parts = urlsplit(base_url.strip())
    if parts.username or parts.password:
        raise InputError("put credentials in the auth options, not in the server URL")
    if parts.query or parts.fragment:
        shown = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        raise InputError(f"the server URL must not have a query or fragment: {shown!r}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"the server URL must be http(s)://host[:port]/path, got {base_url!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
