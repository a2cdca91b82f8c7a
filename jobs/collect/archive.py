"""Safe archive extraction (zip, tar, tar.gz, tar.bz2, tar.xz) for downloaded datasets.

Every member name is checked before anything is written: absolute paths, ``..`` segments, drive letters and
links are refused (path traversal), and the uncompressed total is capped (zip bombs) both by the sizes the
archive declares and by the bytes actually written. Members are unpacked into a private scratch folder and
every zip member's CRC is verified as it is read, so a corrupt download is rejected before a single file
reaches the store (one decompression pass, not two). Each member's SHA-256 is computed on the way, so storing
it needs no second read. macOS ``__MACOSX/`` and ``.DS_Store`` noise is skipped.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from jobs.collect.telemetry import count_archive
from jobs.core.errors import DataError

_DRIVE = re.compile(r"^[A-Za-z]:")
_NOISE = ("__MACOSX/", ".DS_Store", "Thumbs.db")
_MEMBER_CHUNK = 4 << 20


@dataclass(frozen=True)
class Member:
    """One extracted file: its safe relative path inside the archive and where it now is on disk."""

    name: str
    path: Path
    size: int
    sha256: str


ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def named_like_archive(name: str) -> bool:
    """Whether a file name promises an archive (then content that is not one is a corrupt download)."""
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def archive_kind(path: Path) -> str | None:
    """``"zip"``, ``"tar"`` or ``None``, judged by content (not by the file name)."""
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except (OSError, tarfile.TarError):
        return None
    return None


def safe_member_name(name: str, archive: str) -> str | None:
    """The member's normalised relative path, ``None`` for folders and OS noise; ``DataError`` if unsafe."""
    clean = name.replace("\\", "/")
    if clean.startswith("/") or _DRIVE.match(clean):
        raise DataError(f"{archive}: member {name!r} has an absolute path; refusing to extract (path traversal)")
    try:
        clean.encode("utf-8")
    except UnicodeEncodeError as exc:  # a tar member named in another encoding (tarfile keeps the raw bytes)
        raise DataError(f"{archive}: member {os.fsencode(name)!r} is not named in UTF-8 (store keys are text); "
                        "refusing to extract it") from exc  # fmt: skip
    parts = [p for p in PurePosixPath(clean).parts if p not in ("", ".")]
    if ".." in parts:
        raise DataError(f"{archive}: member {name!r} escapes the target folder with '..'; refusing to extract")
    if not parts or clean.endswith("/"):
        return None
    rel = "/".join(parts)
    if rel.startswith(_NOISE[0]) or parts[-1] in _NOISE[1:]:
        return None
    return rel


def corrupt_zip(archive: str, why: object) -> DataError:
    """The refusal of a zip that does not parse: the download is corrupt."""
    return DataError(f"{archive}: not a valid zip ({why}); the download is corrupt, rerun to fetch it again")


def refuse_zip_link(archive: str, name: str, external_attr: int) -> None:
    """A ``DataError`` if a zip entry's Unix mode (the high half of its external attributes) is a symbolic link."""
    if (external_attr >> 16) & 0o170000 == 0o120000:
        raise DataError(f"{archive}: member {name!r} is a symbolic link; refusing to extract")


def budget_error(archive: str, limit: int) -> DataError:
    """The refusal of an archive whose content would exceed ``--max-extract-bytes``."""
    return DataError(
        f"{archive}: uncompressed content exceeds {limit} bytes (--max-extract-bytes); refusing it as a possible "
        "zip bomb (raise the limit if the dataset really is that large)"
    )


def extract(path: Path, dest: Path, max_bytes: int, archive: str | None = None) -> list[Member]:
    """Unpack ``path`` into ``dest`` safely; returns the files written, sorted by name."""
    archive = archive or path.name
    kind = archive_kind(path)
    if kind is None:
        raise DataError(f"{archive}: not a zip or tar archive; check the URL points at the dataset archive")
    try:
        members = (_extract_zip if kind == "zip" else _extract_tar)(path, dest, max_bytes, archive)
    except BaseException:
        remove_tree(dest)  # nothing half-unpacked stays behind
        raise
    count_archive()
    return sorted(members, key=lambda m: m.name)


def _copy_limited(src, target: Path, budget: list[int], archive: str, limit: int,
                  folders: set[Path] | None = None) -> tuple[int, str]:  # fmt: skip
    """Copy one member to ``target``, hashing it and charging it to the zip-bomb budget.

    ``folders`` remembers the folders already made in this extraction (one ``mkdir`` per folder, not per file).
    """
    if folders is None or target.parent not in folders:
        target.parent.mkdir(parents=True, exist_ok=True)
        if folders is not None:
            folders.add(target.parent)
    written = 0
    digest = hashlib.sha256()
    # unbuffered: chunks are already large, and a raw file skips the buffer's seek and tty checks per file
    with open(target, "wb", buffering=0) as out:
        while chunk := src.read(_MEMBER_CHUNK):
            written += len(chunk)
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise budget_error(archive, limit)
            view = memoryview(chunk)
            while view:  # a raw file may write less than asked
                view = view[out.write(view) :]
            digest.update(chunk)
    return written, digest.hexdigest()


def _extract_zip(path: Path, dest: Path, max_bytes: int, archive: str) -> list[Member]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError) as exc:  # a name flagged UTF-8 that is not
        raise corrupt_zip(archive, exc) from exc
    with zf:
        infos = zf.infolist()
        names = {}
        for info in infos:
            refuse_zip_link(archive, info.filename, info.external_attr)
            rel = safe_member_name(info.filename, archive)
            if rel is not None and not info.is_dir():
                names[info.filename] = rel
        if sum(i.file_size for i in infos if i.filename in names) > max_bytes:
            raise budget_error(archive, max_bytes)
        budget = [max_bytes]
        members = []
        folders: set[Path] = set()
        for info in infos:
            rel = names.get(info.filename)
            if rel is None:
                continue
            target = dest / rel
            try:
                with zf.open(info) as src:  # zipfile checks the member's CRC when it is read to the end
                    size, sha = _copy_limited(src, target, budget, archive, max_bytes, folders)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                raise DataError(
                    f"{archive}: member {info.filename!r} fails its CRC check ({exc}); the download is corrupt, "
                    "rerun to fetch it again"
                ) from exc
            members.append(Member(rel, target, size, sha))
    return members


def _extract_tar(path: Path, dest: Path, max_bytes: int, archive: str) -> list[Member]:
    budget = [max_bytes]
    members = []
    folders: set[Path] = set()
    try:
        # streaming mode: one pass over a possibly compressed file, members in archive order
        with tarfile.open(path, mode="r|*") as tf:
            for info in tf:
                if info.isdir():
                    continue
                if info.issym() or info.islnk():
                    raise DataError(f"{archive}: member {info.name!r} is a link; refusing to extract")
                if not info.isfile():
                    raise DataError(f"{archive}: member {info.name!r} is a device or FIFO; refusing to extract")
                rel = safe_member_name(info.name, archive)
                if rel is None:
                    continue
                if info.size > budget[0]:
                    raise budget_error(archive, max_bytes)
                src = tf.extractfile(info)
                if src is None:
                    continue
                with src:
                    size, sha = _copy_limited(src, dest / rel, budget, archive, max_bytes, folders)
                members.append(Member(rel, dest / rel, size, sha))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        raise DataError(f"{archive}: the tar archive is corrupt ({exc}); rerun to fetch it again") from exc
    return members


def remove_tree(path: Path) -> None:
    """Delete an extraction folder once its files are in the store (keeps scratch disk bounded)."""
    shutil.rmtree(path, ignore_errors=True)
