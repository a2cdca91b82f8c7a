"""bench/collect_bench.py's realistic server (``--cap``/``--latency``): the test server really caps each connection's
bandwidth and charges a round trip per connection and per request, the model the bench's bound assumes."""

from __future__ import annotations

import time

import urllib3

from tests.support.http_server import FaultyHttpServer


def _timed_gets(server: FaultyHttpServer, paths: list[str]) -> tuple[float, list[bytes]]:
    pool = urllib3.HTTPConnectionPool("127.0.0.1", int(server.base.rsplit(":", 1)[1]), maxsize=1, retries=False)
    started = time.perf_counter()
    bodies = [pool.request("GET", p).data for p in paths]
    return time.perf_counter() - started, bodies


def test_the_capped_server_sends_at_its_cap_and_charges_a_round_trip_per_connection_and_request():
    # GIVEN a server capped at 2 MB/s a connection with 100 ms round trips, holding 1 MB and an empty file
    data = bytes(range(256)) * 4096
    with FaultyHttpServer(bandwidth=2e6, latency=0.1) as server:
        server.add_file("/big", data)
        server.add_file("/small", b"")
        # WHEN one connection fetches the empty file twice, then the big one once
        small, _ = _timed_gets(server, ["/small", "/small"])
        big, (body,) = _timed_gets(server, ["/big"])
    # THEN two small requests on one new connection took three round trips, the big one its bytes at 2 MB/s on top
    # (upper limits loose: a loaded machine is slower, never faster)
    assert 0.3 <= small < 0.3 + 0.5
    assert body == data and 0.2 + len(data) / 2e6 <= big < 2 * (0.2 + len(data) / 2e6)
