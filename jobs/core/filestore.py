"""The file-system store: objects are plain files under a root, checksums in a hidden ``.meta`` tree.

Each write goes to ``.tmp/`` first and is renamed into place, so a killed writer never leaves a torn object.
The data files stay plain files so people can open them; ``.meta/<key>.json`` holds ``{"sha256", "size"}``.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from jobs.core.errors import ObjectNotFound, TransientError, UsageError
from jobs.core.hashing import sha256_file
from jobs.core.store import HashingReader, ObjectInfo, Store, check_key

_HIDDEN = (".meta", ".tmp")


class FileStore(Store):
    """A store rooted at a local (or mounted) folder, created on first use."""

    def __init__(self, uri: str) -> None:
        path = uri[len("file://") :] if uri.startswith("file://") else uri
        if not path:
            raise UsageError(f"--store {uri!r}: empty path; use file:///abs/path or a folder path")
        self.root = Path(path).expanduser().resolve()
        self.uri = f"file://{self.root}"

    # -- paths ----------------------------------------------------------------------------------------------
    def _data(self, key: str) -> Path:
        return self.root / check_key(key)

    def _meta(self, key: str) -> Path:
        return self.root / ".meta" / (key + ".json")

    def _tmp(self) -> Path:
        tmp = self.root / ".tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp / f"{uuid.uuid4().hex}.part"

    def _spool_dir(self) -> str | None:
        tmp = self.root / ".tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return str(tmp)

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
            tmp = self._tmp()
            shutil.copyfile(path, tmp)
            self._write_meta(key, sha, size)
            data.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, data)
        except OSError as exc:
            raise self._io("write", key, exc) from exc
        return ObjectInfo(key, size, sha)

    def move_file(self, key: str, path: str | Path, sha256: str | None = None) -> ObjectInfo:
        """Rename the file into place (no copy) when it is on the store's file system; else copy and remove."""
        data = self._data(key)
        try:
            sha = sha256 or sha256_file(path)
            size = os.path.getsize(path)
            self._write_meta(key, sha, size)
            data.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(path, data)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                return super().move_file(key, path, sha)
        except OSError as exc:
            raise self._io("write", key, exc) from exc
        return ObjectInfo(key, size, sha)

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        import hashlib

        target = self._data(key)
        sha = hashlib.sha256(data).hexdigest()
        try:
            tmp = self._tmp()
            tmp.write_bytes(data)
            self._write_meta(key, sha, len(data))
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
        except OSError as exc:
            raise self._io("write", key, exc) from exc
        return ObjectInfo(key, len(data), sha)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        import hashlib

        target = self._data(key)
        try:
            tmp = self._tmp()
            tmp.write_bytes(data)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(tmp, target)  # link(2) fails if target exists: an exclusive create.
            except FileExistsError:
                return False
            finally:
                tmp.unlink(missing_ok=True)
            self._write_meta(key, hashlib.sha256(data).hexdigest(), len(data))
        except OSError as exc:
            raise self._io("write", key, exc) from exc
        return True

    def _write_meta(self, key: str, sha: str, size: int) -> None:
        meta = self._meta(key)
        meta.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp()
        tmp.write_text(json.dumps({"sha256": sha, "size": size}))
        os.replace(tmp, meta)

    # -- reads ----------------------------------------------------------------------------------------------
    def _recorded_sha(self, key: str) -> str | None:
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
        return io.BufferedReader(HashingReader(raw, expected, key), buffer_size=1 << 20)  # type: ignore[return-value]

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
        # Walk only the folder the prefix names, then filter by the rest of the prefix.
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.is_dir():
            return
        found: list[ObjectInfo] = []
        for dirpath, dirnames, filenames in os.walk(base):
            if Path(dirpath) == self.root:
                dirnames[:] = [d for d in dirnames if d not in _HIDDEN]
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in filenames:
                key = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
                if key.startswith(prefix):
                    found.append(ObjectInfo(key, os.path.getsize(os.path.join(dirpath, name))))
        found.sort(key=lambda o: o.key)
        yield from found

    # -- deletes --------------------------------------------------------------------------------------------
    def delete(self, key: str) -> None:
        for path in (self._data(key), self._meta(key)):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise self._io("delete", key, exc) from exc
