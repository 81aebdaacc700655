"""A small in-memory FHIR server behind a ``requests`` transport adapter, for unit tests.

It does what the workflows need and nothing more: read; search by ``_id``, ``identifier``
(``system|value`` and ``system|``), the reference parameters a case uses and ``_tag``, with
``_include``, ``_count`` and paging through ``next`` links (with ``revinclude=True`` also
``_revinclude`` and ``_include:iterate``, declared in its CapabilityStatement as HAPI does); an
update by id (``PUT Type/id``, with ``If-Match``: 412 when the version moved on) and a
resource's ``_history``; and transactions with conditional creates (``ifNoneExist``),
conditional updates (``PUT Type?identifier=``, a no-op when the content is the same, like HAPI),
updates by id with ``ifMatch``, conditional references and ``urn:uuid`` resolution, applied
atomically. A shared :class:`Tripwire` raises :class:`Killed` (a BaseException, like a
killed process) before or after the server applies that request, and ``requests`` counts
every request, so a test can stop a workflow at each step in turn.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

Resource = dict[str, Any]


class Killed(BaseException):
    """The process died here (not an Exception: nothing in the library may catch it)."""


class Tripwire:
    """Counts requests across every fake sharing it; kills the process at request number ``at``."""

    def __init__(self, at: int | None = None, *, after: bool = False, drop: bool = False) -> None:
        self.at = at
        self.after = after
        self.drop = drop  # a dropped connection (requests.ConnectionError) instead of a killed process
        self.count = 0

    def fire(self, message: str) -> None:
        if self.drop:
            raise requests.exceptions.ConnectionError(message)
        raise Killed(message)


def _refs(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


REFERENCE_PARAMS: dict[tuple[str, str], Callable[[Resource], list[Any]]] = {
    ("ServiceRequest", "subject"): lambda r: _refs(r.get("subject")),
    ("ServiceRequest", "requester"): lambda r: _refs(r.get("requester")),
    ("ServiceRequest", "performer"): lambda r: _refs(r.get("performer")),
    ("DocumentReference", "related"): lambda r: _refs((r.get("context") or {}).get("related")),
    ("DocumentReference", "author"): lambda r: _refs(r.get("author")),
    ("DocumentReference", "subject"): lambda r: _refs(r.get("subject")),
    ("DiagnosticReport", "based-on"): lambda r: _refs(r.get("basedOn")),
    ("DiagnosticReport", "performer"): lambda r: _refs(r.get("performer")),
    ("DiagnosticReport", "subject"): lambda r: _refs(r.get("subject")),
    ("Consent", "patient"): lambda r: _refs(r.get("patient")),
    ("Consent", "actor"): lambda r: [a.get("reference") for a in (r.get("provision") or {}).get("actor") or []],
    ("Task", "focus"): lambda r: _refs(r.get("focus")),
    ("Task", "owner"): lambda r: _refs(r.get("owner")),
}
# Every stored version gets this lastUpdated plus its version in seconds (a stable, increasing clock).
_EPOCH = "2026-03-01T10:00:{:02d}Z"


def _conflict(message: str) -> tuple[int, Any, dict[str, str]]:
    return 412, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "conflict", "diagnostics": message}]}, {}


class FakeFhir(BaseAdapter):
    """One FHIR server at ``base``; mount it on a Session for that URL prefix."""

    def __init__(self, base: str, *, page_size: int = 2, tripwire: Tripwire | None = None, revinclude: bool = False) -> None:
        super().__init__()
        self.revinclude = revinclude
        self.tripwire = tripwire or Tripwire()
        self.base = base.rstrip("/")
        self.page_size = page_size
        self.store: dict[str, dict[str, Resource]] = {}
        self.next_id = 1
        self.requests: list[tuple[str, str]] = []
        self.authorizations: list[str | None] = []
        self.history: dict[str, list[Resource]] = {}  # "Type/id" -> every version stored, oldest first
        self.history_limit = 1000  # _history shows at most the newest this many (a server's cached count)

    # -- transport -------------------------------------------------------------------

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        method = str(request.method)
        url = str(request.url)
        self.requests.append((method, url))
        self.tripwire.count += 1
        number = self.tripwire.count
        kill = self.tripwire.at == number
        if kill and not self.tripwire.after:
            self.tripwire.fire(f"killed before request {number}: {method} {url}")
        body = request.body
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        status, payload, headers = self.handle(method, url, json.loads(body) if body else None, request.headers)
        if kill:
            self.tripwire.fire(f"killed after request {number} was applied: {method} {url}")
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(payload).encode() if payload is not None else b""
        response.headers = CaseInsensitiveDict({"Content-Type": "application/fhir+json", **headers})
        response.url = url
        response.request = request
        return response

    def close(self) -> None:
        pass

    # -- dispatch --------------------------------------------------------------------

    def handle(self, method: str, url: str, body: Any, headers: Mapping[str, str]) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(url)
        path = parts.path[len(urlsplit(self.base).path):].strip("/")
        params = parse_qsl(parts.query, keep_blank_values=True)
        if method == "GET" and path == "metadata":
            rest: Resource = {"mode": "server", "interaction": [{"code": "transaction"}, {"code": "batch"}]}
            if self.revinclude:
                rest["resource"] = [{"type": "ServiceRequest", "searchRevInclude": [
                    f"{t}:{n}" for t, n in REFERENCE_PARAMS if n in ("related", "based-on", "focus")]}]
            return 200, {"resourceType": "CapabilityStatement", "status": "active", "fhirVersion": "4.0.1", "rest": [rest]}, {}
        if method == "POST" and path == "":
            return self.transaction(body)
        segments = path.split("/") if path else []
        if method == "GET" and len(segments) == 1:
            unknown = [k for k, _ in params if k.startswith(("_revinclude", "_include:")) and not self.revinclude]
            if unknown:
                return 400, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-supported", "diagnostics": unknown[0]}]}, {}
            return 200, self.search_page(segments[0], params), {}
        if method == "GET" and len(segments) == 4 and segments[2] == "_history":
            found = [v for v in self.history.get(f"{segments[0]}/{segments[1]}", []) if v["meta"]["versionId"] == segments[3]]
            if not found:
                return 404, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]}, {}
            return 200, found[0], {}
        if method == "GET" and len(segments) == 3 and segments[2] == "_history":
            versions = self.history.get(f"{segments[0]}/{segments[1]}", [])[-self.history_limit:]
            entries = [{"fullUrl": f"{self.base}/{segments[0]}/{segments[1]}/_history/{v['meta']['versionId']}", "resource": v} for v in reversed(versions)]
            return 200, {"resourceType": "Bundle", "type": "history", "entry": entries}, {}
        if method == "PUT" and len(segments) == 2:
            return self.update(segments[0], segments[1], body, headers.get("If-Match"))
        if method == "GET" and len(segments) == 2:
            found = self.store.get(segments[0], {}).get(segments[1])
            if found is None:
                return 404, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]}, {}
            return 200, found, {}
        return 400, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-supported", "diagnostics": f"{method} {path}"}]}, {}

    # -- search ----------------------------------------------------------------------

    def matches(self, rtype: str, params: list[tuple[str, str]], store: dict[str, dict[str, Resource]] | None = None) -> list[Resource]:
        found = list((store if store is not None else self.store).get(rtype, {}).values())
        for name, value in params:
            if name.startswith("_") and name not in ("_id", "_tag"):
                continue
            found = [r for r in found if self._match(rtype, r, name, value)]
        return sorted(found, key=lambda r: int(r["id"]))

    def _match(self, rtype: str, resource: Resource, name: str, value: str) -> bool:
        if name == "_id":
            return resource["id"] in value.split(",")
        if name == "_tag":
            system, _, code = value.partition("|")
            return any(t.get("system") == system and t.get("code") == code for t in (resource.get("meta") or {}).get("tag") or [])
        if name == "scope":
            system, _, code = value.partition("|")
            return any(c.get("system") == system and c.get("code") == code for c in (resource.get("scope") or {}).get("coding") or [])
        if name == "identifier":
            system, _, ident = value.partition("|")
            return any(i.get("system") == system and (not ident or i.get("value") == ident) for i in resource.get("identifier") or [])
        getter = REFERENCE_PARAMS.get((rtype, name))
        if getter is None:
            raise AssertionError(f"the fake server does not know the search parameter {rtype}.{name}")
        return any(isinstance(r, dict) and r.get("reference") == value for r in getter(resource))

    def search_page(self, rtype: str, params: list[tuple[str, str]]) -> Resource:
        found = self.matches(rtype, params)
        if ("_summary", "count") in params:
            return {"resourceType": "Bundle", "type": "searchset", "total": len(found)}
        count = int(dict(params).get("_count", self.page_size))
        offset = int(dict(params).get("_offset", 0))
        page = found[offset:offset + count]
        entries = [{"fullUrl": f"{self.base}/{rtype}/{r['id']}", "resource": r, "search": {"mode": "match"}} for r in page]
        seen = {f"{rtype}/{r['id']}" for r in page}

        def include(target: str) -> Resource | None:
            if target in seen or target.count("/") != 1:
                return None
            ttype, tid = target.split("/")
            included = self.store.get(ttype, {}).get(tid)
            if included is not None:
                seen.add(target)
                entries.append({"fullUrl": f"{self.base}/{target}", "resource": included, "search": {"mode": "include"}})
            return included

        for name, value in params:
            if name == "_include" or (name == "_include:iterate" and self.revinclude):
                itype, _, iparam = value.partition(":")
                getter = REFERENCE_PARAMS[(itype, iparam)]
                sources = page if name == "_include" else [e["resource"] for e in entries]
                for resource in list(sources):
                    if resource.get("resourceType", rtype) != itype:
                        continue
                    for ref in getter(resource):
                        include(ref.get("reference", "") if isinstance(ref, dict) else "")
            elif name == "_revinclude" and self.revinclude:
                itype, _, iparam = value.partition(":")
                getter = REFERENCE_PARAMS[(itype, iparam)]
                targets = {f"{rtype}/{r['id']}" for r in page}
                for candidate in self.store.get(itype, {}).values():
                    if any(isinstance(ref, dict) and ref.get("reference") in targets for ref in getter(candidate)):
                        include(f"{itype}/{candidate['id']}")
        bundle: Resource = {"resourceType": "Bundle", "type": "searchset", "total": len(found), "entry": entries}
        if offset + count < len(found):
            rest = [(k, v) for k, v in params if k != "_offset"] + [("_offset", str(offset + count))]
            bundle["link"] = [{"relation": "next", "url": f"{self.base}/{rtype}?{urlencode(rest)}"}]
        return bundle

    # -- update ----------------------------------------------------------------------

    def _store(self, store: dict[str, dict[str, Resource]], rtype: str, rid: str, resource: Resource, version: str) -> Resource:
        meta = {**(resource.get("meta") or {}), "versionId": version, "lastUpdated": _EPOCH.format(int(version) % 60)}
        stored = {**resource, "id": rid, "meta": meta}
        store.setdefault(rtype, {})[rid] = stored
        return stored

    def update(self, rtype: str, rid: str, resource: Resource, if_match: str | None) -> tuple[int, Any, dict[str, str]]:
        existing = self.store.get(rtype, {}).get(rid)
        current = existing["meta"]["versionId"] if existing else None
        if if_match is not None and if_match != f'W/"{current}"':
            return _conflict(f"{rtype}/{rid}: If-Match {if_match} but the version is {current}")
        version = str(int(current) + 1) if current else "1"
        stored = self._store(self.store, rtype, rid, resource, version)
        self.history.setdefault(f"{rtype}/{rid}", []).append(stored)
        return (200 if existing else 201), stored, {"ETag": f'W/"{version}"', "Location": f"{self.base}/{rtype}/{rid}/_history/{version}"}

    # -- transaction -----------------------------------------------------------------

    def transaction(self, bundle: Resource) -> tuple[int, Any, dict[str, str]]:
        store = copy.deepcopy(self.store)
        next_id = self.next_id
        resolved: dict[str, str] = {}
        planned: list[tuple[Resource, str, str, str | None]] = []
        # First pass: decide each entry's id (conditional matches, new ids), like a server does.
        for entry in bundle.get("entry") or []:
            request, resource = entry["request"], entry["resource"]
            rtype = resource["resourceType"]
            if request["method"] == "POST":
                condition = request.get("ifNoneExist")
                hits = self.matches(rtype, parse_qsl(unquote(condition)), store) if condition else []
            elif "?" not in request["url"]:  # PUT Type/id
                found = store.get(rtype, {}).get(request["url"].split("/")[1])
                hits = [found] if found else []
                if request.get("ifMatch") and (not found or request["ifMatch"] != f'W/"{found["meta"]["versionId"]}"'):
                    return _conflict(f"{request['url']}: ifMatch {request['ifMatch']} does not match")
            else:
                _, _, query = request["url"].partition("?")
                hits = self.matches(rtype, parse_qsl(unquote(query)), store)
            if len(hits) > 1:
                return 412, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "multiple-matches"}]}, {}
            if hits:
                rid, existing = hits[0]["id"], hits[0]
            else:
                rid, existing = str(next_id), None
                next_id += 1
            resolved[entry["fullUrl"]] = f"{rtype}/{rid}"
            planned.append((entry, rtype, rid, existing["meta"]["versionId"] if existing else None))
        replies = []
        written: list[Resource] = []
        for entry, rtype, rid, version in planned:
            resource = self._resolve(entry["resource"], resolved, store)
            existing = store.get(rtype, {}).get(rid)
            if entry["request"]["method"] == "POST" and existing is not None:
                replies.append(self._reply(200, rtype, rid, version))
                continue
            if existing is not None and _content(existing) == _content(resource):
                replies.append(self._reply(200, rtype, rid, version))
                continue
            new_version = str(int(version) + 1) if version else "1"
            stored = self._store(store, rtype, rid, resource, new_version)
            written.append(stored)
            replies.append(self._reply(201 if existing is None else 200, rtype, rid, new_version))
        self.store, self.next_id = store, next_id
        for stored in written:
            self.history.setdefault(f"{stored['resourceType']}/{stored['id']}", []).append(stored)
        return 200, {"resourceType": "Bundle", "type": "transaction-response", "entry": replies}, {}

    def _resolve(self, resource: Resource, resolved: Mapping[str, str], store: dict[str, dict[str, Resource]]) -> Resource:
        def walk(value: Any) -> Any:
            if isinstance(value, dict):
                out = {}
                for key, item in value.items():
                    if key == "reference" and isinstance(item, str):
                        if item in resolved:
                            item = resolved[item]
                        elif "?" in item:
                            rtype, _, query = item.partition("?")
                            hits = self.matches(rtype, parse_qsl(unquote(query)), store)
                            if len(hits) != 1:
                                raise AssertionError(f"conditional reference {item} matched {len(hits)}")
                            item = f"{rtype}/{hits[0]['id']}"
                        out[key] = item
                    else:
                        out[key] = walk(item)
                return out
            if isinstance(value, list):
                return [walk(v) for v in value]
            return value

        result: Resource = walk(resource)
        return result

    def _reply(self, status: int, rtype: str, rid: str, version: str | None) -> Resource:
        text = {200: "200 OK", 201: "201 Created"}[status]
        return {"response": {"status": text, "location": f"{rtype}/{rid}/_history/{version}", "etag": f'W/"{version}"'}}

    # -- helpers for tests -------------------------------------------------------------

    def count(self, rtype: str) -> int:
        return len(self.store.get(rtype, {}))

    def all(self, rtype: str) -> list[Resource]:
        return list(self.store.get(rtype, {}).values())

    def writes(self) -> int:
        return sum(1 for method, _ in self.requests if method in ("POST", "PUT", "DELETE"))


def _content(resource: Resource) -> Resource:
    return {k: v for k, v in resource.items() if k not in ("id", "meta")} | {"meta": {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}}


def session_for(*servers: FakeFhir) -> requests.Session:
    """A Session whose requests to each server's base go to that fake."""
    session = requests.Session()
    for server in servers:
        session.mount(server.base + "/", server)
        session.mount(server.base, server)
    return session


def serve_with_responses(mock: Any, *servers: FakeFhir) -> None:
    """Route every request to the servers' bases through ``responses`` to the fakes (for CLI tests,
    where the command builds its own session)."""
    import re

    for server in servers:

        def callback(request: requests.PreparedRequest, server: FakeFhir = server) -> tuple[int, dict[str, str], str]:
            body = request.body.decode("utf-8") if isinstance(request.body, bytes) else request.body
            server.requests.append((str(request.method), str(request.url)))
            server.authorizations.append(request.headers.get("Authorization"))
            status, payload, headers = server.handle(str(request.method), str(request.url), json.loads(body) if body else None, request.headers)
            return status, {"Content-Type": "application/fhir+json", **headers}, json.dumps(payload) if payload is not None else ""

        for method in ("GET", "POST", "PUT", "DELETE"):
            mock.add_callback(method, re.compile(re.escape(server.base) + r"(/.*)?(\?.*)?$"), callback=callback)
