"""HTTP transfers: resume with Range + If-Range, restart when Range is ignored, retries, checksums, exit 75."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from jobs.collect.transfer import HttpClient, RetryPolicy, retry_after_seconds
from jobs.core.errors import DataError, TransientError, UsageError
from tests.support.http_server import etag_of

DATA = os.urandom(3 << 20) + b"tail"


def _client(attempts: int = 4) -> HttpClient:
    return HttpClient(RetryPolicy(attempts=attempts, timeout=5, backoff=0.01))


def test_plain_download_is_byte_identical_and_hashed(http_server, tmp_path):
    url = http_server.add_file("/f.bin", DATA)
    got = _client().fetch(url, tmp_path / "f.bin")
    assert (tmp_path / "f.bin").read_bytes() == DATA
    assert got.sha256 == hashlib.sha256(DATA).hexdigest() and got.size == len(DATA)
    assert not (tmp_path / "f.bin.part").exists()


def test_dropped_connection_resumes_with_range_and_if_range(http_server, tmp_path):
    # GIVEN a server that drops the connection half way through the first response
    url = http_server.add_file("/f.bin", DATA)
    http_server.fault("/f.bin", "drop")
    client = _client()
    # WHEN the file is fetched
    client.fetch(url, tmp_path / "f.bin")
    # THEN the second request asked only for the rest, guarded by the first response's ETag
    first, second = http_server.requests_for("/f.bin")
    assert "Range" not in first.headers
    start = int(second.headers["Range"].removeprefix("bytes=").rstrip("-"))
    assert start == len(DATA) // 2  # everything that arrived before the drop is kept
    assert second.headers["If-Range"] == etag_of(DATA)
    assert (tmp_path / "f.bin").read_bytes() == DATA
    assert client.stats.resumed == 1 and client.stats.retries == 1


def test_server_ignoring_range_restarts_cleanly(http_server, tmp_path):
    # GIVEN a drop, then a server that answers the resume with 200 and the whole body
    url = http_server.add_file("/f.bin", DATA)
    http_server.fault("/f.bin", "drop", "ignore-range")
    client = _client()
    client.fetch(url, tmp_path / "f.bin")
    # THEN the 200 body replaced the partial one instead of being appended to it
    assert (tmp_path / "f.bin").read_bytes() == DATA
    assert client.stats.restarted == 1 and client.stats.resumed == 0


def test_changed_object_is_not_spliced(http_server, tmp_path):
    # GIVEN a drop, after which the object changes (its ETag no longer matches If-Range)
    url = http_server.add_file("/f.bin", DATA)
    http_server.fault("/f.bin", "drop")
    changed = b"x" * len(DATA)

    def swap_after_first(handler, query, body) -> bool:
        if len(http_server.requests_for("/f.bin")) > 1:
            http_server.files["/f.bin"] = changed
        return False  # let the file route serve it

    http_server.routes["/f.bin"] = swap_after_first
    _client().fetch(url, tmp_path / "f.bin")
    # THEN the If-Range mismatch produced a full 200 and the file is the new object, not a mix
    assert (tmp_path / "f.bin").read_bytes() == changed


@pytest.mark.parametrize("fault", ["500", "503", "429"])
def test_retryable_status_is_retried(http_server, tmp_path, fault):
    url = http_server.add_file("/f.bin", b"payload")
    http_server.retry_after = "0"
    http_server.fault("/f.bin", fault, fault)
    client = _client()
    client.fetch(url, tmp_path / "f.bin")
    assert (tmp_path / "f.bin").read_bytes() == b"payload"
    assert client.stats.retries == 2


def test_retry_after_is_honoured(http_server, tmp_path):
    # GIVEN a 429 asking for one second
    url = http_server.add_file("/f.bin", b"payload")
    http_server.fault("/f.bin", "429")
    started = time.monotonic()
    _client().fetch(url, tmp_path / "f.bin")
    # THEN the client waited at least that long (its own backoff is 10 ms)
    assert time.monotonic() - started >= 0.95


def test_long_retry_after_is_transient_at_once(http_server, tmp_path):
    url = http_server.add_file("/f.bin", b"payload")
    http_server.retry_after = "3600"
    http_server.fault("/f.bin", "429")
    with pytest.raises(TransientError, match="retry after 3600s"):
        _client().fetch(url, tmp_path / "f.bin")


def test_source_that_stays_down_is_transient(http_server, tmp_path):
    url = http_server.add_file("/f.bin", b"payload")
    http_server.fault("/f.bin", *["503"] * 10)
    with pytest.raises(TransientError, match="unavailable after 3 attempts"):
        _client(attempts=3).fetch(url, tmp_path / "f.bin")
    assert len(http_server.requests_for("/f.bin")) == 3


def test_unreachable_server_is_transient(tmp_path):
    from tests.support.seaweedfs import free_port

    with pytest.raises(TransientError, match="unavailable after 2 attempts"):
        _client(attempts=2).fetch(f"http://127.0.0.1:{free_port()}/x", tmp_path / "x")


@pytest.mark.parametrize(("fault", "error", "match"), [("404", UsageError, "not found"), ("403", None, None)])
def test_client_errors_are_not_retried(http_server, tmp_path, fault, error, match):
    if fault == "403":
        http_server.routes["/f.bin"] = lambda h, q, b: h.send_body(403, b"no") or True
        error, match = UsageError, "access denied"
    else:
        http_server.fault("/f.bin", fault)
    http_server.add_file("/f.bin", b"payload")
    with pytest.raises(error, match=match):
        _client().fetch(http_server.url("/f.bin"), tmp_path / "f.bin")
    assert len(http_server.requests_for("/f.bin")) == 1


def test_checksum_mismatch_refetches_once_then_is_a_data_error(http_server, tmp_path):
    url = http_server.add_file("/f.bin", b"payload")
    with pytest.raises(DataError, match="SHA-256 is"):
        _client().fetch(url, tmp_path / "f.bin", sha256="0" * 64)
    assert len(http_server.requests_for("/f.bin")) == 2
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()


def test_md5_is_checked_when_published(http_server, tmp_path):
    url = http_server.add_file("/f.bin", b"payload")
    got = _client().fetch(url, tmp_path / "f.bin", md5=hashlib.md5(b"payload").hexdigest())
    assert got.md5 == hashlib.md5(b"payload").hexdigest()


def test_retry_after_parsing():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("Wed, 01 Jan 2020 00:00:00 GMT") == 0.0
    assert retry_after_seconds("soon") is None


@pytest.mark.parametrize("call", ["get_bytes", "head", "fetch"])
def test_the_clients_own_headers_go_with_every_request(http_server, tmp_path, call):
    # GIVEN a client with default headers (a source's credentials) and a request that brings headers of its own
    url = http_server.add_file("/f.bin", DATA[:100])
    client = HttpClient(RetryPolicy(attempts=2, timeout=5), headers={"Authorization": "Bearer t0k"})
    # WHEN it asks
    if call == "fetch":
        client.fetch(url, tmp_path / "f.bin", headers={"Accept": "application/octet-stream"})
    else:
        getattr(client, call)(url)
    # THEN the defaults were sent too (urllib3 alone drops them when a request has headers)
    sent = http_server.requests_for("/f.bin")[0].headers
    assert sent["Authorization"] == "Bearer t0k" and sent["User-Agent"] == "irmsia-collect"


def test_a_private_search_shows_no_query_values(http_server, capsys):
    # GIVEN a search whose query holds a patient ID, on a server that fails
    http_server.fault("/qido", "503", "404")
    client = _client(attempts=2)
    # WHEN it runs with private=True THEN neither the retry warning nor the error names the value
    with pytest.raises(UsageError) as caught:
        client.get_json(http_server.url("/qido"), {"PatientID": "PAT-SECRET-7"}, what="QIDO-RS", private=True)
    assert "PAT-SECRET-7" not in str(caught.value) and "PatientID=…" in str(caught.value)
    assert "PAT-SECRET-7" not in capsys.readouterr().err
