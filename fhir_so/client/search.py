"""Search: an immutable, lazy query, and the paging that follows a searchset's ``next`` links.

Paging ends with a :class:`ServerError` when a ``next`` link leads to a page seen before in
the same search (a loop, however long its cycle) or when a search passes its page cap
(:data:`MAX_PAGES` unless :meth:`Search.page_limit` says otherwise); a ``next`` link off
the server's origin, with userinfo, a backslash or no scheme is refused by the client
(:class:`UnsafeUrlError`) before anything is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeAlias
from urllib.parse import urlencode

from fhir_so.client.results import FhirResponse, SearchEntry, expect_bundle
from fhir_so.errors import ServerError

__all__ = ["MAX_PAGES", "ParamValue", "Params", "Search", "follow_pages", "merge_params"]

MAX_PAGES = 1000

ParamValue: TypeAlias = str | int | float | bool | Sequence[str | int | float | bool]
Params: TypeAlias = Mapping[str, ParamValue] | Sequence[tuple[str, str]]


class Requester(Protocol):
    """What a search needs of the client: one GET through its transport."""

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> FhirResponse: ...


def _param_text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def merge_params(
    base: tuple[tuple[str, str], ...], params: Params | None, kwargs: Mapping[str, ParamValue]
) -> tuple[tuple[str, str], ...]:
    """Search parameters as (name, value) pairs; a list value repeats the name (AND)."""
    pairs = list(base)
    items: Iterable[tuple[str, Any]]
    if params is None:
        items = ()
    elif isinstance(params, Mapping):
        items = params.items()
    else:
        items = params
    for name, value in [*items, *kwargs.items()]:
        if isinstance(value, (list, tuple)):
            pairs.extend((name, _param_text(v)) for v in value)
        else:
            pairs.append((name, _param_text(value)))
    return tuple(pairs)


def show(answer: FhirResponse) -> str:
    """The request of an answer, for a message (the URL is redacted already; keep it short)."""
    url = answer.url if len(answer.url) <= 200 else answer.url[:199] + "…"
    return f"{answer.method} {url}"


def follow_pages(
    client: Requester, answer: FhirResponse, bundle_type: str, headers: Mapping[str, str], max_pages: int = MAX_PAGES
) -> Iterator[dict[str, Any]]:
    """The Bundle of ``answer`` and each page after it, following ``next`` links lazily.

    One paging for searches and histories: a ``next`` link back to a page seen before (a loop)
    or past ``max_pages`` ends it with a ServerError; the client refuses an unsafe link.
    """
    seen = {answer.url}
    fetched = 1
    while True:
        page = expect_bundle(answer, bundle_type)
        next_url = next_link(page)
        yield page
        if next_url is None:
            return
        del page
        if next_url in seen:
            raise ServerError(f"{show(answer)}: the server's next link leads back to a page of this search (a paging loop)")
        if fetched >= max_pages:
            raise ServerError(f"{show(answer)}: the search passed its limit of {max_pages} pages; narrow it or raise page_limit()")
        seen.add(next_url)
        answer = client.request("GET", next_url, headers=headers)
        if answer.url in seen and answer.url != next_url:
            raise ServerError(f"{show(answer)}: the server's next link leads back to a page of this search (a paging loop)")
        seen.add(answer.url)
        fetched += 1


def next_link(bundle: Mapping[str, Any]) -> str | None:
    """The URL of a searchset's ``next`` link, if any."""
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


