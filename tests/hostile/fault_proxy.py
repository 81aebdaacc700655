"""A fault-injecting HTTP proxy in front of a real FHIR server (the local HAPI), loopback only.

Each request the proxy receives draws, from a seeded ``random.Random``, either no fault or
one of :data:`FAULTS`; the same seed gives the same faults for the same request sequence::

    delay          forward after a short wait
    drop-before    close the connection without forwarding (the server did nothing)
    reset-before   reset the connection (RST) without forwarding
    429            answer 429 Too Many Requests with Retry-After, without forwarding
    500, 503       answer the status without forwarding
    drop-after     forward (the server acted), then close without answering
    reset-after    forward, then reset the connection
    502-after      forward, then answer 502 Bad Gateway instead of the server's answer
    truncate       forward, then send the answer's headers and only part of its body

The Host header is passed on unchanged, so HAPI writes the proxy's address into its links
and Location headers and the client stays on the proxy's origin. ``injected`` counts the
faults by kind.
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests.hostile import loopback

FAULTS = (
    "delay",
    "drop-before",
    "reset-before",
    "429",
    "500",
    "503",
    "drop-after",
    "reset-after",
    "502-after",
    "truncate",
)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class FaultProxy:
    """A proxy on a free loopback port; ``base`` is the FHIR base URL to give the client."""

    def __init__(self, upstream: str, seed: int, *, rate: float = 0.3, faults: tuple[str, ...] = FAULTS) -> None:
        parts = urlsplit(upstream)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the fault proxy only fronts a loopback server")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.path = parts.path.rstrip("/")
        self.rate = rate
        self.faults = faults
        self.injected: Counter[str] = Counter()
        self.requests = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        assert self._server is not None, "the proxy is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    def draw(self) -> str | None:
        """The fault for the next request, or None."""
        with self._lock:
            self.requests += 1
            if self._random.random() >= self.rate:
                return None
            fault = self._random.choice(self.faults)
            self.injected[fault] += 1
            return fault

    def __enter__(self) -> FaultProxy:
        self._server, self._thread = loopback.serve(self.serve)
        return self

    def __exit__(self, *exc: object) -> None:
        loopback.stop(self._server, self._thread)

    # -- one request ----------------------------------------------------------------------

    def serve(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        fault = self.draw()
        if fault == "drop-before":
            return _close(h)
        if fault == "reset-before":
            return _reset(h)
        if fault in ("429", "500", "503"):
            extra = {"Retry-After": "1"} if fault == "429" else {}
            return _answer(h, int(fault), {"Content-Type": "text/plain", **extra}, f"fault {fault}".encode())
        if fault == "delay":
            time.sleep(0.05 + 0.2 * self._random.random())
        status, headers, content = self.forward(h, body)
        if fault == "drop-after":
            return _close(h)
        if fault == "reset-after":
            return _reset(h)
        if fault == "502-after":
            return _answer(h, 502, {"Content-Type": "text/plain"}, b"fault 502 after the server acted")
        if fault == "truncate" and len(content) > 1:
            h.send_response(status)
            for name, value in headers:
                h.send_header(name, value)
            h.send_header("Content-Length", str(len(content)))
            h.end_headers()
            h.wfile.write(content[: len(content) // 2])
            h.wfile.flush()
            return _close(h)
        _answer(h, status, dict(headers), content)

    def forward(self, h: BaseHTTPRequestHandler, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send the request on to the server; its status, end-to-end headers and whole body."""
        connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=120)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP_BY_HOP}
            connection.request(h.command, h.path, body=body or None, headers=headers)
            response = connection.getresponse()
            content = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP | {"content-length"}]
            return response.status, kept, content
        finally:
            connection.close()


def _answer(h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], content: bytes) -> None:
    h.send_response(status)
    for name, value in headers.items():
        if name.lower() != "content-length":
            h.send_header(name, value)
    h.send_header("Content-Length", str(len(content)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(content)


def _close(h: BaseHTTPRequestHandler) -> None:
    h.close_connection = True
    try:
        h.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _reset(h: BaseHTTPRequestHandler) -> None:
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
    h.close_connection = True
    try:
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.connection.close()
    except OSError:
        pass
