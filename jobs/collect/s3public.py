"""Anonymous reads from public S3 buckets (NCI IDC's, or a mirror of them) over the collector's HTTP client.

Requests are path-style (``<endpoint>/<bucket>/<key>``) and unsigned, as ``s5cmd --no-sign-request`` sends them.
``list_objects`` pages through ListObjectsV2 (XML: each object's key, size and ETag); ``download`` streams one object
through ``HttpClient.stream`` (resume with ``Range`` + ``If-Range`` on the ETag, retries, ``Retry-After``) into a
scratch file, and verifies it as it arrives against everything S3 says about it:

* its size, against the listing;
* a single-part ETag (32 hex digits) is the object's MD5;
* a multipart ETag (``<hex>-<parts>``) is the MD5 of its parts' MD5s: the part size is what S3 answers for
  ``HEAD ?partNumber=1``, and the parts' MD5s are computed while the body streams;
* a full-object ``x-amz-checksum-crc32`` or ``-sha256`` (sent with ``x-amz-checksum-mode: ENABLED``; the SHA-256
  is the one the store records anyway, CRC-32 costs little; other algorithms are not computed).

A mismatch downloads the object once more from the start, then is a ``DataError`` (exit 3). The SHA-256 computed on
the way is handed to the store, which therefore never reads the file again.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from xml.etree import ElementTree

from jobs.collect.transfer import HttpClient, PartFile
from jobs.core.errors import DataError, UsageError

log = logging.getLogger("irmsia.collect")

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART = re.compile(r"^([0-9a-f]{32})-(\d+)$")
CHECKSUM_HEADERS = ("x-amz-checksum-sha256", "x-amz-checksum-crc32")


@dataclass(frozen=True)
class S3Object:
    """One listed object: its key, size and ETag (without quotes)."""

    key: str
    size: int
    etag: str

    @property
    def name(self) -> str:
        """The last segment of the key (IDC: ``<crdc_instance_uuid>.dcm``)."""
        return self.key.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Fetched:
    """A verified object in scratch: where, its size and SHA-256, and what it was checked against."""

    path: Path
    size: int
    sha256: str
    checked: tuple[str, ...]


class _CheckedBody(PartFile):
    """A ``BodySink``: ``transfer``'s ``.part`` file with its SHA-256 and MD5, plus the CRC-32 and the per-part
    MD5s of what arrived (for ``x-amz-checksum-crc32`` and multipart ETags)."""

    def __init__(self, part: Path, part_size: int | None) -> None:
        self.part_size = part_size  # before PartFile's __init__, whose restart() reads it
        super().__init__(part, want_sha256=True, want_md5=True)

    def restart(self) -> None:
        super().restart()
        self.crc32 = 0
        self.parts: list[bytes] = []
        self._part_md5 = hashlib.md5(usedforsecurity=False)
        self._part_left = self.part_size or 0

    def _hash(self, data: bytes) -> None:
        super()._hash(data)
        self.crc32 = zlib.crc32(data, self.crc32)
        if self.part_size:
            view = memoryview(data)
            while view:
                take = view[: self._part_left]
                self._part_md5.update(take)
                self._part_left -= len(take)
                view = view[len(take) :]
                if not self._part_left:
                    self.parts.append(self._part_md5.digest())
                    self._part_md5 = hashlib.md5(usedforsecurity=False)
                    self._part_left = self.part_size

    def multipart_etag(self) -> str:
        """The ETag S3 gives a multipart upload of this body with ``part_size`` parts."""
        parts = list(self.parts)
        if self._part_left != self.part_size:  # the last, shorter part
            parts.append(self._part_md5.digest())
        return f"{hashlib.md5(b''.join(parts), usedforsecurity=False).hexdigest()}-{len(parts)}"

    def checksum(self, header: str) -> str:
        """The body's value for an ``x-amz-checksum-*`` header (base64 of the big-endian digest)."""
        raw = self.crc32.to_bytes(4, "big") if header.endswith("crc32") else bytes.fromhex(self.sha256_hex())
        return base64.b64encode(raw).decode()


