"""The file-system store: objects are plain files under a root, each carrying its SHA-256.

Each write goes to ``.tmp/`` first (the writing process's scratch lease there, swept once the process is gone:
``jobs.core.scratch``) and is renamed into place, so a killed writer never leaves a torn object.
The data files stay plain files so people can open them. The checksum is an extended attribute of the file
(``user.irmsia.sha256``, the 32-byte digest: it fits inside the inode on ext4 and XFS, so recording it costs no
extra file), set before the rename, so an object and its checksum appear together. Where the file system has no
user extended attributes (older NFS, tmpfs before Linux 6.6) the store falls back to a hidden ``.meta`` tree,
``.meta/<key>.json`` holding ``{"sha256", "size"}`` (how earlier versions kept every checksum; still read).
Copy a store with ``cp -a`` or ``rsync -aX`` to keep the attributes; a file without either record reads like one
dropped in by hand (unverified).
"""

from __future__ import annotations

import builtins
import errno
import io
import itertools
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from jobs.core import scratch
from jobs.core.errors import ObjectNotFound, TransientError, UsageError
from jobs.core.hashing import sha256_file
from jobs.core.store import (
    HashingReader,
    ObjectInfo,
    Part,
    Store,
    check_key,
    names_file,
    parts_sha256,
    parts_size,
    source_error,
)

_HIDDEN = (".meta", ".tmp")
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
SHA_XATTR = "user.irmsia.sha256"
"""The extended attribute holding an object's raw SHA-256 digest (32 bytes)."""
_NO_XATTR = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}


def _replace(src: str | Path, dest: str | Path) -> None:
    """``os.replace``, creating ``dest``'s folder only when it is missing (one syscall in the common case)."""
    try:
        os.replace(src, dest)
    except FileNotFoundError:
        if not os.path.lexists(src):
            raise
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.replace(src, dest)


