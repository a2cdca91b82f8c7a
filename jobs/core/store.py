"""The object store every stage reads and writes: one interface, a file backend and an S3 backend.

Keys are relative, ``/``-separated paths (``raw/demo/x.dcm``). Every object is written with its SHA-256, and
reads verify it at end of stream. Writes are atomic per object: a reader sees the old object, the new one, or
none, never a torn one. Whether a *set* of objects is complete is the stage contract's job (``manifest.py``).
"""

from __future__ import annotations

import bisect
import builtins
import errno
import hashlib
import io
import itertools
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from jobs.core import scratch
from jobs.core.errors import ChecksumMismatch, IrmsiaError, TransientError, UsageError
from jobs.core.hashing import CHUNK
from jobs.core.metrics import stage_metrics

if TYPE_CHECKING:
    from jobs.core.settings import S3Options

DEFAULT_STORE = "./irmsia-data"
_BAD_KEY = re.compile(r"(^/)|(//)|(^|/)\.\.?(/|$)|[\x00-\x1f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


Part = bytes | bytearray | memoryview
"""One piece of an object written from its pieces (``Store.put_parts``); an Arrow buffer is passed as
``memoryview(buffer)``, which copies nothing."""


def parts_size(parts: Sequence[Part]) -> int:
    """The bytes in ``parts`` together."""
    return sum(memoryview(part).nbytes for part in parts)


def parts_sha256(parts: Sequence[Part]) -> str:
    """The SHA-256 of ``parts`` joined, computed without joining them (hashlib lets go of the GIL on each)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


class PartsReader(io.RawIOBase):
    """``parts`` joined, as a seekable read-only stream that never joins them: a request body botocore may read
    for a checksum and rewind to retry."""

    def __init__(self, parts: Sequence[Part]) -> None:
        super().__init__()
        self._views = [view for view in (memoryview(part).cast("B") for part in parts) if view.nbytes]
        self._ends = list(itertools.accumulate(view.nbytes for view in self._views))
        self._size = self._ends[-1] if self._ends else 0
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        done = 0
        while done < out.nbytes and self._pos < self._size:
            at = bisect.bisect_right(self._ends, self._pos)  # the part holding byte self._pos
            view = self._views[at]
            start = self._pos - (self._ends[at] - view.nbytes)
            piece = view[start : start + out.nbytes - done]
            out[done : done + piece.nbytes] = piece
            done += piece.nbytes
            self._pos += piece.nbytes
        return done


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One stored object: its key, size in bytes and SHA-256 (``None`` where a listing does not carry it)."""

    key: str
    size: int
    sha256: str | None = None


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise ``UsageError`` naming it.

    A key is text: a name that is not valid UTF-8 (a file name in another encoding, which Python carries as lone
    surrogates) can be neither an S3 key nor a manifest entry.
    """
    if not key or key.endswith("/") or _BAD_KEY.search(key):
        raise UsageError(f"invalid store key {key!r}: use a relative path without '..', '//' or a trailing '/'")
    if _SURROGATE.search(key):
        raise UsageError(f"invalid store key {printable_name(key)}: not valid UTF-8; rename it in UTF-8")
    return key


class RawStream(Protocol):
    """What ``HashingReader`` wraps: anything with ``read`` and ``close`` (a file, an HTTP body)."""

    def read(self, n: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


def printable_name(name: str) -> str:
    """A file name for a one-line message: its ``repr``, or for a name that is not UTF-8 its raw bytes'."""
    return repr(os.fsencode(name)) if _SURROGATE.search(name) else repr(name)


def source_error(path: str | Path, key: str, exc: OSError) -> IrmsiaError:
    """The error for a local file that could not be read while storing it as ``key``: it names the file and the
    cause, not the store (whose folder or bucket is fine)."""
    where = f"cannot read {printable_name(os.fspath(path))} ({exc.strerror or exc})"
    if exc.errno in (errno.EIO, errno.EAGAIN, errno.ESTALE):
        return TransientError(f"{where} while storing it as {key!r}; retry when the disk is back")
    return UsageError(f"{where} while storing it as {key!r}; fix its permissions, or leave it out")


def names_file(exc: OSError, path: str | Path) -> bool:
    """Whether ``exc`` is about ``path`` (and not about the other file of a copy)."""
    return exc.filename is not None and os.fspath(exc.filename) == os.fspath(path)


class HashingReader(io.RawIOBase):
    """Wraps a byte stream, hashes what passes through, and checks the SHA-256 when the stream ends.

    With no ``expected_sha256`` (an unverified read) nothing is hashed: callers that hash the bytes themselves
    (the index stage) would otherwise pay for SHA-256 twice.
    """

    def __init__(
        self, raw: RawStream, expected_sha256: str | None, name: str, hint: str = "rerun the stage that wrote it"
    ) -> None:
        self._raw = raw
        self._expected = expected_sha256
        self._name = name
        self._hint = hint
        self._hash = hashlib.sha256()
        self._checked = False
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        if n:
            if self._expected:
                self._hash.update(data)
            self.size += n
        else:
            self._finish()
        return n

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def _finish(self) -> None:
        if self._checked:
            return
        self._checked = True
        if self._expected and self._hash.hexdigest() != self._expected:
            raise ChecksumMismatch(
                f"{self._name}: SHA-256 is {self._hash.hexdigest()}, recorded {self._expected}; "
                f"the object is corrupt: {self._hint}"
            )

    def close(self) -> None:
        if not self.closed:
            stage_metrics().bytes_read.inc(self.size)
        try:
            self._raw.close()
        finally:
            super().close()


class Store(ABC):
    """What every backend implements. Keys are validated here; backends see only safe keys."""

    uri: str
    is_local: bool = False
    """Objects are plain files on this machine: readers may open them in place (``local_path``) and a scratch
    file in ``scratch_dir()`` is moved in by a rename, not a copy."""

    # -- writes ---------------------------------------------------------------------------------------------
    @abstractmethod
    def put_file(self, key: str, path: str | Path, sha256: str | None = None) -> ObjectInfo:
        """Upload a local file (streamed; multipart on S3). ``sha256`` skips re-hashing when already known."""

    def move_file(self, key: str, path: str | Path, sha256: str | None = None, size: int | None = None) -> ObjectInfo:
        """Store a local file the caller no longer needs: ``put_file``, then the local file is removed.

        Backends may rename the file into place instead of copying it (the file store does, on one file system);
        ``size``, with ``sha256``, spares them a ``stat``.
        """
        info = self.put_file(key, path, sha256=sha256)
        Path(path).unlink(missing_ok=True)
        return info

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` only if it does not exist (atomic); ``False`` if it already existed."""

    def put_bytes(self, key: str, data: bytes, sha256: str | None = None) -> ObjectInfo:
        """Write a small object held in memory. ``sha256`` skips re-hashing when already known (as ``put_file``)."""
        return self.put_parts(key, [data], sha256=sha256)

    def put_parts(self, key: str, parts: Sequence[Part], sha256: str | None = None) -> ObjectInfo:
        """Write the object ``b"".join(parts)`` without joining them: what a stage renders in pieces (the split's
        outputs are Arrow buffers) costs no copy the size of the object. Otherwise as ``put_bytes``."""
        with self.open_write(key) as fh:
            for part in parts:
                fh.write(part)
        return self.head(key)

    @contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        """Stream an object out: bytes go to a local temporary file, committed atomically on clean exit."""
        check_key(key)
        with tempfile.NamedTemporaryFile(prefix="irmsia-", suffix=".part", dir=self.scratch_dir()) as tmp:
            yield tmp  # type: ignore[misc]
            tmp.flush()
            self.put_file(key, tmp.name)

    def put_many(self, items: Iterable[tuple[str, str | Path]], workers: int = 16) -> list[ObjectInfo]:
        """Upload many ``(key, local path)`` pairs with a bounded pool; results in input order."""
        items = list(items)
        if not items:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
            return list(pool.map(lambda kv: self.put_file(kv[0], kv[1]), items))

    # -- reads ----------------------------------------------------------------------------------------------
    @abstractmethod
    def open_read(self, key: str, verify: bool = True) -> BinaryIO:
        """A stream of the object's bytes; with ``verify`` the SHA-256 is checked when it is read to the end."""

    def get_bytes(self, key: str, verify: bool = True) -> bytes:
        """The whole object; only for small objects (manifests, CSVs, JSON)."""
        with self.open_read(key, verify=verify) as fh:
            return fh.read()

    def get_file(self, key: str, path: str | Path, verify: bool = True) -> ObjectInfo:
        """Download to a local path, atomically (a ``.part`` file renamed when complete and verified)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        digest = hashlib.sha256()
        size = 0
        try:
            with self.open_read(key, verify=verify) as src, open(part, "wb") as dst:
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            os.replace(part, path)
        finally:
            part.unlink(missing_ok=True)
        return ObjectInfo(key, size, digest.hexdigest())

    def local_path(self, key: str) -> Path | None:
        """The local file holding ``key`` when the backend keeps objects as plain files, else ``None``.

        For readers that stream many objects and verify hashes themselves (the index stage).
        """
        check_key(key)
        return None

    @abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Size and recorded SHA-256 of one object; ``ObjectNotFound`` if absent."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, sorted by key (``sha256`` may be ``None``)."""

    def keys(self, prefix: str = "") -> Iterator[str]:
        """The keys ``list`` yields, where a backend can skip fetching sizes."""
        yield from (o.key for o in self.list(prefix))

    def folders(self, prefix: str) -> builtins.list[str]:
        """The names of the "folders" directly under ``prefix`` (``raw/`` -> ``["demo", "lidc"]``), sorted, without
        listing what they hold (``irmsia status`` over a store of millions of objects)."""
        if prefix and not prefix.endswith("/"):
            raise UsageError(f"folders needs a folder prefix ending in '/' (or '' for the root), got {prefix!r}")
        return sorted({key[len(prefix) :].split("/", 1)[0] for key in self.keys(prefix) if "/" in key[len(prefix) :]})

    # -- deletes --------------------------------------------------------------------------------------------
    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object; absent keys are not an error."""

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under ``prefix``; returns how many were removed."""
        if not prefix.endswith("/"):
            raise UsageError(f"delete_prefix needs a folder prefix ending in '/', got {prefix!r}")
        keys = list(self.keys(prefix))
        for key in keys:
            self.delete(key)
        return len(keys)

    def _scratch_area(self) -> Path:
        """Where this store's scratch leases live (``jobs.core.scratch``): here the system's temporary folder."""
        return Path(tempfile.gettempdir()) / f"irmsia-scratch-{os.getuid()}"

    def scratch_dir(self) -> str | None:
        """This process's folder for scratch files that will be stored: a lease in ``_scratch_area()`` (on the
        store's file system where it has one, so they move in by rename), taken on first use."""
        area = self._scratch_area()
        try:
            return str(scratch.lease(area))
        except OSError as exc:
            raise UsageError(f"cannot create scratch space in {area}: {exc.strerror or exc}; set TMPDIR to a "
                             "writable folder") from exc  # fmt: skip

    def sweep_scratch(self) -> None:
        """Remove what runs that have ended (killed, crashed) left in this store's scratch area; a live run's
        scratch is never touched. Stages call it when they start."""
        scratch.sweep(self._scratch_area())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


def open_store(uri: str | None = None, endpoint_url: str | None = None, s3: S3Options | None = None) -> Store:
    """Open the store that ``uri`` names: ``s3://bucket/prefix``, ``file:///path`` or a plain path.

    ``s3``: the S3 store's timeouts and retry budget (default: from the ``IRMSIA_S3_*`` environment variables).
    """
    uri = uri or DEFAULT_STORE
    if uri.startswith("s3://"):
        from jobs.core.s3store import S3Store
        from jobs.core.settings import S3Options

        # outside a stage's settings (the CLI, worker processes), the variables the stage itself reads
        return S3Store(uri, endpoint_url=endpoint_url, options=s3 or S3Options.from_env(os.environ))
    if "://" in uri and not uri.startswith("file://"):
        raise UsageError(f"--store {uri!r}: unsupported scheme; use s3://bucket/prefix, file:///path or a path")
    from jobs.core.filestore import FileStore

    return FileStore(uri)
