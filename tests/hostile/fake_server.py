"""A small, hostile FHIR server on a free loopback port (stdlib ``http.server`` in a thread).

Each :class:`FakeServer` runs one *mode*, a way a server can misbehave; a second fake
(mode ``record``) plays the *foreign origin* and records every request and every
credential it receives, so a test can count the secrets that left their server::

    with FakeServer("record") as foreign, FakeServer("backslash-next", foreign=foreign) as hostile:
        ...  # use FhirClient(hostile.base, auth=...) and then look at foreign.received

Modes: ``userinfo-next`` / ``backslash-next`` (a next link that one URL reader takes for the
server and another for the foreign origin), ``scheme-relative-next``, ``loop-next`` (two
pages linking to each other), ``redirect-302`` / ``redirect-307`` (every request, a write
included, redirected to the foreign origin; /metadata answers normally), ``echo-2xx`` (a
200 text body echoing the request's headers), ``echo-error`` (a 401 HTML page and a 500
OperationOutcome echoing them), ``truncated`` (a body cut short of its Content-Length),
``slow`` (a body trickled out slower than the client's read timeout), ``huge`` (a chunked
body with no Content-Length, far longer than the client accepts; at most 8 MiB), ``record`` (answers a
plausible FHIR JSON to everything). Loopback only; every request loop is bounded by the
client under test, and the server stops with its context.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.hostile import loopback

MODES = (
    "userinfo-next",
    "backslash-next",
    "scheme-relative-next",
    "loop-next",
    "redirect-302",
    "redirect-307",
    "echo-2xx",
    "echo-error",
    "truncated",
    "slow",
    "huge",
    "record",
)

CAPABILITY = {
    "resourceType": "CapabilityStatement",
    "status": "active",
    "kind": "instance",
    "fhirVersion": "4.0.1",
    "format": ["json"],
    "rest": [{"mode": "server", "interaction": [{"code": "transaction"}, {"code": "batch"}]}],
}


@dataclass(frozen=True)
class Received:
    """One request as the fake server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def text(self) -> str:
        """Everything the client sent, as one string to search for secrets."""
        head = "\n".join(f"{k}: {v}" for k, v in self.headers.items())
        return f"{self.method} {self.path}\n{head}\n\n{self.body.decode('utf-8', errors='replace')}"


def searchset(ids: list[str], next_url: str | None) -> dict[str, Any]:
    links = [{"relation": "self", "url": "self"}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": [{"resource": {"resourceType": "Patient", "id": i}, "search": {"mode": "match"}} for i in ids],
    }


