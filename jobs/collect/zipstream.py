"""Unpack a ZIP while it downloads: each member CRC-tested, hashed and written to scratch as its bytes arrive.

``ZipStream`` is a body sink for ``HttpClient.stream``: it reads the ZIP front to back (local headers, member
data, data descriptors), so the archive is never written to disk whole, read back, or held in memory. The safety
rules are those of ``archive.extract``: member names are checked before anything is written (absolute paths and
``..`` refused), the uncompressed total is capped as it is written (zip bombs), and every member's CRC-32 and
sizes are verified. The central directory that ends the archive must then list exactly the members that were
read, with the same names, CRCs and sizes, and no links; only after ``finish`` has checked it does the caller
move anything into the store, so a corrupt or truncated ZIP never reaches it.

Resuming: the stream remembers where the entry being read began, so after a dropped connection the download
continues (``Range``) from that member's local header; the partial member is discarded. ZIPs that cannot be read
front to back (a stored member of unknown size, a compression method other than stored or deflate) raise
``NotStreamable``: the caller then downloads the archive to disk and uses ``archive.extract``.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.collect.archive import Member, budget_error, corrupt_zip, refuse_zip_link, remove_tree, safe_member_name
from jobs.collect.telemetry import count_archive
from jobs.core.errors import DataError

_LOCAL, _CENTRAL, _END, _END64, _LOCATOR64, _DESCRIPTOR, _SIGNATURE = (
    0x04034B50, 0x02014B50, 0x06054B50, 0x06064B50, 0x07064B50, 0x08074B50, 0x05054B50)  # fmt: skip
_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")  # signature … name length, extra length (30 bytes)
_CENTRAL_HEADER = struct.Struct("<IHHHHHHIIIHHHHHII")  # signature … local header offset (46 bytes)
_ZIP64_EXTRA = 0x0001
_MAX_CENTRAL = 64 << 20
"""The most central-directory bytes kept in memory (about 300,000 entries); more is refused as malformed."""
_INFLATE_STEP = 4 << 20
"""Inflated bytes produced per call: a small deflated chunk can expand 1000-fold, memory stays bounded."""
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


class NotStreamable(Exception):
    """The ZIP needs its central directory first (read it from disk with ``archive.extract`` instead)."""


@dataclass(slots=True)
class _Entry:
    """The local entry being read: what its header declares and what has been checked so far."""

    name: str
    rel: str | None
    """The safe relative path it is written to; ``None`` for folders and OS noise (checked, not kept)."""
    offset: int
    flags: int
    method: int
    crc: int
    csize: int
    usize: int
    zip64: bool
    fd: int | None = None
    path: Path | None = None
    digest: Any = None
    running_crc: int = 0
    written: int = 0
    consumed: int = 0
    inflater: Any = None

    @property
    def sizes_follow(self) -> bool:
        """Whether CRC and sizes come in a data descriptor after the data (general purpose flag bit 3)."""
        return bool(self.flags & 0x08)


class ZipStream:
    """A ZIP unpacked into ``dest`` as it arrives; ``finish`` verifies the end of the archive and lists the files.

    The body-sink protocol of ``jobs.collect.transfer``: ``write`` takes the next bytes, ``rewind`` drops what
    cannot be kept after an interruption and says where to continue, ``restart`` drops everything, ``pause``
    releases open files between attempts.
    """

    def __init__(self, dest: Path, max_bytes: int, archive: str) -> None:
        self.dest = dest
        self.max_bytes = max_bytes
        self.archive = archive
        self._folders: set[Path] = set()
        self._reset()

    # -- the body-sink protocol -------------------------------------------------------------------------------
    def restart(self) -> None:
        """Forget everything: the next bytes are the archive from its first byte."""
        self._drop_partial()
        remove_tree(self.dest)
        self._folders.clear()
        self._reset()

    def rewind(self) -> int:
        """Drop the entry being read; the offset of its first byte, where a resumed download must continue."""
        self._drop_partial()
        self._offset = self._resume_at
        self._buf.clear()
        self._state = "central" if self._resume_at == self._central_at else "header"
        return self._offset

    def pause(self) -> None:
        """Between attempts: nothing to release (a partial member's file is dropped by ``rewind``)."""

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._state == "data":
                used = self._member_bytes(view)
            elif self._state == "central":
                if len(self._buf) + len(view) > _MAX_CENTRAL:
                    raise self._corrupt("its central directory is implausibly large")
                self._buf += view
                used = len(view)
            elif self._state == "done":
                raise self._corrupt("bytes follow the end of the archive")
            else:
                used = self._structure_bytes(view)
            self._offset += used
            view = view[used:]

    def finish(self) -> list[Member]:
        """Check the central directory against the members read; the files written, sorted by name."""
        if self._state == "data" or (self._state == "header" and self._buf):
            raise self._corrupt("it ends inside a member")
        if self._state != "central":
            raise self._corrupt("it has no central directory")
        self._check_central(bytes(self._buf))
        self._state = "done"
        count_archive()
        return sorted(self._members.values(), key=lambda m: m.name)

    def abort(self) -> None:
        """Remove everything written (the archive was refused)."""
        self._drop_partial()
        remove_tree(self.dest)

    # -- state ------------------------------------------------------------------------------------------------
    def _reset(self) -> None:
        self._state = "header"  # header | descriptor | data | central | done
        self._offset = 0  # bytes of the archive consumed before the piece being written
        self._struct_at = 0  # where the header or descriptor being buffered began
        self._resume_at: int = 0  # where the entry being read (its local header) began
        self._central_at: int = -1
        self._buf: bytearray = bytearray()
        self._entry: _Entry | None = None
        self._entries: dict[int, tuple[str, int, int, int]] = {}  # local header offset -> (name, crc, csize, usize)
        self._members: dict[str, Member] = {}
        self._budget = self.max_bytes

    def _drop_partial(self) -> None:
        entry, self._entry = self._entry, None
        if entry is None:
            return
        if entry.fd is not None:
            os.close(entry.fd)
            entry.fd = None
        if entry.path is not None:
            entry.path.unlink(missing_ok=True)
        if entry.rel is not None:
            self._budget += entry.written

    def _corrupt(self, why: str) -> DataError:
        return corrupt_zip(self.archive, why)

    # -- headers and descriptors ------------------------------------------------------------------------------
    def _structure_bytes(self, view: memoryview) -> int:
        """Buffer header or descriptor bytes until the structure is complete, then act on it; bytes used."""
        if not self._buf:
            self._struct_at = self._offset
            if self._state == "header":
                self._resume_at = self._offset
        need = self._needed()
        take = min(need - len(self._buf), len(view))
        self._buf += view[:take]
        if len(self._buf) == need and self._needed() == need:  # complete: the size no longer grows
            if self._state == "header":
                self._header()
            else:
                self._descriptor()
        return take

    def _needed(self) -> int:
        """Bytes the structure being read needs, as far as the buffer tells so far."""
        buf = self._buf
        if self._state == "descriptor":
            assert self._entry is not None
            size = 24 if self._entry.zip64 else 16  # with the optional signature
            if len(buf) >= 4 and struct.unpack_from("<I", buf)[0] != _DESCRIPTOR:
                size -= 4
            return size if len(buf) >= 4 else 4
        if len(buf) < 4:
            return 4
        if struct.unpack_from("<I", buf)[0] != _LOCAL:
            return 4  # the central directory (or garbage): handled by _header
        if len(buf) < _LOCAL_HEADER.size:
            return _LOCAL_HEADER.size
        *_, name_len, extra_len = _LOCAL_HEADER.unpack_from(buf)
        return _LOCAL_HEADER.size + name_len + extra_len

    def _header(self) -> None:
        buf = self._buf
        signature = struct.unpack_from("<I", buf)[0]
        if signature in (_CENTRAL, _END, _END64):
            if self._struct_at == 0 and signature != _END:
                raise self._corrupt("it starts with a central directory")
            self._central_at = self._resume_at = self._struct_at
            self._state = "central"  # the buffer keeps the signature: _check_central parses from it
            return
        if signature != _LOCAL:
            if self._struct_at == 0:
                raise DataError(f"{self.archive}: not a zip archive; check the source URL")
            raise self._corrupt(f"unexpected bytes at offset {self._struct_at}")
        _, _, flags, method, _, _, crc, csize, usize, name_len, _ = _LOCAL_HEADER.unpack_from(buf)
        raw_name = bytes(buf[_LOCAL_HEADER.size : _LOCAL_HEADER.size + name_len])
        extra = bytes(buf[_LOCAL_HEADER.size + name_len :])
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
        rel = safe_member_name(name, self.archive)  # path traversal is refused before anything is written
        if flags & 0x01:
            raise DataError(f"{self.archive}: member {name!r} is encrypted; refusing to extract")
        if rel is not None and rel in self._members:
            raise DataError(f"{self.archive}: member {name!r} appears twice; refusing to extract an ambiguous ZIP")
        zip64 = _extra_fields(extra).get(_ZIP64_EXTRA)  # its presence also widens the data descriptor
        if 0xFFFFFFFF in (csize, usize):
            if zip64 is None or len(zip64) < 16:
                raise self._corrupt("a ZIP64 member lacks its sizes")
            usize, csize = struct.unpack_from("<QQ", zip64)
        if method not in (0, 8) or (method == 0 and flags & 0x08):
            raise NotStreamable(f"{self.archive}: member {name!r} (method {method}, flags {flags:#x})")
        entry = _Entry(name, rel, self._struct_at, flags, method, crc, csize, usize, zip64 is not None,
                       digest=hashlib.sha256() if rel is not None else None,
                       inflater=zlib.decompressobj(-15) if method == 8 else None)  # fmt: skip
        if rel is not None and not entry.sizes_follow and usize > self._budget:
            raise budget_error(self.archive, self.max_bytes)
        self._buf.clear()
        self._entry = entry
        self._state = "data"
        if rel is not None:
            entry.path = self.dest / rel
            if entry.path.parent not in self._folders:
                entry.path.parent.mkdir(parents=True, exist_ok=True)
                self._folders.add(entry.path.parent)
            entry.fd = os.open(entry.path, _CREATE, 0o666)
        if not entry.sizes_follow and csize == 0:
            self._end_of_data()

    def _descriptor(self) -> None:
        entry = self._entry
        assert entry is not None
        buf = self._buf
        fields = buf[4:] if struct.unpack_from("<I", buf)[0] == _DESCRIPTOR and len(buf) in (16, 24) else buf
        crc, csize, usize = struct.unpack_from("<IQQ" if entry.zip64 else "<III", fields)
        self._buf.clear()
        entry.crc, entry.csize, entry.usize = crc, csize, usize
        self._complete(entry)

    # -- member data ------------------------------------------------------------------------------------------
    def _member_bytes(self, view: memoryview) -> int:
        """Take the current member's (compressed) bytes from ``view``; bytes used."""
        entry = self._entry
        assert entry is not None
        if not entry.sizes_follow:
            view = view[: entry.csize - entry.consumed]
        if entry.inflater is None:
            self._emit(entry, view)
            used = len(view)
        else:
            used = self._inflate(entry, view)
        entry.consumed += used
        # a deflate stream ends itself (early, if the header lied: _complete then refuses the sizes)
        if (entry.inflater is not None and entry.inflater.eof) or (
            not entry.sizes_follow and entry.consumed == entry.csize
        ):
            self._end_of_data()
        return used

    def _inflate(self, entry: _Entry, view: memoryview) -> int:
        inflater = entry.inflater
        assert inflater is not None
        data: bytes | memoryview = view
        while data and not inflater.eof:
            try:
                out = inflater.decompress(data, _INFLATE_STEP)
            except zlib.error as exc:
                raise self._corrupt(f"member {entry.name!r} does not inflate: {exc}") from exc
            self._emit(entry, out)
            data = inflater.unconsumed_tail
        if inflater.eof:
            return len(view) - len(inflater.unused_data)
        return len(view)

    def _emit(self, entry: _Entry, data: bytes | memoryview) -> None:
        """Checksum, count and write one piece of a member's content."""
        if not data:
            return
        entry.running_crc = zlib.crc32(data, entry.running_crc)
        entry.written += len(data)
        if entry.rel is None:
            return  # a folder or OS noise: checked, not kept
        self._budget -= len(data)
        if self._budget < 0:
            raise budget_error(self.archive, self.max_bytes)
        assert entry.digest is not None and entry.fd is not None
        entry.digest.update(data)
        view = memoryview(data)
        while view:  # os.write may write less than asked
            view = view[os.write(entry.fd, view) :]

    def _end_of_data(self) -> None:
        entry = self._entry
        assert entry is not None
        if entry.inflater is not None and not entry.inflater.eof:
            raise self._corrupt(f"member {entry.name!r} ends inside its deflate stream")
        if entry.sizes_follow:
            self._state = "descriptor"
            return
        self._complete(entry)

    def _complete(self, entry: _Entry) -> None:
        """The member's bytes are all in: verify them, keep the file, and expect the next entry."""
        if entry.fd is not None:
            os.close(entry.fd)
            entry.fd = None
        if entry.running_crc != entry.crc:
            raise self._corrupt(f"member {entry.name!r} fails its CRC check")
        if entry.written != entry.usize or entry.consumed != entry.csize:
            raise self._corrupt(f"member {entry.name!r} is {entry.written} bytes, its header says {entry.usize}")
        self._entries[entry.offset] = (entry.name, entry.crc, entry.csize, entry.usize)
        if entry.rel is not None and entry.path is not None and entry.digest is not None:
            self._members[entry.rel] = Member(entry.rel, entry.path, entry.written, entry.digest.hexdigest())
        self._entry = None
        self._state = "header"

    # -- the end of the archive -------------------------------------------------------------------------------
    def _check_central(self, data: bytes) -> None:
        """Every central-directory entry must match a member read, and the other way round; no links."""
        pos, seen = 0, 0
        while len(data) - pos >= 4 and struct.unpack_from("<I", data, pos)[0] == _CENTRAL:
            if len(data) - pos < _CENTRAL_HEADER.size:
                raise self._corrupt("its central directory is truncated")
            (_, _, _, flags, _, _, _, crc, csize, usize, name_len, extra_len, comment_len, _, _, attrs,
             offset) = _CENTRAL_HEADER.unpack_from(data, pos)  # fmt: skip
            start = pos + _CENTRAL_HEADER.size
            raw_name = data[start : start + name_len]
            extra = data[start + name_len : start + name_len + extra_len]
            pos = start + name_len + extra_len + comment_len
            if pos > len(data):
                raise self._corrupt("its central directory is truncated")
            name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
            if 0xFFFFFFFF in (usize, csize, offset):
                usize, csize, offset = _zip64_central(extra, usize, csize, offset, self._corrupt)
            refuse_zip_link(self.archive, name, attrs)
            if self._entries.get(offset) != (name, crc, csize, usize):
                raise self._corrupt(f"its central directory disagrees with member {name!r}")
            seen += 1
        if seen != len(self._entries):
            raise self._corrupt(f"its central directory lists {seen} members, {len(self._entries)} were read")
        pos = _skip_records(data, pos)
        if len(data) - pos < 22 or struct.unpack_from("<I", data, pos)[0] != _END:
            raise self._corrupt("it has no end-of-central-directory record")


def _skip_records(data: bytes, pos: int) -> int:
    """Past the optional records between the central entries and the end record (signature, ZIP64 end)."""
    for signature, skip in ((_SIGNATURE, lambda p: 6 + struct.unpack_from("<H", data, p + 4)[0]),
                            (_END64, lambda p: 12 + struct.unpack_from("<Q", data, p + 4)[0]),
                            (_LOCATOR64, lambda p: 20)):  # fmt: skip
        if len(data) - pos >= 12 and struct.unpack_from("<I", data, pos)[0] == signature:
            pos += skip(pos)
    return pos


def _extra_fields(extra: bytes) -> dict[int, bytes]:
    fields, pos = {}, 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        fields[tag] = extra[pos + 4 : pos + 4 + size]
        pos += 4 + size
    return fields


def _zip64_central(extra: bytes, usize: int, csize: int, offset: int, corrupt) -> tuple[int, int, int]:
    """A central entry's real values: the ZIP64 field holds, in order, only those recorded as 0xFFFFFFFF."""
    field = _extra_fields(extra).get(_ZIP64_EXTRA)
    if field is None:
        raise corrupt("a ZIP64 entry lacks its extra field")
    values, pos = [], 0
    for value in (usize, csize, offset):
        if value == 0xFFFFFFFF:
            if pos + 8 > len(field):
                raise corrupt("a ZIP64 extra field is truncated")
            value = struct.unpack_from("<Q", field, pos)[0]
            pos += 8
        values.append(value)
    return values[0], values[1], values[2]