class Search:
    """An immutable, lazy FHIR search. Each method returns a new Search; nothing is sent
    until it is iterated, and pages are fetched one at a time as iteration reaches them.

    Iterating yields the matched resources; :meth:`entries` also yields ``_include``-d ones
    with their search mode; :meth:`pages` yields each Bundle.
    """

    __slots__ = ("_client", "resource_type", "params", "headers", "max_pages")

    def __init__(
        self,
        client: Requester,
        resource_type: str,
        params: tuple[tuple[str, str], ...],
        headers: tuple[tuple[str, str], ...] = (),
        max_pages: int = MAX_PAGES,
    ) -> None:
        self._client = client
        self.resource_type = resource_type
        self.params = params
        self.headers = headers
        self.max_pages = max_pages

    def __repr__(self) -> str:
        return f"Search({self.resource_type!r}, {urlencode(self.params)!r})"

    def _with(self, params: tuple[tuple[str, str], ...]) -> Search:
        return Search(self._client, self.resource_type, params, self.headers, self.max_pages)

    def where(self, params: Params | None = None, /, **kwargs: ParamValue) -> Search:
        """Add search parameters (ANDed with the ones already there)."""
        return self._with(merge_params(self.params, params, kwargs))

    def include(self, *targets: str, reverse: bool = False, iterate: bool = False) -> Search:
        """``_include`` (or ``_revinclude`` with ``reverse``), e.g. ``"ServiceRequest:subject"``."""
        name = "_revinclude" if reverse else "_include"
        if iterate:
            name += ":iterate"
        return self._with(self.params + tuple((name, t) for t in targets))

    def sort(self, *keys: str) -> Search:
        """``_sort`` (replacing any earlier one); prefix a key with ``-`` for descending."""
        return self._replace("_sort", ",".join(keys))

    def page_size(self, count: int) -> Search:
        """``_count`` (replacing any earlier one): matches per page; the server may cap it."""
        return self._replace("_count", str(count))

    def with_headers(self, headers: Mapping[str, str]) -> Search:
        """Send these headers (``X-Request-Id``, ``Prefer``, ...) with every request of this search.

        They add to the client's defaults and replace a header of the same name; credentials
        stay the client's business (an ``Authorization`` given here is replaced by the client's).
        """
        names = {k.lower() for k in headers}
        kept = tuple((k, v) for k, v in self.headers if k.lower() not in names)
        return Search(self._client, self.resource_type, self.params, kept + tuple(headers.items()), self.max_pages)

    def page_limit(self, pages: int) -> Search:
        """End the search with an error after this many pages (default :data:`MAX_PAGES`)."""
        if not isinstance(pages, int) or pages < 1:
            raise ValueError("a page limit is a positive number of pages")
        return Search(self._client, self.resource_type, self.params, self.headers, pages)

    def _replace(self, name: str, value: str) -> Search:
        kept = tuple(p for p in self.params if p[0] != name)
        return self._with(kept + ((name, value),))

    def pages(self) -> Iterator[dict[str, Any]]:
        """Each searchset Bundle, following ``next`` links (same origin only) lazily."""
        headers = dict(self.headers)
        answer = self._client.request("GET", self.resource_type, params=self.params, headers=headers)
        yield from follow_pages(self._client, answer, "searchset", headers, self.max_pages)

    def entries(self) -> Iterator[SearchEntry]:
        """Every entry of every page with its ``search.mode`` (match, include, outcome)."""
        for page in self.pages():
            for entry in page.get("entry") or []:
                resource = entry.get("resource")
                if isinstance(resource, dict):
                    mode = (entry.get("search") or {}).get("mode") or "match"
                    yield SearchEntry(resource, mode, entry.get("fullUrl"))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (e.resource for e in self.entries() if e.mode == "match")

    def first(self) -> dict[str, Any] | None:
        """The first match, or None (asks for one result)."""
        return next(iter(self.page_size(1)), None)

    def count(self) -> int:
        """The number of matches, from ``_summary=count`` (no resources are fetched)."""
        answer = self._client.request(
            "GET", self.resource_type, params=self.params + (("_summary", "count"),), headers=dict(self.headers)
        )
        total = expect_bundle(answer, "searchset").get("total")
        if not isinstance(total, int):
            raise ServerError(f"GET {answer.url}: the server did not report a total")
        return total