def _mismatches(body: _CheckedBody, obj: S3Object, headers: Any) -> tuple[list[str], list[str]]:
    """(what was checked, what did not match) for a finished body."""
    checked, bad = ["size"], []
    if body.size != obj.size:
        bad.append(f"size {body.size}, listed {obj.size}")
    if _MD5.match(obj.etag):
        checked.append("md5")
        if body.md5_hex() != obj.etag:
            bad.append(f"MD5 {body.md5_hex()}, ETag {obj.etag}")
    elif _MULTIPART.match(obj.etag) and body.part_size:
        checked.append("multipart-etag")
        if body.multipart_etag() != obj.etag:
            bad.append(f"multipart ETag {body.multipart_etag()}, listed {obj.etag}")
    for header in CHECKSUM_HEADERS:
        value = headers.get(header) if headers is not None else None
        if value and "-" not in value:  # "<checksum>-<parts>" is a composite of the parts, not of the object
            checked.append(header.removeprefix("x-amz-checksum-"))
            if body.checksum(header) != value:
                bad.append(f"{header} {body.checksum(header)}, sent {value}")
    return checked, bad


class PublicS3:
    """Unsigned S3 requests to ``endpoint`` (``https://s3.amazonaws.com``, a mirror, a local SeaweedFS)."""

    def __init__(self, endpoint: str, client: HttpClient, what: str = "S3") -> None:
        self.endpoint = endpoint.rstrip("/")
        self.client = client
        self.what = what
        """How messages name the endpoint's setting (``IRMSIA_IDC_ENDPOINT``)."""

    def url(self, bucket: str, key: str = "") -> str:
        return f"{self.endpoint}/{quote(bucket)}/{quote(key)}"

    def list_objects(self, bucket: str, prefix: str) -> list[S3Object]:
        """Every object under ``prefix`` in ``bucket``, in key order (all ListObjectsV2 pages)."""
        objects: list[S3Object] = []
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            url = f"{self.endpoint}/{quote(bucket)}?{urlencode(query)}"
            data = self.client.get_bytes(url, what=f"{self.what} listing of s3://{bucket}/{prefix}")
            try:
                root = ElementTree.fromstring(data)
            except ElementTree.ParseError as exc:
                raise DataError(
                    f"s3://{bucket}/{prefix}: the listing is not S3 XML ({exc}); check {self.what}"
                ) from exc
            for item in root.iter(f"{_NS}Contents"):
                key, size, etag = (item.findtext(f"{_NS}{t}") for t in ("Key", "Size", "ETag"))
                if key is None or size is None or not size.isdigit():
                    raise DataError(f"s3://{bucket}/{prefix}: a listing entry without Key/Size; check {self.what}")
                objects.append(S3Object(key, int(size), (etag or "").strip('"').lower()))
            if root.findtext(f"{_NS}IsTruncated") != "true":
                break
            token = root.findtext(f"{_NS}NextContinuationToken")
            if not token:
                raise DataError(f"s3://{bucket}/{prefix}: a truncated listing without a continuation token")
        return sorted(objects, key=lambda o: o.key)

    def part_size(self, bucket: str, obj: S3Object) -> int | None:
        """The size of part 1 of a multipart object (``HEAD ?partNumber=1``), or None when S3 does not say."""
        if not _MULTIPART.match(obj.etag):
            return None
        headers = self.client.head(self.url(bucket, obj.key) + "?partNumber=1", ok=(200, 206))
        length = headers.get("Content-Length")
        return int(length) if length and length.isdigit() and int(length) > 0 else None

    def download(self, bucket: str, obj: S3Object, dest: Path) -> Fetched:
        """``obj`` into ``dest`` (via ``dest.part``), verified; one retry from the start on a mismatch."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        body = _CheckedBody(dest.with_name(dest.name + ".part"), self.part_size(bucket, obj))
        url = self.url(bucket, obj.key)
        where = f"s3://{bucket}/{obj.key}"
        for attempt in (1, 2):
            got = self.client.stream(url, body, headers={"x-amz-checksum-mode": "ENABLED"}, what=where)
            checked, bad = _mismatches(body, obj, got["headers"])
            if not bad:
                body.part.replace(dest)
                return Fetched(dest, body.size, body.sha256_hex(), tuple(checked))
            body.restart()
            if attempt == 2:
                raise DataError(f"{where}: {'; '.join(bad)}; the object differs from what S3 lists for it (a "
                                f"damaged mirror? check {self.what})")  # fmt: skip
            log.warning("%s: %s; downloading it again", where, "; ".join(bad))
        raise AssertionError("unreachable")


def check_endpoint(value: str, flag: str) -> None:
    """An S3 endpoint must be an http(s) URL without a path (buckets are addressed path-style under it)."""
    if not re.match(r"^https?://[^/?#]+/?$", value):
        raise UsageError(f"{flag} {value!r}: use an S3 endpoint URL like https://s3.amazonaws.com (no path)")
