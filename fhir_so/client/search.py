"""Search: an immutable, lazy query, and the paging that follows a searchset's ``next`` links.

Fresh answers: a search asks for one by default (``Cache-Control: no-cache``), because every
search fhir-so makes decides something (is the case there, which consents are active, what a
re-run still has to do) and often follows a write. A stock HAPI reuses a search's results for
60 s unless asked not to; when it does, it says so (``X-Cache: HIT from <base>``) and hands back
the first search's Bundle (same ``Bundle.id``, the search's UUID, an older ``meta.lastUpdated``).
:class:`Freshness` reads those signs on the first page of a fresh search: ``X-Cache: HIT``,
an HTTP ``Age`` over 0 (a cache in between), or the ``Bundle.id`` and ``meta.lastUpdated`` of
an earlier first page of the same search. A stale first page is asked for once more; stale again, the search ends with a
:class:`ServerError` rather than a decision taken on an old answer. :meth:`Search.cached` opts
out where an old answer does no harm (a progress bar's total).

Pages: the server decides their size (it may cap ``_count``); the client follows ``next``
links whatever their form (HAPI ``_getpages``, Microsoft ``ct``, Blaze ``__t``, ``_offset``,
``page``) and never counts on a size or a ``total``.

Paging ends with a :class:`ServerError` when a ``next`` link leads to a page seen before in
the same search (a loop, however long its cycle) or when a search passes its page cap
(:data:`MAX_PAGES` unless :meth:`Search.page_limit` says otherwise); a ``next`` link off
the server's origin, with userinfo, a backslash or no scheme is refused by the client
(:class:`UnsafeUrlError`) before anything is sent.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeAlias
from urllib.parse import urlencode, urljoin

from fhir_so.client.results import FhirResponse, SearchEntry, expect_bundle
from fhir_so.errors import ServerError

__all__ = ["Freshness", "MAX_PAGES", "NO_CACHE", "ParamValue", "Params", "Search", "follow_pages", "merge_params"]

MAX_PAGES = 1000
#: What a fresh search sends: RFC 9111 ``no-cache``, which HAPI reads as "do not reuse a cached search".
NO_CACHE = {"Cache-Control": "no-cache"}
# First-page Bundle ids remembered per client: enough for the searches of a batch run.
_REMEMBERED = 512

ParamValue: TypeAlias = str | int | float | bool | Sequence[str | int | float | bool]
Params: TypeAlias = Mapping[str, ParamValue] | Sequence[tuple[str, str]]


class Freshness:
    """Tells a cached search answer from a fresh one; one per client (it remembers first pages)."""

    def __init__(self) -> None:
        self._first_pages: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def stale(self, answer: FhirResponse, page: Mapping[str, Any]) -> str | None:
        """Why the first page of a fresh search is an old answer, or None when nothing says so."""
        headers = answer.headers
        cache = str(headers.get("X-Cache") or "")
        if cache.upper().startswith("HIT"):
            return f"X-Cache: {_short_text(cache)}"
        age = str(headers.get("Age") or "").strip()
        if age.isdigit() and int(age) > 0:
            return f"Age: {age} s (an HTTP cache answered)"
        made = _made(page)
        if made is not None and self._first_pages.get(answer.url) == made:
            return f"the same Bundle.id {_short_text(made[0])} and meta.lastUpdated {_short_text(made[1])} as an earlier answer"
        return None

    def remember(self, answer: FhirResponse, page: Mapping[str, Any]) -> None:
        """Keep the first page's Bundle.id and meta.lastUpdated, so a later answer reusing them shows as stale."""
        made = _made(page)
        if made is not None:
            self._first_pages[answer.url] = made
            self._first_pages.move_to_end(answer.url)
            while len(self._first_pages) > _REMEMBERED:
                self._first_pages.popitem(last=False)


def _made(page: Mapping[str, Any]) -> tuple[str, str] | None:
    """A searchset's (Bundle.id, meta.lastUpdated): together, which answer it is (HAPI reusing a
    search repeats both). Either missing, nothing is concluded: a server may well give every
    answer the same id, but not the same id and the same instant to two searches run apart."""
    bundle_id = page.get("id")
    meta = page.get("meta")
    updated = meta.get("lastUpdated") if isinstance(meta, Mapping) else None
    if isinstance(bundle_id, str) and bundle_id and isinstance(updated, str) and updated:
        return bundle_id, updated
    return None


