"""Inspect one raw object: stream it once for its SHA-256, detect its format, read its header.

This runs in the worker processes. An object is read in one pass: the first ``HEAD_BYTES`` are kept for
format detection and header parsing, the rest only flows through the hash, so memory per worker stays at
about ``HEAD_BYTES`` whatever the file size. On the file store the local file is read directly (no second
hash through the store's verifying reader); on S3 the object is streamed. The SHA-256 is checked against
the one the collect manifest recorded.

Whatever a file does to the parsers (exceptions of any kind, deep recursion, huge allocations) becomes that
file's quarantine reason; only the store's own errors (unavailable, missing) propagate. Third-party warnings
and log records are silenced here: the outcome is the reason, reported once per kind at the end of the stage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from jobs.core.errors import IrmsiaError, ObjectNotFound
from jobs.core.hashing import CHUNK
from jobs.core.store import Store, open_store
from jobs.index.dicom_header import DicomHeader, NeedMoreBytes, UnusableDicom, read_header
from jobs.index.formats import DICOM, Geometry, NotAnImage, geometry, sniff
from jobs.index.pixels import UndecodablePixels, verify_pixels
from jobs.ml.quiet import quiet_decoders

HEAD_BYTES = 1 << 20
"""Leading bytes kept in memory: enough for the header of nearly every DICOM file."""
HEADER_LIMIT = 64 << 20
"""A DICOM header that does not end within this many bytes is quarantined rather than read into memory."""


@dataclass(frozen=True, slots=True)
class Task:
    """One object to inspect, with what the collect manifest says about it."""

    key: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Inspection:
    """What one object turned out to be: its hash and format and header, or why it cannot be used."""

    key: str
    sha256: str | None
    size: int
    format: str | None = None
    dicom: DicomHeader | None = None
    geometry: Geometry | None = None
    reason: str | None = None
    """The quarantine reason; ``None`` for a usable image."""


class ObjectReader:
    """Opens raw objects for reading: local files directly on the file store, streams elsewhere."""

    def __init__(self, store_uri: str) -> None:
        self.store: Store = open_store(store_uri)

    def open(self, key: str) -> BinaryIO:
        path = self.store.local_path(key)
        if path is not None:
            try:
                return open(path, "rb", buffering=0)  # the caller closes it
            except FileNotFoundError as exc:
                raise ObjectNotFound(key) from exc
        return self.store.open_read(key, verify=False)  # we hash it ourselves, against the manifest

    def read_prefix(self, key: str, limit: int) -> bytes:
        """The first ``limit`` bytes of ``key`` (all of it when shorter)."""
        with self.open(key) as fh:
            return _read_up_to(fh, limit)

    def ranges(self, key: str) -> RangeReader:
        """Reads of ``key`` at any offset, for walking structures past the leading bytes."""
        return RangeReader(self, key)


class RangeReader:
    """``read(offset, size)`` over one object: seeks in a local file, skips forward in a stream (reopened to go
    back). Reads come in increasing offsets for the walks here, so a stream is read at most a few times."""

    def __init__(self, reader: ObjectReader, key: str) -> None:
        self._reader, self._key = reader, key
        self._fh: BinaryIO | None = None
        self._pos = 0

    def __call__(self, offset: int, size: int) -> bytes:
        if self._fh is None or (offset < self._pos and not self._fh.seekable()):
            self.close()
            self._fh, self._pos = self._reader.open(self._key), 0
        if self._fh.seekable():
            self._fh.seek(offset)
        else:
            while self._pos < offset and (skipped := len(self._fh.read(min(CHUNK, offset - self._pos)))):
                self._pos += skipped
        data = _read_up_to(self._fh, size)
        self._pos = offset + len(data)
        return data

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _read_up_to(fh: BinaryIO, limit: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < limit:
        chunk = fh.read(limit - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def inspect(reader: ObjectReader, task: Task, verify: bool = False) -> Inspection:
    """Hash, sniff and read the header of ``task.key``; any unusable object comes back with a ``reason``."""
    with quiet_decoders():
        return _inspect(reader, task, verify)


def _inspect(reader: ObjectReader, task: Task, verify: bool) -> Inspection:
    key = task.key
    try:
        with reader.open(key) as fh:
            head = _read_up_to(fh, HEAD_BYTES)
            digest = hashlib.sha256(head)
            size = len(head)
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except ObjectNotFound:
        return Inspection(key, None, 0, reason="listed in the collect manifest but missing from the store")
    except OSError as exc:  # a local file we may not read (permissions, I/O error): this file only
        return Inspection(key, None, 0, reason=f"cannot read the file: {exc.strerror or exc}")
    sha = digest.hexdigest()
    if sha != task.sha256 or size != task.size:
        return Inspection(
            key,
            sha,
            size,
            reason=f"content changed after collect: SHA-256 {sha[:12]}… ({size} bytes) differs from the "
            f"collect manifest's {task.sha256[:12]}… ({task.size} bytes); rerun collect",
        )
    ranges = reader.ranges(key)
    try:
        return _examine(key, sha, size, head, lambda limit: reader.read_prefix(key, limit), verify, ranges)
    finally:
        ranges.close()


def _examine(
    key: str,
    sha: str,
    size: int,
    head: bytes,
    prefix: Callable[[int], bytes],
    verify: bool,
    ranges: Callable[[int, int], bytes] | None = None,
) -> Inspection:
    try:
        fmt = sniff(head)
    except NotAnImage as exc:
        return Inspection(key, sha, size, reason=str(exc))
    dicom = None
    shape = None
    try:
        if fmt == DICOM:
            dicom = _dicom_header(head, size, prefix, ranges)
        else:
            shape = geometry(fmt, head, size)
        if verify:
            verify_pixels(fmt, head if len(head) == size else prefix(size))
    except (UnusableDicom, UndecodablePixels, NotAnImage) as exc:
        return Inspection(key, sha, size, fmt, reason=str(exc))
    except IrmsiaError:
        raise  # the store's errors (unavailable, missing) are the stage's, not this file's
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # a parser bug on this file's bytes (Rust panics derive from BaseException)
        return Inspection(key, sha, size, fmt, reason=unexpected_failure(fmt, exc))
    return Inspection(key, sha, size, fmt, dicom=dicom, geometry=shape)


def unexpected_failure(fmt: str | None, exc: BaseException) -> str:
    """The reason for a failure no check anticipated: named after the format and the exception."""
    message = " ".join(str(exc).split())[:240]
    what = f"{fmt} file" if fmt else "file"
    if isinstance(exc, RecursionError):
        return f"structure nested too deep: the {what} nests beyond the parser's recursion limit"
    if isinstance(exc, MemoryError):
        return f"too large to inspect: the {what} asks for more memory than there is"
    return f"cannot inspect the {what}: {type(exc).__name__}: {message}"


def _dicom_header(
    head: bytes, size: int, prefix: Callable[[int], bytes], ranges: Callable[[int, int], bytes] | None
) -> DicomHeader:
    try:
        return read_header(head, size, ranges)
    except NeedMoreBytes:
        pass
    try:  # a rare long header (large private tags, icon images): read further, up to the limit
        return read_header(prefix(HEADER_LIMIT), size, ranges)
    except NeedMoreBytes:
        raise UnusableDicom(f"DICOM header does not end within the first {HEADER_LIMIT >> 20} MiB") from None
