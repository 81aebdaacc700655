"""URLs: the server's base URL, the origin credentials belong to, request paths, redaction.

Only this module decides whether a URL is on the server's origin, and it decides from the
URL *as it will be sent*: :func:`prepare` re-serialises a URL with requests' own preparation
and reads the host and port with urllib3's parser, the one the connection pool uses. Two
parsers that disagree are how credentials leak (``http://a:1\\@b:2/`` is ``b:2`` to
``urlsplit`` and ``a:1`` to urllib3), so the URL checked is the URL sent, and anything two
readers could take differently is refused outright: userinfo (``user@``), backslashes,
whitespace and control characters, scheme-relative links (``//host/...``).

Other modules ask :func:`resolve`, which answers with the URL to send and whether
credentials may go with it, or :func:`same_origin_redirect` for a redirect's target.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests
from urllib3.util import parse_url

from fhir_so.errors import InputError, UnsafeUrlError
from fhir_so.fhirtypes import is_fhir_id

__all__ = [
    "Origin",
    "check_base_url",
    "check_id",
    "check_type",
    "origin_of",
    "prepare",
    "redact_url",
    "resolve",
    "resource_path",
    "resource_type_of",
    "same_origin_redirect",
    "show_url",
]

_TYPE_RE = re.compile(r"[A-Z][A-Za-z]{1,63}")
_ABSOLUTE_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
# Characters two URL readers may take differently, or that no server should put in a link.
_AMBIGUOUS_RE = re.compile(r"[\\\x00-\x20\x7f]")
_SHOWN = 160
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
    text = base_url.strip() if isinstance(base_url, str) else ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"the server URL must be http(s)://host[:port]/path, got {show_url(str(base_url))!r}")
    if "@" in parts.netloc or parts.username or parts.password:
        raise InputError("put credentials in the auth options, not in the server URL")
    if parts.query or parts.fragment:
        raise InputError(f"the server URL must not have a query or fragment: {show_url(text)!r}")
    if _AMBIGUOUS_RE.search(text):
        raise InputError(f"the server URL has a backslash, a space or a control character: {show_url(text)!r}")
    url = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    try:
        prepare(url)
    except UnsafeUrlError as exc:
        raise InputError(f"the server URL cannot be used: {exc}") from None
    return url


def prepare(url: str) -> tuple[str, Origin]:
    """The URL exactly as requests will send it, and the origin it will connect to.

    UnsafeUrlError for anything that is not a plain absolute http(s) URL without userinfo.
    """
    if not isinstance(url, str) or _AMBIGUOUS_RE.search(url):
        raise UnsafeUrlError(f"refusing {show_url(str(url))!r}: it has a backslash, a space or a control character")
    if url.startswith("//"):
        raise UnsafeUrlError(f"refusing {show_url(url)!r}: a scheme-relative link names no server of its own")
    request = requests.PreparedRequest()
    try:
        request.prepare_url(url, None)
        parsed = parse_url(str(request.url))
    except (requests.RequestException, ValueError) as exc:
        raise UnsafeUrlError(f"refusing {show_url(url)!r}: not a usable URL ({type(exc).__name__})") from None
    scheme = (parsed.scheme or "").lower()
    if scheme not in ("http", "https") or not parsed.host:
        raise UnsafeUrlError(f"refusing {show_url(url)}: only http and https URLs are fetched")
    if parsed.auth is not None or "@" in (urlsplit(str(request.url)).netloc):
        raise UnsafeUrlError(f"refusing {show_url(url)}: a URL with user@ in it is not fetched (credentials stay in headers)")
    prepared = str(request.url)
    # What requests does to a URL it has prepared already must change nothing: the string
    # checked is the string sent.
    again = requests.PreparedRequest()
    again.prepare_url(prepared, None)
    if again.url != prepared:
        raise UnsafeUrlError(f"refusing {show_url(url)}: it does not read the same way twice")
    port = parsed.port or (443 if scheme == "https" else 80)
    return prepared, Origin(scheme, parsed.host.lower().strip("[]"), port)


def origin_of(url: str) -> Origin:
    """The origin a URL connects to (as :func:`prepare` reads it)."""
    return prepare(url)[1]


def resolve(
    base_url: str, origin: Origin, path_or_url: str, allow_foreign: bool, query: str = ""
) -> tuple[str, bool]:
    """The URL to send (with ``query`` added), and whether credentials may go with it.

    A relative path is taken under the base URL; an absolute URL must be on the server's
    origin unless ``allow_foreign`` (then it goes without credentials). Either way the
    answer comes from :func:`prepare`, so the origin compared is the one connected to.
    """
    if not isinstance(path_or_url, str):
        raise InputError(f"expected a path or URL, got {type(path_or_url).__name__}")
    if path_or_url.startswith("//"):
        raise UnsafeUrlError(f"refusing {show_url(path_or_url)!r}: a scheme-relative link names no server of its own")
    absolute = _ABSOLUTE_RE.match(path_or_url)
    if absolute and absolute.group(1).lower() not in ("http", "https"):
        raise UnsafeUrlError(f"refusing {show_url(path_or_url)}: only http and https URLs are fetched")
    if absolute:
        url = path_or_url
    else:
        path = path_or_url.lstrip("/")
        url = f"{base_url}/{path}" if path else base_url
    if query:
        url = f"{url}&{query}" if "?" in url else f"{url}?{query}"
    prepared, target = prepare(url)
    if target == origin:
        return prepared, True
    if allow_foreign and absolute:
        return prepared, False
    raise UnsafeUrlError(
        f"refusing {show_url(path_or_url)}: it is outside the server's origin {origin}, where credentials must stay"
    )


def same_origin_redirect(current: str, location: str) -> str:
    """The prepared target of a redirect from ``current``; UnsafeUrlError when it leaves its origin."""
    target, where = prepare(urljoin(current, location.strip()))
    here = prepare(current)[1]
    if where != here:
        raise UnsafeUrlError(
            f"refusing the redirect to {show_url(target)}: it leaves the origin {here}"
        )
    return target


def show_url(url: str) -> str:
    """A URL fit for a message: credentials redacted, at most 160 characters."""
    shown = redact_url(url)
    return shown if len(shown) <= _SHOWN else shown[: _SHOWN - 1] + "…"


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
    if not is_fhir_id(id):
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