def _short_text(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Requester(Protocol):
    """What a search needs of the client: one GET through its transport, and its freshness memory."""

    freshness: Freshness

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
    client: Requester,
    answer: FhirResponse,
    bundle_type: str,
    headers: Mapping[str, str],
    max_pages: int = MAX_PAGES,
    first_page: dict[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """The Bundle of ``answer`` (``first_page`` when already read) and each page after it, following ``next`` links lazily.

    One paging for searches and histories: a ``next`` link back to a page seen before (a loop)
    or past ``max_pages`` ends it with a ServerError; the client refuses an unsafe link.
    """
    page = first_page if first_page is not None else expect_bundle(answer, bundle_type)
    seen = {answer.url}
    fetched = 1
    while True:
        next_url = next_link(page, answer.url)
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
        page = expect_bundle(answer, bundle_type)


def next_link(bundle: Mapping[str, Any], page_url: str | None = None) -> str | None:
    """The URL of a searchset's ``next`` link, if any.

    FHIR wants it absolute; a server that writes it relative (``/Patient?_offset=20``,
    ``Patient?page=2``) is read as a browser would, against the URL of the page it came on.
    """
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str) and link["url"]:
            url = str(link["url"])
            if page_url and not url.startswith("//") and "://" not in url.split("?", 1)[0]:
                return urljoin(page_url, url)
            return url
    return None


class Search:
    """An immutable, lazy FHIR search. Each method returns a new Search; nothing is sent
    until it is iterated, and pages are fetched one at a time as iteration reaches them.

    Iterating yields the matched resources; :meth:`entries` also yields ``_include``-d ones
    with their search mode; :meth:`pages` yields each Bundle.
    """

    __slots__ = ("_client", "resource_type", "params", "headers", "max_pages", "fresh")

    def __init__(
        self,
        client: Requester,
        resource_type: str,
        params: tuple[tuple[str, str], ...],
        headers: tuple[tuple[str, str], ...] = (),
        max_pages: int = MAX_PAGES,
        fresh: bool = True,
    ) -> None:
        self._client = client
        self.resource_type = resource_type
        self.params = params
        self.headers = headers
        self.max_pages = max_pages
        self.fresh = fresh

    def __repr__(self) -> str:
        return f"Search({self.resource_type!r}, {urlencode(self.params)!r})"

    def _copy(self, **changes: Any) -> Search:
        fields = {name: getattr(self, name) for name in ("resource_type", "params", "headers", "max_pages", "fresh")}
        fields.update(changes)
        return Search(self._client, **fields)

    def _with(self, params: tuple[tuple[str, str], ...]) -> Search:
        return self._copy(params=params)

    def cached(self) -> Search:
        """The same search, content with a cached answer (no ``Cache-Control: no-cache``, no freshness check).

        For what an old answer cannot mislead: a progress bar's total, a listing for a person.
        """
        return self._copy(fresh=False)

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
        return self._copy(headers=kept + tuple(headers.items()))

    def page_limit(self, pages: int) -> Search:
        """End the search with an error after this many pages (default :data:`MAX_PAGES`)."""
        if not isinstance(pages, int) or pages < 1:
            raise ValueError("a page limit is a positive number of pages")
        return self._copy(max_pages=pages)

    def _headers(self) -> dict[str, str]:
        if not self.fresh:
            return dict(self.headers)
        return {**NO_CACHE, **dict(self.headers)}

    def _first(self, params: tuple[tuple[str, str], ...]) -> tuple[FhirResponse, dict[str, Any]]:
        """The first page, asked for again once when it is a cached answer to a fresh search."""
        headers = self._headers()
        answer = self._client.request("GET", self.resource_type, params=params, headers=headers)
        page = expect_bundle(answer, "searchset")
        if not self.fresh:
            return answer, page
        freshness = self._client.freshness
        reason = freshness.stale(answer, page)
        if reason is not None:
            answer = self._client.request("GET", self.resource_type, params=params, headers=headers)
            page = expect_bundle(answer, "searchset")
            again = freshness.stale(answer, page)
            if again is not None:
                raise ServerError(
                    f"{show(answer)}: the server answered from a cache although fresh results were asked for "
                    f"(Cache-Control: no-cache), twice ({again}); a decision on an old answer could duplicate or "
                    "miss a write, so the search stops here"
                )
        freshness.remember(answer, page)
        return answer, page

    def _replace(self, name: str, value: str) -> Search:
        kept = tuple(p for p in self.params if p[0] != name)
        return self._with(kept + ((name, value),))

    def pages(self) -> Iterator[dict[str, Any]]:
        """Each searchset Bundle, following ``next`` links (same origin only) lazily."""
        headers = self._headers()
        answer, page = self._first(self.params)
        yield from follow_pages(self._client, answer, "searchset", headers, self.max_pages, first_page=page)

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

    def total(self) -> int | None:
        """The number of matches as the server counts it (``_summary=count``), None when it does not say."""
        _, page = self._first(self.params + (("_summary", "count"),))
        total = page.get("total")
        if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
            return total
        return None

    def count(self) -> int:
        """The number of matches: :meth:`total`; when the server leaves ``total`` out (it may),
        the matches are counted page by page, asking only for their ids."""
        total = self.total()
        if total is not None:
            return total
        counted = self.where(_elements="id")
        return sum(
            1
            for page in counted.pages()
            for entry in page.get("entry") or []
            if isinstance(entry, dict) and (entry.get("search") or {}).get("mode", "match") == "match"
        )
