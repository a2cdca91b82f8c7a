"""HTTP transfers for every collector: streamed to disk, resumed with ``Range`` + ``If-Range``, retried, verified.

* Streaming: bodies go to a ``.part`` file in 1 MiB chunks and are hashed on the way; never held in memory.
  ``stream`` hands them to any ``BodySink`` instead (``zipstream.ZipStream`` unpacks a ZIP as it arrives).
* Resume: after a dropped connection the next attempt asks for the rest (``Range: bytes=N-``) guarded by
  ``If-Range`` with the validator (strong ETag or Last-Modified) of the first response. A server that answers
  200 instead of 206 (Range ignored, or the object changed) is detected and the file restarts cleanly.
* Retries: connection errors, timeouts, truncated bodies, 408/429/5xx are retried with exponential backoff,
  honouring ``Retry-After``; other 4xx fail at once with a message naming the URL. When attempts run out the
  error is ``TransientError`` (exit 75) so an orchestrator can retry the whole pod later.
* Verification: the size must match ``Content-Length``/``Content-Range``; SHA-256 or MD5 where the source
  publishes one. A checksum mismatch restarts the download once, then is a ``DataError``.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

import urllib3
from urllib3.util.retry import Retry

from jobs.collect.telemetry import count_transfer
from jobs.core.errors import DataError, IrmsiaError, TransientError, UsageError
from jobs.core.logs import redact
from jobs.core.progress import track
from jobs.core.urls import public_url, request_parts

log = logging.getLogger("irmsia.collect.transfer")

# read1() hands over whatever has arrived (up to this much), so a dropped connection loses nothing that was
# received: the resume starts exactly where the data stopped.
STREAM_CHUNK = 1 << 20
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How hard a request tries before the source counts as unavailable."""

    attempts: int = 5
    """Tries per request, the first included."""
    timeout: float = 60.0
    """Seconds to wait for a connection, and for each read."""
    backoff: float = 1.0
    """Wait before the second try; doubles each time (plus jitter), capped by ``max_backoff``."""
    max_backoff: float = 60.0
    max_retry_after: float = 300.0
    """A ``Retry-After`` longer than this ends the stage with exit 75 rather than keeping a pod waiting."""

    def wait(self, attempt: int) -> float:
        """Backoff before try number ``attempt + 1`` (``attempt`` >= 1)."""
        base = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return base + random.uniform(0, base / 4)


@dataclass
class TransferStats:
    """Byte and request counters across threads (logged at the end; the metrics of a collect run).

    On a terminal a tqdm bar shows the bytes received by all transfers together.
    """

    bytes_downloaded: int = 0
    requests: int = 0
    retries: int = 0
    resumed: int = 0
    restarted: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _bar: Any = field(default=None, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)
        count_transfer(**counts)

    def received(self, n: int) -> None:
        """Count ``n`` body bytes as they arrive (and move the progress bar)."""
        with self._lock:
            self.bytes_downloaded += n
            if self._bar is None and sys.stderr.isatty():
                try:
                    from tqdm import tqdm
                except ImportError:
                    self._bar = False
                else:
                    self._bar = tqdm(unit="B", unit_scale=True, unit_divisor=1024, desc="download", leave=False)
            if self._bar:
                self._bar.update(n)
        count_transfer(bytes_downloaded=n)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


@dataclass(frozen=True)
class Downloaded:
    """A completed download: where it is, its size and checksums, and the server's validators."""

    path: Path
    size: int
    sha256: str
    md5: str | None
    etag: str | None
    last_modified: str | None


class BodySink(Protocol):
    """Where a streamed response body goes. The client calls ``rewind`` before a resumed attempt and
    ``restart`` when the body starts over; ``pause`` ends every attempt."""

    def rewind(self) -> int:
        """Drop whatever cannot be kept; the number of body bytes kept (the ``Range`` to ask for next)."""
        ...

    def restart(self) -> None:
        """Drop everything: the next bytes written are the body from its first byte."""
        ...

    def write(self, data: bytes) -> None: ...

    def pause(self) -> None:
        """Release open files until the next attempt (or the end)."""
        ...


