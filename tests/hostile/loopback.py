"""A threaded HTTP server on a free loopback port, shared by the fake FHIR server and the fault proxy.

Each request's body is read (by Content-Length) and handed with its handler to ``on_request``,
which writes the answer. Loopback only: nothing here listens beyond 127.0.0.1.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OnRequest = Callable[[BaseHTTPRequestHandler, bytes], None]


def serve(on_request: OnRequest) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Start serving on 127.0.0.1 (a free port) in a daemon thread; the server and its thread."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            on_request(self, self.rfile.read(length) if length else b"")

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, thread


def stop(server: ThreadingHTTPServer | None, thread: threading.Thread | None) -> None:
    """Stop a server started by :func:`serve` (either may be None: never started)."""
    if server is not None:
        server.shutdown()
        server.server_close()
    if thread is not None:
        thread.join(timeout=5)