@dataclass
class FakeServer:
    """One fake FHIR server; ``base`` is its FHIR base URL once started (use it as a context)."""

    mode: str
    foreign: FakeServer | None = None
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "the fake server is not started"
        return int(self._server.server_address[1])

    @property
    def authority(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return f"http://{self.authority}/fhir"

    def __enter__(self) -> FakeServer:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}")
        fake = self

        def on_request(h: BaseHTTPRequestHandler, body: bytes) -> None:
            fake.received.append(Received(h.command, h.path, dict(h.headers.items()), body))
            fake.answer(h, body)

        self._server, self._thread = loopback.serve(on_request)
        return self

    def __exit__(self, *exc: object) -> None:
        loopback.stop(self._server, self._thread)

    # -- answers --------------------------------------------------------------------------

    def answer(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        path = h.path
        if path.endswith("/metadata") and self.mode != "record":
            return send_json(h, 200, CAPABILITY)
        handler = getattr(self, "_" + self.mode.replace("-", "_"))
        handler(h, path, body)

    def _foreign_base(self) -> str:
        return self.foreign.base if self.foreign else "http://127.0.0.1:9/fhir"

    def _foreign_authority(self) -> str:
        return self.foreign.authority if self.foreign else "127.0.0.1:9"

    def _paged(self, h: BaseHTTPRequestHandler, path: str, second: str) -> None:
        # The first page points at the hostile link; any later request gets a last page.
        if "page=2" in path or path.startswith("/fhir/p2"):
            return send_json(h, 200, searchset(["p2"], None))
        send_json(h, 200, searchset(["p1"], second))

    def _userinfo_next(self, h: BaseHTTPRequestHandler, path: str, body: bytes) -> None:
        self._paged(h, path, f"http://{self.authority}@{self._foreign_authority()}/fhir/Patient?page=2")

    def _backslash_next(self, h: BaseHTTPRequestHandler, path: str, body: bytes) -> None:
        self._paged(h, path, f"http://{self._foreign_authority()}\\@{self.authority}/fhir/Patient?page=2")

    def _scheme_relative_next(self, h: BaseHTTPRequestHandler, path: str, body: bytes) -> None:
        send_json(h, 200, searchset(["p"], f"//{self.authority}/fhir/Patient?page=2"))

    def _loop_next(self, h: BaseHTTPRequestHandler, path: str, body: bytes) -> None:
        other = "b" if "page=a" in path else "a"
        send_json(h, 200, searchset([path], f"{self.base}/Patient?page={other}"))

    def _redirect(self, h: BaseHTTPRequestHandler, path: str, status: int) -> None:
        h.send_response(status)
        h.send_header("Location", self._foreign_base() + path.removeprefix("/fhir"))
        h.send_header("Content-Length", "0")
        h.end_headers()

    def _redirect_302(self, h: BaseHTTPRequestHandler, path: str, body: bytes) -> None:
        self._redirect(h, path, 302)

    def _redirect_307(self, h: BaseHTTPRequestHandler, path: str, body: bytes) -> None:
        self._redirect(h, path, 307)

    def _echo(self, h: BaseHTTPRequestHandler) -> str:
        return "\n".join(f"{k}: {v}" for k, v in h.headers.items())

    def _echo_2xx(self, h: BaseHTTPRequestHandler, path: str, body: bytes) -> None:
        send_bytes(h, 200, f"you sent:\n{self._echo(h)}".encode(), "text/plain")

    def _echo_error(self, h: BaseHTTPRequestHandler, path: str, body: bytes) -> None:
        if h.command == "GET":
            page = f"<html><head><title>Denied</title></head><body><pre>{self._echo(h)}</pre></body></html>"
            return send_bytes(h, 401, page.encode(), "text/html")
        outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception", "diagnostics": self._echo(h)}]}
        send_json(h, 500, outcome)

    def _truncated(self, h: BaseHTTPRequestHandler, path: str, body: bytes) -> None:
        whole = json.dumps(searchset([str(i) for i in range(200)], None)).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/fhir+json")
        h.send_header("Content-Length", str(len(whole)))
        h.end_headers()
        h.wfile.write(whole[: len(whole) // 3])
        h.wfile.flush()
        h.close_connection = True
        h.connection.shutdown(2)

    def _slow(self, h: BaseHTTPRequestHandler, path: str, body: bytes) -> None:
        whole = json.dumps(searchset(["slow"], None)).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/fhir+json")
        h.send_header("Content-Length", str(len(whole)))
        h.end_headers()
        try:
            for i in range(0, min(len(whole), 40), 4):  # bounded: at most ten slow chunks
                h.wfile.write(whole[i : i + 4])
                h.wfile.flush()
                time.sleep(0.5)
        except OSError:
            pass  # the client gave up, as it should
        h.close_connection = True

    def _huge(self, h: BaseHTTPRequestHandler, path: str, body: bytes) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/fhir+json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = b"[" * 65536
        try:
            for _ in range(128):  # bounded: 8 MiB at most
                h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            h.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client stopped reading, as it should
        h.close_connection = True

    def _record(self, h: BaseHTTPRequestHandler, path: str, body: bytes) -> None:
        if path.endswith("/metadata"):
            return send_json(h, 200, CAPABILITY)
        if h.command == "POST":
            return send_json(h, 200, {"resourceType": "Bundle", "type": "transaction-response", "entry": []})
        send_json(h, 200, searchset(["foreign"], None) if "?" in path else {"resourceType": "Patient", "id": "foreign"})

    def requests_with(self, secrets: Iterator[str] | list[str]) -> list[Received]:
        """The requests this server received that carried an Authorization header or a secret."""
        wanted = [s for s in secrets if s]
        return [
            r for r in self.received
            if any(k.lower() == "authorization" for k in r.headers) or any(s in r.text() for s in wanted)
        ]


def send_bytes(h: BaseHTTPRequestHandler, status: int, data: bytes, content_type: str) -> None:
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(data)


def send_json(h: BaseHTTPRequestHandler, status: int, data: dict[str, Any]) -> None:
    send_bytes(h, status, json.dumps(data).encode(), "application/fhir+json")