class PartFile:
    """The sink ``fetch`` uses: a ``.part`` file, hashed on the way (the hashes survive a resume).

    A resumed attempt appends and the digests carry on; a restart starts them over. A source that checks more
    (``s3public``'s CRC-32 and per-part MD5s) extends ``restart`` and ``_hash``.
    """

    def __init__(self, part: Path, want_sha256: bool, want_md5: bool) -> None:
        self.part = part
        self.want_sha256, self.want_md5 = want_sha256, want_md5
        self._fh: Any = None
        self.restart()

    def restart(self) -> None:
        self.pause()
        self.part.unlink(missing_ok=True)
        self.sha256 = hashlib.sha256() if self.want_sha256 else None
        self.md5 = hashlib.md5(usedforsecurity=False) if self.want_md5 else None
        self.size = 0

    def rewind(self) -> int:
        self.pause()
        if not self.part.exists():
            self.restart()
        return self.size

    def write(self, data: bytes) -> None:
        if self._fh is None:
            self._fh = open(self.part, "ab")  # noqa: SIM115 - kept open across writes, closed by pause()
        self._fh.write(data)
        self._hash(data)
        self.size += len(data)

    def _hash(self, data: bytes) -> None:
        for digest in (self.sha256, self.md5):
            if digest is not None:
                digest.update(data)

    def pause(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def sha256_hex(self) -> str:
        return self.sha256.hexdigest() if self.sha256 else ""

    def md5_hex(self) -> str | None:
        return self.md5.hexdigest() if self.md5 else None


class Retryable(Exception):
    """One attempt failed in a way worth retrying; ``wait`` overrides the backoff (``Retry-After``)."""

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def fatal_status(url: str, status: int, what: str = "") -> IrmsiaError:
    """The error for a status that retrying cannot fix."""
    target = f"{what} ({redact(url)})" if what else redact(url)
    if status in (401, 403):
        return UsageError(f"HTTP {status} for {target}: access denied; check the URL and the source's credentials")
    if status in (404, 410):
        return UsageError(f"HTTP {status} for {target}: not found; check the URL, --ref or collection name")
    return DataError(f"HTTP {status} for {target}: the server refused the request; check the URL and parameters")


def query_keys_only(url: str) -> str:
    """``url`` with every query value replaced by ``…`` (for messages about searches that hold patient data)."""
    base, _, query = url.partition("?")
    if not query:
        return url
    keys = [part.split("=", 1)[0] for part in query.split("&") if part]
    return base + "?" + "&".join(f"{k}=…" for k in keys)


def _validator(headers: Mapping[str, str]) -> str | None:
    """A validator usable in If-Range: a strong ETag, else Last-Modified (weak ETags are not allowed)."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified")


class HttpClient:
    """A pooled HTTP client shared by a collect run's threads. Never logs credentials or query secrets.

    A URL's userinfo (``https://user:password@host/…``, ``https://TOKEN@host/…``) is sent as HTTP Basic auth.
    """

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        stats: TransferStats | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self.stats = stats or TransferStats()
        self._sleep = sleep
        # urllib3 only follows redirects here; every other retry is ours (backoff, Retry-After, resume)
        retries = Retry(total=None, connect=0, read=0, status=0, other=0, redirect=10, raise_on_status=False)
        self.pool = urllib3.PoolManager(
            num_pools=32,
            maxsize=64,
            headers={"User-Agent": "irmsia-collect", **(headers or {})},
            retries=retries,
            timeout=urllib3.Timeout(connect=self.policy.timeout, read=self.policy.timeout),
        )

    # -- the retry loop ---------------------------------------------------------------------------------------
    def retrying(self, url: str, attempt_once: Callable[[], Any]) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                return attempt_once()
            except (Retryable, urllib3.exceptions.HTTPError) as exc:
                reason = str(exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc)
                wait = exc.wait if isinstance(exc, Retryable) and exc.wait is not None else None
                if wait is not None and wait > self.policy.max_retry_after:
                    raise TransientError(
                        f"{redact(url)}: the server asks to retry after {wait:.0f}s ({reason}); rerun later"
                    ) from exc
                if attempt >= self.policy.attempts:
                    raise TransientError(
                        f"{redact(url)}: unavailable after {attempt} attempts ({reason}); rerun later, it is safe"
                    ) from exc
                wait = self.policy.wait(attempt) if wait is None else wait
                self.stats.add(retries=1)
                log.warning("%s: %s; retry %d/%d in %.1fs", redact(url), reason, attempt, self.policy.attempts - 1,
                            wait)  # fmt: skip
                self._sleep(wait)

    def _open(self, method: str, url: str, headers: Mapping[str, str] | None = None, body: bytes | None = None):
        self.stats.add(requests=1)
        # userinfo becomes an Authorization header (urllib3 would drop it); it is removed on a cross-host redirect
        target, auth = request_parts(url)
        # urllib3 sends a pool's default headers only with requests that bring none of their own: merge them
        merged = {**self.pool.headers, **auth, **(headers or {})}
        resp = self.pool.request(method, target, headers=merged, body=body, preload_content=False)
        if resp.status in RETRY_STATUS:
            wait = retry_after_seconds(resp.headers.get("Retry-After"))
            resp.drain_conn()
            resp.release_conn()
            raise Retryable(f"HTTP {resp.status}", wait)
        return resp

    # -- small requests ---------------------------------------------------------------------------------------
    def get_bytes(self, url: str, params: Mapping[str, str] | None = None, what: str = "",
                  private: bool = False) -> bytes:  # fmt: skip
        """A small response body (API calls), with retries. ``private``: the query's values (patient IDs in a
        PACS search) are shown in no log line or message, only its keys."""
        full = f"{url}?{urlencode(params)}" if params else url
        shown = query_keys_only(full) if private else full

        def once() -> bytes:
            resp = self._open("GET", full)
            try:
                if resp.status != 200:
                    raise fatal_status(shown, resp.status, what)
                return resp.read()
            finally:
                resp.release_conn()

        return self.retrying(shown, once)

    def get_json(self, url: str, params: Mapping[str, str] | None = None, what: str = "",
                 private: bool = False) -> Any:  # fmt: skip
        """A JSON API response; an empty body is an empty list (NBIA answers no matches that way)."""
        data = self.get_bytes(url, params, what, private)
        if not data.strip():
            return []
        try:
            return json.loads(data)
        except ValueError as exc:
            where = what or redact(query_keys_only(url) if private else url)
            raise DataError(f"{where}: the server sent invalid JSON ({exc}); check the base URL") from exc

    def head(self, url: str, ok: tuple[int, ...] = (200,)) -> Mapping[str, str]:
        """Response headers of a HEAD request (validators for idempotence checks); ``ok``: the statuses that
        answer it (S3 answers ``HEAD ?partNumber=1`` with 206)."""

        def once():
            resp = self._open("HEAD", url)
            resp.release_conn()
            if resp.status not in ok:
                raise fatal_status(url, resp.status)
            return resp.headers

        return self.retrying(url, once)

    # -- downloads --------------------------------------------------------------------------------------------
    def fetch(
        self,
        url: str,
        dest: Path,
        *,
        sha256: str | None = None,
        md5: str | None = None,
        headers: Mapping[str, str] | None = None,
        what: str = "",
        hashed: bool = True,
    ) -> Downloaded:
        """Download ``url`` to ``dest`` (atomically, via ``dest.part``), resuming and retrying as needed.

        ``hashed=False`` skips the SHA-256 of the download (``Downloaded.sha256`` is then empty) when the caller
        verifies the content another way and does not record it.
        """
        dest.parent.mkdir(parents=True, exist_ok=True)
        body = PartFile(dest.with_name(dest.name + ".part"), hashed or bool(sha256), md5 is not None)
        for verify_try in (1, 2):
            validators = self.stream(url, body, headers=headers, what=what)
            got_sha = body.sha256_hex()
            got_md5 = body.md5_hex()
            bad = (sha256 and got_sha != sha256 and ("SHA-256", sha256, got_sha)) or (
                md5 and got_md5 != md5 and ("MD5", md5, got_md5)
            )
            if not bad:
                body.part.replace(dest)
                return Downloaded(dest, body.size, got_sha, got_md5, validators["etag"], validators["last_modified"])
            body.restart()
            if verify_try == 2:
                kind, expected, got = bad
                raise DataError(
                    f"{what or redact(url)}: {kind} is {got}, expected {expected}; the source file differs from "
                    "the published checksum (check the URL/--sha256, or report it to the source)"
                )
            log.warning("%s: checksum mismatch; downloading again from the start", redact(url))
            self.stats.add(restarted=1)
        raise AssertionError("unreachable")

    def stream(self, url: str, sink: BodySink, *, headers: Mapping[str, str] | None = None,
               what: str = "") -> dict[str, Any]:  # fmt: skip
        """Send the body of ``url`` into ``sink``, resuming (``Range`` + ``If-Range``) and retrying as needed.

        Returns the server's validators (``etag``, ``last_modified``) and ``headers``, the headers of the response
        that sent the body's first byte (a full-object checksum is only on that one). Errors the sink raises (a
        corrupt archive) end the transfer at once; the caller decides whether to try again.
        """
        state: dict[str, Any] = {
            "validator": None,
            "etag": None,
            "last_modified": None,
            "headers": urllib3.HTTPHeaderDict(),
        }
        # each attempt starts the sink over (no validator yet) or rewinds it, and pauses it when it ends
        self.retrying(url, lambda: self._receive_once(url, sink, state, headers, what))
        return {"etag": state["etag"], "last_modified": state["last_modified"], "headers": state["headers"]}

    def _receive_once(self, url: str, sink: BodySink, state: dict[str, Any], headers, what: str) -> None:
        # without a validator from the first response a resume could splice two versions: start over instead
        offset = sink.rewind() if state["validator"] else 0
        if not offset:
            sink.restart()
        request_headers = dict(headers or {})
        if offset:
            request_headers["Range"] = f"bytes={offset}-"
            request_headers["If-Range"] = state["validator"]
        resp = self._open("GET", url, request_headers)
        try:
            if resp.status == 416:  # our partial is longer than the object: it changed, start over
                sink.restart()
                state["validator"] = None
                raise Retryable("HTTP 416 on resume")
            if resp.status not in (200, 206):
                raise fatal_status(url, resp.status, what)
            total: int | None
            if resp.status == 206:
                match = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
                if not match or int(match.group(1)) != offset:
                    sink.restart()
                    state["validator"] = None
                    raise Retryable(f"unexpected Content-Range {resp.headers.get('Content-Range')!r}")
                total = None if match.group(3) == "*" else int(match.group(3))
                self.stats.add(resumed=1)
                log.info("%s: resuming at byte %d", redact(url), offset)
            else:
                if offset:
                    log.warning("%s: server ignored the Range request (200, not 206); restarting", redact(url))
                    self.stats.add(restarted=1)
                    sink.restart()
                offset = 0
                state["headers"] = urllib3.HTTPHeaderDict(resp.headers)
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
            state["validator"] = _validator(resp.headers)
            state["etag"] = resp.headers.get("ETag")
            state["last_modified"] = resp.headers.get("Last-Modified")
            size = offset
            with track(f"download {what or public_url(url)}", total, unit="B", done=offset) as task:
                while chunk := resp.read1(STREAM_CHUNK):
                    sink.write(chunk)
                    size += len(chunk)
                    self.stats.received(len(chunk))
                    task.advance(len(chunk))
            if total is not None and size != total:
                raise Retryable(f"body ended at {size} of {total} bytes")
        except BaseException:
            resp.close()  # the connection may hold unread body bytes: never hand it to the next request
            raise
        finally:
            sink.pause()
            resp.release_conn()
