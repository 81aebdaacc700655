"""URLs: the server's base URL, the origin credentials belong to, request paths, redaction.

Only this module decides whether a URL is on the server's origin. Other modules ask
:func:`resolve`, which answers with the URL to send and whether credentials may go with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fhir_so.errors import InputError, UnsafeUrlError

__all__ = ["Origin", "check_base_url", "check_id", "check_type", "origin_of", "redact_url", "resolve", "resource_path", "resource_type_of"]

_TYPE_RE = re.compile(r"[A-Z][A-Za-z]{1,63}")
_ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_ABSOLUTE_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")
SECRET_PARAMS = frozenset(
    {"access_token", "token", "password", "client_secret", "client_assertion", "code", "key", "api_key", "apikey"}
)


class Origin(NamedTuple):
    """Scheme, host and port: where credentials may be sent."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def check_base_url(base_url: str) -> str:
    """The server URL without a trailing slash; InputError when it cannot be a FHIR base."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"the server URL must be http(s)://host[:port]/path, got {redact_url(base_url)!r}")
    if parts.username or parts.password:
        raise InputError("put credentials in the auth options, not in the server URL")
    if parts.query or parts.fragment:
        raise InputError(f"the server URL must not have a query or fragment: {redact_url(base_url)!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def origin_of(url: str) -> Origin:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return Origin(scheme, (parts.hostname or "").lower(), port or (443 if scheme == "https" else 80))


def resolve(base_url: str, origin: Origin, path_or_url: str, allow_foreign: bool) -> tuple[str, bool]:
    """An absolute URL, and whether credentials may go with it."""
    absolute = _ABSOLUTE_RE.match(path_or_url)
    if not absolute:
        path = path_or_url.lstrip("/")
        return (f"{base_url}/{path}" if path else base_url), True
    if absolute.group(1).lower() not in ("http", "https"):
        raise UnsafeUrlError(f"refusing {redact_url(path_or_url)}: only http and https URLs are fetched")
    if origin_of(path_or_url) == origin:
        return path_or_url, True
    if allow_foreign:
        return path_or_url, False
    raise UnsafeUrlError(
        f"refusing {redact_url(path_or_url)}: it is outside the server's origin {origin}, where credentials must stay"
    )


def redact_url(url: str) -> str:
    """The URL without user:password and without the values of credential-like parameters."""
    if "@" not in url and "?" not in url:
        return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        query = parts.query
        if query and any(k.lower() in SECRET_PARAMS for k, _ in parse_qsl(query, keep_blank_values=True)):
            query = urlencode(
                [(k, "***" if k.lower() in SECRET_PARAMS else v) for k, v in parse_qsl(query, keep_blank_values=True)]
            )
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "(unparsable URL)"


def check_type(resource_type: str) -> str:
    """The resource type, or InputError when it is not one."""
    if not isinstance(resource_type, str) or not _TYPE_RE.fullmatch(resource_type):
        raise InputError(f"not a FHIR resource type: {resource_type!r}")
    return resource_type


def check_id(id: str) -> str:
    """The id, or InputError when it is not a FHIR id."""
    if not isinstance(id, str) or not _ID_RE.fullmatch(id):
        raise InputError(f"not a FHIR id (1-64 of A-Z a-z 0-9 - .): {id!r}")
    return id


def resource_path(resource_type: str, *rest: str) -> str:
    """``Type/id/...`` with the type and id checked (an operation ``$name`` takes an id's place)."""
    check_type(resource_type)
    if rest and not rest[0].startswith("$"):
        check_id(rest[0])
    return "/".join((resource_type, *rest))


def resource_type_of(resource: Any) -> str:
    """The checked resourceType of a resource given to create or update."""
    if not isinstance(resource, Mapping):
        raise InputError(f"expected a FHIR resource (a JSON object), got {type(resource).__name__}")
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        raise InputError("the resource has no resourceType", location="resourceType")
    return check_type(resource_type)
