"""``--source local --path DIR``: copy a local folder tree into ``raw/<dataset>/``, keeping relative paths.

Hidden files and folders (names starting with ``.``) are skipped. The cache key holds a fingerprint of the
tree (every file's relative path, size and modification time), so any change to the folder recollects it.

Nothing outside the tree is copied and nothing in it is left out silently. A symbolic link (``--symlinks
inside``, the default) is collected as the file or folder it points to, under its own name, only when that target
is inside ``--path``; a link that leaves the tree (``data/x -> /etc/shadow``) or loops is refused, as archive
members are; ``--symlinks refuse`` refuses every link. A file or folder that cannot be read, a name that is not
UTF-8 (store keys are text) and anything that is not a regular file or folder (a FIFO, a device) stop the stage
with one line naming it, before anything is stored.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.collect.sources.base import CollectReport, RawSink, Source, SourceOptions
from jobs.core.errors import DataError, UsageError
from jobs.core.hashing import sha256_json
from jobs.core.settings import option
from jobs.core.store import check_key, printable_name

LICENSE_NAMES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "LICENCE.txt")


def _unreadable(root: Path, what: str, path: str, exc: OSError) -> UsageError:
    return UsageError(f"--path {root}: cannot read {what} {printable_name(path)} ({exc.strerror or exc}); fix its "
                      "permissions, or move it out of the folder")  # fmt: skip


def scan_directory(root: Path, symlinks: str = "inside") -> list[tuple[str, Path, os.stat_result]]:
    """Every visible regular file under ``root`` (a resolved path): ``(relative posix path, path to read, stat)``,
    sorted by relative path. Raises ``UsageError`` / ``DataError`` naming the first entry that cannot be taken."""
    found: list[tuple[str, Path, os.stat_result]] = []
    # (folder to list, its relative path with a trailing "/", the real paths of it and its ancestors: loops)
    pending: list[tuple[str, str, frozenset[str]]] = [(str(root), "", frozenset({str(root)}))]
    while pending:
        folder, rel_dir, ancestors = pending.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise _unreadable(root, "folder", folder, exc) from exc
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = rel_dir + entry.name
            _check_name(root, rel)
            target = entry.path
            if entry.is_symlink():
                target = _link_target(root, rel, entry.path, symlinks)
            try:
                info = os.stat(target)
            except FileNotFoundError as exc:
                raise DataError(f"--path {root}: {rel!r} is a symbolic link to {target}, which does not exist; fix "
                                "or remove the link") from exc  # fmt: skip
            except OSError as exc:
                raise _unreadable(root, "entry", entry.path, exc) from exc
            if stat.S_ISDIR(info.st_mode):
                real = os.path.realpath(target)
                if real in ancestors:
                    raise DataError(f"--path {root}: link {rel!r} loops back to {real}; remove the link")
                pending.append((target, rel + "/", ancestors | {real}))
            elif stat.S_ISREG(info.st_mode):
                if not os.access(target, os.R_OK):
                    raise _unreadable(root, "file", entry.path, PermissionError(13, "Permission denied"))
                found.append((rel, Path(target), info))
            else:
                raise DataError(f"--path {root}: {rel!r} is not a regular file or folder (a FIFO, socket or device); "
                                "move it out of the folder")  # fmt: skip
    return sorted(found, key=lambda item: item[0])


def _check_name(root: Path, rel: str) -> None:
    """``UsageError`` unless ``rel`` can be a store key (UTF-8 text, no control characters)."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(f"--path {root}: name {printable_name(rel)} is not valid UTF-8 (store keys are text); "
                         "rename it") from exc  # fmt: skip
    try:
        check_key(rel)
    except UsageError as exc:
        raise UsageError(f"--path {root}: file name {rel!r} cannot be a store key; rename it") from exc


def _link_target(root: Path, rel: str, path: str, symlinks: str) -> str:
    """The real path a link inside the tree points to; ``DataError`` for a link that is refused."""
    if symlinks == "refuse":
        raise DataError(f"--path {root}: {rel!r} is a symbolic link; refusing it (--symlinks refuse); replace it "
                        "with the file")  # fmt: skip
    target = os.path.realpath(path)
    if not Path(target).is_relative_to(root):
        raise DataError(f"--path {root}: {rel!r} is a symbolic link to {target}, outside the folder; refusing to "
                        "copy it (copy the file into the folder instead)")  # fmt: skip
    return target


def license_of(files: list[tuple[str, Path, os.stat_result]]) -> str | None:
    """The first line of the tree's top-level LICENSE file, if it has one (read from the scanned entry, so a
    link out of the tree is never read)."""
    by_name = {rel: path for rel, path, _ in files}
    for name in LICENSE_NAMES:
        if (path := by_name.get(name)) is not None:
            for line in path.read_text(errors="replace").splitlines():
                if line.strip():
                    return line.strip()[:200]
    return None


SYMLINK_POLICIES = ("inside", "refuse")


@dataclass(frozen=True, kw_only=True)
class LocalOptions(SourceOptions):
    """``--source local``: the folder to copy, and what to do with symbolic links in it."""

    path: str = option(
        parameter="path",
        help="the local folder to copy into the store (--source local); in a pod, a folder on the data volume",
    )
    symlinks: str = option(
        "inside",
        choices=SYMLINK_POLICIES,
        help="--source local: inside copies links that point inside --path (refusing the others), refuse refuses "
        "every link",
    )


class LocalSource(Source[LocalOptions]):
    """A folder on this machine (or a mounted volume)."""

    name = "local"
    options_type = LocalOptions

    def _root(self, options: LocalOptions) -> Path:
        root = Path(options.path).expanduser()
        if not root.is_dir():
            raise UsageError(f"--path {options.path!r} is not a folder; give an existing folder to copy")
        return root.resolve()

    def result_params(self, options: LocalOptions) -> dict[str, Any]:
        root = self._root(options)
        files = scan_directory(root, options.symlinks)
        if not files:
            raise UsageError(f"--path {options.path!r} holds no files (hidden ones are skipped); give a data folder")
        fingerprint = sha256_json([[rel, st.st_size, st.st_mtime_ns] for rel, _, st in files])
        return {"path": str(root), "tree_sha256": fingerprint, "files": len(files)}

    def collect(self, options: LocalOptions, sink: RawSink) -> CollectReport:
        files = scan_directory(self._root(options), options.symlinks)
        sink.put_many((rel, path) for rel, path, _ in files)
        return CollectReport(license=license_of(files))


SOURCE = LocalSource()
