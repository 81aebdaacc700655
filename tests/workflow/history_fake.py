"""The in-memory fake FHIR server with what ``fhir-so status`` reads: every version of every resource
(``_history``, ``meta.lastUpdated`` from a test clock that ticks one second per write) and the
``Provenance?target=`` search. Served through ``responses`` (:func:`serve`), like a real server."""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import Any

import requests
import responses
from tests.workflow.fake_fhir import FakeFhir

Resource = dict[str, Any]
START = dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.timezone.utc)


class Ticker:
    """A clock shared by both fakes: each write is one second after the last, on either server."""

    def __init__(self, start: dt.datetime = START) -> None:
        self.now = start

    def tick(self) -> str:
        self.now += dt.timedelta(seconds=1)
        return self.now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class HistoryFake(FakeFhir):
    """FakeFhir that keeps every version, with the time each was written."""

    def __init__(self, base: str, ticker: Ticker) -> None:
        super().__init__(base)
        self.ticker = ticker
        self.versions: dict[str, list[Resource]] = {}
        #: called with (method, url) before each request is served (a test's hook: change data, interrupt,
        #: or answer instead of the fake by returning (status, body, headers))
        #: how many of the newest versions a _history answer leaves out (HAPI's cached history count)
        self.history_lag = 0
        self.on_request: Callable[[str, str], tuple[int, Any, dict[str, str]] | None] | None = None

    def _keep(self, before: Mapping[str, Mapping[str, Resource]]) -> None:
        """Stamp and record every resource a write created or changed (one time per write, like HAPI)."""
        when = self.ticker.tick()
        for rtype, found in self.store.items():
            for rid, resource in found.items():
                old = before.get(rtype, {}).get(rid)
                if old is not None and old["meta"]["versionId"] == resource["meta"]["versionId"]:
                    continue
                resource["meta"]["lastUpdated"] = when
                self.versions.setdefault(f"{rtype}/{rid}", []).append(copy.deepcopy(resource))

    def transaction(self, bundle: Resource) -> tuple[int, Any, dict[str, str]]:
        before = copy.deepcopy(self.store)
        status, answer, headers = super().transaction(bundle)
        self._keep(before)
        # Like HAPI: an update that changed nothing says so in the entry's outcome.
        for entry, sent in zip(answer.get("entry") or [], bundle.get("entry") or []):
            response = entry.get("response") or {}
            rtype, rid = str(response.get("location", "")).split("/")[:2] if response.get("location") else ("", "")
            old, new = before.get(rtype, {}).get(rid), self.store.get(rtype, {}).get(rid)
            if sent["request"]["method"] == "PUT" and old is not None and new is not None and old["meta"]["versionId"] == new["meta"]["versionId"]:
                response["outcome"] = {"resourceType": "OperationOutcome", "issue": [
                    {"severity": "information", "code": "informational", "details": {"coding": [{"code": "SUCCESSFUL_UPDATE_NO_CHANGE"}]}}]}
        return status, answer, headers

    def put(self, resource: Mapping[str, Any]) -> Resource:
        """Write a new version of ``resource`` (created when it has no id), as an update would."""
        before = copy.deepcopy(self.store)
        rtype = str(resource["resourceType"])
        rid = resource.get("id") or str(self.next_id)
        if "id" not in resource:
            self.next_id += 1
        old = self.store.get(rtype, {}).get(rid)
        version = str(int(old["meta"]["versionId"]) + 1) if old else "1"
        stored = {**copy.deepcopy(dict(resource)), "id": rid, "meta": {**(resource.get("meta") or {}), "versionId": version}}
        self.store.setdefault(rtype, {})[rid] = stored
        self._keep(before)
        return stored

    def handle(self, method: str, url: str, body: Any, headers: Mapping[str, str]) -> tuple[int, Any, dict[str, str]]:
        if self.on_request is not None:
            answer = self.on_request(method, url)
            if answer is not None:
                return answer
        path = url.split("?")[0][len(self.base):].strip("/")
        parts = path.split("/")
        if method == "GET" and len(parts) == 3 and parts[2] == "_history":
            versions = self.versions.get(f"{parts[0]}/{parts[1]}")
            if not versions:
                return 404, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]}, {}
            shown = versions[: max(1, len(versions) - self.history_lag)]
            entries = [{"fullUrl": f"{self.base}/{parts[0]}/{parts[1]}", "resource": v} for v in reversed(shown)]
            return 200, {"resourceType": "Bundle", "type": "history", "entry": entries}, {}
        if method == "GET" and len(parts) == 4 and parts[2] == "_history":
            found = [v for v in self.versions.get(f"{parts[0]}/{parts[1]}", []) if v["meta"]["versionId"] == parts[3]]
            if not found:
                return 404, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]}, {}
            return 200, found[0], {}
        if method == "PUT" and len(parts) == 2:
            current = self.store.get(parts[0], {}).get(parts[1])
            wanted = headers.get("If-Match")
            if current is not None and wanted and wanted.strip('W/"') != current["meta"]["versionId"]:
                return 412, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "conflict"}]}, {}
            stored = self.put({**body, "id": parts[1]})
            return 200, stored, {"ETag": f'W/"{stored["meta"]["versionId"]}"'}
        return super().handle(method, url, body, headers)

    def _match(self, rtype: str, resource: Resource, name: str, value: str) -> bool:
        if (rtype, name) == ("Provenance", "target"):
            wanted = set(value.split(","))
            return any(str(t.get("reference", "")).split("/_history/")[0] in wanted for t in resource.get("target") or [])
        return super()._match(rtype, resource, name, value)


def serve(mock: responses.RequestsMock, *servers: HistoryFake) -> None:
    """Route every request to each fake's base through ``responses`` (every method, headers passed on)."""
    import json

    for server in servers:

        def callback(request: requests.PreparedRequest, server: HistoryFake = server) -> tuple[int, dict[str, str], str]:
            body = request.body.decode("utf-8") if isinstance(request.body, bytes) else request.body
            server.requests.append((str(request.method), str(request.url)))
            status, payload, headers = server.handle(str(request.method), str(request.url), json.loads(body) if body else None, request.headers)
            return status, {"Content-Type": "application/fhir+json", **headers}, json.dumps(payload) if payload is not None else ""

        for method in ("GET", "POST", "PUT", "DELETE"):
            mock.add_callback(method, re.compile(re.escape(server.base) + r"(/.*)?(\?.*)?$"), callback=callback)