class FileStore(Store):
    """A store rooted at a local (or mounted) folder, created on first use."""

    is_local = True

    def __init__(self, uri: str) -> None:
        path = uri[len("file://") :] if uri.startswith("file://") else uri
        if not path:
            raise UsageError(f"--store {uri!r}: empty path; use file:///abs/path or a folder path")
        self.root = Path(path).expanduser().resolve()
        self._root = str(self.root)
        self.uri = f"file://{self.root}"
        # temporary names: unique per store object (uuid) and per write (counter), without a syscall per name
        self._tmp_prefix = uuid.uuid4().hex
        self._tmp_count = itertools.count()
        # checksums go into extended attributes until the file system refuses one (then into .meta/ files)
        self._xattrs = hasattr(os, "setxattr")
        # a .meta/ tree from an earlier version or a fallback: a rewritten object must not keep a stale record there
        self._meta_tree = (self.root / ".meta").is_dir()
        self._lease: str | None = None

    # -- paths ----------------------------------------------------------------------------------------------
    def _data(self, key: str) -> Path:
        return self.root / check_key(key)

    def _meta(self, key: str) -> Path:
        return self.root / ".meta" / (key + ".json")

    def _tmp(self) -> Path:
        """A fresh temporary path in this process's scratch lease under ``.tmp/`` (``jobs.core.scratch``)."""
        return Path(self.scratch_dir()) / f"{self._tmp_prefix}-{next(self._tmp_count)}.part"

    def _write_tmp(self, parts: Sequence[Part], sha: str | None = None) -> tuple[Path, bool]:
        """A new temporary file holding ``parts`` joined (one open and a write a part, no buffering or tty checks),
        with ``sha`` as its checksum attribute when given; returns the path and whether the attribute was set."""
        tmp = self._tmp()
        try:
            fd = os.open(tmp, _CREATE, 0o666)
        except FileNotFoundError:
            tmp.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, _CREATE, 0o666)
        try:
            for part in parts:
                view = memoryview(part).cast("B")
                while view:
                    view = view[os.write(fd, view) :]
            tagged = sha is not None and self._tag(fd, sha)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        return tmp, tagged

    def _tag(self, target: int | str | Path, sha: str) -> bool:
        """Set the checksum attribute on an open file or a path; ``False`` if the file system has none."""
        if not self._xattrs:
            return False
        try:
            os.setxattr(target, SHA_XATTR, bytes.fromhex(sha))
        except OSError as exc:
            if exc.errno not in _NO_XATTR:
                raise
            self._xattrs = False  # remembered: one refused attempt per store, not one per object
            return False
        return True

    def _record(self, key: str, sha: str, size: int, tagged: bool) -> None:
        """Record the checksum of an object about to be renamed into place: in ``.meta/`` unless its file is
        tagged, and then drop any stale ``.meta/`` record for the key."""
        if not tagged:
            self._write_meta(key, sha, size)
        elif self._meta_tree:
            self._meta(key).unlink(missing_ok=True)

    def _scratch_area(self) -> Path:
        """Beside the objects, so finished files are renamed into place rather than copied."""
        return self.root / ".tmp"

    def scratch_dir(self) -> str:
        """This process's scratch folder: a lease in ``.tmp/``, taken on first use (sweeping what killed runs left)."""
        if self._lease is None:
            try:
                self._lease = str(scratch.lease(self._scratch_area()))
            except OSError as exc:
                raise self._io("create scratch space in", ".tmp", exc) from exc
        return self._lease

    def _io(self, action: str, key: str, exc: OSError) -> Exception:
        if exc.errno in (errno.ENOSPC, errno.EIO, errno.EAGAIN, errno.ESTALE):
            return TransientError(f"file store {self.uri}: {action} {key!r} failed: {exc.strerror}")
        return UsageError(f"file store {self.uri}: {action} {key!r} failed: {exc}; check the --store folder")

    # -- writes ---------------------------------------------------------------------------------------------
    def put_file(self, key: str, path: str | Path, sha256: str | None = None) -> ObjectInfo:
        data = self._data(key)
        try:
            sha = sha256 or sha256_file(path)
            size = os.path.getsize(path)
        except OSError as exc:
            raise source_error(path, key, exc) from exc
        try:
            tmp = self._tmp()
            try:
                shutil.copyfile(path, tmp)
            except FileNotFoundError:
                if not os.path.exists(path):
                    raise
                tmp.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, tmp)
            self._record(key, sha, size, self._tag(tmp, sha))
            _replace(tmp, data)
        except OSError as exc:
            if names_file(exc, path):
                raise source_error(path, key, exc) from exc
            raise self._io("write", key, exc) from exc
        return ObjectInfo(key, size, sha)

    def move_file(self, key: str, path: str | Path, sha256: str | None = None, size: int | None = None) -> ObjectInfo:
        """Rename the file into place (no copy) when it is on the store's file system; else copy and remove."""
        data = os.path.join(self._root, check_key(key))  # strings, not Paths: this runs once per file unpacked
        try:
            sha = sha256 or sha256_file(path)
            size = os.path.getsize(path) if size is None or sha256 is None else size
        except OSError as exc:
            raise source_error(path, key, exc) from exc
        try:
            self._record(key, sha, size, self._tag(path, sha))
            try:
                _replace(path, data)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                return super().move_file(key, path, sha)
        except OSError as exc:
            raise self._io("write", key, exc) from exc
        return ObjectInfo(key, size, sha)

    def put_bytes(self, key: str, data: bytes, sha256: str | None = None) -> ObjectInfo:
        return self._put(key, [data], sha256)

    def put_parts(self, key: str, parts: Sequence[Part], sha256: str | None = None) -> ObjectInfo:
        return self._put(key, parts, sha256)

    def _put(self, key: str, parts: Sequence[Part], sha256: str | None) -> ObjectInfo:
        target = self._data(key)
        sha = sha256 or parts_sha256(parts)
        size = parts_size(parts)
        try:
            tmp, tagged = self._write_tmp(parts, sha)
            self._record(key, sha, size, tagged)
            _replace(tmp, target)
        except OSError as exc:
            raise self._io("write", key, exc) from exc
        return ObjectInfo(key, size, sha)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        import hashlib

        target = self._data(key)
        sha = hashlib.sha256(data).hexdigest()
        try:
            tmp, tagged = self._write_tmp([data], sha)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(tmp, target)  # link(2) fails if target exists: an exclusive create.
            except FileExistsError:
                return False
            finally:
                tmp.unlink(missing_ok=True)
            if not tagged:
                self._write_meta(key, sha, len(data))
        except OSError as exc:
            raise self._io("write", key, exc) from exc
        return True

    def _write_meta(self, key: str, sha: str, size: int) -> None:
        tmp, _ = self._write_tmp([json.dumps({"sha256": sha, "size": size}).encode()])
        _replace(tmp, self._meta(key))
        self._meta_tree = True

    # -- reads ----------------------------------------------------------------------------------------------
    def _recorded_sha(self, key: str) -> str | None:
        try:
            raw = os.getxattr(self._data(key), SHA_XATTR)
            if len(raw) == 32:
                return raw.hex()
        except (OSError, AttributeError):
            pass  # no attribute (or no attributes on this file system): look for a .meta record
        if not self._meta_tree:
            return None
        try:
            return json.loads(self._meta(key).read_text()).get("sha256")
        except (OSError, ValueError):
            return None  # a file dropped in by hand: no checksum to verify against

    def open_read(self, key: str, verify: bool = True) -> BinaryIO:
        path = self._data(key)
        try:
            raw = open(path, "rb")  # noqa: SIM115 - handed to the caller inside HashingReader
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"{key!r} not found in {self.uri}") from exc
        except OSError as exc:
            raise self._io("read", key, exc) from exc
        expected = self._recorded_sha(key) if verify else None
        return io.BufferedReader(HashingReader(raw, expected, key), buffer_size=1 << 20)

    def local_path(self, key: str) -> Path | None:
        return self._data(key)

    def head(self, key: str) -> ObjectInfo:
        path = self._data(key)
        try:
            size = path.stat().st_size
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"{key!r} not found in {self.uri}") from exc
        if not path.is_file():
            raise ObjectNotFound(f"{key!r} is a folder in {self.uri}, not an object")
        return ObjectInfo(key, size, self._recorded_sha(key))

    def exists(self, key: str) -> bool:
        return self._data(key).is_file()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        yield from (ObjectInfo(key, os.path.getsize(path)) for key, path in self._walk(prefix))

    def keys(self, prefix: str = "") -> Iterator[str]:
        yield from (key for key, _ in self._walk(prefix))  # no stat per file

    def folders(self, prefix: str) -> builtins.list[str]:
        if prefix and not prefix.endswith("/"):
            raise UsageError(f"folders needs a folder prefix ending in '/' (or '' for the root), got {prefix!r}")
        base = self.root / prefix
        try:
            with os.scandir(base) as entries:
                names = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise self._io("list", prefix, exc) from exc
        return sorted(n for n in names if not (prefix == "" and n in _HIDDEN))

    def _walk(self, prefix: str) -> builtins.list[tuple[str, str]]:
        """``(key, path)`` of every object under ``prefix``, sorted by key."""
        # Walk only the folder the prefix names, then filter by the rest of the prefix.
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.is_dir():
            return []
        found: builtins.list[tuple[str, str]] = []
        for dirpath, dirnames, filenames in os.walk(base):
            if Path(dirpath) == self.root:
                dirnames[:] = [d for d in dirnames if d not in _HIDDEN]
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in filenames:
                key = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
                if key.startswith(prefix):
                    found.append((key, os.path.join(dirpath, name)))
        found.sort()
        return found

    # -- deletes --------------------------------------------------------------------------------------------
    def delete(self, key: str) -> None:
        for path in (self._data(key), self._meta(key)) if self._meta_tree else (self._data(key),):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise self._io("delete", key, exc) from exc
