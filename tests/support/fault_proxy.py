"""A forwarding HTTP proxy on 127.0.0.1 that puts scripted faults between a client and a real server.

The real servers the tests run (SeaweedFS for IDC's buckets, Orthanc for a PACS) answer correctly; to see what the
collector does when a link misbehaves, point it at this proxy instead. Every request is forwarded to ``upstream``
(method, path, query, headers, body) and the answer sent back as it came (status, headers, body), unless a fault
queued for that path (``FaultyHttpServer.fault``) says otherwise:

* ``"drop"``: the upstream's headers and half its body, then the connection closes;
* ``"corrupt"``: the body with one byte flipped (sizes and headers unchanged);
* ``"ignore-range"``: the ``Range`` header is not forwarded, so a resume gets the whole body (200);
* ``"429"``, ``"500"``, ``"502"``, ``"503"``, ``"404"``: that status, without asking the upstream.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import urllib3

from tests.support.http_server import FaultyHandler, FaultyHttpServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
              "proxy-authenticate", "host", "content-length"}  # fmt: skip


@dataclass
class FaultProxy(FaultyHttpServer):
    """``FaultyHttpServer`` whose every unscripted request goes to ``upstream`` (``http://127.0.0.1:port``)."""

    upstream: str = ""

    def __post_init__(self) -> None:
        self._pool = urllib3.PoolManager(maxsize=32, retries=False)
        self.fallback = self._forward

    def _forward(self, handler: FaultyHandler, query, body: bytes) -> bool:
        fault = handler.fault_now
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        if fault == "ignore-range":
            headers = {k: v for k, v in headers.items() if k.lower() not in ("range", "if-range")}
        resp = self._pool.request(handler.command, self.upstream + handler.path, headers=headers,
                                  body=body or None, preload_content=True, redirect=False)  # fmt: skip
        data = resp.data
        if fault == "corrupt" and data:
            flipped = bytearray(data)
            flipped[len(flipped) // 2] ^= 0xFF
            data = bytes(flipped)
        handler.send_response(resp.status)
        for name, value in resp.headers.items():
            if name.lower() not in HOP_BY_HOP:
                handler.send_header(name, value)
        # a HEAD answer's length is the length of the body a GET would send
        length = resp.headers.get("Content-Length", "0") if handler.command == "HEAD" else str(len(data))
        handler.send_header("Content-Length", length)
        handler.end_headers()
        if handler.command == "HEAD":
            return True
        if fault == "drop":
            handler.wfile.write(data[: len(data) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return True
        handler.wfile.write(data)
        return True
