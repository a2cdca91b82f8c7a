"""A static HTTP file server on 127.0.0.1 with scripted faults, the base of every source's test server.

It speaks enough HTTP/1.1 for real download clients: ``Content-Length``, strong ``ETag``, ``Last-Modified``,
``Accept-Ranges``, ``Range`` (206 with ``Content-Range``) and ``If-Range``, HEAD, redirects. Faults are queued
per path and consumed one per request, so a test scripts exactly what the client meets:

* ``"drop"``: send the headers and half the body, then close the connection;
* ``"ignore-range"``: answer 200 with the whole body even when a Range was asked for;
* ``"429"``: 429 Too Many Requests with ``Retry-After: 1``; ``"500"``, ``"503"``, ``"404"``: that status;
* ``"ok"``: no fault (to let an earlier request of the same path through).

Every request is logged (method, path, headers) so tests can assert what the client sent. ``bandwidth`` and
``latency`` make it a remote server (benchmarks): each connection sends its bodies at most ``bandwidth`` bytes a
second, and waits ``latency`` seconds when it opens (the TCP handshake's round trip) and before each answer (the
request's round trip).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")
LAST_MODIFIED = "Wed, 01 Jan 2025 00:00:00 GMT"


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    at: float = 0.0
    """``time.monotonic()`` when it was read (benchmarks time a client from its first request)."""


Route = Callable[["FaultyHandler", dict[str, list[str]], bytes], bool]
"""A dynamic route: handles the request (returns True) or declines (False)."""


@dataclass
class FaultyHttpServer:
    """Files served from memory, with per-path fault queues and a request log."""

    files: dict[str, bytes] = field(default_factory=dict)
    routes: dict[str, Route] = field(default_factory=dict)
    fallback: Route | None = None
    """Handles what no route or file does (``fault_proxy`` forwards it upstream)."""
    faults: dict[str, deque[str]] = field(default_factory=lambda: defaultdict(deque))
    log: list[LoggedRequest] = field(default_factory=list)
    retry_after: str = "1"
    bandwidth: float | None = None
    """Bytes a second each connection sends a body at, at most (``None``: as fast as it can)."""
    latency: float = 0.0
    """Seconds each new connection and each request waits before it is answered: one round trip."""
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # -- scripting --------------------------------------------------------------------------------------------
    def add_file(self, path: str, data: bytes) -> str:
        self.files[path] = data
        return self.url(path)

    def fault(self, path: str, *names: str) -> None:
        """Queue faults for the next requests of ``path`` (one per request, in order)."""
        self.faults[path].extend(names)

    def requests_for(self, path: str) -> list[LoggedRequest]:
        return [r for r in self.log if r.path == path]

    # -- lifecycle --------------------------------------------------------------------------------------------
    @property
    def base(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def start(self) -> FaultyHttpServer:
        owner = self

        class Handler(FaultyHandler):
            server_owner = owner

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FaultyHttpServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def etag_of(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


class FaultyHandler(BaseHTTPRequestHandler):
    """Serves ``server_owner.files`` and ``server_owner.routes``, applying queued faults."""

    server_owner: FaultyHttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # keep pytest output clean
        pass

    def setup(self) -> None:
        super().setup()
        if self.server_owner.latency:  # a new connection costs a round trip before its first request
            time.sleep(self.server_owner.latency)

    def write_body(self, body: bytes | memoryview) -> None:
        """Send ``body`` at the server's ``bandwidth``: in 64 KiB chunks, each not before the link could have
        carried it (so the last byte leaves no sooner than ``len(body) / bandwidth`` after the answer began)."""
        rate, view = self.server_owner.bandwidth, memoryview(body)
        chunk = 64 << 10 if rate else 1 << 20
        started = time.monotonic()
        for i in range(0, len(view), chunk):
            if rate and (early := started + min(i + chunk, len(view)) / rate - time.monotonic()) > 0:
                time.sleep(early)
            self.wfile.write(view[i : i + chunk])

    # -- helpers for routes -----------------------------------------------------------------------------------
    def send_body(self, status: int, body: bytes, content_type: str = "application/octet-stream",
                  headers: dict[str, str] | None = None) -> None:  # fmt: skip
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.write_body(body)

    def send_json(self, obj, status: int = 200) -> None:
        import json

        self.send_body(status, json.dumps(obj).encode(), "application/json")

    def redirect(self, location: str, status: int = 302) -> None:
        self.send_response(status)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def serve_bytes(self, data: bytes, fault: str | None = None, content_type: str = "application/octet-stream"):
        """Serve ``data`` with validators and Range support, applying ``fault``."""
        etag = etag_of(data)
        headers = {"ETag": etag, "Last-Modified": LAST_MODIFIED, "Accept-Ranges": "bytes"}
        start, status = 0, 200
        wanted = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        match = _RANGE.match(wanted or "")
        if match and fault != "ignore-range" and (if_range is None or if_range in (etag, LAST_MODIFIED)):
            start = int(match.group(1))
            if start >= len(data):
                self.send_body(416, b"", headers={"Content-Range": f"bytes */{len(data)}"})
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        if fault == "drop":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            import socket

            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.write_body(body)

    # -- dispatch ---------------------------------------------------------------------------------------------
    def _handle(self) -> None:
        owner = self.server_owner
        if owner.latency:  # the request's round trip
            time.sleep(owner.latency)
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        owner.log.append(LoggedRequest(self.command, parts.path, query, dict(self.headers.items()), time.monotonic()))
        queue = owner.faults.get(parts.path)
        fault = queue.popleft() if queue else None
        if fault in ("429", "500", "502", "503", "404"):
            extra = {"Retry-After": owner.retry_after} if fault == "429" else {}
            self.send_body(int(fault), f"fault {fault}".encode(), "text/plain", extra)
            return
        self.fault_now = fault
        route = owner.routes.get(parts.path)
        if route is not None and route(self, query, body):
            return
        if parts.path in owner.files:
            self.serve_bytes(owner.files[parts.path], fault)
            return
        if owner.fallback is not None and owner.fallback(self, query, body):
            return
        self.send_body(404, b"not found", "text/plain")

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle
